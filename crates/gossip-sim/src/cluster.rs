//! Configuration and construction of a simulated cluster.
//!
//! A **cold** cluster starts as N nodes that each know only themselves and the seed
//! addresses: every join is replayed, as on a real first boot. A **warm** cluster starts
//! converged: node 0 learns every node's own state through ordinary encoded `Delta`
//! datagrams (one `handle_datagram` per node, TTL 0 so nothing is forwarded), and every other
//! node then calls [`Gossip::warm_start_from`] node 0, which shares the owner states
//! copy-on-write. Building a warm N-node cluster costs O(N) datagrams and N table copies
//! (N² pointers), not N² joins.

use std::time::{Duration, Instant};

use gossip_core::chunk::split_delta;
use gossip_core::message::{Entry, Message};
use gossip_core::session::{MAX_DATAGRAM, MAX_PAYLOAD, Session};
use gossip_core::{Config, Gossip, NodeId, NodeInfo};

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

    /// The id of node `index` (derived from the master seed).
    pub fn node_id(&self, index: usize) -> NodeId {
        let hi = derive_seed(self.seed, domain::NODE_ID, index as u64, 0);
        let lo = derive_seed(self.seed, domain::NODE_ID, index as u64, 1);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&hi.to_be_bytes());
        id[8..].copy_from_slice(&lo.to_be_bytes());
        NodeId(id)
    }

    /// Identity of node `index` at `generation`.
    pub fn node_info(&self, index: usize, generation: u64) -> NodeInfo {
        NodeInfo { id: self.node_id(index), name: format!("node-{index}"), addr: addr(index), generation }
    }

    /// The gossip configuration of node `index` at `generation`.
    pub fn node_config(&self, index: usize, generation: u64) -> Config {
        Config {
            seeds: self.seeds.iter().map(|&s| addr(s)).collect(),
            rng_seed: derive_seed(self.seed, domain::NODE_RNG, index as u64, generation),
            ..self.gossip.clone()
        }
    }

    /// A fresh node `index` at `generation`, started at `now`.
    pub fn make_node(&self, index: usize, generation: u64, now: Instant) -> Gossip {
        Gossip::new(self.node_config(index, generation), self.node_info(index, generation), now)
    }
}

/// Builds the nodes of `cfg` at `now` (generation 1), warm or cold.
pub fn build(cfg: &SimConfig, now: Instant) -> Vec<Gossip> {
    let mut nodes: Vec<Gossip> = (0..cfg.nodes).map(|i| cfg.make_node(i, 1, now)).collect();
    if cfg.start == Start::Warm && nodes.len() > 1 {
        warm(&mut nodes, now);
    }
    nodes
}

/// Makes node 0 learn every node's own state through encoded deltas, then warm-starts every
/// other node from it.
fn warm(nodes: &mut [Gossip], now: Instant) {
    // Feed node 0 in id order: its peer set is a sorted vector, so this appends.
    let mut order: Vec<(NodeId, usize)> = nodes.iter().enumerate().skip(1).map(|(i, g)| (g.local().id, i)).collect();
    order.sort_unstable();
    assert!(order.windows(2).all(|w| w[0].0 != w[1].0), "two simulated nodes drew the same id");
    let (first, rest) = nodes.split_at_mut(1);
    let template = &mut first[0];
    let mut session = Session::new();
    for &(id, i) in &order {
        for datagram in own_state_datagrams(&rest[i - 1], &mut session, template.local().addr) {
            template.handle_datagram(now, addr(i), &datagram);
        }
        debug_assert!(template.node(&id).is_some(), "template did not learn node {i}");
    }
    while template.poll_transmit().is_some() {}
    while template.poll_event().is_some() {}
    for g in rest.iter_mut() {
        g.warm_start_from(template);
    }
}

/// A node's own state as the datagrams a peer would receive (TTL 0: not to be forwarded).
fn own_state_datagrams(g: &Gossip, session: &mut Session, dst: std::net::SocketAddr) -> Vec<Vec<u8>> {
    let me = g.local();
    let Some(state) = g.node(&me.id) else {
        return Vec::new();
    };
    let mut entries: Vec<&Entry> = state.entries.values().collect();
    entries.sort_by_key(|e| e.version);
    split_delta(&state.info, 0, state.max_version, &entries, 0, MAX_PAYLOAD)
        .into_iter()
        .map(|delta| {
            let payload = Message::Delta { sender: me.id, delta }.encode();
            let mut datagram = Vec::with_capacity(payload.len() + 1);
            session.seal(dst, &payload, &mut datagram);
            assert!(datagram.len() <= MAX_DATAGRAM, "warm-start datagram of {} bytes", datagram.len());
            datagram
        })
        .collect()
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
