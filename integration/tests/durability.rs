//! An agent killed with SIGKILL and restarted serves its registrations again at once, and its
//! new generation wins everywhere. Bad input is refused with the field named and loses nothing.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn sigkill_and_restart_keeps_and_reannounces_registrations() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let mut b =
        Agent::start(root.path(), Options { name: "bravo".into(), seeds: vec![a.gossip], ..Default::default() });
    let (status, body) = b.put("/v1/agent/service/register", r#"{"ID":"api-1","Name":"api","Port":9000}"#);
    assert_eq!(status, 200, "{body}");
    wait_for("api on alpha", WAIT, || {
        dns::udp(a.dns, "api.service.gossip.", RecordType::SRV).filter(|r| r.srv.len() == 1)
    });

    let old_generation = b.generation;
    b.restart(); // SIGKILL, then start on the same data dir and ports.
    assert!(b.generation > old_generation, "generation must rise at every start");

    // Served by the restarted agent's own DNS at once, before any gossip.
    let r = dns::udp(b.dns, "api.service.gossip.", RecordType::SRV).expect("reply");
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert_eq!(r.srv[0].0, 9000);
    let services = b.get("/v1/agent/services").unwrap();
    assert_eq!(services["api-1"]["Service"], "api");

    // Alpha sees the new incarnation.
    wait_for("alpha to see bravo's new generation", WAIT, || {
        let members = a.get("/v1/agent/members").ok()?;
        let bravo = members.as_array()?.iter().find(|m| m["Name"] == "bravo")?.clone();
        let want = b.generation.to_string();
        (bravo["Tags"]["generation"].as_str() == Some(want.as_str())).then_some(())
    });
    // A change made after the restart wins everywhere (the old incarnation's versions are gone).
    let (status, _) = b.put("/v1/agent/service/deregister/api-1", "");
    assert_eq!(status, 200);
    wait_for("api to leave alpha's DNS", WAIT, || {
        dns::udp(a.dns, "api.service.gossip.", RecordType::SRV).filter(|r| r.rcode == ResponseCode::NXDomain)
    });
    // And the deregistration itself survives a crash.
    b.restart();
    let r = dns::udp(b.dns, "api.service.gossip.", RecordType::SRV).expect("reply");
    assert_eq!(r.rcode, ResponseCode::NXDomain);
}

#[test]
fn malformed_definitions_get_400_naming_the_field_and_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let (status, _) = a.put("/v1/agent/service/register", r#"{"Name":"db","Port":5432}"#);
    assert_eq!(status, 200);
    for (body, field) in [
        (r#"{"Name":"db","Port":"abc"}"#, "Port"),
        (r#"{"Port":5432}"#, "Name"),
        (r#"{"Name":"db","Port":1,"Address":"not an ip"}"#, "Address"),
        (r#"{"Name":"db","Port":1,"Tags":[1]}"#, "Tags"),
        (r#"{"Name":"db""#, "line"),
    ] {
        let (status, msg) = a.put("/v1/agent/service/register", body);
        assert_eq!(status, 400, "{body} -> {msg}");
        assert!(msg.contains(field), "error for {body} should name {field}: {msg}");
    }
    // Too large to gossip in one datagram: refused, not truncated.
    let meta: Vec<String> = (0..40).map(|i| format!(r#""k{i}":"{}""#, "v".repeat(100))).collect();
    let (status, msg) =
        a.put("/v1/agent/service/register", &format!(r#"{{"Name":"big","Port":1,"Meta":{{{}}}}}"#, meta.join(",")));
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("too large"), "{msg}");

    let r = dns::udp(a.dns, "db.service.gossip.", RecordType::SRV).unwrap();
    assert_eq!(r.srv.len(), 1, "the earlier registration must survive bad input");
}

#[test]
fn config_dir_definitions_are_served_and_a_bad_file_is_named() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    // Consul's documented sample, unchanged.
    std::fs::write(
        conf.join("sample-service.json"),
        r#"{"service": {"id": "redis", "name": "redis", "tags": ["primary"], "address": "127.0.0.7", "port": 8000,
            "meta": {"meta": "for my service"}, "enable_tag_override": false,
            "check": {"args": ["/bin/true"], "interval": "10s"}, "weights": {"passing": 10, "warning": 1}}}"#,
    )
    .unwrap();
    let a = Agent::start(
        root.path(),
        Options {
            name: "alpha".into(),
            config_dir: Some(conf.clone()),
            // The sample's check is an exec check (`args`): refused without the flag.
            extra: vec!["--enable-local-script-checks".into()],
            ..Default::default()
        },
    );
    let r = dns::udp(a.dns, "primary.redis.service.gossip.", RecordType::A).unwrap();
    assert_eq!(r.addrs, vec!["127.0.0.7".parse::<std::net::IpAddr>().unwrap()]);
    drop(a);

    std::fs::write(conf.join("zz-bad.json"), r#"{"service": {"name": "x", "port": 70000}}"#).unwrap();
    let err = integration::agent::start_expecting_failure(
        &root.path().join("bad"),
        &["--config-dir".as_ref(), conf.as_os_str()],
    );
    assert!(err.contains("zz-bad.json") && err.contains("Port"), "{err}");
}

#[test]
fn concurrent_registrations_are_committed_together_and_all_survive_a_crash() {
    // Many clients at once: the driver persists each turn's queued registrations together
    // (group commit). Every acknowledged one must be served, listed and still there after
    // SIGKILL; deregistrations mixed into the burst too.
    let root = tempfile::tempdir().unwrap();
    let mut a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    std::thread::scope(|s| {
        for t in 0..8 {
            let a = &a;
            s.spawn(move || {
                for i in 0..25 {
                    let body = format!(r#"{{"ID":"bulk-{t}-{i}","Name":"bulk","Port":{}}}"#, 10_000 + t * 100 + i);
                    let (status, reply) = a.put("/v1/agent/service/register", &body);
                    assert_eq!(status, 200, "{reply}");
                    if i % 5 == 4 {
                        let (status, _) = a.put(&format!("/v1/agent/service/deregister/bulk-{t}-{i}"), "");
                        assert_eq!(status, 200);
                    }
                }
            });
        }
    });
    let expected = 8 * 20;
    let services = a.get("/v1/agent/services").unwrap();
    assert_eq!(services.as_object().map(|m| m.len()), Some(expected), "listed at once");
    wait_for("all bulk instances in DNS", WAIT, || {
        dns::tcp(a.dns, "bulk.service.gossip.", RecordType::SRV).filter(|r| r.srv.len() == expected)
    });
    a.restart();
    let services = a.get("/v1/agent/services").unwrap();
    assert_eq!(services.as_object().map(|m| m.len()), Some(expected), "all survive SIGKILL");
    assert!(services.get("bulk-3-4").is_none(), "deregistrations survive too");
    let r = dns::tcp(a.dns, "bulk.service.gossip.", RecordType::SRV).expect("reply");
    assert_eq!(r.srv.len(), expected);
}

#[test]
fn a_fast_double_restart_from_a_rolled_back_data_dir_is_not_excluded() {
    // Two restarts a moment apart, the second from a node.json rolled back to before the first
    // (a snapshot of the data dir restored, a crash-looping service manager with a stale copy):
    // each start must still get a generation of its own. Reused, the two incarnations sign
    // different entries (each start has a fresh static key) under one generation and version,
    // the peers prove an equivocation and exclude the node.
    let root = tempfile::tempdir().unwrap();
    let (a, mut b, c) = Agent::three(root.path());
    let node_json = b.data_dir.join("node.json");
    let snapshot = std::fs::read(&node_json).unwrap();
    let g0 = b.generation;
    b.restart();
    let g1 = b.generation;
    // Let the peers learn the first incarnation (a rumor, milliseconds), then roll back.
    wait_for("alpha to see bravo's first restart", WAIT, || {
        let members = a.get("/v1/agent/members").ok()?;
        let bravo = members.as_array()?.iter().find(|m| m["Name"] == "bravo")?.clone();
        (bravo["Tags"]["generation"].as_str() == Some(g1.to_string().as_str())).then_some(())
    });
    std::fs::write(&node_json, &snapshot).unwrap();
    b.restart();
    let g2 = b.generation;
    println!("generations {g0} -> {g1} -> {g2} (second restart from the rolled-back node.json)");
    for x in [&a, &c] {
        wait_for("bravo's newest generation everywhere", WAIT, || {
            let members = x.get("/v1/agent/members").ok()?;
            let bravo = members.as_array()?.iter().find(|m| m["Name"] == "bravo")?.clone();
            (bravo["Tags"]["generation"].as_str() == Some(g2.to_string().as_str())).then_some(())
        });
    }
    // Give an equivocation, if there were one, the few exchanges it takes to be proven.
    std::thread::sleep(Duration::from_secs(5));
    for x in [&a, &c] {
        assert_eq!(x.metric("Gossip", "Equivocations"), 0, "{} proved an equivocation", x.opts.name);
        assert_eq!(x.alive_members(), vec!["alpha", "bravo", "charlie"], "{}", x.opts.name);
    }
    assert!(g1 > g0 && g2 > g1, "every start needs a generation of its own: {g0} -> {g1} -> {g2}");
}
