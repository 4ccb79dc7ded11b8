//! From the file as written (`raw.rs`) to the typed `Config`: defaults, path
//! resolution, and the checks that involve more than one field. Pure apart
//! from checking that configured certificate files exist.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::locate::{locate, Seg};
use super::raw::{RawCertificate, RawConfig, RawListener};
use super::types::{ClientAuthMode, ListenerKind};
use super::{
    AuthConfig, ClientAuth, Config, ConfigError, Limits, ListenerConfig, LogConfig,
    PersistenceConfig, PolicyConfig, SessionsConfig, SniCertificate, TlsSettings, Transport,
    WsSettings, DEFAULT_ALPN, DEFAULT_CERT_POLL_INTERVAL, DEFAULT_DATA_DIR, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_WS_PATH,
};

pub const DEFAULT_MAX_CONNECTIONS: NonZeroUsize = match NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_PORT: u16 = 8883;

/// What every error needs: the text (to find lines) and the file's name.
pub(super) struct Ctx<'a> {
    text: &'a str,
    name: &'a Path,
    base: &'a Path,
}

impl Ctx<'_> {
    /// An error about `field`, placed at the deepest part of `at` found.
    pub(super) fn err(
        &self,
        at: &[Seg<'_>],
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let pos = locate(self.text, at);
        ConfigError::Invalid {
            path: self.name.to_path_buf(),
            field: field.to_owned(),
            message: message.into(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
        }
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        clean(&self.base.join(p))
    }

    /// Resolves a configured file and checks it exists now, so a typo is an
    /// error at start rather than at the first handshake or request.
    pub(super) fn existing_file(
        &self,
        at: &[Seg<'_>],
        field: &str,
        p: &Path,
    ) -> Result<PathBuf, ConfigError> {
        let resolved = self.resolve(p);
        if resolved.is_file() {
            Ok(resolved)
        } else {
            Err(self.err(at, field, format!("file not found: {}", resolved.display())))
        }
    }
}

/// `p` made absolute against the current directory, without touching the
/// file system.
pub fn absolute(p: &Path) -> io::Result<PathBuf> {
    if p.is_absolute() {
        Ok(clean(p))
    } else {
        Ok(clean(&std::env::current_dir()?.join(p)))
    }
}

/// Drops `.` components so logged paths read naturally; `..` is kept
/// because symlinks make removing it unsound.
pub(super) fn clean(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn yaml_error(name: &Path, e: &serde_yaml::Error) -> ConfigError {
    let mut message = e.to_string();
    let (line, column) = match e.location() {
        Some(l) => (Some(l.line()), Some(l.column())),
        None => (None, None),
    };
    if let (Some(l), Some(c)) = (line, column) {
        let suffix = format!(" at line {l} column {c}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    // serde_yaml prefixes the path of the value ("listeners[0].bind: ...").
    let mut field = String::new();
    if let Some((head, tail)) = message.split_once(": ") {
        if !head.is_empty() && !head.contains(char::is_whitespace) {
            field = head.to_owned();
            message = tail.to_owned();
        }
    }
    ConfigError::Invalid {
        path: name.to_path_buf(),
        field,
        message,
        line,
        column,
    }
}

fn only_comments(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

pub fn from_text(
    text: &str,
    base: &Path,
    name: &Path,
    source: Option<PathBuf>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = if only_comments(text) {
        RawConfig::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| yaml_error(name, &e))?
    };
    let ctx = Ctx { text, name, base };
    build(raw, &ctx, source)
}

fn build(raw: RawConfig, ctx: &Ctx<'_>, source: Option<PathBuf>) -> Result<Config, ConfigError> {
    let data_dir = ctx.resolve(
        raw.data_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_DATA_DIR)),
    );
    let mut listeners = match raw.listeners {
        None => vec![default_listener(&data_dir)],
        Some(list) if list.is_empty() => {
            return Err(ctx.err(
                &[Seg::Key("listeners")],
                "listeners",
                "at least one listener is required",
            ))
        }
        Some(list) => build_listeners(list, ctx, &data_dir)?,
    };
    let store = super::store::build(raw.store, &data_dir, ctx)?;
    let raw_auth = raw.auth.unwrap_or_default();
    let err_at = |at: &[Seg<'_>], field: &str, m: String| ctx.err(at, field, m);
    let mut auth = AuthConfig {
        bans: super::defence::build_bans(raw_auth.bans, &err_at)?,
        verify: super::defence::build_verify(raw_auth.verify, &err_at)?,
        allow_anonymous: raw_auth.allow_anonymous.unwrap_or(false),
        jwt: raw_auth
            .jwt
            .map(|j| super::jwt::build(j, ctx))
            .transpose()?,
        http: raw_auth
            .http
            .map(|h| super::http::build(h, ctx))
            .transpose()?,
        webhook: raw_auth
            .webhook
            .map(|w| super::http::build_webhook(w, ctx))
            .transpose()?,
        chain: Vec::new(),
        compose: raw_auth.compose.unwrap_or_default(),
    };
    auth.chain = super::http::build_chain(raw_auth.chain, &auth, ctx)?;
    let policy = build_policy(raw.policy, ctx)?;
    let limits = build_limits(raw.limits, ctx)?;
    for ws in listeners.iter_mut().filter_map(|l| l.websocket.as_mut()) {
        ws.max_message_size = ws_message_bound(limits.max_packet_size);
    }
    let raw_log = raw.log.unwrap_or_default();
    let log = LogConfig {
        level: raw_log
            .level
            .map_or_else(|| LogConfig::default().level, |d| d.0),
        format: raw_log.format.unwrap_or_default(),
    };
    let sessions = SessionsConfig {
        takeover: raw.sessions.and_then(|s| s.takeover).unwrap_or_default(),
    };
    let persistence = build_persistence(raw.persistence, ctx)?;
    let shutdown_grace = raw.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |h| h.0);
    let metrics = super::observe::build_metrics(raw.metrics, &|p| ctx.resolve(p));
    let audit =
        super::observe::build_audit(raw.audit, &data_dir, &|at, field, m| ctx.err(at, field, m))?;
    let sys_interval = super::observe::sys_interval(raw.sys_interval);
    let cluster = super::cluster::build(raw.cluster, &store, ctx)?;
    Ok(Config {
        source,
        data_dir,
        listeners,
        store,
        auth,
        policy,
        limits,
        log,
        sessions,
        persistence,
        shutdown_grace,
        metrics,
        audit,
        sys_interval,
        cluster,
    })
}

fn build_policy(
    raw: Option<super::raw::RawPolicy>,
    ctx: &Ctx<'_>,
) -> Result<PolicyConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let d = PolicyConfig::default();
    let poll_interval = raw.poll_interval.map_or(d.poll_interval, |h| h.0);
    if poll_interval.is_zero() {
        return Err(ctx.err(
            &[Seg::Key("policy"), Seg::Key("poll_interval")],
            "policy.poll_interval",
            "must be greater than zero",
        ));
    }
    Ok(PolicyConfig {
        on_deny: raw.on_deny.unwrap_or(d.on_deny),
        poll_interval,
        superuser_bypass: raw.superuser_bypass.unwrap_or(d.superuser_bypass),
    })
}

fn build_persistence(
    raw: Option<super::raw::RawPersistence>,
    ctx: &Ctx<'_>,
) -> Result<PersistenceConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let d = PersistenceConfig::default();
    let fsync_interval = raw.fsync_interval.map_or(d.fsync_interval, |h| h.0);
    if fsync_interval.is_zero() {
        return Err(ctx.err(
            &[Seg::Key("persistence"), Seg::Key("fsync_interval")],
            "persistence.fsync_interval",
            "must be greater than zero (use mode: sync to fsync before every ack)",
        ));
    }
    Ok(PersistenceConfig {
        mode: raw.mode.unwrap_or(d.mode),
        fsync_interval,
    })
}

fn build_limits(raw: Option<super::raw::RawLimits>, ctx: &Ctx<'_>) -> Result<Limits, ConfigError> {
    let raw = raw.unwrap_or_default();
    let d = Limits::default();
    let max_session_expiry = raw.max_session_expiry.map_or(d.max_session_expiry, |h| h.0);
    if max_session_expiry.as_secs() > u64::from(u32::MAX) {
        return Err(ctx.err(
            &[Seg::Key("limits"), Seg::Key("max_session_expiry")],
            "limits.max_session_expiry",
            format!("at most {} seconds (MQTT's limit)", u32::MAX),
        ));
    }
    let write_stall = raw.write_stall.map_or(d.write_stall, |h| h.0);
    if write_stall.is_zero() {
        return Err(ctx.err(
            &[Seg::Key("limits"), Seg::Key("write_stall")],
            "limits.write_stall",
            "must be greater than zero",
        ));
    }
    Ok(Limits {
        guard: super::defence::build_guard(&raw),
        write_stall,
        max_packet_size: raw.max_packet_size.map_or(d.max_packet_size, |p| p.0),
        receive_maximum: raw.receive_maximum.unwrap_or(d.receive_maximum),
        max_queued_messages: raw.max_queued_messages.unwrap_or(d.max_queued_messages),
        max_session_expiry,
        max_keepalive: raw.max_keepalive.and_then(std::num::NonZeroU16::new),
        topic_alias_maximum: raw.topic_alias_maximum.unwrap_or(d.topic_alias_maximum),
        outbound_topic_aliases: raw
            .outbound_topic_aliases
            .unwrap_or(d.outbound_topic_aliases),
        retain_available: raw.retain_available.unwrap_or(d.retain_available),
    })
}

fn dev_tls(data_dir: &Path) -> TlsSettings {
    let certs = data_dir.join("certs");
    TlsSettings {
        cert: certs.join("server.pem"),
        key: certs.join("server.key"),
        client_auth: ClientAuth::None,
        username_from: None,
        crls: Vec::new(),
        ocsp: None,
        dev_certs: true,
        certificates: Vec::new(),
        alpn: vec![DEFAULT_ALPN.to_owned()],
        cert_poll_interval: DEFAULT_CERT_POLL_INTERVAL,
    }
}

/// The largest WebSocket message a listener takes: one packet of the
/// largest size allowed plus the frame header.
fn ws_message_bound(max_packet_size: u32) -> usize {
    usize::try_from(max_packet_size)
        .unwrap_or(usize::MAX)
        .saturating_add(16)
}

fn default_listener(data_dir: &Path) -> ListenerConfig {
    ListenerConfig::new(
        "tls",
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
        Transport::Tls(dev_tls(data_dir)),
    )
}

fn build_listeners(
    list: Vec<RawListener>,
    ctx: &Ctx<'_>,
    data_dir: &Path,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    let mut names: HashSet<Arc<str>> = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, raw) in list.into_iter().enumerate() {
        let kind = raw.kind.unwrap_or(ListenerKind::Tls);
        let name: Arc<str> = match &raw.name {
            Some(n) => {
                let field = format!("listeners[{i}].name");
                let at = [Seg::Key("listeners"), Seg::Index(i), Seg::Key("name")];
                if n.trim().is_empty() {
                    return Err(ctx.err(&at, &field, "must not be empty"));
                }
                if names.contains(n.as_str()) {
                    return Err(ctx.err(&at, &field, format!("duplicate listener name \"{n}\"")));
                }
                Arc::from(n.as_str())
            }
            None => default_name(kind, raw.bind.0.port(), i, &names),
        };
        names.insert(name.clone());
        out.push(build_listener(i, name, kind, raw, ctx, data_dir)?);
    }
    Ok(out)
}

/// "<kind>-<port>", made unique with the listener's index when two
/// unnamed listeners share it (typically several on port 0 in tests).
fn default_name(kind: ListenerKind, port: u16, i: usize, taken: &HashSet<Arc<str>>) -> Arc<str> {
    let base = format!("{}-{port}", kind.as_str());
    if taken.contains(base.as_str()) {
        Arc::from(format!("{base}-{i}"))
    } else {
        Arc::from(base)
    }
}

fn build_listener(
    i: usize,
    name: Arc<str>,
    kind: ListenerKind,
    raw: RawListener,
    ctx: &Ctx<'_>,
    data_dir: &Path,
) -> Result<ListenerConfig, ConfigError> {
    let connect_timeout = raw.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |h| h.0);
    if connect_timeout.is_zero() {
        return Err(ctx.err(
            &[
                Seg::Key("listeners"),
                Seg::Index(i),
                Seg::Key("connect_timeout"),
            ],
            &format!("listeners[{i}].connect_timeout"),
            "must be greater than zero",
        ));
    }
    let transport = if kind.is_tls() {
        let mut tls = build_tls(i, &raw, ctx, data_dir)?;
        let client_auth = tls.client_auth.mode();
        tls.ocsp = super::ocsp::build(i, &raw, client_auth, connect_timeout, ctx)?;
        Transport::Tls(tls)
    } else {
        reject_tls_keys_on_tcp(i, kind, &raw, ctx)?;
        Transport::Tcp
    };
    let websocket = if kind.is_websocket() {
        Some(build_ws(i, &raw, ctx)?)
    } else {
        reject_ws_keys(i, kind, &raw, ctx)?;
        None
    };
    Ok(ListenerConfig {
        name,
        bind: raw.bind.0,
        transport,
        max_connections: raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        connect_timeout,
        websocket,
    })
}

fn reject_tls_keys_on_tcp(
    i: usize,
    kind: ListenerKind,
    raw: &RawListener,
    ctx: &Ctx<'_>,
) -> Result<(), ConfigError> {
    let present = [
        ("cert", raw.cert.is_some()),
        ("key", raw.key.is_some()),
        ("client_auth", raw.client_auth.is_some()),
        ("client_ca", raw.client_ca.is_some()),
        ("username_from", raw.username_from.is_some()),
        ("crl", raw.crl.is_some()),
        ("ocsp", raw.ocsp.is_some()),
        ("ocsp_responder", raw.ocsp_responder.is_some()),
        ("ocsp_timeout", raw.ocsp_timeout.is_some()),
        ("certificates", raw.certificates.is_some()),
        ("alpn", raw.alpn.is_some()),
        ("cert_poll_interval", raw.cert_poll_interval.is_some()),
    ];
    match present.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(ctx.err(
            &[Seg::Key("listeners"), Seg::Index(i), Seg::Key(key)],
            &format!("listeners[{i}].{key}"),
            format!(
                "only valid on a tls or wss listener (this one is kind: {})",
                kind.as_str()
            ),
        )),
        None => Ok(()),
    }
}

fn reject_ws_keys(
    i: usize,
    kind: ListenerKind,
    raw: &RawListener,
    ctx: &Ctx<'_>,
) -> Result<(), ConfigError> {
    let present = [
        ("path", raw.path.is_some()),
        ("allowed_origins", raw.allowed_origins.is_some()),
    ];
    match present.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(ctx.err(
            &[Seg::Key("listeners"), Seg::Index(i), Seg::Key(key)],
            &format!("listeners[{i}].{key}"),
            format!(
                "only valid on a ws or wss listener (this one is kind: {})",
                kind.as_str()
            ),
        )),
        None => Ok(()),
    }
}

fn build_ws(i: usize, raw: &RawListener, ctx: &Ctx<'_>) -> Result<WsSettings, ConfigError> {
    let item = |key| [Seg::Key("listeners"), Seg::Index(i), Seg::Key(key)];
    let path = raw
        .path
        .clone()
        .unwrap_or_else(|| DEFAULT_WS_PATH.to_owned());
    let bad_path = !path.starts_with('/')
        || path.contains(['?', '#'])
        || path.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad_path {
        return Err(ctx.err(
            &item("path"),
            &format!("listeners[{i}].path"),
            format!("invalid path \"{path}\" (expected an absolute URL path such as \"/mqtt\")"),
        ));
    }
    let mut allowed_origins = Vec::new();
    for origin in raw.allowed_origins.iter().flatten() {
        let o = origin.trim().trim_end_matches('/');
        if !(o.starts_with("http://") || o.starts_with("https://"))
            || o.contains(char::is_whitespace)
        {
            return Err(ctx.err(
                &item("allowed_origins"),
                &format!("listeners[{i}].allowed_origins"),
                format!("invalid origin \"{origin}\" (expected scheme://host[:port], e.g. \"https://app.example.com\")"),
            ));
        }
        allowed_origins.push(o.to_ascii_lowercase());
    }
    Ok(WsSettings {
        path,
        allowed_origins,
        // Set from `limits` once they are read.
        max_message_size: ws_message_bound(super::Limits::default().max_packet_size),
    })
}

/// A listener's file, which must exist.
fn existing_file(i: usize, key: &str, p: &Path, ctx: &Ctx<'_>) -> Result<PathBuf, ConfigError> {
    ctx.existing_file(
        &[Seg::Key("listeners"), Seg::Index(i), Seg::Key(key)],
        &format!("listeners[{i}].{key}"),
        p,
    )
}

fn build_tls(
    i: usize,
    raw: &RawListener,
    ctx: &Ctx<'_>,
    data_dir: &Path,
) -> Result<TlsSettings, ConfigError> {
    let item = |key| [Seg::Key("listeners"), Seg::Index(i), Seg::Key(key)];
    let mut tls = match (&raw.cert, &raw.key) {
        (None, None) => dev_tls(data_dir),
        (Some(cert), Some(key)) => TlsSettings {
            cert: existing_file(i, "cert", cert, ctx)?,
            key: existing_file(i, "key", key, ctx)?,
            dev_certs: false,
            ..dev_tls(data_dir)
        },
        (Some(_), None) | (None, Some(_)) => {
            let (missing, present) = if raw.cert.is_some() {
                ("key", "cert")
            } else {
                ("cert", "key")
            };
            return Err(ctx.err(
                &item(present),
                &format!("listeners[{i}].{missing}"),
                format!("{missing} is required when {present} is given"),
            ));
        }
    };
    let mode = raw.client_auth.unwrap_or(ClientAuthMode::None);
    tls.client_auth = match (mode, &raw.client_ca) {
        (ClientAuthMode::None, None) => ClientAuth::None,
        (ClientAuthMode::None, Some(_)) => {
            return Err(ctx.err(
                &item("client_ca"),
                &format!("listeners[{i}].client_ca"),
                "set, but client_auth is none: set client_auth to optional or required",
            ))
        }
        (_, None) => {
            return Err(ctx.err(
                &item("client_auth"),
                &format!("listeners[{i}].client_ca"),
                "required when client_auth is optional or required",
            ))
        }
        (ClientAuthMode::Optional, Some(ca)) => ClientAuth::Optional {
            ca: existing_file(i, "client_ca", ca, ctx)?,
        },
        (ClientAuthMode::Required, Some(ca)) => ClientAuth::Required {
            ca: existing_file(i, "client_ca", ca, ctx)?,
        },
    };
    if raw.username_from.is_some() && mode == ClientAuthMode::None {
        return Err(ctx.err(
            &item("username_from"),
            &format!("listeners[{i}].username_from"),
            "needs client_auth optional or required (there is no certificate to map)",
        ));
    }
    tls.username_from = raw.username_from;
    if let Some(crl) = &raw.crl {
        if mode == ClientAuthMode::None {
            return Err(ctx.err(
                &item("crl"),
                &format!("listeners[{i}].crl"),
                "needs client_auth optional or required (there are no client certificates to check)",
            ));
        }
        let paths = match crl {
            super::raw::OneOrMany::One(p) => std::slice::from_ref(p),
            super::raw::OneOrMany::Many(list) => list.as_slice(),
        };
        for p in paths {
            tls.crls.push(existing_file(i, "crl", p, ctx)?);
        }
    }
    if let Some(list) = &raw.certificates {
        tls.certificates = build_certificates(i, list, ctx)?;
        // Without cert and key, the first entry serves the other names.
        if let (None, None, Some(first)) = (&raw.cert, &raw.key, tls.certificates.first()) {
            tls.cert.clone_from(&first.cert);
            tls.key.clone_from(&first.key);
            tls.dev_certs = false;
        }
    }
    if let Some(alpn) = &raw.alpn {
        if let Some(bad) = alpn.iter().find(|p| p.is_empty() || p.len() > 255) {
            return Err(ctx.err(
                &item("alpn"),
                &format!("listeners[{i}].alpn"),
                format!("invalid protocol name \"{bad}\" (1 to 255 bytes)"),
            ));
        }
        tls.alpn.clone_from(alpn);
    }
    if let Some(every) = raw.cert_poll_interval {
        if every.0.is_zero() {
            return Err(ctx.err(
                &item("cert_poll_interval"),
                &format!("listeners[{i}].cert_poll_interval"),
                "must be greater than zero",
            ));
        }
        tls.cert_poll_interval = every.0;
    }
    Ok(tls)
}

fn build_certificates(
    i: usize,
    list: &[RawCertificate],
    ctx: &Ctx<'_>,
) -> Result<Vec<SniCertificate>, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for (j, c) in list.iter().enumerate() {
        let field = |key: &str| format!("listeners[{i}].certificates[{j}].{key}");
        let at = |key: &'static str| {
            [
                Seg::Key("listeners"),
                Seg::Index(i),
                Seg::Key("certificates"),
                Seg::Index(j),
                Seg::Key(key),
            ]
        };
        let file = |key: &'static str, p: &Path| ctx.existing_file(&at(key), &field(key), p);
        let mut hostnames = Vec::new();
        for h in c.hostnames.iter().flatten() {
            let name = h.trim().trim_end_matches('.').to_ascii_lowercase();
            let label_ok =
                |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            let (wild, rest) = match name.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, name.as_str()),
            };
            if !rest.split('.').all(label_ok) || (wild && !rest.contains('.')) {
                return Err(ctx.err(
                    &at("hostnames"),
                    &field("hostnames"),
                    format!("invalid host name \"{h}\" (expected e.g. \"mqtt.example.com\" or \"*.example.com\")"),
                ));
            }
            hostnames.push(name);
        }
        out.push(SniCertificate {
            cert: file("cert", &c.cert)?,
            key: file("key", &c.key)?,
            hostnames,
        });
    }
    Ok(out)
}

pub fn embedded_default() -> Config {
    // Without a current directory the relative path is the best answer; the
    // data dir is created later, where a real error can be reported.
    let data_dir =
        absolute(Path::new(DEFAULT_DATA_DIR)).unwrap_or_else(|_| PathBuf::from(DEFAULT_DATA_DIR));
    Config {
        source: None,
        listeners: vec![default_listener(&data_dir)],
        store: warden_auth::StoreConfig::sqlite(data_dir.join("warden.db")),
        data_dir,
        auth: AuthConfig::default(),
        policy: PolicyConfig::default(),
        limits: Limits::default(),
        log: LogConfig::default(),
        sessions: SessionsConfig::default(),
        persistence: PersistenceConfig::default(),
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        metrics: super::MetricsConfig::default(),
        audit: super::AuditConfig::default(),
        sys_interval: super::observe::DEFAULT_SYS_INTERVAL,
        cluster: None,
    }
}
