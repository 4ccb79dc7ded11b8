//! `auth.http`: an external service as authenticator and policy source.
//!
//! At login the broker sends `POST {url}/authenticate` (the credentials,
//! client id, certificate identity, peer and listener) and, when the
//! service accepts, `POST {url}/rules` (the principal) — the schema is in
//! docs/extending.md and docs/auth-http.yaml. The rules use the store's
//! rule schema and are compiled by the same policy engine, so every
//! publish and delivery is still decided locally.
//!
//! **Caches.** An accepted login is remembered under an HMAC tag of what
//! was sent (peer port left out) for the TTL the service names; the rules
//! per username likewise. [`refresher`] fetches again the rules of users
//! with sessions when their TTL runs out or when they are invalidated
//! (`POST /api/policy/invalidate`), and recompiles those sessions through
//! the policy registry's live path when the rules changed — revoked
//! subscriptions are removed within a tick (250 ms) plus one request.
//!
//! **Fail closed.** A service that is down, slow (`timeout`), answers
//! with an error status or with anything but the documented JSON refuses
//! the login as server-unavailable; nothing but an explicit `"allow"`
//! lets a client in. Connected clients keep their compiled policy. After
//! `breaker_failures` failures in a row a circuit breaker opens: logins are
//! refused without a request until a probe, after a jittered and doubling
//! wait, succeeds. The outage and the recovery are logged once each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};
use warden_policy::{CertInfo, Rule};

use super::jwt::TokenGrant;
use super::{AuthError, Refusal};
use crate::broker::Broker;
use crate::config::HttpAuthConfig;
use crate::session::state::Session;
use crate::shutdown::Shutdown;

/// Largest answer read from the service.
const MAX_ANSWER: usize = 1 << 20;
/// How often TTLs are looked at for users with sessions.
pub const TICK: Duration = Duration::from_millis(250);
/// Rule ids of the service's rules count down from here (tokens' count
/// down from `u64::MAX`), so that audit lines tell them apart.
pub const RULE_IDS: u64 = u64::MAX - (1 << 32);
/// An HTTP-only login has no expiry of its own: its grant says "far away"
/// (about a century) rather than "never", so deadlines stay plain instants.
const NO_EXPIRY_SECS: u64 = 100 * 365 * 86_400;
/// At most this many remembered logins; full of live ones, it starts over.
const LOGIN_CACHE_CAPACITY: usize = 100_000;

/// Why the setup failed (a file that cannot be used).
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("auth.http.{field}: {message}")]
    File {
        field: &'static str,
        message: String,
    },
    #[error("auth.http: cannot build the client: {0}")]
    Client(String),
    #[error("auth.webhook: {0}")]
    Webhook(String),
    #[error("{0}")]
    Extension(String),
}

/// What the service vouched for, kept in the session's grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGrant {
    pub attributes: Map<String, Value>,
    /// Where the service's rules start in the grant's `rules` (a token's
    /// own rules come first).
    pub rules_start: usize,
    /// Every publish, subscribe and delivery topic is also asked of the
    /// service (`authorize_each`, `each.rs`).
    pub authorize_each: bool,
    /// The roles the service gave (a token's own may differ).
    pub roles: Vec<String>,
}

impl TokenGrant {
    /// The rules the HTTP service gave this grant.
    pub fn http_rules(&self) -> &[Rule] {
        match &self.http {
            Some(h) => self.rules.get(h.rules_start..).unwrap_or_default(),
            None => &[],
        }
    }

    /// A fresh token (MQTT 5 AUTH) for a session whose grant also holds
    /// what the service gave: the token's part is replaced, the service's
    /// rules, roles and attributes stay (until its TTL or an invalidation
    /// refreshes them, as for any session).
    pub fn renewed_by(&self, mut fresh: TokenGrant) -> TokenGrant {
        let Some(h) = &self.http else {
            return fresh;
        };
        if fresh.http.is_some() || fresh.username != self.username {
            return fresh;
        }
        let start = fresh.rules.len();
        fresh.rules.extend_from_slice(self.http_rules());
        fresh.roles = super::merge_roles(&fresh.roles, &h.roles);
        fresh.http = Some(Arc::new(HttpGrant {
            rules_start: start,
            ..(**h).clone()
        }));
        fresh
    }

    /// This grant with the service's rules replaced by `rules`.
    pub fn with_http_rules(&self, rules: &[Rule]) -> TokenGrant {
        let mut next = self.clone();
        if let Some(h) = &self.http {
            next.rules.truncate(h.rules_start);
            next.rules.extend_from_slice(rules);
        }
        next
    }
}

/// Who the service says the client is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpPrincipal {
    pub username: String,
    pub roles: Vec<String>,
    pub attributes: Map<String, Value>,
    /// Its topics are asked one by one (`/authorize`): the config's
    /// `authorize_each`, or the service's answer insisting.
    pub authorize_each: bool,
}

/// A login as the service is asked about it.
#[derive(Debug)]
pub struct LoginRequest<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub client_id: &'a str,
    pub peer: Option<std::net::SocketAddr>,
    pub listener: &'a str,
    pub cert: Option<&'a CertInfo>,
    /// The username the listener mapped from the certificate, if any.
    pub cert_username: Option<&'a str>,
}

#[derive(Serialize)]
struct CertBody<'a> {
    subject: &'a str,
    cn: Option<&'a str>,
    sans: &'a [String],
    fingerprint: &'a str,
    serial: &'a str,
    issuer: &'a str,
    mapped_username: Option<&'a str>,
}

#[derive(Serialize)]
struct AuthenticateBody<'a> {
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    /// A password that is not UTF-8, base64 (standard alphabet).
    #[serde(skip_serializing_if = "Option::is_none")]
    password_base64: Option<String>,
    client_id: &'a str,
    peer: Option<String>,
    listener: &'a str,
    cert: Option<CertBody<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Decision {
    Allow,
    Deny,
}

#[derive(Deserialize)]
struct AuthenticateAnswer {
    result: Decision,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    /// The service insists on being asked per topic for this principal.
    #[serde(default)]
    authorize_each: Option<bool>,
}

#[derive(Serialize)]
struct RulesBody<'a> {
    username: &'a str,
    roles: &'a [String],
    attributes: &'a Map<String, Value>,
}

/// `POST {url}/authorize`: one action on one topic (`authorize_each`).
#[derive(Serialize)]
pub struct AuthorizeBody<'a> {
    pub username: &'a str,
    pub client_id: &'a str,
    pub roles: &'a [String],
    pub attributes: &'a Map<String, Value>,
    /// `publish`, `subscribe` or `receive`.
    pub action: &'static str,
    /// The topic, or for `subscribe` the filter (no `$share/` prefix).
    pub topic: &'a str,
}

#[derive(Deserialize)]
struct AuthorizeAnswer {
    result: Decision,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct RulesAnswer {
    rules: Value,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    version: Option<String>,
}

/// Why a request did not give a usable answer.
#[derive(Debug)]
pub(super) enum Failure {
    /// The breaker is open: no request was made.
    Open,
    /// No request slot within the timeout (our own bound, not the
    /// service's fault).
    Busy,
    Transport(String),
    Status(u16),
    Malformed(&'static str),
}

impl Failure {
    fn refusal(&self) -> Refusal {
        let reason = match self {
            Failure::Open => "auth service unavailable (circuit open)",
            Failure::Busy => "auth service busy: no request slot in time",
            Failure::Transport(_) => "auth service unreachable or too slow",
            Failure::Status(_) => "auth service answered with an error status",
            Failure::Malformed(_) => "auth service answer malformed",
        };
        Refusal {
            error: AuthError::Unavailable,
            reason,
        }
    }

    /// Whether this says something about the service's health.
    fn counts(&self) -> bool {
        !matches!(self, Failure::Open | Failure::Busy)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Open => f.write_str("circuit open"),
            Failure::Busy => f.write_str("no request slot"),
            Failure::Transport(e) => f.write_str(e),
            Failure::Status(s) => write!(f, "HTTP status {s}"),
            Failure::Malformed(why) => write!(f, "malformed answer: {why}"),
        }
    }
}

/// The circuit breaker; see the module docs.
#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    /// Set while open: no request before then.
    open_until: Option<Instant>,
    /// How many times in a row it opened (the wait doubles).
    opened: u32,
    /// A probe is under way since then: the others stay refused. A probe
    /// whose login was dropped never reports, so after `probe_wait` another
    /// may go.
    probing: Option<Instant>,
    /// The outage was logged (and the recovery must be).
    down: bool,
}

#[derive(Debug)]
struct Breaker {
    state: Mutex<BreakerState>,
    threshold: u32,
    base: Duration,
    max: Duration,
    probe_wait: Duration,
}

impl Breaker {
    /// Whether a request may be made now.
    fn admit(&self) -> bool {
        let mut st = self.state.lock();
        let now = Instant::now();
        let probing = st.probing.is_some_and(|t| now < t + self.probe_wait);
        match st.open_until {
            None => true,
            Some(until) if now < until || probing => false,
            Some(_) => {
                st.probing = Some(now);
                true
            }
        }
    }

    /// A request that never reached the service (no slot).
    fn not_tried(&self) {
        self.state.lock().probing = None;
    }

    fn succeeded(&self, url: &str) {
        let mut st = self.state.lock();
        if st.down {
            tracing::info!(
                url,
                "auth service reachable again; logins it answers for resume"
            );
        }
        *st = BreakerState::default();
    }

    fn failed(&self, url: &str, failure: &Failure) {
        let mut st = self.state.lock();
        st.failures = st.failures.saturating_add(1);
        st.probing = None;
        if st.failures < self.threshold {
            return;
        }
        if !st.down {
            st.down = true;
            tracing::warn!(url, error = %failure, "auth service unavailable; new logins it answers for are refused, connected clients keep their policy");
        }
        let doubled = self
            .base
            .saturating_mul(1u32 << st.opened.min(16))
            .min(self.max);
        st.opened = st.opened.saturating_add(1);
        // Jitter in [0.5, 1.5): brokers that lost the service together do
        // not come back to it together.
        let jittered = doubled.mul_f64(0.5 + rand::random::<f64>());
        st.open_until = Some(Instant::now() + jittered);
    }

    fn is_open(&self) -> bool {
        self.state.lock().down
    }
}

struct CachedLogin {
    until: Instant,
    principal: Arc<HttpPrincipal>,
}

struct CachedRules {
    until: Instant,
    /// Whom they were fetched for (a login with other roles or attributes
    /// asks again).
    principal: Arc<HttpPrincipal>,
    rules: Arc<Vec<Rule>>,
    version: Option<String>,
}

/// Work done, for the metrics and the benchmark.
#[derive(Debug, Default)]
pub struct HttpCounts {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub login_cache_hits: AtomicU64,
    pub rules_cache_hits: AtomicU64,
    /// `authorize_each`: decisions answered from the cache, asked of the
    /// service, and not known in time (denied).
    pub decision_cache_hits: AtomicU64,
    pub decision_requests: AtomicU64,
    pub decision_unknown: AtomicU64,
}

/// The client, its caches and its breaker; see the module docs.
pub struct HttpAuth {
    config: HttpAuthConfig,
    client: reqwest::Client,
    slots: Semaphore,
    breaker: Breaker,
    key: [u8; 32],
    logins: Mutex<HashMap<[u8; 32], CachedLogin>>,
    rules: Mutex<HashMap<String, CachedRules>>,
    wake: Notify,
    /// `authorize_each` answers (`each.rs`).
    pub(super) decisions: super::each::Decisions,
    pub counts: HttpCounts,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

fn read_file(field: &'static str, path: &std::path::Path) -> Result<Vec<u8>, HttpSetupError> {
    std::fs::read(path).map_err(|e| HttpSetupError::File {
        field,
        message: format!("cannot read {}: {e}", path.display()),
    })
}

/// Build the client `config` asks for (none when `auth.http` is absent).
/// At start only: `auth.http` changes need a restart.
pub fn install(
    broker: &Broker,
    config: &crate::config::Config,
) -> Result<Option<Arc<HttpAuth>>, HttpSetupError> {
    super::extension::install(&config.auth.chain)
        .map_err(|e| HttpSetupError::Extension(e.to_string()))?;
    let Some(http) = &config.auth.http else {
        return Ok(None);
    };
    let auth = Arc::new(HttpAuth::build(http)?);
    broker.http.store(Some(Arc::clone(&auth)));
    tracing::info!(url = %http.url, "HTTP auth service configured");
    Ok(Some(auth))
}

impl HttpAuth {
    /// Reads the CA and client certificate files. Blocking: at start only.
    pub fn build(config: &HttpAuthConfig) -> Result<HttpAuth, HttpSetupError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_max_idle_per_host(config.max_connections.get())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file {
            let pem = read_file("ca_file", ca)?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpSetupError::File {
                    field: "ca_file",
                    message: format!("{}: not a PEM CA bundle: {e}", ca.display()),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&config.client_cert, &config.client_key) {
            let mut pem = read_file("client_cert", cert)?;
            pem.push(b'\n');
            pem.extend(read_file("client_key", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| HttpSetupError::File {
                field: "client_cert",
                message: format!("certificate and key unusable: {e}"),
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| HttpSetupError::Client(e.to_string()))?;
        Ok(HttpAuth {
            client,
            slots: Semaphore::new(config.max_connections.get()),
            breaker: Breaker {
                state: Mutex::default(),
                threshold: config.breaker_failures,
                base: config.breaker_open,
                max: config.breaker_max_open,
                probe_wait: config.timeout.saturating_mul(2),
            },
            key: rand::random(),
            logins: Mutex::new(HashMap::new()),
            rules: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            decisions: super::each::Decisions::new(config.decision_cache_size),
            counts: HttpCounts::default(),
            config: config.clone(),
        })
    }

    /// `authorize_each` answers kept (approximately).
    pub fn decisions_cached(&self) -> u64 {
        self.decisions.len()
    }

    /// Whether the breaker considers the service down now.
    pub fn is_down(&self) -> bool {
        self.breaker.is_open()
    }

    /// How long answers are kept when the service names no TTL.
    pub fn cache_ttl(&self) -> Duration {
        self.config.cache_ttl
    }

    pub(super) fn ttl(&self, seconds: Option<u64>) -> Duration {
        seconds.map_or(self.config.cache_ttl, Duration::from_secs)
    }

    /// One request through the breaker and the slots; the answer's body.
    async fn post(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Failure> {
        if !self.breaker.admit() {
            return Err(Failure::Open);
        }
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.send(path, body).await;
        match &result {
            Ok(_) => self.breaker.succeeded(&self.config.url),
            Err(failure) => {
                self.counts.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(url = %self.config.url, path, error = %failure, "auth service request failed");
                if failure.counts() {
                    self.breaker.failed(&self.config.url, failure);
                } else {
                    // Our own bound, not the service: a probe that never
                    // ran must not keep the breaker shut.
                    self.breaker.not_tried();
                }
            }
        }
        result
    }

    async fn send(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let timeout = self.config.timeout;
        let _slot = tokio::time::timeout(timeout, self.slots.acquire())
            .await
            .map_err(|_| Failure::Busy)?
            .map_err(|_| Failure::Busy)?;
        let exchange = async {
            let mut request = self
                .client
                .post(format!("{}{path}", self.config.url))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body);
            if let Some(token) = &self.config.token {
                request = request.bearer_auth(token);
            }
            let mut response = request
                .send()
                .await
                .map_err(|e| Failure::Transport(error_chain(&e)))?;
            if response.status() != reqwest::StatusCode::OK {
                return Err(Failure::Status(response.status().as_u16()));
            }
            let mut out = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| Failure::Transport(error_chain(&e)))?
            {
                if out.len() + chunk.len() > MAX_ANSWER {
                    return Err(Failure::Malformed("answer larger than 1 MiB"));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        };
        // reqwest's own timeout covers the exchange too; this one also
        // bounds anything it does not (and is the documented promise).
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Failure::Transport("timed out".to_owned()))?
    }

    fn tag(&self, body: &AuthenticateBody<'_>, peer_ip: Option<std::net::IpAddr>) -> [u8; 32] {
        // An HMAC key of any length is accepted; the fallback keeps this
        // total (and caches nothing useful) rather than panicking.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        // Everything the service saw but the peer's port, which differs on
        // every connection.
        let keyed = serde_json::json!({
            "u": body.username, "p": body.password, "pb": body.password_base64,
            "c": body.client_id, "ip": peer_ip, "l": body.listener,
            "cert": body.cert.as_ref().map(|c| (c.fingerprint, c.mapped_username)),
        });
        mac.update(keyed.to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Ask the service who this is. Err: refused (the service said deny:
    /// bad credentials) or unavailable (anything else).
    pub async fn authenticate(
        &self,
        req: &LoginRequest<'_>,
    ) -> Result<Arc<HttpPrincipal>, Refusal> {
        let (password, password_base64) = match req.password {
            None => (None, None),
            Some(p) => match std::str::from_utf8(p) {
                Ok(s) => (Some(s.to_owned()), None),
                Err(_) => {
                    use base64::Engine as _;
                    (
                        None,
                        Some(base64::engine::general_purpose::STANDARD.encode(p)),
                    )
                }
            },
        };
        let body = AuthenticateBody {
            username: req.username.or(req.cert_username),
            password,
            password_base64,
            client_id: req.client_id,
            peer: req.peer.map(|p| p.to_string()),
            listener: req.listener,
            cert: req.cert.map(|c| CertBody {
                subject: &c.subject,
                cn: c.cn.as_deref(),
                sans: &c.sans,
                fingerprint: &c.fingerprint,
                serial: &c.serial,
                issuer: &c.issuer,
                mapped_username: req.cert_username,
            }),
        };
        let tag = self.tag(&body, req.peer.map(|p| p.ip()));
        let now = Instant::now();
        if let Some(hit) = self.logins.lock().get(&tag).filter(|c| c.until > now) {
            self.counts.login_cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(&hit.principal));
        }
        let bytes =
            serde_json::to_vec(&body).map_err(|_| Failure::Malformed("request").refusal())?;
        let answer = self
            .post("/authenticate", bytes)
            .await
            .and_then(|raw| parse_authenticate(&raw, body.username));
        let answer = match answer {
            Ok(a) => a,
            Err(failure) => {
                if matches!(failure, Failure::Malformed(_)) {
                    tracing::warn!(url = %self.config.url, error = %failure, "auth service: malformed /authenticate answer; login refused");
                }
                return Err(failure.refusal());
            }
        };
        let Some((mut principal, ttl)) = answer else {
            return Err(Refusal::bad("refused by the auth service"));
        };
        principal.authorize_each |= self.config.authorize_each;
        let principal = Arc::new(principal);
        let ttl = self.ttl(ttl);
        if !ttl.is_zero() {
            let mut logins = self.logins.lock();
            if logins.len() >= LOGIN_CACHE_CAPACITY {
                logins.retain(|_, c| c.until > now);
                if logins.len() >= LOGIN_CACHE_CAPACITY {
                    logins.clear();
                }
            }
            logins.insert(
                tag,
                CachedLogin {
                    until: now + ttl,
                    principal: Arc::clone(&principal),
                },
            );
        }
        Ok(principal)
    }

    /// The principal's rules: cached within their TTL, else asked for.
    pub async fn rules(&self, principal: &Arc<HttpPrincipal>) -> Result<Arc<Vec<Rule>>, Refusal> {
        let now = Instant::now();
        if let Some(hit) = self
            .rules
            .lock()
            .get(&principal.username)
            .filter(|c| c.until > now && *c.principal == **principal)
        {
            self.counts.rules_cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(&hit.rules));
        }
        self.fetch_rules(principal).await.map(|(rules, _)| rules).map_err(|failure| {
            if matches!(failure, Failure::Malformed(_)) {
                tracing::warn!(url = %self.config.url, error = %failure, "auth service: malformed /rules answer; login refused");
            }
            failure.refusal()
        })
    }

    /// Ask for the rules and remember them; also whether they differ from
    /// the ones remembered before (by version when both have one).
    async fn fetch_rules(
        &self,
        principal: &Arc<HttpPrincipal>,
    ) -> Result<(Arc<Vec<Rule>>, bool), Failure> {
        let body = RulesBody {
            username: &principal.username,
            roles: &principal.roles,
            attributes: &principal.attributes,
        };
        let bytes = serde_json::to_vec(&body).map_err(|_| Failure::Malformed("request"))?;
        let raw = self.post("/rules", bytes).await?;
        let answer: RulesAnswer =
            serde_json::from_slice(&raw).map_err(|_| Failure::Malformed("not the /rules JSON"))?;
        if !answer.rules.is_array() {
            return Err(Failure::Malformed("rules is not a list"));
        }
        let rules = super::jwt::claim_rules(&answer.rules, &principal.username, RULE_IDS)
            .map_err(|_| Failure::Malformed("rules do not fit the rule schema"))?;
        let rules = Arc::new(rules);
        let until = Instant::now() + self.ttl(answer.ttl_seconds);
        let mut cache = self.rules.lock();
        let changed = match cache.get(&principal.username) {
            Some(old) => match (&old.version, &answer.version) {
                (Some(a), Some(b)) => a != b,
                _ => old.rules != rules,
            },
            None => true,
        };
        cache.insert(
            principal.username.clone(),
            CachedRules {
                until,
                principal: Arc::clone(principal),
                rules: Arc::clone(&rules),
                version: answer.version,
            },
        );
        Ok((rules, changed))
    }

    /// `POST {url}/authorize`: Ok(allow?, how long the answer holds).
    /// Anything but an explicit allow or deny is a failure (and so, for
    /// the caller, a deny).
    pub(super) async fn authorize(
        &self,
        body: &AuthorizeBody<'_>,
    ) -> Result<(bool, Duration), Failure> {
        let bytes = serde_json::to_vec(body).map_err(|_| Failure::Malformed("request"))?;
        self.counts
            .decision_requests
            .fetch_add(1, Ordering::Relaxed);
        let raw = self.post("/authorize", bytes).await?;
        let answer: AuthorizeAnswer = serde_json::from_slice(&raw)
            .map_err(|_| Failure::Malformed("not the /authorize JSON"))?;
        let allow = matches!(answer.result, Decision::Allow);
        Ok((allow, self.ttl(answer.ttl_seconds)))
    }

    /// The grant a session holds for a login the service accepted.
    pub fn grant(principal: &HttpPrincipal, rules: &[Rule]) -> TokenGrant {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        TokenGrant {
            username: principal.username.clone(),
            roles: principal.roles.clone(),
            rules: rules.to_vec(),
            expires_at: now + NO_EXPIRY_SECS,
            via_method: false,
            require_store_user: false,
            http: Some(Arc::new(HttpGrant {
                attributes: principal.attributes.clone(),
                rules_start: 0,
                authorize_each: principal.authorize_each,
                roles: principal.roles.clone(),
            })),
        }
    }

    /// Forget the cached answers for `username` (all users when None) and
    /// have the refresher ask again for the sessions concerned at once.
    /// Returns how many sessions hold rules from the service for them.
    pub fn invalidate(&self, broker: &Broker, username: Option<&str>) -> usize {
        match username {
            Some(name) => {
                self.rules.lock().remove(name);
                self.logins
                    .lock()
                    .retain(|_, c| c.principal.username != name);
                self.decisions.forget(Some(name));
            }
            None => {
                self.rules.lock().clear();
                self.logins.lock().clear();
                self.decisions.forget(None);
            }
        }
        self.wake.notify_one();
        http_sessions(broker)
            .into_iter()
            .filter(|(name, _)| username.is_none_or(|u| u == name))
            .map(|(_, sessions)| sessions.len())
            .sum()
    }

    /// Fetch again the rules of users with sessions whose TTL ran out (or
    /// that were invalidated), and recompile those sessions when the rules
    /// changed. A failure leaves them as they are: the next tick retries,
    /// as the breaker allows.
    async fn refresh_due(&self, broker: &Arc<Broker>) {
        let now = Instant::now();
        let users = http_sessions(broker);
        let due: Vec<(Arc<HttpPrincipal>, Vec<Arc<Session>>)> = {
            let cache = self.rules.lock();
            users
                .into_iter()
                .filter_map(|(name, sessions)| match cache.get(&name) {
                    Some(c) if c.until > now => None,
                    Some(c) => Some((Arc::clone(&c.principal), sessions)),
                    None => principal_of(&sessions[0]).map(|p| (Arc::new(p), sessions)),
                })
                .collect()
        };
        for (principal, sessions) in due {
            let rules = match self.fetch_rules(&principal).await {
                Ok((rules, _)) => rules,
                Err(failure) => {
                    tracing::debug!(username = %principal.username, error = %failure, "cannot refresh rules from the auth service; sessions keep theirs");
                    continue;
                }
            };
            for session in sessions {
                let changed = {
                    let mut st = session.state.lock();
                    match st.token.clone() {
                        Some(t) if t.http.is_some() && t.http_rules() != rules.as_slice() => {
                            st.token = Some(Arc::new(t.with_http_rules(&rules)));
                            true
                        }
                        _ => false,
                    }
                };
                if changed {
                    tracing::info!(client_id = %session.client_id, username = %principal.username, "rules from the auth service changed; recompiling");
                    crate::policy_registry::refresh_session(broker, &session).await;
                }
            }
        }
        // Nobody to keep them for.
        let live: std::collections::HashSet<String> = http_sessions(broker).into_keys().collect();
        self.rules
            .lock()
            .retain(|name, c| c.until > now || live.contains(name));
        self.logins.lock().retain(|_, c| c.until > now);
    }
}

/// The sessions holding rules from the service, by username.
fn http_sessions(broker: &Broker) -> HashMap<String, Vec<Arc<Session>>> {
    let sessions: Vec<Arc<Session>> = broker.sessions.lock().values().cloned().collect();
    let mut by_user: HashMap<String, Vec<Arc<Session>>> = HashMap::new();
    for session in sessions {
        let name = {
            let st = session.state.lock();
            match &st.token {
                Some(t) if t.http.is_some() && !st.ended => t.username.clone(),
                _ => continue,
            }
        };
        by_user.entry(name).or_default().push(session);
    }
    by_user
}

/// The principal a session's grant was made for.
fn principal_of(session: &Session) -> Option<HttpPrincipal> {
    let st = session.state.lock();
    let t = st.token.as_ref()?;
    let h = t.http.as_ref()?;
    Some(HttpPrincipal {
        username: t.username.clone(),
        roles: h.roles.clone(),
        attributes: h.attributes.clone(),
        authorize_each: h.authorize_each,
    })
}

/// Read an `/authenticate` answer: Some for allow, None for deny.
fn parse_authenticate(
    raw: &[u8],
    asked_for: Option<&str>,
) -> Result<Option<(HttpPrincipal, Option<u64>)>, Failure> {
    let answer: AuthenticateAnswer = serde_json::from_slice(raw)
        .map_err(|_| Failure::Malformed("not the /authenticate JSON"))?;
    match answer.result {
        Decision::Deny => Ok(None),
        Decision::Allow => {
            let username = answer
                .username
                .or_else(|| asked_for.map(str::to_owned))
                .ok_or(Failure::Malformed("allow without a username"))?;
            warden_auth::validate_name("username", &username)
                .map_err(|_| Failure::Malformed("username is not a valid name"))?;
            let mut roles = answer.roles.unwrap_or_default();
            for role in &roles {
                warden_auth::validate_name("roles", role)
                    .map_err(|_| Failure::Malformed("a role is not a valid name"))?;
            }
            roles.sort();
            roles.dedup();
            Ok(Some((
                HttpPrincipal {
                    username,
                    roles,
                    attributes: answer.attributes.unwrap_or_default(),
                    authorize_each: answer.authorize_each.unwrap_or(false),
                },
                answer.ttl_seconds,
            )))
        }
    }
}

/// reqwest's error and its causes on one line (the top one alone says
/// little: "error sending request").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Follow TTLs and invalidations until shutdown; see the module docs.
pub async fn refresher(broker: Arc<Broker>, http: Arc<HttpAuth>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = http.wake.notified() => {}
            _ = shutdown.recv() => return,
        }
        http.refresh_due(&broker).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_allow_lets_in() {
        let allow = br#"{"result":"allow","roles":["b","a","a"],"ttl_seconds":5}"#;
        let (p, ttl) = parse_authenticate(allow, Some("dev")).unwrap().unwrap();
        assert_eq!(p.username, "dev");
        assert_eq!(p.roles, ["a", "b"]);
        assert_eq!(ttl, Some(5));
        assert!(parse_authenticate(br#"{"result":"deny"}"#, Some("dev"))
            .unwrap()
            .is_none());
        for bad in [
            &br#"{"result":"yes"}"#[..],
            br#"{"result":true}"#,
            br#"{}"#,
            br#"allow"#,
            br#"{"result":"allow","roles":"admin"}"#,
            br#"{"result":"allow","username":""}"#,
        ] {
            assert!(
                parse_authenticate(bad, Some("dev")).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            parse_authenticate(br#"{"result":"allow"}"#, None).is_err(),
            "an allow must name someone"
        );
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_closes_on_success() {
        let b = Breaker {
            state: Mutex::default(),
            threshold: 2,
            base: Duration::from_secs(60),
            max: Duration::from_secs(60),
            probe_wait: Duration::from_secs(60),
        };
        let f = Failure::Status(500);
        assert!(b.admit());
        b.failed("u", &f);
        assert!(b.admit(), "below the threshold");
        b.failed("u", &f);
        assert!(!b.admit(), "open");
        assert!(b.is_open());
        b.state.lock().open_until = Some(Instant::now());
        assert!(b.admit(), "one probe after the wait");
        assert!(!b.admit(), "only one");
        // A probe that never reported (its login was dropped) does not
        // keep the breaker shut for good.
        b.state.lock().probing = Instant::now().checked_sub(Duration::from_secs(61));
        assert!(b.admit(), "a new probe once the old one is overdue");
        b.succeeded("u");
        assert!(b.admit() && !b.is_open());
    }

    #[test]
    fn a_grant_swaps_only_the_services_rules() {
        let p = HttpPrincipal {
            username: "u".into(),
            roles: vec![],
            attributes: Map::new(),
            authorize_each: false,
        };
        let v = serde_json::json!([{"effect":"allow","actions":["publish"],"pattern":"a"}]);
        let first = super::super::jwt::claim_rules(&v, "u", RULE_IDS).unwrap();
        let mut g = HttpAuth::grant(&p, &first);
        // A token's rule ahead of the service's.
        let token_rule = super::super::jwt::claim_rules(&v, "u", u64::MAX).unwrap();
        g.rules.insert(0, token_rule[0].clone());
        g.http = Some(Arc::new(HttpGrant {
            attributes: Map::new(),
            rules_start: 1,
            authorize_each: false,
            roles: Vec::new(),
        }));
        assert_eq!(g.http_rules(), first.as_slice());
        let next = g.with_http_rules(&[]);
        assert_eq!(next.rules, token_rule);
        assert!(next.http_rules().is_empty());
    }
}
