//! An indexed set of live peers with O(1) insert, remove and uniform random choice.

use crate::rng::Rng;
use crate::types::NodeId;

/// The remote nodes believed alive: the candidates for gossip rounds and rumors.
///
/// A sorted vector: 16 bytes a peer (the simulator holds N² of them), O(log N) lookups,
/// O(N) insert and remove (membership changes are rare next to random choices).
#[derive(Debug, Default, Clone)]
pub struct PeerSet {
    ids: Vec<NodeId>,
}

impl PeerSet {
    /// Number of peers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there is no peer.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds a peer; false if it was present.
    pub fn insert(&mut self, id: NodeId) -> bool {
        match self.ids.binary_search(&id) {
            Ok(_) => false,
            Err(i) => {
                self.ids.insert(i, id);
                true
            }
        }
    }

    /// Removes a peer; false if it was absent.
    pub fn remove(&mut self, id: &NodeId) -> bool {
        match self.ids.binary_search(id) {
            Ok(i) => {
                self.ids.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// True if `id` is a peer.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.ids.binary_search(id).is_ok()
    }

    /// Replaces the set with `ids` (any order, duplicates removed).
    pub fn reset(&mut self, mut ids: Vec<NodeId>) {
        ids.sort_unstable();
        ids.dedup();
        self.ids = ids;
    }

    /// One peer chosen uniformly.
    pub fn choose(&self, rng: &mut Rng) -> Option<NodeId> {
        if self.ids.is_empty() { None } else { Some(self.ids[rng.index(self.ids.len())]) }
    }

    /// Up to `k` distinct peers, none of them in `exclude`, chosen uniformly.
    pub fn choose_k(&self, rng: &mut Rng, k: usize, exclude: &[NodeId]) -> Vec<NodeId> {
        let mut out = Vec::with_capacity(k);
        if self.ids.len() <= k + exclude.len() + 4 {
            let pool: Vec<NodeId> = self.ids.iter().copied().filter(|i| !exclude.contains(i)).collect();
            return rng.choose_multiple(&pool, k);
        }
        // Rejection sampling: cheap when the set is much larger than k.
        let mut tries = 0;
        while out.len() < k && tries < 8 * k + 16 {
            tries += 1;
            let c = self.ids[rng.index(self.ids.len())];
            if !exclude.contains(&c) && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}
