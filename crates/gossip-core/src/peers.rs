//! An indexed set of live peers: O(log N) insert, remove, lookup and uniform random choice.

use crate::rng::Rng;
use crate::types::NodeId;

/// The remote nodes believed alive: the candidates for gossip rounds and rumors.
///
/// Two persistent trees (`imbl`), cloned in O(1) and sharing their nodes: `ids`, a vector in
/// no particular order for uniform choice by index, and `pos`, each id's index in it. Insert
/// appends; remove moves the last id into the hole (both O(log N), copying only the paths
/// they touch; an insert in the middle of an RRB vector copied ~70 KB at 8,000 peers). The
/// simulator's warm start gives N nodes clones of one set, each then differing by two ids, so
/// N sets cost N log N, not N² (about 16 bytes a peer in each, before).
#[derive(Debug, Default, Clone)]
pub struct PeerSet {
    ids: imbl::Vector<NodeId>,
    pos: imbl::OrdMap<NodeId, usize>,
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
        self.ids.push_back(id);
        true
    }

    /// Removes a peer; false if it was absent.
    pub fn remove(&mut self, id: &NodeId) -> bool {
        let Some(i) = self.pos.remove(id) else { return false };
        if let Some(last) = self.ids.pop_back() {
            if i < self.ids.len() {
                self.ids.set(i, last);
                self.pos.insert(last, i);
            }
        }
        true
    }

    /// True if `id` is a peer.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.pos.contains_key(id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn id(i: u8) -> NodeId {
        let mut b = [0u8; 16];
        b[0] = i;
        NodeId(b)
    }

    #[test]
    fn agrees_with_a_set_under_random_inserts_and_removes_and_clones_stay_apart() {
        let mut rng = Rng::from_seed(7);
        let mut set = PeerSet::default();
        let mut model = BTreeSet::new();
        let mut snapshot: Option<(PeerSet, BTreeSet<NodeId>)> = None;
        for step in 0..5_000 {
            let x = id(rng.index(64) as u8);
            if rng.index(2) == 0 {
                assert_eq!(set.insert(x), model.insert(x), "step {step}");
            } else {
                assert_eq!(set.remove(&x), model.remove(&x), "step {step}");
            }
            assert_eq!(set.len(), model.len());
            assert!((0..64).all(|i| set.contains(&id(i)) == model.contains(&id(i))));
            let listed: BTreeSet<NodeId> = set.ids.iter().copied().collect();
            assert_eq!(listed, model, "step {step}: the vector lists exactly the members");
            assert!(set.ids.iter().enumerate().all(|(i, p)| set.pos.get(p) == Some(&i)));
            if let Some(c) = set.choose(&mut rng) {
                assert!(model.contains(&c));
            }
            if step == 2_500 {
                snapshot = Some((set.clone(), model.clone()));
            }
        }
        // A clone taken midway kept its own members while the original changed (shared trees).
        let (old, old_model) = snapshot.unwrap();
        assert_eq!(old.ids.iter().copied().collect::<BTreeSet<_>>(), old_model);
    }
}
