//! The process's log filter and format: the config's `log.level` with the
//! built-in quieting directives, plus `RUST_LOG`'s directives when it is
//! set; `log.format` picks text or JSON lines.
//!
//! The subscriber is process-wide, so the handle that swaps its filter is
//! too: `main` installs it once with [`init`], and [`apply`] uses it.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::LogFormat;

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
    /// `RUST_LOG` was set at start: its directives, added to the filter of
    /// the level in force at start, decide for good.
    from_env: bool,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// The filter text for a config `log.level` and, when set, `RUST_LOG`.
///
/// `RUST_LOG`'s directives come last: a directive for a target the
/// built-in ones also name (`rustls=warn`) replaces theirs, and the rest
/// of them stand (`RUST_LOG=info` keeps rustls quiet).
fn directives(level: &str, env: Option<&str>) -> String {
    match env.map(str::trim).filter(|e| !e.is_empty()) {
        Some(env) => format!("{level}{QUIET},{env}"),
        None => format!("{level}{QUIET}"),
    }
}

/// The filter for a config `log.level` (and `RUST_LOG`, when set).
fn filter(level: &str, env: Option<&str>) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directives(level, env)).map_err(|e| e.to_string())
}

/// Set up logging to stderr (stdout carries command output), filtered by
/// `config_level` (default `info`) with `RUST_LOG`'s directives added, in
/// `format`. A `RUST_LOG` that does not parse is ignored, with a warning.
pub fn init(config_level: Option<&str>, format: LogFormat) {
    let env = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let level = config_level.unwrap_or("info");
    let (initial, env_error) = match filter(level, env.as_deref()) {
        Ok(f) => (f, None),
        Err(e) => (
            filter(level, None).unwrap_or_else(|_| EnvFilter::new(directives("info", None))),
            env.as_deref().map(|_| e),
        ),
    };
    let from_env = env.is_some() && env_error.is_none();
    let (layer, handle) = reload::Layer::new(initial);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        // Stable keys: timestamp, level, target, message, then the event's
        // own fields at the top level.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    tracing_subscriber::registry().with(layer).with(fmt).init();
    let _ = CONTROL.set(Control { handle, from_env });
    if let Some(error) = env_error {
        tracing::warn!(%error, "RUST_LOG ignored: it does not parse");
    }
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
    let next = filter(level, None).map_err(err)?;
    control
        .handle
        .reload(next)
        .map_err(|e| err(e.to_string()))?;
    Ok(LevelChange::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_adds_to_the_quiet_directives() {
        assert_eq!(
            directives("info", Some("info")),
            format!("info{QUIET},info"),
            "the config's level, the built-in directives, then RUST_LOG's"
        );
        assert_eq!(directives("warn", Some("  ")), format!("warn{QUIET}"));
        let f = filter("info", Some("warden=debug")).expect("parses");
        let text = f.to_string();
        assert!(text.contains("rustls=error"), "{text}");
        assert!(text.contains("warden=debug"), "{text}");
    }

    #[test]
    fn the_users_rustls_directive_wins() {
        let text = filter("info", Some("rustls=debug"))
            .expect("parses")
            .to_string();
        assert!(text.contains("rustls=debug"), "{text}");
        assert!(!text.contains("rustls=error"), "{text}");
    }

    #[test]
    fn a_bad_rust_log_is_an_error() {
        assert!(filter("info", Some("foo=notalevel")).is_err());
    }
}
