//! The agent's own host (issue #11): no exec checks unless enabled; API tokens; a browser-safe
//! API (Host, Origin, content type); HTTP connection limits and timeouts; a private, locked
//! data directory. Each test fails without its mechanism.

use std::time::Duration;

use integration::agent::{Agent, Options, start_expecting_failure};
use integration::wait_for;

const WAIT: Duration = Duration::from_secs(20);

/// The register body of the issue: an exec check that writes `id` into `target`.
fn owned_body(target: &std::path::Path) -> String {
    let cmd = format!("id > {}", target.display());
    serde_json::json!({
        "ID": "pwn", "Name": "pwn", "Port": 1,
        "Check": {"Args": ["/bin/sh", "-c", cmd], "Interval": "1s"},
    })
    .to_string()
}

#[test]
fn exec_checks_are_refused_unless_enabled() {
    let root = tempfile::tempdir().unwrap();
    let owned = root.path().join("owned.txt");
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let (status, msg) = a.put("/v1/agent/service/register", &owned_body(&owned));
    assert_eq!(status, 403, "{msg}");
    assert!(msg.contains("--enable-script-checks"), "{msg}");
    // A later registration is served, so the refused one had its chance to run: it did not.
    let (status, msg) = a.put("/v1/agent/service/register", r#"{"ID":"web","Name":"web","Port":80}"#);
    assert_eq!(status, 200, "{msg}");
    let services = a.get("/v1/agent/services").unwrap();
    assert!(services.get("pwn").is_none() && services.get("web").is_some(), "{services}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!owned.exists(), "the refused exec check ran");

    // The config directory: refused at start, naming both flags...
    let dir = root.path().join("services.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pwn.json"), format!("{{\"service\": {}}}", owned_body(&owned))).unwrap();
    let err = start_expecting_failure(
        &root.path().join("local"),
        &[
            "--config-dir".as_ref(),
            dir.as_os_str(),
            "--cluster-key-file".as_ref(),
            root.path().join("cluster.key").as_os_str(),
        ],
    );
    assert!(err.contains("--enable-local-script-checks") && err.contains("pwn"), "{err}");
    assert!(!owned.exists());

    // ...and run with --enable-local-script-checks, which still refuses the API's.
    let b = Agent::start(
        root.path(),
        Options {
            name: "bravo".into(),
            config_dir: Some(dir.clone()),
            extra: vec!["--enable-local-script-checks".into()],
            ..Default::default()
        },
    );
    wait_for("the config directory's exec check to run", WAIT, || owned.exists().then_some(()));
    std::fs::remove_file(&owned).unwrap();
    let (status, msg) = b.put("/v1/agent/service/register", &owned_body(&root.path().join("api.txt")));
    assert_eq!(status, 403, "{msg}");

    // With --enable-script-checks the API's exec check runs.
    let c = Agent::start(
        root.path(),
        Options { name: "charlie".into(), extra: vec!["--enable-script-checks".into()], ..Default::default() },
    );
    let (status, msg) = c.put("/v1/agent/service/register", &owned_body(&owned));
    assert_eq!(status, 200, "{msg}");
    wait_for("the API's exec check to run", WAIT, || owned.exists().then_some(()));
}
