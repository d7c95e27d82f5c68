//! The agent's TOML configuration file (`--config FILE`, `GOSSIPD_CONFIG`): it sets the agent's
//! flags, command-line flags win over it, SIGHUP still reloads the services directory it names,
//! and a bad file stops the agent with an error naming the file, the key and the reason.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options, TEST_KEY, binary, start_expecting_failure};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(20);

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn write_service(dir: &Path, file: &str, id: &str, name: &str, port: u16) {
    let body = format!(r#"{{"service": {{"id": "{id}", "name": "{name}", "port": {port}}}}}"#);
    std::fs::write(dir.join(file), body).unwrap();
}

fn answers(agent: &Agent, name: &str) -> bool {
    dns::udp(agent.dns, name, RecordType::SRV).is_some_and(|r| r.rcode == ResponseCode::NoError && r.srv.len() == 1)
}

/// Writes a config file for an agent whose data directory is `root/name`; returns its path.
fn write_config(root: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let data_dir = root.join(name);
    std::fs::create_dir_all(&data_dir).unwrap();
    let key = root.join("cluster.key");
    std::fs::write(&key, TEST_KEY).unwrap();
    let file = root.join(format!("{name}.toml"));
    let text = format!(
        "data_dir = {:?}\ncluster_key_file = {:?}\nlog_level = \"gossipd=debug,warn\"\n{body}",
        data_dir.display().to_string(),
        key.display().to_string()
    );
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn config_file_sets_ports_name_domain_and_config_dir() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("conf.d");
    std::fs::create_dir_all(&conf).unwrap();
    write_service(&conf, "web.json", "web-1", "web", 8080);
    let (gossip, dns_port, http) = (free_port(), free_port(), free_port());
    let file = write_config(
        root.path(),
        "filenode",
        &format!(
            "node = \"filenode\"\nbind = \"{}\"\ndns = \"{}\"\nhttp = \"{}\"\nconfig_dir = {:?}\n\
             domain = \"example\"\ngossip_interval_ms = 200\n",
            addr(gossip),
            addr(dns_port),
            addr(http),
            conf.display().to_string()
        ),
    );
    let a =
        Agent::start(root.path(), Options { name: "filenode".into(), config_file: Some(file), ..Default::default() });
    assert_eq!((a.gossip, a.dns, a.http), (addr(gossip), addr(dns_port), addr(http)));
    assert_eq!(a.alive_members(), ["filenode"]);
    wait_for("web from the file's config_dir, in the file's domain", WAIT, || {
        answers(&a, "web.service.example.").then_some(())
    });
    let refused = dns::udp(a.dns, "web.service.gossip.", RecordType::SRV).expect("a DNS reply");
    assert_eq!(refused.rcode, ResponseCode::Refused, "the default domain is not served");

    // SIGHUP re-reads the services directory the file named.
    write_service(&conf, "api.json", "api-1", "api", 9090);
    let pid = a.child.as_ref().expect("running").id().to_string();
    assert!(Command::new("kill").arg("-HUP").arg(&pid).status().unwrap().success());
    wait_for("api served after SIGHUP", WAIT, || answers(&a, "api.service.example.").then_some(()));
}

#[test]
fn command_line_flags_override_the_config_file() {
    let root = tempfile::tempdir().unwrap();
    let file_http = free_port();
    let file = write_config(
        root.path(),
        "flagnode",
        &format!(
            "node = \"filenode\"\nbind = \"127.0.0.1:0\"\ndns = \"127.0.0.1:0\"\nhttp = \"{}\"\n",
            addr(file_http)
        ),
    );
    let a = Agent::start(
        root.path(),
        Options {
            name: "flagnode".into(),
            config_file: Some(file),
            extra: vec!["--node".into(), "flagnode".into(), "--http".into(), "127.0.0.1:0".into()],
            ..Default::default()
        },
    );
    assert_eq!(a.alive_members(), ["flagnode"], "--node wins over the file's node");
    assert_ne!(a.http.port(), file_http, "--http wins over the file's http");
}

#[test]
fn bad_config_files_name_the_key_and_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (body, want) in [
        ("dns_adress = \"127.0.0.1:8600\"\n", "unknown key \"dns_adress\""),
        ("gossip_interval_ms = \"200ms\"\n", "key \"gossip_interval_ms\": expected an integer"),
        ("gc_grace = 3600\n", "key \"gc_grace\": expected a duration like \"90s\""),
        ("node = \"not.a.label\"\n", "key \"node\": must be a DNS label"),
        ("http = \"nowhere\"\n", "key \"http\": \"nowhere\""),
        ("seed = \"127.0.0.1\"\n", "key \"seed\": \"127.0.0.1\" must be HOST:PORT"),
        ("node = \"x\"\nnode = \"y\"\n", "invalid TOML at line 2"),
    ] {
        let file = root.path().join("bad.toml");
        std::fs::write(&file, body).unwrap();
        let stderr = start_expecting_failure(&data, &["--config".as_ref(), file.as_os_str()]);
        let want = format!("config file {}: {want}", file.display());
        assert!(stderr.contains(&want), "{body:?}: stderr {stderr:?} should contain {want:?}");
    }
    let missing = root.path().join("missing.toml");
    let stderr = start_expecting_failure(&data, &["--config".as_ref(), missing.as_os_str()]);
    assert!(stderr.contains(&format!("config file {}: cannot read it", missing.display())), "{stderr}");

    // GOSSIPD_CONFIG names the file when --config is absent (and the file may stand in for
    // --data-dir).
    let file = root.path().join("env.toml");
    std::fs::write(&file, "gossip_intervl_ms = 200\n").unwrap();
    let out = Command::new(binary()).arg("agent").env("GOSSIPD_CONFIG", &file).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown key \"gossip_intervl_ms\" (did you mean \"gossip_interval_ms\"?)"), "{stderr}");
}
