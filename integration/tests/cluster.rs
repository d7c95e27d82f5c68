//! Three real agents on loopback joined through one seed: a registration on one is answered
//! by another's DNS; deregistration and graceful leave disappear everywhere.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn registration_on_one_agent_is_answered_by_another_agents_dns() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = Agent::three(root.path());
    assert_eq!(a.alive_members(), vec!["alpha", "bravo", "charlie"]);

    let (status, body) = a.put(
        "/v1/agent/service/register",
        r#"{"ID":"web-1","Name":"web","Address":"127.0.0.42","Port":8080,"Tags":["v1"]}"#,
    );
    assert_eq!(status, 200, "{body}");

    // A over UDP on charlie.
    let reply = wait_for("web on charlie's DNS", WAIT, || {
        dns::udp(c.dns, "web.service.gossip.", RecordType::A).filter(|r| r.rcode == ResponseCode::NoError)
    });
    assert_eq!(reply.addrs, vec!["127.0.0.42".parse::<IpAddr>().unwrap()]);

    // SRV, with the target's address in the additional section, over UDP and TCP.
    for reply in [
        dns::udp(c.dns, "web.service.gossip.", RecordType::SRV).unwrap(),
        dns::tcp(c.dns, "web.service.gossip.", RecordType::SRV).unwrap(),
        dns::udp(c.dns, "_web._tcp.service.gossip.", RecordType::SRV).unwrap(),
        dns::udp(c.dns, "v1.web.service.gossip.", RecordType::SRV).unwrap(),
    ] {
        assert_eq!(reply.rcode, ResponseCode::NoError);
        assert_eq!(reply.srv.len(), 1, "{reply:?}");
        assert_eq!(reply.srv[0].0, 8080);
        let target = &reply.srv[0].1;
        assert!(reply.additional.iter().any(|(n, ip)| n == target && *ip == "127.0.0.42".parse::<IpAddr>().unwrap()));
    }
    // A tag nobody has, and a name that does not exist: NXDOMAIN with SOA.
    let r = dns::udp(c.dns, "v2.web.service.gossip.", RecordType::SRV).unwrap();
    assert_eq!(r.rcode, ResponseCode::NXDomain);
    assert!(r.soa_in_authority);
    // The node name answers too.
    let r = dns::udp(b.dns, "alpha.node.gossip.", RecordType::A).unwrap();
    assert_eq!(r.addrs, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);

    // The catalog API on bravo shows it with Consul's field names.
    let list = wait_for("web in bravo's catalog", WAIT, || {
        b.get("/v1/catalog/service/web").ok().filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    });
    assert_eq!(list[0]["ServiceID"], "web-1");
    assert_eq!(list[0]["Node"], "alpha");
    assert_eq!(list[0]["ServicePort"], 8080);

    // Deregistration disappears everywhere.
    let (status, body) = a.put("/v1/agent/service/deregister/web-1", "");
    assert_eq!(status, 200, "{body}");
    for x in [&a, &b, &c] {
        wait_for("web to leave DNS", WAIT, || {
            dns::udp(x.dns, "web.service.gossip.", RecordType::A).filter(|r| r.rcode == ResponseCode::NXDomain)
        });
    }
    let (status, _) = a.put("/v1/agent/service/deregister/web-1", "");
    assert_eq!(status, 404);
}

#[test]
fn graceful_leave_removes_services_at_once() {
    let root = tempfile::tempdir().unwrap();
    let (a, mut b, c) = Agent::three(root.path());
    let (status, body) = b.put("/v1/agent/service/register", r#"{"Name":"cache","Port":6379}"#);
    assert_eq!(status, 200, "{body}");
    wait_for("cache on charlie", WAIT, || {
        dns::udp(c.dns, "cache.service.gossip.", RecordType::SRV).filter(|r| r.srv.len() == 1)
    });
    let status = b.interrupt();
    assert!(status.success(), "SIGINT should exit 0, got {status}");
    for x in [&a, &c] {
        wait_for("cache to leave after bravo's leave", Duration::from_secs(3), || {
            dns::udp(x.dns, "cache.service.gossip.", RecordType::SRV).filter(|r| r.rcode == ResponseCode::NXDomain)
        });
        wait_for("bravo to be shown as left", Duration::from_secs(3), || {
            (x.alive_members() == vec!["alpha", "charlie"]).then_some(())
        });
    }
}

#[test]
fn a_node_joins_through_any_seed_that_answers() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    // The first seed is a port nobody listens on.
    let dead: std::net::SocketAddr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let b =
        Agent::start(root.path(), Options { name: "bravo".into(), seeds: vec![dead, a.gossip], ..Default::default() });
    wait_for("bravo to join through the live seed", WAIT, || (b.alive_members().len() == 2).then_some(()));
    // Each member shows the wire protocol range it speaks and the version spoken with it
    // (Consul's `vsn_min`, `vsn_max`, `vsn` tags), in the API and in `gossipd members`.
    let members = b.get("/v1/agent/members").unwrap();
    for m in members.as_array().unwrap() {
        let tags = &m["Tags"];
        assert_eq!((&tags["vsn_min"], &tags["vsn_max"], &tags["vsn"]), (&"5".into(), &"7".into(), &"7".into()), "{m}");
    }
    let out = std::process::Command::new(integration::agent::binary())
        .args(["members", "--http", &b.http.to_string()])
        .output()
        .expect("run gossipd members");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PROTOCOL") && text.contains("7 (5..=7)"), "members output:\n{text}");
}

#[test]
fn a_seed_that_starts_later_is_retried() {
    let root = tempfile::tempdir().unwrap();
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let b = Agent::start(root.path(), Options { name: "bravo".into(), seeds: vec![port], ..Default::default() });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b.alive_members(), vec!["bravo"]);
    let a = Agent::start(root.path(), Options { name: "alpha".into(), bind: Some(port), ..Default::default() });
    // Backoff is capped at 30 s; the first retries come within a few seconds.
    wait_for("bravo to find the late seed", Duration::from_secs(20), || (a.alive_members().len() == 2).then_some(()));
}

#[test]
fn a_sigkilled_agent_leaves_every_answer_and_shows_failed() {
    let root = tempfile::tempdir().unwrap();
    let (a, mut b, c) = Agent::three(root.path());
    let (status, _) = b.put("/v1/agent/service/register", r#"{"Name":"fragile","Port":7}"#);
    assert_eq!(status, 200);
    for x in [&a, &c] {
        wait_for("fragile everywhere", WAIT, || {
            dns::udp(x.dns, "fragile.service.gossip.", RecordType::SRV).filter(|r| r.srv.len() == 1)
        });
    }
    let killed = std::time::Instant::now();
    b.kill();
    for x in [&a, &c] {
        wait_for("fragile to leave after bravo died", Duration::from_secs(30), || {
            dns::udp(x.dns, "fragile.service.gossip.", RecordType::SRV).filter(|r| r.rcode == ResponseCode::NXDomain)
        });
        wait_for("bravo shown failed (Status 4)", Duration::from_secs(10), || {
            let m = x.get("/v1/agent/members").ok()?;
            let bravo = m.as_array()?.iter().find(|m| m["Name"] == "bravo")?.clone();
            (bravo["Status"] == 4).then_some(())
        });
    }
    eprintln!("SIGKILL to removal on both survivors: {:?}", killed.elapsed());
    // Restarted, it is alive again everywhere and serves again.
    b.restart();
    for x in [&a, &c] {
        wait_for("bravo back", Duration::from_secs(30), || (x.alive_members().len() == 3).then_some(()));
        wait_for("fragile back", WAIT, || {
            dns::udp(x.dns, "fragile.service.gossip.", RecordType::SRV).filter(|r| r.srv.len() == 1)
        });
    }
}
