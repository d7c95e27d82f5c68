//! Rolling upgrades with real processes (docs/PROTOCOL.md sections 2 and 3.2): two agents of
//! this build (`target/debug/gossipd`, wire versions 5..=7) and two of a "newer build"
//! (`target/debug/gossipd-next`: the `testing` feature, started with `--test-protocol-max 8`,
//! the synthetic version 8 that does not decode as 5, 6 or 7, and `--test-new-kind`, an entry of a
//! value kind no release knows) in one certified cluster. The crate-level twin of this test is
//! `crates/gossip-core/tests/evolution.rs`.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options, next_binary};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn old(root: &std::path::Path, name: &str, seeds: Vec<std::net::SocketAddr>) -> Agent {
    Agent::start(root, Options { name: name.into(), seeds, ..Default::default() })
}

fn new(root: &std::path::Path, name: &str, seeds: Vec<std::net::SocketAddr>) -> Agent {
    let extra = ["--test-protocol-max", "8", "--test-new-kind"].map(String::from).to_vec();
    Agent::start(root, Options { name: name.into(), seeds, binary: Some(next_binary()), extra, ..Default::default() })
}

/// `(vsn_min, vsn_max, vsn)` of member `name` as `x` shows it.
fn versions(x: &Agent, name: &str) -> (String, String, String) {
    let members = x.get("/v1/agent/members").expect("members");
    let m = members.as_array().and_then(|a| a.iter().find(|m| m["Name"] == name)).expect("member listed");
    let tag = |k: &str| m["Tags"][k].as_str().unwrap_or("").to_string();
    (tag("vsn_min"), tag("vsn_max"), tag("vsn"))
}

fn no_bans(agents: &[&Agent]) {
    for x in agents {
        let name = &x.opts.name;
        assert_eq!(x.metric("Secure", "Bans"), 0, "{name} banned a peer:\n{}", x.log());
        assert!(!x.log().contains("peer banned"), "{name} logged a ban:\n{}", x.log());
        let members = x.get("/v1/agent/members").expect("members");
        for m in members.as_array().expect("array") {
            assert!(m["Tags"].get("banned").is_none(), "{name} shows a banned member: {m}");
        }
    }
}

fn a_record(x: &Agent, name: &str) -> Vec<IpAddr> {
    wait_for(&format!("{name} on {}'s DNS", x.opts.name), WAIT, || {
        dns::udp(x.dns, name, RecordType::A).filter(|r| r.rcode == ResponseCode::NoError)
    })
    .addrs
}

#[test]
fn two_builds_converge_in_one_cluster_with_no_bans() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // Seeds cross the builds: each new agent joins through an old one and the reverse.
    let old_a = old(root, "old-a", vec![]);
    let new_a = new(root, "new-a", vec![old_a.gossip]);
    let old_b = old(root, "old-b", vec![new_a.gossip]);
    let new_b = new(root, "new-b", vec![old_b.gossip]);
    let all = [&old_a, &old_b, &new_a, &new_b];
    for x in all {
        wait_for(&format!("4 alive members on {}", x.opts.name), WAIT, || {
            assert_eq!(x.metric("Secure", "Bans"), 0, "{} banned a peer:\n{}", x.opts.name, x.log());
            (x.alive_members() == ["new-a", "new-b", "old-a", "old-b"]).then_some(())
        });
    }

    // Each member shows the range it proves (its signed `@proto` entry) and the version spoken
    // with it: 8 between two new agents, 7 whenever an old one is involved.
    let v = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    for x in all {
        let mine = x.opts.name.starts_with("new");
        for peer in ["old-a", "old-b", "new-a", "new-b"] {
            let theirs = peer.starts_with("new");
            let want = v("5", if theirs { "8" } else { "7" }, if mine && theirs { "8" } else { "7" });
            assert_eq!(versions(x, peer), want, "{} about {peer}", x.opts.name);
        }
    }

    // A service on a new agent is answered by an old agent's DNS, and the reverse.
    let (status, body) =
        new_a.put("/v1/agent/service/register", r#"{"ID":"n-1","Name":"from-new","Address":"127.0.0.51","Port":80}"#);
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        old_b.put("/v1/agent/service/register", r#"{"ID":"o-1","Name":"from-old","Address":"127.0.0.52","Port":80}"#);
    assert_eq!(status, 200, "{body}");
    let ip = |s: &str| vec![s.parse::<IpAddr>().unwrap()];
    assert_eq!(a_record(&old_a, "from-new.service.gossip."), ip("127.0.0.51"));
    assert_eq!(a_record(&old_b, "from-new.service.gossip."), ip("127.0.0.51"));
    assert_eq!(a_record(&new_b, "from-old.service.gossip."), ip("127.0.0.52"));
    assert_eq!(a_record(&new_a, "from-old.service.gossip."), ip("127.0.0.52"));

    // The old build holds the new kind (one entry of tag 200 from each new agent: the counter
    // counts entries of unknown kinds applied) and so does the new build (the other's).
    for (x, want) in [(&old_a, 2), (&old_b, 2), (&new_a, 1), (&new_b, 1)] {
        wait_for(&format!("{} to hold {want} unknown entries", x.opts.name), WAIT, || {
            (x.metric("Gossip", "UnknownEntries") >= want).then_some(())
        });
    }
    for x in all {
        eprintln!("{}: {} unknown entries received", x.opts.name, x.metric("Gossip", "UnknownEntries"));
    }
    no_bans(&all);

    // The old build relays it: with both new agents gone, a newcomer of the old build joins
    // through old-a and learns the new kind from old agents only (its signature intact, or the
    // newcomer would refuse the delta and ban its sender).
    let (mut new_a, mut new_b) = (new_a, new_b);
    new_a.kill();
    new_b.kill();
    let old_c = old(root, "old-c", vec![old_a.gossip]);
    wait_for("old-c to learn the new kind from the old build", WAIT, || {
        (old_c.metric("Gossip", "UnknownEntries") >= 2).then_some(())
    });
    assert_eq!(a_record(&old_c, "from-old.service.gossip."), ip("127.0.0.52"));
    no_bans(&[&old_a, &old_b, &old_c]);
}
