//! `auth.http` (an external authenticator and policy source over HTTP(S)),
//! `auth.chain` and `auth.compose` from the file as written: a base URL
//! that is http or https, at most one bearer token source, client
//! certificate and key together, files that exist, timeouts that leave a
//! login time to be answered. The client itself is built by `auth::http`.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::locate::Seg;
use super::types::HumanDuration;
use super::validate::Ctx;
use super::{AuthConfig, ConfigError};

/// Defaults: a login waits at most about `DEFAULT_TIMEOUT` for the service.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;
/// How long an answer is kept when the service names no TTL.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_BREAKER_FAILURES: u32 = 3;
pub const DEFAULT_BREAKER_OPEN: Duration = Duration::from_secs(1);
pub const DEFAULT_BREAKER_MAX_OPEN: Duration = Duration::from_secs(30);
/// Decisions kept by `authorize_each` (principal, action, topic).
pub const DEFAULT_DECISION_CACHE_SIZE: u64 = 100_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub connect_timeout: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub max_connections: Option<usize>,
    pub cache_ttl: Option<HumanDuration>,
    pub breaker_failures: Option<u32>,
    pub breaker_open: Option<HumanDuration>,
    pub breaker_max_open: Option<HumanDuration>,
    pub authorize_each: Option<bool>,
    pub decision_cache_size: Option<u64>,
}

/// `auth.http`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpAuthConfig {
    /// The service's base URL without a trailing `/`; requests go to
    /// `{url}/authenticate` and `{url}/rules`.
    pub url: String,
    /// Sent as `Authorization: Bearer …`.
    pub token: Option<String>,
    /// PEM CA bundle the service's certificate must chain to (in addition
    /// to the public web roots); absolute.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS to the service; absolute.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// The whole request, connecting included.
    pub timeout: Duration,
    /// Requests in flight at once (and idle connections kept).
    pub max_connections: NonZeroUsize,
    /// How long answers are kept when the service names no TTL.
    pub cache_ttl: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker first stays open (jittered, doubling per
    /// failed probe up to `breaker_max_open`).
    pub breaker_open: Duration,
    pub breaker_max_open: Duration,
    /// Ask the service about every publish, subscribe and delivery topic
    /// of its principals (`POST {url}/authorize`), not only their rules at
    /// login. The service may also ask for it per principal in its
    /// `/authenticate` answer.
    pub authorize_each: bool,
    /// At most this many `/authorize` answers are kept.
    pub decision_cache_size: u64,
}

// The bearer token never reaches a log line.
impl std::fmt::Debug for HttpAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `auth.webhook` defaults.
pub const DEFAULT_WEBHOOK_BATCH: usize = 100;
pub const DEFAULT_WEBHOOK_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_WEBHOOK_QUEUE: usize = 10_000;
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<HumanDuration>,
    pub batch_size: Option<usize>,
    pub interval: Option<HumanDuration>,
    pub queue: Option<usize>,
}

/// `auth.webhook`: the event sink over HTTP(S).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Batches are POSTed here.
    pub url: String,
    /// Sent as `Authorization: Bearer …`.
    pub token: Option<String>,
    /// PEM CA bundle the receiver's certificate must chain to; absolute.
    pub ca_file: Option<PathBuf>,
    /// One POST, connecting included.
    pub timeout: Duration,
    /// A batch is sent when this many events wait...
    pub batch_size: NonZeroUsize,
    /// ...or this long after the last one was sent.
    pub interval: Duration,
    /// Events kept while the receiver is slow or down; beyond, the oldest
    /// are dropped (and counted).
    pub queue: NonZeroUsize,
}

// The bearer token never reaches a log line.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("batch_size", &self.batch_size)
            .field("interval", &self.interval)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

pub(super) fn build_webhook(raw: RawWebhook, ctx: &Ctx<'_>) -> Result<WebhookConfig, ConfigError> {
    let at = |key| [Seg::Key("auth"), Seg::Key("webhook"), Seg::Key(key)];
    let err = |key: &'static str, message: String| {
        ctx.err(&at(key), &format!("auth.webhook.{key}"), message)
    };
    let Some(url) = raw.url else {
        return Err(ctx.err(
            &[Seg::Key("auth"), Seg::Key("webhook")],
            "auth.webhook.url",
            "the receiver's URL is required",
        ));
    };
    let token = url_and_token("webhook", &url, raw.token, raw.token_file.as_deref(), ctx)?;
    let ca_file = raw
        .ca_file
        .as_deref()
        .map(|p| ctx.existing_file(&at("ca_file"), "auth.webhook.ca_file", p))
        .transpose()?;
    let positive = |key: &'static str, value: Option<HumanDuration>, default: Duration| {
        let d = value.map_or(default, |h| h.0);
        if d.is_zero() {
            Err(err(key, "must be more than zero".to_owned()))
        } else {
            Ok(d)
        }
    };
    let count = |key: &'static str, value: Option<usize>, default: usize| {
        NonZeroUsize::new(value.unwrap_or(default))
            .ok_or_else(|| err(key, "must be at least 1".to_owned()))
    };
    let batch_size = count("batch_size", raw.batch_size, DEFAULT_WEBHOOK_BATCH)?;
    let queue = count("queue", raw.queue, DEFAULT_WEBHOOK_QUEUE)?;
    if queue < batch_size {
        return Err(err("queue", "smaller than batch_size".to_owned()));
    }
    Ok(WebhookConfig {
        url,
        token,
        ca_file,
        timeout: positive("timeout", raw.timeout, DEFAULT_WEBHOOK_TIMEOUT)?,
        batch_size,
        interval: positive("interval", raw.interval, DEFAULT_WEBHOOK_INTERVAL)?,
        queue,
    })
}

/// One authenticator of `auth.chain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainStep {
    Jwt,
    Http,
    Store,
    /// `{extension: NAME, ...}`: an authenticator a Rust crate registered
    /// under NAME (`auth::extension::register_authenticator`); the whole
    /// map is its configuration.
    Extension {
        name: String,
        config: serde_yaml::Value,
    },
}

impl ChainStep {
    pub fn as_str(&self) -> &str {
        match self {
            ChainStep::Jwt => "jwt",
            ChainStep::Http => "http",
            ChainStep::Store => "store",
            ChainStep::Extension { name, .. } => name,
        }
    }
}

/// An `auth.chain` entry as written: a built-in's name, or a map naming
/// a registered extension.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawChainStep {
    Name(String),
    Extension(serde_yaml::Mapping),
}

/// `auth.compose`: how the chain's answers combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compose {
    /// The first authenticator that accepts the login decides.
    #[default]
    FirstMatch,
    /// Every authenticator that applies must accept it.
    AllMustAllow,
}

pub(super) fn build(raw: RawHttp, ctx: &Ctx<'_>) -> Result<HttpAuthConfig, ConfigError> {
    let at = |key| [Seg::Key("auth"), Seg::Key("http"), Seg::Key(key)];
    let err = |key: &'static str, message: String| {
        ctx.err(&at(key), &format!("auth.http.{key}"), message)
    };
    let file = |key: &'static str, p: &std::path::Path| {
        ctx.existing_file(&at(key), &format!("auth.http.{key}"), p)
    };
    let Some(url) = raw.url else {
        return Err(ctx.err(
            &[Seg::Key("auth"), Seg::Key("http")],
            "auth.http.url",
            "the service's base URL is required",
        ));
    };
    let url = url.trim_end_matches('/').to_owned();
    let token = url_and_token("http", &url, raw.token, raw.token_file.as_deref(), ctx)?;
    let ca_file = raw
        .ca_file
        .as_deref()
        .map(|p| file("ca_file", p))
        .transpose()?;
    let (client_cert, client_key) = match (&raw.client_cert, &raw.client_key) {
        (Some(c), Some(k)) => (Some(file("client_cert", c)?), Some(file("client_key", k)?)),
        (None, None) => (None, None),
        (Some(_), None) => {
            return Err(err("client_key", "client_cert needs client_key".to_owned()))
        }
        (None, Some(_)) => {
            return Err(err("client_key", "client_key needs client_cert".to_owned()))
        }
    };
    if client_cert.is_some() && !url.starts_with("https://") {
        return Err(err(
            "client_cert",
            "a client certificate needs an https:// url".to_owned(),
        ));
    }
    let positive = |key: &'static str, value: Option<HumanDuration>, default: Duration| {
        let d = value.map_or(default, |h| h.0);
        if d.is_zero() {
            Err(err(key, "must be more than zero".to_owned()))
        } else {
            Ok(d)
        }
    };
    let timeout = positive("timeout", raw.timeout, DEFAULT_TIMEOUT)?;
    // Unset, it never exceeds the whole request's bound.
    let connect_timeout = positive(
        "connect_timeout",
        raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT.min(timeout),
    )?;
    if connect_timeout > timeout {
        return Err(err(
            "connect_timeout",
            "longer than timeout, which includes connecting".to_owned(),
        ));
    }
    let max_connections = NonZeroUsize::new(raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS))
        .ok_or_else(|| err("max_connections", "must be at least 1".to_owned()))?;
    let breaker_failures = raw.breaker_failures.unwrap_or(DEFAULT_BREAKER_FAILURES);
    if breaker_failures == 0 {
        return Err(err("breaker_failures", "must be at least 1".to_owned()));
    }
    let breaker_open = positive("breaker_open", raw.breaker_open, DEFAULT_BREAKER_OPEN)?;
    let breaker_max_open = positive(
        "breaker_max_open",
        raw.breaker_max_open,
        DEFAULT_BREAKER_MAX_OPEN,
    )?;
    if breaker_max_open < breaker_open {
        return Err(err(
            "breaker_max_open",
            "shorter than breaker_open".to_owned(),
        ));
    }
    let decision_cache_size = raw
        .decision_cache_size
        .unwrap_or(DEFAULT_DECISION_CACHE_SIZE);
    if decision_cache_size == 0 {
        return Err(err(
            "decision_cache_size",
            "must be at least 1 (a TTL of 0 in the answers disables caching)".to_owned(),
        ));
    }
    Ok(HttpAuthConfig {
        url,
        token,
        ca_file,
        client_cert,
        client_key,
        connect_timeout,
        timeout,
        max_connections,
        cache_ttl: raw.cache_ttl.map_or(DEFAULT_CACHE_TTL, |h| h.0),
        breaker_failures,
        breaker_open,
        breaker_max_open,
        authorize_each: raw.authorize_each.unwrap_or(false),
        decision_cache_size,
    })
}

/// `auth.chain`: known names, each once, each configured.
pub(super) fn build_chain(
    raw: Option<Vec<RawChainStep>>,
    auth: &AuthConfig,
    ctx: &Ctx<'_>,
) -> Result<Vec<ChainStep>, ConfigError> {
    let Some(names) = raw else {
        return Ok(Vec::new());
    };
    let at = [Seg::Key("auth"), Seg::Key("chain")];
    let err = |message: String| ctx.err(&at, "auth.chain", message);
    if names.is_empty() {
        return Err(err("must name at least one of jwt, http, store".to_owned()));
    }
    let mut chain = Vec::with_capacity(names.len());
    for entry in names {
        let name = match entry {
            RawChainStep::Name(name) => name,
            RawChainStep::Extension(map) => {
                let Some(name) = map
                    .get("extension")
                    .and_then(serde_yaml::Value::as_str)
                    .map(str::to_owned)
                else {
                    return Err(err(
                        "an entry that is a map needs `extension: NAME`".to_owned()
                    ));
                };
                if !crate::auth::extension::is_registered(&name) {
                    return Err(err(format!(
                        "no extension {name:?} in this build (registered: {})",
                        crate::auth::extension::registered().join(", ")
                    )));
                }
                let step = ChainStep::Extension {
                    name,
                    config: serde_yaml::Value::Mapping(map),
                };
                if chain
                    .iter()
                    .any(|s: &ChainStep| s.as_str() == step.as_str())
                {
                    return Err(err(format!("{} is listed twice", step.as_str())));
                }
                chain.push(step);
                continue;
            }
        };
        let step = match name.as_str() {
            "jwt" if auth.jwt.is_none() => {
                return Err(err(
                    "jwt is listed but auth.jwt is not configured".to_owned()
                ))
            }
            "http" if auth.http.is_none() => {
                return Err(err(
                    "http is listed but auth.http is not configured".to_owned()
                ))
            }
            "jwt" => ChainStep::Jwt,
            "http" => ChainStep::Http,
            "store" => ChainStep::Store,
            other => {
                return Err(err(format!(
                    "unknown authenticator {other:?} (expected jwt, http, store or {{extension: NAME}})"
                )))
            }
        };
        if chain.contains(&step) {
            return Err(err(format!("{name} is listed twice")));
        }
        chain.push(step);
    }
    Ok(chain)
}

/// What `auth.http` and `auth.webhook` check alike: an http(s) URL, and
/// the bearer token, given inline (`token`) or in a file (`token_file`,
/// not both), never empty.
fn url_and_token(
    section: &'static str,
    url: &str,
    token: Option<String>,
    token_file: Option<&std::path::Path>,
    ctx: &Ctx<'_>,
) -> Result<Option<String>, ConfigError> {
    let at = |key| [Seg::Key("auth"), Seg::Key(section), Seg::Key(key)];
    let err = |key: &'static str, message: String| {
        ctx.err(&at(key), &format!("auth.{section}.{key}"), message)
    };
    let scheme_ok = url
        .split_once("://")
        .is_some_and(|(s, rest)| matches!(s, "http" | "https") && !rest.is_empty());
    if !scheme_ok {
        return Err(err(
            "url",
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    if token.is_some() && token_file.is_some() {
        return Err(err(
            "token_file",
            "set token or token_file, not both".to_owned(),
        ));
    }
    let token = match (token, token_file) {
        (Some(t), _) => Some(t),
        (None, Some(p)) => {
            let path =
                ctx.existing_file(&at("token_file"), &format!("auth.{section}.token_file"), p)?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err("token_file", format!("cannot read {}: {e}", path.display())))?;
            Some(text.trim().to_owned())
        }
        (None, None) => None,
    };
    if token.as_deref().is_some_and(str::is_empty) {
        return Err(err("token", "must not be empty".to_owned()));
    }
    Ok(token)
}
