//! The `warden` binary: parse the command line, set up logging, run one
//! subcommand on a tokio runtime, and turn any error into one line on stderr.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use warden::cli::{self, Cli};

// Chosen by measurement, see "Memory per idle connection" in
// docs/architecture.md.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with status 2.
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(1)
        }
    }
}

/// The cause chain joined by ": ", skipping a cause whose text the line
/// already ends with (some errors print their source themselves), and with
/// line breaks folded so the reason stays one line.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace(['\n', '\r'], " ")
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let config = if cli.needs_config() {
        Some(cli.load_config()?)
    } else {
        None
    };
    init_logging(config.as_ref().map(|c| c.log.level.as_str()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(cli::dispatch(cli, config))?;
    Ok(outcome.exit_code())
}

/// Logs go to stderr (stdout carries command output), filtered by RUST_LOG
/// when set, else by the config's `log.level`.
fn init_logging(config_level: Option<&str>) {
    // rustls warns about every client that sends an IP address as SNI
    // (mosquitto_pub -h 127.0.0.1 does); that is not the operator's problem.
    let quiet = ",rustls=error";
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{}{quiet}", config_level.unwrap_or("info"))))
        .unwrap_or_else(|_| EnvFilter::new(format!("info{quiet}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
