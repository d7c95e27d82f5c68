//! Cache mechanics with a stand-in for the full path. Equality with the real full path (the
//! hickory encoding) is tested in `server/tests.rs`.

use std::cell::Cell;
use std::sync::Arc;

use super::*;
use crate::wire::parse_query;

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    query_edns(id, name, qtype, None)
}

fn query_edns(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    crate::wire::test_query(id, name, qtype, edns, false)
}

/// A fake full path: echoes the query as a response with `answers` A records (the first owner
/// written out, the others pointing at it, as hickory does; the address is a build counter,
/// so that every build differs) and `rcode`.
struct Fake {
    builds: Cell<u32>,
    answers: u16,
    rcode: u8,
}

impl Fake {
    fn new(answers: u16, rcode: u8) -> Self {
        Fake { builds: Cell::new(0), answers, rcode }
    }

    fn build(&self, canonical: &[u8]) -> Option<Vec<u8>> {
        self.builds.set(self.builds.get() + 1);
        let mut r = canonical.to_vec();
        r[2] |= 0x84; // QR, AA
        r[3] = self.rcode;
        r[6..8].copy_from_slice(&self.answers.to_be_bytes());
        r[10..12].copy_from_slice(&[0, 0]);
        let q = parse_query(canonical).expect("plain");
        r.truncate(12 + q.name_len + 4);
        let name = canonical[12..12 + q.name_len].to_vec();
        for i in 0..self.answers {
            if i == 0 {
                r.extend_from_slice(&name);
            } else {
                r.extend_from_slice(&[0xC0, 12 + q.name_len as u8 + 4]);
            }
            r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
            r.extend_from_slice(&self.builds.get().to_be_bytes());
        }
        Some(r)
    }
}

fn ask(cache: &mut AnswerCache, snap: &Arc<Snapshot>, q: &[u8], pick: u64, fake: &Fake) -> (Outcome, Vec<u8>) {
    let parsed = parse_query(q).expect("plain query");
    let mut out = Vec::new();
    let outcome = cache.answer(q, &parsed, snap, pick, &mut out, |c| fake.build(c));
    (outcome, out)
}

#[test]
fn hit_is_the_miss_with_the_new_id_and_case() {
    let snap = Arc::new(Snapshot::default());
    let (mut cache, fake) = (AnswerCache::new(CacheLimits::default()), Fake::new(1, 0));
    let (first, miss) = ask(&mut cache, &snap, &query(1, "Web.service.gossip", 1), 0, &fake);
    assert_eq!(first, Outcome::Miss);
    assert_eq!(&miss[12..16], b"\x03Web", "the client's case is echoed on a miss");
    let (second, hit) = ask(&mut cache, &snap, &query(2, "wEB.SERVICE.gossip", 1), 0, &fake);
    assert_eq!(second, Outcome::Hit { rcode: CountedRcode::NoError, truncated: false });
    assert_eq!(fake.builds.get(), 1);
    assert_eq!(&hit[..2], &[0, 2], "ID patched");
    let client = &query(2, "wEB.SERVICE.gossip", 1)[12..32];
    assert_eq!(&hit[12..32], client, "0x20 case echoed in the question");
    assert_eq!(&hit[36..56], client, "and in the owner name written out");
    assert_eq!(hit[2..12], miss[2..12]);
    assert_eq!(hit[56..], miss[56..], "same answer bytes");
    assert_eq!(hit.len(), miss.len());
    assert_eq!(cache.len(), 1);
}

#[test]
fn the_full_path_sees_a_lower_cased_query() {
    let snap = Arc::new(Snapshot::default());
    let mut cache = AnswerCache::new(CacheLimits::default());
    let q = query(1, "WEB.gossip", 1);
    let parsed = parse_query(&q).expect("plain");
    let mut seen = Vec::new();
    let mut out = Vec::new();
    cache.answer(&q, &parsed, &snap, 0, &mut out, |c| {
        seen = c.to_vec();
        Fake::new(1, 0).build(c)
    });
    assert_eq!(&seen[12..], &query(1, "web.gossip", 1)[12..]);
}

#[test]
fn a_new_snapshot_empties_the_cache() {
    let (a, b) = (Arc::new(Snapshot::default()), Arc::new(Snapshot::default()));
    let (mut cache, fake) = (AnswerCache::new(CacheLimits::default()), Fake::new(1, 0));
    let q = query(1, "web.gossip", 1);
    ask(&mut cache, &a, &q, 0, &fake);
    assert!(matches!(ask(&mut cache, &a, &q, 0, &fake).0, Outcome::Hit { .. }));
    assert_eq!(ask(&mut cache, &b, &q, 0, &fake).0, Outcome::Miss, "equal content, other snapshot");
    assert!(matches!(ask(&mut cache, &b, &q, 0, &fake).0, Outcome::Hit { .. }));
    assert_eq!(fake.builds.get(), 2);
}

#[test]
fn keys_separate_type_class_and_edns_size() {
    let snap = Arc::new(Snapshot::default());
    let (mut cache, fake) = (AnswerCache::new(CacheLimits::default()), Fake::new(1, 0));
    // 100 and 512 clamp alike, as do 1232 and 4096.
    for edns in [None, Some(512), Some(1232), None, Some(4096), Some(100), Some(1000)] {
        ask(&mut cache, &snap, &query_edns(1, "web.gossip", 1, edns), 0, &fake);
    }
    ask(&mut cache, &snap, &query(1, "web.gossip", 28), 0, &fake);
    assert_eq!((cache.len(), fake.builds.get()), (5, 5));
}

#[test]
fn only_noerror_and_nxdomain_are_stored() {
    let snap = Arc::new(Snapshot::default());
    let mut cache = AnswerCache::new(CacheLimits::default());
    for (rcode, stored) in [(0, true), (3, true), (5, false), (1, false), (2, false)] {
        let fake = Fake::new(0, rcode);
        let q = query(1, &format!("r{rcode}.gossip"), 1);
        ask(&mut cache, &snap, &q, 0, &fake);
        let (outcome, _) = ask(&mut cache, &snap, &q, 0, &fake);
        assert_eq!(matches!(outcome, Outcome::Hit { .. }), stored, "rcode {rcode}");
    }
}

#[test]
fn random_orders_keep_variants_and_redraw_them() {
    let snap = Arc::new(Snapshot::default());
    let (mut cache, fake) = (AnswerCache::new(CacheLimits::default()), Fake::new(3, 0));
    let q = query(1, "web.gossip", 1);
    let mut builds_per_slot = [0u32; VARIANTS];
    let rounds = u64::from(VARIANT_USES) * 3;
    for i in 0..rounds * VARIANTS as u64 {
        let before = fake.builds.get();
        ask(&mut cache, &snap, &q, i, &fake);
        builds_per_slot[(i % VARIANTS as u64) as usize] += fake.builds.get() - before;
    }
    // Each slot is drawn once, then again after every VARIANT_USES queries it served.
    assert_eq!(builds_per_slot, [3; VARIANTS]);
    let distinct: std::collections::HashSet<Vec<u8>> =
        (0..VARIANTS as u64).map(|i| ask(&mut cache, &snap, &q, i, &fake).1).collect();
    assert_eq!(distinct.len(), VARIANTS, "each slot holds its own draw");
    // A deterministic answer (one record) is built once, whatever the pick.
    let (mut cache, fake) = (AnswerCache::new(CacheLimits::default()), Fake::new(1, 0));
    for i in 0..1000 {
        ask(&mut cache, &snap, &q, i, &fake);
    }
    assert_eq!(fake.builds.get(), 1);
}

#[test]
fn hostile_names_cannot_grow_it_past_its_bounds() {
    let snap = Arc::new(Snapshot::default());
    let limits = CacheLimits { entries: 100, bytes: 3000 };
    let (mut cache, fake) = (AnswerCache::new(limits), Fake::new(0, 3));
    for i in 0..10_000 {
        ask(&mut cache, &snap, &query(1, &format!("{i:08x}.addr.gossip"), 1), 0, &fake);
        assert!(cache.len() <= limits.entries && cache.bytes() <= limits.bytes, "at {i}");
    }
    assert!(!cache.is_empty(), "still caching after being emptied");
    let q = query(1, "web.gossip", 1);
    ask(&mut cache, &snap, &q, 0, &fake);
    assert!(matches!(ask(&mut cache, &snap, &q, 0, &fake).0, Outcome::Hit { .. }), "recent names hit");
    // An answer bigger than the whole budget is served but never stored.
    let mut tiny = AnswerCache::new(CacheLimits { entries: 10, bytes: 10 });
    assert_eq!(ask(&mut tiny, &snap, &q, 0, &fake).0, Outcome::Miss);
    assert!(tiny.is_empty() && tiny.bytes() == 0);
    let mut off = AnswerCache::new(CacheLimits { entries: 0, bytes: 1 << 20 });
    ask(&mut off, &snap, &q, 0, &fake);
    assert!(off.is_empty());
}
