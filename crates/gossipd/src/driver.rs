//! The tokio driver: owns the UDP socket and the [`Gossip`] state machine, feeds it datagrams,
//! the clock and commands, sends what it asks, and republishes views when the table changes.
//! One timer, reset to `poll_timeout()` after every input (as quinn's driver).
//!
//! Bursts are coalesced: commands already queued are handled in the same turn and their
//! registration changes persisted with one write (group commit; each is acknowledged only
//! after that write), and the views (catalog and DNS snapshot, brought up to date in the cost
//! of what changed: [`view::Views`]) are republished at most once per [`PUBLISH_INTERVAL`], the
//! first change after a quiet spell at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use gossip_core::{CommandError, Event, Gossip, Health, NodeId};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::persist::DataDir;
use crate::service_def::ServiceDef;
use crate::view::{self, Catalog};

use crate::checks;

mod registry;
mod relay;
use registry::Staged;
pub use relay::WAN_RECORD;

/// A request to the driver from the HTTP API.
#[derive(Debug)]
pub enum Command {
    /// Register or replace a local service.
    Register(ServiceDef, oneshot::Sender<Result<(), RegisterError>>),
    /// Deregister a local service; answers whether it existed.
    Deregister(String, oneshot::Sender<Result<bool, RegisterError>>),
    /// SIGHUP: the `--config-dir` definitions as just re-read. New and changed ones are
    /// registered, those that came from the directory before but are gone are deregistered;
    /// services registered through the API are left alone.
    ReloadConfig(Vec<ServiceDef>, oneshot::Sender<ReloadReport>),
    /// The local services as registered.
    LocalServices(oneshot::Sender<Vec<ServiceDef>>),
    /// The cluster keyring (primary first), with its stamp.
    Keyring(oneshot::Sender<(u64, Vec<[u8; 32]>)>),
    /// Changes the cluster keyring; answers the new keyring or why not.
    ChangeKeyring(KeyringOp, oneshot::Sender<Result<Vec<[u8; 32]>, KeyringError>>),
    /// A check runner's result.
    CheckResult(checks::CheckResult),
    /// `PUT /v1/agent/check/{pass,warn,fail}/:id`: sets a TTL check's status (and resets its TTL).
    UpdateTtl {
        /// The check.
        check_id: String,
        /// Its new status.
        status: Health,
        /// Its new output (Consul's `note`).
        note: String,
        /// The answer.
        reply: oneshot::Sender<TtlUpdate>,
    },
    /// Installs a CA-signed revocation here (it spreads to every agent); answers whether it was
    /// new, or why it was refused.
    AddRevocation(gossip_core::cert::Revocation, oneshot::Sender<Result<bool, String>>),
    /// The revocations in force.
    Revocations(oneshot::Sender<Vec<gossip_core::cert::Revocation>>),
    /// The latest problems the agent reported (unix seconds, text), oldest first.
    Problems(oneshot::Sender<Vec<(u64, String)>>),
    /// The keyring stamp in force here, and the one each live member (this one included) says
    /// it has in force, by name.
    KeyringStamps(oneshot::Sender<KeyringStamps>),
    /// `PUT /v1/agent/join/:address`: join through that gossip address now.
    Join(std::net::SocketAddr, oneshot::Sender<Result<(), String>>),
    /// `PUT /v1/agent/force-leave/:node`: remove a node (by name) from every agent now;
    /// answers whether it was known.
    ForceLeave(String, oneshot::Sender<Result<bool, String>>),
    /// Creates or replaces a prepared query held by this agent (persisted, then replicated);
    /// answers why not.
    PutQuery(crate::query::PreparedQuery, oneshot::Sender<Result<(), String>>),
    /// Deletes a prepared query held by this agent; answers whether it held it.
    DeleteQuery(String, oneshot::Sender<Result<bool, String>>),
    /// The answer to a LAN member's relayed read, to send back.
    AppAnswer {
        /// The member.
        to: NodeId,
        /// Its query id.
        id: u64,
        /// The answer (empty: no path).
        body: Vec<u8>,
    },
    /// A barrier: answered once every command queued before it is handled and its effect is
    /// in the published views. The HTTP API sends it after each change, so that a client reads
    /// its own writes from this agent at once (views are otherwise rebuilt at most once per
    /// [`PUBLISH_INTERVAL`]).
    Sync(oneshot::Sender<()>),
}

/// Most problems kept for `gossipd info`.
const MAX_PROBLEMS: usize = 32;

/// A one-line summary of an event that is a problem an operator should see, if it is one.
fn problem_of(e: &Event) -> Option<String> {
    let id = |i: &gossip_core::secure::keys::IdentityPub| crate::keys::encode_key(&i.0);
    Some(match e {
        Event::SeedsSilent { seeds, attempts } => format!(
            "no seed answers after {attempts} attempts ({}): a cluster key the seeds do not hold, a seed down or \
             unreachable, or a pin that does not match",
            seeds.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        ),
        Event::Unadmitted { from, count } => {
            format!("{count} handshakes from {from} proved no key of our keyring (a wrong or removed cluster key)")
        }
        Event::DecryptFailures { from, identity, count } => match identity {
            Some(i) => format!("{count} datagrams from {from} (node {}) failed to decrypt in its session", i.node_id()),
            None => format!("{count} handshake messages from {from} failed to decrypt"),
        },
        Event::CertRefused { peer, identity, reason } => {
            format!("refused a handshake from {peer} ({}) for its certificate: {reason}", id(identity))
        }
        Event::Refused { name, reason, .. } => format!("refused the state of {name}: {reason}"),
        Event::ClockSkew { peer, offset_secs, tolerated, .. } => {
            format!("the clock of {peer} is {offset_secs} s off ours (tolerated: {tolerated} s)")
        }
        Event::VersionRefused { peer, ours, theirs, .. } => {
            format!("no common wire version with {peer}: ours {ours}, theirs {theirs}")
        }
        Event::Banned { identity, reason, .. } => format!("banned {}: {reason}", identity.node_id()),
        Event::Excluded { node, reason, .. } => format!("{node} excluded by the cluster: {reason}"),
        Event::MemberFailed(n) => format!("member {n} failed"),
        Event::SelfPreservation { engaged: true, failing, cluster } => {
            format!("self-preservation engaged: {failing} of {cluster} nodes seem to fail at once")
        }
        Event::Revoked(r) => format!("revoked {} ({})", r.identity.node_id(), id(&r.identity)),
        _ => return None,
    })
}

/// The answer to [`Command::KeyringStamps`]: the stamp in force here, and each live member's
/// (by name; `None` if it has not said).
pub type KeyringStamps = (u64, Vec<(String, Option<u64>)>);

/// The answer to [`Command::UpdateTtl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUpdate {
    /// Done.
    Updated,
    /// No such check on this agent.
    Unknown,
    /// The check is not a TTL check.
    NotTtl,
}

/// What a [`Command::ReloadConfig`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Ids registered (new or changed).
    pub registered: Vec<String>,
    /// Ids deregistered (their definition is gone from the directory).
    pub deregistered: Vec<String>,
    /// Definitions found unchanged (left running as they were).
    pub unchanged: usize,
    /// Changes refused, one line each (the rest was applied).
    pub errors: Vec<String>,
}

/// One local check as the API shows it.
#[derive(Debug, Clone)]
pub struct CheckView {
    /// Check id.
    pub id: String,
    /// Check name.
    pub name: String,
    /// Current status.
    pub status: Health,
    /// Notes from the definition.
    pub notes: String,
    /// Output of the last run (or the last TTL note).
    pub output: String,
    /// Owning service id.
    pub service_id: String,
    /// Owning service name.
    pub service_name: String,
}

/// The local checks, swapped in whenever one changes.
#[derive(Debug, Clone)]
pub struct LocalChecks {
    /// This node's name.
    pub node: String,
    /// This node's id.
    pub node_id: NodeId,
    /// Checks by id.
    pub checks: BTreeMap<String, CheckView>,
}

impl LocalChecks {
    /// The checks of local service `service_id`, in id order.
    pub fn of_service<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = &'a CheckView> + 'a {
        self.checks.values().filter(move |c| c.service_id == service_id)
    }
}

/// A check the driver runs; its task is aborted when this is dropped.
#[derive(Debug)]
struct Running {
    def: checks::CheckDef,
    service_id: String,
    service_name: String,
    status: Health,
    output: String,
    run: u64,
    task: tokio::task::JoinHandle<()>,
    ttl_reset: watch::Sender<()>,
    critical_since: Option<Instant>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A keyring change, as `serf keys` / Consul's operator keyring API.
#[derive(Debug, Clone, Copy)]
pub enum KeyringOp {
    /// Accept this key too.
    Install([u8; 32]),
    /// Send with this (installed) key.
    Use([u8; 32]),
    /// Stop accepting this (non-primary) key.
    Remove([u8; 32]),
}

/// Why a keyring change was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The change itself is not possible (unknown key, the primary key, too many keys).
    #[error("{0}")]
    Refused(String),
    /// The new keyring could not be saved, so it was not applied.
    #[error("could not save the keyring, so it was not changed: {0}")]
    Persist(String),
    /// This agent's certificate lacks the operator role.
    #[error("Permission denied: {0}")]
    Forbidden(String),
}

/// Why a registration change was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The core refused it (too large, bad id).
    #[error(transparent)]
    Core(#[from] CommandError),
    /// It could not be persisted; it was rolled back.
    #[error("could not persist the registration: {0}")]
    Persist(String),
    /// A check id is taken by another service.
    #[error("{0}")]
    Check(String),
}

/// What the rest of the agent sees of the driver.
#[derive(Debug, Clone)]
pub struct Handle {
    /// Commands in.
    pub commands: mpsc::Sender<Command>,
    /// The current catalog.
    pub catalog: Arc<ArcSwap<Catalog>>,
    /// Raised with the catalog index at each rebuild (blocking queries wait on it).
    pub index: watch::Receiver<u64>,
    /// Gossip and secure-layer counters, refreshed with each loop turn.
    pub stats: Arc<ArcSwap<(gossip_core::Stats, gossip_core::secure::SecureStats)>>,
    /// The local checks.
    pub checks: Arc<ArcSwap<LocalChecks>>,
}

/// The driver task's state.
pub struct Driver {
    gossip: Gossip,
    socket: UdpSocket,
    data: DataDir,
    local: BTreeMap<String, ServiceDef>,
    commands: mpsc::Receiver<Command>,
    catalog: Arc<ArcSwap<Catalog>>,
    dns: Arc<ArcSwap<dns_front::snapshot::Snapshot>>,
    /// The views as last built (a rebuild costs what changed since).
    views: view::Views,
    index_tx: watch::Sender<u64>,
    stats: Arc<ArcSwap<(gossip_core::Stats, gossip_core::secure::SecureStats)>>,
    index: u64,
    /// Its own command sender, handed to check tasks.
    tx: mpsc::Sender<Command>,
    /// Running checks by check id.
    running: BTreeMap<String, Running>,
    /// Last run number handed out.
    runs: u64,
    /// The latest problems reported (unix seconds, text), newest last; `gossipd info` shows them.
    problems: std::collections::VecDeque<(u64, String)>,
    /// The health each local service was last registered with.
    health: BTreeMap<String, Health>,
    local_checks: Arc<ArcSwap<LocalChecks>>,
    /// Ids of the local services that came from `--config-dir` (a reload may remove them).
    config_ids: BTreeSet<String>,
    /// Registration changes of this turn, applied to `local` but not yet persisted.
    staged: Vec<Staged>,
    /// When the views were last rebuilt.
    last_publish: Option<tokio::time::Instant>,
    /// A rebuild held back by [`PUBLISH_INTERVAL`], due then.
    publish_due: Option<tokio::time::Instant>,
    /// The least time between rebuilds now: [`PUBLISH_INTERVAL`], or [`PUBLISH_SHARE`] times
    /// the last rebuild's duration if longer.
    publish_gap: std::time::Duration,
    /// [`Command::Sync`] barriers to answer at the end of this turn.
    syncs: Vec<oneshot::Sender<()>>,
    /// Membership changed since the peer snapshot was written.
    peers_dirty: bool,
    /// Reads this agent relays for others through its WAN pool, or has relayed through a LAN
    /// member's.
    relays: relay::Relays,
    /// This agent's WAN pool, if it is in one (it then relays LAN members' reads).
    wan: Option<crate::wan::WanHandle>,
    /// Reads of other datacenters to relay through a LAN member (an agent outside the WAN pool).
    forwards: Option<mpsc::Receiver<crate::wan::Forward>>,
    /// When the peer snapshot was last written.
    peers_saved: Option<tokio::time::Instant>,
}

/// Views are rebuilt at most this often: the first change after a quiet spell is published at
/// once, later ones within the interval together at its end, so a burst of changes (bulk
/// registration, a rumor wave) costs one rebuild per interval (each O(what changed) plus one
/// line per member).
const PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// A rebuild waits at least this many times the last one's duration, so that rebuilding
/// takes at most about a tenth of the agent's time: at 200 members during a start-up storm on
/// a starved machine, rebuilds every 20 ms took 14% of an agent's CPU. (At most a second.)
const PUBLISH_SHARE: u32 = 10;

/// Most queued commands handled in one turn (their registrations persisted together).
const MAX_BATCH: usize = 256;

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("local", &self.gossip.local()).finish()
    }
}

impl Driver {
    /// Wires a driver around a started state machine whose local services are `local`.
    pub fn new(
        gossip: Gossip,
        socket: UdpSocket,
        data: DataDir,
        local: Vec<ServiceDef>,
        dns: Arc<ArcSwap<dns_front::snapshot::Snapshot>>,
    ) -> (Driver, Handle) {
        let (tx, rx) = mpsc::channel(256);
        let (index_tx, index_rx) = watch::channel(0);
        let catalog = Arc::new(ArcSwap::from_pointee(Catalog::default()));
        let stats = Arc::new(ArcSwap::from_pointee(Default::default()));
        let local_checks = Arc::new(ArcSwap::from_pointee(LocalChecks {
            node: gossip.local().name.clone(),
            node_id: gossip.local().id,
            checks: BTreeMap::new(),
        }));
        let handle = Handle {
            commands: tx.clone(),
            catalog: catalog.clone(),
            index: index_rx,
            stats: stats.clone(),
            checks: local_checks.clone(),
        };
        let local: BTreeMap<String, ServiceDef> = local.into_iter().map(|d| (d.id.clone(), d)).collect();
        let health = local.values().map(|d| (d.id.clone(), d.to_instance().health)).collect();
        let mut d = Driver {
            gossip,
            socket,
            data,
            local,
            commands: rx,
            catalog,
            dns,
            views: view::Views::default(),
            index_tx,
            stats,
            index: 0,
            tx,
            running: BTreeMap::new(),
            runs: 0,
            health,
            local_checks,
            config_ids: BTreeSet::new(),
            staged: Vec::new(),
            last_publish: None,
            publish_due: None,
            publish_gap: PUBLISH_INTERVAL,
            syncs: Vec::new(),
            peers_dirty: false,
            relays: relay::Relays::default(),
            wan: None,
            forwards: None,
            peers_saved: None,
            problems: std::collections::VecDeque::new(),
        };
        d.publish();
        (d, handle)
    }

    /// The prepared queries this agent holds, as persisted.
    fn local_queries(&self) -> Vec<crate::query::PreparedQuery> {
        let prefix = format!("{}{}", gossip_core::APP_PREFIX, crate::query::RECORD_PREFIX);
        let Some(me) = self.gossip.node(&self.gossip.local().id) else { return Vec::new() };
        me.entries
            .range::<str, _>((std::ops::Bound::Included(prefix.as_str()), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(_, e)| match &e.value {
                gossip_core::Value::App(b) => crate::query::PreparedQuery::decode(b),
                _ => None,
            })
            .collect()
    }

    fn save_queries(&self, queries: &[crate::query::PreparedQuery]) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(queries).map_err(|e| e.to_string())?;
        self.data
            .write_atomic(crate::query::QUERIES_FILE, &json)
            .map_err(|e| format!("cannot store the prepared queries: {e}"))
    }

    /// Persists, then writes, a prepared query: acknowledged means durable.
    fn put_query(&mut self, now: Instant, q: crate::query::PreparedQuery) -> Result<(), String> {
        q.validate()?;
        let mut all: Vec<crate::query::PreparedQuery> =
            self.local_queries().into_iter().filter(|x| x.id != q.id).collect();
        all.push(q.clone());
        self.save_queries(&all)?;
        let name = format!("{}{}", crate::query::RECORD_PREFIX, q.id);
        self.gossip.put_app_record(now, &name, Some(q.encode())).map_err(|e| e.to_string())?;
        self.request_publish();
        Ok(())
    }

    fn delete_query(&mut self, now: Instant, id: &str) -> Result<bool, String> {
        let all = self.local_queries();
        if !all.iter().any(|q| q.id == id) {
            return Ok(false);
        }
        let rest: Vec<crate::query::PreparedQuery> = all.into_iter().filter(|q| q.id != id).collect();
        self.save_queries(&rest)?;
        let name = format!("{}{}", crate::query::RECORD_PREFIX, id);
        let held = self.gossip.put_app_record(now, &name, None).map_err(|e| e.to_string())?;
        self.request_publish();
        Ok(held)
    }

    /// The WAN side: this agent's WAN pool (it relays its LAN members' reads), or, outside the
    /// pool, the reads of other datacenters to relay through a LAN member that is in it.
    pub fn set_wan(
        &mut self,
        wan: Option<crate::wan::WanHandle>,
        forwards: Option<mpsc::Receiver<crate::wan::Forward>>,
    ) {
        self.wan = wan;
        self.forwards = forwards;
    }

    /// Marks which of the local services came from `--config-dir`.
    pub fn set_config_ids(&mut self, ids: impl IntoIterator<Item = String>) {
        self.config_ids = ids.into_iter().filter(|id| self.local.contains_key(id)).collect();
    }

    /// Rebuilds the views now, or at the end of the current [`PUBLISH_INTERVAL`].
    fn request_publish(&mut self) {
        if self.publish_due.is_some() {
            return; // a rebuild is already due; it will include this change
        }
        let now = tokio::time::Instant::now();
        match self.last_publish {
            Some(last) if now < last + self.publish_gap => self.publish_due = Some(last + self.publish_gap),
            _ => self.publish(),
        }
    }

    /// Rebuilds and swaps in the views.
    fn publish(&mut self) {
        self.publish_due = None;
        self.last_publish = Some(tokio::time::Instant::now());
        self.index += 1;
        let started = Instant::now();
        let (catalog, snapshot) = self.views.build(&self.gossip, self.index, started);
        self.catalog.store(Arc::new(catalog));
        self.dns.store(Arc::new(snapshot));
        self.index_tx.send_replace(self.index);
        let took = started.elapsed();
        self.publish_gap = (took * PUBLISH_SHARE).clamp(PUBLISH_INTERVAL, std::time::Duration::from_secs(1));
    }

    /// Runs until `shutdown` resolves, then announces the leave if it resolved to true, flushes
    /// and returns.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = bool>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let defs: Vec<ServiceDef> = self.local.values().cloned().collect();
        for def in &defs {
            self.start_checks(def);
        }
        self.publish_checks();
        let mut buf = vec![0u8; 2048];
        let leave = loop {
            let deadline = match (self.gossip.poll_timeout(), self.relays.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let publish_due = self.publish_due;
            let publish = async {
                match publish_due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.gossip.handle_datagram(Instant::now(), from, &buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "udp receive error"),
                },
                () = sleep => {
                    let now = Instant::now();
                    self.gossip.handle_timeout(now);
                    self.relay_expire(now);
                }
                Some(f) = async { match self.forwards.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    self.relay_start(Instant::now(), f);
                }
                () = publish => self.publish(),
                Some(cmd) = self.commands.recv() => {
                    self.command(cmd);
                    // Group commit: what is already queued joins this turn, so a burst of
                    // registrations is persisted once (each still answered only after that).
                    for _ in 0..MAX_BATCH {
                        match self.commands.try_recv() {
                            Ok(cmd) => self.command(cmd),
                            Err(_) => break,
                        }
                    }
                    self.commit(Instant::now());
                }
                l = &mut shutdown => break l,
            }
            self.after_input().await;
            if !self.syncs.is_empty() {
                if self.publish_due.is_some() {
                    self.publish();
                }
                for s in self.syncs.drain(..) {
                    let _ = s.send(());
                }
            }
        };
        self.commit(Instant::now());
        self.running.clear();
        self.peers_dirty = true;
        self.save_peers(true);
        if leave {
            tracing::info!("leaving the cluster");
            self.gossip.leave(Instant::now());
        } else {
            tracing::info!(
                "stopping without leaving: other agents keep answering this agent's services until it is back \
                 (a restart) or they find it failed; to leave for good use `gossipd leave`, SIGINT, or \
                 --leave-on-terminate"
            );
        }
        self.after_input().await;
        if self.publish_due.is_some() {
            self.publish();
        }
        Ok(())
    }

    /// Writes the peer snapshot when membership changed, at most every 10 s (and at shutdown,
    /// `force`). Best effort: it only speeds up the next start's rejoin.
    fn save_peers(&mut self, force: bool) {
        let now = tokio::time::Instant::now();
        let due = self.peers_saved.is_none_or(|t| now >= t + std::time::Duration::from_secs(10));
        if !self.peers_dirty || !(due || force) {
            return;
        }
        self.peers_dirty = false;
        self.peers_saved = Some(now);
        if let Err(e) = self.data.save_peers(&self.gossip.peer_addrs()) {
            tracing::warn!(error = %e, "cannot store the peer snapshot (the next start rejoins through --seed only)");
        }
    }

    async fn after_input(&mut self) {
        self.save_peers(false);
        // Events first: a new generation (or keyring) is persisted before any datagram of it
        // leaves, so that a crash right after cannot make the next start reuse it.
        let mut changed = false;
        while let Some(ev) = self.gossip.poll_event() {
            let ev = match ev {
                Event::Query { from, id, body } => {
                    self.relay_serve(Instant::now(), from, id, body);
                    continue;
                }
                Event::Answer { from, id, part, parts, body } => {
                    self.relay_answer(from, id, part, parts, body);
                    continue;
                }
                ev => ev,
            };
            if let Some(p) = problem_of(&ev) {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                if self.problems.len() == MAX_PROBLEMS {
                    self.problems.pop_front();
                }
                self.problems.push_back((now, p));
            }
            if matches!(ev, Event::MemberJoined(_) | Event::MemberLeft(_) | Event::MemberFailed(_)) {
                self.peers_dirty = true;
            }
            match &ev {
                Event::MemberJoined(n) => tracing::info!(node = %n.name, addr = %n.addr, "member joined"),
                Event::MemberLeft(n) => tracing::info!(node = %n.name, addr = %n.addr, "member left"),
                Event::Banned { identity, reason, period } => {
                    tracing::warn!(node = %identity.node_id(), %reason, ?period, "peer banned")
                }
                Event::Equivocation { owner, key, version } => {
                    tracing::warn!(node = %owner, %key, version, "node signed two records under one version")
                }
                Event::Excluded { node, accusers, members, reason } => tracing::error!(
                    %node,
                    accusers,
                    members,
                    %reason,
                    "node EXCLUDED: a majority of live members accuses it; out of answers, its messages dropped"
                ),
                Event::Readmitted(node) => {
                    tracing::warn!(%node, "node readmitted: its accusers are no longer a majority")
                }
                Event::MemberSuspect(id) => tracing::info!(node = %id, "member suspected (missed its probes)"),
                Event::MemberFailed(id) => tracing::warn!(node = %id, "member failed: removed from answers"),
                Event::SelfPreservation { engaged: true, failing, cluster } => tracing::error!(
                    failing,
                    cluster,
                    "SELF-PRESERVATION ENGAGED: too many peers seem to fail at once; suspecting our own network, \
                     no node is declared dead and the last known instances keep being served"
                ),
                Event::LocalHealth { slow: true, score } => tracing::warn!(
                    score,
                    "this agent's own probes keep going unanswered: it is likely slow itself (CPU starved, \
                     network queue late), so its probe and suspicion deadlines are stretched {}x; check the \
                     host's load",
                    score + 1
                ),
                Event::Paused { lag } => tracing::warn!(
                    lag_ms = lag.as_millis() as u64,
                    "this agent's gossip loop ran {} ms past a deadline (host CPU starved, process stopped, VM \
                     suspended, or the agent busy that long itself, e.g. rebuilding a very large catalog): its \
                     probe and suspicion clocks were moved on by that much rather than blaming its peers; if this \
                     repeats, the host is too loaded for the agent",
                    lag.as_millis()
                ),
                Event::LocalHealth { slow: false, .. } => {
                    tracing::info!("local health recovered: probes answered again, deadlines back to normal")
                }
                Event::SelfPreservation { engaged: false, .. } => {
                    tracing::warn!("self-preservation released: peers answer again, normal eviction resumes")
                }
                Event::GenerationChanged(generation) => {
                    tracing::info!(generation, "re-incarnated to collect tombstones");
                    let local = self.gossip.local();
                    if let Err(e) = self.data.save_generation(&local.id, &local.name, *generation) {
                        tracing::error!(error = %e, "cannot persist the new generation");
                    }
                }
                Event::MemberForgotten(id) => tracing::info!(node = %id, "departed member collected"),
                Event::DuplicateName { name, holder, newcomer } if *holder == self.gossip.local().id => {
                    tracing::error!(
                        %name,
                        other = %newcomer,
                        "another live node ({newcomer}) uses our node name {name}: each side refuses the other; \
                         give one of them another --node"
                    )
                }
                Event::DuplicateName { name, holder, newcomer } => tracing::error!(
                    %name,
                    %holder,
                    %newcomer,
                    "refused node {newcomer}: its name {name} belongs to live node {holder}"
                ),
                Event::SeedsSilent { seeds, attempts } => {
                    let seeds: Vec<String> = seeds.iter().map(ToString::to_string).collect();
                    tracing::warn!(seeds = %seeds.join(","), attempts,
                        "no seed answers, so this agent is alone. Likeliest causes: a cluster key the seeds \
                         do not hold (a seed answers nothing to a datagram without its cluster key: compare \
                         `gossipd keys list` on a member with --cluster-key-file, or this data dir's \
                         keyring.json, which wins over the flag after the first start), a seed that is down \
                         or unreachable (UDP port, firewall), or a --seed ADDR#IDENTITY pin that does not match")
                }
                Event::Unadmitted { from, count } => tracing::warn!(%from, count,
                    "handshakes from this address proved no key of our keyring: an agent there has a wrong \
                     or removed cluster key (give it the current one: `gossipd keys list`)"),
                Event::DecryptFailures { from, identity: Some(identity), count } => tracing::warn!(%from,
                    node = %identity.node_id(), count,
                    "datagrams claiming this peer's session failed to decrypt in the last minute: tampering on \
                     the path, or a peer that restarted and lost the session (it opens a new one by itself; if \
                     this repeats, check the path and that one agent per node id runs)"),
                Event::DecryptFailures { from, identity: None, count } => tracing::warn!(%from, count,
                    "handshake messages from this address passed the cluster key but failed to decrypt in the \
                     last minute: a peer whose static key differs from the one it published (two agents with one \
                     identity?), or forged packets"),
                Event::Revoked(r) => {
                    tracing::warn!(identity = %crate::keys::encode_key(&r.identity.0),
                        node = %r.identity.node_id(), "certificate revoked by the CA: the node is dropped");
                    if let Err(e) = crate::ca::save_revocations(&self.data, &self.gossip.revocations()) {
                        tracing::error!(error = %e, "cannot store the revocations");
                    }
                }
                Event::Refused { owner, name, reason } => tracing::warn!(node = %name, id = %owner, %reason,
                    "refused a member's state: nothing of it is applied or answered"),
                Event::ClockSkew { peer, identity, offset_secs, tolerated } => {
                    let (how, secs) =
                        if *offset_secs > 0 { ("ahead of", *offset_secs) } else { ("behind", -offset_secs) };
                    tracing::warn!(%peer, identity = %crate::keys::encode_key(&identity.0), offset_secs,
                        tolerated_secs = tolerated, "a peer's clock is {secs} s {how} this agent's: \
                        sync the clocks (NTP); beyond the tolerance its keys and certificates are refused")
                }
                Event::CertRefused { peer, identity, reason } => tracing::warn!(%peer,
                    identity = %crate::keys::encode_key(&identity.0), %reason,
                    "refused a handshake for its certificate (sign one with `gossipd ca sign`, check --ca-file)"),
                Event::VersionRefused { peer, identity, ours, theirs } => tracing::warn!(%peer,
                    identity = %crate::keys::encode_key(&identity.0), ours = %ours, theirs = %theirs,
                    "refused a handshake: the peer speaks no wire protocol version this agent speaks \
                    (upgrade one agent at a time, each build overlapping the previous one)"),
                Event::KeyringChanged { stamp, keys } => {
                    let fps: Vec<String> = keys.iter().map(crate::keys::fingerprint).collect();
                    tracing::info!(stamp, keys = ?fps, "cluster keyring changed");
                    if let Err(e) = crate::keys::save(&self.data, *stamp, keys) {
                        tracing::error!(error = %e, "cannot persist the keyring");
                    }
                    if let Some(wan) = &self.wan {
                        wan.mirror_keyring(keys.clone());
                    }
                }
                _ => {}
            }
            changed = true;
        }
        while let Some(t) = self.gossip.poll_transmit() {
            if let Err(e) = self.socket.send_to(&t.payload, t.dst).await {
                tracing::debug!(dst = %t.dst, error = %e, "udp send error");
            }
        }
        if changed {
            self.request_publish();
        }
        self.stats.store(Arc::new((self.gossip.stats().clone(), self.gossip.secure_stats().clone())));
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Register(def, reply) => {
                // Registered through the API: a reload no longer owns it.
                self.config_ids.remove(&def.id);
                self.stage_register(def, reply);
                return;
            }
            Command::Deregister(id, reply) => {
                self.config_ids.remove(&id);
                self.stage_deregister(&id, reply);
                return;
            }
            _ => {}
        }
        // Anything else sees the registrations queued before it done.
        self.commit(now);
        match cmd {
            Command::Register(..) | Command::Deregister(..) => {}
            Command::ReloadConfig(defs, reply) => {
                let report = self.reload_config(now, defs);
                let _ = reply.send(report);
            }
            Command::Sync(reply) => self.syncs.push(reply),
            Command::AppAnswer { to, id, body } => {
                if let Err(e) = self.gossip.send_answer(now, &to, id, &body) {
                    tracing::debug!(node = %to, error = %e, "relayed answer not sent");
                }
            }
            Command::PutQuery(q, reply) => {
                let _ = reply.send(self.put_query(now, q));
            }
            Command::DeleteQuery(id, reply) => {
                let _ = reply.send(self.delete_query(now, &id));
            }
            Command::AddRevocation(r, reply) => {
                let result = self.gossip.add_revocation(now, r).map_err(|e| e.to_string());
                if result.is_ok() {
                    if let Err(e) = crate::ca::save_revocations(&self.data, &self.gossip.revocations()) {
                        tracing::error!(error = %e, "cannot store the revocations");
                    }
                }
                let _ = reply.send(result);
            }
            Command::Revocations(reply) => {
                let _ = reply.send(self.gossip.revocations());
            }
            Command::Problems(reply) => {
                let _ = reply.send(self.problems.iter().cloned().collect());
            }
            Command::Join(addr, reply) => {
                tracing::info!(%addr, "joining through this address (requested through the API)");
                let _ = reply.send(self.gossip.join(now, addr).map_err(|e| e.to_string()));
            }
            Command::ForceLeave(name, reply) => {
                let id = self.gossip.nodes().find(|n| n.info.name == name).map(|n| n.info.id);
                let result = match id {
                    None => Ok(false),
                    Some(id) => self.gossip.force_leave(now, &id).map_err(|e| e.to_string()),
                };
                if result == Ok(true) {
                    tracing::warn!(node = %name, "force-left: removed from every agent (it comes back if it is alive)");
                }
                let _ = reply.send(result);
            }
            Command::KeyringStamps(reply) => {
                let members = self.gossip.keyring_stamps().into_iter().map(|(n, s)| (n.name, s)).collect();
                let _ = reply.send((self.gossip.keyring_stamp(), members));
            }
            Command::LocalServices(reply) => {
                let _ = reply.send(self.local.values().cloned().collect());
            }
            Command::Keyring(reply) => {
                let _ = reply.send((self.gossip.keyring_stamp(), self.keyring()));
            }
            Command::ChangeKeyring(op, reply) => {
                let result = self.change_keyring(now, op);
                let _ = reply.send(result);
            }
            Command::CheckResult(r) => {
                if self.running.get(&r.check_id).is_some_and(|c| c.run == r.run) {
                    self.check_status(now, &r.check_id, r.outcome.status, r.outcome.output);
                }
            }
            Command::UpdateTtl { check_id, status, note, reply } => {
                let answer = match self.running.get(&check_id) {
                    None => TtlUpdate::Unknown,
                    Some(c) if !matches!(c.def.kind, checks::Kind::Ttl(_)) => TtlUpdate::NotTtl,
                    Some(c) => {
                        c.ttl_reset.send_replace(());
                        self.check_status(now, &check_id, status, note);
                        TtlUpdate::Updated
                    }
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Starts the checks of `def` (stopping any it had).
    fn start_checks(&mut self, def: &ServiceDef) {
        self.stop_checks(&def.id);
        for c in checks::of(def) {
            self.runs += 1;
            let (ttl_reset, reset_rx) = watch::channel(());
            let task = tokio::spawn(checks::run(c.clone(), self.runs, self.tx.clone(), reset_rx));
            let output = match c.kind {
                checks::Kind::Ttl(_) => String::new(),
                _ => "not run yet".to_string(),
            };
            self.running.insert(
                c.id.clone(),
                Running {
                    status: c.initial,
                    critical_since: (c.initial == Health::Critical).then(Instant::now),
                    def: c,
                    service_id: def.id.clone(),
                    service_name: def.name.clone(),
                    output,
                    run: self.runs,
                    task,
                    ttl_reset,
                },
            );
        }
    }

    fn stop_checks(&mut self, service_id: &str) {
        self.running.retain(|_, c| c.service_id != service_id);
    }

    /// Swaps in the API's view of the checks.
    fn publish_checks(&self) {
        let checks = self
            .running
            .iter()
            .map(|(id, c)| {
                let view = CheckView {
                    id: id.clone(),
                    name: c.def.name.clone(),
                    status: c.status,
                    notes: c.def.notes.clone(),
                    output: c.output.clone(),
                    service_id: c.service_id.clone(),
                    service_name: c.service_name.clone(),
                };
                (id.clone(), view)
            })
            .collect();
        let local = self.gossip.local();
        self.local_checks.store(Arc::new(LocalChecks { node: local.name.clone(), node_id: local.id, checks }));
    }

    /// Records a check's status; re-registers its service when the aggregate changes, and
    /// deregisters it when it has been critical longer than `DeregisterCriticalServiceAfter`.
    fn check_status(&mut self, now: Instant, check_id: &str, status: Health, output: String) {
        let Some(c) = self.running.get_mut(check_id) else { return };
        let changed = c.status != status || c.output != output;
        if c.status != status {
            tracing::info!(check = check_id, service = %c.service_id, from = checks::status_str(c.status),
                to = checks::status_str(status), output = %output, "check status changed");
        }
        c.status = status;
        c.output = output;
        if status == Health::Critical {
            c.critical_since.get_or_insert(now);
        } else {
            c.critical_since = None;
        }
        let sid = c.service_id.clone();
        let expired = match (c.def.deregister_after, c.critical_since) {
            (Some(after), Some(since)) => now.duration_since(since) >= after,
            _ => false,
        };
        if expired {
            tracing::warn!(check = check_id, service = %sid,
                "check critical for longer than DeregisterCriticalServiceAfter: deregistering the service");
            if let Err(e) = self.deregister(now, &sid) {
                tracing::error!(service = %sid, error = %e, "cannot deregister the critical service");
            }
            return;
        }
        if changed {
            self.publish_checks();
        }
        let health = checks::aggregate(self.running.values().filter(|c| c.service_id == sid).map(|c| c.status));
        if self.health.get(&sid) == Some(&health) {
            return;
        }
        let Some(def) = self.local.get(&sid) else { return };
        let mut inst = def.to_instance();
        inst.health = health;
        // Why, for the other agents (their status pages and health APIs): the output of a
        // check in the service's (worst) state, bounded; removed once it passes again.
        let why = self.running.values().find(|c| c.service_id == sid && c.status == health).map(|c| c.output.clone());
        let note = (health != Health::Passing).then(|| (health, why.as_deref().unwrap_or("")));
        self.gossip.set_check_note(now, &sid, note);
        match self.gossip.register(now, inst) {
            Ok(()) => {
                tracing::info!(service = %sid, health = checks::status_str(health), "service health changed");
                self.health.insert(sid, health);
            }
            Err(e) => tracing::error!(service = %sid, error = %e, "cannot spread the new health"),
        }
    }

    fn keyring(&self) -> Vec<[u8; 32]> {
        self.gossip.keyring_keys()
    }

    /// Saves the changed keyring first, then applies it (so an acknowledged change survives a
    /// restart, and one that could not be saved is not made).
    fn change_keyring(&mut self, now: Instant, op: KeyringOp) -> Result<Vec<[u8; 32]>, KeyringError> {
        let old = self.keyring();
        let keys = Self::changed_keyring(old.clone(), op).map_err(KeyringError::Refused)?;
        if keys == old {
            return Ok(keys);
        }
        // The core stamps the change max(wall seconds, old + 1); the KeyringChanged event saves
        // the exact stamp again right after.
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let old_stamp = self.gossip.keyring_stamp();
        crate::keys::save(&self.data, wall.max(old_stamp + 1), &keys)
            .map_err(|e| KeyringError::Persist(e.to_string()))?;
        if let Err(e) = self.gossip.change_keyring(now, keys.clone()) {
            if let Err(undo) = crate::keys::save(&self.data, old_stamp, &old) {
                tracing::error!(error = %undo, "cannot restore the stored keyring after a refused change");
            }
            return Err(match e {
                gossip_core::CommandError::NotOperator => KeyringError::Forbidden(e.to_string()),
                e => KeyringError::Refused(e.to_string()),
            });
        }
        Ok(keys)
    }

    fn changed_keyring(mut keys: Vec<[u8; 32]>, op: KeyringOp) -> Result<Vec<[u8; 32]>, String> {
        let fp = |k: &[u8; 32]| crate::keys::fingerprint(k);
        match op {
            KeyringOp::Install(k) if keys.contains(&k) => return Ok(keys),
            KeyringOp::Install(k) => keys.push(k),
            KeyringOp::Use(k) => {
                let i = keys.iter().position(|x| *x == k).ok_or_else(|| format!("key {} is not installed", fp(&k)))?;
                let k = keys.remove(i);
                keys.insert(0, k);
            }
            KeyringOp::Remove(k) => match keys.iter().position(|x| *x == k) {
                None => return Err(format!("key {} is not installed", fp(&k))),
                Some(0) => return Err(format!("key {} is the primary key: make another key primary first", fp(&k))),
                Some(i) => {
                    keys.remove(i);
                }
            },
        }
        Ok(keys)
    }
}
