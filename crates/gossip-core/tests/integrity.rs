//! Protocol integrity against a misbehaving member (issue #12): state commitments that a
//! relay cannot cancel, liveness claims bounded by what exists.

mod common;

use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use common::{Net, addr};
use gossip_core::message::{Delta, Entry, Message};
use gossip_core::secure::SecureLayer;
use gossip_core::state::{Applied, Table};
use gossip_core::{Config, Event, Gossip, Liveness, ServiceInstance};

fn svc(id: &str) -> ServiceInstance {
    ServiceInstance { id: id.into(), name: id.into(), port: 80, ..Default::default() }
}

/// The protocol-2 entry hash: SipHash-1-3 with the zero key over the signature. Its XOR over
/// an owner's entries was the owner digest.
fn old_entry_hash(e: &Entry) -> u64 {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    h.write(&e.sig);
    h.finish()
}

/// Indexes of `others` whose old hashes XOR to `target` (Gaussian elimination over GF(2)).
fn cancelling_subset(target: u64, others: &[u64]) -> Option<Vec<usize>> {
    // basis[bit] = (vector with that leading bit, set of indexes XORed into it)
    let mut basis: [Option<(u64, Vec<bool>)>; 64] = std::array::from_fn(|_| None);
    for (i, &h) in others.iter().enumerate() {
        let mut v = h;
        let mut mask = vec![false; others.len()];
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
    let mut v = target;
    let mut mask = vec![false; others.len()];
    for bit in (0..64).rev() {
        if v >> bit & 1 == 1 {
            let (b, m) = basis[bit].as_ref()?;
            v ^= b;
            mask.iter_mut().zip(m).for_each(|(x, y)| *x ^= y);
        }
    }
    (v == 0).then(|| mask.iter().enumerate().filter(|(_, x)| **x).map(|(i, _)| i).collect())
}

#[test]
fn a_relay_withholding_entries_whose_old_digests_cancel_is_repaired() {
    // Nodes 0..5 converge; node 1 (the owner) publishes `db-1` and 90 other services.
    let seed = 21;
    let mut net = Net::warm(5, seed, 0.0, |_| {});
    let now = net.now;
    net.nodes[1].register(now, svc("db-1")).unwrap();
    for k in 0..90 {
        net.nodes[1].register(now, svc(&format!("web-{k}"))).unwrap();
    }
    net.flush(1);
    net.run_for(Duration::from_secs(10));
    assert!(net.converged() && (0..5).all(|i| net.knows_service(i, "db-1")), "SEED={seed}");

    // Node 2 is a rogue relay: it drops `db-1` and the entries whose old hashes XOR to db-1's,
    // so under the protocol-2 XOR digest its replica's summary equals the owner's.
    let owner = net.nodes[1].local().id;
    let state = net.nodes[2].node(&owner).unwrap().clone();
    let newest = state.entries.values().map(|e| &**e).map(|e| e.version).max().unwrap();
    let db = state.entries.get("svc/db-1").unwrap().clone();
    let others: Vec<&Entry> =
        state.entries.values().map(|e| &**e).filter(|e| e.key.starts_with("svc/web-") && e.version != newest).collect();
    let hashes: Vec<u64> = others.iter().map(|e| old_entry_hash(e)).collect();
    let cancel = cancelling_subset(old_entry_hash(&db), &hashes).expect("90 random hashes span GF(2)^64");
    let withheld: Vec<&str> = std::iter::once(&*db.key).chain(cancel.iter().map(|&i| &*others[i].key)).collect();
    let xor = withheld.iter().fold(0, |x, k| x ^ old_entry_hash(&state.entries[*k]));
    assert_eq!(xor, 0, "the withheld entries cancel in the old digest");
    let mut kept: Vec<Entry> =
        state.entries.values().map(|e| &**e).filter(|e| !withheld.contains(&&*e.key)).cloned().collect();
    kept.sort_by_key(|e| e.version);
    let doctored =
        Delta { ttl: 0, node: state.info.clone(), from_version: 0, to_version: newest, entries: kept, head: None };
    let mut t = Table::new();
    assert!(matches!(t.apply(&doctored), Applied::Changed { .. }));
    let doctored = Arc::new(t.get(&owner).unwrap().clone());
    assert_eq!(doctored.max_version, state.max_version, "the doctored replica claims the owner's version");
    net.nodes[2].adopt_owner_state(&doctored);
    // The rogue talks only to the newcomer, so that nobody repairs it.
    for i in [0, 1, 3, 4] {
        net.cut(2, i);
    }

    // A newcomer joins through the rogue relay and learns the doctored history from it.
    let now = net.now;
    let cfg = Config { seeds: vec![addr(2)], rng_seed: 77, ..Config::default() };
    let sec = net.secure_now(net.identity_seed(5), 5);
    let newcomer = net.add(Gossip::new(cfg, sec, "node-5".into(), addr(5), 1, now));
    net.run_for(Duration::from_millis(300));
    let learned = net.nodes[newcomer].node(&owner).expect("joined through the rogue");
    assert_eq!(learned.max_version, state.max_version);
    assert!(!net.knows_service(newcomer, "db-1"), "the newcomer holds the doctored history");

    // Anti-entropy with honest nodes tells the two histories apart and repairs within a few rounds.
    let mut repaired = None;
    for round in 1..=5 {
        net.run_for(Duration::from_secs(1));
        if net.knows_service(newcomer, "db-1") {
            repaired = Some(round);
            break;
        }
    }
    println!("withheld {} entries; newcomer repaired after {repaired:?} rounds", withheld.len());
    let repaired = repaired.unwrap_or_else(|| panic!("the newcomer never learned db-1; SEED={seed}"));
    assert!(repaired <= 5);
    let held = net.nodes[newcomer].node(&owner).unwrap();
    assert_eq!(held.entries.len(), state.entries.len(), "every withheld entry is back");
}

/// A member speaking the secure layer directly (holding the cluster key) at an address outside
/// the network: sends `msgs` to every node each 200 ms step, for `steps` steps, and calls
/// `check` after each step.
fn flood(net: &mut Net, steps: usize, msgs: impl Fn(&Net) -> Vec<Message>, mut check: impl FnMut(&Net)) -> SecureLayer {
    let me = addr(200);
    let mut rogue = SecureLayer::new(net.secure_now(999_999, 9), net.now);
    for _ in 0..steps {
        let now = net.now;
        let mut out = Vec::new();
        for (dst, src, bytes) in std::mem::take(&mut net.outside) {
            if dst == me {
                let _ = rogue.recv(now, src, &bytes, &mut out);
            }
        }
        rogue.handle_timeout(now, &mut out);
        for m in msgs(net) {
            for i in net.live() {
                rogue.send(now, addr(i), None, &m.encode(), &mut out);
            }
        }
        for o in out {
            if let Some(&i) = net.by_addr.get(&o.dst) {
                net.inject(me, i, o.bytes);
            }
        }
        net.run_for(Duration::from_millis(200));
        check(net);
    }
    rogue
}

#[test]
fn a_flood_of_suspicions_naming_states_that_do_not_exist_kills_no_one() {
    // A member sends, every 200 ms to every node, suspicions of node 3 naming the largest
    // generation and version, and its real generation with the largest version: states no
    // replica holds, so that no refutation could ever move past them.
    let seed = 31;
    let mut net = Net::warm(20, seed, 0.0, |_| {});
    net.run_for(Duration::from_secs(5));
    let target = net.nodes[3].local().id;
    let rogue_id = gossip_core::secure::keys::Identity::from_secret({
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&999_999u64.to_be_bytes());
        s
    });
    let generation = net.nodes[3].local().generation;
    let msgs = |_: &Net| {
        [(u64::MAX, u64::MAX), (generation, u64::MAX)]
            .map(|(generation, version)| Message::Suspect {
                sender: rogue_id.node_id(),
                ttl: 3,
                target,
                generation,
                version,
            })
            .to_vec()
    };
    let _rogue = flood(&mut net, 100, msgs, |net| {
        for i in net.live() {
            let l = net.nodes[i].liveness(&target);
            assert!(l == Liveness::Alive || (i != 3 && l == Liveness::Suspect), "node {i} sees the target {l:?}");
            assert!(i == 3 || net.knows_service_owner(i, &target), "node {i} dropped the target; SEED={seed}");
        }
    });
    for i in net.live() {
        assert_eq!(net.nodes[i].liveness(&target), Liveness::Alive, "node {i}; SEED={seed}");
    }
    // The target knows no one holds such a state: the sender lied, and is banned by identity.
    assert!(
        net.events
            .iter()
            .any(|(i, e, _)| *i == 3 && matches!(e, Event::Banned { identity, .. } if *identity == rogue_id.public())),
        "the target bans the liar"
    );
    assert!(net.nodes.iter().map(|g| g.stats().suspicions_beyond_held).sum::<u64>() > 0);
}
