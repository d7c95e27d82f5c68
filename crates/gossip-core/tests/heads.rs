//! Signed heads (issue #12 item 1; docs/PROTOCOL.md sections 1, 3.2 and 4.7): with each version
//! the owner signs its digest, so that a replica can tell by itself whether its copy is exactly
//! what the owner published. A newcomer that joins only through a relay that withheld entries
//! (or the head) knows its copy is incomplete, says so, and repairs it from another peer; a
//! forged head is refused and its relay banned; large owners still converge, verified.

mod common;

use std::hash::Hasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Net, addr, svc};
use gossip_core::chunk::split_delta;
use gossip_core::message::{Delta, Entry, Head, Message, Value};
use gossip_core::secure::keys::Identity;
use gossip_core::secure::{Outgoing, SecureLayer};
use gossip_core::session::MAX_PAYLOAD;
use gossip_core::state::{Applied, Table};
use gossip_core::{Config, Event, Gossip, NodeId, NodeInfo};

/// The protocol-2 entry hash (SipHash-1-3, zero key, over the signature); its XOR over the
/// entries was the owner digest.
fn old_entry_hash(e: &Entry) -> u64 {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    h.write(&e.sig);
    h.finish()
}

/// Indexes of `others` whose hashes XOR to `target` (Gaussian elimination over GF(2)).
fn cancelling_subset(target: u64, others: &[u64]) -> Option<Vec<usize>> {
    let mut basis: Vec<Option<(u64, Vec<bool>)>> = vec![None; 64];
    for (i, &h) in others.iter().enumerate() {
        let (mut v, mut mask) = (h, vec![false; others.len()]);
        mask[i] = true;
        for bit in (0..64).rev() {
            if v >> bit & 1 == 0 {
                continue;
            }
            match &basis[bit] {
                Some((b, m)) => {
                    v ^= b;
                    mask.iter_mut().zip(m).for_each(|(x, y)| *x ^= y);
                }
                None => {
                    basis[bit] = Some((v, mask));
                    break;
                }
            }
        }
    }
    let (mut v, mut mask) = (target, vec![false; others.len()]);
    for bit in (0..64).rev() {
        if v >> bit & 1 == 1 {
            let (b, m) = basis[bit].as_ref()?;
            v ^= b;
            mask.iter_mut().zip(m).for_each(|(x, y)| *x ^= y);
        }
    }
    (v == 0).then(|| mask.iter().enumerate().filter(|(_, x)| **x).map(|(i, _)| i).collect())
}

/// What the rogue relay withholds.
#[derive(Debug, Clone, Copy)]
enum Withhold {
    /// `db-1` alone.
    One,
    /// `db-1` and entries whose protocol-2 hashes cancel it (the XOR-zero set).
    XorZero,
}

/// Five converged nodes; node 1 owns `db-1` and 90 other services; node 2 is a rogue relay
/// holding a doctored copy of node 1 (with the owner's head for the version, or without), cut
/// from every honest node; node 5 joins through node 2 only. Returns the net, the newcomer's
/// index and the number of entries withheld.
fn newcomer_behind_a_rogue(seed: u64, withhold: Withhold, keep_head: bool) -> (Net, usize, usize) {
    let mut net = Net::warm(5, seed, 0.0, |_| {});
    let now = net.now;
    net.nodes[1].register(now, svc("db-1", "db-1")).unwrap();
    for k in 0..90 {
        net.nodes[1].register(now, svc(&format!("web-{k}"), &format!("web-{k}"))).unwrap();
    }
    net.flush(1);
    net.run_for(Duration::from_secs(10));
    assert!(net.converged() && (0..5).all(|i| net.knows_service(i, "db-1")), "SEED={seed}");
    let owner = net.nodes[1].local().id;
    for i in 0..5 {
        assert!(net.nodes[i].node(&owner).unwrap().verified(), "node {i}: an honest copy does not verify");
    }

    let state = net.nodes[2].node(&owner).unwrap().clone();
    let newest = state.max_version;
    let db = state.entries.get("svc/db-1").unwrap().clone();
    let mut withheld = vec![db.key.clone()];
    if let Withhold::XorZero = withhold {
        let others: Vec<&Entry> = state
            .entries
            .values()
            .map(|e| &**e)
            .filter(|e| e.key.starts_with("svc/web-") && e.version != newest)
            .collect();
        let hashes: Vec<u64> = others.iter().map(|e| old_entry_hash(e)).collect();
        let cancel = cancelling_subset(old_entry_hash(&db), &hashes).expect("90 random hashes span GF(2)^64");
        withheld.extend(cancel.iter().map(|&i| others[i].key.clone()));
        let xor = withheld.iter().fold(0, |x, k| x ^ old_entry_hash(&state.entries[k]));
        assert_eq!(xor, 0, "the withheld entries cancel in the old digest");
    }
    let mut kept: Vec<Entry> =
        state.entries.values().map(|e| &**e).filter(|e| !withheld.contains(&e.key)).cloned().collect();
    kept.sort_by_key(|e| e.version);
    let head = if keep_head { state.current_head().copied() } else { None };
    assert!(!keep_head || head.is_some());
    let doctored = Delta { ttl: 0, node: state.info.clone(), from_version: 0, to_version: newest, entries: kept, head };
    let mut t = Table::new();
    assert!(matches!(t.apply(&doctored), Applied::Changed { .. }));
    let doctored = t.get(&owner).unwrap().clone();
    assert_eq!(doctored.max_version, newest, "the doctored copy claims the owner's version");
    assert!(!doctored.verified());
    net.nodes[2].adopt_owner_state(&Arc::new(doctored));
    for i in [0, 1, 3, 4] {
        net.cut(2, i);
    }

    // The newcomer reaches the rogue only.
    let newcomer = net.nodes.len();
    for i in [0, 1, 3, 4] {
        net.cut(newcomer, i);
    }
    let cfg = Config { seeds: vec![addr(2)], rng_seed: 77, ..Config::default() };
    let sec = net.secure_now(net.identity_seed(5), 5);
    let now = net.now;
    assert_eq!(net.add(Gossip::new(cfg, sec, "node-5".into(), addr(5), 1, now)), newcomer);
    (net, newcomer, withheld.len())
}

fn incomplete_then_repaired(seed: u64, withhold: Withhold, keep_head: bool) {
    let what = format!("{withhold:?}, head {}; SEED={seed}", if keep_head { "kept" } else { "stripped" });
    let (mut net, newcomer, withheld) = newcomer_behind_a_rogue(seed, withhold, keep_head);
    let owner = net.nodes[1].local().id;
    net.run_for(Duration::from_secs(3));
    let g = &net.nodes[newcomer];
    let copy = g.node(&owner).expect("joined through the rogue");
    assert_eq!(copy.max_version, net.nodes[1].node(&owner).unwrap().max_version, "{what}");
    assert!(!net.knows_service(newcomer, "db-1"), "the newcomer holds the doctored copy ({what})");

    // Alone with the rogue, the newcomer knows its copy of the owner is incomplete, and only it:
    // the rogue relayed every other owner faithfully, heads included.
    assert!(!copy.verified(), "{what}");
    assert_eq!(g.incomplete(net.now), vec![owner], "{what}");
    assert_eq!(g.stats().incomplete_states, 1, "counted once ({what})");
    assert!(g.stats().incomplete_pulls >= 2, "it keeps trying other peers, once a round ({what})");
    for n in g.nodes().filter(|n| n.info.id != owner && n.info.id != g.local().id) {
        assert!(n.verified(), "the copy of {} does not verify ({what})", n.info.name);
    }
    for i in 0..5 {
        assert_eq!(net.nodes[i].stats().incomplete_states, 0, "node {i}: an honest copy counted ({what})");
    }

    // An honest replica becomes reachable: repaired within a few rounds, and verified.
    for i in [0, 1, 3, 4] {
        net.blocked.remove(&(newcomer, i));
        net.blocked.remove(&(i, newcomer));
    }
    let mut repaired = None;
    for round in 1..=5 {
        net.run_for(Duration::from_secs(1));
        if net.nodes[newcomer].node(&owner).is_some_and(|n| n.verified()) {
            repaired = Some(round);
            break;
        }
    }
    println!("{what}: withheld {withheld} entries; repaired after {repaired:?} rounds");
    assert!(repaired.is_some(), "never repaired ({what})");
    let g = &net.nodes[newcomer];
    assert!(net.knows_service(newcomer, "db-1"), "{what}");
    assert_eq!(g.node(&owner).unwrap().entries.len(), net.nodes[1].node(&owner).unwrap().entries.len());
    assert!(g.incomplete(net.now).is_empty(), "{what}");
    // (The "rogue" here runs this build over a doctored table: once honest peers answer it, it
    // may repair its own copy too, so its state is not asserted.)
}

#[test]
fn a_newcomer_behind_a_relay_withholding_one_entry_and_the_head_knows_and_repairs() {
    incomplete_then_repaired(41, Withhold::One, false);
}

#[test]
fn a_newcomer_behind_a_relay_withholding_one_entry_but_keeping_the_head_knows_and_repairs() {
    incomplete_then_repaired(42, Withhold::One, true);
}

#[test]
fn a_newcomer_behind_a_relay_withholding_an_xor_zero_set_knows_and_repairs() {
    incomplete_then_repaired(43, Withhold::XorZero, false);
    incomplete_then_repaired(44, Withhold::XorZero, true);
}

fn identity(seed: u8) -> Identity {
    Identity::from_secret([seed; 32])
}

fn owner_history(owner: &Identity, n: u64, pad: usize) -> (NodeInfo, Vec<Entry>) {
    let info = NodeInfo::signed(owner, "owner".into(), SocketAddr::from(([127, 0, 0, 9], 7946)), 5);
    let entries = (1..=n)
        .map(|v| {
            let mut s = svc(&format!("web-{v}"), "web");
            s.tags = vec!["x".repeat(pad)];
            Entry::signed(owner, 5, &format!("svc/web-{v}"), v, Value::Service(s.into()))
        })
        .collect();
    (info, entries)
}

fn head_of(owner: &Identity, version: u64, entries: &[Entry]) -> Head {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    Head::signed(owner, 5, version, gossip_core::state::owner_digest(sorted))
}

#[test]
fn a_forged_head_is_refused_and_a_head_beyond_its_entries_is_not_taken() {
    let owner = identity(7);
    let (info, entries) = owner_history(&owner, 3, 0);
    let head = head_of(&owner, 3, &entries);
    let delta =
        |head| Delta { ttl: 0, node: info.clone(), from_version: 0, to_version: 3, entries: entries.clone(), head };

    let mut t = Table::new();
    let mut forged = head;
    forged.sig[0] ^= 1;
    assert_eq!(t.apply(&delta(Some(forged))), Applied::Forged);
    assert!(t.get(&owner.node_id()).is_none(), "nothing of a delta with a forged head is applied");
    // A head signed for another version, or over another digest, is as forged.
    let other_version = head_of(&owner, 2, &entries);
    assert_eq!(t.apply(&delta(Some(other_version))), Applied::Forged);

    // A head for a version beyond the entries it came with is not taken (nor checked).
    let beyond = head_of(&owner, 5, &entries);
    let d = Delta { to_version: 5, head: Some(beyond), ..delta(None) };
    assert!(matches!(t.apply(&d), Applied::Changed { .. }));
    let held = t.get(&owner.node_id()).unwrap();
    assert_eq!((held.max_version, held.head.is_none(), held.verified()), (3, true, false));

    // The genuine head, sent again with entries already held, is taken: the copy verifies.
    assert_eq!(t.apply(&delta(Some(head))), Applied::Head);
    assert!(t.get(&owner.node_id()).unwrap().verified());
    // A forged one for the same version teaches nothing, so it costs no verification.
    assert_eq!(t.apply(&delta(Some(forged))), Applied::Stale);
}

/// Opens a session from a raw (compromised-member) secure layer to node `i` and sends it
/// `payload`; what node `i` sends elsewhere meanwhile is lost.
fn deliver(net: &mut Net, i: usize, rogue: &mut SecureLayer, from: SocketAddr, payload: &[u8]) {
    let now = net.now;
    let mut out: Vec<Outgoing> = Vec::new();
    rogue.send(now, addr(i), None, payload, &mut out);
    for _ in 0..10 {
        for o in std::mem::take(&mut out) {
            net.nodes[i].handle_datagram(now, from, &o.bytes);
        }
        while let Some(t) = net.nodes[i].poll_transmit() {
            if t.dst == from {
                let _ = rogue.recv(now, addr(i), &t.payload, &mut out);
            }
        }
    }
    net.flush(i);
}

#[test]
fn a_relay_of_a_forged_head_is_banned_as_a_forger() {
    let mut net = Net::cold(3, 0x4ead, 0.0);
    net.run_for(Duration::from_secs(10));
    let owner = identity(9);
    let (info, entries) = owner_history(&owner, 4, 0);
    let mut head = head_of(&owner, 4, &entries);
    head.sig[10] ^= 0x80;
    let rogue_addr = SocketAddr::from(([127, 9, 9, 6], 7946));
    let mut rogue = SecureLayer::new(net.secure_now(616_161, 3), net.now);
    let rogue_id = rogue.identity_key().clone();
    let delta = Delta { ttl: 2, node: info, from_version: 0, to_version: 4, entries, head: Some(head) };
    let msg = Message::Delta { sender: rogue_id.node_id(), delta };
    deliver(&mut net, 0, &mut rogue, rogue_addr, &msg.encode());
    assert!(net.nodes[0].node(&owner.node_id()).is_none(), "the entries of a delta with a forged head were applied");
    assert_eq!(net.nodes[0].stats().forged_records, 1);
    assert!(net.nodes[0].secure().is_banned(net.now, &rogue_id.public()), "the relay of a forged head is not banned");
    assert!(
        net.events
            .iter()
            .any(|(i, e, _)| *i == 0 && matches!(e, Event::Banned { identity, .. } if *identity == rogue_id.public()))
    );
}

#[test]
fn split_deltas_carry_the_head_in_their_last_chunk_only_and_apply_verified() {
    let owner = identity(11);
    let mut own_chunk = 0;
    for pad in [0usize, 7, 40, 90, 200, 400, 700] {
        for n in [1u64, 5, 17, 60] {
            let (info, entries) = owner_history(&owner, n, pad);
            let head = head_of(&owner, n, &entries);
            let refs: Vec<&Entry> = entries.iter().collect();
            let chunks = split_delta(&info, 0, n, &refs, 0, MAX_PAYLOAD, Some(&head));
            let mut t = Table::new();
            for (k, c) in chunks.iter().enumerate() {
                let len = Message::Delta { sender: NodeId::MIN, delta: c.clone() }.encode().len();
                assert!(len <= MAX_PAYLOAD, "chunk {k} of {len} bytes (pad {pad}, n {n})");
                assert_eq!(c.head.is_some(), k == chunks.len() - 1, "pad {pad}, n {n}, chunk {k}");
                assert!(!matches!(t.apply(c), Applied::Forged | Applied::Gap(_)), "pad {pad}, n {n}, chunk {k}");
            }
            own_chunk += usize::from(chunks.last().is_some_and(|c| c.entries.is_empty()));
            let held = t.get(&owner.node_id()).unwrap();
            assert!(
                held.verified(),
                "pad {pad}, n {n}: {} chunks; held {:?} at {}; entries {}",
                chunks.len(),
                held.head.map(|h| h.0),
                held.max_version,
                held.entries.len()
            );
        }
    }
    assert!(own_chunk > 0, "some full last chunk sent the head in a chunk of its own");
}

#[test]
fn a_large_owner_reaches_a_newcomer_in_split_deltas_verified() {
    let seed = 0x1a26e;
    let mut net = Net::cold(4, seed, 0.0);
    net.run_for(Duration::from_secs(5));
    let now = net.now;
    for k in 0..300 {
        let mut s = svc(&format!("api-{k}"), "api");
        s.tags = vec![format!("zone-{}", k % 7), "v2".into()];
        net.nodes[1].register(now, s).unwrap();
    }
    net.flush(1);
    net.run_for(Duration::from_secs(10));
    let owner = net.nodes[1].local().id;
    let state = net.nodes[1].node(&owner).unwrap().clone();
    let mut entries: Vec<&Entry> = state.entries.values().map(|e| &**e).collect();
    entries.sort_by_key(|e| e.version);
    let chunks = split_delta(&state.info, 0, state.max_version, &entries, 0, MAX_PAYLOAD, state.current_head());
    assert!(chunks.len() >= 20, "{} chunks", chunks.len());

    let cfg = Config { seeds: vec![addr(0)], rng_seed: 5, ..Config::default() };
    let sec = net.secure_now(net.identity_seed(4), 4);
    let newcomer = net.add(Gossip::new(cfg, sec, "node-4".into(), addr(4), 1, net.now));
    net.flush(newcomer);
    net.run_for(Duration::from_secs(10));
    assert!(net.converged(), "SEED={seed}");
    for i in net.live() {
        let g = &net.nodes[i];
        for n in g.nodes() {
            assert!(n.verified(), "node {i}: its copy of {} does not verify; SEED={seed}", n.info.name);
        }
        assert_eq!(g.stats().incomplete_states, 0, "node {i} counted an honest copy incomplete; SEED={seed}");
        assert!(g.incomplete(net.now).is_empty());
    }
    assert_eq!(net.nodes[newcomer].node(&owner).unwrap().entries.len(), state.entries.len());
}

#[test]
fn a_head_costs_80_bytes_beside_its_tag() {
    // A rumor of one typical change, with and without the head: the tag byte is always there.
    let owner = identity(13);
    let (info, entries) = owner_history(&owner, 2, 12);
    let head = head_of(&owner, 2, &entries);
    let rumor = |head| Delta {
        ttl: 6,
        node: info.clone(),
        from_version: 1,
        to_version: 2,
        entries: entries[1..].to_vec(),
        head,
    };
    let len = |d: Delta| Message::Delta { sender: NodeId::MIN, delta: d }.encode().len();
    let (with, without) = (len(rumor(Some(head))), len(rumor(None)));
    println!("one-entry rumor: {without} bytes without the head, {with} with it");
    assert_eq!(with - without, gossip_core::message::HEAD_LEN);
    assert_eq!(gossip_core::message::HEAD_LEN, 80);
}
