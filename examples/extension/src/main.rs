//! `warden-example`: Warden's command line with the `device-hmac`
//! extension registered, so that `auth.chain` may name it. An extension
//! crate ships a binary like this one: register, then run Warden as
//! `broker/src/main.rs` does.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use warden::cli::{self, Cli};
use warden::lifecycle::log_level;

fn main() -> ExitCode {
    if let Err(err) = warden_example_extension::register() {
        eprintln!("error: {err}");
        return ExitCode::from(1);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

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
    runtime.shutdown_timeout(Duration::from_millis(200));
    Ok(outcome?.exit_code())
}
