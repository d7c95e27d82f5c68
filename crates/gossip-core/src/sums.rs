//! Additive range fingerprints (protocol 7, docs/PROTOCOL.md section 1) and the tree that
//! makes them cost O(log N) for any range.
//!
//! Protocol 5 and 6 fingerprint a range by hashing the concatenation of its item hashes: to
//! answer a range of k owners a replica hashes k items, so an exchange after one change hashed
//! every owner of the table several times over (at 100,000 simulated nodes, 70 % of the time).
//! From protocol 7 a range's fingerprint is a hash of its count and of the sum, modulo 2²⁵⁶, of
//! its items' 256-bit hashes (as negentropy does). Sums compose: each replica keeps them in a
//! 16-ary trie over the nibbles of the owner ids, every trie node holding the count and sum of
//! the ids under its prefix, so the sum of any range `[lo, hi)` is the difference of two
//! prefix sums, each found by one descent. The trie's leaves hold no items: they cover at most
//! [`LEAF_MAX`] owners, read from the table itself. Children are shared copy-on-write, as the
//! table is: a change copies the path to it.

use std::sync::Arc;

use blake2::{Blake2s256, Digest};

use crate::message::Summary;
use crate::state::{Commitment, summary_hasher, truncate};
use crate::types::NodeId;

/// A trie leaf covering more owners than this is split into 16 children.
pub const LEAF_MAX: u64 = 32;

/// A 256-bit integer (four little-endian 64-bit limbs) added modulo 2²⁵⁶.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Sum([u64; 4]);

impl Sum {
    /// The integer whose little-endian bytes are `b`.
    pub fn from_le_bytes(b: &[u8; 32]) -> Sum {
        let mut l = [0u64; 4];
        for (i, limb) in l.iter_mut().enumerate() {
            *limb = u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        }
        Sum(l)
    }

    /// Little-endian bytes.
    pub fn to_le_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            b[8 * i..8 * i + 8].copy_from_slice(&limb.to_le_bytes());
        }
        b
    }
}

impl std::ops::Add for Sum {
    type Output = Sum;

    /// `self + o` modulo 2²⁵⁶.
    fn add(self, o: Sum) -> Sum {
        let mut r = [0u64; 4];
        let mut carry = false;
        for (i, limb) in r.iter_mut().enumerate() {
            let (s, c1) = self.0[i].overflowing_add(o.0[i]);
            let (s, c2) = s.overflowing_add(carry as u64);
            *limb = s;
            carry = c1 || c2;
        }
        Sum(r)
    }
}

impl std::ops::Sub for Sum {
    type Output = Sum;

    /// `self - o` modulo 2²⁵⁶.
    fn sub(self, o: Sum) -> Sum {
        let mut r = [0u64; 4];
        let mut borrow = false;
        for (i, limb) in r.iter_mut().enumerate() {
            let (s, b1) = self.0[i].overflowing_sub(o.0[i]);
            let (s, b2) = s.overflowing_sub(borrow as u64);
            *limb = s;
            borrow = b1 || b2;
        }
        Sum(r)
    }
}

/// The additive item of one summary (protocol 7):
/// `BLAKE2s-256("gossipd summary v4" || id (16 B) || generation (u64 BE) || version (u64 BE)
/// || digest (16 B))`, read as a little-endian 256-bit integer.
pub fn item_sum(s: &Summary) -> Sum {
    Sum::from_le_bytes(&summary_hasher(b"gossipd summary v4", s).finalize().into())
}

/// A count and a sum of items: what a range's protocol-7 fingerprint is made of.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Agg {
    /// Number of items.
    pub count: u64,
    /// Their sum.
    pub sum: Sum,
}

impl Agg {
    /// One item.
    pub fn one(sum: Sum) -> Agg {
        Agg { count: 1, sum }
    }

    /// The range fingerprint (protocol 7): count, and the first 16 bytes of
    /// `BLAKE2s-256("gossipd range v4" || count (u64 BE) || sum (32 B, little-endian))`.
    pub fn fingerprint(&self) -> (u64, Commitment) {
        let mut h = Blake2s256::new();
        h.update(b"gossipd range v4");
        h.update(self.count.to_be_bytes());
        h.update(self.sum.to_le_bytes());
        (self.count, truncate(h))
    }
}

impl std::ops::Add for Agg {
    type Output = Agg;

    /// Both together.
    fn add(self, o: Agg) -> Agg {
        Agg { count: self.count.wrapping_add(o.count), sum: self.sum + o.sum }
    }
}

impl std::ops::Sub for Agg {
    type Output = Agg;

    /// `self` without `o` (`o` a part of `self`).
    fn sub(self, o: Agg) -> Agg {
        Agg { count: self.count.wrapping_sub(o.count), sum: self.sum - o.sum }
    }
}

/// Where the trie reads the owners of a leaf: the table's items in id order.
pub trait Items {
    /// `(id, item)` for the ids `>= lo` (and `< hi`, if given), ascending.
    fn items_from(&self, lo: NodeId, hi: Option<NodeId>) -> impl Iterator<Item = (NodeId, Sum)>;
}

/// The bounds of an ordered map's range over the ids `>= lo` and `< hi` (empty when `hi <=
/// lo`), for [`Items::items_from`].
pub fn id_bounds(lo: NodeId, hi: Option<NodeId>) -> (std::ops::Bound<NodeId>, std::ops::Bound<NodeId>) {
    let upper = match hi {
        Some(h) if h <= lo => std::ops::Bound::Excluded(lo),
        Some(h) => std::ops::Bound::Excluded(h),
        None => std::ops::Bound::Unbounded,
    };
    (std::ops::Bound::Included(lo), upper)
}

#[derive(Clone, Default, Debug)]
struct Node {
    agg: Agg,
    kids: Option<Arc<[Node; 16]>>,
}

/// The count and sum of the ids under each prefix (see the module documentation).
#[derive(Clone, Default, Debug)]
pub struct SumTree {
    root: Node,
}

fn key(id: &NodeId) -> u128 {
    u128::from_be_bytes(id.0)
}

fn id(k: u128) -> NodeId {
    NodeId(k.to_be_bytes())
}

/// The nibble of `k` at `depth` (0 = the most significant).
fn nibble(k: u128, depth: u32) -> usize {
    ((k >> (124 - 4 * depth)) & 0xf) as usize
}

/// The smallest key with the first `depth` nibbles of `k`, and the first key past them (none
/// past the largest).
fn prefix(k: u128, depth: u32) -> (u128, Option<u128>) {
    if depth == 0 {
        return (0, None);
    }
    let shift = 128 - 4 * depth;
    let lo = if shift == 0 { k } else { (k >> shift) << shift };
    let width = if shift == 0 { 1 } else { 1u128 << shift };
    (lo, lo.checked_add(width))
}

/// Builds the subtree over `items` (sorted, all under one prefix of `depth` nibbles).
fn build(depth: u32, items: &[(u128, Sum)]) -> Node {
    let agg = items.iter().fold(Agg::default(), |a, (_, s)| a + Agg::one(*s));
    if agg.count <= LEAF_MAX || depth >= 32 {
        return Node { agg, kids: None };
    }
    let mut kids: [Node; 16] = Default::default();
    let mut start = 0;
    for (n, kid) in kids.iter_mut().enumerate() {
        let end = start + items[start..].iter().take_while(|(k, _)| nibble(*k, depth) == n).count();
        *kid = build(depth + 1, &items[start..end]);
        start = end;
    }
    Node { agg, kids: Some(Arc::new(kids)) }
}

impl SumTree {
    /// Count and sum of every id.
    pub fn total(&self) -> Agg {
        self.root.agg
    }

    /// Records a change of `id`'s item from `old` to `new` (`None`: absent). `items` must
    /// already hold the new state (a leaf that grows past [`LEAF_MAX`] is split from it).
    pub fn update(&mut self, at: &NodeId, old: Option<Sum>, new: Option<Sum>, items: &impl Items) {
        if old == new {
            return;
        }
        let removed = old.map_or(Agg::default(), Agg::one);
        let added = new.map_or(Agg::default(), Agg::one);
        let k = key(at);
        let mut node = &mut self.root;
        let mut depth = 0;
        loop {
            node.agg = node.agg + added - removed;
            match node.kids {
                Some(ref mut kids) => {
                    node = &mut Arc::make_mut(kids)[nibble(k, depth)];
                    depth += 1;
                }
                None => {
                    if node.agg.count > LEAF_MAX && depth < 32 {
                        let (lo, hi) = prefix(k, depth);
                        let under: Vec<(u128, Sum)> =
                            items.items_from(id(lo), hi.map(id)).map(|(i, s)| (key(&i), s)).collect();
                        let built = build(depth, &under);
                        debug_assert_eq!(built.agg, node.agg, "the trie and the table disagree");
                        *node = built;
                    }
                    return;
                }
            }
        }
    }

    /// Count and sum of the ids `< x`.
    pub fn below(&self, x: &NodeId, items: &impl Items) -> Agg {
        let k = key(x);
        let mut acc = Agg::default();
        let mut node = &self.root;
        let mut depth = 0;
        while let Some(kids) = &node.kids {
            let n = nibble(k, depth);
            acc = kids[..n].iter().fold(acc, |a, kid| a + kid.agg);
            node = &kids[n];
            depth += 1;
        }
        let (lo, _) = prefix(k, depth);
        items.items_from(id(lo), Some(*x)).fold(acc, |a, (_, s)| a + Agg::one(s))
    }

    /// Count and sum of the ids in `[lo, hi)` (`hi = None`: unbounded); empty when `hi <= lo`.
    pub fn range(&self, lo: &NodeId, hi: Option<&NodeId>, items: &impl Items) -> Agg {
        match hi {
            Some(h) if h <= lo => Agg::default(),
            Some(h) => self.below(h, items) - self.below(lo, items),
            None => self.total() - self.below(lo, items),
        }
    }

    /// The id with exactly `rank` ids below it, if there are more than `rank`.
    pub fn select(&self, rank: u64, items: &impl Items) -> Option<NodeId> {
        if rank >= self.root.agg.count {
            return None;
        }
        let mut rank = rank;
        let mut node = &self.root;
        let mut depth = 0;
        let mut k: u128 = 0;
        while let Some(kids) = &node.kids {
            let (n, kid) = kids.iter().enumerate().find(|(_, kid)| {
                let here = rank < kid.agg.count;
                if !here {
                    rank -= kid.agg.count;
                }
                here
            })?;
            k |= (n as u128) << (124 - 4 * depth);
            node = kid;
            depth += 1;
        }
        let (lo, hi) = prefix(k, depth);
        items.items_from(id(lo), hi.map(id)).nth(rank as usize).map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    struct Map(BTreeMap<NodeId, Sum>);

    impl Items for Map {
        fn items_from(&self, lo: NodeId, hi: Option<NodeId>) -> impl Iterator<Item = (NodeId, Sum)> {
            self.0.range(id_bounds(lo, hi)).map(|(i, s)| (*i, *s))
        }
    }

    fn brute(m: &Map, lo: &NodeId, hi: Option<&NodeId>) -> Agg {
        m.0.iter()
            .filter(|(i, _)| *i >= lo && hi.is_none_or(|h| *i < h))
            .fold(Agg::default(), |a, (_, s)| a + Agg::one(*s))
    }

    fn sum(x: u64) -> Sum {
        Sum([x.wrapping_mul(0x9e37_79b9_7f4a_7c15), x, !x, x ^ 0x55])
    }

    /// Ids drawn from a few narrow clusters (deep splits) and uniformly.
    fn ids() -> impl Strategy<Value = NodeId> {
        prop_oneof![
            any::<u128>().prop_map(id),
            (0u8..3, any::<u16>()).prop_map(|(c, low)| id(((c as u128) << 120) | low as u128)),
            any::<u8>().prop_map(|low| id(u128::MAX - low as u128)),
        ]
    }

    #[test]
    fn sums_wrap_and_invert() {
        let max = Sum([u64::MAX; 4]);
        let one = Sum([1, 0, 0, 0]);
        assert_eq!(max + one, Sum::default());
        assert_eq!(Sum::default() - one, max);
        let a = sum(7);
        let b = sum(11);
        assert_eq!(a + b - b, a);
        assert_eq!(Sum::from_le_bytes(&a.to_le_bytes()), a);
    }

    #[test]
    fn prefixes_cover_their_keys() {
        assert_eq!(prefix(0xabcd << 112, 2), (0xab << 120, Some(0xac << 120)));
        assert_eq!(prefix(u128::MAX, 1), (0xf << 124, None));
        assert_eq!(prefix(5, 32), (5, Some(6)));
        assert_eq!(prefix(u128::MAX, 32), (u128::MAX, None));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_trie_agrees_with_the_items_after_any_changes(
            ops in proptest::collection::vec((ids(), any::<u64>(), any::<bool>()), 1..400),
            queries in proptest::collection::vec((ids(), ids(), any::<bool>()), 1..40),
        ) {
            let mut m = Map(BTreeMap::new());
            let mut t = SumTree::default();
            for (i, x, remove) in &ops {
                let old = m.0.get(i).copied();
                let new = if *remove { None } else { Some(sum(*x)) };
                match new {
                    Some(s) => m.0.insert(*i, s),
                    None => m.0.remove(i),
                };
                t.update(i, old, new, &m);
            }
            prop_assert_eq!(t.total(), brute(&m, &NodeId::MIN, None));
            for (lo, hi, bounded) in &queries {
                let hi = bounded.then_some(hi);
                prop_assert_eq!(t.range(lo, hi, &m), brute(&m, lo, hi));
            }
            for (r, want) in m.0.keys().enumerate() {
                prop_assert_eq!(t.select(r as u64, &m), Some(*want));
            }
            prop_assert_eq!(t.select(m.0.len() as u64, &m), None);
        }
    }
}
