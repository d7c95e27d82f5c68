//! Security with real agents: a node holding the wrong cluster key gets zero reply bytes; a
//! key installed and made primary across a running 3-agent cluster keeps it converging, and the
//! old key then stops working; no agent starts without a key (outside --dev); secrets on disk
//! are private.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options, binary};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(15);

fn keygen() -> String {
    let out = std::process::Command::new(binary()).arg("keygen").output().expect("run keygen");
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(key.len(), 44, "base64 of 32 bytes: {key}");
    key
}

#[test]
fn wrong_cluster_key_gets_zero_reply_bytes() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let wrong = root.path().join("wrong.key");
    std::fs::write(&wrong, keygen()).unwrap();
    let b = Agent::start(
        root.path(),
        Options { name: "bravo".into(), seeds: vec![a.gossip], cluster_key_file: Some(wrong), ..Default::default() },
    );
    wait_for("alpha to drop bravo's handshakes", WAIT, || {
        (a.metric("Secure", "DroppedUnauthenticated") >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(b.metric("Gossip", "BytesOut") > 0, "bravo kept trying");
    assert_eq!(b.metric("Gossip", "BytesIn"), 0, "not one byte came back to the wrong key");
    assert_eq!(a.metric("Secure", "HandshakesCompleted"), 0);
    assert_eq!(b.alive_members(), vec!["bravo"]);
    assert_eq!(a.alive_members(), vec!["alpha"]);
    // Both sides say why, in their logs: the joiner names the cluster key as the likely cause,
    // the seed names the address whose handshakes proved no key of its keyring.
    wait_for("bravo to name the cluster key", Duration::from_secs(10), || {
        let log = b.log();
        (log.contains("no seed answers") && log.contains("cluster key")).then_some(())
    });
    // `gossipd info` shows it too.
    let info = std::process::Command::new(binary())
        .args(["info", "--http", &b.http.to_string()])
        .output()
        .expect("run gossipd info");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("no seed answers") && info.contains("members:           1 alive of 1"), "{info}");
    wait_for("alpha to name bravo's address", Duration::from_secs(10), || {
        let log = a.log();
        (log.contains("proved no key of our keyring") && log.contains(&b.gossip.to_string())).then_some(())
    });
}

#[test]
fn keyring_rotation_across_a_running_cluster() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = Agent::three(root.path());
    let seeds = vec![a.gossip];
    let old = integration::agent::TEST_KEY.to_string();
    let new = keygen();
    let body = |k: &str| format!(r#"{{"Key":"{k}"}}"#);
    let keys_of = |x: &Agent| -> (Vec<String>, Vec<String>) {
        let v = x.get("/v1/operator/keyring").unwrap_or_default();
        let names = |f: &str| -> Vec<String> {
            let mut k: Vec<String> = v[0][f].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            k.sort();
            k
        };
        (names("Keys"), names("PrimaryKeys"))
    };

    // Install on one agent: every agent accepts both keys.
    let (status, msg) = a.send("POST", "/v1/operator/keyring", &body(&new));
    assert_eq!(status, 200, "{msg}");
    let mut both = vec![old.clone(), new.clone()];
    both.sort();
    for x in [&a, &b, &c] {
        wait_for("the new key installed everywhere", WAIT, || (keys_of(x).0 == both).then_some(()));
    }
    // Make it primary from another agent.
    let (status, msg) = b.send("PUT", "/v1/operator/keyring", &body(&new));
    assert_eq!(status, 200, "{msg}");
    for x in [&a, &b, &c] {
        wait_for("the new key primary everywhere", WAIT, || (keys_of(x).1 == vec![new.clone()]).then_some(()));
    }
    // Removing the primary is refused, and names why.
    let (status, msg) = c.send("DELETE", "/v1/operator/keyring", &body(&new));
    assert_eq!(status, 400);
    assert!(msg.contains("primary"), "{msg}");
    // Remove the old key.
    let (status, msg) = c.send("DELETE", "/v1/operator/keyring", &body(&old));
    assert_eq!(status, 200, "{msg}");
    for x in [&a, &b, &c] {
        wait_for("the old key gone everywhere", WAIT, || (keys_of(x).0 == vec![new.clone()]).then_some(()));
    }
    // The cluster still converges.
    let (status, _) = c.put("/v1/agent/service/register", r#"{"Name":"after-rotation","Port":1}"#);
    assert_eq!(status, 200);
    wait_for("a registration made after the rotation on alpha", WAIT, || {
        dns::udp(a.dns, "after-rotation.service.gossip.", RecordType::SRV).filter(|r| r.rcode == ResponseCode::NoError)
    });
    // An agent that holds only the old key gets nothing back.
    let stale = Agent::start(root.path(), Options { name: "stale".into(), seeds: seeds.clone(), ..Default::default() });
    std::thread::sleep(Duration::from_secs(2));
    assert!(stale.metric("Gossip", "BytesOut") > 0);
    assert_eq!(stale.metric("Gossip", "BytesIn"), 0, "the old key no longer admits anyone");
    // One started with the new key joins.
    let new_file = root.path().join("new.key");
    std::fs::write(&new_file, &new).unwrap();
    let fresh = Agent::start(
        root.path(),
        Options { name: "delta".into(), seeds, cluster_key_file: Some(new_file), ..Default::default() },
    );
    wait_for("delta to join with the new key", WAIT, || (fresh.alive_members().len() == 4).then_some(()));
    // The rotated keyring survives a restart (persisted), and the agent rejoins.
    let mut a = a;
    a.restart();
    assert_eq!(keys_of(&a).0, vec![new.clone()]);
    // Peers notice the restarted agent's lost sessions (5 s without an answer), then handshake
    // again (IK to its old static key fails, XX succeeds): a bound, not a timing claim.
    wait_for("alpha to rejoin after restart", Duration::from_secs(30), || (a.alive_members().len() == 4).then_some(()));
}

#[test]
fn an_agent_needs_a_cluster_key_and_keeps_secrets_private() {
    let root = tempfile::tempdir().unwrap();
    let err = integration::agent::start_expecting_failure(&root.path().join("nokey"), &[]);
    assert!(err.contains("cluster key is required") && err.contains("keygen"), "{err}");

    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    use std::os::unix::fs::PermissionsExt;
    for f in ["identity.key", "keyring.json"] {
        let mode = std::fs::metadata(a.data_dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} must be private");
    }
}

#[test]
fn a_pinned_seed_must_prove_its_identity() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let addrs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.data_dir.join("addrs.json")).unwrap()).unwrap();
    let identity = addrs["identity"].as_str().unwrap().to_string();
    // Pinned to another identity: the seed (who holds the right cluster key) is not trusted.
    let wrong = keygen();
    let b = Agent::start(
        root.path(),
        Options {
            name: "bravo".into(),
            extra: vec!["--seed".into(), format!("{}#{wrong}", a.gossip)],
            ..Default::default()
        },
    );
    wait_for("bravo to refuse the impostor", WAIT, || (b.metric("Secure", "PinMismatches") >= 1).then_some(()));
    assert_eq!(b.alive_members(), vec!["bravo"]);
    // Pinned to the seed's real identity: it joins.
    let c = Agent::start(
        root.path(),
        Options {
            name: "charlie".into(),
            extra: vec!["--seed".into(), format!("{}#{identity}", a.gossip)],
            ..Default::default()
        },
    );
    wait_for("charlie to join its pinned seed", WAIT, || (c.alive_members().len() == 2).then_some(()));
    assert_eq!(c.metric("Secure", "PinMismatches"), 0);
}

/// Copies the files of a data directory (a "disk image") into a new one.
fn copy_data_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if e.file_type().unwrap().is_file() && name != "agent.log" && name != "addrs.json" {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn an_identity_started_twice_is_proven_and_excluded_by_the_cluster() {
    // A data directory restored twice (a cloned VM): two processes sign two different histories
    // with one identity in one generation. The honest agents find two entries signed under one
    // version, gossip the proof, and exclude the identity by majority: it leaves their answers
    // and `gossipd members` says why.
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = Agent::three(root.path());

    let mut image = Agent::start(root.path(), Options { name: "twin".into(), ..Default::default() });
    image.kill();
    // Both copies raise the generation from the same record: put it ahead of the clock so that
    // the clock floor does not separate them by a second.
    let node_json = image.data_dir.join("node.json");
    let mut node: serde_json::Value = serde_json::from_slice(&std::fs::read(&node_json).unwrap()).unwrap();
    node["generation"] = serde_json::json!(node["generation"].as_u64().unwrap() + 1_000_000);
    std::fs::write(&node_json, serde_json::to_vec(&node).unwrap()).unwrap();
    let copy = root.path().join("twin-copy");
    copy_data_dir(&image.data_dir, &copy);
    let opts = Options { name: "twin".into(), seeds: vec![a.gossip], ..Default::default() };
    let t1 = Agent::start_in(image.data_dir.clone(), opts.clone());
    let t2 = Agent::start_in(copy, opts);
    assert_eq!(t1.generation, t2.generation, "the copies run in one generation");

    let excluded = |x: &Agent| -> Option<String> {
        let members = x.get("/v1/agent/members").ok()?;
        let twin = members.as_array()?.iter().find(|m| m["Name"] == "twin")?.clone();
        (twin["Status"] == 4).then(|| twin["Tags"]["excluded"].as_str().map(str::to_owned)).flatten()
    };
    for x in [&a, &b, &c] {
        let reason = wait_for("the twin to be excluded", Duration::from_secs(60), || excluded(x));
        assert!(reason.contains("proof"), "{}: excluded for {reason:?}", x.opts.name);
        assert!(x.metric("Gossip", "AccusationsWritten") >= 1, "{} did not accuse", x.opts.name);
    }
    let out = std::process::Command::new(binary())
        .args(["members", "--http", &a.http.to_string()])
        .output()
        .expect("run gossipd members");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("excluded by the cluster"), "members output:\n{text}");
    // The honest agents keep each other.
    for x in [&a, &b, &c] {
        assert_eq!(x.alive_members(), vec!["alpha", "bravo", "charlie"], "{}", x.opts.name);
    }
    // What the twins send is dropped after authentication.
    wait_for("the twins' messages to be dropped", WAIT, || {
        ([&a, &b, &c].iter().map(|x| x.metric("Gossip", "DroppedExcluded")).sum::<u64>() > 0).then_some(())
    });
    drop((t1, t2));
}
