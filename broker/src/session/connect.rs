//! CONNECT handling: read the first packet, authenticate, compile the
//! client's policy, run the `connect` and will checks, attach (or take over)
//! the session, and answer CONNACK. Everything before CONNACK success is
//! here; the packet loop after it is `handler.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use warden_auth::PrincipalKey;
use warden_codec::{
    v3_return_code, ConnAck, Connect, LastWill, Packet, Properties, ProtocolVersion, ReasonCode,
};
use warden_policy::{CompiledPolicy, PolicyVersion, Principal, QoS};

use crate::auth::{authenticate, AuthError, Credentials, Users};
use crate::authorize::{self, Who};
use crate::broker::Broker;
use crate::config::{Config, ListenerConfig};
use crate::listener::PeerInfo;
use crate::session::connection::{Connection, ConnectionError};
use crate::session::lifecycle::{self, AttachRequest};
use crate::session::state::{Attachment, ConnId, Session};
use crate::wake::Wake;

/// A will message held by the connection until it ends.
#[derive(Clone, Debug)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
    /// v5 Will Delay Interval.
    pub delay: Duration,
}

/// A connection that passed CONNECT.
#[derive(Debug)]
pub struct Accepted {
    pub session: Arc<Session>,
    pub conn_id: ConnId,
    pub wake: Arc<Wake>,
    /// 1.5 × the negotiated keep alive; None when keep alive is off.
    pub keepalive_timeout: Option<Duration>,
    pub will: Option<Will>,
    pub session_present: bool,
    /// The Topic Alias Maximum we announced (inbound aliases).
    pub topic_alias_max: u16,
    /// How many aliases we may assign to the topics we send (outbound):
    /// the client's Topic Alias Maximum, capped by our configuration.
    pub topic_alias_out: u16,
    pub version: ProtocolVersion,
    /// A JWT login: the session ends when the token expires.
    pub token: Option<Arc<crate::auth::TokenGrant>>,
}

/// Read CONNECT and admit the client, or answer with a refusal and close.
/// None means the connection is finished.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    broker: &Arc<Broker>,
    conn: &mut Connection<S>,
    peer: &PeerInfo,
    listener: &ListenerConfig,
) -> Option<Accepted> {
    let connect = match conn.read_packet().await {
        Ok(Packet::Connect(connect)) => connect,
        Ok(_) => {
            conn.close().await;
            return None;
        }
        Err(ConnectionError::Codec(err)) if err.is_unsupported_protocol() => {
            if let Some((v5, code)) = err.unsupported_protocol_connack() {
                conn.version = Some(if v5 {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V311
                });
                conn.send_and_close(&connack(false, code, Properties::default()))
                    .await;
            }
            return None;
        }
        Err(err) => {
            tracing::debug!(peer = %peer.addr, error = %err, "no valid CONNECT");
            conn.close().await;
            return None;
        }
    };
    conn.version = Some(connect.protocol);
    match admit(broker, connect, peer, listener).await {
        Ok((accepted, props)) => {
            // Until the packet loop owns the attachment, a failed CONNACK
            // (or the connect timeout dropping this future) must let go of
            // the session, or it would stay attached to nobody.
            let mut unclaimed = Unclaimed {
                broker: Arc::clone(broker),
                session: Arc::clone(&accepted.session),
                conn_id: accepted.conn_id,
                armed: true,
            };
            // A stored session's record (expiry, will, owner) is durable
            // before the client is told it is connected, as SUBACK and
            // PUBACK wait for theirs.
            let ticket = crate::session::durable::write_record(
                broker,
                &accepted.session,
                accepted.will.as_ref(),
            );
            broker.persist.durable_at(ticket).await;
            let ack = connack(accepted.session_present, 0, props);
            if conn.queue(&ack).is_err() || conn.flush().await.is_err() {
                return None;
            }
            unclaimed.armed = false;
            Some(accepted)
        }
        Err(code) => {
            conn.send_and_close(&connack(false, code, Properties::default()))
                .await;
            None
        }
    }
}

/// Detaches the session when admission ends between attach and CONNACK.
struct Unclaimed {
    broker: Arc<Broker>,
    session: Arc<Session>,
    conn_id: ConnId,
    armed: bool,
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some((expiry, generation)) = lifecycle::detach(&self.session, self.conn_id) {
            crate::session::will::schedule_expiry(&self.broker, &self.session, expiry, generation);
        }
    }
}

fn connack(session_present: bool, code: u8, properties: Properties) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        code,
        properties,
    })
}

fn identifier_rejected(version: ProtocolVersion) -> u8 {
    if version.is_v5() {
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID.value()
    } else {
        v3_return_code::IDENTIFIER_REJECTED
    }
}

/// The CONNACK refusal code for an authentication failure.
fn auth_refusal(err: &AuthError, version: ProtocolVersion) -> u8 {
    match err {
        AuthError::BadCredentials => authorize::bad_credentials(version),
        AuthError::NotAuthorized => authorize::connack_not_authorized(version),
        AuthError::Unavailable => authorize::server_unavailable(version),
        AuthError::Busy => server_busy(version),
    }
}

/// CONNACK for a login refused because too many are being verified.
fn server_busy(version: ProtocolVersion) -> u8 {
    if version.is_v5() {
        ReasonCode::SERVER_BUSY.value()
    } else {
        v3_return_code::SERVER_UNAVAILABLE
    }
}

/// CONNACK for a banned address or username.
fn banned(version: ProtocolVersion) -> u8 {
    if version.is_v5() {
        ReasonCode::BANNED.value()
    } else {
        v3_return_code::NOT_AUTHORIZED
    }
}

/// The metrics' and audit log's word for an authentication failure.
fn auth_reason(err: &AuthError) -> &'static str {
    match err {
        AuthError::BadCredentials => "bad_credentials",
        AuthError::NotAuthorized => "not_authorized",
        AuthError::Unavailable => "store_unavailable",
        AuthError::Busy => "server_busy",
    }
}

/// Everything from the CONNECT packet to an attached session; Err is the
/// CONNACK refusal code.
async fn admit(
    broker: &Arc<Broker>,
    connect: Connect,
    peer: &PeerInfo,
    listener: &ListenerConfig,
) -> Result<(Accepted, Properties), u8> {
    let version = connect.protocol;
    let method = connect.properties.authentication_method.as_deref();
    let method_token = match method {
        None => None,
        // The token comes whole in CONNECT: no challenge round trip.
        Some(crate::auth::jwt::METHOD) if version.is_v5() && broker.jwt.load().is_some() => Some(
            connect
                .properties
                .authentication_data
                .as_deref()
                .unwrap_or_default(),
        ),
        // No other enhanced authentication is offered.
        Some(_) => {
            broker
                .stats
                .auth
                .inc(("failure", "bad_authentication_method"));
            return Err(ReasonCode::BAD_AUTHENTICATION_METHOD.value());
        }
    };
    let (client_id, assigned) = client_id(&connect).inspect_err(|_| {
        tracing::info!(
            username = connect.username.as_deref(),
            listener = %peer.listener,
            protocol = crate::observe::protocol_label(version),
            peer = %peer.addr,
            reason = "empty client id not allowed",
            "login refused"
        );
        broker.stats.auth.inc(("failure", "client_id_rejected"));
    })?;
    let cert_username = listener
        .username_from()
        .and_then(|from| peer.mapped_username(from));
    let creds = Credentials {
        cert_username: cert_username.clone(),
        cert_fingerprint: peer.cert.as_ref().map(|c| c.fingerprint.as_str()),
        username: connect.username.as_deref(),
        password: connect.password.as_deref(),
        method_token,
        client_id: &client_id,
        peer: Some(peer.addr),
        listener: &peer.listener,
        cert: peer.cert.as_deref(),
    };
    let config = broker.config();
    let limits = &config.limits;
    // Who to name in a refusal: the certificate's user when it maps one
    // (an mTLS client often sends no username at all).
    let who_name = cert_username.clone().or_else(|| connect.username.clone());
    // No `username` field at all when there is none (never `username=""`):
    // an mTLS client is named by its certificate.
    let refused = |err: &dyn std::fmt::Display| match &peer.cert {
        Some(cert) => tracing::info!(
            client_id = client_id.as_str(),
            username = who_name.as_deref(),
            cert_subject = %cert.subject,
            cert_fingerprint = %cert.fingerprint,
            listener = %peer.listener,
            protocol = crate::observe::protocol_label(version),
            peer = %peer.addr,
            reason = %err,
            "login refused"
        ),
        None => tracing::info!(
            client_id = client_id.as_str(),
            username = who_name.as_deref(),
            listener = %peer.listener,
            protocol = crate::observe::protocol_label(version),
            peer = %peer.addr,
            reason = %err,
            "login refused"
        ),
    };
    // Banned: refused before any store or password work.
    let now = std::time::Instant::now();
    if let Some(kind) = broker
        .defence
        .bans
        .banned(peer.addr.ip(), who_name.as_deref(), now)
    {
        refused(&format_args!("banned ({})", kind.as_str()));
        broker.stats.auth.inc(("failure", "banned"));
        broker
            .audit
            .auth_failure(peer.addr, &client_id, who_name.as_deref(), "banned");
        return Err(banned(version));
    }
    // The store must have answered just now, whatever the caches hold.
    let policy_version = broker.logins.version(&*broker.store).await.map_err(|err| {
        refused(&err);
        broker.stats.auth.inc(("failure", "store_unavailable"));
        authorize::server_unavailable(version)
    })?;
    let users = Users {
        store: &*broker.store,
        cache: &broker.logins,
        version: policy_version,
    };
    if let Some(cert) = &peer.cert {
        if broker.revoked.is_revoked(&peer.listener, cert) {
            // Verified against lists older than the current ones.
            refused(&"certificate revoked");
            broker.stats.auth.inc(("failure", "certificate_revoked"));
            broker.audit.auth_failure(
                peer.addr,
                &client_id,
                who_name.as_deref(),
                "certificate_revoked",
            );
            return Err(authorize::connack_not_authorized(version));
        }
    }
    if let (Some(settings), Some(subject)) = (listener.ocsp(), &peer.ocsp) {
        let subject = subject.as_ref().as_ref().map_err(String::as_str);
        if let Err(refusal) = broker.ocsp.check(&peer.listener, settings, subject).await {
            refused(&refusal);
            broker.stats.auth.inc(("failure", refusal.reason()));
            broker
                .audit
                .auth_failure(peer.addr, &client_id, who_name.as_deref(), refusal.reason());
            // A responder outage may pass: the client is told to come
            // back, as in a store outage.
            return Err(if refusal.may_pass() {
                authorize::server_unavailable(version)
            } else {
                authorize::connack_not_authorized(version)
            });
        }
    }
    let jwt = broker.jwt.load_full();
    let passwords = crate::auth::Passwords {
        cache: &broker.credentials,
        verifier: &broker.verifier,
        config: &config.auth.verify,
    };
    let http = broker.http.load_full();
    let mut authed = authenticate(
        users,
        passwords,
        &config.auth,
        jwt.as_deref(),
        http.as_deref(),
        creds,
    )
    .await
    .map_err(|refusal| {
        refused(&refusal);
        let reason = auth_reason(&refusal.error);
        broker.stats.auth.inc(("failure", reason));
        broker
            .audit
            .auth_failure(peer.addr, &client_id, who_name.as_deref(), reason);
        if refusal.error == AuthError::BadCredentials {
            count_failure(broker, &config, peer, who_name.as_deref());
        }
        auth_refusal(&refusal.error, version)
    })?;
    if let Some(name) = &authed.username {
        broker.defence.bans.succeeded(name);
    }
    if let Some(job) = authed.rehash.take() {
        crate::auth::rehash::spawn(broker, job);
    }
    tracing::debug!(version = policy_version.0, roles = ?authed.roles, "login authenticated");
    // For the connect line: who, and how they proved it.
    // (A mapped certificate decides unless a token did: `authenticate`.)
    let how = match (&authed.token, &authed.username, &cert_username) {
        (Some(_), _, _) => "jwt",
        (None, Some(_), Some(_)) => "certificate",
        (None, Some(_), None) => "password",
        (None, None, _) => "anonymous",
    };
    let log_name = authed.username.clone();
    let principal = Principal {
        username: authed.username.map(Arc::from),
        client_id: Arc::from(client_id.as_str()),
        peer: Some(peer.addr),
        listener: Arc::clone(&peer.listener),
        cert: peer.cert.clone(),
        roles: authed.roles,
        superuser: authed.superuser,
    };
    let token = authed.token.map(Arc::new);
    let token_rules = token.as_ref().map_or(&[][..], |t| t.rules.as_slice());
    let policy = compile_with(broker, &principal, token_rules, policy_version)
        .await
        .map_err(|()| {
            refused(&"policy unavailable");
            broker.stats.auth.inc(("failure", "policy_unavailable"));
            authorize::server_unavailable(version)
        })?;
    // `authorize_each`: the service is also asked per topic.
    let policy = crate::auth::each::wrap(http.as_ref(), token.as_deref(), &principal, policy);
    let who = Who {
        client_id: &principal.client_id,
        username: principal.username.as_deref(),
        peer: principal.peer,
    };
    broker
        .authz
        .connect(who, &*policy, version)
        .inspect_err(|_| {
            refused(&"not authorized to connect (connect rule)");
            broker.stats.auth.inc(("failure", "connect_denied"));
        })?;
    let will = match &connect.will {
        Some(w) => Some(
            check_will(broker, who, &*policy, w, version).inspect_err(|_| {
                refused(&format_args!("will topic not allowed: {:?}", w.topic));
                broker.stats.auth.inc(("failure", "will_denied"));
            })?,
        ),
        None => None,
    };

    let max_expiry = limits.max_session_expiry_secs();
    let (expiry_secs, expiry_capped) = match (version.is_v5(), connect.clean_start) {
        (true, _) => {
            let asked = connect.properties.session_expiry_interval.unwrap_or(0);
            (asked.min(max_expiry), asked > max_expiry)
        }
        (false, true) => (0, false),
        (false, false) => (max_expiry, false),
    };
    let (keep_alive, server_keep_alive) =
        negotiate_keepalive(connect.keep_alive, limits.max_keepalive);

    // Held until the session is attached (the client id's lock on a
    // cluster node: see `cluster::gate`).
    let mut admitted = None;
    if let Some(cluster) = broker.cluster() {
        let claim = crate::cluster::ownership::Claim {
            principal: &principal,
            policy: &policy,
            persistent: expiry_secs > 0,
            clean_start: connect.clean_start,
        };
        let held = cluster
            .sessions
            .before_attach(broker, cluster, claim)
            .await
            .map_err(|refusal| {
                refused(&refusal);
                match refusal {
                    crate::cluster::ownership::Refusal::Unavailable => {
                        broker.stats.auth.inc(("failure", "cluster_unavailable"));
                        authorize::server_unavailable(version)
                    }
                    crate::cluster::ownership::Refusal::OwnedByAnother(_) => {
                        broker.stats.auth.inc(("failure", "client_id_in_use"));
                        identifier_rejected(version)
                    }
                }
            })?;
        admitted = Some(held);
    }
    let conn_id = broker.next_conn_id();
    let wake = Arc::new(Wake::new());
    let attachment = Attachment {
        id: conn_id,
        wake: Arc::clone(&wake),
        protocol: version,
        since_ms: admitted
            .as_ref()
            .map_or_else(crate::observe::audit::timestamp_ms, |a| a.stamp),
        output: crate::session::direct::Output::HANDLER,
    };
    let request = AttachRequest {
        connect: &connect,
        principal,
        policy,
        attachment,
        expiry: Duration::from_secs(u64::from(expiry_secs)),
        token: token.clone(),
    };
    let listener_name = Arc::clone(&peer.listener);
    let attached = lifecycle::attach(broker, request);
    drop(admitted);
    let (session, session_present) = attached.map_err(|_| {
        refused(&"client id in use by another user's session");
        broker.stats.auth.inc(("failure", "client_id_in_use"));
        identifier_rejected(version)
    })?;
    broker.stats.auth.inc(("success", "ok"));
    broker
        .stats
        .connections
        .inc((listener_name, crate::observe::protocol_label(version)));
    // Strings the client chose are quoted (escaped) in text lines: no
    // client id or username can forge a line.
    tracing::info!(
        client_id = &*session.client_id,
        username = log_name.as_deref(),
        cert_subject = peer.cert.as_ref().map(|c| tracing::field::display(&c.subject)),
        auth = how,
        listener = %peer.listener,
        protocol = crate::observe::protocol_label(version),
        peer = %peer.addr,
        conn = conn_id,
        session_present,
        "client connected"
    );
    broker
        .audit
        .connected(&crate::auth::extension::Event::Connected {
            client_id: &session.client_id,
            username: log_name.as_deref(),
            peer: peer.addr,
            listener: &peer.listener,
            protocol: crate::observe::protocol_label(version),
            auth: how,
        });
    // A CRL published since the check above: the scan may have missed this
    // session (see `revocation`).
    crate::revocation::kick_if_revoked(broker, &session, conn_id);
    if broker.policy_target() > policy_version.0 {
        // The registry started applying a newer policy after this login read
        // its version, and may have looked at the sessions before this one
        // attached: bring it up to date (or revoke it) ourselves.
        crate::policy_registry::refresh_session(broker, &session).await;
    }

    let mut props = Properties::default();
    if version.is_v5() {
        props.receive_maximum = Some(limits.receive_maximum.get());
        props.maximum_packet_size = Some(limits.max_packet_size);
        if limits.topic_alias_maximum > 0 {
            props.topic_alias_maximum = Some(limits.topic_alias_maximum);
        }
        if assigned {
            props.assigned_client_identifier = Some(client_id);
        }
        if expiry_capped {
            props.session_expiry_interval = Some(expiry_secs);
        }
        props.server_keep_alive = server_keep_alive;
        if token.as_ref().is_some_and(|t| t.via_method) {
            props.authentication_method = Some(crate::auth::jwt::METHOD.to_owned());
        }
        if !limits.retain_available {
            props.retain_available = Some(false);
        }
    }
    let accepted = Accepted {
        session,
        conn_id,
        wake,
        keepalive_timeout: (keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
        will,
        session_present,
        topic_alias_max: if version.is_v5() {
            limits.topic_alias_maximum
        } else {
            0
        },
        topic_alias_out: if version.is_v5() {
            connect
                .properties
                .topic_alias_maximum
                .unwrap_or(0)
                .min(limits.outbound_topic_aliases)
        } else {
            0
        },
        version,
        token,
    };
    Ok((accepted, props))
}

/// A login failed with bad credentials: count it against the address and
/// the username, and audit and log the bans that starts.
fn count_failure(broker: &Broker, config: &Config, peer: &PeerInfo, username: Option<&str>) {
    let now = std::time::Instant::now();
    let started = broker
        .defence
        .bans
        .failed(&config.auth.bans, peer.addr.ip(), username, now);
    for ban in started {
        let kind = ban.kind.as_str();
        tracing::warn!(
            kind,
            subject = %ban.subject,
            seconds = ban.duration.as_secs(),
            "too many failed logins; banned"
        );
        broker
            .audit
            .ban(kind, &ban.subject, ban.duration, "failed_logins");
    }
}

/// The client id to use, and whether we assigned it.
fn client_id(connect: &Connect) -> Result<(String, bool), u8> {
    if !connect.client_id.is_empty() {
        return Ok((connect.client_id.clone(), false));
    }
    let allowed = match connect.protocol {
        ProtocolVersion::V5 => true,
        ProtocolVersion::V311 => connect.clean_start,
        ProtocolVersion::V31 => false,
    };
    if !allowed {
        return Err(identifier_rejected(connect.protocol));
    }
    let id = format!("warden-{:016x}", rand::random::<u64>());
    Ok((id, true))
}

/// The keep alive to enforce, and the v5 Server Keep Alive to announce.
fn negotiate_keepalive(asked: u16, cap: Option<std::num::NonZeroU16>) -> (u16, Option<u16>) {
    match cap {
        Some(cap) if asked == 0 || asked > cap.get() => (cap.get(), Some(cap.get())),
        _ => (asked, None),
    }
}

/// The principal's rules at `version`, compiled (both through the login
/// cache). Err: the store could not answer (fail closed).
pub async fn compile(
    broker: &Broker,
    principal: &Principal,
    version: PolicyVersion,
) -> Result<Arc<dyn CompiledPolicy>, ()> {
    compile_with(broker, principal, &[], version).await
}

/// [`compile`] with rules from a token added to the store's. Such a policy
/// is compiled for this principal alone: the login cache's key does not
/// cover token rules.
pub async fn compile_with(
    broker: &Broker,
    principal: &Principal,
    token_rules: &[warden_policy::Rule],
    version: PolicyVersion,
) -> Result<Arc<dyn CompiledPolicy>, ()> {
    let key = PrincipalKey {
        username: principal.username.as_deref().map(str::to_owned),
        roles: principal.roles.clone(),
    };
    let rules = broker
        .logins
        .rules(&*broker.store, &key, version)
        .await
        .map_err(|err| {
            tracing::debug!(error = %err, "cannot load rules at login; refusing (fail closed)");
        })?;
    let policy = compile_rules(broker, principal, &rules, token_rules, version).map_err(|err| {
        tracing::error!(error = %err, "cannot compile policy; refusing");
    })?;
    for warning in policy.warnings() {
        tracing::warn!(client_id = %principal.client_id, %warning, "policy compile warning");
    }
    Ok(policy)
}

/// Compile `rules` (the store's) plus `token_rules` for `principal`.
pub fn compile_rules(
    broker: &Broker,
    principal: &Principal,
    rules: &warden_policy::RuleSet,
    token_rules: &[warden_policy::Rule],
    version: PolicyVersion,
) -> Result<Arc<dyn CompiledPolicy>, warden_policy::PolicyError> {
    if token_rules.is_empty() {
        return broker
            .logins
            .compile(&broker.engine, principal, rules, version);
    }
    let mut all = rules.clone();
    all.0.extend(token_rules.iter().cloned());
    warden_policy::PolicyEngine::compile(&broker.engine, principal, &all, version)
}

fn check_will(
    broker: &Broker,
    who: Who<'_>,
    policy: &dyn CompiledPolicy,
    will: &LastWill,
    version: ProtocolVersion,
) -> Result<Will, u8> {
    let qos = QoS::from_u8(will.qos).unwrap_or(QoS::AtMostOnce);
    broker
        .authz
        .will_at_connect(who, policy, &will.topic, qos, will.retain, version)?;
    Ok(Will {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos,
        retain: will.retain,
        properties: will.properties.clone(),
        delay: Duration::from_secs(u64::from(will.properties.will_delay_interval.unwrap_or(0))),
    })
}
