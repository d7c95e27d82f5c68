//! Proof of misbehaviour and exclusion by majority, on the virtual-time network: an identity
//! running twice (a cloned disk) equivocates, is proven, and excluded by every honest node; a
//! member that sends malformed payloads is accused by each node it bans and excluded only once
//! the accusers are a majority, then readmitted when the bans end; a bogus proof convinces no one.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Net, addr};
use gossip_core::message::{Delta, Entry, Message, NodeStatus, STATUS_KEY, Value};
use gossip_core::proof::{Accusation, Charge, Claim, Proof};
use gossip_core::secure::keys::Identity;
use gossip_core::secure::{Outgoing, SecureLayer};
use gossip_core::{Config, Event, Gossip, Liveness, NodeId, NodeInfo, ServiceInstance};

fn web(port: u16) -> ServiceInstance {
    ServiceInstance { id: "web".into(), name: "web".into(), port, ..Default::default() }
}

fn excluded_by(net: &Net, i: usize, id: &NodeId) -> bool {
    net.nodes[i].liveness(id) == Liveness::Excluded
}

#[test]
fn an_identity_running_twice_is_proven_and_excluded_by_every_honest_node() {
    let seed = 0xacc05e;
    let mut net = Net::cold(6, seed, 0.0);
    net.run_for(Duration::from_secs(10));
    assert!(net.converged());

    // The same identity (a restored disk image) runs twice, at two addresses, in the same
    // generation: each copy signs its own history.
    let twin_seed = 777_777;
    let twin = Identity::from_secret({
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&u64::to_be_bytes(twin_seed));
        s
    })
    .node_id();
    for (k, port) in [(0u64, 8080u16), (1, 9090)] {
        let cfg = Config { seeds: vec![addr(k as usize)], rng_seed: 100 + k, ..Config::default() };
        let sec = net.secure_now(twin_seed, 200 + k);
        let mut g = Gossip::new(cfg, sec, "twin".into(), addr(6 + k as usize), 7, net.now);
        g.register(net.now, web(port)).unwrap();
        net.add(g);
    }
    net.run_for(Duration::from_secs(30));

    for i in 0..6 {
        assert!(excluded_by(&net, i, &twin), "honest node {i} does not exclude the twin");
        let proven = net.nodes[i].exclusions().any(|(id, reason)| *id == twin && reason.contains("proof"));
        assert!(proven, "node {i} excluded the twin without the proof");
    }
    let detected =
        net.events.iter().filter(|(_, e, _)| matches!(e, Event::Equivocation { owner, .. } if *owner == twin));
    assert!(detected.count() >= 1, "someone found the two histories");
    let excluded_events: Vec<usize> = net
        .events
        .iter()
        .filter_map(|(i, e, _)| matches!(e, Event::Excluded { node, .. } if *node == twin).then_some(*i))
        .collect();
    assert!((0..6).all(|i| excluded_events.contains(&i)), "every honest node reported the exclusion");
    // Every honest node endorsed the proof: the accusation travels with each accuser's state.
    for i in 0..6 {
        assert!(net.nodes[i].stats().accusations_written >= 1, "node {i} did not accuse");
    }
    // What the twins still send is dropped after authentication.
    let dropped: u64 = (0..6).map(|i| net.nodes[i].stats().dropped_excluded).sum();
    assert!(dropped > 0, "nothing from the excluded twins was dropped");
    // Honest nodes stay members of each other's clusters.
    for i in 0..6 {
        for j in 0..6 {
            let id = net.nodes[j].local().id;
            assert_eq!(net.nodes[i].liveness(&id), Liveness::Alive, "node {i} sees node {j} as not alive");
        }
    }
}

/// Opens a session from a raw (compromised-member) secure layer to node `i` and sends it
/// `payload`; datagrams node `i` sends elsewhere meanwhile are lost (as on a lossy network).
fn deliver(net: &mut Net, i: usize, attacker: &mut SecureLayer, from: SocketAddr, payload: &[u8]) {
    let now = net.now;
    let mut out: Vec<Outgoing> = Vec::new();
    attacker.send(now, addr(i), None, payload, &mut out);
    for _ in 0..10 {
        for o in std::mem::take(&mut out) {
            net.nodes[i].handle_datagram(now, from, &o.bytes);
        }
        while let Some(t) = net.nodes[i].poll_transmit() {
            if t.dst == from {
                let _ = attacker.recv(now, addr(i), &t.payload, &mut out);
            }
        }
    }
    net.flush(i);
}

#[test]
fn a_member_is_excluded_only_once_a_majority_accuses_it_and_readmitted_after() {
    let mut net = Net::cold(5, 0xbad, 0.0);
    net.run_for(Duration::from_secs(10));
    assert!(net.converged());
    let attacker_seed = 555_555;
    let attacker_addr = SocketAddr::from(([127, 9, 9, 9], 7946));
    let mut attacker = SecureLayer::new(net.secure_now(attacker_seed, 1), net.now);
    let bad = attacker.identity_key().node_id();

    // Node 0 alone receives garbage: it bans and accuses; one voice of five excludes no one.
    deliver(&mut net, 0, &mut attacker, attacker_addr, b"\x07 not a message");
    assert!(net.nodes[0].secure().is_banned(net.now, &attacker.identity_key().public()));
    net.run_for(Duration::from_secs(5));
    for i in 0..5 {
        assert!(!net.nodes[i].is_excluded(&bad), "node {i} excluded on one accusation of five");
        let holds =
            net.nodes[i].node(&net.nodes[0].local().id).unwrap().entries.contains_key(Accusation::key(&bad).as_str());
        assert!(holds, "node {i} has not heard node 0's accusation");
    }

    // Nodes 1 and 2 too: three of five is a majority, and every node excludes.
    for i in [1, 2] {
        let mut fresh = SecureLayer::new(net.secure_now(attacker_seed, 10 + i as u64), net.now);
        deliver(&mut net, i, &mut fresh, attacker_addr, b"\x07 garbage again");
    }
    net.run_for(Duration::from_secs(5));
    for i in 0..5 {
        assert!(net.nodes[i].is_excluded(&bad), "node {i} does not exclude after three accusations of five");
    }

    // The bans end (60 s), the accusers withdraw, and the member is readmitted everywhere.
    net.run_for(Duration::from_secs(90));
    for i in 0..5 {
        assert!(!net.nodes[i].is_excluded(&bad), "node {i} still excludes after the bans ended");
        assert!(net.events.iter().any(|(j, e, _)| *j == i && *e == Event::Readmitted(bad)), "node {i}: no readmission");
    }
}

#[test]
fn a_bogus_proof_convinces_no_one() {
    let mut net = Net::cold(4, 0xb06, 0.0);
    net.run_for(Duration::from_secs(10));
    let victim = net.nodes[1].local().id;
    let victim_identity = net.nodes[1].secure().identity_key().public();

    // A member (holding the cluster key) publishes, under its own valid signature, an
    // "equivocation proof" against node 1 whose claims node 1 never signed.
    let liar_seed = 424_242;
    let liar_addr = SocketAddr::from(([127, 9, 9, 8], 7946));
    let mut liar = SecureLayer::new(net.secure_now(liar_seed, 3), net.now);
    let id = liar.identity_key().clone();
    let claim = |key: &str| Claim { key: key.into(), version: 2, digest: [7; 32], sig: [9; 64] };
    let bogus = Proof { identity: victim_identity, generation: 1, first: claim("svc/a"), second: claim("svc/b") };
    let accusation = Accusation { accused: victim, charge: Charge::Equivocation(Box::new(bogus)) };
    let entries = vec![
        Entry::signed(&id, 1, STATUS_KEY, 1, Value::Status(NodeStatus::Alive)),
        Entry::signed(&id, 1, &Accusation::key(&victim), 2, Value::Accusation(accusation)),
    ];
    let node = NodeInfo::signed(&id, "liar".into(), liar_addr, 1);
    let delta = Delta { ttl: 3, node, from_version: 0, to_version: 2, entries, head: None };
    let msg = Message::Delta { sender: id.node_id(), delta };
    deliver(&mut net, 0, &mut liar, liar_addr, &msg.encode());
    net.run_for(Duration::from_secs(10));

    for i in 0..4 {
        assert!(net.nodes[i].node(&id.node_id()).is_some(), "node {i} never saw the liar's state");
        assert!(!net.nodes[i].is_excluded(&victim), "node {i} excluded the victim of a bogus proof");
        assert_eq!(net.nodes[i].stats().accusations_written, 0, "node {i} endorsed a bogus proof");
        assert!(net.nodes[i].stats().accusations_refused > 0, "node {i} did not look at the accusation");
    }
}

#[test]
fn a_repeat_offender_is_accused_again_and_the_charge_withdrawn_again() {
    let mut net = Net::cold(3, 0x2e9, 0.0);
    net.run_for(Duration::from_secs(10));
    let attacker_seed = 313_131;
    let attacker_addr = SocketAddr::from(([127, 9, 9, 7], 7946));
    let key = |net: &Net| {
        let me = net.nodes[0].local().id;
        let bad = Identity::from_secret({
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&u64::to_be_bytes(attacker_seed));
            s
        })
        .node_id();
        net.nodes[0].node(&me).unwrap().entries.get(Accusation::key(&bad).as_str()).map(|e| e.value.clone())
    };
    // Banned (60 s), accused, withdrawn when the ban ends; then again (120 s, the ban doubles).
    for (round, ban) in [(0u64, 60), (1, 120)] {
        let mut attacker = SecureLayer::new(net.secure_now(attacker_seed, 20 + round), net.now);
        deliver(&mut net, 0, &mut attacker, attacker_addr, b"\x07 not a message");
        assert!(matches!(key(&net), Some(Value::Accusation(_))), "round {round}: no accusation");
        net.run_for(Duration::from_secs(ban + 5));
        assert_eq!(key(&net), Some(Value::Tombstone), "round {round}: the accusation outlived the ban");
    }
}
