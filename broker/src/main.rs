//! The `warden` binary: parse the command line, set up logging, run one
//! subcommand on a tokio runtime, and turn any error into one line on stderr.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use warden::cli::{self, Cli};
use warden::lifecycle::log_level;

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

/// How long the exit waits for blocking work still running (an argon2
/// verification for a client that `warden serve` already let go): the
/// shutdown grace is over by then, and nothing of it is needed.
const BLOCKING_EXIT_WAIT: Duration = Duration::from_millis(200);

fn run(cli: Cli) -> anyhow::Result<u8> {
    let config = if cli.needs_config() {
        Some(cli.load_config()?)
    } else {
        None
    };
    log_level::init(
        config.as_ref().map(|c| c.log.level.as_str()),
        config.as_ref().map(|c| c.log.format).unwrap_or_default(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(cli::dispatch(cli, config));
    // Dropping the runtime would wait for every blocking task; tasks still
    // running (connections past the grace) are dropped either way.
    runtime.shutdown_timeout(BLOCKING_EXIT_WAIT);
    Ok(outcome?.exit_code())
}
