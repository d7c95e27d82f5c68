//! Virtual-time cluster tests of the state machine: several `Gossip` nodes exchange encoded
//! datagrams through an in-memory network (1 ms latency, optional loss), stepping to whichever
//! event is due next.

mod common;

use std::time::Duration;

use common::{Net, addr, svc};
use gossip_core::secure::keys::{ClusterKey, Keyring};
use gossip_core::{Config, Gossip};

#[test]
fn nodes_join_through_one_seed_and_converge() {
    let mut net = Net::cold(30, 1, 0.0);
    let t = net.start + Duration::from_secs(20);
    net.run_until(t);
    assert!(net.converged(), "30 nodes did not converge in 20 s");
    for g in &net.nodes {
        assert_eq!(g.nodes().count(), 30);
        assert_eq!(g.live_peers(), 29);
    }
}

#[test]
fn a_registration_spreads_by_rumor_within_a_fraction_of_a_round() {
    let mut net = Net::cold(30, 2, 0.0);
    net.run_until(net.start + Duration::from_secs(20));
    assert!(net.converged());
    let now = net.now;
    net.nodes[5].register(now, svc("web-1", "web")).unwrap();
    net.flush(5);
    net.run_until(now + Duration::from_millis(300));
    let reached = (0..30).filter(|&i| net.knows_service(i, "web")).count();
    // Rumors reach most nodes in a few milliseconds; anti-entropy repairs the rest.
    assert!(reached >= 25, "rumor reached only {reached} of 30");
    net.run_until(now + Duration::from_secs(5));
    assert!((0..30).all(|i| net.knows_service(i, "web")));
    assert!(net.converged());
}

#[test]
fn deregistration_and_leave_spread() {
    let mut net = Net::cold(10, 3, 0.0);
    net.run_until(net.start + Duration::from_secs(15));
    let now = net.now;
    net.nodes[3].register(now, svc("db", "db")).unwrap();
    net.flush(3);
    net.run_until(now + Duration::from_secs(3));
    assert!((0..10).all(|i| net.knows_service(i, "db")));
    let now = net.now;
    assert!(net.nodes[3].deregister(now, "db").unwrap());
    net.flush(3);
    net.run_until(now + Duration::from_secs(3));
    assert!((0..10).all(|i| !net.knows_service(i, "db")));
    let now = net.now;
    net.nodes[7].leave(now);
    net.flush(7);
    net.run_until(now + Duration::from_secs(3));
    for i in (0..10).filter(|&i| i != 7) {
        assert_eq!(net.nodes[i].live_peers(), 8, "node {i} still counts the leaver");
    }
}

#[test]
fn converges_under_loss() {
    let mut net = Net::cold(20, 4, 0.2);
    net.run_until(net.start + Duration::from_secs(30));
    let now = net.now;
    for i in 0..20 {
        net.nodes[i].register(now, svc(&format!("s{i}"), "many")).unwrap();
        net.flush(i);
    }
    net.run_until(now + Duration::from_secs(30));
    // Every registration reached every node despite the loss...
    for i in 0..20 {
        let n = net.nodes[i].nodes().flat_map(gossip_core::services_of).filter(|s| s.name == "many").count();
        assert_eq!(n, 20, "node {i} holds {n} of 20 registrations after 30 s at 20% loss");
    }
    // ...and, since false suspicions at this loss keep producing refutations (fresh versions),
    // the replicas agree exactly once the loss stops.
    net.loss = 0.0;
    let now = net.now;
    net.run_until(now + Duration::from_secs(10));
    assert!(net.converged(), "replicas differ 10 s after the loss stopped");
}

#[test]
fn large_catalog_is_split_into_datagrams_and_converges() {
    let mut net = Net::cold(5, 5, 0.0);
    net.run_until(net.start + Duration::from_secs(10));
    let now = net.now;
    for k in 0..300 {
        let mut s = svc(&format!("inst-{k}"), "bulk");
        s.tags = vec!["a-fairly-long-tag-value".into(); 4];
        net.nodes[1].register(now, s).unwrap();
    }
    net.flush(1);
    net.run_until(now + Duration::from_secs(20));
    assert!(net.converged());
    for g in &net.nodes {
        let n = g.nodes().flat_map(gossip_core::services_of).filter(|s| s.name == "bulk").count();
        assert_eq!(n, 300);
    }
}

#[test]
fn restart_with_higher_generation_supersedes() {
    let mut net = Net::cold(5, 6, 0.0);
    net.run_until(net.start + Duration::from_secs(10));
    let now = net.now;
    net.nodes[2].register(now, svc("old", "old")).unwrap();
    net.flush(2);
    net.run_until(now + Duration::from_secs(3));
    assert!((0..5).all(|i| net.knows_service(i, "old")));
    // Restart node 2 with the same identity, a higher generation, and a different registration.
    let generation = net.nodes[2].local().generation + 1;
    let cfg = Config { seeds: vec![addr(0)], rng_seed: 99, ..Config::default() };
    let now = net.now;
    let sec = net.secure_now(net.identity_seed(2), 12345);
    net.nodes[2] = Gossip::new(cfg, sec, "node-2".into(), addr(2), generation, now);
    net.nodes[2].register(now, svc("new", "new")).unwrap();
    net.flush(2);
    net.run_until(now + Duration::from_secs(10));
    assert!(net.converged());
    assert!((0..5).all(|i| net.knows_service(i, "new") && !net.knows_service(i, "old")));
}

#[test]
fn idle_cost_is_small() {
    let mut net = Net::cold(30, 7, 0.0);
    net.run_until(net.start + Duration::from_secs(20));
    let before: u64 = net.nodes.iter().map(|g| g.stats().bytes_out).sum();
    let now = net.now;
    net.run_until(now + Duration::from_secs(60));
    let after: u64 = net.nodes.iter().map(|g| g.stats().bytes_out).sum();
    let per_node_per_sec = (after - before) as f64 / 30.0 / 60.0;
    // One fingerprint out and one acknowledgement back per round over warm sessions, plus a
    // handshake now and then as the active view rotates: well under Serf's ~340 B/s.
    println!("idle cost {per_node_per_sec:.1} B/s per node");
    assert!(per_node_per_sec < 250.0, "idle cost {per_node_per_sec} B/s per node");
}

#[test]
fn a_keyring_change_spreads_and_the_old_key_then_stops_working() {
    let mut net = Net::cold(6, 8, 0.0);
    net.run_until(net.start + Duration::from_secs(15));
    assert!(net.converged());
    let (old, new) = ([42u8; 32], [43u8; 32]);
    // Install the new key as primary, keeping the old one accepted.
    let now = net.now;
    net.nodes[2].change_keyring(now, vec![new, old]).unwrap();
    net.flush(2);
    net.run_until(now + Duration::from_secs(5));
    let stamp = net.nodes[2].keyring_stamp();
    for g in &net.nodes {
        assert_eq!(g.keyring_stamp(), stamp, "every node adopted the new keyring");
        assert_eq!(g.secure().keyring().keys().len(), 2);
    }
    // Registrations keep converging under the new key.
    let now = net.now;
    net.nodes[4].register(now, svc("after", "after")).unwrap();
    net.flush(4);
    net.run_until(now + Duration::from_secs(5));
    assert!((0..6).all(|i| net.knows_service(i, "after")));
    // Remove the old key everywhere (from another node).
    let now = net.now;
    net.nodes[5].change_keyring(now, vec![new]).unwrap();
    net.flush(5);
    net.run_until(now + Duration::from_secs(5));
    for g in &net.nodes {
        assert_eq!(g.secure().keyring().keys().len(), 1);
    }
    // A node that only knows the old key gets nothing back from anyone.
    let now = net.now;
    let cfg = Config { seeds: vec![addr(0)], rng_seed: 1, ..Config::default() };
    let mut sec = net.secure_now(77, 77);
    sec.keyring = Keyring::new(ClusterKey::new(old));
    net.add(Gossip::new(cfg, sec, "stale".into(), addr(6), 1, now));
    net.run_until(now + Duration::from_secs(10));
    assert_eq!(net.nodes[6].live_peers(), 0, "the old key must no longer admit anyone");
    assert_eq!(net.nodes[6].stats().datagrams_in, 0, "zero reply bytes to the old key");
}
