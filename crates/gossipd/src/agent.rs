//! `gossipd agent`: binds the sockets, restores the node from its data directory, starts the
//! gossip driver, the DNS server and the HTTP API, and runs until SIGINT/SIGTERM, when it
//! announces its leave, flushes and exits 0. SIGHUP re-reads `--config-dir`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use gossip_core::secure::SecureConfig;
use gossip_core::secure::keys::{ClusterKey, Keyring};
use gossip_core::{CommandError, Config, Gossip};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cli::{AgentArgs, RequireToken, default_node_name};
use crate::driver::{Command, Driver};
use crate::http::{self, Api};
use crate::persist::DataDir;
use crate::service_def::{self, ServiceDef, Weights};

/// Name and id of the service a `--dev` agent registers for itself.
pub const DEV_SERVICE: &str = "gossipd";

/// File in the data directory where the agent writes the addresses it bound (for scripts and
/// tests that start it on port 0).
pub const ADDRS_FILE: &str = "addrs.json";

fn data_dir_path(args: &AgentArgs) -> anyhow::Result<PathBuf> {
    match (&args.data_dir, args.dev) {
        (Some(d), _) => Ok(d.clone()),
        (None, true) => Ok(std::env::temp_dir().join(format!("gossipd-dev-{}", std::process::id()))),
        (None, false) => bail!("--data-dir (or data_dir in the --config file) is required unless --dev"),
    }
}

/// 32 bytes from the OS random number generator; there is no fallback (a clock is no secret).
fn seed32() -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    Ok(b)
}

fn random_seed() -> anyhow::Result<u64> {
    let b = seed32()?;
    Ok(u64::from_le_bytes(b[..8].try_into().unwrap_or_default()))
}

/// The core's key material source: the OS RNG, read for every key (nothing the process keeps
/// derives past or future keys). A failure after start is fatal: keys must never be weak.
fn os_entropy() -> gossip_core::secure::Entropy {
    gossip_core::secure::Entropy(Arc::new(|buf: &mut [u8]| {
        if let Err(e) = getrandom::fill(buf) {
            eprintln!("error: the OS random number generator failed: {e}");
            std::process::abort();
        }
    }))
}

/// Binds DNS over UDP and TCP on the same port (retrying when port 0 picks one that TCP cannot
/// have).
async fn bind_dns(addr: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr).await.with_context(|| format!("cannot bind DNS (UDP) on {addr}"))?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() != 0 => return Err(e).with_context(|| format!("cannot bind DNS (TCP) on {addr}")),
            Err(_) => continue,
        }
    }
    bail!("cannot find a free port for DNS on {}", addr.ip())
}

/// Why the agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGINT: leave, then exit.
    Interrupt,
    /// SIGTERM: exit (leave only with `--leave-on-terminate`).
    Terminate,
    /// `PUT /v1/agent/leave` (`gossipd leave`): leave, then exit.
    LeaveRequested,
}

/// Resolves when SIGINT or SIGTERM arrives, or a leave is requested through the API.
async fn termination(leave: Arc<tokio::sync::Notify>) -> Stop {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Stop::Interrupt,
                () = leave.notified() => return Stop::LeaveRequested,
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Stop::Interrupt,
        _ = term.recv() => Stop::Terminate,
        () = leave.notified() => Stop::LeaveRequested,
    }
}

/// The local services to serve at start: what the API registered before (persisted), then the
/// config directory's definitions (which win on the same ID), then the dev self-registration;
/// with the ids that came from the config directory.
fn initial_services(
    args: &AgentArgs,
    data: &DataDir,
    http_port: u16,
) -> anyhow::Result<(Vec<ServiceDef>, Vec<String>)> {
    let policy = script_policy(args);
    let mut by_id = std::collections::BTreeMap::new();
    for d in data.load_services().context("cannot load the stored registrations")? {
        by_id.insert(d.id.clone(), d);
    }
    let mut config_ids = Vec::new();
    if let Some(dir) = &args.config_dir {
        let defs = service_def::load_config_dir(dir)?;
        refuse_config_dir_exec(&defs, dir, policy)?;
        for d in defs {
            config_ids.push(d.id.clone());
            by_id.insert(d.id.clone(), d);
        }
    }
    // A stored registration the config directory does not define came through the API: its
    // exec checks need what the API's would.
    if !policy.api {
        for d in by_id.values().filter(|d| !config_ids.contains(&d.id)) {
            if let Some(check) = crate::checks::first_exec(d) {
                bail!(
                    "service {:?} stored in {} has an exec check ({check:?}), and exec checks from the API are \
                     disabled: start with --enable-script-checks, or remove the service from that file",
                    d.id,
                    data.path().join(crate::persist::SERVICES_FILE).display()
                );
            }
        }
    }
    if args.dev {
        by_id.entry(DEV_SERVICE.to_string()).or_insert_with(|| ServiceDef {
            id: DEV_SERVICE.into(),
            name: DEV_SERVICE.into(),
            address: None,
            port: http_port,
            tags: vec!["dev".into()],
            meta: Default::default(),
            weights: Weights { passing: 1, warning: 1 },
            checks: Vec::new(),
        });
    }
    Ok((by_id.into_values().collect(), config_ids))
}

/// The `--enable-script-checks` / `--enable-local-script-checks` policy.
fn script_policy(args: &AgentArgs) -> crate::checks::ScriptPolicy {
    crate::checks::ScriptPolicy { api: args.enable_script_checks, config_dir: args.enable_local_script_checks }
}

/// Refuses config-directory definitions with exec checks unless the policy allows them.
fn refuse_config_dir_exec(
    defs: &[ServiceDef],
    dir: &std::path::Path,
    policy: crate::checks::ScriptPolicy,
) -> anyhow::Result<()> {
    if policy.allows_config_dir() {
        return Ok(());
    }
    for d in defs {
        if let Some(check) = crate::checks::first_exec(d) {
            bail!(
                "service {:?} in --config-dir {}: check {check:?} has Args (an exec check), and exec checks are \
                 disabled: start with --enable-local-script-checks (config directory only) or --enable-script-checks",
                d.id,
                dir.display()
            );
        }
    }
    Ok(())
}

/// The HTTP API's tokens and door checks. An address beyond loopback needs every request to
/// carry a token (`--http-require-token read`).
fn http_guard(args: &AgentArgs, data: &DataDir) -> anyhow::Result<http::guard::Guard> {
    use crate::tokens::{self, Power};
    if !args.http.ip().is_loopback() && args.http_require_token != RequireToken::Read {
        bail!(
            "--http {} is not a loopback address: anyone who reaches it could read and change this agent; \
             add --http-require-token read (every request then needs a token: DATA_DIR/{}, \
             --http-read-token-file, --http-write-token-file)",
            args.http,
            tokens::OPERATOR_TOKEN_FILE
        );
    }
    let mut set = tokens::Tokens::default();
    set.add(&tokens::operator_token(data)?, Power::Operator);
    if let Some(f) = &args.http_write_token_file {
        set.add(&tokens::read_token_file(f, "--http-write-token-file")?, Power::Write);
    }
    if let Some(f) = &args.http_read_token_file {
        set.add(&tokens::read_token_file(f, "--http-read-token-file")?, Power::Read);
    }
    Ok(http::guard::Guard {
        tokens: set,
        require: args.http_require_token,
        allowed_hosts: args.http_allowed_hosts.clone(),
    })
}

/// On each SIGHUP until `stop`: re-reads the config directory and hands it to the driver. A
/// directory that does not load (bad file, duplicate id) is logged and changes nothing.
async fn reload_on_hup(
    mut hup: tokio::signal::unix::Signal,
    dir: Option<PathBuf>,
    policy: crate::checks::ScriptPolicy,
    commands: mpsc::Sender<Command>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = hup.recv() => if r.is_none() { return },
            () = &mut stop => return,
        }
        let Some(dir) = dir.clone() else {
            tracing::warn!("SIGHUP: no --config-dir, nothing to reload");
            continue;
        };
        tracing::info!(dir = %dir.display(), "SIGHUP: reloading service definitions");
        let loaded = tokio::task::spawn_blocking(move || {
            let defs = service_def::load_config_dir(&dir)?;
            refuse_config_dir_exec(&defs, &dir, policy)?;
            anyhow::Ok(defs)
        })
        .await;
        let defs = match loaded {
            Ok(Ok(defs)) => defs,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reload failed: keeping the running services as they are");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed: keeping the running services as they are");
                continue;
            }
        };
        let (tx, rx) = oneshot::channel();
        if commands.send(Command::ReloadConfig(defs, tx)).await.is_err() {
            return;
        }
        let Ok(report) = rx.await else { return };
        for e in &report.errors {
            tracing::error!(error = %e, "reload: change refused");
        }
        tracing::info!(registered = ?report.registered, deregistered = ?report.deregistered,
            unchanged = report.unchanged, errors = report.errors.len(), "reload done");
    }
}

/// Makes `file`'s identity the data directory's: copied in when the directory has none yet,
/// refused when it holds another.
fn adopt_identity(data: &DataDir, file: &std::path::Path) -> anyhow::Result<()> {
    let secret = crate::ca::read_key(file)?;
    let wanted = gossip_core::secure::keys::Identity::from_secret(secret).public();
    match data.read(crate::persist::IDENTITY_FILE)? {
        None => {
            data.write_atomic(
                crate::persist::IDENTITY_FILE,
                format!("{}\n", crate::keys::encode_key(&secret)).as_bytes(),
            )?;
            Ok(())
        }
        Some(bytes) => {
            let held = crate::keys::decode_key(String::from_utf8_lossy(&bytes).trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", data.path().join(crate::persist::IDENTITY_FILE).display()))?;
            if gossip_core::secure::keys::Identity::from_secret(held).public() != wanted {
                bail!(
                    "--identity-file {} is not the identity the data directory {} already holds: start with a \
                     fresh --data-dir, or sign a certificate for the held identity (gossipd ca sign --identity-pub)",
                    file.display(),
                    data.path().display()
                );
            }
            Ok(())
        }
    }
}

/// The trust policy and this node's certificate: from `--ca-file` and `--cert-file`, or, with
/// `--dev` and neither, a CA made in the data directory that certifies this node for every
/// service with the operator role.
fn authority(
    args: &AgentArgs,
    data: &DataDir,
    node: &crate::persist::NodeRecord,
    cert: Option<gossip_core::cert::Certificate>,
) -> anyhow::Result<(Option<gossip_core::cert::Trust>, Option<gossip_core::cert::Certificate>)> {
    use gossip_core::cert::{CertRequest, Certificate, ROLE_OPERATOR, Trust};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if args.dev && args.ca_files.is_empty() && cert.is_none() {
        let ca_dir = data.path().join("dev-ca");
        if !ca_dir.join(crate::ca::CA_KEY).exists() {
            crate::ca::create(&ca_dir, "gossipd-dev-ca", Duration::from_secs(10 * 365 * 86_400))?;
        }
        let (ca, ca_cert) = crate::ca::load_ca(&ca_dir)?;
        let req = CertRequest {
            name: node.name.clone(),
            identity: node.identity.public(),
            services: vec!["*".into()],
            roles: ROLE_OPERATOR,
            max_entries: 0,
            not_before: now.saturating_sub(300),
            not_after: ca_cert.not_after,
        };
        let cert = Certificate::sign(&ca, &req)?;
        tracing::info!(ca = %ca_dir.display(), "--dev: made a cluster CA and certified this node (every service, operator)");
        return Ok((Some(Trust::new(vec![ca_cert])?), Some(cert)));
    }
    let mut cas = Vec::new();
    for f in &args.ca_files {
        cas.extend(crate::ca::read_certs(f)?);
    }
    if let Some(c) = &cert {
        if c.identity != node.identity.public() {
            bail!(
                "--cert-file certifies the identity {}, but this agent's identity is {}: pass the matching \
                 --identity-file (NODE.key from `gossipd ca sign`)",
                crate::keys::encode_key(&c.identity.0),
                crate::keys::encode_key(&node.identity.public().0)
            );
        }
    }
    if cas.is_empty() {
        match &cert {
            Some(_) => tracing::warn!(
                "--cert-file without --ca-file: this agent proves its certificate but \
                accepts peers without one (a step of the rolling migration, docs/SECURITY.md)"
            ),
            None => tracing::warn!(
                "no --ca-file: running with the cluster key only, the weaker mode in which \
                every key holder is a full member (docs/SECURITY.md: Authority)"
            ),
        }
        return Ok((None, cert));
    }
    let trust = Trust::new(cas).context("--ca-file")?;
    let Some(cert) = cert else {
        bail!("--ca-file needs --cert-file: this agent must prove a certificate too (gossipd ca sign)")
    };
    trust.check(&cert, now).map_err(|e| anyhow::anyhow!("--cert-file: the certificate is refused: {e}"))?;
    Ok((Some(trust), Some(cert)))
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let data = DataDir::open(data_dir_path(&args)?)?;
    data.check_permissions()?;
    // Held until the process exits: a second agent on this directory stops here.
    let _lock = data.lock()?;
    let own_cert = match &args.cert_file {
        Some(f) => Some(crate::ca::read_certs(f)?.remove(0)),
        None => None,
    };
    if let Some(f) = &args.identity_file {
        adopt_identity(&data, f)?;
    }
    let name = match (&own_cert, args.node.as_deref()) {
        (Some(c), Some(n)) if c.name != n => {
            bail!("--node {n} contradicts --cert-file, which certifies the name {:?} (drop --node)", c.name)
        }
        (Some(c), _) => Some(c.name.clone()),
        (None, n) => n.map(str::to_string),
    };
    let node = data.start(&default_node_name(), name.as_deref())?;
    let (trust, own_cert) = authority(&args, &data, &node, own_cert)?;
    crate::http::set_datacenter(&args.datacenter);

    let bind = args.bind_addr();
    let socket = UdpSocket::bind(bind).await.with_context(|| format!("cannot bind gossip (UDP) on {bind}"))?;
    raise_recv_buffer(&socket);
    let bound = socket.local_addr()?;
    let advertise = match args.advertise {
        Some(a) => a,
        None if bound.ip().is_unspecified() => {
            bail!("--advertise is required when --bind is {bound}: other agents need a routable address")
        }
        None => bound,
    };
    let pinned = args.resolve_seeds()?;
    let seeds: Vec<SocketAddr> = pinned.iter().map(|(a, _)| *a).collect();
    let pinned_seeds: Vec<(SocketAddr, gossip_core::secure::keys::IdentityPub)> =
        pinned.iter().filter_map(|(a, p)| p.map(|k| (*a, gossip_core::secure::keys::IdentityPub(k)))).collect();
    let (dns_udp, dns_tcp) = bind_dns(args.dns).await?;
    let dns_addr = dns_udp.local_addr()?;
    let guard = http_guard(&args, &data)?;
    let own_token = crate::tokens::operator_token(&data)?;
    let http_listener =
        TcpListener::bind(args.http).await.with_context(|| format!("cannot bind the HTTP API on {}", args.http))?;
    let http_addr = http_listener.local_addr()?;

    let (services, config_ids) = initial_services(&args, &data, http_addr.port())?;
    data.compact_services(&services).context("cannot store the registrations")?;

    let flag_key = crate::keys::flag_key(args.cluster_key_file.as_deref())?;
    let flag_key = match (flag_key, args.dev) {
        (None, true) if data.read(crate::keys::KEYRING_FILE)?.is_none() => {
            let k = crate::keys::generate()?;
            tracing::info!("--dev: generated a cluster key (stored in the data dir's keyring.json)");
            Some(k)
        }
        (k, _) => k,
    };
    let ring = crate::keys::load(&data, flag_key)?;
    crate::keys::save(&data, ring.stamp, &ring.keys).context("cannot store the keyring")?;
    let mut keyring = Keyring::new(ClusterKey::new(ring.keys[0]));
    for k in &ring.keys[1..] {
        keyring.install(ClusterKey::new(*k));
    }
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut secure = SecureConfig::new(node.identity.clone(), keyring, wall, seed32()?);
    secure.entropy = Some(os_entropy());
    secure.trust = trust.map(|mut t| {
        t.skew = args.max_clock_skew.as_secs();
        t
    });
    secure.max_skew = args.max_clock_skew;
    secure.cert = own_cert.map(Arc::new);
    let stored_revocations = crate::ca::load_revocations(&data)?;
    secure.rotation = args.key_rotation;
    secure.overlap = (args.key_rotation / 4).max(Duration::from_secs(60));
    args.testing.configure(&mut secure)?;
    let cfg = Config {
        gossip_interval: Duration::from_millis(args.gossip_interval_ms),
        seeds,
        pinned_seeds,
        gc_grace: args.gc_grace,
        failed_grace: args.failed_grace,
        rng_seed: random_seed()?,
        keyring_stamp: ring.stamp,
        ..Config::default()
    };
    let now = Instant::now();
    let secure_base = secure.clone();
    let mut gossip = Gossip::new(cfg, secure, node.name.clone(), advertise, node.generation, now);
    if !args.node_meta.is_empty() {
        let meta: std::collections::BTreeMap<String, String> = args.node_meta.iter().cloned().collect();
        gossip.set_node_meta(now, meta).context("--node-meta")?;
    }
    args.testing.start(&mut gossip, now);
    for r in stored_revocations {
        if let Err(e) = gossip.add_revocation(now, r) {
            tracing::warn!(error = %e, "a stored revocation is not in force");
        }
    }
    for def in &services {
        match gossip.register(now, def.to_instance()) {
            // Stored before a new certificate narrowed the grants: not served, said loudly.
            Err(e @ (CommandError::NotGranted { .. } | CommandError::Quota { .. })) => {
                tracing::error!(service = %def.id, error = %e, "a stored registration is not served")
            }
            r => r.with_context(|| format!("service {:?}", def.id))?,
        }
    }

    for q in crate::query::load(&data)? {
        let name = format!("{}{}", crate::query::RECORD_PREFIX, q.id);
        gossip.put_app_record(now, &name, Some(q.encode())).with_context(|| format!("prepared query {:?}", q.id))?;
    }

    // The peers of the last run: contacted now, so that each replaces the session of the old
    // process (which this one cannot read) before its probes of this node fail.
    let known_peers = data.load_peers();
    if !known_peers.is_empty() {
        tracing::info!(peers = known_peers.len(), "rejoining the peers of the last run");
        gossip.rejoin(now, &known_peers);
    }

    let mut wan = match args.wan_bind {
        Some(bind) => Some(start_wan(&args, bind, &node, &secure_base, now).await?),
        None => None,
    };
    // LAN members outside the WAN pool relay their reads of other datacenters through one
    // inside it: this record (the WAN address) says which.
    if let Some((w, _)) = &wan {
        gossip
            .put_app_record(now, crate::driver::WAN_RECORD, Some(w.advertise().to_string().into_bytes()))
            .context("the LAN record of the WAN pool")?;
    }
    let (relay_handle, relay_rx) = match &wan {
        Some(_) => (None, None),
        None => {
            let (h, rx) = crate::wan::WanHandle::relay(args.datacenter.clone());
            (Some(h), Some(rx))
        }
    };
    let remote_handle = wan.as_ref().map(|(_, h)| h.clone()).or(relay_handle);

    let dns_snapshot = Arc::new(ArcSwap::from_pointee(dns_front::Snapshot::default()));
    let (mut driver, handle) = Driver::new(gossip, socket, data.clone(), services, dns_snapshot.clone());
    driver.set_config_ids(config_ids);
    driver.set_wan(wan.as_ref().map(|(_, h)| h.clone()), relay_rx);
    // Listen before addrs.json announces the agent: SIGHUP's default action would kill it.
    let hup =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;

    let addrs = serde_json::json!({
        "node": node.name, "id": node.id.to_hex(), "generation": node.generation,
        "identity": crate::keys::encode_key(&node.identity.public().0),
        "gossip": advertise.to_string(), "dns": dns_addr.to_string(), "http": http_addr.to_string(),
        "wan": wan.as_ref().map(|(w, _)| w.advertise().to_string()), "datacenter": args.datacenter,
    });
    data.write_atomic(ADDRS_FILE, addrs.to_string().as_bytes())?;
    tracing::info!(node = %node.name, generation = node.generation, gossip = %advertise, dns = %dns_addr,
        http = %http_addr, data_dir = %data.path().display(), "agent started");

    // One shutdown signal fans out to every task; the driver leaves the cluster first.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let dns_cfg = dns_front::ResolverConfig {
        domain: args.domain.clone(),
        only_passing: !args.dns_allow_warning,
        datacenter: crate::http::datacenter().into(),
        ..Default::default()
    };
    let rrl_on = match args.dns_rrl {
        crate::cli::Rrl::On => true,
        crate::cli::Rrl::Off => false,
        crate::cli::Rrl::Auto => !dns_addr.ip().is_loopback(),
    };
    let rrl = rrl_on.then_some(dns_front::limits::RrlConfig {
        rate: args.dns_rrl_rate,
        slip: args.dns_rrl_slip,
        exempt_loopback: true,
    });
    let tcp_limits =
        dns_front::limits::TcpLimits { per_source: args.dns_tcp_per_source as usize, ..Default::default() };
    let forwarding =
        (!args.recursors.is_empty()).then(|| dns_front::forward::ForwardConfig::new(args.recursors.clone()));
    if !args.recursors.is_empty() {
        tracing::info!(recursors = ?args.recursors, "DNS forwards names outside the domain");
        if !dns_addr.ip().is_loopback() {
            tracing::warn!(%dns_addr, "--recursor with DNS beyond loopback: an open resolver for whoever reaches it");
        }
    }
    let dns = dns_front::DnsServer::new(dns_snapshot, dns_cfg)
        .with_tcp_limits(tcp_limits)
        .with_rrl(rrl)
        .with_forwarding(forwarding)
        .with_remote(Some(Arc::new(crate::http::query::Executor {
            catalog: handle.catalog.clone(),
            checks: handle.checks.clone(),
            wan: remote_handle.clone(),
        }) as Arc<dyn dns_front::server::Remote>));
    if let Some((w, _)) = wan.as_mut() {
        w.set_dns(dns.local_answerer());
    }
    tracing::info!(
        rrl = rrl_on,
        tcp_per_source = args.dns_tcp_per_source,
        http_require_token = ?args.http_require_token,
        operator_token = %data.path().join(crate::tokens::OPERATOR_TOKEN_FILE).display(),
        script_checks = args.enable_script_checks,
        local_script_checks = args.enable_local_script_checks,
        "host protections"
    );
    let dns_stats = dns.stats();
    let dns_task = tokio::spawn(dns.run(dns_udp, dns_tcp, stopped(stop_rx.clone())));
    let reload_task = tokio::spawn(reload_on_hup(
        hup,
        args.config_dir.clone(),
        script_policy(&args),
        handle.commands.clone(),
        stopped(stop_rx.clone()),
    ));
    let leave_requested = Arc::new(tokio::sync::Notify::new());
    let leave_flag_early = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = http::router(
        Api {
            handle,
            dns_stats: Some(dns_stats),
            domain: args.domain.clone(),
            script_checks: args.enable_script_checks,
            leave: Some(leave_requested.clone()),
            wan: remote_handle.clone(),
        },
        guard,
    );
    let wan_task = wan.map(|(mut w, _)| {
        w.set_router(app.clone(), own_token.clone());
        let (rx, flag) = (stop_rx.clone(), leave_flag_early.clone());
        tokio::spawn(w.run(async move {
            stopped(rx).await;
            flag.load(std::sync::atomic::Ordering::SeqCst)
        }))
    });
    let limits =
        http::serve::Limits { max_conns: args.http_max_conns as usize, header_timeout: args.http_header_timeout };
    let http_task = tokio::spawn(http::serve::serve(http_listener, app, limits, stop_rx.clone()));
    let leave_flag = leave_flag_early;
    let driver_stop = {
        let (rx, flag) = (stop_rx.clone(), leave_flag.clone());
        async move {
            stopped(rx).await;
            flag.load(std::sync::atomic::Ordering::SeqCst)
        }
    };
    let driver_task = tokio::spawn(driver.run(driver_stop));

    let why = termination(leave_requested).await;
    let leave = why != Stop::Terminate || args.leave_on_terminate;
    tracing::info!(signal = ?why, leave, "shutting down");
    leave_flag.store(leave, std::sync::atomic::Ordering::SeqCst);
    let _ = stop_tx.send(true);
    driver_task.await.context("gossip driver")??;
    if let Some(t) = wan_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let _ = reload_task.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), dns_task).await {
        tracing::warn!(error = %e, "DNS server");
    }
    tracing::info!("stopped");
    // Live log streams (`gossipd monitor`) end after that line.
    crate::logstream::close(Duration::from_secs(1)).await;
    Ok(())
}

/// Binds and starts the WAN pool's state machine (`--wan-bind`): the LAN pool's identity,
/// certificate, keys and generation, its own socket and seeds, wire version 6 only, and the
/// datacenter in its node metadata.
async fn start_wan(
    args: &AgentArgs,
    bind: std::net::SocketAddr,
    node: &crate::persist::NodeRecord,
    secure_base: &SecureConfig,
    now: Instant,
) -> anyhow::Result<(crate::wan::Wan, crate::wan::WanHandle)> {
    use gossip_core::version::{DEFAULT_MAX, QUERY_MIN, VersionRange};
    let socket = UdpSocket::bind(bind).await.with_context(|| format!("cannot bind the WAN pool (UDP) on {bind}"))?;
    raise_recv_buffer(&socket);
    let bound = socket.local_addr()?;
    let advertise = match args.wan_advertise {
        Some(a) => a,
        None if bound.ip().is_unspecified() => {
            bail!("--wan-advertise is required when --wan-bind is {bound}: other datacenters need a routable address")
        }
        None => bound,
    };
    let pinned = args.resolve_wan_seeds()?;
    let mut secure = secure_base.clone();
    secure.versions = VersionRange::supported(QUERY_MIN, DEFAULT_MAX).context("the WAN pool's wire versions")?;
    secure.seed = seed32()?;
    let cfg = Config {
        gossip_interval: Duration::from_millis(args.gossip_interval_ms),
        seeds: pinned.iter().map(|(a, _)| *a).collect(),
        pinned_seeds: pinned
            .iter()
            .filter_map(|(a, p)| p.map(|k| (*a, gossip_core::secure::keys::IdentityPub(k))))
            .collect(),
        gc_grace: args.gc_grace,
        failed_grace: args.failed_grace,
        rng_seed: random_seed()?,
        ..Config::default()
    };
    let mut gossip = Gossip::new(cfg, secure, node.name.clone(), advertise, node.generation, now);
    let meta = std::collections::BTreeMap::from([(crate::wan::META_DC.to_string(), args.datacenter.clone())]);
    gossip.set_node_meta(now, meta).context("the WAN pool's node metadata")?;
    tracing::info!(wan = %advertise, datacenter = %args.datacenter, seeds = pinned.len(), "WAN pool started");
    Ok(crate::wan::Wan::new(gossip, socket, args.datacenter.clone()))
}

/// Receive buffer asked for the gossip socket (memberlist asks 2 MiB). Linux's default
/// (`net.core.rmem_default`, 208 KiB: about 90 full datagrams) overflowed when 200 agents
/// started at once on two cores: 43% of all datagrams were dropped at full receive buffers while
/// their agents waited for a CPU, and the retransmissions made the storm worse.
const GOSSIP_RECV_BUFFER: usize = 4 << 20;

/// Raises the gossip socket's receive buffer to [`GOSSIP_RECV_BUFFER`]: within
/// `net.core.rmem_max`, or beyond it with CAP_NET_ADMIN (`SO_RCVBUFFORCE`); says so when
/// neither gets it (the fix: a larger `net.core.rmem_max`).
fn raise_recv_buffer(socket: &UdpSocket) {
    use rustix::net::sockopt;
    let have = || sockopt::socket_recv_buffer_size(socket).unwrap_or(0);
    // The kernel doubles the value asked (for its bookkeeping) and reports the doubled size.
    if have() >= GOSSIP_RECV_BUFFER {
        return;
    }
    let _ = sockopt::set_socket_recv_buffer_size(socket, GOSSIP_RECV_BUFFER);
    if have() < GOSSIP_RECV_BUFFER {
        let _ = sockopt::set_socket_recv_buffer_size_force(socket, GOSSIP_RECV_BUFFER);
    }
    let got = have();
    if got < GOSSIP_RECV_BUFFER {
        tracing::warn!(
            bytes = got,
            wanted = GOSSIP_RECV_BUFFER,
            "the gossip socket's receive buffer is small: bursts (a restart of many agents, a large sync) \
             overflow it and datagrams are dropped; raise the limit: sysctl -w net.core.rmem_max={}",
            GOSSIP_RECV_BUFFER
        );
    } else {
        tracing::debug!(bytes = got, "gossip socket receive buffer");
    }
}
