//! `gossipd monitor`: the agent's log lines, live (`GET /v1/agent/monitor`), copied to stdout
//! as they come. Exit status: 0 at Ctrl-C (SIGINT, SIGTERM) and when the agent ends the stream
//! because it stops (a complete response: the agent's last line is its "stopped"); 1 when the
//! agent cannot be reached or refuses (the operator token is needed), or when the connection
//! breaks mid-stream (the agent crashed or the network failed).

use std::io::{BufRead, BufReader, Read, Write};

use anyhow::Context;

use super::{Api, exit_on_signal, usage_error};
use crate::cli::{Format, MonitorArgs};

/// Longest line accepted from the agent (it sends at most 4 KiB).
const MAX_LINE: u64 = 64 * 1024;

/// Streams until the agent ends the stream; returns nothing more to print.
pub(super) fn run(api: &Api, args: &MonitorArgs) -> anyhow::Result<String> {
    if args.client.format == Format::Json {
        usage_error("--format json does not apply to monitor: it streams the agent's log lines as text");
    }
    exit_on_signal()?;
    let path = format!("/v1/agent/monitor?loglevel={}", args.log_level);
    let mut reader = BufReader::new(api.stream(&path)?);
    let stdout = std::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("lost the log stream of the agent at {}", api.base))?;
        if n == 0 {
            eprintln!("the agent at {} ended the log stream: it is stopping", api.base);
            return Ok(String::new());
        }
        let mut out = stdout.lock();
        match out.write_all(&line).and_then(|()| out.flush()) {
            // `gossipd monitor | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(String::new()),
            r => r.context("cannot write the output")?,
        }
    }
}
