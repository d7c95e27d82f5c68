//! A real `gossipd agent` child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::wait_for;

/// Path of the `gossipd` binary under test.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GOSSIPD_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/gossipd
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("gossipd");
    assert!(bin.exists(), "{} not found: run `cargo build -p gossipd` first (scripts/test does)", bin.display());
    bin
}

/// Path of the "newer build" for the mixed-build test (integration/tests/evolution.rs):
/// `$GOSSIPD_NEXT_BIN`, else `gossipd-next` next to [`binary`], which `scripts/test` builds with
/// the test-only `testing` feature (`cargo build -p gossipd --features testing`, copied). Panics,
/// saying so, when it is missing: the test must not pass by skipping.
pub fn next_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GOSSIPD_NEXT_BIN") {
        return PathBuf::from(p);
    }
    let bin = binary().with_file_name("gossipd-next");
    assert!(
        bin.exists(),
        "{} not found: run scripts/test, which builds it (cargo build -p gossipd --features testing, \
         then copies target/debug/gossipd to gossipd-next and builds the normal gossipd again)",
        bin.display()
    );
    bin
}

/// Runs `gossipd agent` on loopback port 0 with `data_dir`, `extra` arguments and no cluster key
/// in the environment, expecting it to refuse to start: returns its stderr (panics if it ran).
pub fn start_expecting_failure(data_dir: &Path, extra: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(binary())
        .args(["agent", "--bind", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("GOSSIPD_CLUSTER_KEY")
        .output()
        .expect("run gossipd");
    assert!(!out.status.success(), "the agent was expected to refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Options for starting an agent.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Node name.
    pub name: String,
    /// Seeds (gossip addresses of other agents).
    pub seeds: Vec<SocketAddr>,
    /// Gossip bind address; default `127.0.0.1:0`.
    pub bind: Option<SocketAddr>,
    /// DNS address; default `127.0.0.1:0`.
    pub dns: Option<SocketAddr>,
    /// HTTP address; default `127.0.0.1:0`.
    pub http: Option<SocketAddr>,
    /// Service definition directory.
    pub config_dir: Option<PathBuf>,
    /// Cluster key file; default: `cluster.key` in the test's root directory (one key per test,
    /// created on first use).
    pub cluster_key_file: Option<PathBuf>,
    /// A `--config` file that sets everything: when given, the agent is started with only
    /// `--config FILE` and `extra` (the file must set `data_dir` to the agent's data directory,
    /// `ROOT/NAME`, and a cluster key file), and the other options are ignored.
    pub config_file: Option<PathBuf>,
    /// Extra arguments.
    pub extra: Vec<String>,
    /// The binary to run; default [`binary`] (e.g. [`next_binary`] for a "newer build").
    pub binary: Option<PathBuf>,
    /// Run with the cluster key only: no CA, no certificate (the weaker mode). By default the
    /// harness certifies every agent it starts (name `name`, every service, operator role) with
    /// one CA per test root, and makes the agent require certificates.
    pub uncertified: bool,
    /// Run the agent inside this network namespace (`ip netns exec NS gossipd ...`). The test
    /// process cannot reach its DNS or HTTP API: talk to it from inside the namespace.
    pub netns: Option<String>,
    /// A command prefix the agent runs under, e.g. `["ip", "netns", "exec", "NS"]`: the agent
    /// then listens inside whatever network namespace the prefix enters, so the harness reaches
    /// its HTTP API through the same prefix (`GET` only, with bash's `/dev/tcp`).
    pub wrapper: Vec<String>,
}

/// A fixed test key (base64 of 32 bytes) for the default cluster key file.
pub const TEST_KEY: &str = "dGhpcyBpcyB0aGUgdGVzdCBjbHVzdGVyIGtleSEhISE=";

/// A running agent. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Agent {
    /// Its options.
    pub opts: Options,
    /// Data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// The child process.
    pub child: Option<Child>,
    /// Bound gossip address.
    pub gossip: SocketAddr,
    /// Bound DNS address.
    pub dns: SocketAddr,
    /// Bound HTTP address.
    pub http: SocketAddr,
    /// Generation the agent started with.
    pub generation: u64,
}

fn spawn(opts: &Options, data_dir: &Path) -> Child {
    let _ = std::fs::remove_file(data_dir.join("addrs.json"));
    let program = || opts.binary.clone().unwrap_or_else(binary);
    let any = "127.0.0.1:0".parse::<SocketAddr>().expect("addr");
    let mut cmd = match (&opts.netns, opts.wrapper.split_first()) {
        // `ip netns exec` execs the program in place: the child's pid is the agent's.
        (Some(ns), _) => {
            let mut c = Command::new(crate::peers::find("ip").expect("ip (iproute2) for --netns agents"));
            c.args(["netns", "exec", ns]).arg(program());
            c
        }
        (None, Some((prog, args))) => {
            let mut c = Command::new(prog);
            c.args(args).arg(program());
            c
        }
        (None, None) => Command::new(program()),
    };
    if let Some(file) = &opts.config_file {
        cmd.arg("agent").arg("--config").arg(file).args(&opts.extra).env_remove("GOSSIPD_CLUSTER_KEY");
        let log = std::fs::File::create(data_dir.join("agent.log")).expect("log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        return cmd.spawn().expect("spawn gossipd");
    }
    cmd.arg("agent")
        .arg("--node")
        .arg(&opts.name)
        .arg("--bind")
        .arg(opts.bind.unwrap_or(any).to_string())
        .arg("--dns")
        .arg(opts.dns.unwrap_or(any).to_string())
        .arg("--http")
        .arg(opts.http.unwrap_or(any).to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--gossip-interval-ms")
        .arg("200")
        .arg("--log-level")
        .arg("gossipd=debug,warn");
    for s in &opts.seeds {
        cmd.arg("--seed").arg(s.to_string());
    }
    let key_file = match &opts.cluster_key_file {
        Some(f) => f.clone(),
        None => {
            let f = data_dir.parent().unwrap_or(data_dir).join("cluster.key");
            if !f.exists() {
                std::fs::write(&f, TEST_KEY).expect("write the test cluster key");
            }
            f
        }
    };
    cmd.arg("--cluster-key-file").arg(key_file);
    if !opts.uncertified {
        let (ca, cert) = certify(data_dir, &opts.name);
        cmd.arg("--ca-file").arg(ca).arg("--cert-file").arg(cert);
    }
    if let Some(d) = &opts.config_dir {
        cmd.arg("--config-dir").arg(d);
    }
    cmd.args(&opts.extra);
    let log = std::fs::File::create(data_dir.join("agent.log")).expect("log file");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    cmd.spawn().expect("spawn gossipd")
}

fn armor(label: &str, bytes: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
}

fn write_secret(path: &Path, secret: &[u8; 32]) {
    use base64::Engine;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = format!("{}\n", base64::engine::general_purpose::STANDARD.encode(secret));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).expect("secret file");
    f.write_all(text.as_bytes()).expect("write secret");
}

fn read_secret(path: &Path) -> [u8; 32] {
    use base64::Engine;
    let text = std::fs::read_to_string(path).expect("read secret");
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).expect("base64 secret");
    bytes.try_into().expect("32 bytes")
}

fn new_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).expect("OS RNG");
    s
}

/// The test root's CA (created on first use) and a certificate for `name` and the identity of
/// `data_dir` (created there first when the directory is new, as the agent would): returns the
/// CA certificate file and the node certificate file.
fn certify(data_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    use gossip_core::cert::{CertRequest, Certificate, ROLE_OPERATOR};
    use gossip_core::secure::keys::Identity;
    let root = data_dir.parent().unwrap_or(data_dir);
    let (ca_key, ca_crt) = (root.join("harness-ca.key"), root.join("harness-ca.crt"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    if !ca_key.exists() {
        let secret = new_secret();
        let ca = Identity::from_secret(secret);
        let cert = Certificate::new_ca(&ca, "harness-ca", now - 86_400, now + 30 * 86_400).expect("CA cert");
        std::fs::write(&ca_crt, armor("GOSSIPD CERTIFICATE", cert.encoded())).expect("write CA cert");
        write_secret(&ca_key, &secret);
    }
    let ca = Identity::from_secret(read_secret(&ca_key));
    let id_file = data_dir.join("identity.key");
    if !id_file.exists() && !data_dir.join("node.json").exists() {
        write_secret(&id_file, &new_secret());
    }
    let identity = Identity::from_secret(read_secret(&id_file)).public();
    let req = CertRequest {
        name: name.to_string(),
        identity,
        services: vec!["*".into()],
        roles: ROLE_OPERATOR,
        max_entries: 0,
        not_before: now - 86_400,
        not_after: now + 30 * 86_400,
    };
    let cert = Certificate::sign(&ca, &req).expect("node cert");
    let dir_name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let cert_file = root.join(format!("harness-{dir_name}-{name}.crt"));
    std::fs::write(&cert_file, armor("GOSSIPD CERTIFICATE", cert.encoded())).expect("write node cert");
    (ca_crt, cert_file)
}

impl Agent {
    /// A 3-agent cluster under `root`: `alpha`, then `bravo` and `charlie` seeded with it;
    /// returns once each sees all three alive.
    pub fn three(root: &Path) -> (Agent, Agent, Agent) {
        let a = Agent::start(root, Options { name: "alpha".into(), ..Default::default() });
        let seeds = vec![a.gossip];
        let b = Agent::start(root, Options { name: "bravo".into(), seeds: seeds.clone(), ..Default::default() });
        let c = Agent::start(root, Options { name: "charlie".into(), seeds, ..Default::default() });
        for x in [&a, &b, &c] {
            wait_for("3 alive members everywhere", Duration::from_secs(20), || {
                (x.alive_members().len() == 3).then_some(())
            });
        }
        (a, b, c)
    }

    /// Starts an agent with a fresh data directory under `root`.
    pub fn start(root: &Path, opts: Options) -> Agent {
        let data_dir = root.join(&opts.name);
        std::fs::create_dir_all(&data_dir).expect("data dir");
        Agent::start_in(data_dir, opts)
    }

    /// Starts an agent on an existing data directory.
    pub fn start_in(data_dir: PathBuf, opts: Options) -> Agent {
        let mut child = spawn(&opts, &data_dir);
        let addrs_path = data_dir.join("addrs.json");
        let addrs: Value = wait_for("the agent to write addrs.json", Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(data_dir.join("agent.log")).unwrap_or_default();
                panic!("agent {} exited with {status} at start:\n{log}", opts.name);
            }
            std::fs::read(&addrs_path).ok().and_then(|b| serde_json::from_slice(&b).ok())
        });
        let addr = |k: &str| addrs[k].as_str().and_then(|s| s.parse().ok()).expect("address in addrs.json");
        let agent = Agent {
            gossip: addr("gossip"),
            dns: addr("dns"),
            http: addr("http"),
            generation: addrs["generation"].as_u64().expect("generation"),
            opts,
            data_dir,
            child: Some(child),
        };
        if agent.opts.netns.is_none() {
            wait_for("the HTTP API", Duration::from_secs(10), || agent.get("/v1/agent/members").ok());
        }
        agent
    }

    /// Kills with SIGKILL (no leave, no flush) and waits.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("agent is running");
        let pid = c.id().to_string();
        let _ = Command::new("kill").arg("-TERM").arg(&pid).status();
        wait_for("the agent to exit after SIGTERM", Duration::from_secs(15), || c.try_wait().ok().flatten())
    }

    /// Waits for the agent to exit on its own (after `gossipd leave`, say).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("agent is running");
        wait_for("the agent to exit", Duration::from_secs(15), || c.try_wait().ok().flatten())
    }

    /// Sends SIGINT (a graceful leave) and waits for the exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("agent is running");
        let pid = c.id().to_string();
        let _ = Command::new("kill").arg("-INT").arg(&pid).status();
        wait_for("the agent to exit after SIGINT", Duration::from_secs(15), || c.try_wait().ok().flatten())
    }

    /// Restarts as a service manager does: SIGTERM, wait for the exit, start again on the same
    /// data directory and ports.
    pub fn restart_gracefully(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "SIGTERM should exit 0, got {status}");
        self.start_again();
    }

    /// Restarts on the same data directory and the same ports.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    fn start_again(&mut self) {
        let mut opts = self.opts.clone();
        opts.bind = Some(self.gossip);
        opts.dns = Some(self.dns);
        opts.http = Some(self.http);
        *self = Agent::start_in(self.data_dir.clone(), opts);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The agent's operator token (`DATA_DIR/operator.token`), which the harness sends with
    /// every request made through [`Agent::get`], [`Agent::put`] and [`Agent::send`].
    pub fn token(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.join("operator.token")).ok().map(|t| t.trim().to_string())
    }

    /// One HTTP/1.1 request written by hand (so that `Host`, `Origin` and every other header
    /// are exactly `headers`, plus `Content-Length` and `Connection: close`); returns (status,
    /// body). No token is added.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).expect("connect to the HTTP API");
        s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).expect("write the request");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    fn with_token<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match self.token() {
            Some(t) => req.header("X-Consul-Token", t),
            None => req,
        }
    }

    /// GET returning JSON.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        if !self.opts.wrapper.is_empty() {
            return self.get_wrapped(path);
        }
        let mut resp = self.with_token(ureq::get(&self.url(path))).call().map_err(|e| e.to_string())?;
        resp.body_mut().read_json::<Value>().map_err(|e| e.to_string())
    }

    /// GET through the agent's command prefix: one HTTP/1.0 request over bash's `/dev/tcp`,
    /// run under the prefix so that it connects inside the agent's network namespace.
    fn get_wrapped(&self, path: &str) -> Result<Value, String> {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{} && printf 'GET %s HTTP/1.0\\r\\nHost: {}\\r\\n\\r\\n' \"$0\" >&3 && cat <&3",
            self.http.ip(),
            self.http.port(),
            self.http,
        );
        let (prog, args) = self.opts.wrapper.split_first().expect("a wrapper");
        let out =
            Command::new(prog).args(args).args(["bash", "-c", &script, path]).output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            return Err(format!("GET {path}: {}", head.lines().next().unwrap_or_default()));
        }
        serde_json::from_str(body).map_err(|e| e.to_string())
    }

    /// PUT with a raw body; returns (status, body text). Non-2xx statuses are returned, not errors.
    pub fn put(&self, path: &str, body: &str) -> (u16, String) {
        assert!(self.opts.wrapper.is_empty(), "PUT to an agent under a command prefix is not supported");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut resp =
            self.with_token(agent.put(&self.url(path))).content_type("application/json").send(body).expect("PUT");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// Names of the members this agent sees as alive.
    pub fn alive_members(&self) -> Vec<String> {
        let v = self.get("/v1/agent/members").unwrap_or(Value::Null);
        let mut names: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter().filter(|m| m["Status"] == 1).filter_map(|m| m["Name"].as_str().map(str::to_owned)).collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// One counter of `/v1/agent/metrics`, e.g. `("Secure", "HandshakesCompleted")`.
    pub fn metric(&self, group: &str, name: &str) -> u64 {
        self.get("/v1/agent/metrics").ok().and_then(|v| v[group][name].as_u64()).unwrap_or(0)
    }

    /// Sends a JSON body with `method` (POST, PUT, DELETE); returns (status, body text).
    pub fn send(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        assert!(self.opts.wrapper.is_empty(), "{method} to an agent under a command prefix is not supported");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = self.url(path);
        let resp = match method {
            "POST" => self.with_token(agent.post(&url)).content_type("application/json").send(body),
            "DELETE" => {
                self.with_token(agent.delete(&url).force_send_body()).content_type("application/json").send(body)
            }
            _ => self.with_token(agent.put(&url)).content_type("application/json").send(body),
        };
        let mut resp = resp.expect("HTTP request");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
