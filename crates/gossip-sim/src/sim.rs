//! The event loop: N nodes, one virtual clock, one queue of timers and datagrams in flight.
//!
//! Virtual time is an offset from an origin [`Instant`] read once at construction; every
//! `Instant` handed to a node is `origin + offset`. The queue is a min-heap keyed by
//! `(time, sequence)`, so simultaneous events run in the order they were scheduled. Timers are
//! scheduled lazily: after every call into a node its `poll_timeout` is read again, and a timer
//! entry that no longer matches the node's current deadline is skipped when popped.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use gossip_core::MAX_DATAGRAM;
use gossip_core::{CommandError, Gossip, ServiceInstance, Stats, services_of};

use crate::cluster::{SimConfig, build};
use crate::net::{Network, index_of};
use crate::watch::Watch;

#[derive(Debug)]
enum What {
    Timer(usize),
    Deliver {
        dst: usize,
        src: usize,
        bytes: Vec<u8>,
    },
    /// The end of a node's pause ([`Sim::pause`]).
    Resume(usize),
}

#[derive(Debug)]
struct Queued {
    at: Duration,
    seq: u64,
    what: What,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Datagrams that reached a paused node, with their senders, in order.
type Held = Vec<(usize, Vec<u8>)>;

/// A simulated cluster.
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    origin: Instant,
    now: Duration,
    nodes: Vec<Gossip>,
    up: Vec<bool>,
    up_count: usize,
    deadline: Vec<Option<Duration>>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    net: Network,
    watch: Option<Watch>,
    retired: Stats,
    events: u64,
    /// Per node, while paused: the datagrams that reached it meanwhile.
    paused: Vec<Option<Held>>,
}

impl Sim {
    /// Builds the cluster `cfg` describes, at virtual time zero.
    pub fn new(cfg: SimConfig) -> Sim {
        // The one clock read: an arbitrary origin for virtual time. Nothing depends on its value.
        #[allow(clippy::disallowed_methods)]
        let origin = Instant::now();
        let nodes = build(&cfg, origin);
        let n = nodes.len();
        let mut sim = Sim {
            net: Network::new(cfg.net.clone(), cfg.seed),
            cfg,
            origin,
            now: Duration::ZERO,
            nodes,
            up: vec![true; n],
            up_count: n,
            deadline: vec![None; n],
            queue: BinaryHeap::new(),
            seq: 0,
            watch: None,
            retired: Stats::default(),
            events: 0,
            paused: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            sim.after_call(i);
        }
        sim
    }

    /// The master seed.
    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Virtual time elapsed since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Virtual time as the `Instant` the nodes see.
    pub fn instant(&self) -> Instant {
        self.origin + self.now
    }

    /// Number of nodes (up or down).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s state machine.
    pub fn node(&self, i: usize) -> &Gossip {
        &self.nodes[i]
    }

    /// Every node's state machine, by index.
    pub fn nodes(&self) -> &[Gossip] {
        &self.nodes
    }

    /// True if node `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.up[i]
    }

    /// Indices of the running nodes.
    pub fn up_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.up[i])
    }

    /// Number of running nodes.
    pub fn up_count(&self) -> usize {
        self.up_count
    }

    /// The network (partitions, loss, counters).
    pub fn net(&self) -> &Network {
        &self.net
    }

    /// The network, to change partitions or loss.
    pub fn net_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// Events processed so far (timers fired and datagrams handled).
    pub fn events_processed(&self) -> u64 {
        self.events
    }

    /// Bytes sent by every node since the start, restarted incarnations included.
    pub fn bytes_out(&self) -> u64 {
        self.retired.bytes_out + self.nodes.iter().map(|g| g.stats().bytes_out).sum::<u64>()
    }

    /// Processes the next event if it is due at or before `until`. False if none is.
    pub fn step(&mut self, until: Duration) -> bool {
        loop {
            match self.queue.peek() {
                Some(Reverse(q)) if q.at <= until => {}
                _ => return false,
            }
            let Some(Reverse(q)) = self.queue.pop() else {
                return false;
            };
            self.now = self.now.max(q.at);
            match q.what {
                What::Timer(i) => {
                    if !self.up[i] || self.deadline[i] != Some(q.at) || self.paused[i].is_some() {
                        continue; // superseded, or paused (the resume runs the timer)
                    }
                    self.deadline[i] = None;
                    let now = self.instant();
                    self.nodes[i].handle_timeout(now);
                    if let Some(t) = self.nodes[i].poll_timeout() {
                        assert!(t > now, "node {i}: poll_timeout not after handle_timeout (gossip-core bug)");
                    }
                    self.after_call(i);
                }
                What::Deliver { dst, src, bytes } => {
                    self.net.arrived(self.up[dst]);
                    if !self.up[dst] {
                        continue;
                    }
                    if let Some(held) = self.paused[dst].as_mut() {
                        held.push((src, bytes));
                        continue;
                    }
                    let now = self.instant();
                    self.nodes[dst].handle_datagram(now, crate::net::addr(src), &bytes);
                    if let Some(w) = self.watch.as_mut() {
                        w.check(dst, &self.nodes[dst], self.now);
                    }
                    self.after_call(dst);
                }
                What::Resume(i) => {
                    let Some(held) = self.paused[i].take() else { continue };
                    if !self.up[i] {
                        continue;
                    }
                    // The worst order a driver may choose: every overdue timer first (a timer
                    // whose deadline has passed is ready at once again, and a driver's select
                    // may well prefer it), then what queued up in the socket meanwhile.
                    self.deadline[i] = None;
                    let now = self.instant();
                    for _ in 0..8 {
                        self.nodes[i].handle_timeout(now);
                        if self.nodes[i].poll_timeout().is_none_or(|t| t > now) {
                            break;
                        }
                    }
                    for (src, bytes) in held {
                        self.nodes[i].handle_datagram(now, crate::net::addr(src), &bytes);
                    }
                    self.after_call(i);
                }
            }
            self.events += 1;
            return true;
        }
    }

    /// Runs every event due up to `t` (virtual time since the start), then sets the clock to `t`.
    pub fn run_until(&mut self, t: Duration) {
        while self.step(t) {}
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `cond` holds (checked every `every`) or `within` has passed. Returns the
    /// delay until it held.
    pub fn run_until_cond(
        &mut self,
        within: Duration,
        every: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if cond(self) {
                return Some(self.now - start);
            }
            if self.now >= start + within {
                return None;
            }
            self.run_until((self.now + every).min(start + within));
        }
    }

    fn schedule(&mut self, at: Duration, what: What) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at, seq: self.seq, what }));
    }

    /// After any call into node `i`: route its datagrams, drop its events, re-arm its timer.
    fn after_call(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            assert!(t.payload.len() <= MAX_DATAGRAM, "node {i} sent a datagram of {} bytes", t.payload.len());
            let dst = index_of(&t.dst).filter(|&d| d < self.nodes.len());
            if let Some(delay) = self.net.route(i, dst, t.payload.len()) {
                let dst = dst.unwrap_or_default();
                self.schedule(self.now + delay, What::Deliver { dst, src: i, bytes: t.payload });
            }
        }
        while self.nodes[i].poll_event().is_some() {}
        let next = self.nodes[i].poll_timeout().map(|t| t.saturating_duration_since(self.origin).max(self.now));
        if self.up[i] && next != self.deadline[i] {
            self.deadline[i] = next;
            if let Some(at) = next {
                self.schedule(at, What::Timer(i));
            }
        }
    }

    /// Registers (or replaces) a service on node `i`; it spreads from now.
    pub fn register(&mut self, i: usize, inst: ServiceInstance) -> Result<(), CommandError> {
        let now = self.instant();
        let r = self.nodes[i].register(now, inst);
        self.after_call(i);
        r
    }

    /// Registers several services on node `i` at once, as gossipd's driver takes the requests
    /// queued in one turn: their rumor leaves together.
    pub fn register_batch(&mut self, i: usize, batch: Vec<ServiceInstance>) -> Result<(), CommandError> {
        let now = self.instant();
        let r = batch.into_iter().try_for_each(|inst| self.nodes[i].register(now, inst));
        self.after_call(i);
        r
    }

    /// Deregisters a service of node `i`. False if it was not registered.
    pub fn deregister(&mut self, i: usize, id: &str) -> Result<bool, CommandError> {
        let now = self.instant();
        let r = self.nodes[i].deregister(now, id);
        self.after_call(i);
        r
    }

    /// Node `i` leaves gracefully (announces it, then stops gossiping; it stays up).
    pub fn leave(&mut self, i: usize) {
        let now = self.instant();
        self.nodes[i].leave(now);
        self.after_call(i);
    }

    /// Pauses node `i` for `d` (a process stopped, a host starved of CPU): its timers do not
    /// run and the datagrams that reach it wait, as in a socket's queue. At the end it runs its
    /// overdue timers first, then reads what waited (the worst order for its deadlines).
    pub fn pause(&mut self, i: usize, d: Duration) {
        if self.up[i] && self.paused[i].is_none() {
            self.paused[i] = Some(Vec::new());
            self.schedule(self.now + d, What::Resume(i));
        }
    }

    /// Stops node `i` abruptly: no more timers, datagrams to it are lost. Its datagrams already
    /// in flight still arrive.
    pub fn kill(&mut self, i: usize) {
        if self.up[i] {
            self.up[i] = false;
            self.up_count -= 1;
            self.deadline[i] = None;
            // A pause ends with the process: what waited for it is lost with it.
            self.paused[i] = None;
            if let Some(w) = self.watch.as_mut() {
                w.forget(i);
            }
        }
    }

    /// Restarts node `i` as a fresh process: same id and address, generation one higher than
    /// its last incarnation, knowing only itself and the seeds. It is up afterwards.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let generation = self.nodes[i].local().generation + 1;
        let fresh = self.cfg.make_node(i, generation, self.instant(), self.now);
        let old = std::mem::replace(&mut self.nodes[i], fresh);
        let s = old.stats();
        self.retired.bytes_out += s.bytes_out;
        self.retired.bytes_in += s.bytes_in;
        self.up[i] = true;
        self.up_count += 1;
        self.after_call(i);
    }

    /// Starts following node `owner`'s current state until every live node holds it.
    pub fn watch(&mut self, owner: usize) {
        let s = self.nodes[owner].node(&self.nodes[owner].local().id).map(|s| s.summary());
        let target = s.map_or((0, 0), |s| (s.generation, s.version));
        let mut w = Watch::new(self.nodes[owner].local().id, target, self.now, self.nodes.len());
        for i in (0..self.nodes.len()).filter(|&i| self.up[i]) {
            w.check(i, &self.nodes[i], self.now);
        }
        self.watch = Some(w);
    }

    /// The change being followed, if any.
    pub fn watching(&self) -> Option<&Watch> {
        self.watch.as_ref()
    }

    /// True when every live node holds the change being followed.
    pub fn watch_done(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.reached() >= self.up_count)
    }

    /// Every node's `(count, fingerprint)` of its whole table.
    pub fn fingerprints(&self) -> Vec<(u64, gossip_core::Commitment)> {
        self.nodes.iter().map(|g| g.root_fingerprint()).collect()
    }

    /// Every node's counters.
    pub fn stats(&self) -> Vec<Stats> {
        self.nodes.iter().map(|g| g.stats().clone()).collect()
    }

    /// Number of distinct table fingerprints among live nodes (1 = converged).
    pub fn distinct_fingerprints(&self) -> usize {
        let mut fps: Vec<(u64, gossip_core::Commitment)> =
            self.up_nodes().map(|i| self.nodes[i].root_fingerprint()).collect();
        fps.sort_unstable();
        fps.dedup();
        fps.len()
    }

    /// True when every live node holds the same table (same owners, generations and versions).
    pub fn converged(&self) -> bool {
        self.distinct_fingerprints() <= 1
    }

    /// True if node `at` holds a live service `id` owned by node `owner`.
    pub fn holds_service(&self, at: usize, owner: usize, id: &str) -> bool {
        let owner_id = self.cfg.node_id(owner);
        self.nodes[at].node(&owner_id).is_some_and(|s| services_of(s).any(|svc| svc.id == id))
    }

    /// The generation of `owner` as node `at` knows it (0 if unknown).
    pub fn generation_of(&self, at: usize, owner: usize) -> u64 {
        self.nodes[at].node(&self.cfg.node_id(owner)).map_or(0, |s| s.info.generation)
    }
}

impl Drop for Sim {
    /// A panic while a simulation is alive (a failed assertion in a test, a datagram over the
    /// limit) prints the seed that replays it.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "gossip-sim: failed at virtual t={:?}; replay with {}={}",
                self.now,
                crate::SEED_ENV,
                self.cfg.seed
            );
        }
    }
}
