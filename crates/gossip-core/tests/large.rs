//! Large owners, in virtual time with bounded receive queues (a socket's buffer): a burst of
//! thousands of registrations on one owner reaches every agent (one rumor window, the rest pulled
//! paced), and a fresh agent gets the whole catalog, without
//! receive-queue drops and receiving at most 3× the encoded size of what it lacked (answers are
//! paced by `More` and the receiver's next request, not sent whole every round).

mod common;

use std::time::Duration;

use common::{Net, addr, svc};
use gossip_core::rng::Rng;
use gossip_core::{Config, Gossip};

/// About 208 KiB of 1.2 KB datagrams: Linux's default UDP receive buffer.
const RX_QUEUE: usize = 170;

fn encoded_size(g: &Gossip, owner: &gossip_core::NodeId) -> usize {
    g.node(owner).map_or(0, |n| n.entries.values().map(|e| &**e).map(gossip_core::message::entry_len).sum())
}

#[test]
fn a_large_owner_reaches_everyone_and_a_newcomer_gets_it_paced() {
    let n_services = 3000;
    let mut net = Net::warm(5, 31, 0.0, |_| {});
    net.rx_limit = Some(RX_QUEUE);
    net.run_for(Duration::from_secs(2));
    let owner = net.nodes[0].local().id;
    let start = net.now;
    for i in 0..n_services {
        let mut s = svc(&format!("web-{i}"), "web");
        s.meta.insert("pad".into(), "x".repeat(64));
        net.nodes[0].register(start, s).unwrap();
    }
    net.flush(0);
    let before: Vec<u64> = (0..5).map(|i| net.nodes[i].stats().bytes_in).collect();
    let size = encoded_size(&net.nodes[0], &owner);
    let mut all = None;
    for step in 0..600 {
        net.run_for(Duration::from_millis(100));
        if (1..5).all(|i| {
            net.nodes[i].node(&owner).is_some_and(|n| n.verified() && gossip_core::services_of(n).count() == n_services)
        }) {
            all = Some(step as f64 / 10.0 + 0.1);
            break;
        }
    }
    let all = all.expect("the owner's services did not reach everyone within 60 s");
    for (i, before) in before.iter().enumerate().skip(1) {
        let got = net.nodes[i].stats().bytes_in - before;
        println!(
            "node {i}: received {got} bytes for {size} bytes of entries ({:.2}x), {} receive drops",
            got as f64 / size as f64,
            net.rx_drops[i]
        );
        assert!(got as f64 <= 3.0 * size as f64, "node {i} received {got} bytes for {size}");
        assert_eq!(net.rx_drops[i], 0, "node {i}'s receive queue overflowed during the burst");
    }
    println!("{n_services} services from one owner everywhere after {all:.1} s");

    // A fresh agent joins this catalog through node 1.
    let mut rng = Rng::from_seed(5);
    let i = net.nodes.len();
    let cfg = Config { seeds: vec![addr(1)], rng_seed: rng.fork(), ..Config::default() };
    let sec = net.secure_now(net.identity_seed(i), rng.fork());
    let g = Gossip::new(cfg, sec, format!("node-{i}"), addr(i), 1, net.now);
    let fresh = net.add(g);
    let mut done = None;
    for step in 0..300 {
        net.run_for(Duration::from_millis(100));
        if net.nodes[fresh]
            .node(&owner)
            .is_some_and(|n| n.verified() && gossip_core::services_of(n).count() == n_services)
        {
            done = Some(step as f64 / 10.0 + 0.1);
            break;
        }
    }
    let done = done.expect("the newcomer did not get the catalog within 30 s");
    let got = net.nodes[fresh].stats().bytes_in;
    let lacked: usize = net.nodes[1].nodes().map(|n| encoded_size(&net.nodes[1], &n.info.id)).sum();
    println!(
        "newcomer: whole catalog after {done:.1} s, received {got} bytes for {lacked} bytes of entries ({:.2}x), {} receive drops",
        got as f64 / lacked as f64,
        net.rx_drops[fresh]
    );
    assert_eq!(net.rx_drops[fresh], 0, "the newcomer's receive queue overflowed");
    assert!(got as f64 <= 3.0 * lacked as f64, "the newcomer received {got} bytes for {lacked}");
}
