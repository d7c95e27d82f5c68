//! `gossipd watch`: Consul's `consul watch` for three views, through the HTTP API's blocking
//! queries (`?index=&wait=5m`: the agent answers when its catalog index passes the last one
//! seen, so nothing is polled).
//!
//! - `--type service --service NAME [--tag T]... [--passing]`: `/v1/health/service/NAME`
//! - `--type services`: `/v1/catalog/services`
//! - `--type nodes`: `/v1/catalog/nodes`
//!
//! The handler runs once at start and then each time the result changes, not at every index
//! change: the index is the whole catalog's, and a change elsewhere (another service, a check
//! of another node) is not a change of this view. It runs with `sh -c`, one at a time, the
//! result's JSON on stdin, `GOSSIPD_INDEX` and `CONSUL_INDEX` set; a failing handler is
//! reported on stderr and the watch goes on. Without a handler each result is printed: a
//! table, or with `--format json` one JSON document per line; `--once` prints the current one
//! and exits.
//!
//! Exit status: 0 at Ctrl-C (SIGINT, SIGTERM) and after `--once`; 1 when the first query fails
//! (agent unreachable, refused, unknown parameter), when the agent refuses a later one (4xx),
//! or when the handler cannot be started. A later unreachable agent (a restart) is retried
//! with backoff (1 s doubling to 30 s), said on stderr; an index that goes backwards (a
//! restarted agent) restarts the watch from the current result.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::{Api, as_array, encode_path, exit_on_signal, format_table, names_table, nodes_table, text, usage_error};
use crate::cli::{Format, WatchArgs, WatchType};

/// How long each blocking query may wait (the agent's default; its maximum is 10 min).
const WAIT: &str = "5m";
/// The HTTP timeout of a blocking query: the wait plus a margin for the answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5 * 60 + 30);
/// Longest pause between retries when the agent cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until stopped (or once, with `--once`).
pub(super) fn run(api: &Api, args: &WatchArgs) -> anyhow::Result<String> {
    let path = view_path(args);
    if !args.once {
        exit_on_signal()?;
    }
    let handler = (!args.handler.is_empty()).then(|| args.handler.join(" "));
    let mut index = 0u64;
    let mut last: Option<Value> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let query = if index == 0 {
            path.clone()
        } else {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}index={index}&wait={WAIT}")
        };
        let (result, new_index) = match api.get_indexed(&query, QUERY_TIMEOUT) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("{e:#}");
                // The first query, or a refusal: a mistake to fix, not a restart to wait out.
                if last.is_none() || msg.starts_with("agent answered 4") {
                    return Err(e);
                }
                eprintln!("gossipd watch: {msg}; retrying in {} s", backoff.as_secs());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        // An index that goes backwards is a restarted agent: start over from its answer.
        index = if new_index < index { 0 } else { new_index };
        if last.as_ref() != Some(&result) {
            match &handler {
                Some(cmd) => run_handler(cmd, &result, new_index)?,
                None => print(args, &result)?,
            }
            last = Some(result);
        }
        if args.once {
            return Ok(String::new());
        }
        if index == 0 {
            // No index from the agent (or a reset): do not spin.
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The API path of the view, with its query parameters; usage errors for flags that do not
/// apply to the type.
fn view_path(args: &WatchArgs) -> String {
    match args.kind {
        WatchType::Service => {
            let name = args.service.as_deref().unwrap_or_default();
            let mut q: Vec<String> = args.tag.iter().map(|t| format!("tag={}", encode_path(t))).collect();
            if args.passing {
                q.push("passing".into());
            }
            let query = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
            format!("/v1/health/service/{}{query}", encode_path(name))
        }
        other => {
            if args.service.is_some() || !args.tag.is_empty() || args.passing {
                usage_error("--service, --tag and --passing apply to --type service only");
            }
            match other {
                WatchType::Nodes => "/v1/catalog/nodes".into(),
                _ => "/v1/catalog/services".into(),
            }
        }
    }
}

fn run_handler(cmd: &str, result: &Value, index: u64) -> anyhow::Result<()> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("GOSSIPD_INDEX", index.to_string())
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run the handler {cmd:?} with sh"))?;
    let mut json = serde_json::to_vec_pretty(result)?;
    json.push(b'\n');
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its stdin is its own business.
        let _ = stdin.write_all(&json);
    }
    let status = child.wait().with_context(|| format!("waiting for the handler {cmd:?}"))?;
    if !status.success() {
        eprintln!("gossipd watch: the handler {cmd:?} failed ({status}); watching on");
    }
    Ok(())
}

fn print(args: &WatchArgs, result: &Value) -> anyhow::Result<()> {
    let out = match args.client.format {
        Format::Json => format!("{}\n", serde_json::to_string(result)?),
        Format::Table => {
            let table = match args.kind {
                WatchType::Service => instances_table(result)?,
                WatchType::Services => names_table(result)?,
                WatchType::Nodes => nodes_table(result)?,
            };
            // Successive tables apart, each under the time it was seen.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            format!("# {}\n{table}\n", crate::ca::date(now.as_secs()))
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r.context("cannot write the output"),
    }
}

/// `/v1/health/service/NAME` as a table: one row per instance, its status the worst of its
/// checks.
fn instances_table(result: &Value) -> anyhow::Result<String> {
    let mut rows: Vec<Vec<String>> = as_array(result, "/v1/health/service")?
        .iter()
        .map(|e| {
            let s = &e["Service"];
            let addr = match text(&s["Address"]) {
                a if a.is_empty() => text(&e["Node"]["Address"]),
                a => a,
            };
            let tags =
                s["Tags"].as_array().map(|t| t.iter().map(text).collect::<Vec<_>>().join(",")).unwrap_or_default();
            vec![text(&s["Service"]), text(&s["ID"]), text(&e["Node"]["Node"]), addr, text(&s["Port"]), tags, status(e)]
        })
        .collect();
    rows.sort();
    Ok(format_table(&["SERVICE", "ID", "NODE", "ADDRESS", "PORT", "TAGS", "STATUS"], &rows))
}

/// The worst status among an entry's checks.
fn status(entry: &Value) -> String {
    let statuses: Vec<&str> =
        entry["Checks"].as_array().map(|c| c.iter().filter_map(|c| c["Status"].as_str()).collect()).unwrap_or_default();
    for worst in ["critical", "warning", "maintenance"] {
        if statuses.contains(&worst) {
            return worst.into();
        }
    }
    if statuses.is_empty() { "-".into() } else { "passing".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn instances_show_their_worst_check() {
        let result = json!([
            {"Node": {"Node": "n1", "Address": "10.0.0.1"},
             "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Address": "", "Port": 80},
             "Checks": [{"Status": "passing"}, {"Status": "critical"}]},
            {"Node": {"Node": "n2", "Address": "10.0.0.2"},
             "Service": {"ID": "web-2", "Service": "web", "Tags": [], "Address": "192.168.0.2", "Port": 81},
             "Checks": [{"Status": "passing"}]},
        ]);
        assert_eq!(
            instances_table(&result).unwrap(),
            "SERVICE  ID     NODE  ADDRESS      PORT  TAGS  STATUS\n\
             web      web-1  n1    10.0.0.1     80    v1    critical\n\
             web      web-2  n2    192.168.0.2  81          passing\n"
        );
        assert!(instances_table(&json!({})).is_err());
    }

    #[test]
    fn service_views_carry_their_filters() {
        use clap::Parser;
        let parse = |args: &[&str]| match crate::cli::Cli::try_parse_from(args).unwrap().command {
            crate::cli::Command::Watch(w) => w,
            other => panic!("{other:?}"),
        };
        let w = parse(&["gossipd", "watch", "--type", "service", "--service", "web", "--tag", "v 1", "--passing"]);
        assert_eq!(view_path(&w), "/v1/health/service/web?tag=v%201&passing");
        let w = parse(&["gossipd", "watch", "--type", "nodes", "--", "./h.sh", "-x"]);
        assert_eq!(view_path(&w), "/v1/catalog/nodes");
        assert_eq!(w.handler, ["./h.sh", "-x"]);
        let w = parse(&["gossipd", "watch", "--type", "services", "logger", "-t", "x"]);
        assert_eq!(w.handler, ["logger", "-t", "x"]);
        assert!(crate::cli::Cli::try_parse_from(["gossipd", "watch", "--type", "service"]).is_err());
        let e = crate::cli::Cli::try_parse_from(["gossipd", "watch", "--type", "nodes", "--once", "cat"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
