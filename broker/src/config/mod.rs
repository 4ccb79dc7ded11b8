//! The broker's configuration: the YAML file, validated once at start into
//! the typed [`Config`] that is passed down as `Arc<Config>`.
//!
//! `raw.rs` is the file as written, `types.rs` the value checks that serde
//! runs (so its errors carry the line), `validate.rs` the defaults, path
//! resolution and cross-field checks, and `locate.rs` finds the line for
//! errors found after parsing; `reload.rs` says what a reloaded file may
//! change in a running broker. Nothing here opens sockets or creates files.

mod cluster;
mod defence;
mod http;
mod jwt;
mod locate;
mod observe;
mod ocsp;
mod raw;
mod reload;
mod store;
mod types;
mod validate;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use cluster::{ClusterConfig, DEFAULT_CLUSTER_NAME};
pub use defence::{BanConfig, GuardLimits, VerifyConfig};
pub use http::{ChainStep, Compose, HttpAuthConfig, WebhookConfig};
pub use observe::{AuditConfig, MetricsConfig};
pub use ocsp::{responder_url as ocsp_responder_url, DEFAULT_OCSP_TIMEOUT};
pub use reload::ReloadPlan;
pub use types::{
    parse_byte_size, ClientAuthMode, ListenerKind, LogFormat, OcspMode, OnDeny, PersistenceMode,
    Takeover, UsernameFrom,
};

/// The commented default configuration (`warden config default`).
const DEFAULT_YAML: &str = include_str!("default.yaml");

/// Where the data dir is when nothing says otherwise (relative to the
/// current directory for the embedded default, to the file for a file).
pub const DEFAULT_DATA_DIR: &str = "./warden-data";

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was loaded from; `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// Absolute.
    pub data_dir: PathBuf,
    /// At least one, names unique.
    pub listeners: Vec<ListenerConfig>,
    /// Relative SQLite paths are already resolved against `data_dir`.
    pub store: warden_auth::StoreConfig,
    pub auth: AuthConfig,
    pub policy: PolicyConfig,
    pub limits: Limits,
    pub log: LogConfig,
    pub sessions: SessionsConfig,
    pub persistence: PersistenceConfig,
    /// How long SIGTERM/SIGINT waits for connections to close and the
    /// session store to flush before the process exits anyway.
    pub shutdown_grace: Duration,
    /// The metrics, health and admin listener (off by default).
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
    /// How often `$SYS/broker/...` is published; zero: never.
    pub sys_interval: Duration,
    /// `Some` when this node is one of a cluster (docs/cluster.md).
    pub cluster: Option<ClusterConfig>,
}

/// Who owns a session, and what a different principal asking for it gets.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SessionsConfig {
    pub takeover: Takeover,
}

/// Persistent sessions and retained messages on disk (`<data_dir>/state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistenceConfig {
    pub mode: PersistenceMode,
    /// `periodic` mode: how often the journal is fsynced; never zero.
    pub fsync_interval: Duration,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            mode: PersistenceMode::Periodic,
            fsync_interval: Duration::from_secs(1),
        }
    }
}

/// Default for [`Config::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One listening socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub transport: Transport,
    pub max_connections: NonZeroUsize,
    /// Time allowed for the TLS handshake plus the CONNECT packet.
    pub connect_timeout: Duration,
    /// `Some` for ws and wss listeners: MQTT in WebSocket frames, after
    /// the TCP (ws) or TLS (wss) handshake.
    pub websocket: Option<WsSettings>,
}

/// The WebSocket upgrade of a ws or wss listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsSettings {
    /// The request path that is upgraded, e.g. `/mqtt`; others get 404.
    pub path: String,
    /// `Origin` values let in (compared ASCII case-insensitively); empty:
    /// any origin, or none. A browser page from elsewhere gets 403.
    pub allowed_origins: Vec<String>,
    /// Largest WebSocket message and frame accepted: the config's
    /// `limits.max_packet_size` plus room for the frame header, so that a
    /// frame cannot make the broker buffer more than one packet may be.
    pub max_message_size: usize,
}

/// Default for [`WsSettings::path`].
pub const DEFAULT_WS_PATH: &str = "/mqtt";

// One per listener, built once per (re)load: its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP: only when configured, and logged as a warning.
    Tcp,
    Tls(TlsSettings),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, absolute.
    pub cert: PathBuf,
    /// PEM private key, absolute.
    pub key: PathBuf,
    pub client_auth: ClientAuth,
    /// Only ever set when `client_auth` is not `None`.
    pub username_from: Option<UsernameFrom>,
    /// Certificate revocation lists checked for client certificates
    /// (absolute); only with `client_auth`. Re-read when they change.
    pub crls: Vec<PathBuf>,
    /// OCSP checking of client certificates at login; `None`: off. Only
    /// with `client_auth`.
    pub ocsp: Option<OcspSettings>,
    /// True when `cert` and `key` are the development defaults in
    /// `<data_dir>/certs`, which `certs::ensure_dev_certs` may create.
    pub dev_certs: bool,
    /// More server certificates, picked by the name the client asks for
    /// (SNI); `cert`/`key` serve every other name and clients without SNI.
    pub certificates: Vec<SniCertificate>,
    /// ALPN protocols answered, in the server's order of preference; a
    /// client offering none of them is served without ALPN.
    pub alpn: Vec<String>,
    /// How often the certificate, key and CA files are checked for changes
    /// (a change reloads them, as SIGHUP does).
    pub cert_poll_interval: Duration,
}

/// How a listener asks about its clients' certificates (`ocsp.rs` here
/// validates it, `crate::ocsp` asks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspSettings {
    /// `SoftFail` or `HardFail` (off is `None` above).
    pub mode: OcspMode,
    /// The responder asked about every certificate, overriding the one a
    /// certificate names in its Authority Information Access extension.
    /// An `http://` URL.
    pub responder: Option<String>,
    /// How long one request may take, connecting included; shorter than
    /// the listener's connect timeout.
    pub timeout: Duration,
}

/// A server certificate served to clients that ask for one of `hostnames`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniCertificate {
    /// PEM certificate chain, absolute.
    pub cert: PathBuf,
    /// PEM private key, absolute.
    pub key: PathBuf,
    /// Lower-case names, `*.example.com` matching one label; empty: the
    /// DNS names of the certificate's subjectAltName.
    pub hostnames: Vec<String>,
}

/// Default for [`TlsSettings::alpn`].
pub const DEFAULT_ALPN: &str = "mqtt";
/// Default for [`TlsSettings::cert_poll_interval`].
pub const DEFAULT_CERT_POLL_INTERVAL: Duration = Duration::from_secs(5);

impl TlsSettings {
    /// The files these settings are read from: what a change is watched on.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.cert.as_path(), self.key.as_path()];
        files.extend(self.client_auth.ca());
        for c in &self.certificates {
            files.push(&c.cert);
            files.push(&c.key);
        }
        files
    }
}

/// Client certificate verification; the CA bundle comes with the mode that
/// needs it, so "required without a CA" cannot be represented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Optional { ca: PathBuf },
    Required { ca: PathBuf },
}

impl ClientAuth {
    pub fn mode(&self) -> ClientAuthMode {
        match self {
            ClientAuth::None => ClientAuthMode::None,
            ClientAuth::Optional { .. } => ClientAuthMode::Optional,
            ClientAuth::Required { .. } => ClientAuthMode::Required,
        }
    }

    pub fn ca(&self) -> Option<&Path> {
        match self {
            ClientAuth::None => None,
            ClientAuth::Optional { ca } | ClientAuth::Required { ca } => Some(ca),
        }
    }
}

impl ListenerConfig {
    /// Defaults for limits; used by tests and by code that builds listeners
    /// without a file.
    pub fn new(name: &str, bind: SocketAddr, transport: Transport) -> Self {
        ListenerConfig {
            name: Arc::from(name),
            bind,
            transport,
            max_connections: validate::DEFAULT_MAX_CONNECTIONS,
            connect_timeout: validate::DEFAULT_CONNECT_TIMEOUT,
            websocket: None,
        }
    }

    pub fn kind(&self) -> ListenerKind {
        match (&self.transport, &self.websocket) {
            (Transport::Tcp, None) => ListenerKind::Tcp,
            (Transport::Tls(_), None) => ListenerKind::Tls,
            (Transport::Tcp, Some(_)) => ListenerKind::Ws,
            (Transport::Tls(_), Some(_)) => ListenerKind::Wss,
        }
    }

    pub fn tls(&self) -> Option<&TlsSettings> {
        match &self.transport {
            Transport::Tcp => None,
            Transport::Tls(t) => Some(t),
        }
    }

    /// How this listener checks client certificates with OCSP; `None`: not.
    pub fn ocsp(&self) -> Option<&OcspSettings> {
        self.tls().and_then(|t| t.ocsp.as_ref())
    }

    /// The certificate-to-username mapping of this listener, if any.
    pub fn username_from(&self) -> Option<UsernameFrom> {
        self.tls().and_then(|t| t.username_from)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuthConfig {
    /// When true, clients without credentials connect as an anonymous
    /// principal that is still subject to the `everyone` rules.
    pub allow_anonymous: bool,
    /// JSON Web Tokens as the MQTT password (or v5 authentication method
    /// `jwt`); `None`: off.
    pub jwt: Option<JwtConfig>,
    /// An external HTTP(S) authenticator and policy source; `None`: off.
    pub http: Option<HttpAuthConfig>,
    /// The event sink over HTTP(S) (`auth.webhook`); `None`: off.
    pub webhook: Option<WebhookConfig>,
    /// The authenticators tried, in order; empty: the built-in order (JWT
    /// for a token, else the store), as before `auth.chain` existed.
    pub chain: Vec<ChainStep>,
    /// How the results of the chain combine.
    pub compose: Compose,
    /// Failed-login throttling (temporary bans).
    pub bans: BanConfig,
    /// The password verification queue.
    pub verify: VerifyConfig,
}

/// `auth.jwt`: how tokens are verified and what their claims mean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtConfig {
    pub key: JwtKey,
    /// The accepted `alg` values; never empty, all of the key's family.
    pub algorithms: Vec<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values (one must match), when set.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim that names the user (default `sub`).
    pub username_claim: String,
    /// The claim listing roles (default `roles`).
    pub roles_claim: String,
    /// The claim carrying rules, in the store's rule schema; `None`: rules
    /// come from the store only.
    pub acl_claim: Option<String>,
    /// Whether the user must also exist (and be enabled) in the store.
    pub require_store_user: bool,
}

/// Where the verification key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// An HMAC secret (HS256/384/512).
    Secret(Vec<u8>),
    /// A PEM public key (RSA, EC or Ed25519), absolute.
    PublicKey(PathBuf),
    /// A JWKS file, absolute; read again when it changes.
    Jwks(PathBuf),
}

// The secret never reaches a log line.
impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtKey::Secret(_) => f.write_str("Secret(<redacted>)"),
            JwtKey::PublicKey(p) => f.debug_tuple("PublicKey").field(p).finish(),
            JwtKey::Jwks(p) => f.debug_tuple("Jwks").field(p).finish(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    pub on_deny: OnDeny,
    /// How often the store's policy version is polled; never zero.
    pub poll_interval: Duration,
    pub superuser_bypass: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            on_deny: OnDeny::Ignore,
            poll_interval: Duration::from_secs(1),
            superuser_bypass: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Whole-packet bound in both directions, 1..=268,435,455.
    pub max_packet_size: u32,
    /// Our inflight window toward clients and the v5 Receive Maximum we send.
    pub receive_maximum: NonZeroU16,
    /// Per persistent session; the oldest is dropped (and counted) beyond it.
    pub max_queued_messages: usize,
    /// Cap on session expiry; at most `u32::MAX` seconds.
    pub max_session_expiry: Duration,
    /// `None`: accept the client's keep alive; else the v5 Server Keep Alive cap.
    pub max_keepalive: Option<NonZeroU16>,
    /// The Topic Alias Maximum we announce: aliases a v5 client may use
    /// toward us.
    pub topic_alias_maximum: u16,
    /// Most aliases we assign to the topics we send one v5 client (never
    /// more than its own Topic Alias Maximum); 0: none.
    pub outbound_topic_aliases: u16,
    pub retain_available: bool,
    /// A client whose outbound queue stays full (it stopped reading) for
    /// this long is disconnected; never zero.
    pub write_stall: Duration,
    /// Connection, subscription and publish limits (`defence.rs`).
    pub guard: GuardLimits,
}

impl Limits {
    /// `max_session_expiry` in the unit MQTT v5 uses.
    pub fn max_session_expiry_secs(&self) -> u32 {
        u32::try_from(self.max_session_expiry.as_secs()).unwrap_or(u32::MAX)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 1024 * 1024,
            receive_maximum: NonZeroU16::MIN.saturating_add(63),
            max_queued_messages: 1000,
            max_session_expiry: Duration::from_secs(86_400),
            max_keepalive: None,
            topic_alias_maximum: 16,
            outbound_topic_aliases: 16,
            retain_available: true,
            write_stall: Duration::from_secs(30),
            guard: GuardLimits::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing` EnvFilter directive; `RUST_LOG`'s directives are added
    /// to it (and win where both name a target).
    pub level: String,
    /// Text or JSON lines; applies at start (a reload keeps the format).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Why a config could not be loaded. Every variant names the file; `Invalid`
/// also names the field and, where it can be found, the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {}", path.display(), Located { field, message, line: *line, column: *column })]
    Invalid {
        path: PathBuf,
        /// e.g. `listeners[0].bind`; empty for errors about the whole file.
        field: String,
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    #[error("cannot resolve relative paths: current directory unknown: {0}")]
    CurrentDir(io::Error),
}

impl ConfigError {
    /// The 1-based line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => *line,
            _ => None,
        }
    }

    /// The dotted field path, for `Invalid`.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

struct Located<'a> {
    field: &'a str,
    message: &'a str,
    line: Option<usize>,
    column: Option<usize>,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(self.message)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " at line {l} column {c}"),
            (Some(l), None) => write!(f, " at line {l}"),
            _ => Ok(()),
        }
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths in it resolve
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let abs = validate::absolute(path).map_err(ConfigError::CurrentDir)?;
        let base = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
        validate::from_text(&text, &base, path, Some(abs.clone()))
    }

    /// Validates config text as if it were a file in `base_dir`; `name` is
    /// what errors call it.
    pub fn from_yaml_str(text: &str, base_dir: &Path, name: &Path) -> Result<Config, ConfigError> {
        let base = validate::absolute(base_dir).map_err(ConfigError::CurrentDir)?;
        validate::from_text(text, &base, name, None)
    }

    /// The configuration `warden serve` runs without a file: data in
    /// `./warden-data` (current directory), one TLS listener "tls" on
    /// 127.0.0.1:8883 with the development certificates, SQLite in the data dir.
    pub fn embedded_default() -> Config {
        validate::embedded_default()
    }

    /// The commented default config file; loading it from the current
    /// directory gives [`Config::embedded_default`].
    pub fn default_yaml() -> &'static str {
        DEFAULT_YAML
    }

    /// The directory holding the development certificates, when a TLS
    /// listener uses them (so `serve` knows to call `certs::ensure_dev_certs`).
    pub fn dev_certs_dir(&self) -> Option<PathBuf> {
        self.listeners
            .iter()
            .filter_map(ListenerConfig::tls)
            .any(|t| t.dev_certs)
            .then(|| self.data_dir.join("certs"))
    }
}

#[cfg(test)]
mod tests;
