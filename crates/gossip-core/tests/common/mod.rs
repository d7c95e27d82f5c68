//! The virtual-time network shared by the core's cluster, liveness and GC tests: `Gossip` nodes
//! exchange their real encoded (and encrypted) datagrams through an in-memory network (1 ms
//! latency, optional loss, nodes that can be taken down), stepping to whichever event is due
//! next. Events other than `CatalogChanged` are recorded for assertions.
#![allow(dead_code)] // Each test file uses a different part.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use gossip_core::secure::SecureConfig;
use gossip_core::secure::keys::{ClusterKey, Identity, Keyring};
use gossip_core::{Config, Event, Gossip, rng::Rng};

/// Unix time at the start of every test run, in nanoseconds (any fixed value will do).
pub const WALL: u64 = 1_790_000_000_000_000_000;
/// The cluster key of every test network.
pub const KEY: [u8; 32] = [42; 32];

/// A datagram in flight: delivery time, sequence, destination index, source, bytes.
type InFlight = Reverse<(Instant, u64, usize, SocketAddr, Vec<u8>)>;

/// The address of node `i`.
pub fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8), 7946))
}

/// A secure-layer configuration whose identity and DRBG derive from the two seeds.
pub fn secure(identity_seed: u64, rng_seed: u64) -> SecureConfig {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&identity_seed.to_be_bytes());
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&rng_seed.to_be_bytes());
    SecureConfig::new(Identity::from_secret(id), Keyring::new(ClusterKey::new(KEY)), WALL, seed)
}

/// A plain service instance: `id` of service `name` on port 80.
pub fn svc(id: &str, name: &str) -> gossip_core::ServiceInstance {
    gossip_core::ServiceInstance {
        id: id.into(),
        name: name.into(),
        port: 80,
        weight_passing: 1,
        weight_warning: 1,
        ..Default::default()
    }
}

/// The test network.
pub struct Net {
    pub start: Instant,
    pub now: Instant,
    pub nodes: Vec<Gossip>,
    pub by_addr: BTreeMap<SocketAddr, usize>,
    inflight: BinaryHeap<InFlight>,
    seq: u64,
    pub loss: f64,
    rng: Rng,
    pub down: Vec<bool>,
    /// Directed links `(from, to)` that drop every datagram (a partial partition).
    pub blocked: std::collections::BTreeSet<(usize, usize)>,
    seed: u64,
    /// (node index, event, when), every event but `CatalogChanged`.
    pub events: Vec<(usize, Event, Instant)>,
    /// Datagrams sent to addresses outside the network: (destination, source, bytes). Tests
    /// that play a raw peer (an attacker speaking the secure layer) read them from here.
    pub outside: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Most datagrams queued towards one node (its socket's receive buffer); beyond, dropped and
    /// counted in `rx_drops`. None: unbounded.
    pub rx_limit: Option<usize>,
    /// Datagrams dropped per node on a full receive queue.
    pub rx_drops: Vec<u64>,
    /// Extra delay before node i handles what is sent to it (a slow node: starved of CPU, its
    /// receive queue late).
    pub slow: Vec<Duration>,
    queued: Vec<usize>,
}

impl Net {
    /// `n` nodes that know only the seed (node 0) and join.
    pub fn cold(n: usize, seed: u64, loss: f64) -> Net {
        Net::build(n, seed, loss, |_| {})
    }

    /// `n` converged nodes (every node starts with every node's signed state), with `tweak`
    /// applied to every node's configuration.
    pub fn warm(n: usize, seed: u64, loss: f64, tweak: impl Fn(&mut Config)) -> Net {
        let mut net = Net::build(n, seed, loss, tweak);
        let (first, rest) = net.nodes.split_at_mut(1);
        for g in rest.iter() {
            first[0].learn_owner_from(g);
        }
        for g in rest.iter_mut() {
            g.warm_start_from(&first[0]);
        }
        net
    }

    fn build(n: usize, seed: u64, loss: f64, tweak: impl Fn(&mut Config)) -> Net {
        Net::build_with(n, seed, loss, tweak, |_, _| {})
    }

    /// `n` nodes that know only the seed (node 0) and join, with `tweak` applied to node `i`'s
    /// secure configuration (its protocol range, say).
    pub fn cold_with(n: usize, seed: u64, loss: f64, tweak: impl Fn(usize, &mut SecureConfig)) -> Net {
        Net::build_with(n, seed, loss, |_| {}, tweak)
    }

    fn build_with(
        n: usize,
        seed: u64,
        loss: f64,
        tweak: impl Fn(&mut Config),
        secure_tweak: impl Fn(usize, &mut SecureConfig),
    ) -> Net {
        // The only clock read: an arbitrary origin for virtual time.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut rng = Rng::from_seed(seed);
        let mut net = Net {
            start,
            now: start,
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            inflight: BinaryHeap::new(),
            seq: 0,
            loss,
            rng: Rng::from_seed(seed ^ 0x5eed),
            down: Vec::new(),
            blocked: Default::default(),
            seed,
            events: Vec::new(),
            outside: Vec::new(),
            rx_limit: None,
            rx_drops: Vec::new(),
            slow: Vec::new(),
            queued: Vec::new(),
        };
        for i in 0..n {
            let mut cfg = Config { seeds: vec![addr(0)], rng_seed: rng.fork(), ..Config::default() };
            tweak(&mut cfg);
            let mut sec = secure(net.identity_seed(i), rng.fork());
            secure_tweak(i, &mut sec);
            net.add(Gossip::new(cfg, sec, format!("node-{i}"), addr(i), 1, start));
        }
        net
    }

    /// The identity seed of node `i` (to restart it with the same identity).
    pub fn identity_seed(&self, i: usize) -> u64 {
        self.seed * 10_000 + i as u64
    }

    /// A secure configuration whose wall clock reads the network's current time.
    pub fn secure_now(&self, identity_seed: u64, rng_seed: u64) -> SecureConfig {
        let mut s = secure(identity_seed, rng_seed);
        s.wall_clock_at_start = WALL + self.now.duration_since(self.start).as_nanos() as u64;
        s
    }

    /// Adds a node at the next address; returns its index.
    pub fn add(&mut self, g: Gossip) -> usize {
        let i = self.nodes.len();
        self.by_addr.insert(g.local().addr, i);
        self.nodes.push(g);
        self.down.push(false);
        self.rx_drops.push(0);
        self.slow.push(Duration::ZERO);
        self.queued.push(0);
        i
    }

    /// Sends what node `i` wants sent, and records its events.
    pub fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            assert!(t.payload.len() <= 1200, "datagram of {} bytes", t.payload.len());
            if self.rng.unit() < self.loss {
                continue;
            }
            let from = self.nodes[i].local().addr;
            match self.by_addr.get(&t.dst) {
                Some(&dst) if self.rx_limit.is_some_and(|l| self.queued[dst] >= l) => self.rx_drops[dst] += 1,
                Some(&dst) if !self.blocked.contains(&(i, dst)) => {
                    self.queued[dst] += 1;
                    self.seq += 1;
                    let at = self.now + Duration::from_millis(1) + self.slow[dst];
                    self.inflight.push(Reverse((at, self.seq, dst, from, t.payload)));
                }
                Some(_) => {}
                None => self.outside.push((t.dst, from, t.payload)),
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            if e != Event::CatalogChanged {
                self.events.push((i, e, self.now));
            }
        }
    }

    /// Runs until `deadline`.
    pub fn run_until(&mut self, deadline: Instant) {
        loop {
            let next_timer = (0..self.nodes.len())
                .filter(|&i| !self.down[i])
                .filter_map(|i| self.nodes[i].poll_timeout().map(|t| (t, i)))
                .min();
            let next_packet = self.inflight.peek().map(|Reverse((t, ..))| *t);
            let t = match (next_timer, next_packet) {
                (Some((a, _)), Some(b)) => a.min(b),
                (Some((a, _)), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if t > deadline {
                break;
            }
            self.now = self.now.max(t);
            if next_packet == Some(t) {
                let Some(Reverse((_, _, dst, from, bytes))) = self.inflight.pop() else { break };
                self.queued[dst] = self.queued[dst].saturating_sub(1);
                if !self.down[dst] {
                    self.nodes[dst].handle_datagram(self.now, from, &bytes);
                    self.flush(dst);
                }
            } else if let Some((_, i)) = next_timer {
                self.nodes[i].handle_timeout(self.now);
                self.flush(i);
            }
        }
        self.now = deadline;
    }

    /// Runs for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline);
    }

    /// Delivers `bytes` from `from` (an address outside the network) to node `dst` in 1 ms.
    pub fn inject(&mut self, from: SocketAddr, dst: usize, bytes: Vec<u8>) {
        self.queued[dst] += 1;
        self.seq += 1;
        self.inflight.push(Reverse((self.now + Duration::from_millis(1), self.seq, dst, from, bytes)));
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
    }

    /// Indices of the nodes that are up.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| !self.down[i]).collect()
    }

    /// True when every node that is up holds the same table.
    pub fn converged(&self) -> bool {
        let live = self.live();
        let fp = self.nodes[live[0]].root_fingerprint();
        live.iter().all(|&i| self.nodes[i].root_fingerprint() == fp)
    }

    /// True if node `i` holds `owner` among its peers (alive or suspect, so answered).
    pub fn knows_service_owner(&self, i: usize, owner: &gossip_core::NodeId) -> bool {
        self.nodes[i].liveness(owner).serves() && self.nodes[i].node(owner).is_some()
    }

    /// True if node `i` holds a live instance of service `name`.
    pub fn knows_service(&self, i: usize, name: &str) -> bool {
        self.nodes[i].nodes().any(|n| gossip_core::services_of(n).any(|s| s.name == name))
    }
}
