//! The gossip state machine: one node's view of the cluster.
//!
//! Inputs: [`Gossip::handle_datagram`], [`Gossip::handle_timeout`] and local commands
//! ([`Gossip::register`], [`Gossip::deregister`], [`Gossip::leave`]). Outputs are drained with
//! [`Gossip::poll_transmit`], [`Gossip::poll_timeout`] and [`Gossip::poll_event`]. Time is
//! always a parameter and randomness comes from seeds in the configuration: the same inputs give
//! the same outputs, in the daemon and in the simulator alike.
//!
//! Every datagram goes through the [`SecureLayer`]: Noise sessions admitted by the cluster key.
//! Every record is signed by its owner's identity and verified before it is applied.

mod accuse;
mod app;
mod authority;
mod complete;
mod config;
mod death;
mod exchange;
mod gc;
mod liveness;
mod rumor;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub use config::{CommandError, Config, Event, Stats, Transmit};
pub use app::AppError;
pub use liveness::Liveness;

use crate::message::{self, Entry, KEY_KEY, Message, NodeStatus, STATUS_KEY, Value};
use crate::peers::PeerSet;
use crate::rng::Rng;
use crate::secure::keys::Binding;
use crate::secure::{Outgoing, SecureConfig, SecureLayer, SecureStats};
use crate::session::MAX_PAYLOAD;
use crate::state::{NodeState, Table};
use crate::types::{NodeId, NodeInfo, ServiceInstance};

/// Largest encoded service entry accepted by [`Gossip::register`]: it must fit one datagram
/// together with the largest delta header.
pub const MAX_ENTRY: usize = MAX_PAYLOAD - 260;

/// One node's gossip state machine.
#[derive(Debug)]
pub struct Gossip {
    cfg: Config,
    local: NodeInfo,
    rng: Rng,
    table: Table,
    secure: SecureLayer,
    peers: PeerSet,
    active: Vec<NodeId>,
    rumors: rumor::Rumors,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_round: Instant,
    next_seed_try: Instant,
    seed_backoff: std::time::Duration,
    /// Seed attempts without an answer since this node last had a peer.
    seed_attempts: u32,
    /// When unadmitted handshakes were last reported.
    next_unadmitted_report: Instant,
    published_binding: Option<Binding>,
    keyring_stamp: u64,
    suspicions: std::collections::BTreeMap<NodeId, liveness::Suspicion>,
    probes: Vec<liveness::Probe>,
    relays: Vec<liveness::Relay>,
    recent_deaths: Vec<Instant>,
    self_preservation: bool,
    /// Lifeguard's local health score (`liveness.rs`), 0 when healthy.
    health: u32,
    /// The last [`Event::LocalHealth`] said slow.
    health_slow: bool,
    /// Ripe suspicions wait for the death-rate budget until then.
    death_hold: Option<Instant>,
    /// When self-preservation engaged (its stop lasts at most `self_preservation_max_hold`).
    preserving_since: Option<Instant>,
    departed_at: std::collections::BTreeMap<NodeId, Instant>,
    /// When each node was last heard from (any authenticated message).
    last_heard: std::collections::BTreeMap<NodeId, Instant>,
    failures: death::Failures,
    /// Local writes not yet rumored: the version before the first, and its time.
    pending_rumor: Option<(u64, Instant)>,
    /// The last request sent per owner: (held generation and version, when).
    pulls: std::collections::BTreeMap<NodeId, ((u64, u64), Instant)>,
    /// Rumors that arrived before an earlier one of their owner (a gap), held a moment for
    /// the earlier one to arrive ([`exchange::REORDER_WAIT`]) instead of pulled at once.
    reordered: Vec<exchange::Reordered>,
    forgotten: std::collections::BTreeMap<NodeId, (u64, Instant)>,
    oldest_tombstone: Option<Instant>,
    /// The latest `now` any input carried.
    last_now: Instant,
    /// Newcomers already reported for a duplicate name (bounded).
    reported_duplicates: Vec<NodeId>,
    accusations: accuse::Accusations,
    authority: authority::Authority,
    /// Owner copies that did not verify against their owner's head, being repaired.
    unverified: std::collections::BTreeMap<NodeId, complete::Unverified>,
    left: bool,
    /// `handle_timeout` ran at least once (pauses are measured from the second call on).
    timed: bool,
    /// [`Gossip::poll_timeout`] as of the end of the last `handle_timeout` or
    /// `handle_datagram`: the deadline the driver was asked to wake at, which pauses are
    /// measured against.
    promised: Option<Instant>,
    /// The last time a timer of this node ran [`liveness::LATE_THRESHOLD`] or more past its
    /// deadline: this node is loaded ([`Gossip::loaded`]).
    last_late: Option<Instant>,
    stats: Stats,
}

/// The keyring of `keys`, primary first (`None` when empty).
fn ring_of(keys: &[[u8; 32]]) -> Option<crate::secure::keys::Keyring> {
    let mut iter = keys.iter().map(|k| crate::secure::keys::ClusterKey::new(*k));
    let mut ring = crate::secure::keys::Keyring::new(iter.next()?);
    for k in iter {
        ring.install(k);
    }
    Some(ring)
}

impl Gossip {
    /// A node that knows only itself, starting at `now`. Its id is its identity's; `name`,
    /// `addr` and `generation` are signed into its node info.
    pub fn new(
        mut cfg: Config,
        secure: SecureConfig,
        name: String,
        addr: SocketAddr,
        generation: u64,
        now: Instant,
    ) -> Gossip {
        cfg.seeds.retain(|s| *s != addr);
        let mut rng = Rng::from_seed(cfg.rng_seed);
        let local = NodeInfo::signed_with_cert(&secure.identity, name, addr, generation, secure.cert.clone());
        let mut secure = SecureLayer::new(secure, now);
        secure.set_transcoder(message::transcode);
        for (a, id) in &cfg.pinned_seeds {
            secure.pin(*a, *id);
        }
        let mut table = Table::new();
        table.insert_local(local.clone());
        table.write_local(secure.identity_key(), STATUS_KEY, Value::Status(NodeStatus::Alive));
        let first = cfg.gossip_interval.mul_f64(rng.unit());
        let mut g = Gossip {
            seed_backoff: cfg.seed_backoff_min,
            next_round: now + first,
            next_seed_try: now,
            seed_attempts: 0,
            next_unadmitted_report: now,
            cfg,
            local,
            rng,
            table,
            secure,
            peers: PeerSet::default(),
            active: Vec::new(),
            rumors: rumor::Rumors::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            published_binding: None,
            keyring_stamp: 0,
            suspicions: Default::default(),
            probes: Vec::new(),
            relays: Vec::new(),
            recent_deaths: Vec::new(),
            self_preservation: false,
            health: 0,
            health_slow: false,
            death_hold: None,
            preserving_since: None,
            departed_at: Default::default(),
            last_heard: Default::default(),
            last_late: None,
            promised: None,
            failures: Default::default(),
            pulls: Default::default(),
            reordered: Vec::new(),
            pending_rumor: None,
            forgotten: Default::default(),
            oldest_tombstone: None,
            last_now: now,
            reported_duplicates: Vec::new(),
            accusations: Default::default(),
            authority: Default::default(),
            unverified: Default::default(),
            left: false,
            timed: false,
            stats: Stats::default(),
        };
        g.keyring_stamp = g.cfg.keyring_stamp;
        let identity = g.secure.identity_key().clone();
        g.table.write_local(&identity, message::RING_KEY, Value::RingStamp(g.keyring_stamp));
        let versions = g.secure.versions();
        g.table.write_local(&identity, message::PROTO_KEY, Value::Proto(versions));
        g.publish_binding();
        g
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

    /// Counters of the secure layer.
    pub fn secure_stats(&self) -> &SecureStats {
        self.secure.stats()
    }

    /// The secure layer itself, for tests (it hands out the identity secret and the keyring):
    /// the driver reads the narrow views below instead.
    #[cfg(feature = "testing")]
    pub fn secure(&self) -> &SecureLayer {
        &self.secure
    }

    /// This node's identity public key.
    pub fn identity(&self) -> crate::secure::keys::IdentityPub {
        self.secure.identity()
    }

    /// This node's certificate, if it has one.
    pub fn cert(&self) -> Option<&Arc<crate::cert::Certificate>> {
        self.secure.cert()
    }

    /// The cluster keys in force, primary first: secrets, for the operator's keyring API only.
    pub fn keyring_keys(&self) -> Vec<[u8; 32]> {
        self.secure.keyring().keys().iter().map(|k| *k.bytes()).collect()
    }

    /// Identities banned at `now`, with why and until when.
    pub fn bans(&self, now: Instant) -> Vec<(crate::secure::keys::IdentityPub, crate::secure::Ban)> {
        self.secure.bans(now)
    }

    /// Changes the cluster keyring everywhere (as `serf keys`): applies `keys` (primary first)
    /// here, and writes them as this node's `@keyring` entry with a stamp above any seen, so
    /// that every node adopts them. Sessions under a removed key are closed.
    pub fn change_keyring(&mut self, now: Instant, keys: Vec<[u8; 32]>) -> Result<u64, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if keys.is_empty() || keys.len() > message::MAX_KEYRING || distinct.len() != keys.len() {
            return Err(CommandError::BadKeyring { max: message::MAX_KEYRING });
        }
        let value = Value::Keyring { stamp: 0, keys: keys.clone() };
        self.check_own_write(message::KEYRING_KEY, &value)?;
        let stamp = self.next_keyring_stamp(now)?;
        self.write_local(now, message::KEYRING_KEY, Value::Keyring { stamp, keys: keys.clone() });
        self.adopt_keyring(now, stamp, keys);
        Ok(stamp)
    }

    /// Replaces the keyring here only (primary first), writing nothing and gossiping nothing:
    /// for a second pool that mirrors another's keyring (gossipd's WAN pool follows its LAN
    /// pool's). Sessions under a removed key are closed. The stamp is unchanged.
    pub fn mirror_keyring(&mut self, keys: &[[u8; 32]]) -> Result<(), CommandError> {
        let mut distinct = keys.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if keys.is_empty() || keys.len() > message::MAX_KEYRING || distinct.len() != keys.len() {
            return Err(CommandError::BadKeyring { max: message::MAX_KEYRING });
        }
        let ring = ring_of(keys).ok_or(CommandError::BadKeyring { max: message::MAX_KEYRING })?;
        self.secure.set_keyring(ring);
        Ok(())
    }

    /// Stamp of the keyring in force.
    pub fn keyring_stamp(&self) -> u64 {
        self.keyring_stamp
    }

    /// The stamp of the keyring each live member says it has in force (`None`: it has not said),
    /// this node included: who took a keyring change and who did not.
    pub fn keyring_stamps(&self) -> Vec<(NodeInfo, Option<u64>)> {
        self.table
            .iter()
            .filter(|n| {
                n.info.id == self.local.id || (self.peers.contains(&n.info.id) && !self.is_excluded(&n.info.id))
            })
            .map(|n| {
                let stamp = match n.entries.get(message::RING_KEY).map(|e| &e.value) {
                    Some(Value::RingStamp(s)) => Some(*s),
                    _ => None,
                };
                (n.info.clone(), stamp)
            })
            .collect()
    }

    fn adopt_keyring(&mut self, now: Instant, stamp: u64, keys: Vec<[u8; 32]>) {
        let Some(ring) = ring_of(&keys) else { return };
        self.secure.set_keyring(ring);
        self.keyring_stamp = stamp;
        self.events.push_back(Event::KeyringChanged { stamp, keys });
        self.write_local(now, message::RING_KEY, Value::RingStamp(stamp));
    }

    /// Adopts `owner`'s `@keyring` if it is newer than the one in force.
    fn consider_keyring(&mut self, now: Instant, owner: &NodeId) {
        let newer = match self.table.get(owner).and_then(|n| n.entries.get(message::KEYRING_KEY)).map(|e| &e.value) {
            Some(Value::Keyring { stamp, keys }) if *stamp > self.keyring_stamp => Some((*stamp, keys.clone())),
            _ => None,
        };
        if let Some((stamp, keys)) = newer {
            self.adopt_keyring(now, stamp, keys);
        }
    }

    /// Count and fingerprint of the whole table (equal on two nodes = converged).
    pub fn root_fingerprint(&self) -> (u64, crate::state::Commitment) {
        self.table.fingerprint(&NodeId::MIN, &message::Bound::Inf, crate::state::Scheme::Sum)
    }

    /// Starts from a copy of `other`'s table (owner states shared, not copied), as if this node
    /// had already joined and converged with it. For simulations of large clusters; a real
    /// agent joins through seeds.
    ///
    /// Both the table and the peer set are clones of `other`'s, sharing their trees: `other`'s
    /// peers are every alive owner but itself, so this node's are the same set with `other`
    /// added and itself removed (O(log N), where rebuilding the set from the table cost O(N)
    /// per node and N² ids in all).
    pub fn warm_start_from(&mut self, other: &Gossip) {
        self.table.adopt(&other.table, &self.local.id);
        let me = self.local.id;
        self.peers = other.peers.clone();
        if self.table.get(&other.local.id).is_some_and(|n| n.status() == NodeStatus::Alive) {
            self.peers.insert(other.local.id);
        }
        self.peers.remove(&me);
    }

    /// Learns `other`'s own state directly (shared, not copied). For building simulations.
    pub fn learn_owner_from(&mut self, other: &Gossip) {
        if let Some(state) = other.table.get_shared(&other.local.id) {
            let state: Arc<NodeState> = Arc::clone(state);
            self.table.adopt_owner(&state);
            self.update_membership(&other.local.id);
        }
    }

    /// Replaces what this node holds of `state`'s owner with `state` as it is (shared, not
    /// verified). For simulations and tests: a replica that a rogue relay fed a doctored
    /// (withheld) history. Never the local node.
    pub fn adopt_owner_state(&mut self, state: &Arc<NodeState>) {
        if state.info.id != self.local.id {
            self.table.adopt_owner(state);
            self.update_membership(&state.info.id);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.flush_rumor();
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Gossip::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let secure = self.secure.poll_timeout();
        if self.left {
            return secure;
        }
        let mut t = self.next_round;
        if self.peers.is_empty() && !self.cfg.seeds.is_empty() {
            t = t.min(self.next_seed_try);
        }
        if let Some(l) = self.liveness_deadline() {
            t = t.min(l);
        }
        if let Some(r) = self.rumors.next_tick() {
            t = t.min(r);
        }
        if let Some(r) = self.reordered.iter().map(|r| r.due).min() {
            t = t.min(r);
        }
        Some(secure.map_or(t, |s| s.min(t)))
    }

    /// Registers (or replaces) a local service instance and spreads it at once.
    pub fn register(&mut self, now: Instant, inst: ServiceInstance) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let (key, value) = check_instance(inst)?;
        self.check_own_write(&key, &value)?;
        if self.table.get(&self.local.id).and_then(|n| n.entries.get(key.as_str())).is_some_and(|old| old.value == value) {
            return Ok(());
        }
        self.write_local(now, &key, value);
        Ok(())
    }

    /// Removes a local service instance (a tombstone spreads). False if it was not registered.
    pub fn deregister(&mut self, now: Instant, id: &str) -> Result<bool, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let key = format!("svc/{id}");
        let present = self
            .table
            .get(&self.local.id)
            .and_then(|n| n.entries.get(key.as_str()))
            .is_some_and(|e| matches!(e.value, Value::Service(_)));
        if present {
            self.write_local(now, &key, Value::Tombstone);
            self.oldest_tombstone.get_or_insert(now);
            self.set_check_note(now, id, None);
        }
        Ok(present)
    }

    /// The local service instances.
    pub fn local_services(&self) -> Vec<ServiceInstance> {
        self.table.get(&self.local.id).map(|n| services_of(n).cloned().collect()).unwrap_or_default()
    }

    /// Publishes this node's metadata (replacing what it published before; empty removes it).
    pub fn set_node_meta(
        &mut self,
        now: Instant,
        meta: std::collections::BTreeMap<String, String>,
    ) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if meta.len() > message::MAX_NODE_META {
            return Err(CommandError::TooLarge { size: meta.len(), max: message::MAX_NODE_META });
        }
        let held = self.table.get(&self.local.id).and_then(|n| n.node_meta().cloned()).unwrap_or_default();
        if held == meta {
            return Ok(());
        }
        let value = if meta.is_empty() { Value::Tombstone } else { Value::NodeMeta(meta) };
        let entry = Entry { key: message::META_KEY.into(), version: u64::MAX, value: value.clone(), sig: [0; 64] };
        let size = message::entry_len(&entry);
        if size > MAX_ENTRY {
            return Err(CommandError::TooLarge { size, max: MAX_ENTRY });
        }
        if matches!(value, Value::Tombstone) {
            self.oldest_tombstone.get_or_insert(now);
        }
        self.write_local(now, message::META_KEY, value);
        Ok(())
    }

    /// Publishes why the local service `service_id` is not passing (`Some((health, output))`,
    /// the output cut to [`message::MAX_NOTE`] bytes), or that it passes again (`None`, which
    /// deletes the note). Nothing is written when the note held is the same, nor for an id too
    /// long for the `note/` key (one of the longest an instance may have: 1 byte more).
    pub fn set_check_note(&mut self, now: Instant, service_id: &str, note: Option<(crate::Health, &str)>) {
        if self.left || service_id.len() + message::NOTE_PREFIX.len() > message::MAX_KEY {
            return;
        }
        let key = format!("{}{service_id}", message::NOTE_PREFIX);
        let held = self.table.get(&self.local.id).and_then(|n| n.entries.get(key.as_str())).map(|e| e.value.clone());
        let value = match note {
            Some((health, output)) => Value::CheckNote { health, output: message::note_output(output) },
            None if matches!(held, None | Some(Value::Tombstone)) => return,
            None => Value::Tombstone,
        };
        if held.as_ref() == Some(&value) {
            return;
        }
        if matches!(value, Value::Tombstone) {
            self.oldest_tombstone.get_or_insert(now);
        }
        self.write_local(now, &key, value);
    }

    /// Writes the application record `name` (key [`message::APP_PREFIX`] + `name`; `None`
    /// deletes it): signed by this node and replicated to every replica as its other entries
    /// are. At most [`message::MAX_APP_RECORD`] bytes.
    pub fn put_app_record(&mut self, now: Instant, name: &str, bytes: Option<Vec<u8>>) -> Result<bool, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let key = format!("{}{name}", message::APP_PREFIX);
        if name.is_empty() || key.len() > message::MAX_KEY {
            return Err(CommandError::BadId { max: message::MAX_KEY - message::APP_PREFIX.len() });
        }
        let held = self.table.get(&self.local.id).and_then(|n| n.entries.get(key.as_str())).map(|e| e.value.clone());
        let value = match bytes {
            Some(b) if b.len() > message::MAX_APP_RECORD => {
                return Err(CommandError::TooLarge { size: b.len(), max: message::MAX_APP_RECORD });
            }
            Some(b) => Value::App(b),
            None if matches!(held, None | Some(Value::Tombstone)) => return Ok(false),
            None => Value::Tombstone,
        };
        if held.as_ref() == Some(&value) {
            return Ok(true);
        }
        if matches!(value, Value::Tombstone) {
            self.oldest_tombstone.get_or_insert(now);
        }
        self.write_local(now, &key, value);
        Ok(true)
    }

    /// Joins through `addr` at run time (as `serf join`): opens an exchange with it and pushes
    /// this node's state, as with a seed, once.
    pub fn join(&mut self, now: Instant, addr: SocketAddr) -> Result<(), CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        self.open_exchange(now, addr, None);
        self.push_own_state(now, addr);
        Ok(())
    }

    /// After a restart: opens an exchange with each of the peers this node knew before (at most
    /// 256; a handshake each, so that every peer replaces the session the old process had, which
    /// the new one cannot read, before its probes of this node fail), and pushes this node's
    /// new state to the first `fanout` of them. As Serf's snapshot rejoin.
    pub fn rejoin(&mut self, now: Instant, addrs: &[SocketAddr]) {
        if self.left {
            return;
        }
        let me = self.local.addr;
        for (i, addr) in addrs.iter().filter(|a| **a != me).take(256).enumerate() {
            self.open_exchange(now, *addr, None);
            if i < self.cfg.fanout {
                self.push_own_state(now, *addr);
            }
        }
    }

    /// The gossip addresses of the live peers (for the driver's peer snapshot).
    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        self.table
            .iter()
            .filter(|n| n.info.id != self.local.id && self.peers.contains(&n.info.id))
            .map(|n| n.info.addr)
            .collect()
    }

    /// Removes a failed (or any other) node from every agent now, as `consul force-leave
    /// -prune`: writes a failure record about the state held of it, dated `failed_grace` ago,
    /// so that every replica collects the node at once instead of after `failed_grace`. A node
    /// that is in fact alive comes back when it next speaks to a member (or restarts). False if
    /// the node is not known here.
    pub fn force_leave(&mut self, now: Instant, id: &NodeId) -> Result<bool, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        if *id == self.local.id {
            return Err(CommandError::NotSelf);
        }
        let Some(n) = self.table.get(id) else { return Ok(false) };
        let (generation, version) = (n.info.generation, n.max_version);
        let wall = self.secure.wall_nanos(now) / 1_000_000_000;
        let at = wall.saturating_sub(self.cfg.failed_grace.as_secs());
        self.write_local(now, &message::failed_key(id), Value::Failed { target: *id, generation, version, at });
        self.declare_dead(now, *id, false);
        self.failures.failed_at.insert(*id, now.checked_sub(self.cfg.failed_grace).unwrap_or(now));
        if let Some(s) = self.suspicions.get_mut(id) {
            s.record_due = None;
        }
        let me = self.local.id;
        self.note_failures(now, &me);
        self.collect_garbage(now);
        Ok(true)
    }

    /// Announces a graceful leave to twice the fanout, and stops starting rounds. The driver
    /// should flush transmits, then stop.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.flush_rumor();
        let before = self.own_version();
        self.table.write_local(self.secure.identity_key(), STATUS_KEY, Value::Status(NodeStatus::Left));
        self.rumor(now, before, self.cfg.fanout * 2, false);
        self.left = true;
    }

    fn own_version(&self) -> u64 {
        self.table.get(&self.local.id).map_or(0, |n| n.max_version)
    }

    /// Writes a local entry; its rumor leaves with the next [`Gossip::poll_transmit`], together
    /// with every other local write made since (a burst of registrations is one rumor).
    fn write_local(&mut self, now: Instant, key: &str, value: Value) {
        let before = self.own_version();
        self.table.write_local(self.secure.identity_key(), key, value);
        self.events.push_back(Event::CatalogChanged);
        self.pending_rumor.get_or_insert((before, now));
    }

    /// Spreads the local writes not yet rumored: one rumor of at most [`exchange::SERVE_WINDOW`]
    /// bytes of entries; a larger burst sends `fanout` peers a `More` for the rest, which they
    /// pull paced (and pass on by anti-entropy).
    fn flush_rumor(&mut self) {
        let Some((from, now)) = self.pending_rumor.take() else { return };
        let me = self.local.id;
        let (deltas, stopped) =
            self.table.deltas_window(&me, self.local.generation, from, MAX_PAYLOAD, exchange::SERVE_WINDOW);
        let ttl = self.rumor_ttl();
        for mut d in deltas {
            d.ttl = ttl;
            let _ = self.spread(now, d, &[], self.cfg.fanout, true);
        }
        if let Some(version) = stopped {
            self.stats.paced_rumors += 1;
            let more = Message::More {
                sender: me,
                owners: vec![message::Want { id: me, generation: self.local.generation, version }],
            };
            for t in self.peers.choose_k(&mut self.rng, self.cfg.fanout, &[]) {
                self.send_to_node(now, &t, &more);
            }
        }
    }

    /// Writes the current static-key binding as the `@key` entry when it changed (at start and
    /// after each rotation), so that peers can open 1-RTT IK handshakes.
    pub(super) fn publish_binding(&mut self) {
        let b = self.secure.binding();
        if self.published_binding != Some(b) {
            self.published_binding = Some(b);
            self.table.write_local(self.secure.identity_key(), KEY_KEY, Value::Binding(Box::new(b)));
        }
    }

    fn rumor_ttl(&self) -> u8 {
        // Forwarding happens only on news, so the TTL is a safety bound, not the spreading
        // mechanism: generous, about 2 log2(N).
        let n = self.peers.len() as f64 + 1.0;
        (2.0 * n.log2().ceil() + 2.0).clamp(2.0, 40.0) as u8
    }

    /// Pushes the local entries newer than `from` as a rumor to `k` peers, and queues it for
    /// retransmission if `retransmit` (see [`rumor`]).
    fn rumor(&mut self, now: Instant, from: u64, k: usize, retransmit: bool) {
        let ttl = self.rumor_ttl();
        let deltas = self.table.deltas_for(&self.local.id, self.local.generation, from, ttl, MAX_PAYLOAD);
        for d in deltas {
            let _ = self.spread(now, d, &[], k, retransmit);
        }
    }

    /// The binding a node published, if it is known.
    fn binding_of(&self, id: &NodeId) -> Option<Binding> {
        match self.table.get(id)?.entries.get(KEY_KEY).map(|e| &e.value) {
            Some(Value::Binding(b)) => Some(**b),
            _ => None,
        }
    }

    fn send_to_node(&mut self, now: Instant, id: &NodeId, msg: &Message) {
        if let Some(addr) = self.table.get(id).map(|n| n.info.addr) {
            let hint = self.binding_of(id);
            self.send_with(now, addr, hint, msg);
        }
    }

    fn send(&mut self, now: Instant, dst: SocketAddr, msg: &Message) {
        self.send_with(now, dst, None, msg);
    }

    /// The wire version a message to `dst` is encoded at: the version of the session with it,
    /// else (a handshake will run) the highest this node speaks; a payload queued at another
    /// version than the session then negotiates is transcoded ([`message::transcode`]).
    fn version_for(&self, now: Instant, dst: SocketAddr) -> u8 {
        self.secure.session_version(now, dst).unwrap_or(self.secure.versions().max())
    }

    fn send_with(&mut self, now: Instant, dst: SocketAddr, hint: Option<Binding>, msg: &Message) {
        let version = self.version_for(now, dst);
        let payload = msg.encode_for(version);
        debug_assert!(payload.len() <= MAX_PAYLOAD + 1, "message of {} bytes", payload.len());
        self.count_sent(&payload);
        let mut out = Vec::new();
        self.secure.send_at(now, dst, hint, version, &payload, &mut out);
        self.emit(out);
    }

    fn count_sent(&mut self, payload: &[u8]) {
        if let Some(c) = payload.first().and_then(|k| self.stats.sent_by_kind.get_mut(usize::from(*k))) {
            *c += 1;
        }
    }

    /// Sends a payload encoded at wire version `at`, transcoded if the peer speaks another.
    fn send_encoded(&mut self, now: Instant, dst: SocketAddr, hint: Option<Binding>, at: u8, payload: &[u8]) {
        let version = self.version_for(now, dst);
        let transcoded;
        let payload = if version == at {
            payload
        } else {
            let Some(p) = message::transcode(payload, at, version) else { return };
            transcoded = p;
            &transcoded[..]
        };
        self.count_sent(payload);
        let mut out = Vec::new();
        self.secure.send_at(now, dst, hint, version, payload, &mut out);
        self.emit(out);
    }

    /// The wire versions this node speaks.
    pub fn versions(&self) -> crate::version::VersionRange {
        self.secure.versions()
    }

    /// The protocol range a node advertised in its `@proto` entry (`None`: it has not said; an
    /// agent older than the entry).
    pub fn versions_of(&self, id: &NodeId) -> Option<crate::version::VersionRange> {
        match self.table.get(id)?.entries.get(message::PROTO_KEY).map(|e| &e.value) {
            Some(Value::Proto(r)) => Some(*r),
            _ => None,
        }
    }

    fn emit(&mut self, out: Vec<Outgoing>) {
        for o in out {
            self.stats.datagrams_out += 1;
            self.stats.bytes_out += o.bytes.len() as u64;
            self.transmits.push_back(Transmit { dst: o.dst, payload: o.bytes });
        }
    }

    /// Advances timers: anti-entropy rounds, seed retries, and the secure layer's handshake
    /// retries and key rotation.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_timers(now);
        self.promised = self.poll_timeout();
    }

    fn advance_timers(&mut self, now: Instant) {
        // Not on the first call: a driver may take a while between creating the node and
        // running its loop (loading its data), which is no pause. Measured against the
        // deadline this node asked for after its last input, not one computed now: a deadline
        // can move earlier with time alone (a loaded node's longer suspicion deadline lapses
        // back to the short one when it stops being loaded), and a deadline that moved into
        // the past is no sign that the node was not run; taking it for one moved the
        // suspicion on by the "lag" at every call, and it never ripened.
        if let Some(due) = self.promised.filter(|_| self.timed) {
            self.detect_pause(now, due);
        }
        self.timed = true;
        self.last_now = self.last_now.max(now);
        let mut out = Vec::new();
        self.secure.handle_timeout(now, &mut out);
        self.emit(out);
        if self.left {
            return;
        }
        self.publish_binding();
        self.liveness_timeout(now);
        self.collect_garbage(now);
        self.rumor_timeout(now);
        self.reorder_timeout(now);
        if now >= self.next_round {
            self.withdraw_expired_accusations(now);
            self.review_exclusions_if(true);
            self.review_failure_records(now);
            let jitter = 0.9 + 0.2 * self.rng.unit();
            self.next_round = now + self.cfg.gossip_interval.mul_f64(jitter);
            self.round(now);
            self.pull_incomplete(now);
        }
        if now >= self.next_unadmitted_report {
            let unadmitted = self.secure.take_unadmitted();
            if !unadmitted.is_empty() {
                self.next_unadmitted_report = now + std::time::Duration::from_secs(60);
            }
            for (from, count) in unadmitted {
                self.events.push_back(Event::Unadmitted { from, count });
            }
            let failed = self.secure.take_decrypt_failures();
            if !failed.is_empty() {
                self.next_unadmitted_report = now + std::time::Duration::from_secs(60);
            }
            for (from, identity, count) in failed {
                self.events.push_back(Event::DecryptFailures { from, identity, count });
            }
        }
        if !self.peers.is_empty() {
            self.seed_attempts = 0;
        }
        if self.peers.is_empty() && !self.cfg.seeds.is_empty() && now >= self.next_seed_try {
            self.next_seed_try = now + self.seed_backoff;
            self.seed_backoff = (self.seed_backoff * 2).min(self.cfg.seed_backoff_max);
            self.seed_attempts += 1;
            // 3, 6, 12, ... attempts without a peer: say so, with backoff.
            if self.seed_attempts == 3 || (self.seed_attempts > 3 && self.seed_attempts.is_power_of_two()) {
                self.events
                    .push_back(Event::SeedsSilent { seeds: self.cfg.seeds.clone(), attempts: self.seed_attempts });
            }
            // Our own state goes along with the opening, so that a seed learns of us from one
            // exchange even when the rest of it is lost.
            for seed in self.cfg.seeds.clone() {
                self.open_exchange(now, seed, None);
                self.push_own_state(now, seed);
            }
        }
    }

    /// Keeps the active view full and slowly rotating, and returns a random member of it.
    fn active_partner(&mut self) -> Option<NodeId> {
        self.active.retain(|id| self.peers.contains(id));
        let want = self.cfg.active_view.min(self.peers.len());
        let rotate = !self.active.is_empty() && self.rng.unit() < self.cfg.active_rotation;
        if rotate && self.active.len() >= want && self.peers.len() > self.active.len() {
            let i = self.rng.index(self.active.len());
            self.active.swap_remove(i);
        }
        let mut tries = 0;
        while self.active.len() < want && tries < 4 * want + 8 {
            tries += 1;
            if let Some(c) = self.peers.choose(&mut self.rng) {
                if !self.active.contains(&c) {
                    self.active.push(c);
                }
            }
        }
        (!self.active.is_empty()).then(|| self.active[self.rng.index(self.active.len())])
    }

    fn round(&mut self, now: Instant) {
        if !self.cfg.seeds.is_empty() && self.rng.unit() < self.cfg.seed_probability {
            let seed = self.cfg.seeds[self.rng.index(self.cfg.seeds.len())];
            self.stats.rounds += 1;
            self.open_exchange(now, seed, None);
        } else if let Some(id) = self.dead_to_probe() {
            if let Some(addr) = self.table.get(&id).map(|n| n.info.addr) {
                self.stats.rounds += 1;
                let hint = self.binding_of(&id);
                self.open_exchange(now, addr, hint);
            }
        } else if let Some(id) = self.active_partner() {
            if let Some(addr) = self.table.get(&id).map(|n| n.info.addr) {
                self.stats.rounds += 1;
                let hint = self.binding_of(&id);
                self.start_probe(now, id);
                self.open_exchange(now, addr, hint);
            }
        }
    }

    /// Sends `addr` this node's whole state from version 0, paced as an answer is (a window,
    /// then `More`).
    fn push_own_state(&mut self, now: Instant, addr: SocketAddr) {
        let me = self.local.id;
        self.serve(now, addr, &[message::Want { id: me, generation: 0, version: 0 }]);
    }

    fn open_exchange(&mut self, now: Instant, addr: SocketAddr, hint: Option<Binding>) {
        let msg = Message::Reconcile {
            sender: self.local.id,
            initial: true,
            ranges: vec![crate::reconcile::opening(&self.table, crate::state::Scheme::at(self.version_for(now, addr)))],
        };
        self.send_with(now, addr, hint, &msg);
    }
}

/// Checks that an instance can be gossiped (id length, encoded size) and returns its key and
/// value. [`Gossip::register`] refuses exactly what this refuses.
pub fn check_instance(inst: ServiceInstance) -> Result<(String, Value), CommandError> {
    if inst.id.is_empty() || inst.id.len() > message::MAX_KEY - 4 {
        return Err(CommandError::BadId { max: message::MAX_KEY - 4 });
    }
    let entry = Entry { key: format!("svc/{}", inst.id).into(), version: u64::MAX, value: Value::Service(inst.into()), sig: [0; 64] };
    let size = message::entry_len(&entry);
    if size > MAX_ENTRY {
        return Err(CommandError::TooLarge { size, max: MAX_ENTRY });
    }
    Ok((entry.key.to_string(), entry.value))
}

/// The live (non-deleted) service instances of a node, as answered: while a restarted owner's
/// new generation is still arriving, those of its previous generation ([`NodeState::served`]).
pub fn services_of(node: &NodeState) -> impl Iterator<Item = &ServiceInstance> {
    node.served().entries.values().filter_map(|e| match &e.value {
        Value::Service(s) => Some(&**s),
        _ => None,
    })
}
