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
mod metrics;
mod persist;
mod service_def;
mod tokens;
mod ui;
mod view;

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
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
            init_tracing(&args.log_level, args.log_format)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            runtime.block_on(agent::run(args))
        }
        command => {
            init_tracing("warn", cli::LogFormat::Text)?;
            client::run(command)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` when set, else by `default`.
fn init_tracing(default: &str, format: cli::LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).map_err(|e| anyhow::anyhow!("invalid RUST_LOG {env:?}: {e}"))?
        }
        // hickory logs every query at info: keep the query path quiet unless asked for.
        _ => EnvFilter::try_new(format!("hickory_server=warn,{default}"))
            .map_err(|e| anyhow::anyhow!("invalid --log-level {default:?}: {e}"))?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        cli::LogFormat::Text => builder.try_init(),
        cli::LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
