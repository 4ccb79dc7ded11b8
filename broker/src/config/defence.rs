//! The defence keys: `auth.bans` (failed-login throttling), `auth.verify`
//! (the password verification queue) and the connection, subscription and
//! publish limits under `limits`. Kept in their own file, as `observe.rs`
//! is, so the rest of the config stays as it was.
//!
//! A limit written as 0 is off.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde::Deserialize;

use super::locate::Seg;
use super::observe::ErrAt;
use super::types::HumanDuration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBans {
    pub failures_per_ip: Option<u32>,
    pub failures_per_user: Option<u32>,
    pub window: Option<HumanDuration>,
    pub duration: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    pub concurrency: Option<usize>,
    pub queue: Option<usize>,
    pub wait: Option<HumanDuration>,
}

/// `auth.bans`: a source address or a username with this many failed
/// logins (bad username or password) within `window` is banned for
/// `duration`: its logins get CONNACK 0x8A (v5) / 0x05 (v3) and are closed
/// before any password is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanConfig {
    /// `None`: addresses are never banned.
    pub failures_per_ip: Option<NonZeroU32>,
    /// `None`: usernames are never banned.
    pub failures_per_user: Option<NonZeroU32>,
    pub window: Duration,
    pub duration: Duration,
}

impl Default for BanConfig {
    fn default() -> Self {
        BanConfig {
            failures_per_ip: NonZeroU32::new(50),
            failures_per_user: NonZeroU32::new(10),
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        }
    }
}

/// `auth.verify`: password hashes (argon2id) verified at once, and how many
/// logins may wait for a turn, for how long, before they are refused with
/// "server busy" (v5 0x89, v3 0x03).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyConfig {
    /// Verifications running at once; each holds ~19 MiB.
    pub concurrency: NonZeroUsize,
    /// Logins waiting for a turn; one more is refused at once.
    pub queue: usize,
    /// How long a login waits for a turn.
    pub wait: Duration,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            concurrency: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            queue: 1024,
            wait: Duration::from_secs(5),
        }
    }
}

fn positive(
    d: Option<HumanDuration>,
    default: Duration,
    at: [&'static str; 3],
    err: ErrAt<'_>,
) -> Result<Duration, super::ConfigError> {
    let d = d.map_or(default, |h| h.0);
    if d.is_zero() {
        return Err(err(
            &[Seg::Key(at[0]), Seg::Key(at[1]), Seg::Key(at[2])],
            &at.join("."),
            "must be greater than zero".into(),
        ));
    }
    Ok(d)
}

pub(super) fn build_bans(
    raw: Option<RawBans>,
    err: ErrAt<'_>,
) -> Result<BanConfig, super::ConfigError> {
    let raw = raw.unwrap_or_default();
    let d = BanConfig::default();
    Ok(BanConfig {
        failures_per_ip: raw
            .failures_per_ip
            .map_or(d.failures_per_ip, NonZeroU32::new),
        failures_per_user: raw
            .failures_per_user
            .map_or(d.failures_per_user, NonZeroU32::new),
        window: positive(raw.window, d.window, ["auth", "bans", "window"], err)?,
        duration: positive(raw.duration, d.duration, ["auth", "bans", "duration"], err)?,
    })
}

pub(super) fn build_verify(
    raw: Option<RawVerify>,
    err: ErrAt<'_>,
) -> Result<VerifyConfig, super::ConfigError> {
    let raw = raw.unwrap_or_default();
    let d = VerifyConfig::default();
    Ok(VerifyConfig {
        // 0: one per CPU, the default.
        concurrency: raw
            .concurrency
            .and_then(NonZeroUsize::new)
            .unwrap_or(d.concurrency),
        queue: raw.queue.unwrap_or(d.queue),
        wait: positive(raw.wait, d.wait, ["auth", "verify", "wait"], err)?,
    })
}

/// The limits of `limits` that defend the broker, 0 written as off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardLimits {
    /// Connections to the whole broker (each listener has its own too).
    pub max_connections: Option<NonZeroUsize>,
    /// Connections from one source address.
    pub max_connections_per_ip: Option<NonZeroUsize>,
    /// New connections per second from one source address (and as many in
    /// a burst).
    pub connection_rate_per_ip: Option<NonZeroU32>,
    /// Subscriptions one client may hold; SUBACK 0x97 for the excess.
    pub max_subscriptions: Option<NonZeroUsize>,
    /// PUBLISH packets per second one client may send (and as many in a
    /// burst); beyond it the client is disconnected (v5 0x96).
    pub publish_rate: Option<NonZeroU32>,
}

/// Default for [`GuardLimits::max_subscriptions`].
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 10_000;

pub(super) fn build_guard(raw: &super::raw::RawLimits) -> GuardLimits {
    GuardLimits {
        max_connections: raw.max_connections.and_then(NonZeroUsize::new),
        max_connections_per_ip: raw.max_connections_per_ip.and_then(NonZeroUsize::new),
        connection_rate_per_ip: raw.connection_rate_per_ip.and_then(NonZeroU32::new),
        max_subscriptions: NonZeroUsize::new(
            raw.max_subscriptions.unwrap_or(DEFAULT_MAX_SUBSCRIPTIONS),
        ),
        publish_rate: raw.publish_rate.and_then(NonZeroU32::new),
    }
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_connections: None,
            max_connections_per_ip: None,
            connection_rate_per_ip: None,
            max_subscriptions: NonZeroUsize::new(DEFAULT_MAX_SUBSCRIPTIONS),
            publish_rate: None,
        }
    }
}
