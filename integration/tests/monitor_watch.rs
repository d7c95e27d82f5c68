//! `gossipd monitor` (the live log, `GET /v1/agent/monitor`) and `gossipd watch` (a handler
//! run at each change of a view, through blocking queries) against real agents.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use integration::agent::{Agent, Options, binary};
use integration::wait_for;

const WAIT: Duration = Duration::from_secs(20);

fn gossipd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary()).args(args).output().expect("run gossipd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running client command whose stdout lines arrive on a channel.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Streaming {
    fn start(args: &[&str]) -> Streaming {
        let mut child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gossipd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines, seen: Vec::new() }
    }

    /// Waits for a line containing `needle`; returns it.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {WAIT:?}; seen:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The lines that arrive within `d`.
    fn drain_for(&mut self, d: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + d;
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            self.seen.push(line.clone());
            out.push(line);
        }
        out
    }

    fn signal(&mut self, sig: &str) -> (Option<i32>, String) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
        self.wait()
    }

    fn wait(&mut self) -> (Option<i32>, String) {
        let status = wait_for("the client to exit", WAIT, || self.child.try_wait().ok().flatten());
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.code(), err)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn monitor_streams_live_lines_at_its_level_and_ends_when_the_agent_stops() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let http = a.http.to_string();
    let data = a.data_dir.to_str().unwrap().to_string();

    // The live log is the operator's.
    let (code, _, err) = gossipd(&["monitor", "--http", &http]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("403") && err.contains("operator"), "{err}");
    let (code, _, err) = gossipd(&["monitor", "--http", &http, "--data-dir", &data, "--log-level", "loud"]);
    assert_eq!(code, Some(2), "a bad level is a usage error: {err}");
    let (status, body) =
        a.raw("GET", "/v1/agent/monitor?loglevel=loud", &[("X-Consul-Token", &a.token().unwrap())], "");
    assert_eq!(status, 400, "{body}");

    let mut info = Streaming::start(&["monitor", "--http", &http, "--data-dir", &data]);
    let mut debug = Streaming::start(&["monitor", "--http", &http, "--data-dir", &data, "--log-level", "debug"]);
    info.expect("monitor attached");
    debug.expect("monitor attached");

    // A request refused at the door is logged at debug (the agent's own stderr filter is
    // `gossipd=debug,warn`, but a monitor's level is its own); SIGHUP without --config-dir
    // warns.
    let (status, _) = a.raw("GET", "/v1/agent/members", &[("Host", "rebind.evil.example")], "");
    assert_eq!(status, 403);
    let pid = a.child.as_ref().unwrap().id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let refused = debug.expect("HTTP request refused");
    assert!(refused.contains("DEBUG") && refused.contains("rebind.evil.example"), "{refused}");
    debug.expect("nothing to reload");
    let warned = info.expect("nothing to reload");
    assert!(warned.contains("WARN") && !warned.contains('\u{1b}'), "plain text, no colours: {warned:?}");
    assert!(
        !info.seen.iter().any(|l| l.contains("HTTP request refused")),
        "an info monitor got a debug line: {:?}",
        info.seen
    );

    // The agent stops: each stream ends after the agent's last line, and the client exits 0.
    assert!(a.terminate().success());
    for m in [&mut info, &mut debug] {
        m.expect("stopped");
        let (code, err) = m.wait();
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("ended the log stream"), "{err}");
    }

    // The monitor's level is its own: an agent that logs only warnings streams info lines to a
    // monitor at info (and still writes none to stderr). Ctrl-C ends a monitor with status 0.
    let b = Agent::start(
        root.path(),
        Options { name: "bravo".into(), wrapper: vec!["env".into(), "RUST_LOG=warn".into()], ..Default::default() },
    );
    let bdata = b.data_dir.to_str().unwrap().to_string();
    let mut m = Streaming::start(&["monitor", "--http", &b.http.to_string(), "--data-dir", &bdata]);
    assert!(m.expect("monitor attached").contains("INFO"));
    assert!(!b.log().contains("INFO"), "bravo logs warnings only:\n{}", b.log());
    let (code, err) = m.signal("INT");
    assert_eq!(code, Some(0), "{err}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_monitor_that_does_not_read_is_told_how_many_lines_it_missed() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let token = a.token().unwrap();
    let pid = a.child.as_ref().unwrap().id();

    // A monitor at debug that reads nothing for now.
    let mut slow = std::net::TcpStream::connect(a.http).unwrap();
    write!(
        slow,
        "GET /v1/agent/monitor?loglevel=debug HTTP/1.1\r\nHost: {}\r\nX-Consul-Token: {token}\r\n\r\n",
        a.http
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);

    // ~40 MB of debug lines: refused requests whose 8 KB Host header each line quotes (cut to
    // 4 KB), far more than the socket buffers and the monitor's queue hold.
    let mut flood = std::net::TcpStream::connect(a.http).unwrap();
    let mut reader = flood.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut sink = [0u8; 65536];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    });
    let host = format!("{}.example", "x".repeat(8000));
    for _ in 0..10_000 {
        write!(flood, "GET /v1/agent/members HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    }
    write!(flood, "GET /v1/agent/members HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", a.http).unwrap();
    drain.join().unwrap();
    let after = rss_kib(pid);
    assert!(after < before + 64 * 1024, "the agent grew from {before} KiB to {after} KiB behind a slow monitor");

    // Now read: the queued lines, then the count of what was dropped.
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    let text = loop {
        let n = slow.read(&mut buf).expect("the monitor stream");
        assert!(n > 0, "the stream ended");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if text.contains("dropped: this reader is slower than the log") {
            break text.into_owned();
        }
        assert!(seen.len() < 64 << 20, "no drop notice in {} bytes", seen.len());
    };
    let notice = text.lines().find(|l| l.contains("log line(s) dropped")).unwrap();
    let n: u64 = notice.split_whitespace().nth(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(n > 1000, "{notice}");
    // The agent answers as before.
    assert!(a.get("/v1/agent/members").is_ok());
}

#[test]
fn watch_runs_its_handler_when_the_view_changes_and_only_then() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let http = a.http.to_string();
    let out = root.path().join("runs");
    let handler = format!("{{ cat; echo \"index=$GOSSIPD_INDEX\"; echo ---; }} >> {}", out.display());
    let mut w =
        Streaming::start(&["watch", "--http", &http, "--type", "service", "--service", "web", "--passing", &handler]);
    let runs = |n: usize| {
        // Only finished runs: a handler may be writing its run as we read.
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let done = text.rfind("---\n").map_or(0, |i| i + 4);
        let runs: Vec<String> = text[..done].split("---\n").filter(|r| !r.is_empty()).map(str::to_owned).collect();
        (runs.len() >= n).then_some(runs)
    };
    // At start, with the current result: no instance.
    let first = wait_for("the first run", WAIT, || runs(1));
    assert!(first[0].starts_with("[]"), "{first:?}");
    assert!(first[0].contains("index=") && !first[0].contains("index=\n"), "{first:?}");

    let (status, body) = a.put("/v1/agent/service/register", r#"{"ID": "web-1", "Name": "web", "Port": 80}"#);
    assert_eq!(status, 200, "{body}");
    let second = wait_for("a run for web-1", WAIT, || runs(2));
    let json: serde_json::Value = serde_json::from_str(second[1].split("index=").next().unwrap()).unwrap();
    assert_eq!(json[0]["Service"]["ID"], "web-1", "{json}");

    // Changes elsewhere raise the catalog index but not this view: no run. Nor does an instance
    // that is not passing.
    let (status, _) = a.put("/v1/agent/service/register", r#"{"Name": "db", "Port": 5432}"#);
    assert_eq!(status, 200);
    let (status, body) = a.put(
        "/v1/agent/service/register",
        r#"{"ID": "web-2", "Name": "web", "Port": 81, "Check": {"TTL": "30s", "Status": "critical"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(0).unwrap().len(), 2, "a run without a change of the view");

    // web-2 passes: it joins the view.
    let (status, body) = a.put("/v1/agent/check/pass/service:web-2", "");
    assert_eq!(status, 200, "{body}");
    let third = wait_for("a run for web-2 passing", WAIT, || runs(3));
    assert!(third[2].contains("web-1") && third[2].contains("web-2"), "{}", third[2]);

    let (code, err) = w.signal("INT");
    assert_eq!(code, Some(0), "{err}");
    assert!(w.seen.is_empty(), "with a handler nothing is printed: {:?}", w.seen);
}

#[test]
fn watch_prints_each_result_without_a_handler() {
    let root = tempfile::tempdir().unwrap();
    let a = Agent::start(root.path(), Options { name: "alpha".into(), ..Default::default() });
    let http = a.http.to_string();

    let mut w = Streaming::start(&["watch", "--http", &http, "--type", "services", "--format", "json"]);
    assert_eq!(w.expect("{"), "{}");
    let (status, _) = a.put("/v1/agent/service/register", r#"{"Name": "api", "Port": 9000, "Tags": ["v2"]}"#);
    assert_eq!(status, 200);
    let line = w.expect("api");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["api"], serde_json::json!(["v2"]));
    assert!(w.drain_for(Duration::from_secs(1)).is_empty(), "one line per change");
    let (code, err) = w.signal("TERM");
    assert_eq!(code, Some(0), "{err}");

    // --once: the current result, then exit; tables by default.
    let (code, out, err) = gossipd(&["watch", "--http", &http, "--type", "service", "--service", "api", "--once"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("SERVICE  ID   NODE   ADDRESS    PORT  TAGS  STATUS"), "{out}");
    assert!(out.contains("api      api  alpha  127.0.0.1  9000  v2    passing"), "{out}");
    let (code, out, err) = gossipd(&["watch", "--http", &http, "--type", "nodes", "--once", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["Node"], "alpha", "{out}");

    // Exit codes scripts can rely on.
    let (code, _, err) = gossipd(&["watch", "--http", &http, "--type", "nodes", "--service", "web"]);
    assert_eq!(code, Some(2), "--service with --type nodes: {err}");
    let (code, _, err) = gossipd(&["watch", "--http", &http, "--type", "service"]);
    assert_eq!(code, Some(2), "--type service without --service: {err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, _, err) = gossipd(&["watch", "--http", &format!("127.0.0.1:{port}"), "--type", "nodes"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot reach agent"), "{err}");
}
