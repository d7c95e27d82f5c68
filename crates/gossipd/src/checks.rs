//! Local health checks: Consul check definitions (parsed from a [`ServiceDef`]'s raw `Check` /
//! `Checks`) and their runners.
//!
//! Kinds: `HTTP` (GET over a minimal HTTP/1.1 client, `http://` only: 2xx passing, 429 warning,
//! anything else or no answer critical), `TCP` (connect: passing), `Args` (exec argv: exit 0
//! passing, 1 warning, else critical; killed at the timeout) and `TTL` (critical unless the
//! service reports through `PUT /v1/agent/check/{pass,warn,fail}/:id` within the TTL).
//!
//! Decisions:
//!
//! - Keys are matched as service definitions' (case-insensitive, `_` ignored); every error names
//!   its field, e.g. `Checks[0].Interval: required for HTTP checks`. `Check` and `Checks` are
//!   numbered together, `Check` first.
//! - Check ids default to `service:<service id>`, or `service:<service id>:<n>` (n from 1) when
//!   the service has several checks. Ids are unique per agent.
//! - Initial status (`Status` absent): TTL checks start critical (as Consul); HTTP, TCP and exec
//!   checks start passing and are run at once, so a new or restarted service is not dropped from
//!   DNS before its first probe answers.
//! - `Interval` is at least 100 ms; `Timeout` defaults to 10 s.
//! - An instance's health is the worst of its checks' (no checks: passing).

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gossip_core::Health;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::driver::Command;
use crate::service_def::{DefError, ServiceDef, collect_fields, got, invalid, join};

/// Shortest accepted `Interval`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// `Timeout` when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most output bytes kept per check result.
pub const MAX_OUTPUT: usize = 4096;

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// GET this `http://` URL.
    Http(String),
    /// Connect to this `host:port`.
    Tcp(String),
    /// Run this argv.
    Exec(Vec<String>),
    /// Critical unless updated within this long.
    Ttl(Duration),
}

impl Kind {
    fn label(&self) -> &'static str {
        match self {
            Kind::Http(_) => "HTTP",
            Kind::Tcp(_) => "TCP",
            Kind::Exec(_) => "Args",
            Kind::Ttl(_) => "TTL",
        }
    }
}

/// One validated check definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDef {
    /// Check id, unique on this agent.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it probes.
    pub kind: Kind,
    /// Time between probes (unused by TTL checks).
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Deregister the service after this long critical.
    pub deregister_after: Option<Duration>,
    /// Status before the first result.
    pub initial: Health,
    /// Free-form notes (Consul's `Notes`).
    pub notes: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum F {
    Id,
    Name,
    Http,
    Tcp,
    Args,
    Ttl,
    Interval,
    Timeout,
    Dereg,
    Status,
    Notes,
}

impl F {
    fn from_key(norm: &str) -> Option<F> {
        Some(match norm {
            "checkid" | "id" => F::Id,
            "name" => F::Name,
            "http" => F::Http,
            "tcp" => F::Tcp,
            "args" | "scriptargs" => F::Args,
            "ttl" => F::Ttl,
            "interval" => F::Interval,
            "timeout" => F::Timeout,
            "deregistercriticalserviceafter" => F::Dereg,
            "status" => F::Status,
            "notes" => F::Notes,
            _ => return None,
        })
    }
}

/// Consul check fields accepted and ignored without a warning (normalized).
const IGNORED: &[&str] = &[
    "method",
    "header",
    "tlsskipverify",
    "tlsservername",
    "body",
    "serviceid",
    "successbeforepassing",
    "failuresbeforewarning",
    "failuresbeforecritical",
    "outputmaxsize",
    "shell",
    "disableredirects",
    "namespace",
    "partition",
];

/// Parses a Consul duration: Go syntax (`10s`, `250ms`, `1m30s`, `1.5h`; units ns, us, µs, ms,
/// s, m, h), or `0`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += v * scale;
        rest = &rest[u..];
    }
    (total.is_finite() && total < 1e10).then(|| Duration::from_secs_f64(total))
}

fn duration(v: &Value, path: &str) -> Result<Duration, DefError> {
    let s = v.as_str().ok_or_else(|| invalid(path, format!("must be a duration string, got {}", got(v))))?;
    parse_duration(s).ok_or_else(|| invalid(path, format!("invalid duration {s:?} (use e.g. 10s, 500ms, 1m30s)")))
}

fn string(v: &Value, path: &str) -> Result<String, DefError> {
    v.as_str().map(str::to_owned).ok_or_else(|| invalid(path, format!("must be a string, got {}", got(v))))
}

/// Parses a health status name.
pub fn parse_status(s: &str) -> Option<Health> {
    match s {
        "passing" => Some(Health::Passing),
        "warning" => Some(Health::Warning),
        "critical" => Some(Health::Critical),
        _ => None,
    }
}

/// The Consul name of a status.
pub fn status_str(h: Health) -> &'static str {
    match h {
        Health::Passing => "passing",
        Health::Warning => "warning",
        Health::Critical => "critical",
    }
}

fn severity(h: Health) -> u8 {
    match h {
        Health::Passing => 0,
        Health::Warning => 1,
        Health::Critical => 2,
    }
}

/// The worst of `statuses` (none: passing).
pub fn aggregate(statuses: impl IntoIterator<Item = Health>) -> Health {
    statuses.into_iter().max_by_key(|h| severity(*h)).unwrap_or(Health::Passing)
}

/// Validates the raw checks of service `service_id`; `prefix` is the service's field path
/// (`""`, `service`, `services[1]`, ...).
pub fn parse_checks(
    service_id: &str,
    service_name: &str,
    raw: &[Value],
    prefix: &str,
) -> Result<Vec<CheckDef>, DefError> {
    let mut out: Vec<CheckDef> = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let here = join(prefix, &format!("Checks[{i}]"));
        let def = parse_one(service_id, service_name, v, &here, i, raw.len())?;
        if out.iter().any(|c| c.id == def.id) {
            return Err(invalid(&join(&here, "CheckID"), format!("duplicate check ID {:?}", def.id)));
        }
        out.push(def);
    }
    Ok(out)
}

fn parse_one(sid: &str, sname: &str, v: &Value, here: &str, i: usize, n: usize) -> Result<CheckDef, DefError> {
    let obj = v.as_object().ok_or_else(|| invalid(here, format!("must be an object, got {}", got(v))))?;
    let fields = collect_fields(obj, here, F::from_key, IGNORED)?;
    let p = |f: &str| join(here, f);
    let mut kinds = Vec::new();
    if let Some(v) = fields.get(&F::Http) {
        let url = string(v, &p("HTTP"))?;
        if url.starts_with("https://") {
            return Err(invalid(&p("HTTP"), "https:// is not supported (only http://)"));
        }
        if parse_url(&url).is_none() {
            return Err(invalid(&p("HTTP"), format!("must be an http://host[:port]/path URL, got {url:?}")));
        }
        kinds.push(Kind::Http(url));
    }
    if let Some(v) = fields.get(&F::Tcp) {
        let addr = string(v, &p("TCP"))?;
        let ok = addr.rsplit_once(':').is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(invalid(&p("TCP"), format!("must be host:port, got {addr:?}")));
        }
        kinds.push(Kind::Tcp(addr));
    }
    if let Some(v) = fields.get(&F::Args) {
        let arr =
            v.as_array().ok_or_else(|| invalid(&p("Args"), format!("must be an array of strings, got {}", got(v))))?;
        if arr.is_empty() {
            return Err(invalid(&p("Args"), "must not be empty"));
        }
        let args =
            arr.iter().enumerate().map(|(j, a)| string(a, &p(&format!("Args[{j}]")))).collect::<Result<Vec<_>, _>>()?;
        kinds.push(Kind::Exec(args));
    }
    if let Some(v) = fields.get(&F::Ttl) {
        let ttl = duration(v, &p("TTL"))?;
        if ttl.is_zero() {
            return Err(invalid(&p("TTL"), "must be positive"));
        }
        kinds.push(Kind::Ttl(ttl));
    }
    let kind = match kinds.len() {
        0 => return Err(invalid(here, "must have one of HTTP, TCP, Args, TTL (other check types are not supported)")),
        1 => kinds.remove(0),
        _ => {
            let names: Vec<&str> = kinds.iter().map(Kind::label).collect();
            return Err(invalid(
                here,
                format!("only one of HTTP, TCP, Args, TTL may be given, got {}", names.join(" and ")),
            ));
        }
    };
    let interval = match (fields.get(&F::Interval), &kind) {
        (Some(v), _) => {
            let d = duration(v, &p("Interval"))?;
            if d < MIN_INTERVAL && !matches!(kind, Kind::Ttl(_)) {
                return Err(invalid(&p("Interval"), format!("must be at least {MIN_INTERVAL:?}")));
            }
            d
        }
        (None, Kind::Ttl(ttl)) => *ttl,
        (None, k) => return Err(invalid(&p("Interval"), format!("required for {} checks", k.label()))),
    };
    let timeout = match fields.get(&F::Timeout) {
        None => DEFAULT_TIMEOUT,
        Some(v) => {
            let d = duration(v, &p("Timeout"))?;
            if d.is_zero() {
                return Err(invalid(&p("Timeout"), "must be positive"));
            }
            d
        }
    };
    let deregister_after =
        fields.get(&F::Dereg).map(|v| duration(v, &p("DeregisterCriticalServiceAfter"))).transpose()?;
    let initial = match fields.get(&F::Status) {
        None if matches!(kind, Kind::Ttl(_)) => Health::Critical,
        None => Health::Passing,
        Some(v) => {
            let s = string(v, &p("Status"))?;
            parse_status(&s).ok_or_else(|| {
                invalid(&p("Status"), format!("must be \"passing\", \"warning\" or \"critical\", got {s:?}"))
            })?
        }
    };
    let id = match fields.get(&F::Id) {
        Some(v) => {
            let id = string(v, &p("CheckID"))?;
            if id.is_empty() || id.len() > crate::service_def::MAX_ID_LEN || id.contains('/') {
                return Err(invalid(&p("CheckID"), format!("must be 1..=128 bytes without '/', got {id:?}")));
            }
            id
        }
        None if n == 1 => format!("service:{sid}"),
        None => format!("service:{sid}:{}", i + 1),
    };
    let name = match fields.get(&F::Name) {
        Some(v) => string(v, &p("Name"))?,
        None => format!("Service '{sname}' check"),
    };
    let notes = fields.get(&F::Notes).map(|v| string(v, &p("Notes"))).transpose()?.unwrap_or_default();
    Ok(CheckDef { id, name, kind, interval, timeout, deregister_after, initial, notes })
}

/// The checks of an already validated definition (an invalid one, which cannot happen, has none).
pub fn of(def: &ServiceDef) -> Vec<CheckDef> {
    parse_checks(&def.id, &def.name, &def.checks, "").unwrap_or_else(|e| {
        tracing::error!(service = %def.id, error = %e, "invalid check definition; ignoring its checks");
        Vec::new()
    })
}

/// Who may define exec (`Args`) checks: nobody by default, since a check runs as the agent's
/// user. `api` is `--enable-script-checks` (the HTTP API and the config directory);
/// `config_dir` is `--enable-local-script-checks` (the config directory only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptPolicy {
    /// Exec checks accepted from the HTTP API (and the config directory).
    pub api: bool,
    /// Exec checks accepted from the config directory.
    pub config_dir: bool,
}

impl ScriptPolicy {
    /// Whether a config-directory definition may carry exec checks.
    pub fn allows_config_dir(&self) -> bool {
        self.api || self.config_dir
    }
}

/// The id of `def`'s first exec (`Args`) check, if it has one.
pub fn first_exec(def: &ServiceDef) -> Option<String> {
    of(def).into_iter().find(|c| matches!(c.kind, Kind::Exec(_))).map(|c| c.id)
}

/// The health a service starts with: the worst of its checks' initial statuses.
pub fn initial_health(def: &ServiceDef) -> Health {
    aggregate(of(def).iter().map(|c| c.initial))
}

/// `http://host[:port]/path` → (`host:port`, host header, path).
fn parse_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path };
    if authority.is_empty() || authority.contains('@') || path.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(b) => authority[b..].contains(':'),
        None => authority.contains(':'),
    };
    let connect = if has_port {
        let (_, port) = authority.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Some((connect, authority.to_string(), path))
}

/// One probe result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Status.
    pub status: Health,
    /// What the probe saw.
    pub output: String,
}

fn outcome(status: Health, output: impl Into<String>) -> Outcome {
    let mut output = output.into();
    if output.len() > MAX_OUTPUT {
        let cut = (0..=MAX_OUTPUT).rev().find(|&i| output.is_char_boundary(i)).unwrap_or(0);
        output.truncate(cut);
    }
    Outcome { status, output }
}

/// Maps an HTTP status code to a check status.
pub fn http_status(code: u16) -> Health {
    match code {
        200..=299 => Health::Passing,
        429 => Health::Warning,
        _ => Health::Critical,
    }
}

/// Maps an exec exit code to a check status.
pub fn exit_status(code: Option<i32>) -> Health {
    match code {
        Some(0) => Health::Passing,
        Some(1) => Health::Warning,
        _ => Health::Critical,
    }
}

/// True when `buf` holds a full response head and a body as long as its `Content-Length`.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..end]);
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
    });
    len.is_some_and(|len| buf.len() >= end + 4 + len)
}

async fn probe_http(url: &str, timeout: Duration) -> Outcome {
    let Some((connect, host, path)) = parse_url(url) else { return outcome(Health::Critical, "invalid URL") };
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(connect.as_str()).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gossipd health check\r\nAccept: text/plain, text/*, */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        // Until the server closes, the body is complete (by Content-Length) or enough is read:
        // a server that keeps the connection open despite `Connection: close` is not a failure.
        while buf.len() < MAX_OUTPUT && !complete(&buf) {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => outcome(Health::Critical, format!("HTTP GET {url}: timed out after {timeout:?}")),
        Ok(Err(e)) => outcome(Health::Critical, format!("HTTP GET {url}: {e}")),
        Ok(Ok(buf)) => {
            let text = String::from_utf8_lossy(&buf);
            let line = text.lines().next().unwrap_or("");
            let code = line.strip_prefix("HTTP/1.").and_then(|r| r.get(2..5)).and_then(|c| c.parse::<u16>().ok());
            match code {
                None => outcome(Health::Critical, format!("HTTP GET {url}: not an HTTP response: {line:?}")),
                Some(code) => {
                    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                    let status_text = line.get(13..).unwrap_or("").trim();
                    outcome(http_status(code), format!("HTTP GET {url}: {code} {status_text} Output: {body}"))
                }
            }
        }
    }
}

async fn probe_tcp(addr: &str, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => outcome(Health::Critical, format!("TCP connect {addr}: timed out after {timeout:?}")),
        Ok(Err(e)) => outcome(Health::Critical, format!("TCP connect {addr}: {e}")),
        Ok(Ok(_)) => outcome(Health::Passing, format!("TCP connect {addr}: Success")),
    }
}

/// Runs argv on a blocking thread; kills it at the timeout. Output is stdout then stderr (each
/// read on its own thread, so a chatty child cannot fill its pipe and stall).
fn run_exec(args: &[String], timeout: Duration) -> Outcome {
    use std::process::{Command as Proc, Stdio};
    let mut child = match Proc::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return outcome(Health::Critical, format!("cannot run {:?}: {e}", args[0])),
    };
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for mut pipe in pipes.into_iter().flatten() {
        let out = out.clone();
        readers.push(std::thread::spawn(move || {
            let mut chunk = [0u8; 1024];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                let room = MAX_OUTPUT.saturating_sub(o.len());
                o.extend_from_slice(&chunk[..n.min(room)]);
            }
        }));
    }
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {timeout:?}: killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(e.to_string()),
        }
    };
    if status.is_ok() {
        // The pipes close when the child (and any child holding them) exits.
        for r in readers {
            let _ = r.join();
        }
    }
    let text = String::from_utf8_lossy(&out.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    match status {
        Ok(s) => outcome(exit_status(s.code()), text),
        Err(e) => outcome(Health::Critical, format!("{e}\n{text}")),
    }
}

/// One probe of a non-TTL check.
pub async fn probe(kind: &Kind, timeout: Duration) -> Outcome {
    match kind {
        Kind::Http(url) => probe_http(url, timeout).await,
        Kind::Tcp(addr) => probe_tcp(addr, timeout).await,
        Kind::Exec(args) => {
            let args = args.clone();
            tokio::task::spawn_blocking(move || run_exec(&args, timeout))
                .await
                .unwrap_or_else(|e| outcome(Health::Critical, format!("check task failed: {e}")))
        }
        Kind::Ttl(_) => outcome(Health::Critical, "TTL checks are not probed"),
    }
}

/// A result on its way to the driver.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The check.
    pub check_id: String,
    /// The run that produced it (results of replaced runs are dropped).
    pub run: u64,
    /// What it saw.
    pub outcome: Outcome,
}

/// The task of one check: probes every interval (TTL: reports critical when `reset` has not
/// fired within the TTL, and again each TTL while it stays expired) and sends results to the
/// driver until aborted or the driver is gone.
pub async fn run(def: CheckDef, run: u64, tx: mpsc::Sender<Command>, mut reset: watch::Receiver<()>) {
    let send = |outcome: Outcome| {
        let tx = tx.clone();
        let check_id = def.id.clone();
        async move { tx.send(Command::CheckResult(CheckResult { check_id, run, outcome })).await.is_ok() }
    };
    match &def.kind {
        Kind::Ttl(ttl) => loop {
            tokio::select! {
                () = tokio::time::sleep(*ttl) => {
                    if !send(outcome(Health::Critical, format!("TTL expired (no update within {ttl:?})"))).await {
                        return;
                    }
                }
                r = reset.changed() => if r.is_err() { return },
            }
        },
        kind => {
            let mut tick = tokio::time::interval(def.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !send(probe(kind, def.timeout).await).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(checks: Value) -> Result<Vec<CheckDef>, String> {
        let raw = checks.as_array().cloned().unwrap_or_else(|| vec![checks]);
        parse_checks("web-1", "web", &raw, "").map_err(|e| e.to_string())
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "abc", "5y", "s", "1s2"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_kind_parses_with_consul_defaults() {
        let defs = parse(json!([
            {"HTTP": "http://127.0.0.1:8080/health", "Interval": "10s", "Method": "GET", "TLSSkipVerify": true},
            {"tcp": "localhost:6379", "interval": "200ms", "timeout": "1s"},
            {"args": ["/bin/true"], "interval": "1m"},
            {"CheckID": "web-ttl", "Name": "ttl", "TTL": "2s", "deregister_critical_service_after": "1m",
             "Status": "passing"},
        ]))
        .unwrap();
        assert_eq!(defs[0].id, "service:web-1:1");
        assert_eq!(defs[0].kind, Kind::Http("http://127.0.0.1:8080/health".into()));
        assert_eq!(defs[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(defs[0].initial, Health::Passing);
        assert_eq!(defs[0].name, "Service 'web' check");
        assert_eq!(defs[1].kind, Kind::Tcp("localhost:6379".into()));
        assert_eq!(defs[1].interval, Duration::from_millis(200));
        assert_eq!(defs[1].timeout, Duration::from_secs(1));
        assert_eq!(defs[2].kind, Kind::Exec(vec!["/bin/true".into()]));
        assert_eq!(defs[3].id, "web-ttl");
        assert_eq!(defs[3].kind, Kind::Ttl(Duration::from_secs(2)));
        assert_eq!(defs[3].deregister_after, Some(Duration::from_secs(60)));
        assert_eq!(defs[3].initial, Health::Passing);
        // A single check is `service:<id>`; TTL checks start critical.
        let one = parse(json!({"TTL": "5s"})).unwrap();
        assert_eq!(one[0].id, "service:web-1");
        assert_eq!(one[0].initial, Health::Critical);
    }

    #[test]
    fn every_validation_error_names_its_field() {
        let cases = [
            (json!({"HTTP": "http://x/"}), "Checks[0].Interval: required for HTTP checks"),
            (json!({"TCP": "x:1"}), "Checks[0].Interval: required for TCP checks"),
            (json!({"Args": ["a"]}), "Checks[0].Interval: required for Args checks"),
            (json!({"HTTP": "http://x/", "Interval": "soon"}), "Checks[0].Interval: invalid duration \"soon\""),
            (json!({"HTTP": "http://x/", "Interval": 10}), "Checks[0].Interval: must be a duration string"),
            (json!({"HTTP": "http://x/", "Interval": "10ms"}), "Checks[0].Interval: must be at least"),
            (json!({"HTTP": "https://x/", "Interval": "1s"}), "Checks[0].HTTP: https:// is not supported"),
            (json!({"HTTP": "ftp://x/", "Interval": "1s"}), "Checks[0].HTTP: must be an http://"),
            (json!({"TCP": "nohost", "Interval": "1s"}), "Checks[0].TCP: must be host:port"),
            (json!({"Args": [], "Interval": "1s"}), "Checks[0].Args: must not be empty"),
            (json!({"Args": ["a", 1], "Interval": "1s"}), "Checks[0].Args[1]: must be a string"),
            (json!({"TTL": "0s"}), "Checks[0].TTL: must be positive"),
            (json!({"TTL": "1s", "Timeout": "x"}), "Checks[0].Timeout: invalid duration"),
            (json!({"TTL": "1s", "Status": "ok"}), "Checks[0].Status: must be \"passing\""),
            (json!({"TTL": "1s", "DeregisterCriticalServiceAfter": "x"}), "Checks[0].DeregisterCriticalServiceAfter"),
            (json!({"TTL": "1s", "CheckID": ""}), "Checks[0].CheckID: must be"),
            (json!({"GRPC": "x:1", "Interval": "1s"}), "Checks[0]: must have one of HTTP, TCP, Args, TTL"),
            (
                json!({"TTL": "1s", "TCP": "x:1"}),
                "Checks[0]: only one of HTTP, TCP, Args, TTL may be given, got TCP and TTL",
            ),
            (json!([{"TTL": "1s", "ID": "a"}, {"TTL": "1s", "ID": "a"}]), "Checks[1].CheckID: duplicate check ID"),
            (json!({"TTL": "1s", "ttl": "2s"}), "given twice"),
        ];
        for (input, want) in cases {
            let got = parse(input.clone()).expect_err(&input.to_string());
            assert!(got.contains(want), "{input}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn aggregate_is_the_worst() {
        use Health::*;
        assert_eq!(aggregate([]), Passing);
        assert_eq!(aggregate([Passing, Passing]), Passing);
        assert_eq!(aggregate([Passing, Warning]), Warning);
        assert_eq!(aggregate([Warning, Critical, Passing]), Critical);
        assert_eq!(http_status(204), Passing);
        assert_eq!(http_status(429), Warning);
        assert_eq!(http_status(503), Critical);
        assert_eq!(exit_status(Some(0)), Passing);
        assert_eq!(exit_status(Some(1)), Warning);
        assert_eq!(exit_status(Some(2)), Critical);
        assert_eq!(exit_status(None), Critical);
    }

    #[test]
    fn urls_split() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/h?x=1"),
            Some(("127.0.0.1:8080".into(), "127.0.0.1:8080".into(), "/h?x=1".into()))
        );
        assert_eq!(parse_url("http://example.com"), Some(("example.com:80".into(), "example.com".into(), "/".into())));
        assert_eq!(parse_url("http://[::1]:9/"), Some(("[::1]:9".into(), "[::1]:9".into(), "/".into())));
        assert_eq!(parse_url("http://[::1]/"), Some(("[::1]:80".into(), "[::1]".into(), "/".into())));
        assert_eq!(parse_url("http://x:y/"), None);
        assert_eq!(parse_url("http:///"), None);
    }

    #[tokio::test]
    async fn probes_against_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut codes = [200u16, 429, 500].into_iter().cycle();
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                let code = codes.next().unwrap_or(200);
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok").as_bytes()).await;
                // Keeps the connection open: the probe must stop at Content-Length.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(s);
                });
            }
        });
        let url = Kind::Http(format!("http://{addr}/health"));
        let t = Duration::from_secs(5);
        assert_eq!(probe(&url, t).await.status, Health::Passing);
        assert_eq!(probe(&url, t).await.status, Health::Warning);
        let o = probe(&url, t).await;
        assert_eq!(o.status, Health::Critical);
        assert!(o.output.contains("500"), "{}", o.output);
        assert_eq!(probe(&Kind::Tcp(addr.to_string()), t).await.status, Health::Passing);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert_eq!(probe(&Kind::Tcp(closed.to_string()), t).await.status, Health::Critical);
        assert_eq!(probe(&Kind::Http(format!("http://{closed}/")), t).await.status, Health::Critical);
    }

    #[tokio::test]
    async fn exec_checks_map_exit_codes_and_time_out() {
        let sh = |s: &str| Kind::Exec(vec!["/bin/sh".into(), "-c".into(), s.into()]);
        let t = Duration::from_secs(10);
        let o = probe(&sh("echo hello; exit 0"), t).await;
        assert_eq!(o, Outcome { status: Health::Passing, output: "hello\n".into() });
        assert_eq!(probe(&sh("exit 1"), t).await.status, Health::Warning);
        assert_eq!(probe(&sh("exit 3"), t).await.status, Health::Critical);
        let o = probe(&sh("sleep 5"), Duration::from_millis(200)).await;
        assert_eq!(o.status, Health::Critical);
        assert!(o.output.contains("timed out"), "{}", o.output);
        assert_eq!(probe(&Kind::Exec(vec!["/nonexistent/x".into()]), t).await.status, Health::Critical);
    }
}
