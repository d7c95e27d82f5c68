//! The agent's TOML configuration file (`gossipd agent --config FILE`, or `GOSSIPD_CONFIG`).
//!
//! Contract:
//!
//! * Every `gossipd agent` flag has a key: the flag's long name with `-` turned into `_`
//!   (`--data-dir` → `data_dir`, `--seed` → `seed`). Flags without a value (`--dev`,
//!   `--dns-allow-warning`) are booleans; `seed` is a string or an array of strings;
//!   `gossip_interval_ms` is an integer; everything else is a string, validated exactly as the
//!   flag's value is.
//! * A flag given on the command line wins over the file's key; the file wins over the flag's
//!   default. (`seed` on the command line replaces the file's list, it does not add to it.)
//! * An unknown key, a value of the wrong type or a value the flag would refuse is an error that
//!   names the file, the key and the reason; the agent does not start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use toml::Value;

use crate::cli::{self, AgentArgs, HostPort, LogFormat, RequireToken, Rrl};

/// The keys, in the order the documentation lists them.
pub const KEYS: &[&str] = &[
    "dev",
    "node",
    "bind",
    "advertise",
    "seed",
    "dns",
    "http",
    "data_dir",
    "config_dir",
    "gc_grace",
    "failed_grace",
    "dns_allow_warning",
    "leave_on_terminate",
    "domain",
    "datacenter",
    "wan_bind",
    "wan_advertise",
    "wan_seed",
    "cluster_key_file",
    "key_rotation",
    "gossip_interval_ms",
    "log_format",
    "log_level",
    "ca_file",
    "cert_file",
    "identity_file",
    "max_clock_skew",
    "enable_script_checks",
    "enable_local_script_checks",
    "http_require_token",
    "http_read_token_file",
    "http_write_token_file",
    "http_allowed_hosts",
    "http_max_conns",
    "http_header_timeout",
    "dns_tcp_per_source",
    "dns_rrl",
    "dns_rrl_rate",
    "dns_rrl_slip",
    "recursor",
    "node_meta",
];

/// One key's value, converted and validated.
#[derive(Debug, Clone, PartialEq)]
enum Setting {
    Dev(bool),
    Node(String),
    Bind(SocketAddr),
    Advertise(SocketAddr),
    Seeds(Vec<HostPort>),
    Dns(SocketAddr),
    Http(SocketAddr),
    DataDir(PathBuf),
    ConfigDir(PathBuf),
    GcGrace(Duration),
    FailedGrace(Duration),
    DnsAllowWarning(bool),
    LeaveOnTerminate(bool),
    Domain(String),
    ClusterKeyFile(PathBuf),
    KeyRotation(Duration),
    GossipIntervalMs(u64),
    LogFormat(LogFormat),
    LogLevel(String),
    CaFiles(Vec<PathBuf>),
    CertFile(PathBuf),
    IdentityFile(PathBuf),
    MaxClockSkew(Duration),
    EnableScriptChecks(bool),
    EnableLocalScriptChecks(bool),
    HttpRequireToken(RequireToken),
    HttpReadTokenFile(PathBuf),
    HttpWriteTokenFile(PathBuf),
    HttpAllowedHosts(Vec<String>),
    HttpMaxConns(u32),
    HttpHeaderTimeout(Duration),
    DnsTcpPerSource(u32),
    DnsRrl(Rrl),
    DnsRrlRate(u32),
    DnsRrlSlip(u32),
    Recursors(Vec<SocketAddr>),
    NodeMeta(Vec<(String, String)>),
    Datacenter(String),
    WanBind(SocketAddr),
    WanAdvertise(SocketAddr),
    WanSeeds(Vec<HostPort>),
}

impl Setting {
    /// The clap argument id the setting stands for (the `AgentArgs` field name).
    fn arg_id(&self) -> &'static str {
        match self {
            Setting::Dev(_) => "dev",
            Setting::Node(_) => "node",
            Setting::Bind(_) => "bind",
            Setting::Advertise(_) => "advertise",
            Setting::Seeds(_) => "seeds",
            Setting::Dns(_) => "dns",
            Setting::Http(_) => "http",
            Setting::DataDir(_) => "data_dir",
            Setting::ConfigDir(_) => "config_dir",
            Setting::GcGrace(_) => "gc_grace",
            Setting::FailedGrace(_) => "failed_grace",
            Setting::DnsAllowWarning(_) => "dns_allow_warning",
            Setting::LeaveOnTerminate(_) => "leave_on_terminate",
            Setting::Domain(_) => "domain",
            Setting::ClusterKeyFile(_) => "cluster_key_file",
            Setting::KeyRotation(_) => "key_rotation",
            Setting::GossipIntervalMs(_) => "gossip_interval_ms",
            Setting::LogFormat(_) => "log_format",
            Setting::LogLevel(_) => "log_level",
            Setting::CaFiles(_) => "ca_files",
            Setting::CertFile(_) => "cert_file",
            Setting::IdentityFile(_) => "identity_file",
            Setting::MaxClockSkew(_) => "max_clock_skew",
            Setting::EnableScriptChecks(_) => "enable_script_checks",
            Setting::EnableLocalScriptChecks(_) => "enable_local_script_checks",
            Setting::HttpRequireToken(_) => "http_require_token",
            Setting::HttpReadTokenFile(_) => "http_read_token_file",
            Setting::HttpWriteTokenFile(_) => "http_write_token_file",
            Setting::HttpAllowedHosts(_) => "http_allowed_hosts",
            Setting::HttpMaxConns(_) => "http_max_conns",
            Setting::HttpHeaderTimeout(_) => "http_header_timeout",
            Setting::DnsTcpPerSource(_) => "dns_tcp_per_source",
            Setting::DnsRrl(_) => "dns_rrl",
            Setting::DnsRrlRate(_) => "dns_rrl_rate",
            Setting::DnsRrlSlip(_) => "dns_rrl_slip",
            Setting::Recursors(_) => "recursors",
            Setting::NodeMeta(_) => "node_meta",
            Setting::Datacenter(_) => "datacenter",
            Setting::WanBind(_) => "wan_bind",
            Setting::WanAdvertise(_) => "wan_advertise",
            Setting::WanSeeds(_) => "wan_seeds",
        }
    }

    fn apply(self, a: &mut AgentArgs) {
        match self {
            Setting::Dev(v) => a.dev = v,
            Setting::Node(v) => a.node = Some(v),
            Setting::Bind(v) => a.bind = Some(v),
            Setting::Advertise(v) => a.advertise = Some(v),
            Setting::Seeds(v) => a.seeds = v,
            Setting::Dns(v) => a.dns = v,
            Setting::Http(v) => a.http = v,
            Setting::DataDir(v) => a.data_dir = Some(v),
            Setting::ConfigDir(v) => a.config_dir = Some(v),
            Setting::GcGrace(v) => a.gc_grace = v,
            Setting::FailedGrace(v) => a.failed_grace = v,
            Setting::DnsAllowWarning(v) => a.dns_allow_warning = v,
            Setting::LeaveOnTerminate(v) => a.leave_on_terminate = v,
            Setting::Domain(v) => a.domain = v,
            Setting::ClusterKeyFile(v) => a.cluster_key_file = Some(v),
            Setting::KeyRotation(v) => a.key_rotation = v,
            Setting::GossipIntervalMs(v) => a.gossip_interval_ms = v,
            Setting::LogFormat(v) => a.log_format = v,
            Setting::LogLevel(v) => a.log_level = v,
            Setting::CaFiles(v) => a.ca_files = v,
            Setting::CertFile(v) => a.cert_file = Some(v),
            Setting::IdentityFile(v) => a.identity_file = Some(v),
            Setting::MaxClockSkew(v) => a.max_clock_skew = v,
            Setting::EnableScriptChecks(v) => a.enable_script_checks = v,
            Setting::EnableLocalScriptChecks(v) => a.enable_local_script_checks = v,
            Setting::HttpRequireToken(v) => a.http_require_token = v,
            Setting::HttpReadTokenFile(v) => a.http_read_token_file = Some(v),
            Setting::HttpWriteTokenFile(v) => a.http_write_token_file = Some(v),
            Setting::HttpAllowedHosts(v) => a.http_allowed_hosts = v,
            Setting::HttpMaxConns(v) => a.http_max_conns = v,
            Setting::HttpHeaderTimeout(v) => a.http_header_timeout = v,
            Setting::DnsTcpPerSource(v) => a.dns_tcp_per_source = v,
            Setting::DnsRrl(v) => a.dns_rrl = v,
            Setting::DnsRrlRate(v) => a.dns_rrl_rate = v,
            Setting::DnsRrlSlip(v) => a.dns_rrl_slip = v,
            Setting::Recursors(v) => a.recursors = v,
            Setting::NodeMeta(v) => a.node_meta = v,
            Setting::Datacenter(v) => a.datacenter = v,
            Setting::WanBind(v) => a.wan_bind = Some(v),
            Setting::WanAdvertise(v) => a.wan_advertise = Some(v),
            Setting::WanSeeds(v) => a.wan_seeds = v,
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

fn string<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("expected {what}, got {}", type_name(v)))
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| format!("expected true or false, got {}", type_name(v)))
}

fn addr(v: &Value) -> Result<SocketAddr, String> {
    let s = string(v, "an address like \"127.0.0.1:8600\"")?;
    s.parse().map_err(|e| format!("{s:?}: {e} (want IP:PORT)"))
}

fn path(v: &Value) -> Result<PathBuf, String> {
    string(v, "a path").map(PathBuf::from)
}

fn duration(v: &Value) -> Result<Duration, String> {
    let s = string(v, "a duration like \"90s\", \"30m\" or \"4h\"")?;
    cli::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn seeds(v: &Value) -> Result<Vec<HostPort>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        let s = string(item, "a seed address string (or an array of them)")?;
        for part in s.split(',') {
            out.push(part.parse::<HostPort>()?);
        }
    }
    Ok(out)
}

/// A resolver address or an array of them (`recursor`).
fn recursors(v: &Value) -> Result<Vec<SocketAddr>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .map(|item| cli::parse_recursor(string(item, "a resolver address (or an array of them)")?))
        .collect()
}

/// An integer in `lo..=hi`.
fn int_in(v: &Value, lo: i64, hi: i64) -> Result<u32, String> {
    let n = v.as_integer().ok_or_else(|| format!("expected an integer, got {}", type_name(v)))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("{n} is not in {lo}..={hi}"));
    }
    Ok(n as u32)
}

/// A string or an array of strings, each checked by `check`.
fn strings(v: &Value, what: &str, check: fn(&str) -> Result<String, String>) -> Result<Vec<String>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    items.into_iter().map(|item| check(string(item, what)?)).collect()
}

/// Converts and validates one key.
fn setting(key: &str, v: &Value) -> Result<Setting, String> {
    Ok(match key {
        "dev" => Setting::Dev(boolean(v)?),
        "node" => Setting::Node(cli::parse_node_name(string(v, "a node name")?)?),
        "bind" => Setting::Bind(addr(v)?),
        "advertise" => Setting::Advertise(cli::parse_advertise(string(v, "an address like \"10.0.0.5:7946\"")?)?),
        "seed" => Setting::Seeds(seeds(v)?),
        "dns" => Setting::Dns(addr(v)?),
        "http" => Setting::Http(addr(v)?),
        "data_dir" => Setting::DataDir(path(v)?),
        "config_dir" => Setting::ConfigDir(path(v)?),
        "gc_grace" => Setting::GcGrace(duration(v)?),
        "failed_grace" => Setting::FailedGrace(duration(v)?),
        "dns_allow_warning" => Setting::DnsAllowWarning(boolean(v)?),
        "leave_on_terminate" => Setting::LeaveOnTerminate(boolean(v)?),
        "domain" => Setting::Domain(cli::parse_domain(string(v, "a DNS domain")?)?),
        "datacenter" => Setting::Datacenter(cli::parse_datacenter(string(v, "a datacenter name")?)?),
        "wan_bind" => Setting::WanBind(addr(v)?),
        "wan_advertise" => {
            Setting::WanAdvertise(cli::parse_advertise(string(v, "an address like \"10.0.0.5:8302\"")?)?)
        }
        "wan_seed" => Setting::WanSeeds(seeds(v)?),
        "cluster_key_file" => Setting::ClusterKeyFile(path(v)?),
        "key_rotation" => Setting::KeyRotation(duration(v)?),
        "gossip_interval_ms" => {
            let n =
                v.as_integer().ok_or_else(|| format!("expected an integer (milliseconds), got {}", type_name(v)))?;
            if !(10..=600_000).contains(&n) {
                return Err(format!("{n} is not in 10..=600000"));
            }
            Setting::GossipIntervalMs(n as u64)
        }
        "log_format" => Setting::LogFormat(match string(v, "\"text\" or \"json\"")? {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(format!("{other:?}: expected \"text\" or \"json\"")),
        }),
        "log_level" => Setting::LogLevel(string(v, "a log filter like \"info\"")?.to_string()),
        "ca_file" => Setting::CaFiles(match v {
            Value::Array(a) => a.iter().map(path).collect::<Result<_, _>>()?,
            other => vec![path(other)?],
        }),
        "cert_file" => Setting::CertFile(path(v)?),
        "identity_file" => Setting::IdentityFile(path(v)?),
        "max_clock_skew" => Setting::MaxClockSkew(duration(v)?),
        "enable_script_checks" => Setting::EnableScriptChecks(boolean(v)?),
        "enable_local_script_checks" => Setting::EnableLocalScriptChecks(boolean(v)?),
        "http_require_token" => Setting::HttpRequireToken(match string(v, "\"none\", \"write\" or \"read\"")? {
            "none" => RequireToken::None,
            "write" => RequireToken::Write,
            "read" => RequireToken::Read,
            other => return Err(format!("{other:?}: expected \"none\", \"write\" or \"read\"")),
        }),
        "http_read_token_file" => Setting::HttpReadTokenFile(path(v)?),
        "http_write_token_file" => Setting::HttpWriteTokenFile(path(v)?),
        "http_allowed_hosts" => {
            Setting::HttpAllowedHosts(strings(v, "a host name (or an array of them)", cli::parse_allowed_host)?)
        }
        "http_max_conns" => {
            let n = v.as_integer().ok_or_else(|| format!("expected an integer, got {}", type_name(v)))?;
            if !(1..=65_536).contains(&n) {
                return Err(format!("{n} is not in 1..=65536"));
            }
            Setting::HttpMaxConns(n as u32)
        }
        "http_header_timeout" => Setting::HttpHeaderTimeout(duration(v)?),
        "dns_tcp_per_source" => Setting::DnsTcpPerSource(int_in(v, 1, 256)?),
        "dns_rrl" => Setting::DnsRrl(match string(v, "\"auto\", \"on\" or \"off\"")? {
            "auto" => Rrl::Auto,
            "on" => Rrl::On,
            "off" => Rrl::Off,
            other => return Err(format!("{other:?}: expected \"auto\", \"on\" or \"off\"")),
        }),
        "dns_rrl_rate" => Setting::DnsRrlRate(int_in(v, 1, 100_000)?),
        "dns_rrl_slip" => Setting::DnsRrlSlip(int_in(v, 0, 100)?),
        "recursor" => Setting::Recursors(recursors(v)?),
        "node_meta" => Setting::NodeMeta(match v {
            Value::Table(t) => t
                .iter()
                .map(|(k, v)| cli::parse_node_meta(&format!("{k}={}", string(v, "a string value")?)))
                .collect::<Result<_, _>>()?,
            other => return Err(format!("expected a table like {{ rack = \"r1\" }}, got {}", other.type_str())),
        }),
        _ => return Err("unknown key".to_string()),
    })
}

/// Parses a configuration file's text into its settings, in file order. Errors name the key
/// and the reason (the caller adds the file name).
fn parse(text: &str) -> Result<Vec<Setting>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(l) => format!("invalid TOML at line {l}: {}", e.message().trim()),
            None => format!("invalid TOML: {}", e.message().trim()),
        }
    })?;
    let mut out = Vec::new();
    for (key, value) in &table {
        if !KEYS.contains(&key.as_str()) {
            let hint =
                KEYS.iter().find(|k| close(k, key)).map(|k| format!(" (did you mean \"{k}\"?)")).unwrap_or_default();
            return Err(format!("unknown key {key:?}{hint}; keys are the agent's flag names with '_' for '-'"));
        }
        out.push(setting(key, value).map_err(|reason| format!("key {key:?}: {reason}"))?);
    }
    Ok(out)
}

/// Whether two keys differ by at most two edits (a cheap typo hint).
fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

/// Reads and checks `file` without applying it (`gossipd validate`): the number of settings.
pub fn check(file: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("config file {}: cannot read it: {e}", file.display()))?;
    let settings = parse(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", file.display()))?;
    Ok(settings.len())
}

/// Reads `file` and applies its settings to `args`, except those whose flag `matches` says was
/// given on the command line.
pub fn apply(file: &Path, args: &mut AgentArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("config file {}: cannot read it: {e}", file.display()))?;
    let settings = parse(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", file.display()))?;
    for s in settings {
        if matches.value_source(s.arg_id()) != Some(ValueSource::CommandLine) {
            s.apply(args);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::cli::{Cli, Command};

    fn agent(argv: &[&str], file: &str) -> Result<AgentArgs, String> {
        let matches =
            Cli::command().try_get_matches_from(std::iter::once("gossipd").chain(argv.iter().copied())).unwrap();
        let Command::Agent(mut a) = Cli::from_arg_matches(&matches).unwrap().command else { panic!() };
        let sub = matches.subcommand_matches("agent").unwrap();
        for s in parse(file)? {
            if sub.value_source(s.arg_id()) != Some(ValueSource::CommandLine) {
                s.apply(&mut a);
            }
        }
        Ok(a)
    }

    const FULL: &str = r#"
        dev = true
        node = "alpha"
        bind = "127.0.0.1:7000"
        advertise = "10.0.0.1:7000"
        seed = ["127.0.0.1:7001", "localhost:7002"]
        dns = "127.0.0.1:8601"
        http = "127.0.0.1:8501"
        data_dir = "/var/lib/g"
        config_dir = "/etc/g.d"
        gc_grace = "90m"
        failed_grace = "20m"
        dns_allow_warning = true
        domain = "consul"
        cluster_key_file = "/etc/g.key"
        key_rotation = "30m"
        gossip_interval_ms = 200
        log_format = "json"
        log_level = "debug"
        enable_script_checks = true
        enable_local_script_checks = true
        http_require_token = "write"
        http_read_token_file = "/etc/g/read.token"
        http_write_token_file = "/etc/g/write.token"
        http_allowed_hosts = ["agent.example"]
        http_max_conns = 64
        http_header_timeout = "5s"
        dns_tcp_per_source = 4
        dns_rrl = "on"
        dns_rrl_rate = 50
        dns_rrl_slip = 0
        recursor = ["10.0.0.53", "[fd00::53]:5353"]
    "#;

    #[test]
    fn every_flag_has_a_key() {
        let a = agent(&["agent", "--config", "x"], FULL).unwrap();
        assert!(a.dev && a.dns_allow_warning);
        assert_eq!(a.node.as_deref(), Some("alpha"));
        assert_eq!(a.bind_addr(), "127.0.0.1:7000".parse().unwrap());
        assert_eq!(a.advertise, Some("10.0.0.1:7000".parse().unwrap()));
        assert_eq!(a.seeds.len(), 2);
        assert_eq!(a.dns, "127.0.0.1:8601".parse().unwrap());
        assert_eq!(a.http, "127.0.0.1:8501".parse().unwrap());
        assert_eq!(a.data_dir.as_deref(), Some(Path::new("/var/lib/g")));
        assert_eq!(a.config_dir.as_deref(), Some(Path::new("/etc/g.d")));
        assert_eq!(a.gc_grace, Duration::from_secs(5400));
        assert_eq!(a.failed_grace, Duration::from_secs(1200));
        assert_eq!(a.domain, "consul");
        assert_eq!(a.cluster_key_file.as_deref(), Some(Path::new("/etc/g.key")));
        assert_eq!(a.key_rotation, Duration::from_secs(1800));
        assert_eq!(a.gossip_interval_ms, 200);
        assert_eq!(a.log_format, LogFormat::Json);
        assert_eq!(a.log_level, "debug");
        assert!(a.enable_script_checks && a.enable_local_script_checks);
        assert_eq!(a.http_require_token, RequireToken::Write);
        assert_eq!(a.http_read_token_file.as_deref(), Some(Path::new("/etc/g/read.token")));
        assert_eq!(a.http_write_token_file.as_deref(), Some(Path::new("/etc/g/write.token")));
        assert_eq!(a.http_allowed_hosts, ["agent.example"]);
        assert_eq!(a.http_max_conns, 64);
        assert_eq!(a.http_header_timeout, Duration::from_secs(5));
        assert_eq!((a.dns_tcp_per_source, a.dns_rrl, a.dns_rrl_rate, a.dns_rrl_slip), (4, Rrl::On, 50, 0));
        let recursors: Vec<SocketAddr> = vec!["10.0.0.53:53".parse().unwrap(), "[fd00::53]:5353".parse().unwrap()];
        assert_eq!(a.recursors, recursors);
        // Every agent flag (but --config itself, and the hidden test-only ones) is a key.
        let cmd = Cli::command();
        let agent_cmd = cmd.find_subcommand("agent").unwrap();
        for arg in agent_cmd.get_arguments().filter(|a| !a.is_hide_set()).filter_map(|a| a.get_long()) {
            if arg != "config" && arg != "help" {
                assert!(KEYS.contains(&arg.replace('-', "_").as_str()), "--{arg} has no config key");
            }
        }
    }

    #[test]
    fn command_line_wins_over_the_file_and_the_file_over_defaults() {
        let a = agent(&["agent", "--config", "x", "--node", "cli", "--seed", "127.0.0.1:9"], FULL).unwrap();
        assert_eq!(a.node.as_deref(), Some("cli"));
        assert_eq!(a.seeds.len(), 1, "the command line's seeds replace the file's");
        assert_eq!(a.gossip_interval_ms, 200, "the file beats the default");
        let a = agent(&["agent", "--config", "x", "--gossip-interval-ms", "1000"], FULL).unwrap();
        assert_eq!(a.gossip_interval_ms, 1000, "a flag equal to its default still wins");
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        for (text, want) in [
            ("dns_adress = \"127.0.0.1:1\"", "unknown key \"dns_adress\""),
            ("gossip_intervl_ms = 200", "unknown key \"gossip_intervl_ms\" (did you mean \"gossip_interval_ms\"?)"),
            ("gossip_interval_ms = \"fast\"", "key \"gossip_interval_ms\": expected an integer"),
            ("gossip_interval_ms = 5", "key \"gossip_interval_ms\": 5 is not in 10..=600000"),
            ("gc_grace = 90", "key \"gc_grace\": expected a duration like \"90s\""),
            ("gc_grace = \"soon\"", "key \"gc_grace\": \"soon\": use a number with a unit"),
            ("node = \"a.b\"", "key \"node\": must be a DNS label"),
            ("dev = \"yes\"", "key \"dev\": expected true or false, got a string"),
            ("dns = \"localhost:53\"", "key \"dns\": \"localhost:53\""),
            ("seed = [1]", "key \"seed\": expected a seed address"),
            ("log_format = \"xml\"", "key \"log_format\": \"xml\": expected"),
            ("enable_script_checks = 1", "key \"enable_script_checks\": expected true or false"),
            ("http_require_token = \"all\"", "key \"http_require_token\": \"all\": expected"),
            ("http_allowed_hosts = [\"a:80\"]", "key \"http_allowed_hosts\": \"a:80\" is not a host name"),
            ("http_max_conns = 0", "key \"http_max_conns\": 0 is not in 1..=65536"),
            ("dns_rrl = \"sometimes\"", "key \"dns_rrl\": \"sometimes\": expected"),
            ("dns_rrl_slip = 101", "key \"dns_rrl_slip\": 101 is not in 0..=100"),
            ("node = ", "invalid TOML at line 1"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../dist/gossipd.toml");
        let settings = parse(text).unwrap();
        assert!(settings.len() >= 5, "{settings:?}");
        // With every commented key uncommented too.
        let all: String = text.lines().map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")).unwrap_or(l)).fold(
            String::new(),
            |mut acc, l| {
                acc.push_str(l);
                acc.push('\n');
                acc
            },
        );
        let keys: Vec<&str> = parse(&all).unwrap().iter().map(Setting::arg_id).collect();
        assert_eq!(keys.len(), KEYS.len(), "the example shows every key: {keys:?}");
    }
}
