//! The observability keys: `metrics` (the metrics and admin listener),
//! `audit` (the audit log) and `sys_interval` (`$SYS/broker/...`). Kept in
//! their own file so the rest of the config stays as it was.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::locate::Seg;
use super::types::{BindAddr, HumanDuration};

/// `$SYS` is published this often unless the config says otherwise.
pub const DEFAULT_SYS_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub bind: Option<BindAddr>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub file: Option<PathBuf>,
    pub stdout: Option<bool>,
    pub rate: Option<u32>,
    pub max_size: Option<SizeText>,
    pub keep: Option<u32>,
    pub allow_sample: Option<u32>,
}

/// A size as written: a number of bytes or text such as "100MiB".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeText {
    Bytes(u64),
    Text(String),
}

/// The HTTP listener for `/metrics`, `/health`, `/ready`, the admin API and
/// the status page. Off unless `bind` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    pub bind: Option<SocketAddr>,
    /// A file holding the admin API's bearer token (absolute). Without it
    /// the API and the status page's data answer 401 to everyone.
    pub token_file: Option<PathBuf>,
}

/// The audit log; see `observe::audit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// Absolute; None: no file.
    pub file: Option<PathBuf>,
    pub stdout: bool,
    /// Lines per second (and burst); more are counted, not written.
    pub rate: u32,
    /// Rotate the file when it would grow past this.
    pub max_size: u64,
    /// Rotated files kept (`file.1` … `file.N`).
    pub keep: u32,
    /// Log one allow in this many; 0: no allows.
    pub allow_sample: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            file: None,
            stdout: false,
            rate: 100,
            max_size: 100 << 20,
            keep: 5,
            allow_sample: 0,
        }
    }
}

/// What `build_*` need from the validator: a way to name the field and line.
pub(super) type ErrAt<'a> = &'a dyn Fn(&[Seg<'_>], &str, String) -> super::ConfigError;

pub(super) fn build_metrics(
    raw: Option<RawMetrics>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> MetricsConfig {
    let raw = raw.unwrap_or_default();
    MetricsConfig {
        bind: raw.bind.map(|b| b.0),
        token_file: raw.token_file.as_deref().map(resolve),
    }
}

pub(super) fn build_audit(
    raw: Option<RawAudit>,
    data_dir: &Path,
    err: ErrAt<'_>,
) -> Result<AuditConfig, super::ConfigError> {
    let raw = raw.unwrap_or_default();
    let d = AuditConfig::default();
    let max_size = match raw.max_size {
        None => d.max_size,
        Some(SizeText::Bytes(n)) => n,
        Some(SizeText::Text(text)) => super::parse_byte_size(&text).map_err(|m| {
            err(
                &[Seg::Key("audit"), Seg::Key("max_size")],
                "audit.max_size",
                m,
            )
        })?,
    };
    let rate = raw.rate.unwrap_or(d.rate);
    if rate == 0 {
        return Err(err(
            &[Seg::Key("audit"), Seg::Key("rate")],
            "audit.rate",
            "must be at least 1 line per second".into(),
        ));
    }
    if max_size < 4096 {
        return Err(err(
            &[Seg::Key("audit"), Seg::Key("max_size")],
            "audit.max_size",
            "must be at least 4KiB".into(),
        ));
    }
    Ok(AuditConfig {
        file: raw.file.map(|f| data_dir.join(f)),
        stdout: raw.stdout.unwrap_or(d.stdout),
        rate,
        max_size,
        keep: raw.keep.unwrap_or(d.keep),
        allow_sample: raw.allow_sample.unwrap_or(d.allow_sample),
    })
}

pub(super) fn sys_interval(raw: Option<HumanDuration>) -> Duration {
    raw.map_or(DEFAULT_SYS_INTERVAL, |h| h.0)
}
