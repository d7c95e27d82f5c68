//! Memory accounting of the simulator (#16 item 4): replicas share what they have in common.
//!
//! A warm cluster gives every node a clone of one template's owner table and peer set. Both are
//! persistent trees (`imbl`), so a clone costs nothing and each node then pays only for the
//! paths it changes: its own entry in the table, the template added to and itself removed from
//! its peer set. Before, each of the N nodes held an `Arc` per owner and 16 bytes per peer:
//! about 57 bytes for each of the N² replicas (5.7 GB at 10,000 nodes, ~530 GiB at 100,000).
//!
//! One test per binary: the figures are the whole process's resident set.

use std::time::Duration;

use gossip_sim::scale::rss_kib;
use gossip_sim::{Sim, SimConfig, seed_from_env, service};

#[test]
fn replicas_share_their_tables_so_a_node_costs_kilobytes_whatever_the_cluster_holds() {
    let seed = seed_from_env(40);
    let n = 4_000;
    let before = rss_kib().expect("/proc/self/status").0;
    let mut sim = Sim::new(SimConfig::new(seed, n));
    let built = rss_kib().unwrap().0;
    let per_node = (built - before) as f64 * 1024.0 / n as f64;
    println!("warm cluster of {n}: {per_node:.0} B per node ({:.2} B per replica)", per_node / n as f64);
    // About 12 KB: the node itself (keys, queues: ~6 KB) and the copied paths. N² replicas at
    // 57 B would be 228 KB per node.
    assert!(per_node < 40.0 * 1024.0, "{per_node:.0} B per node: replicas are not shared; SIM_SEED={seed}");

    // Replicas stay correct: a change reaches every node, each node paying only for its path.
    sim.run_for(Duration::from_secs(2));
    let owner = n / 3;
    sim.register(owner, service("mem-probe", "web", 80)).expect("registers");
    sim.watch(owner);
    sim.run_until_cond(Duration::from_secs(30), Duration::from_millis(5), Sim::watch_done);
    let reached = sim.watching().map_or(0, |w| w.reached());
    assert_eq!(reached, n, "the change reached {reached} of {n} nodes; SIM_SEED={seed}");
    assert!((0..n).all(|i| sim.holds_service(i, owner, "mem-probe")), "SIM_SEED={seed}");
    let after = rss_kib().unwrap().0;
    let run_per_node = (after - before) as f64 * 1024.0 / n as f64;
    println!("after 2 s and one change to all: {run_per_node:.0} B per node");
    // Sessions with the active view and the rounds' buffers come on top: tens of KB, not N.
    assert!(run_per_node < 150.0 * 1024.0, "{run_per_node:.0} B per node after the run; SIM_SEED={seed}");
}
