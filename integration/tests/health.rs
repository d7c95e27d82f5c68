//! Health checks on real agents: an HTTP check against a server the test runs, a TTL check
//! driven through the API, `DeregisterCriticalServiceAfter`, and malformed definitions. The
//! instance's health is decided on its own agent and observed through another agent's DNS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options};
use integration::{dns, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn two(root: &std::path::Path) -> (Agent, Agent) {
    let a = Agent::start(root, Options { name: "alpha".into(), ..Default::default() });
    let b = Agent::start(root, Options { name: "bravo".into(), seeds: vec![a.gossip], ..Default::default() });
    for x in [&a, &b] {
        wait_for("2 alive members everywhere", WAIT, || (x.alive_members().len() == 2).then_some(()));
    }
    (a, b)
}

/// A tiny HTTP server answering 200 while `healthy`, else 500.
fn health_server(healthy: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let (code, body) = if healthy.load(Ordering::SeqCst) { ("200 OK", "ok") } else { ("500 Oops", "down") };
            let _ = write!(s, "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    addr
}

fn in_dns(agent: &Agent, name: &str) -> Option<()> {
    dns::udp(agent.dns, name, RecordType::SRV)
        .filter(|r| r.rcode == ResponseCode::NoError && !r.srv.is_empty())
        .map(drop)
}

fn out_of_dns(agent: &Agent, name: &str) -> Option<()> {
    dns::udp(agent.dns, name, RecordType::SRV).filter(|r| r.rcode == ResponseCode::NXDomain).map(drop)
}

fn health(agent: &Agent, path: &str) -> Vec<Value> {
    agent.get(path).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
}

fn check_status(entry: &Value, check_id: &str) -> Option<String> {
    entry["Checks"].as_array()?.iter().find(|c| c["CheckID"] == check_id)?["Status"].as_str().map(str::to_owned)
}

#[test]
fn a_failing_http_check_takes_the_instance_out_of_another_agents_dns() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two(root.path());
    let healthy = Arc::new(AtomicBool::new(true));
    let server = health_server(healthy.clone());
    let body = format!(
        r#"{{"ID":"web-1","Name":"web","Address":"127.0.0.42","Port":8080,
            "Check":{{"HTTP":"http://{server}/health","Interval":"200ms","Timeout":"1s"}}}}"#
    );
    let (status, text) = a.put("/v1/agent/service/register", &body);
    assert_eq!(status, 200, "{text}");
    wait_for("web in bravo's DNS", WAIT, || in_dns(&b, "web.service.gossip."));
    wait_for("the check to have run", WAIT, || {
        let checks = a.get("/v1/agent/checks").ok()?;
        let c = &checks["service:web-1"];
        (c["Status"] == "passing" && c["Output"].as_str()?.contains("200")).then_some(())
    });

    healthy.store(false, Ordering::SeqCst);
    wait_for("web to leave bravo's DNS", WAIT, || out_of_dns(&b, "web.service.gossip."));
    // The owner shows the real check; another agent the aggregate under the same id.
    let local = wait_for("the critical check on alpha", WAIT, || {
        let list = health(&a, "/v1/health/service/web");
        (list.len() == 1 && check_status(&list[0], "service:web-1").as_deref() == Some("critical")).then_some(list)
    });
    let check = local[0]["Checks"].as_array().unwrap().iter().find(|c| c["CheckID"] == "service:web-1").unwrap();
    assert!(check["Output"].as_str().unwrap().contains("500"), "{check}");
    assert_eq!(check["ServiceID"], "web-1");
    // Another agent shows why (#14): the owner's check note, a bounded summary of the output.
    let remote = wait_for("the critical aggregate, with its reason, on bravo", WAIT, || {
        let list = health(&b, "/v1/health/service/web");
        let ok = list.len() == 1 && check_status(&list[0], "service:web-1").as_deref() == Some("critical");
        let output = list.first()?["Checks"].as_array()?.iter().find(|c| c["CheckID"] == "service:web-1")?["Output"]
            .as_str()?
            .to_owned();
        (ok && !output.is_empty()).then_some(output)
    });
    assert!(remote.contains("500") && remote.len() <= gossip_core::MAX_NOTE, "{remote}");
    for x in [&a, &b] {
        assert!(health(x, "/v1/health/service/web?passing").is_empty());
    }

    healthy.store(true, Ordering::SeqCst);
    wait_for("web back in bravo's DNS", WAIT, || in_dns(&b, "web.service.gossip."));
    for x in [&a, &b] {
        let list = wait_for("web passing again", WAIT, || {
            let list = health(x, "/v1/health/service/web?passing");
            (list.len() == 1).then_some(list)
        });
        assert_eq!(list[0]["Service"]["ID"], "web-1");
    }
    // Passing again: the note is gone from bravo's answer.
    let list = health(&b, "/v1/health/service/web");
    let check = list[0]["Checks"].as_array().unwrap().iter().find(|c| c["CheckID"] == "service:web-1").unwrap();
    assert_eq!(check["Output"], "", "{check}");
}

#[test]
fn a_ttl_check_is_driven_by_the_api_and_expires() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = two(root.path());
    let (status, text) = a.put(
        "/v1/agent/service/register",
        r#"{"ID":"batch-1","Name":"batch","Port":9000,"Check":{"CheckID":"batch-ttl","Name":"heartbeat","TTL":"3s"}}"#,
    );
    assert_eq!(status, 200, "{text}");
    // TTL checks start critical.
    let checks = a.get("/v1/agent/checks").unwrap();
    assert_eq!(checks["batch-ttl"]["Status"], "critical", "{checks}");
    assert_eq!(checks["batch-ttl"]["ServiceID"], "batch-1");
    assert_eq!(checks["batch-ttl"]["Name"], "heartbeat");
    assert_eq!(checks["batch-ttl"]["Node"], "alpha");
    wait_for("batch in bravo's catalog", WAIT, || (health(&b, "/v1/health/service/batch").len() == 1).then_some(()));
    assert!(out_of_dns(&b, "batch.service.gossip.").is_some());

    let (status, _) = a.put("/v1/agent/check/pass/batch-ttl?note=all%20good", "");
    assert_eq!(status, 200);
    let checks = a.get("/v1/agent/checks").unwrap();
    assert_eq!(checks["batch-ttl"]["Status"], "passing");
    assert_eq!(checks["batch-ttl"]["Output"], "all good");
    wait_for("batch in bravo's DNS", WAIT, || in_dns(&b, "batch.service.gossip."));

    // No update past the TTL: out.
    wait_for("batch to leave bravo's DNS after the TTL", WAIT, || out_of_dns(&b, "batch.service.gossip."));
    let checks = a.get("/v1/agent/checks").unwrap();
    assert_eq!(checks["batch-ttl"]["Status"], "critical");
    assert!(checks["batch-ttl"]["Output"].as_str().unwrap().contains("TTL expired"), "{checks}");

    // warn keeps it out of DNS (only passing is answered) but in the catalog as warning.
    let (status, _) = a.put("/v1/agent/check/warn/batch-ttl", "");
    assert_eq!(status, 200);
    let list = health(&a, "/v1/health/service/batch");
    assert_eq!(check_status(&list[0], "batch-ttl").as_deref(), Some("warning"), "{list:?}");
    assert!(out_of_dns(&b, "batch.service.gossip.").is_some());

    let (status, _) = a.put("/v1/agent/check/pass/batch-ttl", "");
    assert_eq!(status, 200);
    wait_for("batch back in bravo's DNS", WAIT, || in_dns(&b, "batch.service.gossip."));
    let (status, _) = a.put("/v1/agent/check/fail/batch-ttl", "");
    assert_eq!(status, 200);
    wait_for("batch out after fail", WAIT, || out_of_dns(&b, "batch.service.gossip."));

    // Unknown ids are 404; checks leave with their service.
    let (status, _) = a.put("/v1/agent/check/pass/nope", "");
    assert_eq!(status, 404);
    let (status, _) = a.put("/v1/agent/service/deregister/batch-1", "");
    assert_eq!(status, 200);
    assert_eq!(a.get("/v1/agent/checks").unwrap(), serde_json::json!({}));
    let (status, _) = a.put("/v1/agent/check/pass/batch-ttl", "");
    assert_eq!(status, 404);
}

#[test]
fn a_service_critical_too_long_is_deregistered_and_forgotten() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let (status, text) = a.put(
        "/v1/agent/service/register",
        r#"{"Name":"flaky","Port":1,"Checks":[{"TTL":"1s","DeregisterCriticalServiceAfter":"1s"}]}"#,
    );
    assert_eq!(status, 200, "{text}");
    wait_for("flaky to be deregistered", WAIT, || {
        let services = a.get("/v1/agent/services").ok()?;
        services.as_object()?.is_empty().then_some(())
    });
    let stored = std::fs::read_to_string(a.data_dir.join("services.json")).unwrap();
    assert!(!stored.contains("flaky"), "{stored}");
    assert!(health(&a, "/v1/health/service/flaky").is_empty());
}

#[test]
fn malformed_check_definitions_are_refused_naming_the_field() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    for (body, want) in [
        (r#"{"Name":"web","Check":{"HTTP":"http://127.0.0.1:1/"}}"#, "Checks[0].Interval: required for HTTP checks"),
        (r#"{"Name":"web","Checks":[{"TTL":"1s"},{"TCP":"x:1","Interval":"often"}]}"#, "Checks[1].Interval"),
        (r#"{"Name":"web","Check":{"TTL":"1s","Status":"fine"}}"#, "Checks[0].Status"),
        (r#"{"Name":"web","Check":{"Interval":"1s"}}"#, "Checks[0]: must have one of HTTP, TCP, Args, TTL"),
    ] {
        let (status, text) = a.put("/v1/agent/service/register", body);
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(want), "{body}: got {text:?}, want {want:?}");
    }
    assert_eq!(a.get("/v1/agent/services").unwrap(), serde_json::json!({}));

    // Two services cannot share a check id.
    let (status, text) = a.put("/v1/agent/service/register", r#"{"Name":"one","Check":{"CheckID":"hb","TTL":"10s"}}"#);
    assert_eq!(status, 200, "{text}");
    let (status, text) = a.put("/v1/agent/service/register", r#"{"Name":"two","Check":{"CheckID":"hb","TTL":"10s"}}"#);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("already used by service \"one\""), "{text}");

    // A bad check in the config directory stops the agent at start, naming file and field.
    let conf = root.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("web.json"), r#"{"service": {"name": "web", "check": {"tcp": "x:1"}}}"#).unwrap();
    let err = integration::agent::start_expecting_failure(
        &root.path().join("bad"),
        &["--config-dir".as_ref(), conf.as_os_str()],
    );
    assert!(err.contains("web.json") && err.contains("service.Checks[0].Interval: required for TCP checks"), "{err}");
}
