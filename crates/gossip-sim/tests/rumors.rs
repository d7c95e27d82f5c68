//! Rumor dissemination (docs/PROTOCOL.md 4.3) in virtual time. Anti-entropy is switched off
//! (rounds a day apart), so whatever reaches a node here came by rumor: the first push, the
//! forwards, and the bounded retransmissions. Each test takes its seed from `SIM_SEED` when set:
//! `SIM_SEED=<seed> cargo test -p gossip-sim --test rumors -- --nocapture` replays a failure and
//! prints every change's arrival times.

use std::time::Duration;

use gossip_sim::{Sim, SimConfig, seed_from_env, service};

/// A warm cluster of `n` whose anti-entropy rounds never come, losing `loss` of all datagrams.
fn rumor_only(seed: u64, n: usize, loss: f64) -> Sim {
    let mut cfg = SimConfig::new(seed, n);
    cfg.gossip.gossip_interval = Duration::from_secs(86_400);
    cfg.net.loss = loss;
    Sim::new(cfg)
}

/// Registers a fresh service on `owner` and follows it for `limit`: returns the delay until
/// each node held it, in order of arrival (shorter than the cluster if some never did).
fn follow(sim: &mut Sim, owner: usize, limit: Duration) -> Vec<Duration> {
    let id = format!("r-{}", sim.now().as_nanos());
    sim.register(owner, service(&id, "rumor", 80)).expect("a small service registers");
    sim.watch(owner);
    sim.run_until_cond(limit, Duration::from_millis(1), Sim::watch_done);
    let w = sim.watching().expect("watching");
    (1..=w.reached()).filter_map(|k| w.time_to(k)).collect()
}

/// Several successive changes (from different owners, 2 s apart, so that later ones find the
/// sessions earlier ones opened) must each reach all `n` nodes within `bound`.
fn every_change_reaches_all(seed: u64, n: usize, loss: f64, bound: Duration) {
    let mut sim = rumor_only(seed, n, loss);
    sim.run_for(Duration::from_secs(1));
    for (k, owner) in [n / 3, 0, n - 1, n / 2, 7 % n].into_iter().enumerate() {
        let arrivals = follow(&mut sim, owner, Duration::from_secs(5));
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        println!(
            "change {k} from node {owner}: {}/{n} nodes; median {:.1} ms, 99th {:.1} ms, last {:.1} ms",
            arrivals.len(),
            arrivals.get(n / 2).map_or(f64::NAN, ms),
            arrivals.get((n * 99).div_ceil(100) - 1).map_or(f64::NAN, ms),
            arrivals.last().map_or(f64::NAN, ms),
        );
        assert_eq!(arrivals.len(), n, "change {k} reached {} of {n} nodes by rumor; SIM_SEED={seed}", arrivals.len());
        let last = arrivals[n - 1];
        assert!(last <= bound, "change {k} took {last:?} to reach all {n} nodes (bound {bound:?}); SIM_SEED={seed}");
        sim.run_for(Duration::from_secs(2));
    }
}

#[test]
fn without_loss_rumors_alone_reach_all_of_100_nodes_well_within_a_round() {
    // Anti-entropy rounds are 1 s apart: the rumor must not need one.
    every_change_reaches_all(seed_from_env(21), 100, 0.0, Duration::from_millis(300));
}

#[test]
fn with_10_percent_loss_rumors_alone_still_reach_all_of_100_nodes() {
    // A lost handshake packet costs a 1 s retry, so the bound is looser than without loss; the
    // retransmissions go to other peers meanwhile.
    every_change_reaches_all(seed_from_env(22), 100, 0.1, Duration::from_millis(1500));
}

#[test]
fn retransmission_stops_once_the_budget_is_spent_so_an_idle_cluster_sends_no_rumors() {
    let seed = seed_from_env(23);
    let mut sim = Sim::new(SimConfig::new(seed, 30));
    sim.run_for(Duration::from_secs(2));
    let retransmits = |sim: &Sim| sim.stats().iter().map(|s| s.rumor_retransmits).sum::<u64>();
    assert_eq!(retransmits(&sim), 0, "rumors retransmitted before any change; SIM_SEED={seed}");
    sim.register(5, service("once", "rumor", 80)).expect("registers");
    sim.run_for(Duration::from_secs(2));
    let after_change = retransmits(&sim);
    // 30 nodes, each owing 2 x ceil(log10(31)) = 4 retransmissions (fewer if it ran out of
    // peers that might lack the change).
    assert!(after_change > 0 && after_change <= 30 * 4, "{after_change} retransmissions; SIM_SEED={seed}");
    sim.run_for(Duration::from_secs(10));
    assert_eq!(retransmits(&sim), after_change, "retransmissions while idle; SIM_SEED={seed}");
}

#[test]
fn a_burst_in_a_cluster_the_owners_fanout_covers_is_received_about_once() {
    // 5 nodes at the default fanout of 4: the owner's first push reaches every member, so
    // passing the rumor on would only send each member copies of what it has (docs/PROTOCOL.md
    // 4.3, "Receiver"), and a rumor that overtakes an earlier one on the way (the network's
    // jitter) waits for it rather than pulling its gap, which would fetch the earlier one
    // twice. Each replica must receive at most 2x the encoded size of the burst: 1.28x with
    // both; 2.6x when gaps were pulled at once; 5.1x when members also passed rumors on.
    let seed = seed_from_env(24);
    let mut sim = Sim::new(SimConfig::new(seed, 5));
    sim.run_for(Duration::from_secs(3));
    let before: Vec<u64> = sim.stats().iter().map(|s| s.bytes_in).collect();
    // As a bulk registration through the API arrives: 20 every 10 ms (2,000 a second), each
    // 20 in one turn of the driver.
    for k in 0..100 {
        let batch = (0..20).map(|i| service(&format!("b-{:05}", k * 20 + i), "burst", 8080)).collect();
        sim.register_batch(0, batch).expect("registers");
        sim.run_for(Duration::from_millis(10));
    }
    sim.run_for(Duration::from_secs(6));
    let owner = sim.node(0).local().id;
    let state = sim.node(0).node(&owner).expect("the owner's own state");
    let encoded: usize =
        state.entries.values().filter(|e| e.key.starts_with("svc/b-")).map(|e| gossip_core::entry_len(e)).sum();
    let after = sim.stats();
    for (i, (was, now)) in before.iter().zip(&after).enumerate().skip(1) {
        let held = sim.node(i).node(&owner).map_or(0, |n| n.services);
        assert_eq!(held, 2000, "node {i} holds {held} of the burst; SIM_SEED={seed}");
        let got = now.bytes_in - was;
        let ratio = got as f64 / encoded as f64;
        println!("node {i}: received {got} B for {encoded} B of entries ({ratio:.2}x)");
        assert!(ratio <= 2.0, "node {i} received {ratio:.2}x the burst's encoded size; SIM_SEED={seed}");
    }
    let resumed: u64 = after.iter().map(|s| s.reordered_applied).sum();
    println!("rumors applied after waiting for an earlier one: {resumed}");
    assert!(resumed > 0, "the jitter reordered no rumor: the test no longer shows the wait; SIM_SEED={seed}");
}
