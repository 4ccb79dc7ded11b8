//! The admin API's answers: who is connected, kick one, the recent denies,
//! and the status the page shows. JSON in, JSON out; authentication is the
//! HTTP layer's (`http.rs`).

use std::sync::Arc;

use serde::Serialize;

use super::audit::DenyRecord;
use super::stats::Flow;
use super::{protocol_label, Snapshot};
use crate::broker::Broker;
use crate::session::state::{Session, SubKey};

/// One client (a session, connected or waiting offline).
#[derive(Debug, Serialize)]
pub struct ClientInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub connected: bool,
    /// The listener and address of the last login.
    pub listener: String,
    pub peer: Option<String>,
    pub protocol: &'static str,
    /// Unix ms of the current connection's login; None when offline.
    pub connected_since: Option<u64>,
    /// Filters, `$share/GROUP/FILTER` for shared ones.
    pub subscriptions: Vec<String>,
    pub queued: usize,
    pub inflight: usize,
}

fn info(broker: &Broker, session: &Arc<Session>) -> ClientInfo {
    // Router before state: the lock order.
    let subscriptions = broker
        .router
        .read()
        .subscriptions_of(&SubKey(Arc::clone(session)))
        .into_iter()
        .map(|(filter, group, _)| match group {
            Some(g) => format!("$share/{g}/{filter}"),
            None => filter,
        })
        .collect();
    let st = session.state.lock();
    ClientInfo {
        client_id: session.client_id.to_string(),
        username: st.principal.username.as_deref().map(str::to_owned),
        connected: st.attached.is_some(),
        listener: st.principal.listener.to_string(),
        peer: st.principal.peer.map(|p| p.to_string()),
        protocol: protocol_label(st.attached.as_ref().map_or(st.protocol, |a| a.protocol)),
        connected_since: st.attached.as_ref().map(|a| a.since_ms),
        subscriptions,
        queued: st.queue.len(),
        inflight: st.inflight.len(),
    }
}

/// Every session, sorted by client id.
pub fn clients(broker: &Broker) -> Vec<ClientInfo> {
    let sessions: Vec<_> = broker.sessions.lock().values().cloned().collect();
    let mut out: Vec<ClientInfo> = sessions.iter().map(|s| info(broker, s)).collect();
    out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    out
}

pub fn client(broker: &Broker, client_id: &str) -> Option<ClientInfo> {
    broker.session(client_id).map(|s| info(broker, &s))
}

/// What a kick found.
#[derive(Debug, PartialEq, Eq)]
pub enum KickResult {
    Kicked,
    /// The session exists but nobody is connected to it.
    Offline,
    NoSuchClient,
}

/// Disconnect a client (v5 DISCONNECT 0x98); audited.
pub fn kick(broker: &Broker, client_id: &str, by: &str) -> KickResult {
    let Some(session) = broker.session(client_id) else {
        return KickResult::NoSuchClient;
    };
    if !crate::session::lifecycle::kick(&session) {
        return KickResult::Offline;
    }
    broker
        .audit
        .kick(&session.client_id, session.owner.username(), by);
    tracing::info!(client_id = %session.client_id, by, "client disconnected by an operator");
    KickResult::Kicked
}

/// The bans in force (`defence::bans`).
pub fn bans(broker: &Broker) -> Vec<crate::defence::bans::BanInfo> {
    broker.defence.bans.list(std::time::Instant::now())
}

/// Lift a ban; false when there was none. Audited as a ban of 0 seconds.
pub fn lift_ban(broker: &Broker, kind: crate::defence::BanKind, subject: &str, by: &str) -> bool {
    if !broker
        .defence
        .bans
        .lift(kind, subject, std::time::Instant::now())
    {
        return false;
    }
    broker
        .audit
        .ban(kind.as_str(), subject, std::time::Duration::ZERO, by);
    tracing::info!(
        kind = kind.as_str(),
        subject,
        by,
        "ban lifted by an operator"
    );
    true
}

pub fn decisions(broker: &Broker, limit: usize) -> Vec<DenyRecord> {
    broker.audit.recent_denies(limit)
}

/// What the status page shows.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub connections: u64,
    pub sessions_offline: u64,
    pub subscriptions: u64,
    pub retained: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub denies: Vec<DenyRecord>,
}

pub fn status(broker: &Broker) -> Status {
    let snap = Snapshot::take(broker);
    let flow = &broker.stats.flow;
    Status {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: broker.stats.started.elapsed().as_secs(),
        connections: snap.sessions_online,
        sessions_offline: snap.sessions_offline,
        subscriptions: snap.subscriptions,
        retained: snap.retained,
        messages_received: flow.total(Flow::MessagesIn),
        messages_sent: flow.total(Flow::MessagesOut),
        denies: broker.audit.recent_denies(10),
    }
}

/// What `POST /api/policy/invalidate` asks for.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateRequest {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    all: bool,
}

/// What an invalidation reached.
#[derive(Debug, Serialize)]
pub struct Invalidated {
    /// The user named, or None for all.
    pub username: Option<String>,
    /// Sessions holding rules from the service for them: each is fetched
    /// again and recompiled within a second when its rules changed.
    pub sessions: usize,
}

#[derive(Debug)]
pub enum InvalidateError {
    BadRequest(&'static str),
    NoSource,
}

/// Drop the cached answers of the external policy source for one user or
/// for all, and have their live sessions fetch and recompile; audited.
pub fn invalidate_policy(
    broker: &Broker,
    body: &[u8],
    by: &str,
) -> Result<Invalidated, InvalidateError> {
    let req: InvalidateRequest = serde_json::from_slice(body).map_err(|_| {
        InvalidateError::BadRequest(r#"expected {"username": NAME} or {"all": true}"#)
    })?;
    let username = match (req.username, req.all) {
        (Some(name), false) if !name.is_empty() => Some(name),
        (None, true) => None,
        _ => {
            return Err(InvalidateError::BadRequest(
                r#"name a user or say {"all": true}, not both"#,
            ))
        }
    };
    let Some(http) = broker.http.load_full() else {
        return Err(InvalidateError::NoSource);
    };
    let sessions = http.invalidate(broker, username.as_deref());
    let who = username.as_deref().unwrap_or("*");
    tracing::info!(
        username = who,
        sessions,
        by,
        "policy invalidated by an operator"
    );
    broker.audit.admin_change(&warden_auth::AdminChange {
        id: 0,
        at_ms: i64::try_from(super::audit::timestamp_ms()).unwrap_or(i64::MAX),
        user: by.to_owned(),
        host: String::new(),
        what: format!("policy invalidate {who}"),
    });
    Ok(Invalidated { username, sessions })
}
