//! What keeps a broker on a public address standing: temporary bans after
//! failed logins ([`bans`]), connection limits at accept ([`conns`]), and
//! the token bucket the rate limits share ([`rate`]). The password
//! verification queue and its single flight are with authentication
//! (`auth::verify`); the subscription and publish limits are applied in the
//! packet loop (`session::subscribe`, `session::inbound`).
//!
//! Everything refused by a limit is counted here by limit, for `/metrics`.

pub mod bans;
pub mod conns;
pub mod rate;

use crate::observe::stats::Counts;

pub use bans::{BanKind, Bans};
pub use conns::Connections;

/// The metrics' labels of the limits.
pub mod limit {
    /// A listener's own `max_connections`.
    pub const LISTENER: &str = "listener_max_connections";
    /// No CONNECT (or TLS handshake) within the listener's connect timeout.
    pub const CONNECT_TIMEOUT: &str = "connect_timeout";
    /// `limits.max_subscriptions`: SUBACK 0x97 for the excess.
    pub const SUBSCRIPTIONS: &str = "max_subscriptions";
    /// `limits.publish_rate`: DISCONNECT 0x96.
    pub const PUBLISH_RATE: &str = "publish_rate";
    /// More QoS 2 messages in flight from the client than our Receive
    /// Maximum: DISCONNECT 0x93.
    pub const RECEIVE_MAXIMUM: &str = "receive_maximum";
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Defence {
    pub bans: Bans,
    pub conns: Connections,
    /// Connections, subscriptions and clients refused by a limit, by the
    /// limit's label (`conns::Refused::label`, [`limit`]).
    pub refused: Counts<&'static str>,
}
