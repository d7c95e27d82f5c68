//! Consul's and Serf's CLI habits against real agents: `catalog services|nodes`, run-time
//! `join`, `force-leave` of a crashed node, `reload` of the config directory, `validate`, and
//! shell completions.

use std::process::Command;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options, binary};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn gossipd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary()).args(args).output().expect("run gossipd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn catalog_join_force_leave_and_reload() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("conf.d");
    std::fs::create_dir_all(&conf).unwrap();
    let a = Agent::start(
        root.path(),
        Options { name: "alpha".into(), config_dir: Some(conf.clone()), ..Default::default() },
    );
    let seeds = vec![a.gossip];
    let b = Agent::start(root.path(), Options { name: "bravo".into(), seeds: seeds.clone(), ..Default::default() });
    let mut c = Agent::start(root.path(), Options { name: "charlie".into(), seeds, ..Default::default() });
    for x in [&a, &b, &c] {
        wait_for("3 alive members", WAIT, || (x.alive_members().len() == 3).then_some(()));
    }
    let (status, body) = b.put("/v1/agent/service/register", r#"{"Name":"web","Port":80,"Tags":["v1","blue"]}"#);
    assert_eq!(status, 200, "{body}");
    let http = a.http.to_string();
    wait_for("web in alpha's catalog", WAIT, || {
        let (ok, out, _) = gossipd(&["catalog", "services", "--http", &http]);
        (ok && out.contains("web") && out.contains("v1,blue") || ok && out.contains("web") && out.contains("blue,v1"))
            .then_some(())
    });
    let (ok, out, err) = gossipd(&["catalog", "nodes", "--http", &http]);
    assert!(ok, "{err}");
    for n in ["alpha", "bravo", "charlie"] {
        assert!(out.contains(n), "catalog nodes lacks {n}:\n{out}");
    }

    // An agent started without seeds is alone until `gossipd join`.
    let d = Agent::start(root.path(), Options { name: "delta".into(), ..Default::default() });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.alive_members(), vec!["delta"]);
    let (ok, _, err) = gossipd(&[
        "join",
        "--http",
        &d.http.to_string(),
        "--data-dir",
        d.data_dir.to_str().unwrap(),
        &b.gossip.to_string(),
    ]);
    assert!(ok, "join: {err}");
    wait_for("delta joined", WAIT, || (d.alive_members().len() == 4 && a.alive_members().len() == 4).then_some(()));

    // Charlie crashes; force-leave removes it from every agent's member list at once (it would
    // otherwise stay listed as failed for --failed-grace).
    c.kill();
    std::thread::sleep(Duration::from_secs(2));
    let (ok, _, err) = gossipd(&["force-leave", "charlie", "--http", &http, "--token", "not-the-token"]);
    assert!(!ok && err.contains("403"), "force-leave without the operator token: {err}");
    let (ok, _, err) =
        gossipd(&["force-leave", "charlie", "--http", &http, "--data-dir", a.data_dir.to_str().unwrap()]);
    assert!(ok, "force-leave: {err}");
    for x in [&a, &b, &d] {
        wait_for("charlie gone from the member list", Duration::from_secs(5), || {
            let v = x.get("/v1/agent/members").ok()?;
            (!v.as_array()?.iter().any(|m| m["Name"] == "charlie")).then_some(())
        });
    }
    let (ok, _, err) = gossipd(&["force-leave", "nobody", "--http", &http, "--data-dir", a.data_dir.to_str().unwrap()]);
    assert!(!ok && err.contains("404"), "an unknown node: {err}");

    // A definition dropped into alpha's config directory is served after `gossipd reload`.
    std::fs::write(conf.join("api.json"), r#"{"service": {"name": "api", "port": 9000}}"#).unwrap();
    let (ok, out, err) = gossipd(&["validate", conf.to_str().unwrap()]);
    assert!(ok && out.contains("1 service definition"), "{out}{err}");
    let (ok, _, err) = gossipd(&["reload", "--data-dir", a.data_dir.to_str().unwrap()]);
    assert!(ok, "reload: {err}");
    wait_for("api on bravo's DNS after alpha's reload", WAIT, || {
        dns::udp(b.dns, "api.service.gossip.", RecordType::SRV).filter(|r| r.srv.len() == 1)
    });
}

#[test]
fn validate_names_the_file_and_field_and_completions_print() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("agent.toml");
    std::fs::write(&good, "node = \"web-1\"\ngossip_interval_ms = 200\n").unwrap();
    let (ok, out, err) = gossipd(&["validate", good.to_str().unwrap()]);
    assert!(ok && out.contains("2 setting(s), valid"), "{out}{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "gossip_interval_ms = 5\n").unwrap();
    let (ok, _, err) = gossipd(&["validate", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("bad.toml") && err.contains("gossip_interval_ms"), "{err}");
    let svc = dir.path().join("web.json");
    std::fs::write(&svc, r#"{"service": {"name": "bad name"}}"#).unwrap();
    let (ok, _, err) = gossipd(&["validate", svc.to_str().unwrap()]);
    assert!(!ok && err.contains("web.json") && err.contains("Name"), "{err}");
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = gossipd(&["completions", shell]);
        assert!(ok && out.contains("gossipd") && out.contains("force-leave"), "{shell}: {err}");
    }
}

#[test]
fn node_meta_is_answered_as_txt_and_in_the_catalog() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(
        root.path(),
        Options {
            name: "alpha".into(),
            extra: vec!["--node-meta".into(), "rack=r1".into(), "--node-meta".into(), "env=prod".into()],
            ..Default::default()
        },
    );
    let b = Agent::start(root.path(), Options { name: "bravo".into(), seeds: vec![a.gossip], ..Default::default() });
    wait_for("2 members", WAIT, || (b.alive_members().len() == 2).then_some(()));
    // Asked of bravo (the metadata travelled with alpha's state), by dig.
    let out = wait_for("alpha's TXT on bravo", WAIT, || {
        let out = Command::new("dig")
            .args([
                "+short",
                "+time=2",
                "+tries=1",
                "-p",
                &b.dns.port().to_string(),
                "@127.0.0.1",
                "alpha.node.gossip",
                "TXT",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("rack=r1").then_some(text)
    });
    assert!(out.contains("\"env=prod\"") && out.contains("\"rack=r1\""), "{out}");
    let nodes = b.get("/v1/catalog/nodes").unwrap();
    let alpha = nodes.as_array().unwrap().iter().find(|n| n["Node"] == "alpha").unwrap();
    assert_eq!(alpha["Meta"]["rack"], "r1", "{alpha}");
    // A bad key is refused at start, naming it.
    let err = integration::agent::start_expecting_failure(
        &root.path().join("bad"),
        &["--node-meta".as_ref(), "no spaces=x".as_ref()],
    );
    assert!(err.contains("node meta key"), "{err}");
}

#[test]
fn services_register_by_flags_as_consul_does() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let http = a.http.to_string();
    let data = a.data_dir.to_str().unwrap().to_string();
    // Consul's spelling, single dashes and `=`.
    let (ok, out, err) = gossipd(&[
        "services",
        "register",
        "-name=web",
        "-port=8080",
        "-tag=v1",
        "-meta=rack=r1",
        "--http",
        &http,
        "--data-dir",
        &data,
    ]);
    assert!(ok && out.contains("registered web"), "{out}{err}");
    let r = wait_for("web on DNS", WAIT, || {
        dns::udp(a.dns, "web.service.gossip.", RecordType::SRV).filter(|r| r.srv.len() == 1)
    });
    assert_eq!(r.srv[0].0, 8080, "{r:?}");
    let v = a.get("/v1/agent/services").unwrap();
    assert_eq!(v["web"]["Tags"][0], "v1", "{v}");
    assert_eq!(v["web"]["Meta"]["rack"], "r1", "{v}");
    // A bad value is refused with the field named, and nothing is registered.
    let (ok, _, err) = gossipd(&["services", "register", "--name", "bad name", "--http", &http, "--data-dir", &data]);
    assert!(!ok && err.contains("Name"), "{err}");
    let (ok, _, err) = gossipd(&["services", "register", "--name", "x", "--meta", "novalue", "--http", &http]);
    assert!(!ok && err.contains("KEY=VALUE"), "{err}");
    assert_eq!(a.get("/v1/agent/services").unwrap().as_object().unwrap().len(), 1);
}
