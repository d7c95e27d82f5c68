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

fn host_of(a: &Agent) -> String {
    a.http.to_string()
}

fn keyring_keys(a: &Agent) -> Vec<String> {
    let v = a.get("/v1/operator/keyring").expect("keyring with the operator token");
    let mut keys: Vec<String> = v[0]["Keys"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    keys.sort();
    keys
}

#[test]
fn keyring_reads_and_changes_need_the_operator_token() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let token = a.token().expect("DATA_DIR/operator.token is written at first start");
    assert_eq!(token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.data_dir.join("operator.token")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let host = host_of(&a);
    let h = ("Host", host.as_str());

    // No token, a wrong one, or one without the operator power: refused, and no key leaks.
    let key = integration::agent::TEST_KEY;
    for headers in [vec![h], vec![h, ("X-Consul-Token", "0000000000000000000000000000000000")]] {
        let (status, body) = a.raw("GET", "/v1/operator/keyring", &headers, "");
        assert_eq!(status, 403, "{body}");
        assert!(!body.contains(key), "the keyring leaked: {body}");
    }
    let (_, body) = a.raw("GET", "/v1/operator/keyring", &[h], "");
    assert!(body.starts_with("Permission denied: token lacks operator"), "{body}");
    // The three ways to present it.
    let bearer = format!("Bearer {token}");
    for (path, headers) in [
        ("/v1/operator/keyring".to_string(), vec![h, ("X-Consul-Token", token.as_str())]),
        ("/v1/operator/keyring".to_string(), vec![h, ("Authorization", bearer.as_str())]),
        (format!("/v1/operator/keyring?token={token}"), vec![h]),
    ] {
        let (status, body) = a.raw("GET", &path, &headers, "");
        assert_eq!(status, 200, "{headers:?}: {body}");
        assert!(body.contains(key), "{body}");
    }
    // Changes too.
    let new = "bmV3IGtleSBmb3IgdGhlIG9wZXJhdG9yIHRlc3QhISE=";
    let body = format!("{{\"Key\": \"{new}\"}}");
    let (status, msg) = a.raw("POST", "/v1/operator/keyring", &[h, ("Content-Type", "application/json")], &body);
    assert_eq!(status, 403, "{msg}");
    assert_eq!(keyring_keys(&a), [key.to_string()]);
    let (status, msg) = a.raw(
        "POST",
        "/v1/operator/keyring",
        &[h, ("Content-Type", "application/json"), ("X-Consul-Token", &token)],
        &body,
    );
    assert_eq!(status, 200, "{msg}");
    assert_eq!(keyring_keys(&a).len(), 2);

    // The CLI finds the token through --data-dir or GOSSIPD_DATA_DIR, or takes --token.
    let cli = |args: &[&str], env: Option<(&str, &std::path::Path)>| {
        let mut c = std::process::Command::new(integration::agent::binary());
        c.args(["keys", "list", "--http", &host])
            .args(args)
            .env_remove("GOSSIPD_HTTP_TOKEN")
            .env_remove("GOSSIPD_DATA_DIR");
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = cli(&[], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token lacks operator"), "{err}");
    let dir = a.data_dir.to_str().unwrap();
    for out in [
        cli(&["--data-dir", dir], None),
        cli(&[], Some(("GOSSIPD_DATA_DIR", &a.data_dir))),
        cli(&["--token", &token], None),
    ] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(new), "{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn cross_site_and_rebinding_requests_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let token = a.token().unwrap();
    let host = host_of(&a);
    let own = format!("http://{host}");
    let new = "bmV3IGtleSBmb3IgdGhlIG9wZXJhdG9yIHRlc3QhISE=";
    let body = format!("{{\"Key\": \"{new}\"}}");
    // The issue's request, even with a stolen token in the URL: refused by Host, by Origin, and
    // by content type, each on its own.
    let with_token = format!("/v1/operator/keyring?token={token}");
    for headers in [
        vec![("Host", "rebind.evil.example"), ("Origin", "http://evil.example"), ("Content-Type", "text/plain")],
        vec![("Host", "rebind.evil.example:8500")],
        vec![("Host", host.as_str()), ("Origin", "http://evil.example")],
        vec![("Host", host.as_str()), ("Content-Type", "text/plain")],
        vec![("Host", host.as_str()), ("Sec-Fetch-Site", "cross-site")],
    ] {
        let (status, msg) = a.raw("POST", &with_token, &headers, &body);
        assert!([403, 415, 421].contains(&status), "{headers:?} got {status}: {msg}");
    }
    assert_eq!(keyring_keys(&a).len(), 1, "no refused request changed the keyring");
    // A cross-site registration (no token needed on loopback) is refused too.
    let svc = r#"{"ID":"evil","Name":"evil","Port":1}"#;
    let (status, msg) =
        a.raw("PUT", "/v1/agent/service/register", &[("Host", host.as_str()), ("Origin", "http://evil.example")], svc);
    assert_eq!(status, 403, "{msg}");
    assert!(a.get("/v1/agent/services").unwrap().get("evil").is_none());
    // The agent's own origin, localhost and allowed names pass.
    let (status, msg) =
        a.raw("PUT", "/v1/agent/service/register", &[("Host", host.as_str()), ("Origin", own.as_str())], svc);
    assert_eq!(status, 200, "{msg}");
    let local = format!("localhost:{}", a.http.port());
    assert_eq!(a.raw("GET", "/v1/agent/members", &[("Host", local.as_str())], "").0, 200);
}

#[test]
fn http_beyond_loopback_needs_tokens_for_every_request() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("cluster.key"), integration::agent::TEST_KEY).unwrap();
    let out = std::process::Command::new(integration::agent::binary())
        .args(["agent", "--bind", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--http", "0.0.0.0:0", "--data-dir"])
        .arg(root.path().join("open"))
        .arg("--cluster-key-file")
        .arg(root.path().join("cluster.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("--http-require-token read"), "{err}");

    let read_file = root.path().join("read.token");
    std::fs::write(&read_file, "read-token-for-the-test-0123\n").unwrap();
    let a = Agent::start(
        root.path(),
        Options {
            name: "alpha".into(),
            http: Some("0.0.0.0:0".parse().unwrap()),
            extra: vec![
                "--http-require-token".into(),
                "read".into(),
                "--http-read-token-file".into(),
                read_file.display().to_string(),
            ],
            ..Default::default()
        },
    );
    let host = format!("127.0.0.1:{}", a.http.port());
    let h = ("Host", host.as_str());
    assert_eq!(a.raw("GET", "/v1/agent/members", &[h], "").0, 403);
    assert_eq!(a.raw("GET", "/v1/agent/members", &[h, ("X-Consul-Token", "read-token-for-the-test-0123")], "").0, 200);
    let svc = r#"{"ID":"web","Name":"web","Port":1}"#;
    let (status, msg) =
        a.raw("PUT", "/v1/agent/service/register", &[h, ("X-Consul-Token", "read-token-for-the-test-0123")], svc);
    assert!(status == 403 && msg.contains("token lacks write"), "{status} {msg}");
}

#[test]
fn idle_connections_beyond_the_limit_do_not_stop_a_request() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(
        root.path(),
        Options {
            name: "alpha".into(),
            extra: ["--http-max-conns", "16", "--http-header-timeout", "1s"].map(String::from).to_vec(),
            ..Default::default()
        },
    );
    // 300 connections that never finish their headers: far more than the limit.
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut s = std::net::TcpStream::connect(a.http).expect("connect");
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /v1/agent/members HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        }
        idle.push(s);
    }
    // A normal request behind them is answered once the slow ones are cut off.
    let host = host_of(&a);
    let (status, body) = a.raw("GET", "/v1/agent/members", &[("Host", host.as_str())], "");
    assert_eq!(status, 200, "{body}");
    // And the first idle connection was closed by the agent (EOF), not left open.
    let first = &mut idle[0];
    first.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 512];
    let n = match first.read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("the idle connection is still open: {e}"),
    };
    // hyper may answer 408 before closing; either way the connection ends.
    assert!(
        n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[test]
fn an_unsafe_data_directory_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("cluster.key");
    std::fs::write(&key, integration::agent::TEST_KEY).unwrap();
    let key_args = ["--cluster-key-file".as_ref(), key.as_os_str()];
    let dir = root.path().join("open");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = start_expecting_failure(&dir, &key_args);
    assert!(
        err.contains("writable by group or others") && err.contains(&format!("chmod 700 {}", dir.display())),
        "{err}"
    );
    assert!(!dir.join("identity.key").exists(), "nothing was written into the unsafe directory");
    // A parent that others may write (and that is not sticky, as /tmp is) is refused too.
    let shared = root.path().join("shared");
    std::fs::create_dir_all(shared.join("data")).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = start_expecting_failure(&shared.join("data"), &key_args);
    assert!(err.contains(&format!("chmod go-w {}", shared.display())), "{err}");

    // A private directory starts; a secret made readable by others is then refused.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut a = Agent::start_in(dir.clone(), Options { name: "alpha".into(), ..Default::default() });
    a.kill();
    let identity = dir.join("identity.key");
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = start_expecting_failure(&dir, &key_args);
    assert!(err.contains(&format!("chmod 600 {}", identity.display())), "{err}");
    std::fs::set_permissions(&identity, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A file others may write (say, services.json) is refused too.
    let services = dir.join("services.json");
    std::fs::set_permissions(&services, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = start_expecting_failure(&dir, &key_args);
    assert!(err.contains(&format!("chmod go-w {}", services.display())), "{err}");
}

#[test]
fn a_second_agent_on_one_data_directory_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let pid = a.child.as_ref().unwrap().id();
    let key = root.path().join("cluster.key");
    let err = start_expecting_failure(&a.data_dir, &["--cluster-key-file".as_ref(), key.as_os_str()]);
    assert!(err.contains("in use by another agent") && err.contains(&format!("pid {pid}")), "{err}");
    // The first agent is unaffected.
    assert_eq!(a.alive_members(), ["alpha"]);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` at `dir`; `None` (with the reason printed) when this host cannot,
/// which fails the test under CI=true, where it runs as root.
fn tmpfs(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref().ok() != Some("0") {
        assert!(!ci, "CI=true: this test needs root to mount a tmpfs");
        eprintln!("skipping: mounting a tmpfs needs root");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
        .arg(dir)
        .output()
        .expect("run mount");
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(!ci, "CI=true: cannot mount a tmpfs: {why}");
        eprintln!("skipping: cannot mount a tmpfs: {why}");
        return None;
    }
    Some(Tmpfs(dir.to_path_buf()))
}

/// Writes `path` until the disk is full; returns the bytes written.
fn fill(path: &std::path::Path) -> usize {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = [0u8; 4096];
    let mut total = 0;
    for _ in 0..100_000 {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    let _ = f.sync_all();
    total
}

#[test]
fn a_full_disk_refuses_changes_with_5xx_and_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let disk = root.path().join("disk");
    let Some(_mount) = tmpfs(&disk, "2m") else { return };
    let mut a = Agent::start(&disk, Options { name: "alpha".into(), ..Default::default() });
    let (status, msg) = a.put("/v1/agent/service/register", r#"{"ID":"kept","Name":"kept","Port":1}"#);
    assert_eq!(status, 200, "{msg}");
    let old_keys = keyring_keys(&a);

    let filler = disk.join("filler");
    assert!(fill(&filler) > 0);
    // Registrations are appended to a journal: the first few may still fit the journal's last
    // page. Every one acknowledged must survive; the first refused must be a clear 5xx.
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let body = format!(r#"{{"ID":"fill-{i}","Name":"fill","Port":2,"Meta":{{"pad":"{}"}}}}"#, "x".repeat(400));
        let (status, msg) = a.put("/v1/agent/service/register", &body);
        if status == 200 {
            acked.push(format!("fill-{i}"));
            continue;
        }
        assert!((500..600).contains(&status), "a registration on a full disk got {status}: {msg}");
        assert!(msg.contains("No space left") && !msg.contains("Invalid service definition"), "{msg}");
        refused = Some(format!("fill-{i}"));
        break;
    }
    let lost = refused.expect("200 registrations fitted a full disk");
    let new = "bmV3IGtleSBmb3IgdGhlIG9wZXJhdG9yIHRlc3QhISE=";
    let (status, msg) = a.send("POST", "/v1/operator/keyring", &format!("{{\"Key\": \"{new}\"}}"));
    assert!((500..600).contains(&status), "a keyring install on a full disk got {status}: {msg}");
    assert!(msg.contains("could not save the keyring"), "{msg}");
    // Refused means not applied.
    assert_eq!(keyring_keys(&a), old_keys);
    let services = a.get("/v1/agent/services").unwrap();
    assert!(services.get(&lost).is_none() && services.get("kept").is_some(), "{services}");

    // Free the space, restart: what was acknowledged is there, what was refused is not.
    std::fs::remove_file(&filler).unwrap();
    a.restart();
    let services = a.get("/v1/agent/services").unwrap();
    assert!(services.get("kept").is_some() && services.get(&lost).is_none(), "{services}");
    for id in &acked {
        assert!(services.get(id).is_some(), "{id} was acknowledged on the full disk but lost: {services}");
    }
    assert_eq!(keyring_keys(&a), old_keys);
    let (status, msg) = a.send("POST", "/v1/operator/keyring", &format!("{{\"Key\": \"{new}\"}}"));
    assert_eq!(status, 200, "{msg}");
    a.restart();
    assert_eq!(keyring_keys(&a).len(), 2, "an acknowledged keyring change survives a restart");
}

#[test]
fn a_deleted_services_file_stops_the_agent_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let (status, msg) = a.put("/v1/agent/service/register", r#"{"ID":"web","Name":"web","Port":1}"#);
    assert_eq!(status, 200, "{msg}");
    a.kill();
    let file = a.data_dir.join("services.json");
    std::fs::remove_file(&file).unwrap();
    let key = root.path().join("cluster.key");
    let err = start_expecting_failure(&a.data_dir, &["--cluster-key-file".as_ref(), key.as_os_str()]);
    assert!(err.contains(&file.display().to_string()) && err.contains("missing"), "{err}");
}

#[test]
fn a_reload_does_not_bring_in_exec_checks() {
    let root = tempfile::tempdir().unwrap();
    let owned = root.path().join("owned.txt");
    let dir = root.path().join("services.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web.json"), r#"{"service": {"id": "web", "name": "web", "port": 80}}"#).unwrap();
    let a = Agent::start(
        root.path(),
        Options { name: "alpha".into(), config_dir: Some(dir.clone()), ..Default::default() },
    );
    std::fs::write(dir.join("pwn.json"), format!("{{\"service\": {}}}", owned_body(&owned))).unwrap();
    let pid = a.child.as_ref().unwrap().id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for("the reload to be refused", WAIT, || a.log().contains("--enable-local-script-checks").then_some(()));
    let services = a.get("/v1/agent/services").unwrap();
    assert!(services.get("pwn").is_none() && services.get("web").is_some(), "{services}");
    assert!(!owned.exists());
}
