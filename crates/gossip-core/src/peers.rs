//! An indexed set of live peers with O(1) insert, remove and uniform random choice.

use std::collections::HashMap;

use crate::rng::Rng;
use crate::types::NodeId;

/// The remote nodes believed alive: the candidates for gossip rounds and rumors.
#[derive(Debug, Default)]
pub struct PeerSet {
    ids: Vec<NodeId>,
    pos: HashMap<NodeId, usize>,
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
        if self.pos.contains_key(&id) {
            return false;
        }
        self.pos.insert(id, self.ids.len());
        self.ids.push(id);
        true
    }

    /// Removes a peer; false if it was absent.
    pub fn remove(&mut self, id: &NodeId) -> bool {
        let Some(i) = self.pos.remove(id) else {
            return false;
        };
        self.ids.swap_remove(i);
        if let Some(moved) = self.ids.get(i) {
            self.pos.insert(*moved, i);
        }
        true
    }

    /// True if `id` is a peer.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.pos.contains_key(id)
    }

    /// One peer chosen uniformly.
    pub fn choose(&self, rng: &mut Rng) -> Option<NodeId> {
        if self.ids.is_empty() {
            None
        } else {
            Some(self.ids[rng.index(self.ids.len())])
        }
    }

    /// Up to `k` distinct peers, none of them in `exclude`, chosen uniformly.
    pub fn choose_k(&self, rng: &mut Rng, k: usize, exclude: &[NodeId]) -> Vec<NodeId> {
        let mut out = Vec::with_capacity(k);
        if self.ids.len() <= k + exclude.len() + 4 {
            let pool: Vec<NodeId> = self
                .ids
                .iter()
                .copied()
                .filter(|i| !exclude.contains(i))
                .collect();
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
