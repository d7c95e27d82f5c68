//! Several datacenters on loopback (docs/ARCHITECTURE.md, "Several datacenters"): three LAN
//! pools, `dc1`, `dc2` and `dc3`, joined by a WAN pool of some of their agents. Reads of another
//! datacenter, by DNS (`NAME.service.DC.gossip`, the node targets it names) and by HTTP
//! (`?dc=`), are answered by an agent there; `/v1/catalog/datacenters` and `members --wan` list
//! them; a datacenter whose WAN members are gone answers SERVFAIL and 500, and answers again
//! once one is back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(40);

fn wan_addr(a: &Agent) -> SocketAddr {
    let addrs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.data_dir.join("addrs.json")).expect("addrs.json")).expect("json");
    addrs["wan"].as_str().and_then(|s| s.parse().ok()).expect("a WAN address in addrs.json")
}

fn agent(
    root: &std::path::Path,
    name: &str,
    dc: &str,
    seeds: Vec<SocketAddr>,
    wan_seeds: Option<Vec<SocketAddr>>,
) -> Agent {
    let mut extra = vec!["--datacenter".to_string(), dc.to_string()];
    if let Some(ws) = wan_seeds {
        extra.extend(["--wan-bind".to_string(), "127.0.0.1:0".to_string()]);
        for s in ws {
            extra.extend(["--wan-seed".to_string(), s.to_string()]);
        }
    }
    Agent::start(root, Options { name: name.into(), seeds, extra, ..Default::default() })
}

fn register(a: &Agent, id: &str, name: &str, port: u16) {
    let body = format!(r#"{{"ID": "{id}", "Name": "{name}", "Port": {port}, "Address": "127.0.0.1"}}"#);
    let (status, text) = a.put("/v1/agent/service/register", &body);
    assert_eq!(status, 200, "register {id}: {text}");
}

fn wan_alive(a: &Agent) -> usize {
    a.get("/v1/agent/members?wan=1")
        .ok()
        .and_then(|v| v.as_array().map(|l| l.iter().filter(|m| m["Status"] == 1).count()))
        .unwrap_or(0)
}

#[test]
fn three_datacenters_answer_each_other_and_a_lost_one_is_servfail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // dc1: a1 in the WAN pool, a2 only in its LAN.
    let a1 = agent(root, "a1", "dc1", vec![], Some(vec![]));
    let a2 = agent(root, "a2", "dc1", vec![a1.gossip], None);
    // dc2: both in the WAN pool; dc3: one.
    let b1 = agent(root, "b1", "dc2", vec![], Some(vec![wan_addr(&a1)]));
    let b2 = agent(root, "b2", "dc2", vec![b1.gossip], Some(vec![wan_addr(&a1)]));
    let mut c1 = agent(root, "c1", "dc3", vec![], Some(vec![wan_addr(&b1)]));
    register(&b2, "web-1", "web", 8080);
    register(&c1, "api-1", "api", 9090);
    for x in [&a1, &b1, &b2, &c1] {
        wait_for("4 alive WAN members", WAIT, || (wan_alive(x) == 4).then_some(()));
    }
    let members = a1.get("/v1/agent/members?wan=1").expect("wan members");
    let mut names: Vec<String> =
        members.as_array().expect("list").iter().map(|m| m["Name"].as_str().unwrap_or("").to_string()).collect();
    names.sort();
    assert_eq!(names, ["a1.dc1", "b1.dc2", "b2.dc2", "c1.dc3"]);

    // DNS: another datacenter's service, with node targets that resolve there too.
    let started = Instant::now();
    let srv = wait_for("web in dc2 through dc1", WAIT, || {
        dns::udp(a1.dns, "web.service.dc2.gossip.", RecordType::SRV)
            .filter(|r| r.rcode == ResponseCode::NoError && !r.srv.is_empty())
    });
    eprintln!("first remote lookup answered after {:?}", started.elapsed());
    assert_eq!(srv.srv, vec![(8080, "b2.node.dc2.gossip.".to_string())]);
    let node = dns::udp(a1.dns, "b2.node.dc2.gossip.", RecordType::A).expect("reply");
    assert_eq!((node.rcode, node.addrs.clone()), (ResponseCode::NoError, vec!["127.0.0.1".parse().expect("ip")]));
    let api = dns::tcp(b1.dns, "api.service.dc3.gossip.", RecordType::SRV).expect("reply over TCP");
    assert_eq!(api.srv, vec![(9090, "c1.node.dc3.gossip.".to_string())], "dc2 reaches dc3 over TCP too");
    // The local datacenter's label still answers here, and an unknown service there is NXDOMAIN.
    let missing = dns::udp(a1.dns, "nothing.service.dc2.gossip.", RecordType::SRV).expect("reply");
    assert_eq!(missing.rcode, ResponseCode::NXDomain);
    if let Some(dig) = integration::peers::find("dig") {
        let out = std::process::Command::new(dig)
            .args(["@127.0.0.1", "-p", &a1.dns.port().to_string(), "+short", "web.service.dc2.gossip", "SRV"])
            .output()
            .expect("dig");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("8080 b2.node.dc2.gossip."), "dig: {text}");
    }

    // HTTP: ?dc= on health and catalog reads, forwarded with the answer's index.
    let (status, body) = a1.raw("GET", "/v1/health/service/web?dc=dc2&passing", &[], "");
    assert_eq!(status, 200, "{body}");
    let health = a1.get("/v1/health/service/web?dc=dc2&passing").expect("health of dc2");
    let list = health.as_array().expect("list");
    assert_eq!(list.len(), 1, "{health}");
    assert_eq!(list[0]["Service"]["Port"], 8080);
    assert_eq!(list[0]["Node"]["Datacenter"], "dc2");
    let nodes = a1.get("/v1/catalog/nodes?dc=dc2").expect("nodes of dc2");
    let mut node_names: Vec<&str> = nodes.as_array().expect("list").iter().filter_map(|n| n["Node"].as_str()).collect();
    node_names.sort_unstable();
    assert_eq!(node_names, ["b1", "b2"]);
    let dcs = a1.get("/v1/catalog/datacenters").expect("datacenters");
    let dcs: Vec<&str> = dcs.as_array().expect("list").iter().filter_map(|d| d.as_str()).collect();
    assert_eq!(dcs.first(), Some(&"dc1"), "the local datacenter first");
    assert_eq!(
        {
            let mut d = dcs.clone();
            d.sort_unstable();
            d
        },
        ["dc1", "dc2", "dc3"]
    );
    let (status, body) = a1.raw("GET", "/v1/health/service/web?dc=dc9", &[], "");
    assert_eq!((status, body.contains("No path to datacenter")), (500, true), "{body}");
    // An agent outside the WAN pool reaches other datacenters through a LAN member in it (a1's
    // `app/wan` record): DNS and ?dc= reads relayed, and the same answers.
    let relayed = wait_for("web in dc2 relayed through a1", WAIT, || {
        dns::udp(a2.dns, "web.service.dc2.gossip.", RecordType::SRV)
            .filter(|r| r.rcode == ResponseCode::NoError && !r.srv.is_empty())
    });
    assert_eq!(relayed.srv, vec![(8080, "b2.node.dc2.gossip.".to_string())]);
    let health = a2.get("/v1/health/service/web?dc=dc2&passing").expect("health of dc2 from a2");
    assert_eq!(health.as_array().map(Vec::len), Some(1), "{health}");
    assert_eq!(health[0]["Node"]["Datacenter"], "dc2");
    let (status, body) = a2.raw("GET", "/v1/health/service/web?dc=dc9", &[], "");
    assert_eq!((status, body.contains("No path to datacenter")), (500, true), "{body}");
    let (status, body) = a2.raw("GET", "/v1/agent/members?wan=1", &[], "");
    assert_eq!((status, body.contains("no WAN pool")), (400, true), "{body}");

    // A blocking read of another datacenter (from a WAN member, and relayed) returns when that
    // datacenter's index moves, with the change; an unchanged one returns the whole answer when
    // its wait is over (never a bodiless "unchanged").
    let read = |a: &Agent, q: &str| -> (u64, Vec<u64>) {
        let mut r = ureq::get(&format!("http://{}/v1/health/service/web?dc=dc2{q}", a.http)).call().expect("read");
        let index = r.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()?.parse().ok()).expect("index");
        let list: serde_json::Value = r.body_mut().read_json().expect("json");
        let ports = list.as_array().expect("list").iter().filter_map(|e| e["Service"]["Port"].as_u64()).collect();
        (index, ports)
    };
    let (index, ports) = read(&a1, "");
    assert_eq!(ports, [8080]);
    let (same, ports) = read(&a2, &format!("&index={index}&wait=1s"));
    assert_eq!(ports, [8080], "the whole answer at the end of the wait (index {index} -> {same})");
    let a1_http = a1.http;
    let blocked = std::thread::spawn(move || {
        let mut index = index;
        // Each return is a change of index; the loop ends when the change is the new instance.
        for _ in 0..20 {
            let url = format!("http://{a1_http}/v1/health/service/web?dc=dc2&index={index}&wait=30s");
            let mut r = ureq::get(&url).call().expect("blocking read");
            let next: u64 =
                r.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()?.parse().ok()).expect("index");
            assert_ne!(next, index, "a blocking read returned before its wait with an unmoved index");
            index = next;
            let list: serde_json::Value = r.body_mut().read_json().expect("json");
            if list.as_array().is_some_and(|l| l.len() == 2) {
                return list;
            }
        }
        panic!("the new instance never came back from a blocking read");
    });
    std::thread::sleep(Duration::from_secs(1));
    register(&b2, "web-9", "web", 8089);
    let list = blocked.join().expect("the blocking reader");
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let (status, _) = b2.send("PUT", "/v1/agent/service/deregister/web-9", "");
    assert_eq!(status, 200);
    wait_for("web-9 gone from dc2's answer", WAIT, || (read(&a1, "").1 == [8080]).then_some(()));
    // The status page lists the datacenters, nearest first, each reachable.
    if let Some(chrome) = integration::peers::require("chromium") {
        let tmp = root.join("chromium");
        std::fs::create_dir_all(&tmp).expect("chromium dir");
        let dom = integration::browser::dump_dom(&chrome, &tmp, &format!("http://{}/ui", a1.http));
        for dc in ["dc1", "dc2", "dc3"] {
            assert!(dom.contains(&format!("data-datacenter=\"{dc}\"")), "{dc} not on the status page:\n{dom}");
        }
        assert!(dom.contains("this datacenter"), "{dom}");
    }
    let out = std::process::Command::new(integration::agent::binary())
        .args(["members", "--wan", "--http", &a1.http.to_string()])
        .output()
        .expect("gossipd members --wan");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("c1.dc3") && table.contains("alive"), "{table}");

    // dc3 loses its only WAN member: its names answer SERVFAIL within the WAN pool's bound...
    c1.kill();
    let started = Instant::now();
    let lost = wait_for("SERVFAIL for dc3", WAIT, || {
        dns::udp(b1.dns, "api.service.dc3.gossip.", RecordType::SRV).filter(|r| r.rcode == ResponseCode::ServFail)
    });
    eprintln!("dc3 answered SERVFAIL {:?} after its WAN member was killed", started.elapsed());
    assert!(lost.srv.is_empty());
    let t = Instant::now();
    let (status, body) = b1.raw("GET", "/v1/health/service/api?dc=dc3", &[], "");
    eprintln!("and 500 over HTTP in {:?}", t.elapsed());
    assert_eq!((status, body.contains("No path to datacenter")), (500, true), "{body}");
    // Relayed through a1, whose WAN pool has no path either: SERVFAIL within the relay's bound.
    let t = Instant::now();
    let relayed = dns::udp_timeout(a2.dns, "api.service.dc3.gossip.", RecordType::SRV, Duration::from_secs(10));
    eprintln!("a2 (relayed) answered {:?} in {:?}", relayed.as_ref().map(|r| r.rcode), t.elapsed());
    assert_eq!(relayed.map(|r| r.rcode), Some(ResponseCode::ServFail));
    let metrics = b1.get("/v1/agent/metrics").expect("metrics");
    assert!(metrics["WAN"]["NoPath"].as_u64().unwrap_or(0) >= 1, "{}", metrics["WAN"]);
    assert!(metrics["DNS"]["RemoteFailures"].as_u64().unwrap_or(0) >= 1, "{}", metrics["DNS"]);
    // Per datacenter in Prometheus too: dc2's two members, dc3's reads that found no path.
    let (status, prom) = b1.raw("GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(prom.contains("gossipd_wan_members{datacenter=\"dc2\"} 2"), "{prom}");
    let lost = prom.lines().find(|l| l.starts_with("gossipd_wan_datacenter_no_path_total{datacenter=\"dc3\"}"));
    assert!(lost.is_some_and(|l| !l.ends_with(" 0")), "{prom}");

    // ...and answers again once it is back (a restart keeps its registration).
    c1.restart();
    let back = wait_for("dc3 again", WAIT, || {
        dns::udp(b1.dns, "api.service.dc3.gossip.", RecordType::SRV).filter(|r| r.rcode == ResponseCode::NoError)
    });
    assert_eq!(back.srv.len(), 1);
    drop(a2);
}

fn execute(a: &Agent, key: &str) -> serde_json::Value {
    a.get(&format!("/v1/query/{key}/execute")).expect("execute")
}

fn ports(v: &serde_json::Value) -> Vec<u64> {
    v["Nodes"].as_array().map(|l| l.iter().filter_map(|n| n["Service"]["Port"].as_u64()).collect()).unwrap_or_default()
}

#[test]
fn a_prepared_query_fails_over_to_another_datacenter_and_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut p1 = agent(root, "p1", "dc1", vec![], Some(vec![]));
    let p2 = agent(root, "p2", "dc1", vec![p1.gossip], None);
    let q1 = agent(root, "q1", "dc2", vec![], Some(vec![wan_addr(&p1)]));
    let r1 = agent(root, "r1", "dc3", vec![], Some(vec![wan_addr(&p1)]));
    let (status, text) = p1.put(
        "/v1/agent/service/register",
        r#"{"ID": "web-1", "Name": "web", "Port": 8081, "Address": "127.0.0.1", "Check": {"CheckID": "web-ttl", "TTL": "300s"}}"#,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(p1.put("/v1/agent/check/pass/web-ttl", "").0, 200);
    register(&q1, "web-2", "web", 8082);
    register(&r1, "web-3", "web", 8083);
    for x in [&p1, &q1, &r1] {
        wait_for("3 alive WAN members", WAIT, || (wan_alive(x) == 3).then_some(()));
    }

    // Bad definitions name the field; a good one is created on p1 and replicated to p2.
    let (status, body) = p1.send("POST", "/v1/query", r#"{"Name": "web ha", "Service": {"Service": "web"}}"#);
    assert_eq!((status, body.starts_with("Name")), (400, true), "{body}");
    let (status, body) =
        p1.send("POST", "/v1/query", r#"{"Name": "x", "Service": {"Service": "web", "Near": "_agent"}}"#);
    assert_eq!((status, body.contains("Near")), (400, true), "{body}");
    let def = r#"{"Name": "web-ha", "Service": {"Service": "web", "OnlyPassing": true, "Failover": {"NearestN": 1, "Datacenters": ["dc3", "dc2"]}}}"#;
    let (status, body) = p1.send("POST", "/v1/query", def);
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).expect("json")["ID"].as_str().expect("ID").to_string();
    let (status, body) = p1.send("POST", "/v1/query", def);
    assert_eq!((status, body.contains("already in use")), (400, true), "names are unique: {body}");
    wait_for("the query on p2", WAIT, || {
        p2.get("/v1/query").ok().filter(|l| l.as_array().is_some_and(|l| l.iter().any(|q| q["ID"] == id.as_str())))
    });
    let (status, body) = p2.send("DELETE", &format!("/v1/query/{id}"), "");
    assert_eq!((status, body.contains("held by agent p1")), (400, true), "{body}");

    // Healthy here: answered here, by ID and by name, by HTTP and DNS, on both dc1 agents.
    let e = execute(&p1, &id);
    assert_eq!(
        (e["Datacenter"].as_str(), e["Failovers"].as_u64(), ports(&e)),
        (Some("dc1"), Some(0), vec![8081]),
        "{e}"
    );
    let e = wait_for("p2 executes the query", WAIT, || Some(execute(&p2, "web-ha")).filter(|e| ports(e) == [8081]));
    assert_eq!(e["Datacenter"], "dc1");
    let srv = dns::udp(p1.dns, "web-ha.query.gossip.", RecordType::SRV).expect("reply");
    assert_eq!((srv.rcode, srv.srv.clone()), (ResponseCode::NoError, vec![(8081, "p1.node.gossip.".to_string())]));
    let none = dns::udp(p1.dns, "nothing.query.gossip.", RecordType::SRV).expect("reply");
    assert_eq!(none.rcode, ResponseCode::NXDomain);
    assert_eq!(p1.raw("GET", "/v1/query/nothing/execute", &[], "").0, 404);

    // The local instance goes critical: the nearest other datacenter answers.
    assert_eq!(p1.put("/v1/agent/check/fail/web-ttl", "").0, 200);
    let started = Instant::now();
    let e = wait_for("failover", WAIT, || Some(execute(&p1, &id)).filter(|e| e["Datacenter"] != "dc1"));
    eprintln!("failed over to {} {:?} after the check failed", e["Datacenter"], started.elapsed());
    assert_eq!(e["Failovers"], 1, "NearestN 1: the nearest datacenter first: {e}");
    let port = ports(&e)[0];
    assert!(port == 8082 || port == 8083, "{e}");
    let srv = dns::udp(p1.dns, "web-ha.query.gossip.", RecordType::SRV).expect("reply");
    assert_eq!(srv.srv.len(), 1, "{srv:?}");
    assert!(srv.srv[0].1.ends_with(".addr.gossip."), "a remote instance is named by address: {srv:?}");
    // p2 has no WAN pool: it fails over through p1's, in p1's nearest-first order (once p1's
    // failing check has reached it).
    let e2 =
        wait_for("p2 fails over through p1", WAIT, || Some(execute(&p2, &id)).filter(|e| e["Datacenter"] != "dc1"));
    assert_eq!(e2["Failovers"], 1, "NearestN 1 through the relay: {e2}");
    let port = ports(&e2).first().copied();
    assert!(port == Some(8082) || port == Some(8083), "{e2}");
    let dcs = p2.get("/v1/catalog/datacenters").expect("datacenters from p2");
    let mut dcs: Vec<&str> = dcs.as_array().expect("list").iter().filter_map(|d| d.as_str()).collect();
    assert_eq!(dcs.first(), Some(&"dc1"), "the local datacenter first");
    dcs.sort_unstable();
    assert_eq!(dcs, ["dc1", "dc2", "dc3"], "p1's order, relayed");

    // Back when the local instance recovers.
    assert_eq!(p1.put("/v1/agent/check/pass/web-ttl", "").0, 200);
    let started = Instant::now();
    wait_for("back home", WAIT, || Some(execute(&p1, &id)).filter(|e| e["Datacenter"] == "dc1" && ports(e) == [8081]));
    eprintln!("back in dc1 {:?} after the check passed", started.elapsed());

    // ?dc= executes another datacenter's prepared query there, from a WAN member or not.
    let (status, body) = q1.send("POST", "/v1/query", r#"{"Name": "web-dc2", "Service": {"Service": "web"}}"#);
    assert_eq!(status, 200, "{body}");
    for x in [&p1, &p2] {
        let e = x.get("/v1/query/web-dc2/execute?dc=dc2").expect("execute in dc2");
        assert_eq!((e["Datacenter"].as_str(), ports(&e)), (Some("dc2"), vec![8082]), "{e}");
    }
    let (status, _) = p1.raw("GET", "/v1/query/web-dc2/execute", &[], "");
    assert_eq!(status, 404, "dc2's query is not dc1's");

    // The query survives a restart of the agent that holds it, and is deleted there.
    p1.restart();
    wait_for("the query after p1's restart", WAIT, || {
        p1.get(&format!("/v1/query/{id}")).ok().filter(|l| l[0]["Name"] == "web-ha")
    });
    let (status, body) = p1.send("DELETE", &format!("/v1/query/{id}"), "");
    assert_eq!(status, 200, "{body}");
    wait_for("the query gone from p2", WAIT, || {
        p2.get("/v1/query").ok().filter(|l| l.as_array().is_some_and(|l| l.is_empty()))
    });
}

#[test]
fn the_wan_pool_follows_each_datacenters_keyring_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let x1 = agent(root, "x1", "dc1", vec![], Some(vec![]));
    let y1 = agent(root, "y1", "dc2", vec![], Some(vec![wan_addr(&x1)]));
    register(&y1, "web-y", "web", 8090);
    for x in [&x1, &y1] {
        wait_for("2 alive WAN members", WAIT, || (wan_alive(x) == 2).then_some(()));
    }
    let out = std::process::Command::new(integration::agent::binary()).arg("keygen").output().expect("keygen");
    let new = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let old = integration::agent::TEST_KEY.to_string();
    let body = |k: &str| format!(r#"{{"Key":"{k}"}}"#);
    // The same rotation in each datacenter (each its own LAN keyring): install, use, remove.
    for (method, key) in [("POST", &new), ("PUT", &new), ("DELETE", &old)] {
        for x in [&x1, &y1] {
            let (status, msg) = x.send(method, "/v1/operator/keyring", &body(key));
            assert_eq!(status, 200, "{method} on {}: {msg}", x.opts.name);
        }
    }
    assert!(x1.log().contains("the WAN pool follows the LAN keyring"), "{}", x1.log());
    // A third datacenter's agent that holds only the new key joins the WAN pool (the pool took
    // the rotation: it would refuse every handshake of that key otherwise) and reads dc2.
    let key_file = root.join("new.key");
    std::fs::write(&key_file, &new).expect("key file");
    let z1 = Agent::start(
        root,
        Options {
            name: "z1".into(),
            extra: ["--datacenter", "dc3", "--wan-bind", "127.0.0.1:0", "--wan-seed", &wan_addr(&x1).to_string()]
                .map(String::from)
                .to_vec(),
            cluster_key_file: Some(key_file),
            ..Default::default()
        },
    );
    for x in [&x1, &y1, &z1] {
        wait_for("3 alive WAN members under the new key", WAIT, || (wan_alive(x) == 3).then_some(()));
    }
    let srv = wait_for("web in dc2 from dc3", WAIT, || {
        dns::udp(z1.dns, "web.service.dc2.gossip.", RecordType::SRV).filter(|r| !r.srv.is_empty())
    });
    assert_eq!(srv.srv, vec![(8090, "y1.node.dc2.gossip.".to_string())]);
}
