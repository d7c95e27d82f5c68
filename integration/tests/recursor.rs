//! `--recursor`: names outside the domain are forwarded to upstream resolvers. The upstream is
//! a real dnsmasq on a loopback port with one local record and no upstream of its own.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options};
use integration::dns;
use integration::netns::Netns;
use integration::peers::{self, Running};
use integration::wait_for;

const WAIT: Duration = Duration::from_secs(20);

/// A dnsmasq on 127.0.0.1:PORT answering `upstream.test` with 127.0.0.77 and nothing else.
/// The port is picked free, but another test's socket can take it (UDP or TCP) before dnsmasq
/// binds it: a dnsmasq that exits or stays silent is replaced on a new port (3 attempts).
fn upstream(root: &std::path::Path) -> Option<(Running, SocketAddr)> {
    let dnsmasq = peers::require("dnsmasq")?;
    for attempt in 1..=3 {
        let port = peers::free_udp_port();
        let log = std::fs::File::create(root.join(format!("dnsmasq-{attempt}.log"))).expect("dnsmasq log");
        let child = Command::new(&dnsmasq)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg("--address=/upstream.test/127.0.0.77")
            .arg(format!("--pid-file={}", root.join(format!("dnsmasq-{attempt}.pid")).display()))
            .arg("--user=root")
            .arg("--cache-size=0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dnsmasq");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut child = Running(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        while std::time::Instant::now() < deadline {
            if child.0.try_wait().ok().flatten().is_some() {
                break;
            }
            let answered = dns::udp(addr, "upstream.test.", RecordType::A).filter(|r| r.rcode == ResponseCode::NoError);
            if answered.is_some() {
                return Some((child, addr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let why = std::fs::read_to_string(root.join(format!("dnsmasq-{attempt}.log"))).unwrap_or_default();
        eprintln!("dnsmasq attempt {attempt} on port {port} did not answer: {why}");
    }
    panic!("dnsmasq did not answer upstream.test in 3 attempts (logs in the test's directory)");
}

fn agent_with(root: &std::path::Path, name: &str, extra: &[String]) -> Agent {
    let a = Agent::start(root, Options { name: name.into(), extra: extra.to_vec(), ..Default::default() });
    let (status, _) =
        a.put("/v1/agent/service/register", r#"{"ID":"web-1","Name":"web","Address":"127.0.0.9","Port":80}"#);
    assert_eq!(status, 200);
    a
}

#[test]
fn names_outside_the_domain_resolve_through_the_recursor() {
    let root = tempfile::tempdir().unwrap();
    let Some((_dnsmasq, up)) = upstream(root.path()) else { return };
    let a = agent_with(root.path(), "alpha", &["--recursor".into(), up.to_string()]);
    let upstream_only: IpAddr = "127.0.0.77".parse().unwrap();

    for query in [dns::udp, dns::tcp] {
        let r = wait_for("upstream.test through the agent", WAIT, || query(a.dns, "upstream.test.", RecordType::A));
        assert_eq!((r.rcode, r.addrs.clone()), (ResponseCode::NoError, vec![upstream_only]), "{r:?}");
    }
    // The catalog still answers its own names, with the datacenter label too.
    let web = wait_for("web.service.gossip from the catalog", WAIT, || {
        dns::udp(a.dns, "web.service.gossip.", RecordType::A).filter(|r| !r.addrs.is_empty())
    });
    assert_eq!(web.addrs, vec!["127.0.0.9".parse::<IpAddr>().unwrap()]);
    let dc = dns::udp(a.dns, "web.service.gossip.gossip.", RecordType::A).expect("answer");
    assert_eq!(dc.addrs, web.addrs);
    let missing = dns::udp(a.dns, "missing.service.gossip.", RecordType::A).expect("answer");
    assert_eq!(missing.rcode, ResponseCode::NXDomain, "the catalog's NXDOMAIN is not forwarded");
    // dnsmasq without upstreams refuses what it does not know: the agent passes that on as
    // SERVFAIL (no upstream could answer).
    let other = dns::udp(a.dns, "elsewhere.example.", RecordType::A).expect("answer");
    assert_eq!(other.rcode, ResponseCode::ServFail, "{other:?}");
    assert!(a.metric("DNS", "Forwarded") >= 2, "forwarded queries are counted");
    assert!(a.metric("DNS", "ForwardFailures") >= 1, "failures are counted");
}

#[test]
fn a_dead_recursor_gives_servfail_and_none_keeps_refused() {
    let root = tempfile::tempdir().unwrap();
    let dead = format!("127.0.0.1:{}", peers::free_udp_port());
    let a = agent_with(root.path(), "alpha", &["--recursor".into(), dead]);
    let r = wait_for("an answer for upstream.test", WAIT, || dns::udp(a.dns, "upstream.test.", RecordType::A));
    assert_eq!(r.rcode, ResponseCode::ServFail, "{r:?}");
    let r = dns::tcp(a.dns, "upstream.test.", RecordType::A).expect("answer over TCP");
    assert_eq!(r.rcode, ResponseCode::ServFail, "{r:?}");
    let web = dns::udp(a.dns, "web.service.gossip.", RecordType::A).expect("answer");
    assert_eq!(web.rcode, ResponseCode::NoError);

    let b = agent_with(root.path(), "beta", &[]);
    let r = wait_for("an answer for upstream.test", WAIT, || dns::udp(b.dns, "upstream.test.", RecordType::A));
    assert_eq!(r.rcode, ResponseCode::Refused, "no recursor: REFUSED as before");
}

/// The issue's form: in a namespace whose resolv.conf names only the agent (on 127.0.0.1:53,
/// with a dnsmasq inside as its recursor), unmodified glibc lookups get both the catalog's
/// names and names only the upstream knows.
#[test]
fn resolv_conf_naming_only_the_agent_reaches_catalog_and_upstream_names() {
    let Some(getent) = peers::require("getent") else { return };
    let Some(dnsmasq) = peers::require("dnsmasq") else { return };
    let Some(ns) = Netns::create("recursor") else { return };
    ns.write_etc("resolv.conf", "nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:3\n");
    let root = tempfile::tempdir().unwrap();
    let _dnsmasq = Running(
        ns.command(dnsmasq)
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces"])
            .args(["--listen-address=127.0.0.1", "--port=5353", "--address=/upstream.test/127.0.0.77"])
            .arg(format!("--pid-file={}", root.path().join("dnsmasq.pid").display()))
            .args(["--user=root", "--cache-size=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq in the namespace"),
    );
    let config = root.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("web.json"),
        r#"{"service": {"id": "web-1", "name": "web", "address": "127.0.0.10", "port": 80}}"#,
    )
    .unwrap();
    let agent = Agent::start(
        root.path(),
        Options {
            name: "inside".into(),
            dns: Some("127.0.0.1:53".parse().unwrap()),
            config_dir: Some(config),
            netns: Some(ns.name.clone()),
            extra: vec!["--recursor".into(), "127.0.0.1:5353".into()],
            ..Default::default()
        },
    );
    for (name, addr) in [("web.service.gossip", "127.0.0.10"), ("upstream.test", "127.0.0.77")] {
        let out = wait_for(&format!("getent hosts {name} in the namespace"), WAIT, || {
            let out = ns.command(&getent).args(["hosts", name]).output().expect("run getent");
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        });
        assert_eq!(out.split_whitespace().collect::<Vec<_>>(), [addr, name], "{}", agent.log());
    }
}

/// A real client's view: `dig -x` gets the node and the service for their addresses, and a
/// forwarded answer keeps the EDNS that dig asked with.
#[test]
fn dig_gets_ptr_and_forwarded_edns() {
    let Some(dig_bin) = peers::require("dig") else { return };
    let root = tempfile::tempdir().unwrap();
    let Some((_dnsmasq, up)) = upstream(root.path()) else { return };
    let a = agent_with(root.path(), "alpha", &["--recursor".into(), up.to_string()]);
    wait_for("web registered", WAIT, || {
        dns::udp(a.dns, "web.service.gossip.", RecordType::A).filter(|r| !r.addrs.is_empty())
    });
    let out = peers::dig(&dig_bin, a.dns, &["-x", "127.0.0.9", "+short"]);
    assert_eq!(out.trim(), "web.service.gossip.");
    let out = peers::dig(&dig_bin, a.dns, &["-x", "127.0.0.1", "+short"]);
    assert_eq!(out.trim(), "alpha.node.gossip.");
    let out = peers::dig(&dig_bin, a.dns, &["-x", "127.0.0.1"]);
    assert!(out.contains(" aa"), "authoritative: {out}");
    let out = peers::dig(&dig_bin, a.dns, &["upstream.test", "A"]);
    assert!(out.contains("status: NOERROR") && out.contains("127.0.0.77"), "{out}");
    assert!(out.contains("OPT PSEUDOSECTION"), "EDNS passed through: {out}");
    let out = peers::dig(&dig_bin, a.dns, &["upstream.test", "A", "+tcp", "+short"]);
    assert_eq!(out.trim(), "127.0.0.77");
}
