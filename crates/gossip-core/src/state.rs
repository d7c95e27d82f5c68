//! The replicated table: every known node's versioned entries, with collision-resistant
//! commitments to them: a digest per owner and a fingerprint per range of owners.
//!
//! Rules (see `docs/PROTOCOL.md`): only the owner writes its entries; versions are per owner
//! and generation and only grow; a higher generation replaces everything known of the older
//! one; a replica keeps the highest version of each entry and the highest contiguous version
//! of each owner it holds (`max_version`), so a delta that would leave a gap is not applied.
//!
//! The owner signs a **head** with every version: its digest at `(generation, max_version)`.
//! Replicas keep the newest head they verified, so that each can tell by itself whether it holds
//! exactly what the owner published ([`NodeState::verified`]): a relay that withheld entries
//! leaves a digest that differs from the head, one that stripped the head leaves none for the
//! version held, and either way the replica knows its copy is incomplete.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::sync::OnceLock;

use blake2::{Blake2s256, Digest};

use crate::message::{Bound, Delta, Entry, Head, NodeStatus, STATUS_KEY, Summary, Value, Want};
use crate::proof::Proof;
use crate::secure::keys::Identity;
use crate::sums::{Agg, Items, Sum, SumTree, item_sum};
use crate::types::{NodeId, NodeInfo};

/// One owner's state as held by a replica.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Identity, name, address and generation.
    pub info: NodeInfo,
    /// Every version up to this one is held.
    pub max_version: u64,
    /// Entries by key.
    pub entries: BTreeMap<Arc<str>, Box<Entry>>,
    /// Commitment to `entries` ([`owner_digest`]), brought up to date after every change.
    pub digest: Commitment,
    /// The chunk hashes of a large owner's digest, so that a change rehashes only the chunks
    /// around the keys it touched ([`DigestCache`]); `None` for owners of fewer than
    /// [`CACHE_MIN`] entries, whose digest is recomputed.
    cache: Option<Box<DigestCache>>,
    /// [`item_hash`] of the summary, recomputed with the digest (the unit of protocol 5 and 6
    /// range fingerprints; kept here so that fingerprints hash 16 bytes per owner).
    item: Commitment,
    /// [`item_sum`] of the summary, recomputed with the digest (the unit of protocol 7 range
    /// fingerprints, kept summed in the table's [`SumTree`]).
    sum: Sum,
    /// Entries that are neither tombstones nor check notes (what an owner's quota counts).
    pub live: usize,
    /// Entries that are services (what a local write's quota check counts).
    pub services: usize,
    /// Check notes (counted apart from `live`, bounded by the same quota).
    pub notes: usize,
    /// Entries put into this state so far (inserted or replaced): a reader that remembers it
    /// can ask what changed since ([`NodeState::changed_since`]).
    epoch: u64,
    /// The newest head of the owner this replica verified (the owner's own state: the head it
    /// signed at its last change), with the version it was signed for.
    pub head: Option<(u64, Head)>,
    /// The previous generation's state, kept while this one is not yet verified (a restarted
    /// owner's new generation arriving in several datagrams): answers are served from it until
    /// this copy is complete, so that a restart never shrinks them (see [`NodeState::served`]).
    pub previous: Option<Arc<NodeState>>,
}

impl NodeState {
    /// The owner's status as last heard (alive until its status entry says otherwise).
    pub fn status(&self) -> NodeStatus {
        match self.entries.get(STATUS_KEY).map(|e| &e.value) {
            Some(Value::Status(s)) => *s,
            _ => NodeStatus::Alive,
        }
    }

    /// The owner's node metadata (empty if it published none).
    pub fn node_meta(&self) -> Option<&BTreeMap<String, String>> {
        match self.served().entries.get(crate::message::META_KEY).map(|e| &e.value) {
            Some(Value::NodeMeta(m)) => Some(m),
            _ => None,
        }
    }

    /// The version summary.
    pub fn summary(&self) -> Summary {
        Summary { id: self.info.id, generation: self.info.generation, version: self.max_version, digest: self.digest }
    }

    /// True if this copy is exactly what the owner published at `max_version`: the replica holds
    /// the owner's head for that version and its own digest equals the head's. A copy that is
    /// not verified is incomplete (a relay withheld entries or the head), or in the middle of
    /// a split delta.
    pub fn verified(&self) -> bool {
        self.head.is_some_and(|(v, h)| v == self.max_version && h.digest == self.digest)
    }

    /// The state answers are served from: this one, or while it is not verified yet, the
    /// previous generation's (if the owner was alive in it).
    pub fn served(&self) -> &NodeState {
        match &self.previous {
            Some(p) if !self.verified() => p,
            _ => self,
        }
    }

    /// Entries put into this state so far (see [`NodeState::changed_since`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The keys put since `epoch` (a value of [`NodeState::epoch`] read earlier from this
    /// same state), each once, if this state still knows them: it does for an owner of
    /// [`CACHE_MIN`] entries or more, for its last [`CHANGE_LOG`] puts. `None`: read the whole
    /// state again. For views kept up to date in O(change) (the agent's catalog).
    pub fn changed_since(&self, epoch: u64) -> Option<std::collections::BTreeSet<&str>> {
        if epoch == self.epoch {
            return Some(Default::default());
        }
        let log = &self.cache.as_ref()?.log;
        let first = log.front()?.0;
        (epoch < self.epoch && first <= epoch + 1)
            .then(|| log.iter().rev().take_while(|(e, _)| *e > epoch).map(|(_, k)| &**k).collect())
    }

    /// The entries newer than version `from`, in version order: from the version index of a
    /// large owner ([`CACHE_MIN`] entries or more), else by a scan (O(entries) either way for
    /// `from = 0`, but O(the answer) for a large owner's recent changes, which a rumor of each
    /// local write asks for).
    pub fn newer_than(&self, from: u64) -> Vec<&Entry> {
        if let Some(c) = &self.cache {
            return c
                .by_version
                .range((from.saturating_add(1), Arc::<str>::from(""))..)
                .filter_map(|(_, k)| self.entries.get(k).map(|e| &**e))
                .collect();
        }
        let mut entries: Vec<&Entry> = self.entries.values().map(|e| &**e).filter(|e| e.version > from).collect();
        entries.sort_by_key(|e| e.version);
        entries
    }

    /// The head to send with a delta ending at the newest version held, if held.
    pub fn current_head(&self) -> Option<&Head> {
        self.head.as_ref().filter(|(v, _)| *v == self.max_version).map(|(_, h)| h)
    }

    fn new(info: NodeInfo) -> Self {
        let mut n = NodeState {
            info,
            max_version: 0,
            entries: BTreeMap::new(),
            digest: [0; 16],
            cache: None,
            item: [0; 16],
            sum: Sum::default(),
            live: 0,
            services: 0,
            notes: 0,
            epoch: 0,
            head: None,
            previous: None,
        };
        n.seal();
        n
    }

    /// Inserts or replaces an entry; [`NodeState::seal`] must follow.
    fn put(&mut self, e: Entry) {
        self.live += usize::from(e.value.counts_live());
        self.notes += usize::from(e.value.is_note());
        if matches!(e.value, Value::Service(_)) {
            self.services += 1;
        }
        self.epoch += 1;
        if let Some(c) = &mut self.cache {
            if let Some(old) = self.entries.get(&*e.key) {
                c.by_version.remove(&(old.version, e.key.clone()));
            }
            c.by_version.insert((e.version, e.key.clone()));
            c.dirty.insert(e.key.clone());
            if c.log.len() == CHANGE_LOG {
                c.log.pop_front();
            }
            c.log.push_back((self.epoch, e.key.clone()));
        }
        if let Some(old) = self.entries.insert(e.key.clone(), Box::new(e)) {
            self.live -= usize::from(old.value.counts_live());
            self.notes -= usize::from(old.value.is_note());
            if matches!(old.value, Value::Service(_)) {
                self.services -= 1;
            }
        }
    }

    /// Brings the digest and the item hash up to date after a change.
    fn seal(&mut self) {
        if self.entries.len() < CACHE_MIN {
            self.cache = None;
            self.digest = owner_digest(self.entries.values().map(|e| &**e));
        } else {
            let cache = self.cache.get_or_insert_with(|| Box::new(DigestCache::build(&self.entries)));
            cache.update(&self.entries);
            self.digest = digest_of_chunks(self.entries.len(), cache.chunks.values());
        }
        let summary = self.summary();
        self.item = item_hash(&summary);
        self.sum = item_sum(&summary);
    }
}

/// A 128-bit collision-resistant commitment (truncated BLAKE2s-256): owner digests and range
/// fingerprints.
pub type Commitment = [u8; 16];

pub(crate) fn truncate(h: Blake2s256) -> Commitment {
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The owner digest (protocol 5): entries in ascending key order are cut into chunks, a chunk
/// ending after each entry whose signature's first byte is below [`BOUNDARY`] (one in 32) and
/// at the last entry; each chunk is hashed, `c = BLAKE2s-256("gossipd chunk v5" || its entries'
/// 64-byte signatures)` truncated to 16 bytes, and the digest is the first 16 bytes of
/// `BLAKE2s-256("gossipd owner digest v5" || count (u64 BE) || c_1 || ... || c_k)`.
///
/// A signature is unique to the claim it signs (owner, generation, key, version, value), so
/// this commits to exactly the entries held: equal digests mean equal chunk sequences, so equal
/// signature sequences, short of a BLAKE2s collision. Unlike an XOR (or any sum) of per-entry
/// hashes it is not linear, so no choice of entries withheld or added leaves it unchanged.
/// The chunks are content-defined (a boundary depends only on the entry itself), so a change
/// rehashes only the chunk it falls in and the list of chunk hashes (about 1/32 of the
/// entries' size): see [`DigestCache`]. Entries must be given in ascending key order.
pub fn owner_digest<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Commitment {
    let mut chunks = Vec::new();
    let mut count = 0;
    let mut chunk = ChunkHasher::new();
    for e in entries {
        count += 1;
        if chunk.add(e) {
            chunks.push(std::mem::replace(&mut chunk, ChunkHasher::new()).finish());
        }
    }
    if chunk.len > 0 {
        chunks.push(chunk.finish());
    }
    digest_of_chunks(count, chunks.iter())
}

/// An entry whose signature's first byte is below this ends a chunk of the owner digest.
pub const BOUNDARY: u8 = 8;

/// Owners with at least this many entries keep their digest's chunk hashes ([`DigestCache`])
/// and a log of their last puts ([`NodeState::changed_since`]).
pub const CACHE_MIN: usize = 128;

/// Puts remembered by a large owner's state ([`NodeState::changed_since`]).
pub const CHANGE_LOG: usize = 4096;

fn is_boundary(e: &Entry) -> bool {
    e.sig[0] < BOUNDARY
}

/// One chunk of the owner digest being hashed.
struct ChunkHasher {
    h: Blake2s256,
    len: usize,
}

impl ChunkHasher {
    fn new() -> Self {
        let mut h = Blake2s256::new();
        h.update(b"gossipd chunk v5");
        ChunkHasher { h, len: 0 }
    }

    /// Adds an entry; true if it ends the chunk.
    fn add(&mut self, e: &Entry) -> bool {
        self.h.update(e.sig);
        self.len += 1;
        is_boundary(e)
    }

    fn finish(self) -> Commitment {
        truncate(self.h)
    }
}

fn digest_of_chunks<'a>(count: usize, chunks: impl IntoIterator<Item = &'a Commitment>) -> Commitment {
    let mut h = Blake2s256::new();
    h.update(b"gossipd owner digest v5");
    h.update((count as u64).to_be_bytes());
    for c in chunks {
        h.update(c);
    }
    truncate(h)
}

/// The chunk hashes of a large owner's digest ([`owner_digest`]), by the key of each chunk's
/// last entry, and the keys written since they were last brought up to date.
///
/// Bringing them up to date: for each written key `k`, the region between the nearest
/// boundaries around it that were not written (both were boundaries before and still are, as
/// their entries did not change) is cut into chunks again; cached chunks ending in that region
/// are replaced, and every other chunk is as it was, since none of its entries changed. With
/// many writes at once (a large delta) the whole set is cut again instead.
#[derive(Debug, Clone)]
struct DigestCache {
    chunks: BTreeMap<String, Commitment>,
    dirty: std::collections::BTreeSet<Arc<str>>,
    /// The last [`CHANGE_LOG`] puts: (epoch after the put, key).
    log: std::collections::VecDeque<(u64, Arc<str>)>,
    /// Every entry as (version, key): the entries newer than a version without a scan.
    by_version: std::collections::BTreeSet<(u64, Arc<str>)>,
}

impl DigestCache {
    fn build(entries: &BTreeMap<Arc<str>, Box<Entry>>) -> Self {
        let mut c = DigestCache {
            chunks: BTreeMap::new(),
            dirty: Default::default(),
            log: Default::default(),
            by_version: entries.iter().map(|(k, e)| (e.version, k.clone())).collect(),
        };
        c.rechunk(entries, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
        c
    }

    fn update(&mut self, entries: &BTreeMap<Arc<str>, Box<Entry>>) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        if self.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty);
        if dirty.len().saturating_mul(64) > entries.len() {
            self.chunks.clear();
            self.rechunk(entries, Unbounded, Unbounded);
            return;
        }
        let stable = |(k, e): &(&Arc<str>, &Entry)| is_boundary(e) && !dirty.contains(*k);
        // Regions (lo, hi] in ascending order; `None` is the start or the end of the set.
        let mut regions: Vec<(Option<&str>, Option<&str>)> = Vec::new();
        for k in &dirty {
            if let Some((_, hi)) = regions.last() {
                if hi.is_none_or(|h| &**k <= h) {
                    continue; // inside the previous region
                }
            }
            let lo = entries.range::<str, _>((Unbounded, Excluded(&**k))).map(|(k, e)| (k, &**e)).rev().find(stable).map(|(k, _)| &**k);
            let hi = entries.range::<str, _>((Included(&**k), Unbounded)).map(|(k, e)| (k, &**e)).find(stable).map(|(k, _)| &**k);
            regions.push((lo, hi));
        }
        for (lo, hi) in regions {
            let lo = lo.map_or(Unbounded, Excluded);
            let hi = hi.map_or(Unbounded, Included);
            let stale: Vec<String> = self.chunks.range::<str, _>((lo, hi)).map(|(k, _)| k.clone()).collect();
            for k in stale {
                self.chunks.remove(&k);
            }
            self.rechunk(entries, lo, hi);
        }
    }

    /// Cuts the entries with keys in `(lo, hi)` into chunks; `hi` is a boundary's key or the end.
    fn rechunk(&mut self, entries: &BTreeMap<Arc<str>, Box<Entry>>, lo: std::ops::Bound<&str>, hi: std::ops::Bound<&str>) {
        let mut chunk = ChunkHasher::new();
        let mut last = None;
        for (k, e) in entries.range::<str, _>((lo, hi)) {
            last = Some(k);
            if chunk.add(e) {
                self.chunks.insert(k.to_string(), std::mem::replace(&mut chunk, ChunkHasher::new()).finish());
                last = None;
            }
        }
        if let Some(k) = last {
            self.chunks.insert(k.to_string(), chunk.finish());
        }
    }
}

/// Hash of one summary, the unit of range fingerprints: the first 16 bytes of
/// `BLAKE2s-256("gossipd summary v3" || id (16 B) || generation (u64 BE) || version (u64 BE)
/// || digest (16 B))`.
pub fn item_hash(s: &Summary) -> Commitment {
    truncate(summary_hasher(b"gossipd summary v3", s))
}

/// BLAKE2s-256 over `tag || id (16 B) || generation (u64 BE) || version (u64 BE) || digest
/// (16 B)`, not finalized: the item of a summary under both fingerprint rules.
pub(crate) fn summary_hasher(tag: &[u8], s: &Summary) -> Blake2s256 {
    let mut h = Blake2s256::new();
    h.update(tag);
    h.update(s.id.0);
    h.update(s.generation.to_be_bytes());
    h.update(s.version.to_be_bytes());
    h.update(s.digest);
    h
}

/// The fingerprint of a sequence of summaries in ascending id order, given their item hashes:
/// the first 16 bytes of `BLAKE2s-256("gossipd range v3" || count (u64 BE) || item hashes)`.
pub fn range_fingerprint<'a>(items: impl IntoIterator<Item = &'a Commitment>) -> (u64, Commitment) {
    let items: Vec<&Commitment> = items.into_iter().collect();
    let mut h = Blake2s256::new();
    h.update(b"gossipd range v3");
    h.update((items.len() as u64).to_be_bytes());
    for i in &items {
        h.update(i);
    }
    (items.len() as u64, truncate(h))
}

/// How range fingerprints are computed, by wire version: protocols 5 and 6 hash the
/// concatenated item hashes ([`range_fingerprint`]), protocol 7 the count and sum of the items
/// ([`crate::sums`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scheme {
    /// Protocols 5 and 6.
    Concat,
    /// Protocol 7 and later.
    Sum,
}

impl Scheme {
    /// The scheme of wire version `version`.
    pub fn at(version: u8) -> Scheme {
        if version >= crate::version::SUM_MIN { Scheme::Sum } else { Scheme::Concat }
    }
}

/// True if `a` is strictly newer than `b` (generation first, then version).
pub fn newer(a: (u64, u64), b: (u64, u64)) -> bool {
    a > b
}

/// What applying a delta did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The table learned something.
    Changed {
        /// The owner was not known before (or came back with a new generation).
        new_node: bool,
        /// The owner's status changed (joined, left).
        status_changed: bool,
    },
    /// Nothing new.
    Stale,
    /// Only the owner's head for the version held was learned (the entries were all held): the
    /// replica can now tell whether its copy is complete.
    Head,
    /// The delta starts past what is held: this is what to ask for instead.
    Gap(Want),
    /// A signature did not verify (the node info or an entry was forged or altered): nothing
    /// was applied; the peer that relayed it is to blame.
    Forged,
    /// The owner signed two different entries under one version: proof of misbehaviour. The
    /// rest of the delta was applied; of the two entries the replica keeps the one with the
    /// smaller signature, so that every replica ends up with the same one.
    Equivocation {
        /// The key concerned.
        key: String,
        /// The version signed twice.
        version: u64,
        /// The proof.
        proof: Box<Proof>,
    },
}

/// The table of all known nodes.
///
/// Owner states are shared copy-on-write (`Arc`), and so is the map that holds them (a
/// persistent B-tree, `imbl::OrdMap`): cloning a table costs nothing, and a clone that then
/// changes one owner copies only the O(log N) path to it. The simulator holds N replicas of
/// the same N owners in one process; they share everything but their differences.
#[derive(Debug, Default, Clone)]
pub struct Table {
    nodes: imbl::OrdMap<NodeId, Arc<NodeState>>,
    /// The whole table's protocol 5 and 6 fingerprint, computed on first use after a change.
    root_fp: OnceLock<(u64, Commitment)>,
    /// Count and sum of the owners' items under each id prefix (protocol 7 fingerprints),
    /// brought up to date with every change of an owner's summary.
    sums: SumTree,
}

impl Items for imbl::OrdMap<NodeId, Arc<NodeState>> {
    fn items_from(&self, lo: NodeId, hi: Option<NodeId>) -> impl Iterator<Item = (NodeId, Sum)> {
        self.range(crate::sums::id_bounds(lo, hi)).map(|(i, n)| (*i, n.sum))
    }
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Table::default()
    }

    /// Number of nodes held.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node is held.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// One node's state.
    pub fn get(&self, id: &NodeId) -> Option<&NodeState> {
        self.nodes.get(id).map(|n| &**n)
    }

    /// Each owner's id and item hash (the unit of range fingerprints) in `[lo, hi)`, ascending.
    pub(crate) fn range_items<'a>(&'a self, lo: &NodeId, hi: &Bound) -> impl Iterator<Item = (NodeId, &'a Commitment)> + 'a {
        self.range(lo, hi).map(|n| (n.info.id, &n.item))
    }

    /// Every node, by id.
    pub fn iter(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes.values().map(|n| &**n)
    }

    /// Count and fingerprint of the summaries with ids in `[lo, hi)`, as protocols 5 and 6
    /// compute it (O(count)) or as protocol 7 does (O(log N), [`crate::sums`]).
    pub fn fingerprint(&self, lo: &NodeId, hi: &Bound, scheme: Scheme) -> (u64, Commitment) {
        match scheme {
            Scheme::Concat if *lo == NodeId::MIN && *hi == Bound::Inf => {
                *self.root_fp.get_or_init(|| range_fingerprint(self.nodes.values().map(|n| &n.item)))
            }
            Scheme::Concat => range_fingerprint(self.range(lo, hi).map(|n| &n.item)),
            Scheme::Sum => self.sum_of(lo, hi).fingerprint(),
        }
    }

    /// Count and sum of the items with ids in `[lo, hi)` (protocol 7).
    pub(crate) fn sum_of(&self, lo: &NodeId, hi: &Bound) -> Agg {
        let hi = match hi {
            Bound::Id(h) => Some(h),
            Bound::Inf => None,
        };
        self.sums.range(lo, hi, &self.nodes)
    }

    /// Count and sum of the items with ids `< x` (protocol 7).
    pub(crate) fn sum_below(&self, x: &NodeId) -> Agg {
        self.sums.below(x, &self.nodes)
    }

    /// The id with `rank` ids below it.
    pub(crate) fn select(&self, rank: u64) -> Option<NodeId> {
        self.sums.select(rank, &self.nodes)
    }

    /// Brings the sum tree up to date after `id`'s item changed from `old`.
    fn resum(&mut self, id: &NodeId, old: Option<Sum>) {
        let new = self.sum_at(id);
        self.sums.update(id, old, new, &self.nodes);
    }

    fn sum_at(&self, id: &NodeId) -> Option<Sum> {
        self.nodes.get(id).map(|n| n.sum)
    }

    /// Nodes with ids in `[lo, hi)`, ascending.
    pub fn range<'a>(&'a self, lo: &NodeId, hi: &Bound) -> impl Iterator<Item = &'a NodeState> + 'a {
        let upper = match hi {
            Bound::Id(h) if h <= lo => std::ops::Bound::Excluded(*lo),
            Bound::Id(h) => std::ops::Bound::Excluded(*h),
            Bound::Inf => std::ops::Bound::Unbounded,
        };
        self.nodes.range((std::ops::Bound::Included(*lo), upper)).map(|(_, n)| &**n)
    }

    /// Forgets the cached root fingerprint after a change.
    fn changed(&mut self) {
        self.root_fp = OnceLock::new();
    }

    /// Inserts the local node (owner) with no entries.
    pub fn insert_local(&mut self, info: NodeInfo) {
        self.changed();
        let (id, old) = (info.id, self.sum_at(&info.id));
        self.nodes.insert(id, Arc::new(NodeState::new(info)));
        self.resum(&id, old);
    }

    /// The owner writes one entry under a fresh version, signed by its identity, and signs its
    /// head for that version (one more signature per change, cached). Returns the new version.
    pub fn write_local(&mut self, identity: &Identity, key: &str, value: Value) -> Option<u64> {
        let id = identity.node_id();
        let old = self.sum_at(&id);
        let node = Arc::make_mut(self.nodes.get_mut(&id)?);
        node.max_version += 1;
        let version = node.max_version;
        node.put(Entry::signed(identity, node.info.generation, key, version, value));
        node.seal();
        node.head = Some((version, Head::signed(identity, node.info.generation, version, node.digest)));
        self.changed();
        self.resum(&id, old);
        Some(version)
    }

    /// Applies a delta received from the network. Never called for the local node.
    ///
    /// A delta at or below the held version is not news, but it is still compared entry by
    /// entry (no cryptography unless something differs): reconciliation sends one when two
    /// replicas at one version hold different entries, and this is where the difference is
    /// repaired (a missing entry) or proven (a second entry under a held version). It is also
    /// where a copy that came without the owner's head gets it ([`Applied::Head`]).
    ///
    /// A head is taken only if it is for the version held once the delta is merged and newer
    /// than the head held; only then is its signature checked, and a bad one makes the whole
    /// delta [`Applied::Forged`].
    pub fn apply(&mut self, d: &Delta) -> Applied {
        let old = self.sum_at(&d.node.id);
        let applied = self.apply_unsummed(d);
        self.resum(&d.node.id, old);
        applied
    }

    /// [`Table::apply`] but for the sum tree.
    fn apply_unsummed(&mut self, d: &Delta) -> Applied {
        let id = d.node.id;
        let held = self.nodes.get(&id).map(|n| (n.info.generation, n.max_version));
        match held {
            Some((g, _)) if d.node.generation < g => return Applied::Stale,
            Some((g, v)) if d.node.generation == g => {
                if d.to_version <= v {
                    return self.repair(d);
                }
                if d.from_version > v {
                    return Applied::Gap(Want { id, generation: g, version: v });
                }
            }
            // Unknown, or a newer generation: only a delta from the very start applies.
            _ if d.from_version > 0 => {
                let (generation, version) = held.unwrap_or((0, 0));
                return Applied::Gap(Want { id, generation, version });
            }
            _ => {}
        }
        // Only now, when the delta would teach something, is it worth verifying: the node info
        // and every entry must carry the owner's signature. What the replica already holds,
        // signature for signature, was verified when it was taken (a delta extending the
        // owner's state repeats its node info, and may start below the version held): only
        // the rest is verified. (Ed25519 verification was half of a 200-node cold start's CPU.)
        let known = self.nodes.get(&id).filter(|n| n.info.generation == d.node.generation);
        let node_known = known.is_some_and(|n| n.info.same_signed(&d.node));
        let entry_known = |e: &Entry| {
            known.and_then(|n| n.entries.get(&e.key)).is_some_and(|h| h.version == e.version && h.sig == e.sig && h.value == e.value)
        };
        if !(node_known || d.node.verify()) || !d.entries.iter().all(|e| entry_known(e) || e.verify(&d.node)) {
            return Applied::Forged;
        }
        let fresh = held.is_none_or(|(g, _)| d.node.generation > g);
        // The delta ends past the version held, so a head it carries is newer than any held; it
        // is taken only if the delta holds the entry it names (a head for a version beyond the
        // entries it came with is refused), and then it must verify.
        let newest_signed = d.entries.iter().map(|e| e.version).max().unwrap_or(0);
        let head = d.head.filter(|_| newest_signed == d.to_version);
        if head.is_some_and(|h| !h.verify(&d.node, d.to_version)) {
            return Applied::Forged;
        }
        self.changed();
        if fresh {
            let mut state = NodeState::new(d.node.clone());
            // A restart: keep serving the older generation until the new one is complete (only
            // one generation back, and only an owner that was alive in it).
            if let Some(old) = self.nodes.get(&id) {
                if old.status() == NodeStatus::Alive {
                    let mut old = NodeState::clone(old.served());
                    old.previous = None;
                    state.previous = Some(Arc::new(old));
                }
            }
            self.nodes.insert(id, Arc::new(state));
        }
        let Some(node) = self.nodes.get_mut(&id).map(Arc::make_mut) else {
            return Applied::Stale;
        };
        let status_before = node.status();
        let equivocation = merge(node, &d.entries);
        // The high-water mark comes from signed entries only, never from the delta's (unsigned)
        // bounds: the owner's newest version is always the version of a live entry it holds,
        // so a replica holding that entry holds everything newer than what it had.
        node.max_version = node.max_version.max(newest_signed);
        node.seal();
        if let Some(h) = head {
            node.head = Some((d.to_version, h));
        }
        if node.previous.is_some() && node.verified() {
            node.previous = None;
        }
        let status_changed = fresh || node.status() != status_before;
        if let Some((key, version, proof)) = equivocation {
            return Applied::Equivocation { key, version, proof };
        }
        Applied::Changed { new_node: fresh, status_changed }
    }

    /// A delta within the held version of the held generation: applies the entries the replica
    /// lacks (held older or not at all) and detects a second entry under a held version. A head
    /// for the version held is taken if no head for it is held (a copy that came without one).
    fn repair(&mut self, d: &Delta) -> Applied {
        let Some(node) = self.nodes.get(&d.node.id) else { return Applied::Stale };
        let differs = |e: &Entry| match node.entries.get(&e.key) {
            Some(old) => old.version < e.version || (old.version == e.version && old.sig != e.sig),
            None => true,
        };
        let news: Vec<Entry> = d.entries.iter().filter(|e| differs(e)).cloned().collect();
        // Its version is the one held (the delta's entries were merged before, or came with it;
        // a head-only chunk `(v, v]` follows a full last chunk): never beyond what is held.
        let head =
            d.head.filter(|_| d.to_version == node.max_version && node.head.is_none_or(|(v, _)| v < node.max_version));
        if news.is_empty() && head.is_none() {
            return Applied::Stale;
        }
        // The node info must be the one held (same generation): verify against it.
        if !(node.info.same_signed(&d.node) || d.node.verify())
            || d.node.identity != node.info.identity
            || !news.iter().all(|e| e.verify(&node.info))
            || head.is_some_and(|h| !h.verify(&node.info, d.to_version))
        {
            return Applied::Forged;
        }
        let status_before = node.status();
        if !news.is_empty() {
            self.changed();
        }
        let Some(node) = self.nodes.get_mut(&d.node.id).map(Arc::make_mut) else { return Applied::Stale };
        if let Some(h) = head {
            node.head = Some((d.to_version, h));
        }
        if news.is_empty() {
            // The summary is unchanged: the root fingerprint stays valid. The copy may now be
            // complete, and answered instead of the previous generation: that is a change.
            if node.previous.is_some() && node.verified() {
                node.previous = None;
                return Applied::Changed { new_node: false, status_changed: false };
            }
            return Applied::Head;
        }
        let equivocation = merge(node, &news);
        node.seal();
        if node.previous.is_some() && node.verified() {
            node.previous = None;
        }
        let status_changed = node.status() != status_before;
        if let Some((key, version, proof)) = equivocation {
            return Applied::Equivocation { key, version, proof };
        }
        Applied::Changed { new_node: false, status_changed }
    }

    /// The deltas that bring a replica holding `(have_generation, have_version)` of `id` up to
    /// date, each encoding to at most `budget` bytes. Empty if nothing is newer. A replica
    /// holding an older generation (or none) gets everything from version 0.
    pub fn deltas_for(
        &self,
        id: &NodeId,
        have_generation: u64,
        have_version: u64,
        ttl: u8,
        budget: usize,
    ) -> Vec<Delta> {
        let (mut deltas, _) = self.deltas_window(id, have_generation, have_version, budget, usize::MAX);
        for d in &mut deltas {
            d.ttl = ttl;
        }
        deltas
    }

    /// As [`Table::deltas_for`], but at most about `max_bytes` of entries (at least one entry):
    /// a longer answer stops at an entry's version, with no head, and the version it stopped
    /// at is returned so that the receiver can be told to ask again from there (pacing a large
    /// owner's transfer to what the receiver takes; docs/PROTOCOL.md section 4.2).
    pub fn deltas_window(
        &self,
        id: &NodeId,
        have_generation: u64,
        have_version: u64,
        budget: usize,
        max_bytes: usize,
    ) -> (Vec<Delta>, Option<u64>) {
        let Some(node) = self.nodes.get(id) else {
            return (Vec::new(), None);
        };
        let from = if have_generation == node.info.generation {
            if have_version >= node.max_version {
                return (Vec::new(), None);
            }
            have_version
        } else if have_generation > node.info.generation {
            return (Vec::new(), None);
        } else {
            0
        };
        let entries = node.newer_than(from);
        let mut total = 0;
        let cut = entries.iter().position(|e| {
            total += crate::message::entry_len(e);
            total > max_bytes
        });
        match cut {
            Some(k) if k + 1 < entries.len() => {
                let k = k.max(1);
                let to = entries[k - 1].version;
                (crate::chunk::split_delta(&node.info, from, to, &entries[..k], 0, budget, None), Some(to))
            }
            _ => (crate::chunk::split_delta(&node.info, from, node.max_version, &entries, 0, budget, node.current_head()), None),
        }
    }
}

/// Merges verified entries into an owner's state: newer versions replace older ones; a
/// different entry under a held version is proof of misbehaviour, and the one with the smaller
/// signature is kept (every replica picks the same). Returns the first proof found.
fn merge(node: &mut NodeState, entries: &[Entry]) -> Option<(String, u64, Box<Proof>)> {
    let mut equivocation = None;
    for e in entries {
        match node.entries.get(&e.key) {
            Some(old) if old.version == e.version && old.sig != e.sig => {
                if equivocation.is_none() {
                    let proof = Proof {
                        identity: node.info.identity,
                        generation: node.info.generation,
                        first: old.claim(),
                        second: e.claim(),
                    };
                    equivocation = Some((e.key.to_string(), e.version, Box::new(proof)));
                }
                if e.sig < old.sig {
                    node.put(e.clone());
                }
            }
            Some(old) if old.version >= e.version => {}
            _ => node.put(e.clone()),
        }
    }
    equivocation
}

impl Table {
    /// Inserts another node's state as it is (shared, not copied, not verified: it comes from
    /// a local replica that verified it). For building simulations; replaces what was held.
    pub fn adopt_owner(&mut self, state: &Arc<NodeState>) {
        self.changed();
        let old = self.sum_at(&state.info.id);
        self.nodes.insert(state.info.id, Arc::clone(state));
        self.resum(&state.info.id, old);
    }

    /// Forgets an owner entirely (garbage collection of a departed node).
    pub fn remove(&mut self, id: &NodeId) -> Option<Arc<NodeState>> {
        let removed = self.nodes.remove(id)?;
        self.changed();
        self.sums.update(id, Some(removed.sum), None, &self.nodes);
        Some(removed)
    }

    /// The shared state of one owner.
    pub fn get_shared(&self, id: &NodeId) -> Option<&Arc<NodeState>> {
        self.nodes.get(id)
    }

    /// Replaces this table with a copy of `other` (sharing owner states), keeping `local`'s own
    /// state: as if this node had already completed a join. Used to start large simulations
    /// from a converged cluster without replaying N² deltas.
    pub fn adopt(&mut self, other: &Table, local: &NodeId) {
        let mine = self.nodes.get(local).cloned();
        self.nodes = other.nodes.clone();
        self.sums = other.sums.clone();
        self.changed();
        match mine {
            // The same state (a simulation's template learned it from this node): keep the
            // tree shared rather than copying the path to it, and the template's root
            // fingerprint with it (computing it is O(N): N nodes computing theirs after a
            // warm start hashed N² items, most of a 100,000-node run's start).
            Some(m) if other.nodes.get(local).is_some_and(|o| Arc::ptr_eq(o, &m)) => {
                let root = other.fingerprint(&NodeId::MIN, &Bound::Inf, Scheme::Concat);
                self.root_fp = OnceLock::from(root);
            }
            Some(m) => {
                let old = self.sum_at(local);
                self.nodes.insert(*local, m);
                self.resum(local, old);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Value;
    use std::net::SocketAddr;

    /// Both root fingerprints, recomputed from every owner's item.
    fn fresh_root(t: &Table) -> [(u64, Commitment); 2] {
        let sum = t.nodes.values().fold(Agg::default(), |a, n| a + Agg::one(item_sum(&n.summary())));
        [range_fingerprint(t.nodes.values().map(|n| &n.item)), sum.fingerprint()]
    }

    /// Both root fingerprints, as the table gives them (cached, or from the sum tree).
    fn root(t: &Table) -> [(u64, Commitment); 2] {
        [Scheme::Concat, Scheme::Sum].map(|s| t.fingerprint(&NodeId::MIN, &Bound::Inf, s))
    }

    fn owner(i: u8) -> (Identity, NodeInfo) {
        let id = Identity::from_secret([i; 32]);
        let info = NodeInfo::signed(&id, format!("n{i}"), SocketAddr::from(([127, 0, 0, i], 1)), 1);
        (id, info)
    }

    #[test]
    fn the_cached_root_fingerprint_follows_every_change() {
        let mut t = Table::new();
        let (me, info) = owner(1);
        t.insert_local(info);
        assert_eq!(root(&t), fresh_root(&t));
        let mut other = Table::new();
        let (them, their_info) = owner(2);
        other.insert_local(their_info);
        for v in 1..=3 {
            // Read the root (filling the cache), then change the table: the next read is fresh.
            let _ = root(&t);
            t.write_local(&me, "@status", Value::Status(NodeStatus::Alive));
            assert_eq!(root(&t), fresh_root(&t), "write_local {v}");
            other.write_local(&them, &format!("k{v}"), Value::Tombstone);
            let d = other.deltas_for(&them.node_id(), 0, 0, 0, 1136);
            let _ = root(&t);
            for d in &d {
                t.apply(d);
            }
            assert_eq!(root(&t), fresh_root(&t), "apply {v}");
        }
        let _ = root(&t);
        let shared = Arc::clone(other.get_shared(&them.node_id()).unwrap());
        t.remove(&them.node_id());
        assert_eq!(root(&t), fresh_root(&t), "remove");
        t.adopt_owner(&shared);
        assert_eq!(root(&t), fresh_root(&t), "adopt_owner");
        let mut copy = Table::new();
        let _ = root(&copy);
        copy.adopt(&t, &them.node_id());
        assert_eq!(root(&copy), root(&t), "adopt");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// A large owner's digest, kept up to date chunk by chunk (by the owner writing and by
        /// a replica applying its deltas a window at a time), always equals the digest
        /// recomputed from scratch over the entries held.
        #[test]
        fn the_incremental_digest_equals_the_recomputed_one(
            writes in proptest::collection::vec((0u16..600, 0u8..3), 150..700),
            window in 200usize..6000,
        ) {
            let (me, info) = owner(9);
            let mut t = Table::new();
            t.insert_local(info);
            let mut replica = Table::new();
            for (i, (k, kind)) in writes.iter().enumerate() {
                let value = match kind {
                    0 => Value::Tombstone,
                    1 => Value::Status(NodeStatus::Alive),
                    _ => Value::Unknown { tag: 200, bytes: vec![i as u8] },
                };
                t.write_local(&me, &format!("k{k:04}"), value);
                if i % 37 == 0 || i + 1 == writes.len() {
                    let n = t.get(&me.node_id()).unwrap();
                    proptest::prop_assert_eq!(n.digest, owner_digest(n.entries.values().map(|e| &**e)), "owner after {} writes", i + 1);
                    // The version index answers as a scan would.
                    for from in [0, n.max_version / 2, n.max_version.saturating_sub(3), n.max_version] {
                        let mut scan: Vec<&Entry> = n.entries.values().map(|e| &**e).filter(|e| e.version > from).collect();
                        scan.sort_by_key(|e| e.version);
                        proptest::prop_assert_eq!(n.newer_than(from), scan, "newer than {}", from);
                    }
                    // The replica catches up a window at a time.
                    loop {
                        let held = replica.get(&me.node_id()).map_or((0, 0), |r| (r.info.generation, r.max_version));
                        let (ds, more) = t.deltas_window(&me.node_id(), held.0, held.1, 1136, window);
                        for d in &ds {
                            replica.apply(d);
                        }
                        let r = replica.get(&me.node_id()).unwrap();
                        proptest::prop_assert_eq!(r.digest, owner_digest(r.entries.values().map(|e| &**e)), "replica");
                        if more.is_none() {
                            break;
                        }
                    }
                    proptest::prop_assert!(replica.get(&me.node_id()).unwrap().verified(), "the replica's copy verifies");
                }
            }
        }
    }

    #[test]
    fn digests_commit_to_the_exact_entry_set() {
        let (me, info) = owner(3);
        let e = |k: &str, v: u64| Entry::signed(&me, info.generation, k, v, Value::Tombstone);
        let (a, b, c) = (e("a", 1), e("b", 2), e("c", 3));
        let d = |es: &[&Entry]| owner_digest(es.iter().copied());
        // Order of insertion does not matter (entries are hashed in key order by the caller);
        // any subset, superset or substitution does.
        assert_ne!(d(&[&a, &b, &c]), d(&[&a, &c]));
        assert_ne!(d(&[&a, &b]), d(&[&a, &b, &b]));
        assert_ne!(d(&[]), d(&[&a]));
        assert_ne!(d(&[&a, &b]), d(&[&a, &e("b", 4)]));
        let (n, fp) = range_fingerprint([&[1u8; 16], &[2u8; 16]]);
        assert_eq!(n, 2);
        assert_ne!(fp, range_fingerprint([&[2u8; 16], &[1u8; 16]]).1, "order is part of the range");
        assert_ne!(fp, range_fingerprint([&[1u8; 16]]).1);
    }
}
