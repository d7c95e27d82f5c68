//! Command line: `gossipd agent ...` runs an agent; `members` and `services ...` are clients of
//! a running agent's HTTP API.
//!
//! Usage errors (unknown flag, bad value) are reported by clap and exit with status 2; runtime
//! errors exit with status 1 (see `main.rs`).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The highest wire protocol version this build speaks by default (it also speaks the versions
/// down to `gossip_core::version::BUILD_MIN`).
#[cfg_attr(not(test), allow(dead_code))] // Kept in step with `VERSION` by a test.
pub const PROTOCOL_VERSION: u32 = 7;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (protocol 7, speaks 5 to 7)");

/// Default gossip address outside `--dev`.
pub const DEFAULT_BIND: &str = "0.0.0.0:7946";
/// Default gossip address with `--dev`.
pub const DEFAULT_DEV_BIND: &str = "127.0.0.1:7946";

/// gossipd: decentralized service discovery over gossip, answering DNS and a Consul-shaped API.
#[derive(Debug, Parser)]
#[command(name = "gossipd", version = VERSION)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // Parsed once per process.
pub enum Command {
    /// Run an agent.
    Agent(AgentArgs),
    /// List the cluster's members, as seen by the local agent (`--wan`: the WAN pool's).
    Members(MembersArgs),
    /// List, register or deregister services.
    Services(ServicesArgs),
    /// Print a new random cluster key (base64 of 32 bytes).
    Keygen,
    /// List or change the cluster keyring (the change spreads to every agent).
    Keys(KeysArgs),
    /// This agent at a glance: name, members, protocol, self-preservation, catalog, and the
    /// latest problems it reported (why it may not join, refusals, skewed clocks, failures).
    Info(ClientArgs),
    /// The cluster CA, offline: create it, sign node certificates, revoke them.
    Ca(CaArgs),
    /// Inspect a certificate file.
    Cert(CertArgs),
    /// Install a CA-signed revocation through an agent (it spreads to every agent), or list them.
    Revocations(RevocationsArgs),
    /// Make the local agent leave the cluster gracefully and exit: its services leave every
    /// agent's answers at once (needs the operator token when tokens are on). Stopping the
    /// agent with SIGTERM does not leave (see --leave-on-terminate).
    Leave(ClientArgs),
    /// Join the local agent to a cluster through one or more gossip addresses, at run time
    /// (as `consul join`).
    Join(JoinArgs),
    /// Remove a node from every agent now (a crashed node otherwise stays listed as failed for
    /// --failed-grace), as `consul force-leave -prune`; a node that is alive comes back.
    ForceLeave(ForceLeaveArgs),
    /// The catalog as the local agent answers it: `services` (names and tags) or `nodes`.
    Catalog(CatalogArgs),
    /// Re-read the local agent's --config-dir service definitions (sends it SIGHUP; its PID is
    /// in DATA_DIR/lock).
    Reload(ReloadArgs),
    /// Check configuration files without starting anything: agent TOML files (`*.toml`) and
    /// service definitions (`*.json`, files or directories). Exits non-zero naming the file, the
    /// field and the reason.
    Validate(ValidateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Stream the local agent's log lines live, as `consul monitor`, until Ctrl-C or until the
    /// agent stops; needs the operator token (--data-dir or --token). A reader slower than the
    /// log is told how many lines it missed.
    Monitor(MonitorArgs),
    /// Watch a view of the catalog, as `consul watch`: each time the result changes, run a
    /// handler with its JSON on stdin, or print it. Blocking queries: no polling.
    Watch(WatchArgs),
    /// Print the manual page (roff, for `man -l -`); the Debian package installs it.
    #[command(hide = true)]
    Man,
}

/// `gossipd members` arguments.
#[derive(Debug, Clone, Args)]
pub struct MembersArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The WAN pool's members (agents of every datacenter, named NODE.DC), as `consul members -wan`.
    #[arg(long)]
    pub wan: bool,
}

/// `gossipd monitor` arguments.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The least severe level streamed: trace, debug, info, warn or err (Consul's names),
    /// whatever the agent's own --log-level.
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = parse_monitor_level)]
    pub log_level: String,
}

fn parse_monitor_level(s: &str) -> Result<String, String> {
    match crate::logstream::parse_level(s) {
        Some(_) => Ok(s.to_ascii_lowercase()),
        None => Err("use trace, debug, info, warn or err".into()),
    }
}

/// What `gossipd watch` watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchType {
    /// One service's instances with their checks (`/v1/health/service/NAME`): --service,
    /// optionally --tag and --passing.
    Service,
    /// Service names with their tags (`/v1/catalog/services`).
    Services,
    /// The alive nodes (`/v1/catalog/nodes`).
    Nodes,
}

/// `gossipd watch` arguments.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to watch.
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub kind: WatchType,
    /// The service's name (--type service).
    #[arg(long, value_name = "NAME", required_if_eq("kind", "service"))]
    pub service: Option<String>,
    /// Only instances carrying this tag (--type service; repeat: all of them).
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Only instances whose checks pass (--type service).
    #[arg(long)]
    pub passing: bool,
    /// Print the current result once and exit (no handler).
    #[arg(long, conflicts_with = "handler")]
    pub once: bool,
    /// The handler, run with `sh -c` (its words joined with spaces, as Consul runs it) at start
    /// and each time the result changes, with the result's JSON on stdin and GOSSIPD_INDEX
    /// (and CONSUL_INDEX) in its environment. Without it each result is printed (--format).
    #[arg(value_name = "HANDLER", trailing_var_arg = true, allow_hyphen_values = true)]
    pub handler: Vec<String>,
}

/// `gossipd join` arguments.
#[derive(Debug, Clone, Args)]
pub struct JoinArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Gossip addresses (IP:PORT) of agents already in the cluster.
    #[arg(required = true, value_name = "ADDR")]
    pub addrs: Vec<String>,
}

/// `gossipd force-leave` arguments.
#[derive(Debug, Clone, Args)]
pub struct ForceLeaveArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The node's name.
    #[arg(value_name = "NODE")]
    pub node: String,
}

/// `gossipd catalog` subcommands.
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to list.
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// What `gossipd catalog` lists.
#[derive(Debug, Clone, Subcommand)]
pub enum CatalogCommand {
    /// Service names with their tags.
    Services,
    /// Nodes with their addresses.
    Nodes,
}

/// `gossipd reload` arguments.
#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    /// The agent's data directory (its PID is in `lock`).
    #[arg(long, value_name = "DIR", env = "GOSSIPD_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// `gossipd validate` arguments.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Files or directories to check.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `gossipd completions` arguments.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `gossipd ca` subcommands (no agent needed).
#[derive(Debug, Clone, Args)]
pub struct CaArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CaCommand,
}

/// `gossipd ca` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CaCommand {
    /// Create a CA: DIR/ca.key (the secret, mode 0600: keep it offline) and DIR/ca.crt (give it
    /// to every agent as --ca-file).
    Create {
        /// Directory to write into (created if missing; an existing CA is never overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A label for the CA.
        #[arg(long, default_value = "gossipd-ca")]
        label: String,
        /// Validity of the CA certificate.
        #[arg(long, value_name = "DURATION", default_value = "87600h", value_parser = parse_duration)]
        valid: std::time::Duration,
    },
    /// Sign a node certificate: DIR2/NODE.key (a new identity, mode 0600) and DIR2/NODE.crt.
    Sign {
        /// The CA directory (ca.key, ca.crt).
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The node name (the agent's name is its certificate's).
        #[arg(long, value_parser = parse_node_name)]
        name: String,
        /// Service names the node may publish, comma-separated; `*` globs (`web,api-*`, or `*`).
        #[arg(long, value_name = "LIST", value_delimiter = ',', required = true)]
        services: Vec<String>,
        /// Roles, comma-separated: `operator` may change the cluster keyring.
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        roles: Vec<String>,
        /// Most services the node may hold (0: the cluster default, 10000).
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_entries: u32,
        /// Validity from now (never beyond the CA's).
        #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_duration)]
        valid: std::time::Duration,
        /// Certify an existing identity (its base64 public key, `Tags.identity` in `gossipd
        /// members --format json` or `identity` in the data dir's addrs.json) instead of
        /// generating one: no .key file is written.
        #[arg(long, value_name = "KEY", value_parser = parse_pin)]
        identity_pub: Option<[u8; 32]>,
        /// Directory to write into.
        #[arg(long, value_name = "DIR2")]
        out: PathBuf,
    },
    /// Print a CA-signed revocation of a certificate's identity (install it with `gossipd
    /// revocations add`).
    Revoke {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The certificate to revoke.
        cert: PathBuf,
    },
}

/// `gossipd cert` subcommands.
#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertCommand,
}

/// `gossipd cert` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CertCommand {
    /// Print the fields of every certificate in a file (JSON).
    Show {
        /// The file.
        file: PathBuf,
    },
}

/// `gossipd revocations` flags and subcommand.
#[derive(Debug, Clone, Args)]
pub struct RevocationsArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: RevocationsCommand,
}

/// `gossipd revocations` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum RevocationsCommand {
    /// Install the revocations of a file (`-`: stdin) from `gossipd ca revoke`.
    Add {
        /// The file.
        file: PathBuf,
    },
    /// List the revocations in force.
    List,
}

/// `gossipd keys` flags and subcommand.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do with the keyring.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// `gossipd keys` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// List the installed keys (primary first).
    List,
    /// Install a key everywhere: accepted, not yet used to send.
    Install {
        /// The key (base64, from `gossipd keygen`).
        key: String,
    },
    /// Make an installed key the primary everywhere (used for new sessions).
    Use {
        /// The key.
        key: String,
    },
    /// Remove a non-primary key everywhere: sessions under it are closed, it admits nobody.
    Remove {
        /// The key.
        key: String,
    },
}

/// `gossipd agent` flags.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Development mode: gossip binds to 127.0.0.1 unless --bind says otherwise, and
    /// --data-dir becomes optional (without it nothing is persisted).
    #[arg(long)]
    pub dev: bool,
    /// Node name, unique in the cluster (a DNS label); default: the stored name, else the
    /// host name.
    #[arg(long, value_name = "NAME", value_parser = parse_node_name)]
    pub node: Option<String>,
    /// UDP address for gossip [default: 0.0.0.0:7946, or 127.0.0.1:7946 with --dev].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Address other agents reach this one at [default: the bind address].
    #[arg(long, value_name = "ADDR", value_parser = parse_advertise)]
    pub advertise: Option<SocketAddr>,
    /// A seed agent to join through, IP:PORT or HOST:PORT; repeat or separate with commas.
    /// Host names are resolved once at start. `ADDR#IDENTITY` pins the seed to its identity
    /// key (base64, as `gossipd members --format json` shows in `Tags.identity`).
    #[arg(long = "seed", value_name = "ADDR", value_delimiter = ',')]
    pub seeds: Vec<HostPort>,
    /// DNS address (UDP and TCP).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8600")]
    pub dns: SocketAddr,
    /// HTTP API address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8500")]
    pub http: SocketAddr,
    /// TOML file setting any of these flags (keys: the flag names with '_' for '-'); flags
    /// given on the command line win over it.
    #[arg(long, value_name = "FILE", env = "GOSSIPD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (identity, generation, registrations); required unless --dev (it may
    /// come from --config).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["dev", "config"])]
    pub data_dir: Option<PathBuf>,
    /// Directory of service definition files (*.json) loaded at start.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// How long a left node's state, and a deleted service's tombstone, are kept before they
    /// are collected (e.g. 24h, 90m).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub gc_grace: std::time::Duration,
    /// Node metadata, `KEY=VALUE` (repeatable, at most 64): answered as TXT records of
    /// `NODE.node.<domain>` and as `NodeMeta` in the catalog, as Consul's `-node-meta`.
    #[arg(long = "node-meta", value_name = "KEY=VALUE", value_parser = parse_node_meta)]
    pub node_meta: Vec<(String, String)>,
    /// Leave the cluster on SIGTERM too (for autoscaling groups that stop hosts with SIGTERM).
    /// By default SIGTERM stops the agent without leaving, so that a restart never takes its
    /// services out of other agents' answers (they keep them until the agent is back with a new
    /// generation, or until they detect it failed); SIGINT and `gossipd leave` always leave.
    #[arg(long)]
    pub leave_on_terminate: bool,
    /// How long a failed (crashed, not left) node's state is kept, counted from its failure
    /// record, before every agent collects it; dead nodes are probed meanwhile, so a partition
    /// shorter than this heals without seeds (e.g. 1h, 30m).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub failed_grace: std::time::Duration,
    /// Answer instances whose checks warn too (by default DNS answers only passing ones, as
    /// Consul's `only_passing`).
    #[arg(long)]
    pub dns_allow_warning: bool,
    /// DNS domain served.
    #[arg(long, value_name = "DOMAIN", default_value = "gossip", value_parser = parse_domain)]
    pub domain: String,
    /// This agent's datacenter (a DNS label): each datacenter is its own LAN pool and catalog;
    /// the others answer `NAME.service.DC.<domain>` and `?dc=DC` through the WAN pool.
    #[arg(long, value_name = "NAME", default_value = "gossip", value_parser = parse_datacenter)]
    pub datacenter: String,
    /// UDP address of the WAN pool (agents of every datacenter): with it this agent reaches
    /// other datacenters and serves theirs; without it, only its own.
    #[arg(long, value_name = "ADDR")]
    pub wan_bind: Option<SocketAddr>,
    /// Address other datacenters reach this agent's WAN pool at [default: --wan-bind].
    #[arg(long, value_name = "ADDR", value_parser = parse_advertise, requires = "wan_bind")]
    pub wan_advertise: Option<SocketAddr>,
    /// A WAN member (of any datacenter) to join the WAN pool through, IP:PORT or HOST:PORT;
    /// repeat or separate with commas.
    #[arg(long = "wan-seed", value_name = "ADDR", value_delimiter = ',', requires = "wan_bind")]
    pub wan_seeds: Vec<HostPort>,
    /// File holding the cluster key (base64, from `gossipd keygen`); GOSSIPD_CLUSTER_KEY may
    /// hold the key itself instead. Required at first start unless --dev (which makes one).
    #[arg(long, value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Lifetime of a Noise static key before it rotates (plus up to 10% jitter), e.g. 4h, 30m.
    #[arg(long, value_name = "DURATION", default_value = "4h", value_parser = parse_duration)]
    pub key_rotation: std::time::Duration,
    /// Anti-entropy round interval, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub gossip_interval_ms: u64,
    /// Allow exec (`Args`) checks from the HTTP API and the config directory. Off by default:
    /// whoever may register a service could otherwise run commands as the agent's user.
    #[arg(long)]
    pub enable_script_checks: bool,
    /// Allow exec (`Args`) checks from `--config-dir` only (files the operator wrote), never
    /// from the HTTP API.
    #[arg(long)]
    pub enable_local_script_checks: bool,
    /// Which HTTP requests need a token besides the operator endpoints (which always need the
    /// operator token): `none`, `write` (registrations and check updates too) or `read`
    /// (every request). Required to be `read` when --http is not a loopback address.
    #[arg(long, value_enum, value_name = "WHICH", default_value_t = RequireToken::None)]
    pub http_require_token: RequireToken,
    /// File holding a token with read power (one line, at least 16 characters).
    #[arg(long, value_name = "FILE")]
    pub http_read_token_file: Option<PathBuf>,
    /// File holding a token with write power (read, register, deregister, update checks).
    #[arg(long, value_name = "FILE")]
    pub http_write_token_file: Option<PathBuf>,
    /// Host names the HTTP API answers to besides IP literals and `localhost` (a request
    /// whose Host header names anything else is refused: DNS rebinding); repeat or separate
    /// with commas.
    #[arg(long, value_name = "HOST", value_delimiter = ',', value_parser = parse_allowed_host)]
    pub http_allowed_hosts: Vec<String>,
    /// Most HTTP connections open at once; further ones wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub http_max_conns: u32,
    /// How long an HTTP connection may take to send a request's headers, and may stay idle
    /// between requests, before it is closed (e.g. 10s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: std::time::Duration,
    /// Most DNS TCP connections open at once from one source (IPv4 address, IPv6 /64).
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub dns_tcp_per_source: u32,
    /// DNS response rate limiting (UDP; docs/SECURITY.md): `auto` turns it on when --dns is
    /// not a loopback address.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Rrl::Auto)]
    pub dns_rrl: Rrl,
    /// Rate-limited responses per second to one (source /24 or /56, name, type).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub dns_rrl_rate: u32,
    /// Every N-th response past the rate is sent truncated (TC, so real clients retry over
    /// TCP); the others are dropped. 0 drops them all.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub dns_rrl_slip: u32,
    /// An upstream resolver, IP or IP:PORT (port 53 by default), for names outside the
    /// domain (and reverse names of addresses the catalog does not know): forwarded instead
    /// of REFUSED. Repeat for more; they are tried in order, 2 s each; SERVFAIL if all fail.
    #[arg(long = "recursor", value_name = "ADDR", value_parser = parse_recursor)]
    pub recursors: Vec<SocketAddr>,
    /// Log format: `text` for people, `json` (one object per line) for log pipelines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber syntax, e.g. `info` or `gossipd=debug`); RUST_LOG
    /// overrides it.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// A trusted cluster CA certificate file (`ca.crt` from `gossipd ca create`; repeatable,
    /// and one file may hold several, for a CA rotation). With it, every peer must prove a
    /// certificate from one of them; without it the agent runs with the cluster key only.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
    /// This node's certificate (`NODE.crt` from `gossipd ca sign`): it sets the node name.
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// This node's identity key (`NODE.key` from `gossipd ca sign`), instead of the data
    /// directory's own `identity.key`.
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// Clock skew tolerated between agents on key bindings, certificates and keyring stamps; a
    /// peer off by more than 30 s is logged either way.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub max_clock_skew: std::time::Duration,
    /// TEST-ONLY hidden flags (`--test-*`), present only with the `testing` feature.
    #[command(flatten)]
    pub testing: crate::testing::TestArgs,
}

impl AgentArgs {
    /// The gossip bind address, defaults applied.
    pub fn bind_addr(&self) -> SocketAddr {
        let default = if self.dev { DEFAULT_DEV_BIND } else { DEFAULT_BIND };
        self.bind.unwrap_or_else(|| default.parse().expect("valid default address"))
    }

    /// Resolves every `--seed` (host names through the system resolver; blocking), with the
    /// identity each is pinned to, if any. A seed that does not resolve is an error naming it.
    pub fn resolve_seeds(&self) -> anyhow::Result<Vec<(SocketAddr, Option<[u8; 32]>)>> {
        resolve_all(&self.seeds)
    }

    /// The WAN seeds, resolved (pins kept).
    pub fn resolve_wan_seeds(&self) -> anyhow::Result<Vec<(SocketAddr, Option<[u8; 32]>)>> {
        resolve_all(&self.wan_seeds)
    }
}

fn resolve_all(seeds: &[HostPort]) -> anyhow::Result<Vec<(SocketAddr, Option<[u8; 32]>)>> {
    let mut out: Vec<(SocketAddr, Option<[u8; 32]>)> = Vec::new();
    for seed in seeds {
        for addr in seed.resolve()? {
            if !out.iter().any(|(a, _)| *a == addr) {
                out.push((addr, seed.pin));
            }
        }
    }
    Ok(out)
}

/// Flags shared by the client subcommands (also accepted after the subcommand).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// HTTP address of the agent to ask (HOST:PORT or http://HOST:PORT).
    #[arg(long, global = true, value_name = "ADDR", env = "GOSSIPD_HTTP_ADDR", default_value = "127.0.0.1:8500")]
    pub http: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// API token sent with every request (X-Consul-Token). Default: the agent's operator token,
    /// read from `DATA_DIR/operator.token` when --data-dir is given and the file is readable.
    #[arg(long, global = true, value_name = "TOKEN", env = "GOSSIPD_HTTP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The agent's data directory, to read its operator token from.
    #[arg(long, global = true, value_name = "DIR", env = "GOSSIPD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Which HTTP requests need a token (operator endpoints always need the operator token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum RequireToken {
    /// Reads and service writes are open (loopback only).
    None,
    /// Service and check writes need a write (or operator) token; reads are open.
    Write,
    /// Every request needs a token: reads a read, write or operator token.
    Read,
}

/// When DNS response rate limiting is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rrl {
    /// On when DNS listens beyond loopback.
    Auto,
    /// Always on (loopback sources are still exempt).
    On,
    /// Off.
    Off,
}

/// Format of the agent's logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output format of the client subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for humans.
    Table,
    /// The agent's JSON, pretty-printed.
    Json,
}

/// `gossipd services` flags and subcommand.
#[derive(Debug, Clone, Args)]
pub struct ServicesArgs {
    /// Client flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do with services.
    #[command(subcommand)]
    pub command: ServicesCommand,
}

/// `gossipd services` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ServicesCommand {
    /// List the catalog's service instances.
    List,
    /// Register the services of a JSON file (a Consul service definition, or a config file
    /// with `service`/`services`; `-` reads stdin), or one service given by flags, as `consul
    /// services register -name=web -port=80` (Consul's single-dash spellings are accepted).
    Register {
        /// The file (omit it with --name).
        #[arg(required_unless_present = "name", conflicts_with = "name")]
        file: Option<PathBuf>,
        /// The service name (registers one service from the flags instead of a file).
        #[arg(long)]
        name: Option<String>,
        /// The instance ID (default: the name).
        #[arg(long, conflicts_with = "file")]
        id: Option<String>,
        /// The port.
        #[arg(long, conflicts_with = "file")]
        port: Option<u16>,
        /// The address answered for it (default: the agent's).
        #[arg(long, conflicts_with = "file")]
        address: Option<String>,
        /// A tag (repeat for more).
        #[arg(long = "tag", conflicts_with = "file")]
        tags: Vec<String>,
        /// Metadata, KEY=VALUE (repeat for more).
        #[arg(long = "meta", conflicts_with = "file", value_name = "KEY=VALUE")]
        meta: Vec<String>,
    },
    /// Deregister a service of the local agent by ID.
    Deregister {
        /// The service ID.
        id: String,
    },
}

/// `HOST:PORT` or `IP:PORT` (IPv6 in brackets), resolved later, optionally pinned to the
/// seed's identity: `ADDR#IDENTITY` (the base64 identity key `gossipd members` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The identity the seed must prove, if pinned.
    pub pin: Option<[u8; 32]>,
}

impl HostPort {
    /// Resolves through the system resolver (blocking).
    pub fn resolve(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("cannot resolve seed {self}: {e}"))?
            .collect();
        if addrs.is_empty() {
            anyhow::bail!("cannot resolve seed {self}: no addresses");
        }
        Ok(addrs)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((addr, key)) = s.split_once('#') {
            let pin = crate::keys::decode_key(key).map_err(|e| format!("{s:?}: the pinned identity {e}"))?;
            let mut hp: HostPort = addr.parse()?;
            hp.pin = Some(pin);
            return Ok(hp);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(HostPort { host: addr.ip().to_string(), port: addr.port(), pin: None });
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} must be HOST:PORT or IP:PORT"))?;
        let port = port.parse().map_err(|_| format!("{s:?}: port must be an integer in 0..=65535"))?;
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_host {
            return Err(format!("{s:?}: host must be a host name or an IP (IPv6 in brackets)"));
        }
        Ok(HostPort { host: host.to_string(), port, pin: None })
    }
}

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn parse_pin(s: &str) -> Result<[u8; 32], String> {
    crate::keys::decode_key(s)
}

pub(crate) fn parse_node_name(s: &str) -> Result<String, String> {
    if is_dns_label(s) {
        Ok(s.to_string())
    } else {
        Err("must be a DNS label (1-63 letters, digits or '-') so that it can be queried as \
             NAME.node.<domain>"
            .to_string())
    }
}

pub(crate) fn parse_advertise(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|e| format!("{e} (want IP:PORT)"))?;
    if addr.ip().is_unspecified() {
        return Err(format!("cannot advertise the unspecified address {addr}"));
    }
    Ok(addr)
}

/// One `--node-meta KEY=VALUE`: a key of 1-128 characters (letters, digits, `-`, `_`), a value
/// of at most 512 (Consul's limits).
pub(crate) fn parse_node_meta(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?}: want KEY=VALUE"))?;
    if k.is_empty() || k.len() > 128 || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("{k:?}: a node meta key is 1-128 letters, digits, '-' or '_'"));
    }
    if v.len() > 512 {
        return Err(format!("the value of {k:?} is {} bytes long, at most 512", v.len()));
    }
    Ok((k.to_string(), v.to_string()))
}

/// An upstream resolver for `--recursor`: `IP:PORT`, `[V6]:PORT`, or a bare IP (port 53).
pub(crate) fn parse_recursor(s: &str) -> Result<SocketAddr, String> {
    let addr = match s.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, 53),
        Err(_) => s.parse().map_err(|e| format!("{s:?}: {e} (want IP or IP:PORT)"))?,
    };
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(format!("{addr} is not a resolver address"));
    }
    Ok(addr)
}

/// A host name for `--http-allowed-hosts`: lower-cased, without a trailing dot.
pub(crate) fn parse_allowed_host(s: &str) -> Result<String, String> {
    let h = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let valid = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid { Ok(h) } else { Err(format!("{s:?} is not a host name (no port, no scheme)")) }
}

/// A duration of at least a second: `90s`, `30m`, `4h`.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match crate::http::parse_wait(s) {
        Some(d) if d >= std::time::Duration::from_secs(1) => Ok(d),
        Some(_) => Err("must be at least 1s".into()),
        None => Err("use a number with a unit: 90s, 30m, 4h".into()),
    }
}

/// Lower-cased, without a trailing dot; labels of [A-Za-z0-9-].
pub(crate) fn parse_datacenter(s: &str) -> Result<String, String> {
    if is_dns_label(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("must be a DNS label (1-63 letters, digits or '-') so that it can be queried as \
             NAME.service.DC.<domain>"
            .to_string())
    }
}

pub(crate) fn parse_domain(s: &str) -> Result<String, String> {
    let d = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if d.len() > 253 || d.is_empty() || !d.split('.').all(is_dns_label) {
        return Err("must be a DNS name of labels of 1-63 letters, digits or '-'".to_string());
    }
    Ok(d)
}

/// The default node name: the host name's first label, reduced to a DNS label; `gossipd` if
/// there is none.
pub fn default_node_name() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    node_name_from_host(&raw)
}

fn node_name_from_host(raw: &str) -> String {
    let label: String = raw
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    if label.is_empty() { "gossipd".to_string() } else { label }
}

/// Consul's single-dash long flags of `consul services register` (`-name=web -port=80`),
/// rewritten to this CLI's double-dash ones; only after `services register`, and only these
/// names, so that nothing else changes meaning.
pub fn consul_flags(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const REGISTER: [&str; 6] = ["name", "id", "port", "address", "tag", "meta"];
    const MEMBERS: [&str; 1] = ["wan"];
    let register =
        args.windows(2).position(|w| w[0] == "services" && w[1] == "register").map(|at| (at + 2, &REGISTER[..]));
    // `consul members -wan`: only right after the subcommand name (the first word that is not
    // an option), so that an argument that happens to be "members" is left alone.
    let members = args.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-')).map(|i| i + 1);
    let members = members.filter(|&i| args[i] == "members").map(|i| (i + 1, &MEMBERS[..]));
    let Some((at, flags)) = register.or(members) else { return args };
    for a in args.iter_mut().skip(at) {
        let Some(text) = a.to_str() else { continue };
        let Some(rest) = text.strip_prefix('-').filter(|r| !r.starts_with('-')) else { continue };
        let name = rest.split('=').next().unwrap_or(rest);
        if flags.contains(&name) {
            *a = format!("-{text}").into();
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args: Vec<std::ffi::OsString> = args.iter().map(std::ffi::OsString::from).collect();
        Cli::try_parse_from(consul_flags(std::iter::once("gossipd".into()).chain(args).collect()))
    }

    #[test]
    fn services_register_takes_a_file_or_consul_style_flags() {
        let reg = |args: &[&str]| match parse(args).map(|c| c.command) {
            Ok(Command::Services(s)) => Ok(s.command),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.kind()),
        };
        assert!(matches!(
            reg(&["services", "register", "web.json"]),
            Ok(ServicesCommand::Register { file: Some(_), .. })
        ));
        let Ok(ServicesCommand::Register { name, port, tags, meta, file, .. }) =
            reg(&["services", "register", "-name=web", "-port=80", "-tag=v1", "--tag", "blue", "-meta=rack=r1"])
        else {
            panic!()
        };
        assert_eq!((name.as_deref(), port, file), (Some("web"), Some(80), None));
        assert_eq!((tags, meta), (vec!["v1".to_string(), "blue".into()], vec!["rack=r1".to_string()]));
        // Neither a file nor a name; both; a flag without --name.
        assert!(reg(&["services", "register"]).is_err());
        assert!(reg(&["services", "register", "web.json", "--name", "web"]).is_err());
        assert!(reg(&["services", "register", "web.json", "--port", "80"]).is_err());
        // Single-dash spellings are rewritten only after `services register`.
        assert!(parse(&["members", "-name=x"]).is_err());
    }

    fn agent(args: &[&str]) -> AgentArgs {
        match parse(args).unwrap().command {
            Command::Agent(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recursors_repeat_and_default_to_port_53() {
        let a = agent(&["agent", "--dev", "--recursor", "10.0.0.53", "--recursor", "[fd00::53]:5353"]);
        let want: Vec<SocketAddr> = vec!["10.0.0.53:53".parse().unwrap(), "[fd00::53]:5353".parse().unwrap()];
        assert_eq!(a.recursors, want);
        assert!(agent(&["agent", "--dev"]).recursors.is_empty());
        for bad in ["0.0.0.0", "10.0.0.1:0", "resolver.example", "10.0.0.1:99999"] {
            assert!(parse(&["agent", "--dev", "--recursor", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_names_the_protocol() {
        let d = gossip_core::version::VersionRange::DEFAULT;
        assert!(VERSION.ends_with(&format!("(protocol {PROTOCOL_VERSION}, speaks {} to {})", d.min(), d.max())));
        assert_eq!(u32::from(d.max()), PROTOCOL_VERSION, "the core speaks another version");
        let e = parse(&["--version"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(e.to_string().trim(), format!("gossipd {VERSION}"));
    }

    #[test]
    fn agent_defaults() {
        let a = agent(&["agent", "--dev"]);
        assert_eq!(a.bind_addr(), "127.0.0.1:7946".parse().unwrap());
        assert_eq!(a.dns, "127.0.0.1:8600".parse().unwrap());
        assert_eq!(a.http, "127.0.0.1:8500".parse().unwrap());
        assert_eq!(a.domain, "gossip");
        assert_eq!(a.gossip_interval_ms, 1000);
        assert_eq!(a.log_level, "info");
        assert!(a.seeds.is_empty() && a.data_dir.is_none() && a.node.is_none());
        let a = agent(&["agent", "--data-dir", "/tmp/x"]);
        assert_eq!(a.bind_addr(), "0.0.0.0:7946".parse().unwrap());
        assert!(parse(&["agent"]).is_err(), "--data-dir is required without --dev");
    }

    #[test]
    fn agent_flags() {
        let a = agent(&[
            "agent",
            "--dev",
            "--node",
            "n1",
            "--bind",
            "127.0.0.1:0",
            "--advertise",
            "10.0.0.1:7946",
            "--seed",
            "127.0.0.1:7001",
            "--seed",
            "localhost:7002,[::1]:7003",
            "--domain",
            "Consul.",
            "--gossip-interval-ms",
            "200",
            "--config-dir",
            "/etc/g",
        ]);
        assert_eq!(a.node.as_deref(), Some("n1"));
        assert_eq!(a.bind_addr(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(a.seeds.len(), 3);
        assert_eq!(a.seeds[2].to_string(), "[::1]:7003");
        assert_eq!(a.domain, "consul");
        assert_eq!(a.gossip_interval_ms, 200);
        let seeds: Vec<SocketAddr> = a.resolve_seeds().unwrap().into_iter().map(|(s, _)| s).collect();
        assert!(seeds.contains(&"127.0.0.1:7001".parse().unwrap()));
        assert!(seeds.contains(&"[::1]:7003".parse().unwrap()));
    }

    #[test]
    fn seeds_may_be_pinned_to_an_identity() {
        let key = crate::keys::encode_key(&[5; 32]);
        let hp: HostPort = format!("127.0.0.1:7001#{key}").parse().unwrap();
        assert_eq!(hp.pin, Some([5; 32]));
        assert_eq!(hp.port, 7001);
        let e = "127.0.0.1:7001#nope".parse::<HostPort>().unwrap_err();
        assert!(e.contains("pinned identity"), "{e}");
    }

    #[test]
    fn agent_rejects_bad_values() {
        for bad in [
            &["agent", "--dev", "--node", "a.b"][..],
            &["agent", "--dev", "--advertise", "0.0.0.0:7946"],
            &["agent", "--dev", "--seed", "nohost"],
            &["agent", "--dev", "--seed", "h:99999"],
            &["agent", "--dev", "--domain", "a..b"],
            &["agent", "--dev", "--gossip-interval-ms", "0"],
            &["agent", "--dev", "--bind", "localhost:1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_flags_before_or_after_the_subcommand() {
        let Command::Members(m) = parse(&["members", "--format", "json"]).unwrap().command else { panic!() };
        assert_eq!((m.client.http.as_str(), m.client.format, m.wan), ("127.0.0.1:8500", Format::Json, false));
        let Command::Members(m) = parse(&["members", "--wan"]).unwrap().command else { panic!() };
        assert!(m.wan);
        // Consul's spelling, `consul members -wan`, after `members` only.
        let Command::Members(m) = parse(&["members", "-wan", "--http", "h:1"]).unwrap().command else { panic!() };
        assert!(m.wan && m.client.http == "h:1");
        assert!(parse(&["services", "list", "-wan"]).is_err(), "not another subcommand's flag");
        for args in [&["services", "--http", "h:1", "list"][..], &["services", "list", "--http", "h:1"]] {
            let Command::Services(s) = parse(args).unwrap().command else { panic!() };
            assert_eq!(s.client.http, "h:1");
            assert!(matches!(s.command, ServicesCommand::List));
        }
        let Command::Services(s) = parse(&["services", "deregister", "web-1"]).unwrap().command else { panic!() };
        assert!(matches!(s.command, ServicesCommand::Deregister { id } if id == "web-1"));
    }

    #[test]
    fn node_name_from_host_name() {
        assert_eq!(node_name_from_host("web-01.example.com\n"), "web-01");
        assert_eq!(node_name_from_host("my_box"), "mybox");
        assert_eq!(node_name_from_host(""), "gossipd");
        assert!(is_dns_label(&default_node_name()));
    }
}
