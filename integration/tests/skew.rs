//! Clock skew with real agents: an agent whose wall clock is 30 minutes behind (libfaketime,
//! monotonic clock untouched) joins at once, and both sides log the offset with the peer.

use std::time::Duration;

use integration::agent::{Agent, Options};
use integration::{peers, wait_for};

#[test]
fn agents_thirty_minutes_apart_join_at_once_and_each_logs_the_skew() {
    let Some(faketime) = peers::find("faketime") else {
        assert!(std::env::var_os("CI").is_none(), "faketime is missing (apt-get install faketime)");
        eprintln!("skipped: faketime not installed");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let wrapper = vec![
        "env".to_string(),
        "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
        faketime.display().to_string(),
        "-f".into(),
        "-30m".into(),
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
