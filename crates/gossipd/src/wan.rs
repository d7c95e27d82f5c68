//! The WAN pool: agents started with `--wan-bind` also join a second gossip pool, of such agents
//! across datacenters, on its own UDP port and over the same secure layer (identity,
//! certificates, cluster keys), speaking wire version 6 only. It carries membership alone: each
//! member says its datacenter in its signed node metadata (`dc`). A read of another datacenter
//! (DNS `NAME.service.DC.D`, HTTP `?dc=DC`) is forwarded as an application query (PROTOCOL
//! 3.9) to a live WAN member of that datacenter, nearest first, which answers it from its own
//! LAN catalog exactly as it would answer a local client. docs/ARCHITECTURE.md ("Several
//! datacenters") gives the reasoning and the bytes.
//!
//! Bounds: a forwarded read gets [`ATTEMPT`] per attempt and [`ATTEMPTS`] attempts (another
//! member each time when there is one, else the same again), so a
//! datacenter that cannot be reached is answered SERVFAIL / 500 within about 2 s; at most
//! [`MAX_PENDING`] reads are in flight (beyond, refused at once); queries from other members
//! are served at most [`MAX_SERVED_PER_SEC`] per second (beyond, dropped and counted).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use gossip_core::{Event, Gossip, Liveness, NodeId, NodeStatus};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// The node-metadata key holding a WAN member's datacenter.
pub const META_DC: &str = "dc";
/// Time given to one member to answer a forwarded read.
pub const ATTEMPT: Duration = Duration::from_secs(1);
/// Members tried for one forwarded read.
pub const ATTEMPTS: usize = 2;
/// Forwarded reads in flight at once, at most.
pub const MAX_PENDING: usize = 1024;
/// Queries from other members served per second, at most.
pub const MAX_SERVED_PER_SEC: u32 = 2000;
/// How often the nearest-datacenter order is refreshed: one ping to one member of each other
/// datacenter per period.
pub const PING_EVERY: Duration = Duration::from_secs(5);
/// Time given to one LAN member to relay a read (its own WAN attempts, and some).
pub const RELAY_ATTEMPT: Duration = Duration::from_millis(2300);

/// Query operation: a ping (empty answer), for round-trip times.
const OP_PING: u8 = 0;
/// Query operation: a DNS message (`[1][tcp: u8][message]`), answered with the reply bytes.
const OP_DNS: u8 = 1;
/// Query operation: an HTTP GET (`[2][u16 len][path and query][u16 len][token]`), answered
/// with `[u16 status][u64 index][body]`.
const OP_HTTP: u8 = 2;

/// The message HTTP and the logs use when a datacenter cannot be reached (Consul's).
pub fn no_path(dc: &str) -> String {
    format!("No path to datacenter {dc:?}")
}

/// One member of the WAN pool as this agent sees it.
#[derive(Debug, Clone)]
pub struct WanMember {
    /// Its node id.
    pub id: NodeId,
    /// Its node name.
    pub name: String,
    /// Its datacenter (empty if it said none).
    pub dc: String,
    /// Its WAN address.
    pub addr: SocketAddr,
    /// Its own status record.
    pub status: NodeStatus,
    /// What this agent's probes say.
    pub liveness: Liveness,
    /// The last measured round trip of a query to it (smoothed).
    pub rtt: Option<Duration>,
    /// This agent itself.
    pub local: bool,
}

impl WanMember {
    /// Whether reads can be forwarded to it.
    pub fn reachable(&self) -> bool {
        !self.local && self.status == NodeStatus::Alive && self.liveness.serves()
    }
}

/// A datacenter as `/v1/catalog/datacenters` orders them.
#[derive(Debug, Clone, PartialEq)]
pub struct Datacenter {
    /// Its name.
    pub name: String,
    /// The least round trip to one of its reachable members (zero for the local one).
    pub rtt: Option<Duration>,
    /// Its reachable WAN members.
    pub reachable: usize,
}

/// The WAN pool's membership, swapped in by the pool's task.
#[derive(Debug, Default)]
pub struct WanView {
    /// Every member, this agent included.
    pub members: Vec<WanMember>,
}

impl WanView {
    /// Every datacenter known, `local` first, then by least round trip (unmeasured last), then
    /// by name.
    pub fn datacenters(&self, local: &str) -> Vec<Datacenter> {
        let mut by_name: HashMap<&str, Datacenter> = HashMap::new();
        for m in self.members.iter().filter(|m| !m.dc.is_empty() && m.dc != local) {
            let d = by_name.entry(&m.dc).or_insert_with(|| Datacenter { name: m.dc.clone(), rtt: None, reachable: 0 });
            if m.reachable() {
                d.reachable += 1;
                if let Some(r) = m.rtt {
                    d.rtt = Some(d.rtt.map_or(r, |x| x.min(r)));
                }
            }
        }
        let mut others: Vec<Datacenter> = by_name.into_values().collect();
        others.sort_by(|a, b| {
            (a.rtt.is_none(), a.rtt, &a.name).partial_cmp(&(b.rtt.is_none(), b.rtt, &b.name)).expect("total")
        });
        let local = Datacenter { name: local.to_string(), rtt: Some(Duration::ZERO), reachable: 1 };
        std::iter::once(local).chain(others).collect()
    }
}

/// Counters of the WAN pool, for metrics.
#[derive(Debug, Default)]
pub struct WanStats {
    /// Reads forwarded and answered.
    pub forwarded: AtomicU64,
    /// Reads that found no reachable member, or no answer in time.
    pub no_path: AtomicU64,
    /// Queries from other members served.
    pub served: AtomicU64,
    /// Queries from other members dropped (rate bound, or undecodable).
    pub dropped: AtomicU64,
    /// Forwarded reads by datacenter (known ones only, at most [`MAX_DC_COUNTERS`]).
    pub per_dc: std::sync::Mutex<std::collections::BTreeMap<String, DcCounts>>,
}

/// Most datacenters with counters of their own (a member that keeps renaming its datacenter
/// cannot grow the map beyond this).
pub const MAX_DC_COUNTERS: usize = 256;

/// Forwarded reads of one datacenter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DcCounts {
    /// Answered.
    pub forwarded: u64,
    /// Not answered: no reachable member, or none in time.
    pub no_path: u64,
}

impl WanStats {
    /// Counts a forwarded read of `dc`, answered or not.
    pub(crate) fn count(&self, dc: &str, answered: bool) {
        let c = if answered { &self.forwarded } else { &self.no_path };
        c.fetch_add(1, Ordering::Relaxed);
        let Ok(mut m) = self.per_dc.lock() else { return };
        if !m.contains_key(dc) && m.len() >= MAX_DC_COUNTERS {
            return;
        }
        let e = m.entry(dc.to_string()).or_default();
        if answered {
            e.forwarded += 1;
        } else {
            e.no_path += 1;
        }
    }

    /// The per-datacenter counters.
    pub fn by_datacenter(&self) -> std::collections::BTreeMap<String, DcCounts> {
        self.per_dc.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// A datacenter name as members may advertise it: a DNS label (letters, digits, `-`, at most
/// 63), lowercased; anything else is no datacenter.
pub fn valid_dc(dc: &str) -> Option<String> {
    let ok = !dc.is_empty() && dc.len() <= 63 && dc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| dc.to_ascii_lowercase())
}

/// A read to forward (to the WAN pool's task, or, for an agent outside the WAN pool, to its
/// LAN driver, which relays it through a LAN member that is in the WAN pool).
#[derive(Debug)]
pub struct Forward {
    /// The datacenter.
    pub dc: String,
    /// The query body (an operation of PROTOCOL 3.9's table).
    pub body: Vec<u8>,
    /// The answer, or why not.
    pub reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

/// Query operation: relay `[3][u8 len][dc][inner body]` to datacenter `dc` through the WAN pool
/// (a LAN member outside the WAN pool asks one inside it); answered with the inner answer, or
/// empty when there is no path.
pub const OP_RELAY: u8 = 3;

/// Relayed operation (inside [`OP_RELAY`], answered by the relaying member itself): the
/// datacenters its WAN pool knows, nearest first, as lines `NAME RTT_MICROS REACHABLE`
/// (`-` for an unmeasured round trip).
pub const OP_DATACENTERS: u8 = 4;

/// How long an agent outside the WAN pool keeps the relaying member's datacenter order.
pub const DATACENTERS_FRESH: Duration = PING_EVERY;

/// Encodes [`OP_DATACENTERS`]'s answer.
pub fn encode_datacenters(dcs: &[Datacenter]) -> Vec<u8> {
    let mut out = String::new();
    for d in dcs {
        let rtt = d.rtt.map_or("-".to_string(), |r| r.as_micros().to_string());
        out.push_str(&format!("{} {rtt} {}\n", d.name, d.reachable));
    }
    out.into_bytes()
}

/// Decodes [`OP_DATACENTERS`]'s answer; malformed lines are skipped, at most 1024 kept.
pub fn decode_datacenters(body: &[u8]) -> Vec<Datacenter> {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (name, rtt, reachable) = (valid_dc(f.next()?)?, f.next()?, f.next()?.parse().ok()?);
            let rtt = if rtt == "-" { None } else { Some(Duration::from_micros(rtt.parse().ok()?)) };
            f.next().is_none().then_some(Datacenter { name, rtt, reachable })
        })
        .take(1024)
        .collect()
}

/// What DNS and HTTP use to reach other datacenters.
#[derive(Debug, Clone)]
pub struct WanHandle {
    tx: mpsc::Sender<Forward>,
    /// The pool's membership.
    pub view: Arc<ArcSwap<WanView>>,
    /// This agent's datacenter.
    pub datacenter: String,
    /// The pool's counters.
    pub stats: Arc<WanStats>,
    /// The gossip counters of the WAN pool (bytes in and out, for the idle WAN figure).
    pub gossip_stats: Arc<ArcSwap<gossip_core::Stats>>,
    /// True for an agent outside the WAN pool: reads go to its LAN driver, which relays them
    /// through a LAN member in the pool; the view is then empty.
    pub relayed: bool,
    /// The LAN pool's keyring (primary first), for the WAN pool to mirror; `None` for a relayed
    /// handle.
    keyring: Option<mpsc::Sender<Vec<[u8; 32]>>>,
    /// For a relayed handle: the relaying member's datacenter order, and when it came.
    relayed_dcs: Arc<std::sync::Mutex<Option<Order>>>,
}

/// A datacenter order and when it was learnt.
type Order = (Instant, Vec<Datacenter>);

/// The HTTP answer of another datacenter: status, `X-Consul-Index`, body.
pub type HttpAnswer = (u16, u64, Vec<u8>);

impl WanHandle {
    /// For an agent outside the WAN pool: a handle whose reads come out of the returned
    /// receiver (the LAN driver's relay).
    pub fn relay(datacenter: String) -> (WanHandle, mpsc::Receiver<Forward>) {
        let (tx, rx) = mpsc::channel(MAX_PENDING);
        let h = WanHandle {
            tx,
            view: Arc::default(),
            datacenter,
            stats: Arc::default(),
            gossip_stats: Arc::default(),
            relayed: true,
            keyring: None,
            relayed_dcs: Arc::default(),
        };
        (h, rx)
    }

    /// Has `body` answered in datacenter `dc`: the answer bytes, or why not.
    pub async fn forward(&self, dc: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let (reply, rx) = oneshot::channel();
        if self.tx.try_send(Forward { dc: dc.to_string(), body, reply }).is_err() {
            return Err(format!("{}: the WAN pool is busy or stopped", no_path(dc)));
        }
        // A relayed read waits for the relaying member's own bound, and a second member's.
        let bound =
            if self.relayed { RELAY_ATTEMPT * 2 } else { ATTEMPT * ATTEMPTS as u32 } + Duration::from_millis(500);
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(no_path(dc)),
        }
    }

    /// Has the DNS message `query` answered in datacenter `dc` (`None`: it cannot be reached).
    pub async fn dns(&self, dc: String, query: Vec<u8>, tcp: bool) -> Option<Vec<u8>> {
        let mut body = Vec::with_capacity(query.len() + 2);
        body.extend_from_slice(&[OP_DNS, u8::from(tcp)]);
        body.extend_from_slice(&query);
        self.forward(&dc, body).await.ok().filter(|r| r.len() >= 12)
    }

    /// Has `GET path_and_query` answered by an agent of datacenter `dc`, with `token`.
    pub async fn http_get(&self, dc: &str, path_and_query: &str, token: Option<&str>) -> Result<HttpAnswer, String> {
        let token = token.unwrap_or("");
        if path_and_query.len() > 2048 || token.len() > 512 {
            return Err("path or token too long to forward".into());
        }
        let mut body = vec![OP_HTTP];
        for s in [path_and_query, token] {
            body.extend_from_slice(&(s.len() as u16).to_be_bytes());
            body.extend_from_slice(s.as_bytes());
        }
        let answer = self.forward(dc, body).await?;
        if answer.len() < 10 {
            return Err(format!("{}: a malformed answer", no_path(dc)));
        }
        let status = u16::from_be_bytes([answer[0], answer[1]]);
        let index = u64::from_be_bytes(answer[2..10].try_into().expect("8 bytes"));
        Ok((status, index, answer[10..].to_vec()))
    }

    /// Every datacenter known, this one first, then nearest first: the WAN pool's view, or for
    /// a relayed handle the relaying member's (asked at most every [`DATACENTERS_FRESH`]; this
    /// datacenter alone when no member answers).
    pub async fn datacenters(&self) -> Vec<Datacenter> {
        if !self.relayed {
            return self.view.load().datacenters(&self.datacenter);
        }
        let cached = self.relayed_dcs.lock().map(|c| c.clone()).unwrap_or_default();
        if let Some((at, dcs)) = &cached {
            if at.elapsed() < DATACENTERS_FRESH {
                return dcs.clone();
            }
        }
        match self.forward(&self.datacenter, vec![OP_DATACENTERS]).await {
            Ok(body) => {
                let mut dcs = decode_datacenters(&body);
                dcs.retain(|d| !d.name.eq_ignore_ascii_case(&self.datacenter));
                let local = Datacenter { name: self.datacenter.clone(), rtt: Some(Duration::ZERO), reachable: 1 };
                dcs.insert(0, local);
                if let Ok(mut c) = self.relayed_dcs.lock() {
                    *c = Some((Instant::now(), dcs.clone()));
                }
                dcs
            }
            Err(e) => {
                tracing::debug!(error = %e, "no LAN member in the WAN pool gave its datacenters");
                cached.map(|(_, d)| d).unwrap_or_else(|| WanView::default().datacenters(&self.datacenter))
            }
        }
    }

    /// Has the WAN pool take the LAN pool's new keyring (no-op for a relayed handle).
    pub fn mirror_keyring(&self, keys: Vec<[u8; 32]>) {
        if let Some(tx) = &self.keyring {
            if tx.try_send(keys).is_err() {
                tracing::error!("the WAN pool did not take the LAN keyring (its task is busy or stopped)");
            }
        }
    }

    /// Whether any member of `dc` is known (reachable or not); always true for a relayed
    /// handle (the relaying member knows).
    pub fn knows(&self, dc: &str) -> bool {
        self.relayed || self.view.load().members.iter().any(|m| m.dc.eq_ignore_ascii_case(dc))
    }
}

/// A forwarded read awaiting its answer (in the WAN pool, or relayed through a LAN member).
#[derive(Debug)]
pub(crate) struct Pending {
    /// `None` for pings.
    pub(crate) reply: Option<oneshot::Sender<Result<Vec<u8>, String>>>,
    pub(crate) dc: String,
    pub(crate) body: Vec<u8>,
    /// The member asked last.
    pub(crate) member: NodeId,
    pub(crate) tried: Vec<NodeId>,
    pub(crate) sent: Instant,
    /// The answer's parts so far ([`add_part`]).
    pub(crate) parts: Vec<Option<Vec<u8>>>,
}

impl Pending {
    /// A read of `body` in `dc`, not yet sent to anyone.
    pub(crate) fn new(
        reply: Option<oneshot::Sender<Result<Vec<u8>, String>>>,
        dc: String,
        body: Vec<u8>,
        now: Instant,
    ) -> Self {
        Pending { reply, dc, body, member: NodeId([0; 16]), tried: Vec::new(), sent: now, parts: Vec::new() }
    }
}

/// The WAN pool's task state.
pub struct Wan {
    gossip: Gossip,
    socket: UdpSocket,
    rx: mpsc::Receiver<Forward>,
    handle: WanHandle,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    rtt: HashMap<NodeId, Duration>,
    dns: Option<dns_front::server::LocalAnswerer>,
    router: Option<axum::Router>,
    token: String,
    done_tx: mpsc::Sender<(NodeId, u64, Vec<u8>)>,
    done_rx: mpsc::Receiver<(NodeId, u64, Vec<u8>)>,
    keys_rx: mpsc::Receiver<Vec<[u8; 32]>>,
    served_window: (Instant, u32),
    next_ping: Instant,
}

impl std::fmt::Debug for Wan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wan").field("local", self.gossip.local()).finish()
    }
}

impl Wan {
    /// Wires the pool's task around its started state machine and socket.
    pub fn new(gossip: Gossip, socket: UdpSocket, datacenter: String) -> (Wan, WanHandle) {
        let (tx, rx) = mpsc::channel(MAX_PENDING);
        let (done_tx, done_rx) = mpsc::channel(256);
        let (keys_tx, keys_rx) = mpsc::channel(16);
        let handle = WanHandle {
            tx,
            view: Arc::default(),
            datacenter,
            stats: Arc::default(),
            gossip_stats: Arc::default(),
            relayed: false,
            keyring: Some(keys_tx),
            relayed_dcs: Arc::default(),
        };
        let now = Instant::now();
        let wan = Wan {
            gossip,
            socket,
            rx,
            handle: handle.clone(),
            pending: HashMap::new(),
            next_id: 1,
            rtt: HashMap::new(),
            dns: None,
            router: None,
            token: String::new(),
            done_tx,
            done_rx,
            keys_rx,
            served_window: (now, 0),
            next_ping: now + Duration::from_millis(500),
        };
        (wan, handle)
    }

    /// The WAN address other datacenters reach this agent at.
    pub fn advertise(&self) -> SocketAddr {
        self.gossip.local().addr
    }

    /// What answers DNS queries other datacenters relay here.
    pub fn set_dns(&mut self, answerer: dns_front::server::LocalAnswerer) {
        self.dns = Some(answerer);
    }

    /// What answers HTTP reads other datacenters relay here: the agent's own API, guard
    /// included, asked with `token` (this agent's own: a forwarded read was admitted by the
    /// asking agent's guard, and only catalog and health `GET`s are forwarded, see
    /// [`parse_http`]).
    pub fn set_router(&mut self, router: axum::Router, token: String) {
        self.router = Some(router);
        self.token = token;
    }

    /// Runs until `shutdown` resolves, then leaves the WAN pool (if it resolved to true).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = bool>) {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 2048];
        self.publish();
        let leave = loop {
            let now = Instant::now();
            let mut next = self.next_ping;
            if let Some(t) = self.gossip.poll_timeout() {
                next = next.min(t);
            }
            for p in self.pending.values() {
                next = next.min(p.sent + ATTEMPT);
            }
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next.max(now)));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.gossip.handle_datagram(Instant::now(), from, &buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "WAN udp receive error"),
                },
                () = sleep => {
                    let now = Instant::now();
                    self.gossip.handle_timeout(now);
                    self.expire(now);
                    if now >= self.next_ping {
                        self.ping(now);
                    }
                }
                Some(f) = self.rx.recv() => self.start(Instant::now(), f),
                Some((to, id, answer)) = self.done_rx.recv() => self.answer(Instant::now(), &to, id, &answer),
                Some(keys) = self.keys_rx.recv() => match self.gossip.mirror_keyring(&keys) {
                    Ok(()) => {
                        let fps: Vec<String> = keys.iter().map(crate::keys::fingerprint).collect();
                        tracing::info!(keys = ?fps, "the WAN pool follows the LAN keyring");
                    }
                    Err(e) => tracing::error!(error = %e, "the WAN pool cannot take the LAN keyring"),
                },
                l = &mut shutdown => break l,
            }
            self.after_input().await;
        };
        if leave {
            self.gossip.leave(Instant::now());
        }
        self.after_input().await;
    }

    async fn after_input(&mut self) {
        let mut changed = false;
        while let Some(ev) = self.gossip.poll_event() {
            match ev {
                Event::Query { from, id, body } => self.serve(Instant::now(), from, id, body),
                Event::Answer { from, id, part, parts, body } => {
                    self.on_answer(Instant::now(), from, id, part, parts, body)
                }
                Event::MemberJoined(n) => {
                    changed = true;
                    tracing::info!(node = %n.name, addr = %n.addr, "WAN member joined")
                }
                Event::MemberLeft(n) => {
                    changed = true;
                    tracing::info!(node = %n.name, addr = %n.addr, "WAN member left")
                }
                Event::MemberFailed(id) => {
                    changed = true;
                    tracing::warn!(node = %id, "WAN member failed: its datacenter is reached through its other members")
                }
                Event::MemberSuspect(_) | Event::CatalogChanged => changed = true,
                Event::Banned { identity, reason, .. } => {
                    tracing::warn!(node = %identity.node_id(), %reason, "WAN peer banned")
                }
                Event::DuplicateName { name, holder, newcomer } => tracing::error!(%name, %holder, %newcomer,
                    "two WAN members use one node name: node names must be unique across the datacenters of a WAN pool"),
                Event::SeedsSilent { seeds, attempts } => {
                    let seeds: Vec<String> = seeds.iter().map(ToString::to_string).collect();
                    tracing::warn!(seeds = %seeds.join(","), attempts,
                        "no --wan-seed answers: other datacenters are unreachable (check the WAN port, the \
                         cluster key and the CA of the other datacenters' agents)")
                }
                Event::CertRefused { peer, reason, .. } => {
                    tracing::warn!(%peer, %reason, "a WAN peer's certificate was refused")
                }
                Event::VersionRefused { peer, theirs, .. } => tracing::warn!(%peer, %theirs,
                    "a WAN peer speaks no wire version of the WAN pool (6): upgrade it"),
                _ => {}
            }
        }
        while let Some(t) = self.gossip.poll_transmit() {
            if let Err(e) = self.socket.send_to(&t.payload, t.dst).await {
                tracing::debug!(error = %e, dst = %t.dst, "WAN udp send error");
            }
        }
        if changed {
            self.publish();
        }
        self.handle.gossip_stats.store(Arc::new(self.gossip.stats().clone()));
    }

    /// Swaps in the membership view.
    fn publish(&mut self) {
        let me = self.gossip.local().id;
        let members = self
            .gossip
            .nodes()
            .map(|n| WanMember {
                id: n.info.id,
                name: n.info.name.clone(),
                dc: n.node_meta().and_then(|m| m.get(META_DC)).and_then(|d| valid_dc(d)).unwrap_or_default(),
                addr: n.info.addr,
                status: n.status(),
                liveness: self.gossip.liveness(&n.info.id),
                rtt: self.rtt.get(&n.info.id).copied(),
                local: n.info.id == me,
            })
            .collect();
        self.handle.view.store(Arc::new(WanView { members }));
    }

    /// The reachable members of `dc` not yet tried, nearest first (unmeasured after measured).
    fn candidates(&self, dc: &str, tried: &[NodeId]) -> Vec<NodeId> {
        let view = self.handle.view.load();
        let mut c: Vec<&WanMember> = view
            .members
            .iter()
            .filter(|m| m.reachable() && m.dc.eq_ignore_ascii_case(dc) && !tried.contains(&m.id))
            .collect();
        c.sort_by_key(|m| (m.liveness != Liveness::Alive, m.rtt.is_none(), m.rtt, m.id));
        c.into_iter().map(|m| m.id).collect()
    }

    fn start(&mut self, now: Instant, f: Forward) {
        if self.pending.len() >= MAX_PENDING {
            self.handle.stats.no_path.fetch_add(1, Ordering::Relaxed);
            let _ = f.reply.send(Err(format!("{}: too many forwarded reads in flight", no_path(&f.dc))));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.attempt(now, id, Pending::new(Some(f.reply), f.dc, f.body, now));
    }

    /// Sends pending read `id` to the next candidate, or fails it when none is left.
    fn attempt(&mut self, now: Instant, id: u64, mut p: Pending) {
        while p.tried.len() < ATTEMPTS {
            // Another member if there is one, else the same again (a datagram lost on the WAN
            // should not make a datacenter of one WAN member unreachable).
            let next = self.candidates(&p.dc, &p.tried).into_iter().next();
            let Some(member) = next.or_else(|| self.candidates(&p.dc, &[]).into_iter().next()) else { break };
            p.tried.push(member);
            match self.gossip.send_query(now, &member, id, &p.body) {
                Ok(()) => {
                    p.member = member;
                    p.sent = now;
                    p.parts.clear();
                    self.pending.insert(id, p);
                    return;
                }
                Err(e) => tracing::debug!(%member, error = %e, "WAN query not sent"),
            }
        }
        if let Some(reply) = p.reply {
            self.count(&p.dc, false);
            tracing::debug!(dc = %p.dc, tried = p.tried.len(), "no WAN member of the datacenter answered");
            let _ = reply.send(Err(no_path(&p.dc)));
        }
    }

    /// Moves reads whose member did not answer in time to the next member.
    fn expire(&mut self, now: Instant) {
        let late: Vec<u64> = self.pending.iter().filter(|(_, p)| now >= p.sent + ATTEMPT).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(p) = self.pending.remove(&id) {
                if p.reply.is_some() {
                    tracing::debug!(member = %p.member, dc = %p.dc, "a WAN member did not answer in time");
                }
                self.rtt.remove(&p.member);
                if p.reply.is_some() {
                    self.attempt(now, id, p);
                }
            }
        }
    }

    /// Pings one reachable member of each other datacenter, for the nearest-first order.
    fn ping(&mut self, now: Instant) {
        self.next_ping = now + PING_EVERY;
        let view = self.handle.view.load_full();
        let mut dcs: Vec<&str> = view.members.iter().filter(|m| m.reachable()).map(|m| m.dc.as_str()).collect();
        dcs.sort_unstable();
        dcs.dedup();
        for dc in dcs {
            // The member measured longest ago (unmeasured first) keeps every estimate fresh.
            let Some(member) = self.candidates(dc, &[]).into_iter().find(|m| !self.rtt.contains_key(m)).or_else(|| {
                let c = self.candidates(dc, &[]);
                c.get((self.next_id as usize) % c.len().max(1)).copied()
            }) else {
                continue;
            };
            let id = self.next_id;
            self.next_id += 1;
            if self.gossip.send_query(now, &member, id, &[OP_PING]).is_ok() {
                let p = Pending {
                    reply: None,
                    dc: dc.to_string(),
                    body: Vec::new(),
                    member,
                    tried: vec![member],
                    sent: now,
                    parts: Vec::new(),
                };
                self.pending.insert(id, p);
            }
        }
    }

    fn on_answer(&mut self, now: Instant, from: NodeId, id: u64, part: u8, parts: u8, body: Vec<u8>) {
        let Some(p) = self.pending.get_mut(&id) else { return };
        if p.member != from || !add_part(&mut p.parts, part, parts, body) {
            return;
        }
        let Some(p) = self.pending.remove(&id) else { return };
        let sample = now.saturating_duration_since(p.sent);
        let smoothed = match self.rtt.get(&from) {
            Some(old) => (*old * 7 + sample) / 8,
            None => sample,
        };
        self.rtt.insert(from, smoothed);
        self.publish();
        if let Some(reply) = p.reply {
            self.count(&p.dc, true);
            let _ = reply.send(Ok(p.parts.into_iter().flatten().flatten().collect()));
        }
    }

    /// Counts a forwarded read, by datacenter when the pool knows it (a client's typo is not
    /// a datacenter of its own).
    fn count(&self, dc: &str, answered: bool) {
        let dc = dc.to_ascii_lowercase();
        if self.handle.view.load().members.iter().any(|m| m.dc == dc) {
            self.handle.stats.count(&dc, answered);
        } else {
            let c = if answered { &self.handle.stats.forwarded } else { &self.handle.stats.no_path };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn answer(&mut self, now: Instant, to: &NodeId, id: u64, answer: &[u8]) {
        if let Err(e) = self.gossip.send_answer(now, to, id, answer) {
            tracing::debug!(node = %to, error = %e, "WAN answer not sent");
        }
    }

    /// Serves a query another member sent.
    fn serve(&mut self, now: Instant, from: NodeId, id: u64, body: Vec<u8>) {
        let (start, count) = &mut self.served_window;
        if now >= *start + Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        if *count >= MAX_SERVED_PER_SEC {
            self.handle.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *count += 1;
        self.handle.stats.served.fetch_add(1, Ordering::Relaxed);
        match body.first().copied() {
            Some(OP_PING) => self.answer(now, &from, id, &[]),
            Some(OP_DNS) if body.len() > 2 => {
                let reply = self.dns.as_ref().and_then(|d| d.answer(&body[2..], body[1] == 1)).unwrap_or_default();
                self.answer(now, &from, id, &reply);
            }
            Some(OP_HTTP) => match (parse_http(&body[1..]), self.router.clone()) {
                (Some(path), Some(router)) => {
                    let (done, token) = (self.done_tx.clone(), self.token.clone());
                    tokio::spawn(async move {
                        let answer = local_get(router, &path, &token).await;
                        let _ = done.send((from, id, answer)).await;
                    });
                }
                _ => {
                    self.handle.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    self.answer(now, &from, id, &http_answer(400, 0, b"malformed forwarded request"));
                }
            },
            _ => {
                self.handle.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %from, "an undecodable WAN query");
            }
        }
    }
}

/// `[u16 len][path][u16 len][token]` → the path, a catalog or health read (anything else is
/// refused: the read runs with this agent's own token). The caller's token is not used here:
/// tokens are per agent, not replicated across datacenters.
fn parse_http(b: &[u8]) -> Option<String> {
    let mut at = 0;
    let mut take = || -> Option<String> {
        let len = usize::from(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?));
        let s = std::str::from_utf8(b.get(at + 2..at + 2 + len)?).ok()?.to_string();
        at += 2 + len;
        Some(s)
    };
    let (path, _token) = (take()?, take()?);
    let p = path.split('?').next().unwrap_or("");
    (at == b.len() && forwardable_path(p)).then_some(path)
}

/// Whether `path` (no query) is a read another datacenter may forward here: catalog and health
/// reads, and a prepared query's execution (`/v1/query/ID_OR_NAME/execute`).
pub fn forwardable_path(p: &str) -> bool {
    if p.contains("/../") || p.contains("/./") {
        return false;
    }
    let execute = p
        .strip_prefix("/v1/query/")
        .and_then(|r| r.strip_suffix("/execute"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    (p.starts_with("/v1/catalog/") || p.starts_with("/v1/health/") || execute) && p != "/v1/catalog/datacenters"
}

/// Files part `part` of an answer in `parts` parts (the gossip layer checked `part < parts`)
/// into `slots`; true once every part is in. A part whose count disagrees with the first
/// one's is ignored.
pub fn add_part(slots: &mut Vec<Option<Vec<u8>>>, part: u8, parts: u8, body: Vec<u8>) -> bool {
    if slots.is_empty() {
        *slots = vec![None; usize::from(parts)];
    }
    if slots.len() != usize::from(parts) || usize::from(part) >= slots.len() {
        return false;
    }
    slots[usize::from(part)] = Some(body);
    slots.iter().all(Option::is_some)
}

fn http_answer(status: u16, index: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + body.len());
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The longest a forwarded blocking read is held here (within the asker's [`ATTEMPT`]); the
/// asker sends [`BLOCK_SLICE`] and asks again, see `http/dc.rs`.
pub const MAX_FORWARDED_WAIT: Duration = Duration::from_millis(800);

/// The wait an asking agent sends with a forwarded blocking read.
pub const BLOCK_SLICE: Duration = Duration::from_millis(500);

/// Status of a forwarded blocking read whose index did not move: no body (the asker keeps
/// waiting, and never shows this status to its client).
pub const UNCHANGED: u16 = 304;

/// A forwarded path's `index`, and the path with its `wait` held to [`MAX_FORWARDED_WAIT`].
fn held_wait(path: &str) -> (Option<u64>, String) {
    let Some((p, q)) = path.split_once('?') else { return (None, path.to_string()) };
    let index = q.split('&').filter_map(|kv| kv.strip_prefix("index=")).next_back().and_then(|i| i.parse().ok());
    if index.is_none() {
        return (None, path.to_string());
    }
    let ms = MAX_FORWARDED_WAIT.as_millis();
    let held = q.split('&').filter_map(|kv| match kv.strip_prefix("wait=") {
        Some(w) => {
            let w = crate::http::parse_wait(w).map_or(ms, |d| d.as_millis().min(ms));
            Some(format!("wait={w}ms"))
        }
        None => (!kv.is_empty()).then(|| kv.to_string()),
    });
    let mut q: Vec<String> = held.collect();
    if !q.iter().any(|kv| kv.starts_with("wait=")) {
        q.push(format!("wait={ms}ms"));
    }
    (index, format!("{p}?{}", q.join("&")))
}

/// Runs `GET path` against this agent's own API (its guard included), as a local client. A
/// blocking read (`index`) is held at most [`MAX_FORWARDED_WAIT`], and answered
/// [`UNCHANGED`] with no body when its index did not move.
async fn local_get(router: axum::Router, path: &str, token: &str) -> Vec<u8> {
    use tower::ServiceExt;
    let (asked, path) = held_wait(path);
    let path = path.as_str();
    let mut req = axum::http::Request::get(path).header("host", "127.0.0.1");
    if !token.is_empty() {
        req = req.header("x-consul-token", token);
    }
    let Ok(req) = req.body(axum::body::Body::empty()) else {
        return http_answer(400, 0, b"malformed forwarded request");
    };
    let Ok(resp) = router.oneshot(req).await;
    let status = resp.status().as_u16();
    let index =
        resp.headers().get("x-consul-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    if status == 200 && asked == Some(index) {
        return http_answer(UNCHANGED, index, b"");
    }
    let max = gossip_core::MAX_APP_BODY * usize::from(gossip_core::MAX_ANSWER_PARTS) - 10;
    match axum::body::to_bytes(resp.into_body(), max).await {
        Ok(body) => http_answer(status, index, &body),
        Err(_) => http_answer(
            500,
            index,
            format!(
                "the answer is larger than a forwarded read carries ({max} bytes): ask an agent of that datacenter"
            )
            .as_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_http_requests_decode_only_when_whole() {
        let mut b = Vec::new();
        for s in ["/v1/health/service/web?passing", "tok"] {
            b.extend_from_slice(&(s.len() as u16).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        assert_eq!(parse_http(&b), Some("/v1/health/service/web?passing".into()));
        assert_eq!(parse_http(&b[..b.len() - 1]), None, "truncated");
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(parse_http(&longer), None, "trailing bytes");
        assert_eq!(parse_http(&[0, 200, b'/']), None, "a length beyond the bytes");
        let mut not_api = Vec::new();
        for s in ["/v1/agent/self", ""] {
            not_api.extend_from_slice(&(s.len() as u16).to_be_bytes());
            not_api.extend_from_slice(s.as_bytes());
        }
        assert_eq!(parse_http(&not_api), None, "only catalog and health reads are forwarded");
        for ok in ["/v1/health/service/web", "/v1/catalog/nodes", "/v1/query/web-ha/execute"] {
            assert!(forwardable_path(ok), "{ok}");
        }
        for no in [
            "/v1/query",
            "/v1/query/web-ha",
            "/v1/query//execute",
            "/v1/query/a/b/execute",
            "/v1/catalog/../agent/self",
            "/v1/catalog/datacenters",
            "/v1/agent/service/register",
            "/v1/kv/x",
        ] {
            assert!(!forwardable_path(no), "{no}");
        }
    }

    #[test]
    fn per_datacenter_counters_are_bounded_against_a_member_that_keeps_renaming_its_datacenter() {
        let stats = WanStats::default();
        for i in 0..MAX_DC_COUNTERS + 100 {
            stats.count(&format!("dc{i}"), i % 2 == 0);
        }
        stats.count("dc0", false);
        let m = stats.by_datacenter();
        assert_eq!(m.len(), MAX_DC_COUNTERS, "no series beyond the bound");
        assert_eq!(m["dc0"], DcCounts { forwarded: 1, no_path: 1 }, "a known datacenter still counts");
        let total = MAX_DC_COUNTERS as u64 + 101;
        let (f, n) = (stats.forwarded.load(Ordering::Relaxed), stats.no_path.load(Ordering::Relaxed));
        assert_eq!(f + n, total, "the sums count every read, beyond the bound too");
    }

    #[test]
    fn answer_parts_are_collected_in_any_order_and_a_disagreeing_count_is_ignored() {
        let mut slots = Vec::new();
        assert!(!add_part(&mut slots, 2, 3, b"c".to_vec()));
        assert!(!add_part(&mut slots, 0, 4, b"x".to_vec()), "another count than the first part's");
        assert!(!add_part(&mut slots, 0, 3, b"a".to_vec()));
        assert!(add_part(&mut slots, 1, 3, b"b".to_vec()));
        assert_eq!(slots.into_iter().flatten().flatten().collect::<Vec<u8>>(), b"abc");
        let mut one = Vec::new();
        assert!(add_part(&mut one, 0, 1, Vec::new()), "an empty answer is one empty part");
    }

    #[test]
    fn forwarded_blocking_reads_are_held_briefly() {
        let ms = MAX_FORWARDED_WAIT.as_millis();
        assert_eq!(held_wait("/v1/health/service/web"), (None, "/v1/health/service/web".into()));
        assert_eq!(held_wait("/v1/health/service/web?passing"), (None, "/v1/health/service/web?passing".into()));
        assert_eq!(
            held_wait("/v1/health/service/web?index=7&wait=10m&passing"),
            (Some(7), format!("/v1/health/service/web?index=7&wait={ms}ms&passing"))
        );
        assert_eq!(held_wait("/v1/catalog/nodes?index=9"), (Some(9), format!("/v1/catalog/nodes?index=9&wait={ms}ms")));
        assert_eq!(held_wait("/v1/catalog/nodes?index=9&wait=200ms").1, "/v1/catalog/nodes?index=9&wait=200ms");
        assert_eq!(held_wait("/v1/catalog/nodes?index=x&wait=1h").0, None, "a bad index is the API's to refuse");
    }

    #[test]
    fn datacenters_are_local_first_then_nearest() {
        let m = |dc: &str, rtt: Option<u64>, status| WanMember {
            id: NodeId([dc.len() as u8; 16]),
            name: format!("n-{dc}"),
            dc: dc.into(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            status,
            liveness: Liveness::Alive,
            rtt: rtt.map(Duration::from_millis),
            local: false,
        };
        let view = WanView {
            members: vec![
                m("dc3", Some(40), NodeStatus::Alive),
                m("dc2", Some(90), NodeStatus::Alive),
                m("dc2", Some(10), NodeStatus::Left),
                m("dc4", None, NodeStatus::Alive),
                m("dc1", Some(1), NodeStatus::Alive),
            ],
        };
        let names: Vec<String> = view.datacenters("dc1").into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["dc1", "dc3", "dc2", "dc4"]);
        let dc2 = view.datacenters("dc1").into_iter().find(|d| d.name == "dc2").expect("dc2");
        assert_eq!((dc2.reachable, dc2.rtt), (1, Some(Duration::from_millis(90))), "a left member does not count");
    }
}
