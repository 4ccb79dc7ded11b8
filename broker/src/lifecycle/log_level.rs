//! The process's log filter: `RUST_LOG` when set, else the config's
//! `log.level`, which a config reload can change while the broker runs.
//!
//! The subscriber is process-wide, so the handle that swaps its filter is
//! too: `main` installs it once with [`init`], and [`apply`] uses it.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// rustls warns about every client that sends an IP address as SNI
/// (mosquitto_pub -h 127.0.0.1 does); that is not the operator's problem.
/// Nor are PostgreSQL's NOTICEs, such as the `relation "_sqlx_migrations"
/// already exists, skipping` that every opening of the store would print
/// (and that would break the CLI's one-line errors). Nor is async-nats's
/// line per event and per failed reconnect: the cluster logs an outage and
/// its end once each (`cluster/link.rs`).
const QUIET: &str = ",rustls=error,sqlx::postgres::notice=warn,async_nats=warn";

struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it wins over the config for good.
    from_env: bool,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// The filter for a config `log.level`.
fn filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(format!("{level}{QUIET}")).map_err(|e| e.to_string())
}

/// Set up logging to stderr (stdout carries command output), filtered by
/// `RUST_LOG` when set, else by `config_level` (default `info`).
pub fn init(config_level: Option<&str>) {
    let (env, from_env) = match EnvFilter::try_from_default_env() {
        Ok(f) => (Some(f), true),
        Err(_) => (None, false),
    };
    let initial = env
        .or_else(|| filter(config_level.unwrap_or("info")).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("info{QUIET}")));
    let (layer, handle) = reload::Layer::new(initial);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(layer).with(fmt).init();
    let _ = CONTROL.set(Control { handle, from_env });
}

/// What [`apply`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum LevelChange {
    /// The new filter is in place.
    Applied,
    /// `RUST_LOG` is set and keeps deciding.
    KeptRustLog,
    /// No logging was set up through [`init`] (tests, embedding).
    NoControl,
}

/// Why a level could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("cannot apply log level \"{level}\": {reason}")]
pub struct LevelError {
    level: String,
    reason: String,
}

/// Filter logs by the config's `level` from now on, unless `RUST_LOG`
/// decides.
pub fn apply(level: &str) -> Result<LevelChange, LevelError> {
    let Some(control) = CONTROL.get() else {
        return Ok(LevelChange::NoControl);
    };
    if control.from_env {
        return Ok(LevelChange::KeptRustLog);
    }
    let err = |reason: String| LevelError {
        level: level.to_owned(),
        reason,
    };
    let next = filter(level).map_err(err)?;
    control
        .handle
        .reload(next)
        .map_err(|e| err(e.to_string()))?;
    Ok(LevelChange::Applied)
}
