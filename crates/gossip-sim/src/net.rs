//! The network model: addresses, per-link latency and jitter, loss, partitions.
//!
//! Node `i` lives at [`addr`]`(i)`, a `127.x.y.z:7946` address that is never bound: datagrams
//! are routed in memory. [`Network::route`] decides the fate of each datagram when it is sent:
//! dropped (partition, loss) or delivered after `latency + link extra + jitter`, where the
//! link extra is fixed per (unordered) pair of nodes and derived from the master seed, and the
//! jitter is drawn per datagram from the network's own seeded generator.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use gossip_core::rng::Rng;

use crate::{derive_seed, domain};

/// The gossip port every simulated node uses.
pub const PORT: u16 = 7946;

/// The address of node `index`: `127.(1 + i/65536).(i/256 % 256).(i % 256):7946`.
pub fn addr(index: usize) -> SocketAddr {
    let i = index as u32;
    let ip = Ipv4Addr::new(127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, PORT))
}

/// The node index of a simulated address (the inverse of [`addr`]).
pub fn index_of(a: &SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v4) if v4.port() == PORT => {
            let [o0, o1, o2, o3] = v4.ip().octets();
            (o0 == 127 && o1 >= 1).then(|| ((o1 as usize - 1) << 16) | ((o2 as usize) << 8) | o3 as usize)
        }
        _ => None,
    }
}

/// Parameters of the network model.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// One-way latency every datagram pays.
    pub latency: Duration,
    /// Each link adds a fixed extra delay drawn once in `[0, link_spread)`.
    pub link_spread: Duration,
    /// Each datagram adds a random extra delay in `[0, jitter)` (so datagrams may reorder).
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
}

impl Default for NetConfig {
    /// A LAN: 0.5–2 ms one way, no loss.
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_micros(500),
            link_spread: Duration::from_millis(1),
            jitter: Duration::from_micros(500),
            loss: 0.0,
        }
    }
}

/// What happened to the datagrams sent so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Bytes handed to the network.
    pub bytes: u64,
    /// Datagrams dropped by random loss.
    pub lost: u64,
    /// Datagrams dropped because source and destination were in different partitions.
    pub partitioned: u64,
    /// Datagrams addressed to no simulated node.
    pub unroutable: u64,
    /// Datagrams that arrived at a stopped node.
    pub to_down: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Largest datagram seen, in bytes.
    pub largest: usize,
}

/// The network: routing decisions and their counters.
#[derive(Debug, Clone)]
pub struct Network {
    cfg: NetConfig,
    link_salt: u64,
    rng: Rng,
    /// Partition group of each node; empty when the network is whole.
    group: Vec<u32>,
    link_loss: BTreeMap<(usize, usize), f64>,
    stats: NetStats,
}

/// Group of the nodes a partition does not list: they form one group together.
const REST: u32 = u32::MAX;

impl Network {
    /// A whole network with the given parameters, its randomness derived from `master`.
    pub fn new(cfg: NetConfig, master: u64) -> Network {
        Network {
            cfg,
            link_salt: derive_seed(master, domain::LINK, 0, 0),
            rng: Rng::from_seed(derive_seed(master, domain::NET, 0, 0)),
            group: Vec::new(),
            link_loss: BTreeMap::new(),
            stats: NetStats::default(),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Sets the loss probability of every link without its own (see [`Network::set_link_loss`]).
    pub fn set_loss(&mut self, p: f64) {
        self.cfg.loss = p.clamp(0.0, 1.0);
    }

    /// Sets the loss probability of the link between `a` and `b` (both directions).
    pub fn set_link_loss(&mut self, a: usize, b: usize, p: f64) {
        self.link_loss.insert((a.min(b), a.max(b)), p.clamp(0.0, 1.0));
    }

    /// Splits the network: nodes in different groups cannot reach each other. Nodes listed in
    /// no group form one more group together. Replaces any previous partition.
    pub fn partition(&mut self, n: usize, groups: &[Vec<usize>]) {
        self.group = vec![REST; n];
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                if i < n {
                    self.group[i] = g as u32;
                }
            }
        }
    }

    /// Removes the partition.
    pub fn heal(&mut self) {
        self.group.clear();
    }

    /// True if `a` and `b` are on the same side of the current partition.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.group.is_empty() || self.group.get(a) == self.group.get(b)
    }

    /// The fate of a datagram of `len` bytes sent from `src` to `dst` (a node index, if the
    /// address is simulated): `Some(delay)` to deliver it after `delay`, `None` if dropped.
    pub fn route(&mut self, src: usize, dst: Option<usize>, len: usize) -> Option<Duration> {
        self.stats.sent += 1;
        self.stats.bytes += len as u64;
        self.stats.largest = self.stats.largest.max(len);
        // Draw the same random numbers whatever the outcome: the stream stays aligned.
        let loss_draw = self.rng.unit();
        let jitter_draw = self.rng.unit();
        let Some(dst) = dst else {
            self.stats.unroutable += 1;
            return None;
        };
        if !self.reachable(src, dst) {
            self.stats.partitioned += 1;
            return None;
        }
        let p = self.link_loss.get(&(src.min(dst), src.max(dst))).copied().unwrap_or(self.cfg.loss);
        if loss_draw < p {
            self.stats.lost += 1;
            return None;
        }
        Some(self.cfg.latency + self.link_extra(src, dst) + self.cfg.jitter.mul_f64(jitter_draw))
    }

    /// The fixed extra delay of the link between `a` and `b`.
    pub fn link_extra(&self, a: usize, b: usize) -> Duration {
        let spread = self.cfg.link_spread.as_nanos() as u64;
        if spread == 0 {
            return Duration::ZERO;
        }
        let h = derive_seed(self.link_salt, domain::LINK, a.min(b) as u64, a.max(b) as u64);
        Duration::from_nanos(h % spread)
    }

    /// Counts a datagram delivered (`up`) or arriving at a stopped node.
    pub(crate) fn arrived(&mut self, up: bool) {
        if up {
            self.stats.delivered += 1;
        } else {
            self.stats.to_down += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for i in [0usize, 1, 255, 256, 65_535, 65_536, 99_999, 1_000_000] {
            assert_eq!(index_of(&addr(i)), Some(i), "{i} -> {}", addr(i));
        }
        assert_eq!(addr(0).to_string(), "127.1.0.0:7946");
        assert_eq!(index_of(&"10.0.0.1:7946".parse().unwrap()), None);
    }

    #[test]
    fn partitions_and_loss() {
        let mut net = Network::new(NetConfig { loss: 0.0, ..NetConfig::default() }, 1);
        net.partition(4, &[vec![0, 1]]);
        assert!(net.reachable(0, 1) && net.reachable(2, 3) && !net.reachable(1, 2));
        assert!(net.route(0, Some(2), 10).is_none());
        let d = net.route(0, Some(1), 10).unwrap();
        assert!(d >= Duration::from_micros(500) && d < Duration::from_millis(2));
        net.heal();
        assert!(net.route(0, Some(2), 10).is_some());
        net.set_link_loss(3, 2, 1.0);
        assert!(net.route(2, Some(3), 10).is_none());
        assert_eq!(net.stats().partitioned, 1);
        assert_eq!(net.stats().lost, 1);
        assert_eq!(net.link_extra(1, 2), net.link_extra(2, 1));
    }
}
