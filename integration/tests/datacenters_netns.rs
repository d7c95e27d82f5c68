//! Three datacenters in network namespaces of this test's own (docs/ARCHITECTURE.md, "Several
//! datacenters"): each datacenter `dcN` is a namespace with one agent, its LAN on the
//! namespace's loopback and its WAN address `10.99.0.N` on a veth whose other end is on a
//! bridge in a fourth namespace (the WAN). Remote lookups by DNS (dig, inside the namespace)
//! and HTTP; a prepared query failing over when the local instance goes critical and coming
//! back when it recovers; a partition of dc3 (iptables DROP on its WAN link) answered with
//! SERVFAIL and recovered after the heal; lookups across a WAN link that drops 10% of datagrams.
//!
//! Needs root, `ip` (iproute2), `iptables` and `dig`; under `CI=true` a missing one fails the
//! test (`.ci/run` installs them), elsewhere it says it skipped.

use std::process::Command;
use std::time::{Duration, Instant};

use integration::agent::{Agent, Options};
use integration::netns::Netns;
use integration::{peers, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `dig` inside `ns`: (status, answer section).
fn dig(ns: &Netns, port: u16, name: &str) -> (String, String) {
    let out = ns
        .command("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+time=4",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
            name,
            "SRV",
        ])
        .output()
        .expect("dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("timeout").to_string();
    let answer = text.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()).collect::<Vec<_>>().join("\n");
    (status, answer)
}

fn iptables(ns: &Netns, args: &[&str]) {
    run(ns.command("iptables").args(args));
}

#[test]
fn three_datacenters_across_a_bridged_wan_with_failover_partition_and_loss() {
    if peers::require("iptables").is_none() || peers::require("dig").is_none() {
        return;
    }
    let Some(wan) = Netns::create("wan") else { return };
    let mut dcs = Vec::new();
    for i in 1..=3 {
        let Some(ns) = Netns::create(&format!("dc{i}")) else { return };
        dcs.push(ns);
    }
    let ip = peers::require("ip").expect("ip");
    run(Command::new(&ip).args(["-n", &wan.name, "link", "add", "br0", "type", "bridge"]));
    run(Command::new(&ip).args(["-n", &wan.name, "link", "set", "br0", "up"]));
    let tag = std::process::id() % 100_000;
    for (i, ns) in dcs.iter().enumerate() {
        let (a, b) = (format!("gw{tag}{i}"), format!("gd{tag}{i}"));
        run(Command::new(&ip).args(["link", "add", &a, "type", "veth", "peer", "name", &b]));
        run(Command::new(&ip).args(["link", "set", &a, "netns", &wan.name]));
        run(Command::new(&ip).args(["link", "set", &b, "netns", &ns.name]));
        run(Command::new(&ip).args(["-n", &wan.name, "link", "set", &a, "master", "br0"]));
        run(Command::new(&ip).args(["-n", &wan.name, "link", "set", &a, "up"]));
        run(Command::new(&ip).args(["-n", &ns.name, "link", "set", &b, "name", "wan0"]));
        run(Command::new(&ip).args(["-n", &ns.name, "addr", "add", &format!("10.99.0.{}/24", i + 1), "dev", "wan0"]));
        run(Command::new(&ip).args(["-n", &ns.name, "link", "set", "wan0", "up"]));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let flag = root.join("web-1.healthy");
    std::fs::write(&flag, "").expect("flag");
    let mut agents = Vec::new();
    for i in 1..=3u16 {
        let name = format!("d{i}");
        let conf = root.join(format!("{name}-conf"));
        std::fs::create_dir_all(&conf).expect("config dir");
        let check = if i == 1 {
            format!(r#", "check": {{"args": ["/bin/sh", "-c", "test -e {}"], "interval": "1s"}}"#, flag.display())
        } else {
            String::new()
        };
        let web = format!(r#"{{"service": {{"id": "web-{i}", "name": "web", "port": {}{check}}}}}"#, 8080 + i);
        std::fs::write(conf.join("web.json"), web).expect("service file");
        let data = root.join(&name);
        std::fs::create_dir_all(&data).expect("data dir");
        if i == 1 {
            // A prepared query persisted as the agent keeps them (queries.json), loaded at start.
            let q = r#"[{"ID": "0b6c2f2e-7a34-4f4b-9d0e-1f6c4b1e2a11", "Name": "web-ha", "Service": {"Service": "web",
                "OnlyPassing": true, "Failover": {"NearestN": 2}}}]"#;
            std::fs::write(data.join("queries.json"), q).expect("queries.json");
        }
        let mut extra = vec![
            "--datacenter".to_string(),
            format!("dc{i}"),
            "--wan-bind".into(),
            format!("10.99.0.{i}:8302"),
            "--enable-local-script-checks".into(),
        ];
        if i > 1 {
            extra.extend(["--wan-seed".to_string(), "10.99.0.1:8302".to_string()]);
        }
        let ns = &dcs[usize::from(i) - 1];
        agents.push(Agent::start(
            root,
            Options {
                name,
                config_dir: Some(conf),
                extra,
                wrapper: vec![ip.display().to_string(), "netns".into(), "exec".into(), ns.name.clone()],
                ..Default::default()
            },
        ));
    }
    let (d1, dc1) = (&agents[0], &dcs[0]);
    for a in &agents {
        wait_for("3 alive WAN members", WAIT, || {
            let l = a.get("/v1/agent/members?wan=1").ok()?;
            (l.as_array()?.iter().filter(|m| m["Status"] == 1).count() == 3).then_some(())
        });
    }

    // Remote lookups across the WAN: DNS in dc1's namespace, HTTP ?dc=.
    let (status, answer) = wait_for("web in dc2 from dc1", WAIT, || {
        Some(dig(dc1, d1.dns.port(), "web.service.dc2.gossip")).filter(|(s, _)| s == "NOERROR")
    });
    assert!(answer.contains(" 8082 d2.node.dc2.gossip."), "{status}: {answer}");
    let h = d1.get("/v1/health/service/web?dc=dc3").expect("dc3 through dc1");
    assert_eq!(h[0]["Service"]["Port"], 8083, "{h}");
    assert_eq!(h[0]["Node"]["Datacenter"], "dc3");

    // Failover: the local instance's check fails; the query answers another datacenter's.
    let e = wait_for("web-ha answered in dc1", WAIT, || {
        d1.get("/v1/query/web-ha/execute")
            .ok()
            .filter(|e| e["Datacenter"] == "dc1" && e["Nodes"][0]["Service"]["Port"] == 8081)
    });
    assert_eq!(e["Failovers"], 0);
    std::fs::remove_file(&flag).expect("unflag");
    let started = Instant::now();
    let e = wait_for("failover", WAIT, || d1.get("/v1/query/web-ha/execute").ok().filter(|e| e["Datacenter"] != "dc1"));
    eprintln!("failed over to {} {:?} after the flag went (check interval 1 s)", e["Datacenter"], started.elapsed());
    let port = e["Nodes"][0]["Service"]["Port"].as_u64().expect("port");
    assert!(port == 8082 || port == 8083, "{e}");
    let (status, answer) = dig(dc1, d1.dns.port(), "web-ha.query.gossip");
    assert!(status == "NOERROR" && answer.contains(&format!(" {port} ")), "{status}: {answer}");
    std::fs::write(&flag, "").expect("flag again");
    let started = Instant::now();
    wait_for("back to dc1", WAIT, || d1.get("/v1/query/web-ha/execute").ok().filter(|e| e["Datacenter"] == "dc1"));
    eprintln!("back in dc1 {:?} after the flag returned", started.elapsed());

    // Partition: dc3's WAN link drops everything. Its names become SERVFAIL; after the heal,
    // answered again.
    let dc3 = &dcs[2];
    for rule in [["-A", "INPUT", "-i", "wan0", "-j", "DROP"], ["-A", "OUTPUT", "-o", "wan0", "-j", "DROP"]] {
        iptables(dc3, &rule);
    }
    let started = Instant::now();
    let (status, _) = wait_for("SERVFAIL for dc3", WAIT, || {
        Some(dig(dc1, d1.dns.port(), "web.service.dc3.gossip")).filter(|(s, _)| s == "SERVFAIL")
    });
    eprintln!("dc3 partitioned: {status} {:?} after the DROP rules", started.elapsed());
    let t = Instant::now();
    let (status, _) = dig(dc1, d1.dns.port(), "web.service.dc3.gossip");
    eprintln!("  a query during the partition: {status} in {:?}", t.elapsed());
    let (code, _) = d1.get("/v1/health/service/web?dc=dc3").map(|_| (200, ())).unwrap_or((500, ()));
    assert_eq!(code, 500, "HTTP during the partition");
    let (status, _) = dig(dc1, d1.dns.port(), "web.service.dc2.gossip");
    assert_eq!(status, "NOERROR", "dc2 is unaffected");
    for rule in [["-D", "INPUT", "-i", "wan0", "-j", "DROP"], ["-D", "OUTPUT", "-o", "wan0", "-j", "DROP"]] {
        iptables(dc3, &rule);
    }
    let started = Instant::now();
    wait_for("dc3 after the heal", WAIT, || {
        Some(dig(dc1, d1.dns.port(), "web.service.dc3.gossip")).filter(|(s, a)| s == "NOERROR" && a.contains(" 8083 "))
    });
    eprintln!("dc3 answered again {:?} after the heal", started.elapsed());

    // 10% loss on dc2's WAN link (each way): lookups retry within their bound.
    let loss = ["INPUT", "-i", "wan0", "-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"];
    iptables(&dcs[1], &[&["-A"][..], &loss[..]].concat());
    let mut ok = 0;
    for _ in 0..30 {
        if dig(dc1, d1.dns.port(), "web.service.dc2.gossip").0 == "NOERROR" {
            ok += 1;
        }
    }
    eprintln!("across 10% loss: {ok} of 30 lookups of dc2 answered");
    assert!(ok >= 24, "{ok} of 30 lookups across 10% loss");
    iptables(&dcs[1], &[&["-D"][..], &loss[..]].concat());
    drop(agents);
}
