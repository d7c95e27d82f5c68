//! Authority from a cluster CA with real agents and the real CLI: `gossipd ca create|sign|revoke`
//! and `gossipd revocations add`; an ungranted registration is refused with 403 and answered by
//! no agent; an uncertified agent holding the cluster key gets no session; a revoked node and
//! its services leave every agent and stay gone after a restart.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use integration::agent::{Agent, Options, binary};
use integration::{dns, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn gossipd(args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).output().expect("run gossipd");
    assert!(out.status.success(), "gossipd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn certified(root: &Path, name: &str, seeds: Vec<std::net::SocketAddr>) -> Agent {
    let certs = root.join("certs");
    let extra = vec![
        "--ca-file".to_string(),
        root.join("ca/ca.crt").display().to_string(),
        "--cert-file".into(),
        certs.join(format!("{name}.crt")).display().to_string(),
        "--identity-file".into(),
        certs.join(format!("{name}.key")).display().to_string(),
    ];
    Agent::start(root, Options { name: name.into(), seeds, extra, uncertified: true, ..Default::default() })
}

fn web(id: &str, name: &str) -> String {
    format!(r#"{{"ID":"{id}","Name":"{name}","Address":"127.0.0.9","Port":8080}}"#)
}

fn answers(a: &Agent, name: &str) -> usize {
    dns::udp(a.dns, &format!("{name}.service.gossip"), RecordType::SRV).map_or(0, |r| r.srv.len())
}

#[test]
fn a_cluster_under_a_ca_enforces_grants_refuses_outsiders_and_revocations_stick() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let ca = r.join("ca");
    let certs = r.join("certs").display().to_string();
    gossipd(&["ca", "create", "--out", ca.to_str().unwrap()]);
    let ca_s = ca.to_str().unwrap();
    gossipd(&[
        "ca",
        "sign",
        "--ca",
        ca_s,
        "--name",
        "alpha",
        "--services",
        "*",
        "--roles",
        "operator",
        "--out",
        &certs,
    ]);
    for n in ["bravo", "charlie"] {
        gossipd(&["ca", "sign", "--ca", ca_s, "--name", n, "--services", "web,api-*", "--out", &certs]);
    }
    let shown = gossipd(&["cert", "show", &format!("{certs}/bravo.crt")]);
    assert!(shown.contains("\"api-*\"") && shown.contains("\"bravo\""), "{shown}");

    let mut a = certified(r, "alpha", vec![]);
    let mut b = certified(r, "bravo", vec![a.gossip]);
    let c = certified(r, "charlie", vec![a.gossip]);
    for x in [&a, &b, &c] {
        wait_for("three certified members", WAIT, || (x.alive_members().len() == 3).then_some(()));
    }

    // The hijack: refused at the owner with 403 naming the grant, answered by nobody.
    let (status, body) = b.put("/v1/agent/service/register", &web("p1", "probed"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not granted") && body.contains("web,api-*"), "{body}");
    assert_eq!(b.put("/v1/agent/service/register", &web("w1", "web")).0, 200);
    // A keyring change needs the operator role in the agent's certificate; alpha has it, and
    // its change is in force on every agent before it answers.
    let key = r#"{"Key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#;
    let (status, body) = b.send("POST", "/v1/operator/keyring", key);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("operator role"), "{body}");
    let (status, body) = a.send("POST", "/v1/operator/keyring", key);
    assert_eq!(status, 200, "{body}");
    let ring = c.get("/v1/operator/keyring").unwrap();
    assert_eq!(ring[0]["NumNodes"], 3, "{ring}");
    assert_eq!(ring[0]["NotInForceOn"], serde_json::json!([]), "{ring}");
    assert_eq!(c.put("/v1/agent/service/register", &web("w2", "web")).0, 200);
    wait_for("both web instances everywhere", WAIT, || (answers(&a, "web") == 2).then_some(()));
    assert_eq!(answers(&a, "probed"), 0);

    // An agent holding the cluster key but no certificate gets no session.
    let outsider = Agent::start(
        r,
        Options { name: "mallory".into(), seeds: vec![a.gossip], uncertified: true, ..Default::default() },
    );
    wait_for("alpha to refuse the uncertified handshake", WAIT, || {
        a.log().contains("refused a handshake for its certificate").then_some(())
    });
    assert_eq!(outsider.alive_members(), vec!["mallory"]);
    assert_eq!(a.alive_members().len(), 3);

    // Revoke charlie through alpha's API: it leaves every agent, with its service.
    let revocation = gossipd(&["ca", "revoke", "--ca", ca_s, &format!("{certs}/charlie.crt")]);
    assert!(revocation.contains("BEGIN GOSSIPD REVOCATION"));
    let mut add = Command::new(binary())
        .args(["revocations", "add", "-", "--http", &a.http.to_string()])
        .arg("--data-dir")
        .arg(&a.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(revocation.as_bytes()).unwrap();
    assert!(add.wait().unwrap().success());
    for x in [&a, &b] {
        wait_for("charlie to be dropped", WAIT, || (x.alive_members().len() == 2).then_some(()));
    }
    wait_for("charlie's instance out of answers", WAIT, || (answers(&b, "web") == 1).then_some(()));

    // It stays gone after a restart: bravo kept the revocation. Alpha, which wrote it, is down,
    // so bravo can only have it from its own data directory; charlie keeps running and knows
    // bravo's address.
    a.kill();
    b.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(b.get("/v1/operator/revocations").unwrap().as_array().map(Vec::len), Some(1));
    assert!(!b.alive_members().contains(&"charlie".to_string()), "{:?}", b.alive_members());
    assert_eq!(answers(&b, "web"), 1);
}

#[test]
fn an_agent_refuses_to_start_with_a_certificate_of_another_identity_or_name() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let ca = r.join("ca");
    let certs = r.join("certs").display().to_string();
    gossipd(&["ca", "create", "--out", ca.to_str().unwrap()]);
    gossipd(&["ca", "sign", "--ca", ca.to_str().unwrap(), "--name", "alpha", "--services", "*", "--out", &certs]);
    let ca_crt = ca.join("ca.crt");
    let crt = format!("{certs}/alpha.crt");
    // Without the identity the certificate is for.
    let err = integration::agent::start_expecting_failure(
        &r.join("d1"),
        &["--dev".as_ref(), "--ca-file".as_ref(), ca_crt.as_os_str(), "--cert-file".as_ref(), crt.as_ref()],
    );
    assert!(err.contains("--identity-file"), "{err}");
    // Another name than the certificate's.
    let key = format!("{certs}/alpha.key");
    let err = integration::agent::start_expecting_failure(
        &r.join("d2"),
        &[
            "--dev".as_ref(),
            "--node".as_ref(),
            "bravo".as_ref(),
            "--cert-file".as_ref(),
            crt.as_ref(),
            "--identity-file".as_ref(),
            key.as_ref(),
        ],
    );
    assert!(err.contains("certifies the name"), "{err}");
}
