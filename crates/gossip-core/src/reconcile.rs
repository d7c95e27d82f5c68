//! Range-based set reconciliation of node summaries (after Meyer's range-based set
//! reconciliation, as in negentropy).
//!
//! The set reconciled is `{(id, generation, max_version, digest)}` over every known node,
//! where `digest` is a hash of the entries held ([`crate::state::owner_digest`]): replicas at one version that
//! hold different entries (a relay dropped some; the owner equivocated) exchange that owner's
//! whole state, and the difference is repaired or proven. A range
//! `[lo, hi)` is described either by its count and fingerprint, or, when small, by its items.
//! A fingerprint is, at wire versions 5 and 6, a hash of its items in id order
//! ([`crate::state::range_fingerprint`], O(count) to compute), and from version 7 a hash of their
//! count and sum ([`crate::sums`], O(log N) from the table's sum tree, so that an exchange costs
//! O(differences × log N) however large the table): [`Scheme`]. A receiver compares each range with its own table:
//! - same fingerprint: nothing to say;
//! - it holds few items there: it answers with its items;
//! - otherwise it splits the range into up to [`SPLIT`] subranges of equal count and answers
//!   with their fingerprints.
//!
//! Receiving items settles a range in both directions at once: the receiver pushes what the
//! sender lacks and requests what it lacks. Steady state costs one fingerprint each way.

use crate::message::{Bound, Range, RangeBody, Summary, Want};
use crate::state::{Commitment, Scheme, Table, newer, range_fingerprint};
use crate::types::NodeId;

/// A range holding at most this many items is sent as items rather than split.
pub const ITEMS_THRESHOLD: usize = 16;
/// Fan-out of a range split.
pub const SPLIT: usize = 16;
/// At most this many items are accepted in one range (a peer sending more is malformed).
pub const MAX_ITEMS: usize = 64;

/// What to send after processing a `Reconcile`.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Ranges to send back.
    pub ranges: Vec<Range>,
    /// Owners the peer lacks or holds older: push deltas from the peer's `(generation, version)`.
    pub push: Vec<Want>,
    /// Owners the peer holds newer: request them.
    pub wants: Vec<Want>,
    /// Items outside their declared range, or too many: the message was malformed.
    pub malformed: bool,
}

/// The whole key space as one fingerprinted range: the opening message of an exchange.
pub fn opening(table: &Table, scheme: Scheme) -> Range {
    let (count, fp) = table.fingerprint(&NodeId::MIN, &Bound::Inf, scheme);
    Range { lo: NodeId::MIN, hi: Bound::Inf, body: RangeBody::Fingerprint { count, fp } }
}

/// Processes received ranges against the local table, fingerprinting as the message's wire
/// version does.
pub fn process(table: &Table, ranges: &[Range], scheme: Scheme) -> Outcome {
    let mut out = Outcome::default();
    for r in ranges {
        match &r.body {
            RangeBody::Fingerprint { count, fp } => {
                let (my_count, my_fp) = table.fingerprint(&r.lo, &r.hi, scheme);
                if my_count == *count && my_fp == *fp {
                    continue;
                }
                if my_count as usize <= ITEMS_THRESHOLD {
                    let mine: Vec<Summary> = table.range(&r.lo, &r.hi).map(|n| n.summary()).collect();
                    out.ranges.push(Range { lo: r.lo, hi: r.hi, body: RangeBody::Items(mine) });
                } else if scheme == Scheme::Sum {
                    split_summed(table, r.lo, r.hi, my_count, &mut out.ranges);
                } else {
                    split(table, r.lo, r.hi, &mut out.ranges);
                }
            }
            RangeBody::Items(theirs) => {
                if theirs.len() > MAX_ITEMS || theirs.iter().any(|s| s.id < r.lo || !r.hi.above(&s.id)) {
                    out.malformed = true;
                    continue;
                }
                settle(table, r, theirs, &mut out);
            }
        }
    }
    out
}

/// Splits `[lo, hi)` into up to [`SPLIT`] fingerprinted subranges of equal count, in one pass
/// over the range: ids and item hashes are borrowed, and each subrange is hashed from them
/// (collecting whole summaries and then fingerprinting each subrange again walked the range
/// twice; at 100,000 simulated nodes this split was most of a change's cost).
fn split(table: &Table, lo: NodeId, hi: Bound, out: &mut Vec<Range>) {
    let mine: Vec<(NodeId, &Commitment)> = table.range_items(&lo, &hi).collect();
    let n = mine.len();
    let parts = SPLIT.min(n);
    let mut start_lo = lo;
    let mut start = 0;
    for p in 1..=parts {
        let end = n * p / parts;
        let sub_hi = if p == parts { hi } else { Bound::Id(separator(&mine[end - 1].0, &mine[end].0)) };
        let (count, fp) = range_fingerprint(mine[start..end].iter().map(|(_, c)| *c));
        debug_assert_eq!((count, fp), table.fingerprint(&start_lo, &sub_hi, Scheme::Concat));
        out.push(Range { lo: start_lo, hi: sub_hi, body: RangeBody::Fingerprint { count, fp } });
        if let Bound::Id(b) = sub_hi {
            start_lo = b;
        }
        start = end;
    }
}

/// As [`split`], with sums (wire version 7): the split points are found by rank in the sum
/// tree and each subrange's sum is the difference of two prefix sums, so that splitting costs
/// O(SPLIT × log N) instead of a walk over the range. `n` is the range's count (more than
/// [`ITEMS_THRESHOLD`]).
fn split_summed(table: &Table, lo: NodeId, hi: Bound, n: u64, out: &mut Vec<Range>) {
    let parts = (SPLIT as u64).min(n);
    let first = table.sum_below(&lo);
    let mut below = first;
    let mut start_lo = lo;
    for p in 1..=parts {
        let end = n * p / parts;
        let sub_hi = if p == parts {
            hi
        } else {
            // The ids ranked `end - 1` and `end` in the range, and a short separator between.
            let (Some(a), Some(b)) = (table.select(first.count + end - 1), table.select(first.count + end)) else {
                debug_assert!(false, "rank past the table");
                return;
            };
            Bound::Id(separator(&a, &b))
        };
        let upto = match sub_hi {
            Bound::Id(h) => table.sum_below(&h),
            Bound::Inf => table.sum_of(&NodeId::MIN, &Bound::Inf),
        };
        let (count, fp) = (upto - below).fingerprint();
        debug_assert_eq!((count, fp), table.fingerprint(&start_lo, &sub_hi, Scheme::Sum));
        out.push(Range { lo: start_lo, hi: sub_hi, body: RangeBody::Fingerprint { count, fp } });
        if let Bound::Id(b) = sub_hi {
            start_lo = b;
        }
        below = upto;
    }
}

/// The shortest id prefix `p` (zero-padded) with `a < p <= b`: a compact split point.
pub fn separator(a: &NodeId, b: &NodeId) -> NodeId {
    let k = a.0.iter().zip(b.0.iter()).position(|(x, y)| x != y).unwrap_or(15);
    let mut out = [0u8; 16];
    out[..=k].copy_from_slice(&b.0[..=k]);
    NodeId(out)
}

/// Compares the peer's items in a range with ours, in both directions.
fn settle(table: &Table, r: &Range, theirs: &[Summary], out: &mut Outcome) {
    let mut theirs_sorted: Vec<Summary> = theirs.to_vec();
    theirs_sorted.sort_by_key(|s| s.id);
    theirs_sorted.dedup_by_key(|s| s.id);
    for t in &theirs_sorted {
        match table.get(&t.id) {
            None => out.wants.push(Want { id: t.id, generation: 0, version: 0 }),
            Some(n) => {
                let m = n.summary();
                if newer((t.generation, t.version), (m.generation, m.version)) {
                    out.wants.push(Want { id: t.id, generation: m.generation, version: m.version });
                } else if newer((m.generation, m.version), (t.generation, t.version)) {
                    out.push.push(Want { id: t.id, generation: t.generation, version: t.version });
                } else if m.digest != t.digest {
                    // Same version, different entries: exchange the whole state both ways; the
                    // receivers repair what they lack and prove an equivocation if there is one.
                    out.push.push(Want { id: t.id, generation: t.generation, version: 0 });
                    out.wants.push(Want { id: t.id, generation: m.generation, version: 0 });
                }
            }
        }
    }
    for n in table.range(&r.lo, &r.hi) {
        if theirs_sorted.binary_search_by_key(&n.info.id, |s| s.id).is_err() {
            out.push.push(Want { id: n.info.id, generation: 0, version: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: &[u8]) -> NodeId {
        let mut a = [0u8; 16];
        a[..b.len()].copy_from_slice(b);
        NodeId(a)
    }

    #[test]
    fn separator_is_between() {
        let a = id(&[1, 2, 3]);
        let b = id(&[1, 5, 0, 9]);
        let s = separator(&a, &b);
        assert!(a < s && s <= b);
        assert_eq!(s, id(&[1, 5]));
        let c = id(&[1, 2, 3, 4]);
        let s = separator(&a, &c);
        assert!(a < s && s <= c);
    }
}
