//! Resolvers that legacy programs already use, pointed at real agents: `unbound` with a
//! `stub-zone` for the gossip domain, and glibc's own stub resolver (`getent`, Python's
//! `getaddrinfo`) through `resolv.conf` inside a network namespace where the agent serves DNS
//! on 127.0.0.1:53. The configurations are the ones docs/OPERATIONS.md shows.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use integration::agent::{Agent, Options};
use integration::netns::Netns;
use integration::peers::{self, Running, dig};
use integration::wait_for;

const WAIT: Duration = Duration::from_secs(20);

/// The root zone's trust anchor (KSK-2017), as a validating deployment has it: with it, only
/// `domain-insecure: "gossip"` keeps unbound from demanding signatures the agent cannot give.
const ROOT_DS: &str = ". DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";

/// unbound's configuration: the documented stub zone (docs/OPERATIONS.md) plus what a test
/// needs (loopback port, foreground, no privileges dropped, no remote control). Outgoing queries
/// leave from 127.0.0.1 only, so unbound cannot reach anything beyond loopback even if it tried.
fn unbound_conf(dir: &std::path::Path, port: u16, agent_dns: SocketAddr) -> String {
    format!(
        r#"server:
  interface: 127.0.0.1
  port: {port}
  outgoing-interface: 127.0.0.1
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  trust-anchor: "{ROOT_DS}"
  # The gossip domain, as documented:
  domain-insecure: "gossip"
  do-not-query-localhost: no
remote-control:
  control-enable: no
stub-zone:
  name: "gossip"
  stub-addr: {ip}@{dport}
"#,
        dir = dir.display(),
        ip = agent_dns.ip(),
        dport = agent_dns.port(),
    )
}

#[test]
fn unbound_stub_zone_resolves_through_the_cluster() {
    let Some(unbound) = peers::require("unbound") else { return };
    let Some(dig_bin) = peers::require("dig") else { return };
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = Agent::three(root.path());
    let (status, body) = b.put(
        "/v1/agent/service/register",
        r#"{"ID":"web-1","Name":"web","Address":"127.0.0.10","Port":8080,"Tags":["v1"]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        c.put("/v1/agent/service/register", r#"{"ID":"web-2","Name":"web","Address":"127.0.0.11","Port":8081}"#);
    assert_eq!(status, 200, "{body}");

    // unbound asks alpha, which learned both instances by gossip.
    let dir = root.path().join("unbound");
    std::fs::create_dir_all(&dir).unwrap();
    let port = peers::free_udp_port();
    let conf = dir.join("unbound.conf");
    std::fs::write(&conf, unbound_conf(&dir, port, a.dns)).unwrap();
    let check = Command::new(peers::find("unbound-checkconf").unwrap_or_else(|| "unbound-checkconf".into()))
        .arg(&conf)
        .output();
    if let Ok(out) = check {
        assert!(out.status.success(), "unbound-checkconf: {}", String::from_utf8_lossy(&out.stdout));
    }
    let log = std::fs::File::create(dir.join("unbound.log")).unwrap();
    let mut unbound = Running(
        Command::new(unbound)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start unbound"),
    );
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let unbound_log = || std::fs::read_to_string(dir.join("unbound.log")).unwrap_or_default();

    // A: both instances, from two other agents, through unbound.
    let answer = wait_for("unbound to answer both instances of web", WAIT, || {
        if let Ok(Some(status)) = unbound.0.try_wait() {
            panic!("unbound exited with {status}:\n{}", unbound_log());
        }
        let out = dig(&dig_bin, server, &["web.service.gossip", "A", "+short"]);
        let mut addrs: Vec<&str> = out.lines().map(str::trim).collect();
        addrs.sort_unstable();
        (addrs == ["127.0.0.10", "127.0.0.11"]).then_some(out.clone())
    });
    assert!(answer.contains("127.0.0.10"), "{answer}\n{}", unbound_log());

    // SRV: ports and targets, and each target resolves through unbound too.
    let out = dig(&dig_bin, server, &["web.service.gossip", "SRV"]);
    assert!(out.contains("status: NOERROR"), "{out}\n{}", unbound_log());
    assert!(out.contains("SRV\t1 1 8080 7f00000a.addr.gossip."), "{out}");
    assert!(out.contains("SRV\t1 1 8081 7f00000b.addr.gossip."), "{out}");
    let out = dig(&dig_bin, server, &["7f00000a.addr.gossip", "A", "+short"]);
    assert_eq!(out.trim(), "127.0.0.10");
    let out = dig(&dig_bin, server, &["_web._tcp.service.gossip", "SRV", "+short"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = dig(&dig_bin, server, &["v1.web.service.gossip", "SRV", "+short"]);
    assert_eq!(out.trim(), "1 1 8080 7f00000a.addr.gossip.");
    // The node names, over TCP from the client as well.
    let out = dig(&dig_bin, server, &["bravo.node.gossip", "A", "+short", "+tcp"]);
    assert_eq!(out.trim(), "127.0.0.1");

    // A name that does not exist is NXDOMAIN through unbound, with the agent's SOA.
    let out = dig(&dig_bin, server, &["missing.service.gossip", "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}\n{}", unbound_log());
    assert!(out.contains("SOA\tns.gossip. hostmaster.gossip."), "{out}");

    // Negative answers are not cached past a change (SOA minimum 0): a new service appears at once.
    let (status, body) = a.put("/v1/agent/service/register", r#"{"ID":"late","Name":"late","Port":9}"#);
    assert_eq!(status, 200, "{body}");
    wait_for("unbound to see the late service", WAIT, || {
        let out = dig(&dig_bin, server, &["late.service.gossip", "A", "+short"]);
        (out.trim() == "127.0.0.1").then_some(())
    });
}

#[test]
fn resolv_conf_in_a_netns_serves_unmodified_programs() {
    let Some(getent) = peers::require("getent") else { return };
    let Some(python) = peers::require("python3") else { return };
    let Some(ns) = Netns::create("resolv") else { return };
    // Inside the namespace /etc/resolv.conf names the agent on port 53, the only port glibc's
    // resolver can use.
    ns.write_etc("resolv.conf", "nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:3\n");

    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("web.json"),
        r#"{"service": {"id": "web-1", "name": "web", "address": "127.0.0.10", "port": 80, "tags": ["v1"]}}"#,
    )
    .unwrap();
    let agent = Agent::start(
        root.path(),
        Options {
            name: "inside".into(),
            dns: Some("127.0.0.1:53".parse().unwrap()),
            config_dir: Some(config),
            netns: Some(ns.name.clone()),
            ..Default::default()
        },
    );
    assert_eq!(agent.dns, "127.0.0.1:53".parse::<SocketAddr>().unwrap());

    // getent resolves through nsswitch (`hosts: files dns`) and glibc's stub resolver.
    let out = wait_for("getent hosts web.service.gossip in the namespace", WAIT, || {
        let out = ns.command(&getent).args(["hosts", "web.service.gossip"]).output().expect("run getent");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["127.0.0.10", "web.service.gossip"], "{}", agent.log());
    // (`ahosts`, not `ahostsv4`: getent asks getaddrinfo for AI_ADDRCONFIG, and a namespace with
    // only `lo` has no IPv4 address that counts, so AF_INET lookups fail before any query.)
    let out = ns.command(&getent).args(["ahosts", "inside.node.gossip"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1"), "{out:?}");

    // Python's socket.getaddrinfo, the path most programs take.
    let script = "import socket\n\
                  print(sorted({ai[4][0] for ai in socket.getaddrinfo('web.service.gossip', 80, proto=socket.IPPROTO_TCP)}))\n\
                  try:\n    socket.getaddrinfo('missing.service.gossip', 80)\n    print('resolved')\n\
                  except socket.gaierror as e:\n    print('gaierror', e.errno == socket.EAI_NONAME)\n";
    let out = ns.command(&python).args(["-c", script]).output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["['127.0.0.10']", "gaierror True"], "{}", agent.log());

    // The agent's HTTP API answers inside the namespace too (registration without a file).
    let register = format!(
        "import urllib.request\n\
         r = urllib.request.Request('http://{}/v1/agent/service/register', method='PUT', \
         data=b'{{\"ID\": \"api-1\", \"Name\": \"api\", \"Address\": \"127.0.0.20\", \"Port\": 8443}}')\n\
         print(urllib.request.urlopen(r).status)\n",
        agent.http
    );
    let out = ns.command(&python).args(["-c", &register]).output().expect("run python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200", "{}", String::from_utf8_lossy(&out.stderr));
    let out = wait_for("getent hosts api.service.gossip", WAIT, || {
        let out = ns.command(&getent).args(["hosts", "api.service.gossip"]).output().expect("run getent");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(out.starts_with("127.0.0.20"), "{out}");
}
