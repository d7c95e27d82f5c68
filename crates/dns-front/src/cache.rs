//! A per-snapshot cache of fully encoded UDP answers.
//!
//! Contract:
//!
//! * An entry is keyed by what the answer depends on: the question name lower-cased, its type
//!   and class, and whether the query had EDNS with which payload size after clamping. The
//!   answer bytes are whatever the full path (resolver + hickory encoding) produced for that
//!   key; a hit copies them and patches the ID, the RD and CD flags and the question's exact
//!   letter case ([`crate::wire::patch_into`]), so it is byte for byte what the full path
//!   would have sent (answer records point at the question name, so they carry its case too).
//! * The cache belongs to one snapshot: the first lookup under a different snapshot (compared
//!   by `Arc` identity, the old one held so its address cannot be reused) empties it.
//! * Answers whose order is random (two or more answer records, shuffled or in RFC 2782
//!   weighted order; or a truncated answer, whose kept records are a random prefix) keep up
//!   to [`VARIANTS`] independently drawn orders. Each query picks one uniformly; a variant
//!   that has served [`VARIANT_USES`] queries is drawn again. Every draw is an ordinary
//!   resolver draw with a fresh seed and serves the same number of queries whatever order it
//!   holds, so over time the orders clients see have exactly the resolver's distribution
//!   (RFC 2782 weighting included); consecutive queries still see different orders.
//! * Only NOERROR (positive and NODATA) and NXDOMAIN answers for names inside the domain are
//!   stored; REFUSED, FORMERR and the rest are answered by the full path every time. The cache
//!   is bounded by [`CacheLimits`]: an insertion that would pass a bound empties the cache
//!   first, so hostile names (random labels under `.addr.`, random types) cost what an uncached
//!   query costs and can never grow memory.
//!
//! No hickory types here; the full path is a closure supplied by the server.

use std::collections::HashMap;
use std::sync::Arc;

use crate::snapshot::Snapshot;
use crate::stats::CountedRcode;
use crate::wire::{QNAME_OFFSET, WireQuery, owner_positions, patch_into};

/// Number of independently drawn orders kept for an answer whose order is random.
pub const VARIANTS: usize = 16;

/// Queries one drawn order serves before it is drawn again.
pub const VARIANT_USES: u32 = 128;

/// Bounds of one [`AnswerCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most distinct keys held.
    pub entries: usize,
    /// Most bytes of keys plus encoded answers held.
    pub bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits { entries: 4096, bytes: 4 << 20 }
    }
}

/// What a lookup did, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache: count `rcode` (and a truncation if `truncated`).
    Hit {
        /// Response code of the answer sent.
        rcode: CountedRcode,
        /// Whether the answer had TC set.
        truncated: bool,
    },
    /// Built by the full path (which counts it itself), stored or not.
    Miss,
    /// The full path chose not to answer.
    NoAnswer,
}

#[derive(Debug)]
struct Variant {
    bytes: Vec<u8>,
    /// Where the question name is written out as an owner ([`owner_positions`]).
    owners: Vec<u16>,
    uses: u32,
}

#[derive(Debug)]
struct Entry {
    variants: Vec<Variant>,
    random: bool,
    rcode: CountedRcode,
    truncated: bool,
}

/// Encoded answers for one snapshot. Owned by one serving task: no locks.
#[derive(Debug)]
pub struct AnswerCache {
    limits: CacheLimits,
    snapshot: Option<Arc<Snapshot>>,
    map: HashMap<Box<[u8]>, Entry>,
    bytes: usize,
    key: Vec<u8>,
    canonical: Vec<u8>,
}

impl AnswerCache {
    /// An empty cache with these bounds.
    pub fn new(limits: CacheLimits) -> Self {
        AnswerCache {
            limits,
            snapshot: None,
            map: HashMap::new(),
            bytes: 0,
            key: Vec::with_capacity(300),
            canonical: Vec::with_capacity(300),
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes held (keys plus encoded answers).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Answers `query` (already accepted by [`crate::wire::parse_query`] as `q`) under `snap`
    /// into `out`.
    ///
    /// `pick` is a fresh random number per query (chooses the variant);
    /// `build` is the full path: given the query with its name lower-cased, it returns the
    /// encoded answer, or `None` to send nothing.
    pub fn answer(
        &mut self,
        query: &[u8],
        q: &WireQuery,
        snap: &Arc<Snapshot>,
        pick: u64,
        out: &mut Vec<u8>,
        build: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Outcome {
        if !self.snapshot.as_ref().is_some_and(|held| Arc::ptr_eq(held, snap)) {
            self.clear();
            self.snapshot = Some(Arc::clone(snap));
        }
        let name = QNAME_OFFSET..QNAME_OFFSET + q.name_len;
        let Some(qname) = query.get(name.clone()) else { return Outcome::NoAnswer };
        self.key.clear();
        self.key.extend(qname.iter().map(u8::to_ascii_lowercase));
        self.key.extend_from_slice(&q.qtype.to_be_bytes());
        self.key.extend_from_slice(&q.qclass.to_be_bytes());
        match q.edns_class() {
            Some(size) => self.key.extend_from_slice(&[1, (size >> 8) as u8, size as u8]),
            None => self.key.push(0),
        }

        let slot = (pick % VARIANTS as u64) as usize;
        if let Some(entry) = self.map.get_mut(&self.key[..]) {
            let slot = if entry.random { slot } else { 0 };
            if let Some(v) = entry.variants.get_mut(slot)
                && (!entry.random || v.uses < VARIANT_USES)
            {
                v.uses += 1;
                patch_into(&v.bytes, &v.owners, query, q, out);
                return Outcome::Hit { rcode: entry.rcode, truncated: entry.truncated };
            }
        }

        // Miss (or a variant due for a fresh draw): the full path, on the canonical query.
        self.canonical.clear();
        self.canonical.extend_from_slice(query);
        self.canonical[name.clone()].make_ascii_lowercase();
        let Some(bytes) = build(&self.canonical) else { return Outcome::NoAnswer };
        let owners = owner_positions(&bytes, &self.key[..q.name_len]);
        patch_into(&bytes, owners.as_deref().unwrap_or_default(), query, q, out);
        let (Some(owners), Some((rcode, random, truncated))) = (owners, cacheable(&bytes)) else {
            return Outcome::Miss;
        };
        let variant = Variant { bytes, owners, uses: 1 };
        self.store(slot, variant, Entry { variants: Vec::new(), random, rcode, truncated });
        Outcome::Miss
    }

    fn store(&mut self, slot: usize, variant: Variant, fresh: Entry) {
        let cost = variant.bytes.len() + 2 * variant.owners.len();
        let new_key = !self.map.contains_key(&self.key[..]);
        let key_cost = if new_key { self.key.len() } else { 0 };
        if (new_key && self.map.len() >= self.limits.entries) || self.bytes + cost + key_cost > self.limits.bytes {
            self.clear();
            if cost + self.key.len() > self.limits.bytes || self.limits.entries == 0 {
                return;
            }
        }
        let entry = match self.map.get_mut(&self.key[..]) {
            Some(entry) => entry,
            None => {
                self.bytes += self.key.len();
                self.map.entry(self.key.clone().into_boxed_slice()).or_insert(fresh)
            }
        };
        self.bytes += cost;
        if entry.random && slot < entry.variants.len() {
            let old = std::mem::replace(&mut entry.variants[slot], variant);
            self.bytes -= old.bytes.len() + 2 * old.owners.len();
        } else if entry.variants.is_empty() || (entry.random && entry.variants.len() < VARIANTS) {
            entry.variants.push(variant);
        } else {
            self.bytes -= cost; // not random and already held: keep the first
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

/// Whether an encoded answer (already walked by [`owner_positions`]) may be stored: NOERROR
/// or NXDOMAIN. Returns its rcode, whether its order is random and whether it is truncated.
fn cacheable(answer: &[u8]) -> Option<(CountedRcode, bool, bool)> {
    let header = answer.get(..QNAME_OFFSET)?;
    let rcode = match header[3] & 0x0F {
        0 => CountedRcode::NoError,
        3 => CountedRcode::NxDomain,
        _ => return None,
    };
    let truncated = header[2] & 0x02 != 0;
    let answers = u16::from_be_bytes([header[6], header[7]]);
    Some((rcode, answers >= 2 || truncated, truncated))
}

#[cfg(test)]
mod tests;
