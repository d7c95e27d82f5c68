//! `gossipd`: the agent binary and its command-line clients.

mod agent;
mod ca;
mod checks;
mod cli;
mod client;
mod config_file;
mod driver;
mod http;
mod keys;
mod logstream;
mod manpage;
mod metrics;
mod persist;
mod query;
mod service_def;
mod testing;
mod tokens;
mod ui;
mod view;
mod wan;

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches_from(cli::consul_flags(std::env::args_os().collect()));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the anyhow chain joined by ": ".
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        Command::Agent(mut args) => {
            if let (Some(file), Some(sub)) = (args.config.clone(), matches.subcommand_matches("agent")) {
                config_file::apply(&file, &mut args, sub)?;
            }
            init_tracing(&args.log_level, args.log_format, true)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            runtime.block_on(agent::run(args))
        }
        command => {
            init_tracing("warn", cli::LogFormat::Text, false)?;
            client::run(command)
        }
    }
}

/// A bare word in a filter is a target name to tracing (`verbose` would silence every log):
/// each comma-separated directive must be a level, or `target=level`.
fn check_log_level(filter: &str) -> anyhow::Result<()> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = d.rsplit_once('=').map_or(d, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            anyhow::bail!(
                "--log-level {filter:?}: {d:?} is not a level (trace, debug, info, warn, error, off) nor \
                 TARGET=LEVEL (e.g. gossipd=debug)"
            );
        }
    }
    Ok(())
}

/// Logs to stderr, filtered by `RUST_LOG` when set, else by `default`; with `monitor`, also to
/// the agent's live log streams (`GET /v1/agent/monitor`), filtered by their own levels.
fn init_tracing(default: &str, format: cli::LogFormat, monitor: bool) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    check_log_level(default)?;
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).map_err(|e| anyhow::anyhow!("invalid RUST_LOG {env:?}: {e}"))?
        }
        // hickory logs every query at info: keep the query path quiet unless asked for.
        _ => EnvFilter::try_new(format!("hickory_server=warn,{default}"))
            .map_err(|e| anyhow::anyhow!("invalid --log-level {default:?}: {e}"))?,
    };
    // Colours only for a terminal: a file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let stderr = match format {
        cli::LogFormat::Text => stderr.boxed(),
        cli::LogFormat::Json => stderr.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter))
        .with(monitor.then(logstream::layer))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_word_that_is_no_level_is_refused() {
        assert!(super::check_log_level("info").is_ok());
        assert!(super::check_log_level("gossipd=debug,warn").is_ok());
        assert!(super::check_log_level("WARN").is_ok());
        let e = super::check_log_level("verbose").unwrap_err().to_string();
        assert!(e.contains("\"verbose\" is not a level"), "{e}");
        assert!(super::check_log_level("gossipd=loud").is_err());
    }
}
