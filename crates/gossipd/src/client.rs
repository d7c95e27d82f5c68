//! The client subcommands (`members`, `services list|register|deregister`): blocking HTTP
//! requests to a running agent's Consul-shaped API, printed as an aligned table or as JSON.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::{ClientArgs, Command, Format, ServicesCommand};
use crate::service_def;

mod monitor;
mod watch;

/// Runs a client subcommand, printing its result on stdout.
pub fn run(command: Command) -> anyhow::Result<()> {
    let out = match command {
        Command::Agent(_) => bail!("not a client command"),
        Command::Members(m) => members(&Api::new(&m.client)?, m.client.format, m.wan)?,
        Command::Services(s) => {
            let api = Api::new(&s.client)?;
            match s.command {
                ServicesCommand::List => services_list(&api, s.client.format)?,
                ServicesCommand::Register { file: Some(file), .. } => register(&api, &file, s.client.format)?,
                ServicesCommand::Register { file: None, name, id, port, address, tags, meta } => {
                    let flags = RegisterFlags { name: name.unwrap_or_default(), id, port, address, tags, meta };
                    register_flags(&api, flags, s.client.format)?
                }
                ServicesCommand::Deregister { id } => deregister(&api, &id, s.client.format)?,
            }
        }
        Command::Keygen => format!("{}\n", crate::keys::encode_key(&crate::keys::generate()?)),
        Command::Keys(k) => {
            let api = Api::new(&k.client)?;
            keys(&api, k.command, k.client.format)?
        }
        Command::Info(client) => info(&Api::new(&client)?, client.format)?,
        Command::Join(j) => {
            let api = Api::new(&j.client)?;
            let mut joined = 0;
            for a in &j.addrs {
                api.put(&format!("/v1/agent/join/{}", encode_path(a)), None)?;
                joined += 1;
            }
            match j.client.format {
                Format::Json => format!("{{\"joined\":{joined}}}\n"),
                Format::Table => {
                    format!("asked the agent to join through {joined} address(es): see `gossipd members`\n")
                }
            }
        }
        Command::ForceLeave(f) => {
            let api = Api::new(&f.client)?;
            api.put(&format!("/v1/agent/force-leave/{}", encode_path(&f.node)), None)?;
            match f.client.format {
                Format::Json => "{\"removed\":true}\n".to_string(),
                Format::Table => format!("{} removed from every agent\n", f.node),
            }
        }
        Command::Catalog(c) => {
            let api = Api::new(&c.client)?;
            match c.command {
                crate::cli::CatalogCommand::Services => catalog_services(&api, c.client.format)?,
                crate::cli::CatalogCommand::Nodes => catalog_nodes(&api, c.client.format)?,
            }
        }
        Command::Reload(r) => reload(&r.data_dir)?,
        Command::Validate(v) => validate(&v.paths)?,
        Command::Completions(c) => {
            let mut out = Vec::new();
            clap_complete::generate(
                c.shell,
                &mut <crate::cli::Cli as clap::CommandFactory>::command(),
                "gossipd",
                &mut out,
            );
            String::from_utf8(out).context("completion script")?
        }
        Command::Man => crate::manpage::render()?,
        Command::Monitor(m) => monitor::run(&Api::new(&m.client)?, &m)?,
        Command::Watch(w) => watch::run(&Api::new(&w.client)?, &w)?,
        Command::Leave(client) => {
            let api = Api::new(&client)?;
            api.put("/v1/agent/leave", None)?;
            match client.format {
                Format::Json => "{\"left\":true}\n".to_string(),
                Format::Table => {
                    "left the cluster: the agent is stopping; its services left every answer\n".to_string()
                }
            }
        }
        Command::Ca(c) => ca(c.command)?,
        Command::Cert(c) => match c.command {
            crate::cli::CertCommand::Show { file } => {
                let certs = crate::ca::read_certs(&file)?;
                pretty(&Value::Array(certs.iter().map(crate::ca::show).collect()))
            }
        },
        Command::Revocations(r) => {
            let api = Api::new(&r.client)?;
            revocations(&api, r.command, r.client.format)?
        }
    };
    // A closed pipe (`gossipd members | head -1`) is the reader's choice, not an error.
    use std::io::Write;
    match std::io::stdout().write_all(out.as_bytes()).and_then(|()| std::io::stdout().flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write the output"),
        _ => Ok(()),
    }
}

fn info(api: &Api, format: Format) -> anyhow::Result<String> {
    let me = api.get("/v1/agent/self")?;
    if format == Format::Json {
        return Ok(pretty(&me));
    }
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let tags = &me["Member"]["Tags"];
    let lan = &me["Stats"]["serf_lan"];
    let mut out = String::new();
    out.push_str(&format!("node:              {}\n", s(&me["Config"]["NodeName"])));
    out.push_str(&format!("members:           {} alive of {}\n", s(&lan["alive_members"]), s(&lan["members"])));
    out.push_str(&format!("protocol:          {}..={}\n", s(&tags["vsn_min"]), s(&tags["vsn_max"])));
    out.push_str(&format!("self-preservation: {}\n", s(&lan["self_preservation"])));
    out.push_str(&format!("services:          {}\n", s(&me["Stats"]["catalog"]["services"])));
    let problems = me["Problems"].as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        out.push_str("problems:          none reported\n");
    } else {
        out.push_str("problems (latest last):\n");
        for p in problems {
            let when = p["Time"].as_u64().map(crate::ca::date).unwrap_or_default();
            out.push_str(&format!("  {when}  {}\n", s(&p["Problem"])));
        }
    }
    Ok(out)
}

fn ca(command: crate::cli::CaCommand) -> anyhow::Result<String> {
    use crate::cli::CaCommand;
    Ok(match command {
        CaCommand::Create { out, label, valid } => {
            let (key, crt) = crate::ca::create(&out, &label, valid)?;
            format!(
                "wrote {} (the CA secret: keep it offline) and {} (give it to every agent as --ca-file)\n",
                key.display(),
                crt.display()
            )
        }
        CaCommand::Sign { ca, name, services, roles, max_entries, valid, identity_pub, out } => {
            let req = crate::ca::SignRequest { name, services, roles, max_entries, valid, identity_pub };
            let (key, crt) = crate::ca::sign(&ca, &req, &out)?;
            match key {
                Some(k) => format!("wrote {} and {} (--identity-file, --cert-file)\n", k.display(), crt.display()),
                None => format!("wrote {} (--cert-file)\n", crt.display()),
            }
        }
        CaCommand::Revoke { ca, cert } => crate::ca::revoke(&ca, &cert)?,
    })
}

fn revocations(api: &Api, command: crate::cli::RevocationsCommand, format: Format) -> anyhow::Result<String> {
    use crate::cli::RevocationsCommand;
    match command {
        RevocationsCommand::List => {
            let list = api.get("/v1/operator/revocations")?;
            if format == Format::Json {
                return Ok(pretty(&list));
            }
            let rows: Vec<Vec<String>> = as_array(&list, "/v1/operator/revocations")?
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                    vec![s("NodeID"), s("Identity"), s("NotAfter")]
                })
                .collect();
            Ok(format_table(&["NODE ID", "IDENTITY", "KEPT UNTIL"], &rows))
        }
        RevocationsCommand::Add { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
            };
            let revs = crate::ca::revocations_from_pem(&text)?;
            if revs.is_empty() {
                bail!("no -----BEGIN GOSSIPD REVOCATION----- block in {}", file.display());
            }
            let mut out = String::new();
            for r in &revs {
                let pem = crate::ca::revocation_to_pem(r);
                api.put("/v1/operator/revocation", Some(&serde_json::json!({ "Revocation": pem })))?;
                out.push_str(&format!("revoked {} (spreading to every agent)\n", r.identity.node_id()));
            }
            Ok(out)
        }
    }
}

/// The agent's HTTP API.
struct Api {
    base: String,
    agent: ureq::Agent,
    /// Sent as `X-Consul-Token` when set.
    token: Option<String>,
}

impl Api {
    fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        let addr = args.http.trim_end_matches('/');
        let addr = addr.strip_prefix("http://").unwrap_or(addr);
        if addr.contains("://") {
            bail!("--http {}: only http:// is supported", args.http);
        }
        if addr.is_empty() || addr.contains('/') {
            bail!("--http {}: want HOST:PORT", args.http);
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        let token = crate::tokens::client_token(args.token.as_deref(), args.data_dir.as_deref())?;
        Ok(Api { base: format!("http://{addr}"), agent: config.into(), token })
    }

    fn auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("X-Consul-Token", t),
            None => request,
        }
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.auth(self.agent.get(format!("{}{path}", self.base))).call();
        self.finish("GET", path, response)
    }

    /// A GET whose answer may take up to `timeout` (a blocking query): the JSON body and the
    /// `X-Consul-Index` header (0 when absent).
    fn get_indexed(&self, path: &str, timeout: Duration) -> anyhow::Result<(Value, u64)> {
        let request =
            self.auth(self.agent.get(format!("{}{path}", self.base))).config().timeout_global(Some(timeout)).build();
        let response = self.checked("GET", path, request.call())?;
        let index = response
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((self.json_body("GET", path, response)?, index))
    }

    /// A GET whose body streams for as long as the agent sends it (no timeout once
    /// connected).
    fn stream(&self, path: &str) -> anyhow::Result<ureq::BodyReader<'static>> {
        let request = self.auth(self.agent.get(format!("{}{path}", self.base))).config().timeout_global(None).build();
        let response = self.checked("GET", path, request.call())?;
        Ok(response.into_body().into_reader())
    }

    /// POST, PUT or DELETE with a JSON body.
    fn send(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "POST" => self.auth(self.agent.post(url)).send_json(body),
            "DELETE" => self.auth(self.agent.delete(url).force_send_body()).send_json(body),
            _ => self.auth(self.agent.put(url)).send_json(body),
        };
        self.finish(method, path, response)
    }

    fn put(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let request = self.auth(self.agent.put(format!("{}{path}", self.base)));
        let response = match body {
            Some(body) => request.send_json(body),
            None => request.send_empty(),
        };
        self.finish("PUT", path, response)
    }

    /// Turns a response into its JSON body (`null` when empty), or an error carrying the
    /// agent's error body.
    fn finish(
        &self,
        method: &str,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let response = self.checked(method, path, response)?;
        self.json_body(method, path, response)
    }

    /// The response if it is a success, else an error naming the agent, or carrying the
    /// agent's error body.
    fn checked(
        &self,
        method: &str,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let mut response = response.map_err(|e| match e {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_) => {
                anyhow::anyhow!("cannot reach agent at {}: {e}", self.base)
            }
            e => anyhow::anyhow!("{method} {}{path}: {e}", self.base),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let text = one_line(&body);
        if text.is_empty() {
            bail!("agent answered {status} to {method} {path}");
        }
        bail!("agent answered {status} to {method} {path}: {text}");
    }

    /// A successful response's JSON body (`null` when empty).
    fn json_body(
        &self,
        method: &str,
        path: &str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> anyhow::Result<Value> {
        let body = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("{method} {}{path}: reading the response", self.base))?;
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&body)
            .with_context(|| format!("{method} {}{path}: the agent's answer is not JSON", self.base))
    }
}

/// Exits 0 at SIGINT or SIGTERM, for the commands that run until stopped (`monitor`,
/// `watch`): Ctrl-C is how they are meant to end, not a failure.
fn exit_on_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    // Registered now, before the command starts: no window where Ctrl-C kills the process.
    let (mut int, mut term) = {
        let _in = runtime.enter();
        (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?)
    };
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        std::process::exit(0);
    });
    Ok(())
}

/// A usage error (exit status 2, as clap's own) for a combination clap cannot express.
fn usage_error(msg: impl std::fmt::Display) -> ! {
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    cmd.error(clap::error::ErrorKind::ArgumentConflict, msg).exit()
}

/// An error body on one line, at most 500 characters.
fn one_line(text: &str) -> String {
    let mut s: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = s.char_indices().nth(500) {
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

fn members(api: &Api, format: Format, wan: bool) -> anyhow::Result<String> {
    let members = api.get(if wan { "/v1/agent/members?wan=1" } else { "/v1/agent/members" })?;
    if format == Format::Json {
        return Ok(pretty(&members));
    }
    let mut rows: Vec<Vec<String>> = as_array(&members, "/v1/agent/members")?
        .iter()
        .map(|m| {
            let addr = text(&m["Addr"]);
            let addr = if addr.contains(':') { format!("[{addr}]") } else { addr };
            let mut status = member_status(&m["Status"]);
            if m["Tags"]["suspect"] == "true" {
                status = "suspect".into();
            }
            if let Some(reason) = m["Tags"]["excluded"].as_str() {
                status = format!("excluded by the cluster: {reason}");
            }
            if let Some(reason) = m["Tags"]["banned"].as_str() {
                status = format!("{status}, banned: {reason}");
            }
            // Wire protocol: the version spoken with the member, and the range it speaks.
            let tags = &m["Tags"];
            let protocol = match (text(&tags["vsn"]), text(&tags["vsn_min"]), text(&tags["vsn_max"])) {
                (_, min, max) if min.is_empty() || max.is_empty() => "?".to_string(),
                (vsn, min, max) if vsn.is_empty() => format!("none ({min}..={max})"),
                (vsn, min, max) => format!("{vsn} ({min}..={max})"),
            };
            vec![text(&m["Name"]), format!("{addr}:{}", text(&m["Port"])), status, protocol]
        })
        .collect();
    rows.sort();
    let mut out = format_table(&["NAME", "ADDRESS", "STATUS", "PROTOCOL"], &rows);
    let metrics = api.get("/v1/agent/metrics").unwrap_or(Value::Null);
    if metrics["Catalog"]["SelfPreservation"] == true {
        out.push_str("\nSELF-PRESERVATION ENGAGED: too many peers seem to fail at once; this agent suspects its own\nnetwork, declares no node dead and keeps serving the last known instances.\n");
    }
    Ok(out)
}

/// `gossipd catalog services`: names and tags, as `consul catalog services -tags`.
fn catalog_services(api: &Api, format: Format) -> anyhow::Result<String> {
    let names = api.get("/v1/catalog/services")?;
    if format == Format::Json {
        return Ok(pretty(&names));
    }
    names_table(&names)
}

/// `/v1/catalog/services` as a table.
fn names_table(names: &Value) -> anyhow::Result<String> {
    let obj =
        names.as_object().with_context(|| format!("/v1/catalog/services: expected an object, got {}", kind(names)))?;
    let mut rows: Vec<Vec<String>> = obj
        .iter()
        .map(|(name, tags)| {
            let tags = tags.as_array().map(|t| t.iter().map(text).collect::<Vec<_>>().join(",")).unwrap_or_default();
            vec![name.clone(), tags]
        })
        .collect();
    rows.sort();
    Ok(format_table(&["SERVICE", "TAGS"], &rows))
}

/// `gossipd catalog nodes`: as `consul catalog nodes`.
fn catalog_nodes(api: &Api, format: Format) -> anyhow::Result<String> {
    let nodes = api.get("/v1/catalog/nodes")?;
    if format == Format::Json {
        return Ok(pretty(&nodes));
    }
    nodes_table(&nodes)
}

/// `/v1/catalog/nodes` as a table.
fn nodes_table(nodes: &Value) -> anyhow::Result<String> {
    let mut rows: Vec<Vec<String>> = as_array(nodes, "/v1/catalog/nodes")?
        .iter()
        .map(|n| vec![text(&n["Node"]), text(&n["ID"]), text(&n["Address"]), text(&n["Datacenter"])])
        .collect();
    rows.sort();
    Ok(format_table(&["NODE", "ID", "ADDRESS", "DC"], &rows))
}

/// `gossipd reload`: SIGHUP to the agent whose PID is in `DATA_DIR/lock`.
fn reload(data_dir: &Path) -> anyhow::Result<String> {
    let lock = data_dir.join(crate::persist::LOCK_FILE);
    let pid = std::fs::read_to_string(&lock).with_context(|| format!("cannot read {}", lock.display()))?;
    let pid: u32 = pid.trim().parse().with_context(|| format!("{}: not a PID: {pid:?}", lock.display()))?;
    let status =
        std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status().context("cannot run kill")?;
    if !status.success() {
        bail!("no agent runs as PID {pid} (from {}): is it stopped?", lock.display());
    }
    Ok(format!("sent SIGHUP to the agent (PID {pid}): it re-reads --config-dir; its log says what changed\n"))
}

/// `gossipd validate`: agent TOML files and service definitions, files or directories.
fn validate(paths: &[std::path::PathBuf]) -> anyhow::Result<String> {
    let mut out = String::new();
    for p in paths {
        if p.is_dir() {
            let defs = service_def::load_config_dir(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            out.push_str(&format!("{}: {} service definition(s), valid\n", p.display(), defs.len()));
        } else if p.extension().is_some_and(|e| e == "toml") {
            let n = crate::config_file::check(p)?;
            out.push_str(&format!("{}: agent configuration, {n} setting(s), valid\n", p.display()));
        } else {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            let defs = service_def::parse_file_or_body(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            out.push_str(&format!("{}: {} service definition(s), valid\n", p.display(), defs.len()));
        }
    }
    Ok(out)
}

/// `gossipd keys`: Consul's operator keyring API (`/v1/operator/keyring`).
fn keys(api: &Api, command: crate::cli::KeysCommand, format: Format) -> anyhow::Result<String> {
    use crate::cli::KeysCommand;
    let check = |k: &str| crate::keys::decode_key(k).map_err(|e| anyhow::anyhow!("key: {e}"));
    let (method, key, verb) = match command {
        KeysCommand::List => {
            let list = api.get("/v1/operator/keyring")?;
            if format == Format::Json {
                return Ok(pretty(&list));
            }
            let mut rows = Vec::new();
            for ring in as_array(&list, "/v1/operator/keyring")? {
                let primary = ring["PrimaryKeys"].as_object().cloned().unwrap_or_default();
                let mut keys: Vec<(String, bool)> = ring["Keys"]
                    .as_object()
                    .map(|m| m.keys().map(|k| (k.clone(), primary.contains_key(k))).collect())
                    .unwrap_or_default();
                keys.sort_by_key(|(_, p)| !p);
                for (k, p) in keys {
                    let fp = crate::keys::decode_key(&k).map(|b| crate::keys::fingerprint(&b)).unwrap_or_default();
                    rows.push(vec![k, fp, if p { "primary".into() } else { "installed".into() }]);
                }
            }
            let mut out = format_table(&["KEY", "FINGERPRINT", "ROLE"], &rows);
            for ring in as_array(&list, "/v1/operator/keyring")? {
                let lagging: Vec<&str> = ring["NotInForceOn"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !lagging.is_empty() {
                    out.push_str(&format!("not in force on: {}\n", lagging.join(", ")));
                }
            }
            return Ok(out);
        }
        KeysCommand::Install { key } => ("POST", key, "installed"),
        KeysCommand::Use { key } => ("PUT", key, "now primary"),
        KeysCommand::Remove { key } => ("DELETE", key, "removed"),
    };
    let bytes = check(&key)?;
    let answer = api.send(method, "/v1/operator/keyring", &serde_json::json!({ "Key": key }))?;
    if format == Format::Json {
        return Ok(pretty(&answer));
    }
    Ok(format!("key {} {verb}; in force on every live agent\n", crate::keys::fingerprint(&bytes)))
}

/// Serf's member status codes, as Consul reports them.
fn member_status(v: &Value) -> String {
    match v.as_u64() {
        Some(0) => "none".into(),
        Some(1) => "alive".into(),
        Some(2) => "leaving".into(),
        Some(3) => "left".into(),
        Some(4) => "failed".into(),
        _ => text(v),
    }
}

fn services_list(api: &Api, format: Format) -> anyhow::Result<String> {
    let names = api.get("/v1/catalog/services")?;
    let names = names
        .as_object()
        .with_context(|| format!("/v1/catalog/services: expected a JSON object, got {}", kind(&names)))?;
    let mut names: Vec<&String> = names.keys().collect();
    names.sort();
    let mut entries = Vec::new();
    for name in names {
        let path = format!("/v1/catalog/service/{}", encode_path(name));
        let list = api.get(&path)?;
        entries.extend(as_array(&list, &path)?.iter().cloned());
    }
    if format == Format::Json {
        return Ok(pretty(&Value::Array(entries)));
    }
    Ok(services_table(&entries))
}

fn services_table(entries: &[Value]) -> String {
    let mut rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let addr = match text(&e["ServiceAddress"]) {
                a if a.is_empty() => text(&e["Address"]),
                a => a,
            };
            let tags = e["ServiceTags"]
                .as_array()
                .map(|t| t.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![text(&e["ServiceName"]), text(&e["ServiceID"]), text(&e["Node"]), addr, text(&e["ServicePort"]), tags]
        })
        .collect();
    rows.sort();
    format_table(&["SERVICE", "ID", "NODE", "ADDRESS", "PORT", "TAGS"], &rows)
}

fn register(api: &Api, file: &Path, format: Format) -> anyhow::Result<String> {
    let bytes = read_input(file)?;
    let label = if file == Path::new("-") { "stdin".to_string() } else { file.display().to_string() };
    let defs = service_def::parse_file_or_body(&bytes).context(label)?;
    register_defs(api, &defs, format)
}

fn register_defs(api: &Api, defs: &[service_def::ServiceDef], format: Format) -> anyhow::Result<String> {
    let mut ids = Vec::new();
    for def in defs {
        let body = serde_json::to_value(def)?;
        api.put("/v1/agent/service/register", Some(&body)).with_context(|| format!("registering {:?}", def.id))?;
        ids.push(def.id.clone());
    }
    Ok(match format {
        Format::Json => pretty(&serde_json::json!({ "registered": ids })),
        Format::Table => ids.iter().map(|id| format!("registered {id}\n")).collect(),
    })
}

/// A service given by `gossipd services register --name ...` flags.
struct RegisterFlags {
    name: String,
    id: Option<String>,
    port: Option<u16>,
    address: Option<String>,
    tags: Vec<String>,
    meta: Vec<String>,
}

/// Registers one service from flags: the same definition a file would hold, checked the same
/// way (the errors name the flag's field).
fn register_flags(api: &Api, f: RegisterFlags, format: Format) -> anyhow::Result<String> {
    let mut meta = serde_json::Map::new();
    for m in &f.meta {
        let (k, v) = m.split_once('=').with_context(|| format!("--meta {m:?}: expected KEY=VALUE"))?;
        meta.insert(k.to_string(), Value::String(v.to_string()));
    }
    let mut body = serde_json::json!({ "Name": f.name, "Tags": f.tags, "Meta": meta });
    if let Some(id) = f.id {
        body["ID"] = Value::String(id);
    }
    if let Some(port) = f.port {
        body["Port"] = Value::from(port);
    }
    if let Some(address) = f.address {
        body["Address"] = Value::String(address);
    }
    let bytes = serde_json::to_vec(&body)?;
    let defs = service_def::parse_file_or_body(&bytes).context("the --name/--port/... flags")?;
    register_defs(api, &defs, format)
}

fn read_input(file: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = service_def::MAX_INPUT_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if file == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut bytes).context("reading stdin")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read {}", file.display()))?;
    }
    // parse_* refuses oversized input with a clear message.
    Ok(bytes)
}

fn deregister(api: &Api, id: &str, format: Format) -> anyhow::Result<String> {
    api.put(&format!("/v1/agent/service/deregister/{}", encode_path(id)), None)?;
    Ok(match format {
        Format::Json => pretty(&serde_json::json!({ "deregistered": id })),
        Format::Table => format!("deregistered {id}\n"),
    })
}

fn as_array<'a>(v: &'a Value, what: &str) -> anyhow::Result<&'a Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => bail!("{what}: expected a JSON array, got {}", kind(other)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A scalar as plain text (strings unquoted, missing as empty).
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Left-aligned columns separated by two spaces, no trailing spaces. Control characters in
/// cells (which come from other nodes) are escaped so they cannot drive the terminal.
fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| -> String {
        s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
    };
    let cells: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| clean(h)).collect())
        .chain(rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()))
        .collect();
    let mut widths = vec![0; headers.len()];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_is_aligned() {
        let rows = vec![
            vec!["web".to_string(), "10.0.0.1:7946".to_string(), "alive".to_string()],
            vec!["database-1".to_string(), "::1".to_string(), "".to_string()],
        ];
        assert_eq!(
            format_table(&["NAME", "ADDRESS", "STATUS"], &rows),
            "NAME        ADDRESS        STATUS\n\
             web         10.0.0.1:7946  alive\n\
             database-1  ::1\n"
        );
        assert_eq!(format_table(&["A", "B"], &[]), "A  B\n");
        let evil = vec![vec!["\x1b[31mred".to_string(), "é".to_string()]];
        assert_eq!(format_table(&["X", "Y"], &evil), "X              Y\n\\u{1b}[31mred  é\n");
    }

    #[test]
    fn services_table_prefers_service_address() {
        let entries = [
            json!({"Node": "n2", "Address": "10.0.0.2", "ServiceID": "web-2",
                   "ServiceName": "web", "ServiceAddress": "", "ServicePort": 80,
                   "ServiceTags": ["a", "b"]}),
            json!({"Node": "n1", "Address": "10.0.0.1", "ServiceID": "web-1",
                   "ServiceName": "web", "ServiceAddress": "192.168.1.1", "ServicePort": 8080,
                   "ServiceTags": []}),
        ];
        assert_eq!(
            services_table(&entries),
            "SERVICE  ID     NODE  ADDRESS      PORT  TAGS\n\
             web      web-1  n1    192.168.1.1  8080\n\
             web      web-2  n2    10.0.0.2     80    a,b\n"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(member_status(&json!(1)), "alive");
        assert_eq!(member_status(&json!(4)), "failed");
        assert_eq!(member_status(&json!(9)), "9");
        assert_eq!(encode_path("web 1/x%"), "web%201%2Fx%25");
        assert_eq!(one_line("bad\n  request\n"), "bad request");
        assert_eq!(one_line(&"x".repeat(600)).len(), 503);
    }

    #[test]
    fn unreachable_agent_is_named() {
        // Bind then drop a listener: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let args = ClientArgs {
            http: format!("http://127.0.0.1:{port}/"),
            format: Format::Table,
            token: None,
            data_dir: None,
        };
        let e = members(&Api::new(&args).unwrap(), Format::Table, false).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.starts_with(&format!("cannot reach agent at http://127.0.0.1:{port}: ")), "{e}");
        for bad in ["https://x:1", "x:1/path", ""] {
            let args = ClientArgs { http: bad.into(), format: Format::Json, token: None, data_dir: None };
            assert!(Api::new(&args).is_err(), "{bad}");
        }
    }

    /// Answers each of `responses` to one connection, in order, on a loopback port.
    fn serve(responses: Vec<String>) -> ClientArgs {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                stream.write_all(response.as_bytes()).unwrap();
            }
        });
        ClientArgs { http: format!("127.0.0.1:{port}"), format: Format::Table, token: None, data_dir: None }
    }

    fn http(status: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    }

    #[test]
    fn members_and_services_against_a_fake_agent() {
        let args = serve(vec![http(
            "200 OK",
            r#"[{"Name": "b", "Addr": "::1", "Port": 7946, "Status": 3, "Tags": {}},
                {"Name": "a", "Addr": "10.0.0.1", "Port": 7946, "Status": 1,
                 "Tags": {"vsn": "3", "vsn_min": "3", "vsn_max": "4"}}]"#,
        )]);
        let out = members(&Api::new(&args).unwrap(), Format::Table, false).unwrap();
        assert_eq!(
            out,
            "NAME  ADDRESS        STATUS  PROTOCOL\na     10.0.0.1:7946  alive   3 (3..=4)\nb     [::1]:7946     left    ?\n"
        );

        let args = serve(vec![
            http("200 OK", r#"{"web": ["a"], "db": []}"#),
            http("200 OK", r#"[{"ServiceName": "db", "ServiceID": "db", "Node": "n1"}]"#),
            http("200 OK", r#"[{"ServiceName": "web", "ServiceID": "web", "Node": "n1"}]"#),
        ]);
        let out = services_list(&Api::new(&args).unwrap(), Format::Json).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["ServiceName"], "db");
        assert_eq!(v[1]["ServiceName"], "web");
    }

    #[test]
    fn http_errors_carry_the_agent_body() {
        let args = serve(vec![http("400 Bad Request", "Invalid service: Name required\n")]);
        let e = deregister(&Api::new(&args).unwrap(), "web 1", Format::Table).unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent answered 400 Bad Request to PUT /v1/agent/service/deregister/web%201: \
             Invalid service: Name required"
        );
    }

    #[test]
    fn register_parses_locally_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.json");
        std::fs::write(&file, r#"{"services": [{"Name": "web"}, {"Name": "db", "Port": "x"}]}"#).unwrap();
        // No agent at all: the local error comes first.
        let args = ClientArgs { http: "127.0.0.1:1".into(), format: Format::Table, token: None, data_dir: None };
        let e = register(&Api::new(&args).unwrap(), &file, Format::Table).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.ends_with("web.json: services[1].Port: must be an integer in 0..=65535, got \"x\""), "{e}");

        std::fs::write(&file, r#"{"Name": "web", "port": 80}"#).unwrap();
        let args = serve(vec![http("200 OK", "")]);
        let out = register(&Api::new(&args).unwrap(), &file, Format::Table).unwrap();
        assert_eq!(out, "registered web\n");
    }
}
