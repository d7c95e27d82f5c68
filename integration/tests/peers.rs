//! Real resolvers as peers: `dig` against an agent, and `dnsmasq` forwarding `.gossip` to it
//! (`server=/gossip/127.0.0.1#PORT`), as a user would deploy it.

use std::process::{Command, Stdio};
use std::time::Duration;

use integration::agent::{Agent, Options};
use integration::peers::{self, dig};
use integration::wait_for;

#[test]
fn dig_gets_srv_with_additional_and_nxdomain() {
    let Some(dig_bin) = peers::require("dig") else { return };
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let (status, _) = a.put("/v1/agent/service/register", r#"{"ID":"web-1","Name":"web","Port":8080}"#);
    assert_eq!(status, 200);
    let out = dig(&dig_bin, a.dns, &["web.service.gossip", "SRV"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("IN\tSRV\t1 1 8080 alpha.node.gossip."), "{out}");
    assert!(out.contains("alpha.node.gossip.\t0\tIN\tA\t127.0.0.1"), "{out}");
    let out = dig(&dig_bin, a.dns, &["WEB.Service.GOSSIP", "A", "+short"]);
    assert_eq!(out.trim(), "127.0.0.1");
    let out = dig(&dig_bin, a.dns, &["nothing.service.gossip", "A"]);
    assert!(out.contains("status: NXDOMAIN") && out.contains("SOA"), "{out}");
    let out = dig(&dig_bin, a.dns, &["example.com", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = dig(&dig_bin, a.dns, &["web.service.gossip", "SRV", "+tcp", "+short"]);
    assert_eq!(out.trim(), "1 1 8080 alpha.node.gossip.");
}

#[test]
fn dnsmasq_forwards_the_gossip_domain() {
    let Some(dnsmasq) = peers::require("dnsmasq") else { return };
    let Some(dig_bin) = peers::require("dig") else { return };
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let (status, _) =
        a.put("/v1/agent/service/register", r#"{"ID":"web-1","Name":"web","Address":"127.0.0.9","Port":80}"#);
    assert_eq!(status, 200);

    let port = peers::free_udp_port();
    let mut child = Command::new(dnsmasq)
        .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--server=/gossip/{}#{}", a.dns.ip(), a.dns.port()))
        .arg(format!("--pid-file={}", root.path().join("dnsmasq.pid").display()))
        .arg("--user=root")
        .arg("--cache-size=0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dnsmasq");
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let answer = wait_for("dnsmasq to forward web.service.gossip", Duration::from_secs(10), || {
        let out = dig(&dig_bin, server, &["web.service.gossip", "A", "+short"]);
        (out.trim() == "127.0.0.9").then_some(out)
    });
    assert_eq!(answer.trim(), "127.0.0.9");
    let out = dig(&dig_bin, server, &["missing.service.gossip", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let _ = child.kill();
    let _ = child.wait();
}
