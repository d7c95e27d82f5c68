//! A node that is not run for a while (a stopped process, a host starved of CPU, a suspended
//! VM) must not blame its peers for its own absence when it runs again (docs/PROTOCOL.md 4.5,
//! "Pauses"). `SIM_SEED=<seed> cargo test -p gossip-sim --test pauses -- --nocapture` replays
//! a failure.

use std::time::Duration;

use gossip_sim::{Sim, SimConfig, seed_from_env};

#[test]
fn a_node_paused_right_after_probing_blames_no_peer_when_it_resumes() {
    let seed = seed_from_env(50);
    let n = 20;
    let p = 5;
    let mut sim = Sim::new(SimConfig::new(seed, n));
    sim.run_for(Duration::from_secs(10));
    let before = sim.stats();
    for k in 0..5u32 {
        // Run event by event until node p opens a round (its exchange is a probe of the
        // partner), then stop p before the answer can be read: the answer waits in its queue,
        // and on resuming p runs its overdue timer first.
        let rounds = sim.node(p).stats().rounds;
        let limit = sim.now() + Duration::from_secs(5);
        while sim.node(p).stats().rounds == rounds {
            assert!(sim.step(limit), "node {p} opened no round within 5 s; SIM_SEED={seed}");
        }
        // Longer than both probe stages (2 x 500 ms), so an unmoved clock declares the suspect.
        sim.pause(p, Duration::from_millis(1_500 + 250 * u64::from(k)));
        sim.run_for(Duration::from_secs(6));
    }
    let after = sim.stats();
    let raised = after[p].suspicions_raised - before[p].suspicions_raised;
    let deaths = after[p].deaths - before[p].deaths;
    println!(
        "node {p}: {} pauses (longest {} ms), {raised} suspicions raised and {deaths} deaths declared by it, local health {}",
        after[p].pauses, after[p].pause_max_ms, after[p].local_health
    );
    assert_eq!(raised, 0, "the paused node suspected peers whose answers sat unread in its queue; SIM_SEED={seed}");
    assert_eq!(after[p].pauses, 5, "every pause is noticed and counted; SIM_SEED={seed}");
    assert!(after[p].pause_max_ms >= 2_000, "SIM_SEED={seed}");
    assert_eq!(deaths, 0, "the paused node declared a peer dead; SIM_SEED={seed}");
    // (Its peers did declare it dead: it was silent for longer than their deadlines. It is back.)
    assert!(sim.converged(), "SIM_SEED={seed}");
    for i in 0..n {
        for j in (0..n).filter(|&j| j != i) {
            let id = sim.node(j).local().id;
            assert!(sim.node(i).liveness(&id).serves(), "node {i} does not serve node {j} at the end; SIM_SEED={seed}");
        }
    }
    // The detector itself: nodes that were never paused never saw a pause.
    for (i, s) in after.iter().enumerate().filter(|(i, _)| *i != p) {
        assert_eq!(s.pauses, 0, "node {i} reported a pause it never had; SIM_SEED={seed}");
    }
}
