//! The gossip state machine: one node's view of the cluster.
//!
//! Inputs: [`Gossip::handle_datagram`], [`Gossip::handle_timeout`] and local commands
//! ([`Gossip::register`], [`Gossip::deregister`], [`Gossip::leave`]). Outputs are drained with
//! [`Gossip::poll_transmit`], [`Gossip::poll_timeout`] and [`Gossip::poll_event`]. Time is
//! always a parameter and randomness comes from the seed in [`Config`]: the same inputs give
//! the same outputs, in the daemon and in the simulator alike.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::chunk;
use crate::message::{self, Delta, Entry, Message, NodeStatus, STATUS_KEY, Value, Want};
use crate::peers::PeerSet;
use crate::reconcile;
use crate::rng::Rng;
use crate::session::{MAX_PAYLOAD, Session};
use crate::state::{Applied, NodeState, Table};
use crate::types::{NodeId, NodeInfo, ServiceInstance};

/// Largest encoded service entry accepted by [`Gossip::register`]: it must fit one datagram
/// together with the largest delta header.
pub const MAX_ENTRY: usize = MAX_PAYLOAD - 160;

/// Most ranges accepted in one `Reconcile` (more is malformed).
const MAX_RANGES: usize = 64;

/// Tunables. The defaults suit a LAN.
#[derive(Debug, Clone)]
pub struct Config {
    /// Period of anti-entropy rounds (each node starts one exchange per period), ±10% jitter.
    pub gossip_interval: Duration,
    /// Peers a fresh change is pushed to, and that each receiver forwards it to.
    pub fanout: usize,
    /// Seed addresses to join through.
    pub seeds: Vec<SocketAddr>,
    /// First retry delay while no peer is known; doubles up to `seed_backoff_max`.
    pub seed_backoff_min: Duration,
    /// Longest retry delay while no peer is known.
    pub seed_backoff_max: Duration,
    /// Probability that a round goes to a seed rather than a peer (heals partitions).
    pub seed_probability: f64,
    /// Most owners pushed or served in answer to one message (bounds bursts).
    pub max_push_per_message: usize,
    /// Seed of the node's random number generator.
    pub rng_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            gossip_interval: Duration::from_secs(1),
            fanout: 4,
            seeds: Vec::new(),
            seed_backoff_min: Duration::from_millis(500),
            seed_backoff_max: Duration::from_secs(30),
            seed_probability: 0.05,
            max_push_per_message: 64,
            rng_seed: 0,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// The whole datagram (session framing included), at most [`crate::session::MAX_DATAGRAM`] bytes.
    pub payload: Vec<u8>,
}

/// Something the driver may want to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Some service entry or node status changed: rebuild views (DNS snapshot, API index).
    CatalogChanged,
    /// A node became known and alive.
    MemberJoined(NodeInfo),
    /// A node announced it left.
    MemberLeft(NodeInfo),
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Datagrams the session layer refused.
    pub dropped_session: u64,
    /// Payloads that did not decode.
    pub dropped_decode: u64,
    /// Messages that decoded but broke a protocol rule.
    pub dropped_malformed: u64,
    /// Anti-entropy rounds started.
    pub rounds: u64,
    /// Deltas that changed the table.
    pub deltas_applied: u64,
    /// Rumor datagrams forwarded.
    pub rumors_forwarded: u64,
}

/// Why a local command was refused. Nothing changed when an error is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The encoded instance would not fit one datagram.
    #[error("service definition too large to gossip: {size} bytes encoded, at most {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// The instance id is empty or too long.
    #[error("service ID must be 1..={max} bytes")]
    BadId {
        /// Limit.
        max: usize,
    },
    /// The node has left; it accepts no more changes.
    #[error("the node has left the cluster")]
    Left,
}

/// One node's gossip state machine.
#[derive(Debug)]
pub struct Gossip {
    cfg: Config,
    local: NodeInfo,
    rng: Rng,
    table: Table,
    session: Session,
    peers: PeerSet,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_round: Instant,
    next_seed_try: Instant,
    seed_backoff: Duration,
    left: bool,
    stats: Stats,
}

impl Gossip {
    /// A node that knows only itself, starting at `now`.
    pub fn new(mut cfg: Config, local: NodeInfo, now: Instant) -> Gossip {
        cfg.seeds.retain(|s| *s != local.addr);
        let mut rng = Rng::from_seed(cfg.rng_seed);
        let mut table = Table::new();
        table.insert_local(local.clone());
        table.write_local(&local.id, STATUS_KEY, Value::Status(NodeStatus::Alive));
        let first = cfg.gossip_interval.mul_f64(rng.unit());
        Gossip {
            seed_backoff: cfg.seed_backoff_min,
            next_round: now + first,
            next_seed_try: now,
            cfg,
            local,
            rng,
            table,
            session: Session::new(),
            peers: PeerSet::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            left: false,
            stats: Stats::default(),
        }
    }

    /// This node.
    pub fn local(&self) -> &NodeInfo {
        &self.local
    }

    /// Every known node (this one included), by id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeState> {
        self.table.iter()
    }

    /// One node's state.
    pub fn node(&self, id: &NodeId) -> Option<&NodeState> {
        self.table.get(id)
    }

    /// Number of peers believed alive.
    pub fn live_peers(&self) -> usize {
        self.peers.len()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Count and fingerprint of the whole table (equal on two nodes = converged).
    pub fn root_fingerprint(&self) -> (u64, u64) {
        self.table.fingerprint(&NodeId::MIN, &message::Bound::Inf)
    }

    /// Starts from a copy of `other`'s table (owner states shared, not copied), as if this node
    /// had already joined and converged with it. For simulations of large clusters; a real
    /// agent joins through seeds.
    pub fn warm_start_from(&mut self, other: &Gossip) {
        self.table.adopt(&other.table, &self.local.id);
        let me = self.local.id;
        let ids: Vec<NodeId> = self
            .table
            .iter()
            .filter(|n| n.info.id != me && n.status() == NodeStatus::Alive)
            .map(|n| n.info.id)
            .collect();
        self.peers.reset(ids);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Gossip::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        if self.peers.is_empty() && !self.cfg.seeds.is_empty() {
            Some(self.next_round.min(self.next_seed_try))
        } else {
            Some(self.next_round)
        }
    }

    /// Registers (or replaces) a local service instance and spreads it at once.
    pub fn register(&mut self, _now: Instant, inst: ServiceInstance) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let entry = check_instance(inst)?;
        let key = entry.key;
        if let Some(old) = self.table.get(&self.local.id).and_then(|n| n.entries.get(&key)) {
            if old.value == entry.value {
                return Ok(());
            }
        }
        self.write_local(&key, entry.value);
        Ok(())
    }

    /// Removes a local service instance (a tombstone spreads). False if it was not registered.
    pub fn deregister(&mut self, _now: Instant, id: &str) -> Result<bool, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let key = format!("svc/{id}");
        let present = self
            .table
            .get(&self.local.id)
            .and_then(|n| n.entries.get(&key))
            .is_some_and(|e| matches!(e.value, Value::Service(_)));
        if present {
            self.write_local(&key, Value::Tombstone);
        }
        Ok(present)
    }

    /// The local service instances.
    pub fn local_services(&self) -> Vec<ServiceInstance> {
        self.table.get(&self.local.id).map(|n| services_of(n).cloned().collect()).unwrap_or_default()
    }

    /// Announces a graceful leave to as many peers as the fanout allows twice over, and stops
    /// starting rounds. The driver should flush transmits, then stop.
    pub fn leave(&mut self, _now: Instant) {
        if self.left {
            return;
        }
        let before = self.own_version();
        self.table.write_local(&self.local.id.clone(), STATUS_KEY, Value::Status(NodeStatus::Left));
        self.rumor(before, self.cfg.fanout * 2);
        self.left = true;
    }

    fn own_version(&self) -> u64 {
        self.table.get(&self.local.id).map_or(0, |n| n.max_version)
    }

    fn write_local(&mut self, key: &str, value: Value) {
        let before = self.own_version();
        self.table.write_local(&self.local.id.clone(), key, value);
        self.events.push_back(Event::CatalogChanged);
        self.rumor(before, self.cfg.fanout);
    }

    fn rumor_ttl(&self) -> u8 {
        // Forwarding happens only on news, so the TTL is a safety bound, not the spreading
        // mechanism: generous, about 2 log2(N).
        let n = self.peers.len() as f64 + 1.0;
        (2.0 * n.log2().ceil() + 2.0).clamp(2.0, 40.0) as u8
    }

    /// Pushes the local entries newer than `from` to `k` random peers.
    fn rumor(&mut self, from: u64, k: usize) {
        let ttl = self.rumor_ttl();
        let deltas = self.table.deltas_for(&self.local.id, self.local.generation, from, ttl, MAX_PAYLOAD);
        let targets = self.peers.choose_k(&mut self.rng, k, &[]);
        for t in targets {
            for d in &deltas {
                self.send_to_node(&t, &Message::Delta { sender: self.local.id, delta: d.clone() });
            }
        }
    }

    fn send_to_node(&mut self, id: &NodeId, msg: &Message) {
        if let Some(addr) = self.table.get(id).map(|n| n.info.addr) {
            self.send(addr, msg);
        }
    }

    fn send(&mut self, dst: SocketAddr, msg: &Message) {
        let payload = msg.encode();
        debug_assert!(payload.len() <= MAX_PAYLOAD, "message of {} bytes", payload.len());
        let mut datagram = Vec::with_capacity(payload.len() + 1);
        self.session.seal(dst, &payload, &mut datagram);
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += datagram.len() as u64;
        self.transmits.push_back(Transmit { dst, payload: datagram });
    }

    /// Advances timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.left {
            return;
        }
        if now >= self.next_round {
            let jitter = 0.9 + 0.2 * self.rng.unit();
            self.next_round = now + self.cfg.gossip_interval.mul_f64(jitter);
            self.round();
        }
        if self.peers.is_empty() && !self.cfg.seeds.is_empty() && now >= self.next_seed_try {
            self.next_seed_try = now + self.seed_backoff;
            self.seed_backoff = (self.seed_backoff * 2).min(self.cfg.seed_backoff_max);
            // Our own state goes along with the opening, so that a seed learns of us from one
            // datagram even when the rest of the exchange is lost.
            let own = self.table.deltas_for(&self.local.id, 0, 0, 0, MAX_PAYLOAD);
            for seed in self.cfg.seeds.clone() {
                self.open_exchange(seed);
                for d in &own {
                    self.send(seed, &Message::Delta { sender: self.local.id, delta: d.clone() });
                }
            }
        }
    }

    fn round(&mut self) {
        let target = if !self.cfg.seeds.is_empty() && self.rng.unit() < self.cfg.seed_probability {
            Some(self.cfg.seeds[self.rng.index(self.cfg.seeds.len())])
        } else {
            self.peers.choose(&mut self.rng).and_then(|id| self.table.get(&id).map(|n| n.info.addr))
        };
        if let Some(addr) = target {
            self.stats.rounds += 1;
            self.open_exchange(addr);
        }
    }

    fn open_exchange(&mut self, addr: SocketAddr) {
        let msg =
            Message::Reconcile { sender: self.local.id, initial: true, ranges: vec![reconcile::opening(&self.table)] };
        self.send(addr, &msg);
    }

    /// Processes one received datagram. Bad input is counted and dropped; it never panics.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let payload = match self.session.open(from, data) {
            Ok(p) => p,
            Err(_) => {
                self.stats.dropped_session += 1;
                return;
            }
        };
        let msg = match Message::decode(payload) {
            Ok(m) => m,
            Err(_) => {
                self.stats.dropped_decode += 1;
                return;
            }
        };
        if msg.sender() == self.local.id {
            return;
        }
        if self.peers.is_empty() && self.cfg.seeds.contains(&from) {
            // A seed answers: retry soon rather than after a long backoff.
            self.seed_backoff = self.cfg.seed_backoff_min;
            self.next_seed_try = self.next_seed_try.min(now + self.cfg.seed_backoff_min);
        }
        match msg {
            Message::Reconcile { sender: _, initial, ranges } => self.on_reconcile(from, initial, &ranges),
            Message::Delta { sender, delta } => self.on_delta(from, sender, delta),
            Message::Request { sender: _, wants } => self.on_request(from, &wants),
        }
    }

    fn on_reconcile(&mut self, from: SocketAddr, initial: bool, ranges: &[message::Range]) {
        if ranges.len() > MAX_RANGES {
            self.stats.dropped_malformed += 1;
            return;
        }
        let out = reconcile::process(&self.table, ranges);
        if out.malformed {
            self.stats.dropped_malformed += 1;
        }
        let mut replies = chunk::pack_ranges(self.local.id, out.ranges, MAX_PAYLOAD);
        if replies.is_empty() && initial {
            replies.push(Message::Reconcile { sender: self.local.id, initial: false, ranges: Vec::new() });
        }
        for m in replies {
            self.send(from, &m);
        }
        let wants: Vec<Want> = out.wants.into_iter().filter(|w| w.id != self.local.id).collect();
        for m in chunk::pack_wants(self.local.id, wants, MAX_PAYLOAD) {
            self.send(from, &m);
        }
        self.serve(from, &out.push);
    }

    /// Sends `to` the deltas it lacks for each want (at most `max_push_per_message` owners).
    fn serve(&mut self, to: SocketAddr, wants: &[Want]) {
        for w in wants.iter().take(self.cfg.max_push_per_message) {
            for d in self.table.deltas_for(&w.id, w.generation, w.version, 0, MAX_PAYLOAD) {
                self.send(to, &Message::Delta { sender: self.local.id, delta: d });
            }
        }
    }

    fn on_request(&mut self, from: SocketAddr, wants: &[Want]) {
        self.serve(from, wants);
    }

    fn on_delta(&mut self, from: SocketAddr, sender: NodeId, delta: Delta) {
        let owner = delta.node.id;
        if owner == self.local.id {
            return;
        }
        match self.table.apply(&delta) {
            Applied::Stale => {}
            Applied::Gap(want) => {
                for m in chunk::pack_wants(self.local.id, vec![want], MAX_PAYLOAD) {
                    self.send(from, &m);
                }
            }
            Applied::Changed { new_node, status_changed } => {
                self.stats.deltas_applied += 1;
                self.events.push_back(Event::CatalogChanged);
                if new_node || status_changed {
                    self.update_membership(&owner);
                }
                if delta.ttl > 0 {
                    let targets = self.peers.choose_k(&mut self.rng, self.cfg.fanout, &[sender, owner]);
                    let fwd = Delta { ttl: delta.ttl - 1, ..delta };
                    for t in targets {
                        self.stats.rumors_forwarded += 1;
                        self.send_to_node(&t, &Message::Delta { sender: self.local.id, delta: fwd.clone() });
                    }
                }
            }
        }
    }

    fn update_membership(&mut self, id: &NodeId) {
        let Some(node) = self.table.get(id) else {
            return;
        };
        let info = node.info.clone();
        match node.status() {
            NodeStatus::Alive => {
                if self.peers.insert(*id) {
                    self.seed_backoff = self.cfg.seed_backoff_min;
                    self.events.push_back(Event::MemberJoined(info));
                }
            }
            NodeStatus::Left => {
                if self.peers.remove(id) {
                    self.events.push_back(Event::MemberLeft(info));
                }
            }
        }
    }
}

/// Checks that an instance can be gossiped (id length, encoded size) and returns its entry.
/// [`Gossip::register`] refuses exactly what this refuses.
pub fn check_instance(inst: ServiceInstance) -> Result<Entry, CommandError> {
    if inst.id.is_empty() || inst.id.len() > message::MAX_KEY - 4 {
        return Err(CommandError::BadId { max: message::MAX_KEY - 4 });
    }
    let entry = Entry { key: format!("svc/{}", inst.id), version: u64::MAX, value: Value::Service(inst) };
    let size = message::entry_len(&entry);
    if size > MAX_ENTRY {
        return Err(CommandError::TooLarge { size, max: MAX_ENTRY });
    }
    Ok(entry)
}

/// The live (non-deleted) service instances of a node.
pub fn services_of(node: &NodeState) -> impl Iterator<Item = &ServiceInstance> {
    node.entries.values().filter_map(|e| match &e.value {
        Value::Service(s) => Some(s),
        _ => None,
    })
}
