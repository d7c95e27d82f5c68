//! Scenario tests: each runs a canned scenario (see `gossip_sim::scenarios`) whose assertion
//! steps fail the test if the property breaks. Every test takes its seed from `SIM_SEED` when
//! set, so a failure (which prints `SIM_SEED=<seed>`) replays exactly:
//! `SIM_SEED=<seed> cargo test -p gossip-sim --test scenarios <name>`.

use std::time::Duration;

use gossip_sim::scenario::{Report, Scenario};
use gossip_sim::{Sim, SimConfig, Step, scenarios, seed_from_env, service};

fn run(sc: Scenario) -> (Sim, Report) {
    match sc.run() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn fifty_nodes_join_through_one_seed() {
    let (sim, _) = run(scenarios::join(seed_from_env(11), 50));
    for i in 0..50 {
        assert_eq!(sim.node(i).nodes().count(), 50, "node {i}; SIM_SEED={}", sim.seed());
        assert_eq!(sim.node(i).live_peers(), 49, "node {i}; SIM_SEED={}", sim.seed());
    }
}

#[test]
fn a_registration_reaches_all_of_200_nodes() {
    let (sim, report) = run(scenarios::registration(seed_from_env(12), 200));
    // Steps 2 and 5 waited for the registration and the deregistration to reach every node:
    // rumors do most of it well within a round.
    for (step, waited) in &report.waits {
        assert!(*waited <= Duration::from_secs(2), "step {step} took {waited:?}; SIM_SEED={}", sim.seed());
    }
}

#[test]
fn converges_under_20_percent_loss() {
    let (sim, _) = run(scenarios::lossy(seed_from_env(13), 40, 0.2));
    // The changes were made, and converged, while one datagram in five was lost.
    assert!(sim.net().stats().lost > 100, "the network lost nothing; SIM_SEED={}", sim.seed());
}

#[test]
fn forty_nodes_join_under_20_percent_loss_within_a_minute() {
    // 20 seeds per run (a few seconds); `SIM_SEEDS=200` sweeps more.
    let count: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    for seed in seed_from_env(1)..seed_from_env(1) + count {
        run(scenarios::lossy_join(seed, 40, 0.2));
    }
}

#[test]
fn partitioned_halves_change_then_heal_and_converge() {
    let (sim, _) = run(scenarios::partition(seed_from_env(14), 40));
    assert!(sim.net().stats().partitioned > 0, "the partition dropped nothing; SIM_SEED={}", sim.seed());
}

#[test]
fn churn_restarted_nodes_new_generation_wins() {
    let (sim, _) = run(scenarios::churn(seed_from_env(15), 60));
    for v in scenarios::victims(60) {
        for i in sim.up_nodes() {
            assert!(sim.holds_service(i, v, &format!("new-{v}")), "SIM_SEED={}", sim.seed());
            assert!(!sim.holds_service(i, v, &format!("old-{v}")), "SIM_SEED={}", sim.seed());
        }
    }
}

#[test]
fn a_failed_assertion_names_the_step_and_the_seed() {
    // Nobody can see a service across a partition that never heals.
    let steps = vec![
        Step::Partition { groups: vec![vec![0, 1]] },
        Step::Register { node: 0, service: service("x", "x", 1) },
        Step::AssertService {
            owner: 0,
            id: "x".into(),
            present: true,
            on: gossip_sim::Who::All,
            within: Duration::from_secs(3),
        },
    ];
    let err = Scenario { config: SimConfig::new(77, 6), steps }.run().unwrap_err();
    assert_eq!(err.step, 2);
    assert!(err.to_string().contains("SIM_SEED=77"), "{err}");
}

/// Per-node counters and table fingerprints after a run with loss, a registration on every
/// node, a kill and a restart.
fn fingerprint_run(seed: u64) -> Vec<(gossip_core::Stats, (u64, gossip_core::Commitment))> {
    let mut steps = vec![Step::SetLoss(0.1)];
    for i in 0..25 {
        steps.push(Step::Register { node: i, service: service(&format!("d-{i}"), "det", 80) });
    }
    steps.push(Step::Kill { node: 3 });
    steps.push(Step::Run(Duration::from_secs(4)));
    steps.push(Step::Restart { node: 3 });
    steps.push(Step::Run(Duration::from_secs(10)));
    let (sim, _) = run(Scenario { config: SimConfig::new(seed, 25).cold(), steps });
    sim.stats().into_iter().zip(sim.fingerprints()).collect()
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let seed = seed_from_env(16);
    let a = fingerprint_run(seed);
    let b = fingerprint_run(seed);
    assert_eq!(a, b, "two runs with SIM_SEED={seed} differ");
    let c = fingerprint_run(seed.wrapping_add(1));
    assert_ne!(a, c, "SIM_SEED={seed} and the next seed gave identical runs");
}
