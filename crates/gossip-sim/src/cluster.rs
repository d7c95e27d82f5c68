//! Configuration and construction of a simulated cluster.
//!
//! Every node has an Ed25519 identity and a secure-layer seed derived from the master seed, and
//! all share one cluster key: datagrams are real Noise handshakes and transport messages, and
//! records are really signed and verified.
//!
//! A **cold** cluster starts as N nodes that each know only themselves and the seed
//! addresses: every join is replayed, as on a real first boot. A **warm** cluster starts
//! converged: node 0 learns every node's own (signed) state with
//! [`Gossip::learn_owner_from`], and every other node then calls [`Gossip::warm_start_from`]
//! node 0, which clones its owner table and peer set: persistent trees (`imbl`), so each clone
//! shares node 0's and pays only for the paths it then changes (its own entry; node 0 added to
//! and itself removed from its peers), and the root fingerprint node 0 computed comes with it.
//! Building a warm N-node cluster costs O(N log N), not N² joins nor N² pointers; sessions are
//! then opened by the protocol itself.

use std::time::{Duration, Instant};

use gossip_core::secure::SecureConfig;
use gossip_core::secure::keys::{ClusterKey, Identity, Keyring};
use gossip_core::{Config, Gossip, NodeId};

use crate::net::{NetConfig, addr};
use crate::{derive_seed, domain};

/// How the cluster starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every node knows only itself and the seeds, and joins.
    Cold,
    /// Every node already holds every node's state (converged).
    Warm,
}

/// Everything that determines a simulation (with the steps applied to it).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The master seed: every other random choice derives from it.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Indices of the nodes every node lists as seeds.
    pub seeds: Vec<usize>,
    /// Gossip tunables applied to every node (`seeds` and `rng_seed` are set per node).
    pub gossip: Config,
    /// The network model.
    pub net: NetConfig,
    /// Cold or warm start.
    pub start: Start,
}

impl SimConfig {
    /// `nodes` nodes with default tunables and network, node 0 as the only seed, warm start.
    pub fn new(seed: u64, nodes: usize) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            seeds: vec![0],
            gossip: Config::default(),
            net: NetConfig::default(),
            start: Start::Warm,
        }
    }

    /// The same, starting cold.
    pub fn cold(mut self) -> SimConfig {
        self.start = Start::Cold;
        self
    }

    fn bytes32(&self, domain: u64, a: u64, b: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (k, chunk) in out.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&derive_seed(self.seed, domain, a, b * 4 + k as u64).to_be_bytes());
        }
        out
    }

    /// The identity of node `index` (derived from the master seed; kept across restarts).
    pub fn identity(&self, index: usize) -> Identity {
        Identity::from_secret(self.bytes32(domain::NODE_ID, index as u64, 0))
    }

    /// The id of node `index`: its identity's.
    pub fn node_id(&self, index: usize) -> NodeId {
        self.identity(index).node_id()
    }

    /// The secure-layer configuration of node `index` at `generation`, whose wall clock reads
    /// [`WALL_CLOCK_ORIGIN`] plus `elapsed` at start.
    pub fn secure_config(&self, index: usize, generation: u64, elapsed: Duration) -> SecureConfig {
        let keyring = Keyring::new(ClusterKey::new(self.bytes32(domain::CLUSTER_KEY, 0, 0)));
        let wall = WALL_CLOCK_ORIGIN + elapsed.as_nanos() as u64;
        let seed = self.bytes32(domain::SECURE_RNG, index as u64, generation);
        SecureConfig::new(self.identity(index), keyring, wall, seed)
    }

    /// The gossip configuration of node `index` at `generation`.
    pub fn node_config(&self, index: usize, generation: u64) -> Config {
        Config {
            seeds: self.seeds.iter().map(|&s| addr(s)).collect(),
            rng_seed: derive_seed(self.seed, domain::NODE_RNG, index as u64, generation),
            ..self.gossip.clone()
        }
    }

    /// A fresh node `index` at `generation`, started at `now`, `elapsed` after the origin of
    /// virtual time.
    pub fn make_node(&self, index: usize, generation: u64, now: Instant, elapsed: Duration) -> Gossip {
        let secure = self.secure_config(index, generation, elapsed);
        Gossip::new(self.node_config(index, generation), secure, format!("node-{index}"), addr(index), generation, now)
    }
}

/// Unix time (nanoseconds) of the origin of virtual time: any fixed value keeps runs
/// reproducible (2026-09-22).
pub const WALL_CLOCK_ORIGIN: u64 = 1_790_000_000_000_000_000;

/// Builds the nodes of `cfg` at `now` (generation 1), warm or cold.
pub fn build(cfg: &SimConfig, now: Instant) -> Vec<Gossip> {
    let mut nodes: Vec<Gossip> = (0..cfg.nodes).map(|i| cfg.make_node(i, 1, now, Duration::ZERO)).collect();
    if cfg.start == Start::Warm && nodes.len() > 1 {
        warm(&mut nodes, now);
    }
    nodes
}

/// Makes node 0 learn every node's own signed state, then warm-starts every other node from it.
fn warm(nodes: &mut [Gossip], _now: Instant) {
    let (first, rest) = nodes.split_at_mut(1);
    let template = &mut first[0];
    let mut ids: Vec<NodeId> = rest.iter().map(|g| g.local().id).collect();
    ids.sort_unstable();
    assert!(ids.windows(2).all(|w| w[0] != w[1]), "two simulated nodes drew the same id");
    for g in rest.iter() {
        template.learn_owner_from(g);
    }
    while template.poll_event().is_some() {}
    for g in rest.iter_mut() {
        g.warm_start_from(template);
    }
}

/// The push-pull bound on anti-entropy rounds for `n` nodes: `log3(n) + ln ln(n)`.
pub fn push_pull_bound(n: usize) -> f64 {
    let n = n.max(3) as f64;
    n.ln() / 3f64.ln() + n.ln().ln()
}

/// A gossip interval as fractional rounds of `elapsed`.
pub fn rounds(elapsed: Duration, interval: Duration) -> f64 {
    elapsed.as_secs_f64() / interval.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_cluster_is_converged() {
        #[allow(clippy::disallowed_methods)] // an arbitrary origin; nothing depends on its value
        let now = Instant::now();
        let cfg = SimConfig::new(9, 40);
        let nodes = build(&cfg, now);
        let fp = nodes[0].root_fingerprint();
        assert_eq!(fp.0, 40);
        assert!(nodes.iter().all(|g| g.root_fingerprint() == fp && g.live_peers() == 39));
    }

    #[test]
    fn bound_values() {
        assert!((push_pull_bound(10_000) - 10.60).abs() < 0.01);
        assert!((push_pull_bound(100) - 5.72).abs() < 0.01);
    }
}
