//! Operations on real agents: the Prometheus exposition at `/metrics` after a cluster formed
//! and answered DNS, and SIGHUP reloading `--config-dir` without a restart.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn get_text(agent: &Agent, path: &str) -> Option<(String, String)> {
    let mut resp = ureq::get(&format!("http://{}{}", agent.http, path)).call().ok()?;
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    Some((ct, resp.body_mut().read_to_string().ok()?))
}

/// Samples by series (`name` or `name{labels}`); comments skipped.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            (series.to_string(), value.parse().unwrap_or_else(|_| panic!("bad value {l:?}")))
        })
        .collect()
}

/// DNS responses sent, all codes.
fn answered(m: &BTreeMap<String, f64>) -> f64 {
    m.iter().filter(|(k, _)| k.starts_with("gossipd_dns_responses_total{")).map(|(_, v)| v).sum()
}

fn scrape(agent: &Agent) -> BTreeMap<String, f64> {
    let (ct, text) = get_text(agent, "/metrics").expect("GET /metrics");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "content type {ct:?}");
    samples(&text)
}

#[test]
fn prometheus_metrics_after_a_cluster_forms() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let b = Agent::start(root.path(), Options { name: "bravo".into(), seeds: vec![a.gossip], ..Default::default() });
    let c = Agent::start(root.path(), Options { name: "charlie".into(), seeds: vec![a.gossip], ..Default::default() });
    let (status, body) = b.put("/v1/agent/service/register", r#"{"ID":"web-1","Name":"web","Port":8080}"#);
    assert_eq!(status, 200, "{body}");
    wait_for("web on alpha's DNS", WAIT, || {
        dns::udp(a.dns, "web.service.gossip.", RecordType::SRV)
            .filter(|r| r.rcode == ResponseCode::NoError && r.srv.len() == 1)
    });
    let _ = dns::udp(a.dns, "nope.service.gossip.", RecordType::SRV).expect("NXDOMAIN reply");
    let _ = dns::udp(a.dns, "web.service.gossip.", RecordType::A).expect("A reply");
    let _ = dns::tcp(a.dns, "web.service.gossip.", RecordType::AAAA).expect("AAAA reply over TCP");
    let _ = dns::udp(a.dns, "example.com.", RecordType::A).expect("REFUSED reply");
    // An outsider's junk: dropped before any cryptography, and counted.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in 0..3u8 {
        junk.send_to(&[n; 64], a.gossip).unwrap();
    }

    let m = wait_for("3 alive members, a round and the junk counted in alpha's metrics", WAIT, || {
        let m = scrape(&a);
        let junk_seen = m.get("gossipd_secure_dropped_unauthenticated_total").is_some_and(|v| *v >= 3.0);
        // A response is counted before it is sent, its latency just after.
        let timed = m.get("gossipd_dns_query_duration_seconds_count") == Some(&answered(&m));
        // Joining is faster than a round (1 s, the first at a random point): wait for one.
        let rounds = m.get("gossipd_gossip_rounds_total").is_some_and(|v| *v > 0.0);
        (m.get("gossipd_members{state=\"alive\"}") == Some(&3.0) && junk_seen && timed && rounds).then_some(m)
    });
    // Every family the operations guide lists, with a value that shows it is wired up.
    for series in [
        "gossipd_members{state=\"alive\"}",
        "gossipd_catalog_services",
        "gossipd_catalog_instances",
        "gossipd_catalog_index",
        "gossipd_gossip_rounds_total",
        "gossipd_gossip_datagrams_in_total",
        "gossipd_gossip_datagrams_out_total",
        "gossipd_gossip_bytes_in_total",
        "gossipd_gossip_bytes_out_total",
        "gossipd_secure_handshakes_completed_total",
        "gossipd_secure_dropped_unauthenticated_total",
        "gossipd_dns_responses_total{rcode=\"noerror\"}",
        "gossipd_dns_responses_total{rcode=\"nxdomain\"}",
        "gossipd_dns_responses_total{rcode=\"refused\"}",
        "gossipd_dns_queries_total{type=\"srv\"}",
        "gossipd_dns_queries_total{type=\"a\"}",
        "gossipd_dns_queries_total{type=\"aaaa\"}",
        "gossipd_dns_query_duration_seconds_count",
        "gossipd_dns_query_duration_seconds_sum",
        "gossipd_dns_query_duration_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(m.get(series).is_some_and(|v| *v > 0.0), "{series} should be > 0: {m:?}");
    }
    // alpha is the seed: the others initiate.
    let joined = scrape(&b);
    assert!(joined.get("gossipd_secure_handshakes_initiated_total").is_some_and(|v| *v > 0.0), "{joined:?}");
    // Counters that an honest cluster legitimately leaves at zero (provoking them takes a
    // member that sends what does not decrypt): present, and zero here.
    for series in [
        "gossipd_secure_decrypt_failures_total",
        "gossipd_secure_bans_total",
        "gossipd_secure_banned_drops_total",
        "gossipd_gossip_forged_records_total",
        "gossipd_gossip_incomplete_states_total",
        "gossipd_gossip_incomplete_pulls_total",
    ] {
        assert_eq!(m.get(series), Some(&0.0), "{series} should be present and 0");
    }
    // The latency histogram: cumulative buckets ending at +Inf = _count, which counts every
    // query answered (5 above, and any retries of the wait for web).
    let buckets: Vec<(String, f64)> = m
        .iter()
        .filter(|(k, _)| k.starts_with("gossipd_dns_query_duration_seconds_bucket{"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(buckets.len() >= 2, "{buckets:?}");
    let count = m["gossipd_dns_query_duration_seconds_count"];
    assert!(count >= 5.0, "{count}");
    assert_eq!(m["gossipd_dns_query_duration_seconds_bucket{le=\"+Inf\"}"], count);
    assert!(buckets.iter().all(|(_, v)| *v <= count), "{buckets:?}");
    assert_eq!(answered(&m), count, "one latency observation per response");
    let (_, text) = get_text(&a, "/metrics").unwrap();
    assert!(text.contains("# TYPE gossipd_dns_query_duration_seconds histogram\n"), "{text}");
    assert_eq!(m.get("gossipd_members{state=\"failed\"}"), Some(&0.0));
    assert_eq!(m.get("gossipd_self_preservation"), Some(&0.0));

    // The same text under the agent path with ?format=prometheus; the JSON is kept without it.
    let (ct, text) = get_text(&c, "/v1/agent/metrics?format=prometheus").expect("prometheus format");
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(samples(&text).contains_key("gossipd_gossip_rounds_total"));
    assert!(c.get("/v1/agent/metrics").expect("JSON metrics")["Gossip"]["Rounds"].is_u64());
}

fn write_service(dir: &std::path::Path, file: &str, id: &str, name: &str, port: u16) {
    let body = format!(r#"{{"service": {{"id": "{id}", "name": "{name}", "port": {port}}}}}"#);
    std::fs::write(dir.join(file), body).unwrap();
}

fn hup(agent: &Agent) {
    let pid = agent.child.as_ref().expect("running").id().to_string();
    let status = Command::new("kill").arg("-HUP").arg(&pid).status().expect("kill -HUP");
    assert!(status.success());
}

fn answers(agent: &Agent, name: &str) -> bool {
    dns::udp(agent.dns, name, RecordType::SRV).is_some_and(|r| r.rcode == ResponseCode::NoError && r.srv.len() == 1)
}

fn nxdomain(agent: &Agent, name: &str) -> bool {
    dns::udp(agent.dns, name, RecordType::SRV).is_some_and(|r| r.rcode == ResponseCode::NXDomain)
}

#[test]
fn sighup_reloads_the_config_dir() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("conf.d");
    std::fs::create_dir_all(&conf).unwrap();
    write_service(&conf, "old.json", "old-1", "old", 1111);
    let mut a = Agent::start(
        root.path(),
        Options { name: "alpha".into(), config_dir: Some(conf.clone()), ..Default::default() },
    );
    wait_for("old served", WAIT, || answers(&a, "old.service.gossip.").then_some(()));
    let (status, body) = a.put("/v1/agent/service/register", r#"{"ID":"api-1","Name":"viaapi","Port":2222}"#);
    assert_eq!(status, 200, "{body}");

    // A broken directory changes nothing and the agent survives.
    std::fs::write(conf.join("broken.json"), "{ not json").unwrap();
    hup(&a);
    wait_for("the failed reload in the log", WAIT, || a.log().contains("reload failed").then_some(()));
    assert!(answers(&a, "old.service.gossip."), "old must stay after a failed reload");
    std::fs::remove_file(conf.join("broken.json")).unwrap();

    write_service(&conf, "new.json", "new-1", "new", 3333);
    std::fs::remove_file(conf.join("old.json")).unwrap();
    hup(&a);
    wait_for("new served", WAIT, || answers(&a, "new.service.gossip.").then_some(()));
    wait_for("old gone", WAIT, || nxdomain(&a, "old.service.gossip.").then_some(()));
    assert!(answers(&a, "viaapi.service.gossip."), "API registrations survive a reload");
    let services = a.get("/v1/agent/services").unwrap();
    let ids: Vec<&String> = services.as_object().unwrap().keys().collect();
    assert_eq!(ids, ["api-1", "new-1"], "{services}");
    assert!(a.child.as_mut().unwrap().try_wait().unwrap().is_none(), "still running after SIGHUP");

    // The reload was persisted: a restart serves the same set.
    a.restart();
    wait_for("new served after restart", WAIT, || answers(&a, "new.service.gossip.").then_some(()));
    assert!(nxdomain(&a, "old.service.gossip."));
    assert!(answers(&a, "viaapi.service.gossip."));
}

#[test]
fn a_write_through_the_api_is_read_back_at_once_from_the_same_agent() {
    // Views are rebuilt at most once per 20 ms, but a write is answered only once it is in them:
    // back-to-back registrations, each read back (catalog, health, DNS) the moment its PUT returns.
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    for i in 0..30 {
        let body = format!(r#"{{"ID":"rw-{i}","Name":"rw{i}","Port":{},"Check":{{"TTL":"30s"}}}}"#, 9000 + i);
        let (status, text) = a.put("/v1/agent/service/register", &body);
        assert_eq!(status, 200, "{text}");
        let listed = a.get(&format!("/v1/catalog/service/rw{i}")).unwrap();
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "registration {i} not in the catalog yet: {listed}");
        // Its TTL check starts critical: not yet in DNS. Passing it puts it there at once.
        let (status, text) = a.put(&format!("/v1/agent/check/pass/service:rw-{i}"), "");
        assert_eq!(status, 200, "{text}");
        let health = a.get(&format!("/v1/health/service/rw{i}?passing")).unwrap();
        assert_eq!(health.as_array().map(Vec::len), Some(1), "check {i} not passing in health yet: {health}");
        let reply = dns::udp(a.dns, &format!("rw{i}.service.gossip."), RecordType::SRV).expect("a DNS reply");
        assert_eq!((reply.rcode, reply.srv.len()), (ResponseCode::NoError, 1), "instance {i} not in DNS yet");
    }
}

/// HTTP service lookups ignore ASCII case, as DNS does; `filter` is refused on the agent
/// endpoints as on catalog and health ones, never silently ignored.
#[test]
fn service_names_ignore_case_and_filter_is_refused_everywhere() {
    let root = tempfile::tempdir().unwrap();
    let a = integration::agent::Agent::start(
        root.path(),
        integration::agent::Options { name: "alpha".into(), ..Default::default() },
    );
    let (status, body) = a.put("/v1/agent/service/register", r#"{"ID":"web-1","Name":"web","Port":80}"#);
    assert_eq!(status, 200, "{body}");
    for path in ["/v1/catalog/service/WEB", "/v1/health/service/Web", "/v1/health/checks/wEb"] {
        let v = a.get(path).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{path}: {v}");
    }
    for path in ["/v1/agent/services?filter=x", "/v1/agent/checks?filter=x", "/v1/catalog/services?filter=x"] {
        let err = a.get(path).expect_err("filter refused");
        assert!(err.contains("400"), "{path}: {err}");
    }
}
