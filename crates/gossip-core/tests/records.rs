//! Owner-signed records: a replica applies only what the owner signed. An altered, re-signed
//! or forged record is refused and its relay banned; two different records signed under one
//! version are reported as proof of misbehaviour.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip_core::message::{Delta, Entry, Message, Value};
use gossip_core::secure::keys::{ClusterKey, Identity, Keyring};
use gossip_core::secure::{SecureConfig, SecureLayer};
use gossip_core::state::{Applied, Scheme, Table};
use gossip_core::{Config, Event, Gossip, NodeInfo, ServiceInstance};

const WALL: u64 = 1_790_000_000_000_000_000;

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

fn svc(port: u16) -> Value {
    Value::Service(ServiceInstance { id: "web".into(), name: "web".into(), port, ..Default::default() }.into())
}

fn owner_delta(owner: &Identity, entries: Vec<Entry>) -> Delta {
    let info = NodeInfo::signed(owner, "owner".into(), addr(1), 1);
    let to = entries.iter().map(|e| e.version).max().unwrap_or(0);
    Delta { ttl: 0, node: info, from_version: 0, to_version: to, entries, head: None }
}

#[test]
fn signed_records_apply_and_tampered_ones_do_not() {
    let owner = Identity::from_secret([1; 32]);
    let relay = Identity::from_secret([2; 32]);
    let good = Entry::signed(&owner, 1, "svc/web", 1, svc(80));

    let mut t = Table::new();
    assert!(matches!(t.apply(&owner_delta(&owner, vec![good.clone()])), Applied::Changed { .. }));

    // Altered value, owner's signature kept.
    let mut altered = Entry::signed(&owner, 1, "svc/web", 2, svc(80));
    altered.value = svc(8080);
    let mut t = Table::new();
    assert_eq!(t.apply(&owner_delta(&owner, vec![good.clone(), altered])), Applied::Forged);
    assert!(t.is_empty(), "nothing of a forged delta is applied");

    // Re-signed by the relay.
    let resigned = Entry::signed(&relay, 1, "svc/web", 1, svc(8080));
    assert_eq!(Table::new().apply(&owner_delta(&owner, vec![resigned])), Applied::Forged);

    // Node info re-signed by the relay (claims the owner's identity).
    let mut d = owner_delta(&owner, vec![good.clone()]);
    d.node.sig = relay.sign(&d.node.signed_bytes());
    assert_eq!(Table::new().apply(&d), Applied::Forged);

    // Node info altered (address changed under the owner's signature).
    let mut d = owner_delta(&owner, vec![good.clone()]);
    d.node.addr = addr(9);
    assert_eq!(Table::new().apply(&d), Applied::Forged);

    // An entry signed for another generation does not verify in this one.
    let other_gen = Entry::signed(&owner, 2, "svc/web", 1, svc(80));
    assert_eq!(Table::new().apply(&owner_delta(&owner, vec![other_gen])), Applied::Forged);
}

#[test]
fn two_records_under_one_version_are_proof_of_misbehaviour() {
    let owner = Identity::from_secret([1; 32]);
    let mut t = Table::new();
    let a = Entry::signed(&owner, 1, "svc/web", 1, svc(80));
    assert!(matches!(t.apply(&owner_delta(&owner, vec![a])), Applied::Changed { .. }));
    let b = Entry::signed(&owner, 1, "svc/web", 1, svc(81));
    let mut d = owner_delta(&owner, vec![b]);
    d.to_version = 2; // claims news, so the replica looks at it
    let Applied::Equivocation { key, version, proof } = t.apply(&d) else { panic!("equivocation not detected") };
    assert_eq!((key.as_str(), version), ("svc/web", 1));
    assert!(proof.verify(&owner.node_id()), "the proof convinces anyone holding only the proof");
    assert!(!proof.verify(&Identity::from_secret([2; 32]).node_id()), "it proves nothing against another node");
    // Every replica keeps the same one of the two (the smaller signature), whatever the order.
    let kept = t.get(&owner.node_id()).unwrap().entries["svc/web"].sig;
    assert_eq!(kept, proof.first.sig.min(proof.second.sig));
}

#[test]
fn a_proof_is_refused_unless_both_claims_verify_and_differ() {
    use gossip_core::proof::Proof;
    let owner = Identity::from_secret([1; 32]);
    let id = owner.node_id();
    let a = Entry::signed(&owner, 1, "svc/web", 3, svc(80));
    let b = Entry::signed(&owner, 1, "svc/api", 3, svc(80));
    let proof =
        |x: &Entry, y: &Entry| Proof { identity: owner.public(), generation: 1, first: x.claim(), second: y.claim() };
    assert!(proof(&a, &b).verify(&id), "two keys under one version is equivocation too");
    assert!(!proof(&a, &a).verify(&id), "one claim twice proves nothing");
    let later = Entry::signed(&owner, 1, "svc/web", 4, svc(81));
    assert!(!proof(&a, &later).verify(&id), "different versions are ordinary history");
    let mut tampered = proof(&a, &b);
    tampered.second.digest[0] ^= 1;
    assert!(!tampered.verify(&id), "a claim must carry the owner's signature");
    let mut other_gen = proof(&a, &b);
    other_gen.generation = 2;
    assert!(!other_gen.verify(&id), "claims are bound to their generation");
    let forger = Identity::from_secret([7; 32]);
    let forged = Entry::signed(&forger, 1, "svc/api", 3, svc(80));
    assert!(!proof(&a, &forged).verify(&id), "a claim signed by someone else proves nothing");
}

#[test]
fn replicas_at_one_version_holding_different_entries_are_repaired() {
    // A relay dropped an entry from the delta it passed on: the replica reached the owner's
    // version without it. Summaries carry a digest of the entries held, so reconciliation tells
    // the two replicas apart, and the whole state sent in answer fills the gap.
    use gossip_core::reconcile;
    let owner = Identity::from_secret([1; 32]);
    let e1 = Entry::signed(&owner, 1, "svc/a", 1, svc(80));
    let e2 = Entry::signed(&owner, 1, "svc/b", 2, svc(81));
    let e3 = Entry::signed(&owner, 1, "svc/c", 3, svc(82));
    let mut full = Table::new();
    assert!(matches!(full.apply(&owner_delta(&owner, vec![e1.clone(), e2, e3.clone()])), Applied::Changed { .. }));
    let mut short = Table::new();
    assert!(matches!(short.apply(&owner_delta(&owner, vec![e1, e3])), Applied::Changed { .. }));
    let (f, s) = (full.get(&owner.node_id()).unwrap().summary(), short.get(&owner.node_id()).unwrap().summary());
    assert_eq!((f.generation, f.version), (s.generation, s.version));
    assert_ne!(
        full.fingerprint(&gossip_core::NodeId::MIN, &gossip_core::message::Bound::Inf, Scheme::Concat),
        short.fingerprint(&gossip_core::NodeId::MIN, &gossip_core::message::Bound::Inf, Scheme::Concat)
    );
    assert_ne!(
        full.fingerprint(&gossip_core::NodeId::MIN, &gossip_core::message::Bound::Inf, Scheme::Sum),
        short.fingerprint(&gossip_core::NodeId::MIN, &gossip_core::message::Bound::Inf, Scheme::Sum)
    );

    // `short` receives `full`'s items: it pushes its whole state and asks for the whole state.
    let items = gossip_core::message::Range {
        lo: gossip_core::NodeId::MIN,
        hi: gossip_core::message::Bound::Inf,
        body: gossip_core::message::RangeBody::Items(vec![f]),
    };
    let out = reconcile::process(&short, &[items], Scheme::Sum);
    assert_eq!(out.wants.len(), 1);
    assert_eq!(out.wants[0].version, 0, "the whole state is asked for");
    assert_eq!(out.push.len(), 1);
    let w = out.wants[0];
    for d in full.deltas_for(&w.id, w.generation, w.version, 0, 1136) {
        let _ = short.apply(&d);
    }
    assert_eq!(short.get(&owner.node_id()).unwrap().summary(), f, "repaired: same entries, same digest");
    // A second pass is quiet: nothing differs.
    for d in full.deltas_for(&w.id, w.generation, 0, 0, 1136) {
        assert_eq!(short.apply(&d), Applied::Stale);
    }
}

#[test]
fn a_relay_of_a_forged_record_is_banned() {
    let now = t0();
    let key = ClusterKey::new([9; 32]);
    let victim_sec = SecureConfig::new(Identity::from_secret([3; 32]), Keyring::new(key.clone()), WALL, [3; 32]);
    let mut victim = Gossip::new(Config::default(), victim_sec, "victim".into(), addr(3), 1, now);
    // The attacker holds the cluster key (a compromised member) and speaks the session layer.
    let attacker_id = Identity::from_secret([4; 32]);
    let mut attacker = SecureLayer::new(SecureConfig::new(attacker_id.clone(), Keyring::new(key), WALL, [4; 32]), now);

    let owner = Identity::from_secret([1; 32]);
    let mut forged = Entry::signed(&owner, 1, "svc/web", 1, svc(80));
    forged.value = svc(6666);
    let msg = Message::Delta { sender: attacker_id.node_id(), delta: owner_delta(&owner, vec![forged]) };
    let mut out = Vec::new();
    attacker.send(now, addr(3), None, &msg.encode(), &mut out);
    for _ in 0..10 {
        for o in std::mem::take(&mut out) {
            victim.handle_datagram(now, addr(4), &o.bytes);
        }
        while let Some(t) = victim.poll_transmit() {
            let _ = attacker.recv(now, addr(3), &t.payload, &mut out);
        }
    }
    assert_eq!(victim.stats().forged_records, 1);
    let mut banned = false;
    while let Some(e) = victim.poll_event() {
        if let Event::Banned { identity, period, .. } = e {
            assert_eq!(identity, attacker_id.public());
            assert_eq!(period, Duration::from_secs(60));
            banned = true;
        }
    }
    assert!(banned, "the relay of a forged record must be banned");
    assert!(victim.secure().is_banned(now, &attacker_id.public()));
    assert!(!victim.nodes().any(|n| n.info.id == owner.node_id()), "nothing of the forgery applied");
}

/// Delivers datagrams between a victim `Gossip` (at address 3) and a raw `SecureLayer` peer
/// (at `peer_addr`) until quiet; returns what the peer received.
fn pump(
    now: Instant,
    victim: &mut Gossip,
    peer: &mut SecureLayer,
    peer_addr: SocketAddr,
    mut out: Vec<gossip_core::secure::Outgoing>,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    for _ in 0..10 {
        for o in std::mem::take(&mut out) {
            victim.handle_datagram(now, peer_addr, &o.bytes);
        }
        while let Some(t) = victim.poll_transmit() {
            if let Some(r) = peer.recv(now, addr(3), &t.payload, &mut out) {
                got.push(r.payload);
            }
        }
    }
    got
}

fn reconcile_from(id: &Identity) -> Vec<u8> {
    let range = gossip_core::message::Range {
        lo: gossip_core::NodeId::MIN,
        hi: gossip_core::message::Bound::Inf,
        body: gossip_core::message::RangeBody::Fingerprint { count: 0, fp: [0; 16] },
    };
    Message::Reconcile { sender: id.node_id(), initial: true, ranges: vec![range] }.encode()
}

#[test]
fn malformed_payloads_ban_the_peer_which_is_forgiven_later() {
    let start = t0();
    let key = ClusterKey::new([9; 32]);
    let sec = SecureConfig::new(Identity::from_secret([3; 32]), Keyring::new(key.clone()), WALL, [3; 32]);
    let mut victim = Gossip::new(Config::default(), sec, "victim".into(), addr(3), 1, start);
    let peer_id = Identity::from_secret([5; 32]);
    let mut peer = SecureLayer::new(SecureConfig::new(peer_id.clone(), Keyring::new(key), WALL, [5; 32]), start);

    let mut out = Vec::new();
    peer.send(start, addr(3), None, b"\x07 not a message", &mut out);
    pump(start, &mut victim, &mut peer, addr(5), out);
    assert!(victim.secure().is_banned(start, &peer_id.public()));
    assert_eq!(victim.stats().dropped_decode, 1);

    // While banned, even a valid message gets nothing back.
    let mut out = Vec::new();
    let mut fresh = SecureLayer::new(
        SecureConfig::new(peer_id.clone(), Keyring::new(ClusterKey::new([9; 32])), WALL, [6; 32]),
        start,
    );
    fresh.send(start, addr(3), None, &reconcile_from(&peer_id), &mut out);
    assert!(pump(start, &mut victim, &mut fresh, addr(5), out).is_empty());

    // After the ban period the same identity is served again.
    let later = start + Duration::from_secs(61);
    victim.handle_timeout(later);
    while victim.poll_transmit().is_some() {}
    let mut again = SecureLayer::new(
        SecureConfig::new(peer_id.clone(), Keyring::new(ClusterKey::new([9; 32])), WALL + 61_000_000_000, [7; 32]),
        later,
    );
    let mut out = Vec::new();
    again.send(later, addr(3), None, &reconcile_from(&peer_id), &mut out);
    let answers = pump(later, &mut victim, &mut again, addr(5), out);
    assert!(!answers.is_empty(), "forgiven: the reconciliation is answered");
}

#[test]
fn spoofed_source_garbage_does_not_ban_the_honest_node() {
    let now = t0();
    let key = ClusterKey::new([9; 32]);
    let sec = SecureConfig::new(Identity::from_secret([3; 32]), Keyring::new(key.clone()), WALL, [3; 32]);
    let mut victim = Gossip::new(Config::default(), sec, "victim".into(), addr(3), 1, now);
    let honest_id = Identity::from_secret([5; 32]);
    let mut honest = SecureLayer::new(SecureConfig::new(honest_id.clone(), Keyring::new(key), WALL, [5; 32]), now);
    let mut out = Vec::new();
    honest.send(now, addr(3), None, &reconcile_from(&honest_id), &mut out);
    assert!(!pump(now, &mut victim, &mut honest, addr(5), out).is_empty());

    // Garbage "from" the honest node's address: every packet type, random bytes.
    let mut rng = gossip_core::rng::Rng::from_seed(1);
    for i in 0..2000u32 {
        let len = 1 + (i as usize * 7) % 1200;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        bytes[0] = 0x21 + (i % 8) as u8;
        victim.handle_datagram(now, addr(5), &bytes);
    }
    assert!(victim.poll_transmit().is_none(), "garbage is never answered");
    assert!(!victim.secure().is_banned(now, &honest_id.public()));
    // The honest node's session still works.
    let mut out = Vec::new();
    honest.send(now, addr(3), None, &reconcile_from(&honest_id), &mut out);
    assert!(!pump(now, &mut victim, &mut honest, addr(5), out).is_empty());
}

#[test]
fn an_inflated_version_bound_cannot_freeze_an_owner() {
    // A member relays the owner's genuine node info with no entries and to_version = u64::MAX:
    // the unsigned bound must not become the replica's high-water mark.
    let owner = Identity::from_secret([1; 32]);
    let mut t = Table::new();
    let first = Entry::signed(&owner, 1, "svc/web", 1, svc(80));
    assert!(matches!(t.apply(&owner_delta(&owner, vec![first])), Applied::Changed { .. }));
    let mut inflated = owner_delta(&owner, vec![]);
    inflated.from_version = 0;
    inflated.to_version = u64::MAX;
    let _ = t.apply(&inflated);
    assert_eq!(t.get(&owner.node_id()).unwrap().max_version, 1);
    // The owner's next real change still applies.
    let mut next = owner_delta(&owner, vec![Entry::signed(&owner, 1, "svc/web", 2, svc(81))]);
    next.from_version = 1;
    assert!(matches!(t.apply(&next), Applied::Changed { .. }));
    assert_eq!(t.get(&owner.node_id()).unwrap().max_version, 2);
}

/// Known answers for both range-fingerprint rules (docs/PROTOCOL.md 3.1), computed from the
/// document's definitions with Python's `hashlib.blake2s`, so that a second implementation and
/// this one agree, and the rule of protocols 5 and 6 stays what builds before 7 compute.
#[test]
fn range_fingerprints_match_the_documented_rules() {
    use gossip_core::NodeId;
    use gossip_core::message::Summary;
    use gossip_core::state::{item_hash, range_fingerprint};
    use gossip_core::sums::{Agg, item_sum};
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let ss = [
        Summary { id: NodeId([1; 16]), generation: 2, version: 3, digest: [4; 16] },
        Summary { id: NodeId([0xff; 16]), generation: u64::MAX, version: 7, digest: [0xee; 16] },
    ];
    let hashes: Vec<_> = ss.iter().map(item_hash).collect();
    let (n, fp) = range_fingerprint(&hashes);
    assert_eq!((n, hex(&fp)), (2, "848256a65c1929b16930c1e60a05ca1a".to_string()), "protocol 5-6 rule");
    let agg = ss.iter().fold(Agg::default(), |a, s| a + Agg::one(item_sum(s)));
    let (n, fp) = agg.fingerprint();
    assert_eq!((n, hex(&fp)), (2, "5cadc9cbe1f088a6e2c41aa9f7d575a0".to_string()), "protocol 7 rule");
    assert_eq!(hex(&Agg::default().fingerprint().1), "68bed8602c413144a8ab15daff53c659", "empty range, protocol 7");
    assert_eq!(Scheme::at(5), Scheme::Concat);
    assert_eq!(Scheme::at(6), Scheme::Concat, "sessions with builds before protocol 7");
    assert_eq!(Scheme::at(7), Scheme::Sum);
}

/// An exchange opened before its handshake is encoded at this node's highest version, and
/// transcoded if the session settles on another. Its fingerprint was computed by the rule of
/// the version it was encoded at: moved to a version of the other rule, it would never match,
/// and the receiver would split identical tables into 16 ranges for nothing (found in review:
/// 16 ranges answered). It is dropped instead; a Reconcile without fingerprints still moves.
#[test]
fn an_opening_is_not_transcoded_across_the_fingerprint_rules() {
    use gossip_core::message::{Bound, Range, RangeBody, transcode};
    use gossip_core::{NodeId, reconcile};
    let mut t = Table::new();
    for i in 0..40u8 {
        let owner = Identity::from_secret([i + 1; 32]);
        let e = Entry::signed(&owner, 1, "svc/a", 1, svc(80 + u16::from(i)));
        assert!(matches!(t.apply(&owner_delta(&owner, vec![e])), Applied::Changed { .. }));
    }
    let open = |scheme| Message::Reconcile {
        sender: NodeId::MIN,
        initial: true,
        ranges: vec![reconcile::opening(&t, scheme)],
    };
    // By the right rule, identical tables answer nothing.
    for v in [6, 7] {
        let m = open(Scheme::at(v));
        let Message::Reconcile { ranges, .. } = &m else { unreachable!() };
        assert!(reconcile::process(&t, ranges, Scheme::at(v)).ranges.is_empty(), "at {v}");
    }
    // Queued at 7, the session speaks 6 (or the reverse): not moved.
    assert_eq!(transcode(&open(Scheme::at(7)).encode_for(7), 7, 6), None);
    assert_eq!(transcode(&open(Scheme::at(6)).encode_for(6), 6, 7), None);
    assert!(transcode(&open(Scheme::at(5)).encode_for(5), 5, 6).is_some(), "5 and 6 share the rule");
    // Items carry no fingerprint: they mean the same at any version.
    let s = t.range(&NodeId::MIN, &Bound::Inf).next().map(|n| n.summary()).expect("an owner");
    let items = Message::Reconcile {
        sender: NodeId::MIN,
        initial: false,
        ranges: vec![Range { lo: NodeId::MIN, hi: Bound::Inf, body: RangeBody::Items(vec![s]) }],
    };
    assert_eq!(
        transcode(&items.encode_for(7), 7, 6).and_then(|b| Message::decode_for(6, &b).ok()),
        Some(items),
        "items move"
    );
}
