//! Clock skew with real agents: an agent whose wall clock is 30 minutes behind (libfaketime,
//! monotonic clock untouched) joins at once, and both sides log the offset with the peer.

use std::time::Duration;

use integration::agent::{Agent, Options};
use integration::wait_for;

#[test]
fn agents_thirty_minutes_apart_join_at_once_and_each_logs_the_skew() {
    // libfaketime preloaded by `env`, which execs the agent: the harness's child is the agent
    // itself (the `faketime` wrapper forks, and its child would outlive the test).
    let lib = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(lib) = lib else {
        assert!(std::env::var_os("CI").is_none(), "libfaketime is missing (apt-get install faketime)");
        eprintln!("skipped: libfaketime not installed");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let wrapper = vec![
        "env".to_string(),
        format!("LD_PRELOAD={lib}"),
        "FAKETIME=-30m".into(),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
    ];
    let b = Agent::start(
        root.path(),
        Options { name: "bravo".into(), seeds: vec![a.gossip], wrapper, ..Default::default() },
    );
    for x in [&a, &b] {
        wait_for("both members alive", Duration::from_secs(20), || (x.alive_members().len() == 2).then_some(()));
    }
    // Each side learns the other's clock from an IK handshake (the first rekey at the latest).
    for (x, how) in [(&a, "behind"), (&b, "ahead of")] {
        wait_for("the skew in the log", Duration::from_secs(150), || {
            let log = x.log();
            log.lines().any(|l| l.contains(&format!("s {how} this agent's")) && l.contains("clock is 1")).then_some(())
        });
    }
}
