//! The config file exactly as written: serde structs with every key optional
//! where the file may omit it, and unknown keys rejected.
//!
//! Defaults, path resolution and cross-field checks happen in `validate.rs`.

use std::path::PathBuf;

use serde::Deserialize;

use super::types::{
    BindAddr, ClientAuthMode, HumanDuration, ListenerKind, LogDirective, LogFormat, OcspMode,
    OnDeny, PacketSize, PersistenceMode, Takeover, UsernameFrom,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    pub listeners: Option<Vec<RawListener>>,
    pub store: Option<super::store::RawStore>,
    pub auth: Option<RawAuth>,
    pub policy: Option<RawPolicy>,
    pub limits: Option<RawLimits>,
    pub log: Option<RawLog>,
    pub sessions: Option<RawSessions>,
    pub persistence: Option<RawPersistence>,
    pub shutdown_grace: Option<HumanDuration>,
    pub metrics: Option<super::observe::RawMetrics>,
    pub audit: Option<super::observe::RawAudit>,
    pub sys_interval: Option<HumanDuration>,
    pub cluster: Option<super::cluster::RawCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    pub takeover: Option<Takeover>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPersistence {
    pub mode: Option<PersistenceMode>,
    pub fsync_interval: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<String>,
    pub kind: Option<ListenerKind>,
    pub bind: BindAddr,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_auth: Option<ClientAuthMode>,
    pub client_ca: Option<PathBuf>,
    pub username_from: Option<UsernameFrom>,
    pub max_connections: Option<std::num::NonZeroUsize>,
    pub connect_timeout: Option<HumanDuration>,
    /// Certificate revocation lists (PEM or DER): one path or a list.
    pub crl: Option<OneOrMany<PathBuf>>,
    /// OCSP checking of client certificates.
    pub ocsp: Option<OcspMode>,
    pub ocsp_responder: Option<String>,
    pub ocsp_timeout: Option<HumanDuration>,
    // WebSocket (ws, wss).
    pub path: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
    // Server certificates (tls, wss).
    pub certificates: Option<Vec<RawCertificate>>,
    pub alpn: Option<Vec<String>>,
    pub cert_poll_interval: Option<HumanDuration>,
}

/// One entry of a listener's `certificates` list (SNI).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hostnames: Option<Vec<String>>,
}

/// A key that takes one value or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub allow_anonymous: Option<bool>,
    pub jwt: Option<RawJwt>,
    pub http: Option<super::http::RawHttp>,
    pub webhook: Option<super::http::RawWebhook>,
    /// The authenticators tried, in order (`jwt`, `http`, `store`).
    pub chain: Option<Vec<super::http::RawChainStep>>,
    pub compose: Option<super::http::Compose>,
    pub bans: Option<super::defence::RawBans>,
    pub verify: Option<super::defence::RawVerify>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub public_key: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub algorithms: Option<Vec<String>>,
    pub issuer: Option<String>,
    pub audience: Option<OneOrMany<String>>,
    pub leeway: Option<HumanDuration>,
    pub username_claim: Option<String>,
    pub roles_claim: Option<String>,
    pub acl_claim: Option<String>,
    pub require_store_user: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub on_deny: Option<OnDeny>,
    pub poll_interval: Option<HumanDuration>,
    pub superuser_bypass: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_packet_size: Option<PacketSize>,
    pub receive_maximum: Option<std::num::NonZeroU16>,
    pub max_queued_messages: Option<usize>,
    pub max_session_expiry: Option<HumanDuration>,
    pub max_keepalive: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub outbound_topic_aliases: Option<u16>,
    pub retain_available: Option<bool>,
    pub write_stall: Option<HumanDuration>,
    // Defence (`defence.rs`); 0 is off.
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub connection_rate_per_ip: Option<u32>,
    pub max_subscriptions: Option<usize>,
    pub publish_rate: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<LogDirective>,
    pub format: Option<LogFormat>,
}
