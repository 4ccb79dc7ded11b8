//! Who may move a session between its states, and how, atomically.
//!
//! ```text
//!              attach (owner)                 detach (connection ends)
//!   (none) ───────────────────► online ◄──────────────────────────► offline
//!     ▲                          │  ▲   attach (owner, same session)  │
//!     │                          │  └─ takeover by the owner ──┘      │
//!     │        discard (takeover: any, by another principal),         │
//!     └──────── expiry of the generation it saw, user removed ◄───────┘
//!                                   = ended
//! ```
//!
//! - A session is **owned** by the principal that created it
//!   ([`OwnerKey`]). Only the owner attaches to it again. Another principal
//!   asking for the same client id is refused (`sessions.takeover:
//!   same_user`, the default) without any effect on the session, or, with
//!   `any`, the old session is discarded (its connection closed with 0x8E)
//!   and the newcomer gets a fresh one: it never inherits a queue, a message
//!   in flight or a subscription.
//! - Each attachment bumps the session's `generation`. Removal, will delay
//!   and expiry name the generation they saw, and act only if it is still
//!   the current one with nobody attached.
//! - An ended session is out of the map and out of the router, and nothing
//!   can attach to it, subscribe in it or queue to it any more.
//!
//! **Lock order**: `Broker::sessions` (the map) → `Broker::router` →
//! `Session::state`. A function may take a lock to the right of one it
//! holds, never to the left. The publish path takes router → state; the
//! subscribe path takes router → state to check it is still attached.

use std::sync::Arc;
use std::time::Duration;

use warden_codec::Connect;
use warden_policy::{CompiledPolicy, Principal};

use crate::broker::Broker;
use crate::config::Takeover;
use crate::persist::{Op, Persister, StoredDelivery, StoredSession};
use crate::router::SubscriptionTrie;
use crate::session::map::SessionMap;
use crate::session::state::{
    Attachment, ConnId, Kick, Moved, OwnerKey, Session, SessionState, SubKey,
};

/// A principal other than the owner asked for a session under
/// `sessions.takeover: same_user`.
#[derive(Debug)]
pub struct OwnedByAnother;

/// What the single-node rules say about a principal asking for a session
/// another principal may own (used on one node, and by the cluster when
/// the session is on another node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeoverRule {
    /// The owner itself: it resumes the session (and kicks its connection).
    Resume,
    /// Another principal under `sessions.takeover: any`: the old session is
    /// discarded and the newcomer starts afresh.
    Discard,
    /// Another principal under `sessions.takeover: same_user`: refused.
    Refuse,
}

/// The rule for `newcomer` asking for a session owned by `owner`.
pub fn takeover_rule(takeover: Takeover, owner: &OwnerKey, newcomer: &OwnerKey) -> TakeoverRule {
    if owner == newcomer {
        return TakeoverRule::Resume;
    }
    match takeover {
        Takeover::SameUser => TakeoverRule::Refuse,
        Takeover::Any => TakeoverRule::Discard,
    }
}

/// What a login brings to its session.
pub struct AttachRequest<'a> {
    pub connect: &'a Connect,
    pub principal: Principal,
    pub policy: Arc<dyn CompiledPolicy>,
    pub attachment: Attachment,
    pub expiry: Duration,
    /// A JWT login's grant (replaces the session's previous one).
    pub token: Option<Arc<crate::auth::TokenGrant>>,
}

/// Find or create the session for a login; take it over from a live
/// connection of the same owner; apply Clean Start. Returns the session and
/// Session Present.
pub fn attach(
    broker: &Broker,
    req: AttachRequest<'_>,
) -> Result<(Arc<Session>, bool), OwnedByAnother> {
    let config = broker.config();
    let limits = &config.limits;
    let connect = req.connect;
    let client_receive_max = connect
        .properties
        .receive_maximum
        .map_or(usize::from(limits.receive_maximum.get()), usize::from);
    let client_max_packet = connect.properties.maximum_packet_size;
    let client_id: Arc<str> = Arc::clone(&req.principal.client_id);
    let owner = OwnerKey::of(&req.principal);
    let mut sessions = broker.sessions.lock();
    if let Some(existing) = sessions.get(&client_id).cloned() {
        let rule = takeover_rule(config.sessions.takeover, &existing.owner, &owner);
        if rule != TakeoverRule::Resume {
            match rule {
                TakeoverRule::Refuse => {
                    tracing::info!(client_id = %client_id, owner = %existing.owner, username = %owner, "client id belongs to another user's session; refused");
                    return Err(OwnedByAnother);
                }
                TakeoverRule::Discard | TakeoverRule::Resume => {
                    // Released before `discard` takes the router (lock order).
                    let old_peer = existing.state.lock().principal.peer;
                    tracing::info!(
                        client_id = &*client_id,
                        owner = %existing.owner,
                        username = %owner,
                        old_peer = old_peer.map(tracing::field::display),
                        new_peer = req.principal.peer.map(tracing::field::display),
                        "session of another user discarded (sessions.takeover: any)"
                    );
                    discard(broker, &mut sessions, &existing, Kick::TakenOver);
                }
            }
        } else {
            let new_peer = req.principal.peer;
            let taken = resume(
                broker,
                &existing,
                req,
                client_receive_max,
                client_max_packet,
                limits.max_queued_messages,
            );
            // Logged with no lock held: a write to stderr may block.
            drop(sessions);
            if let Some((old_peer, old_conn)) = taken {
                tracing::info!(
                    client_id = &*existing.client_id,
                    old_peer = old_peer.map(tracing::field::display),
                    new_peer = new_peer.map(tracing::field::display),
                    old_conn,
                    "session taken over"
                );
            }
            return Ok((existing, !connect.clean_start));
        }
    }
    let mut state = SessionState::new(
        Arc::clone(&client_id),
        req.attachment,
        req.principal,
        req.policy,
        limits.max_queued_messages,
        client_receive_max,
        client_max_packet,
        req.expiry,
    );
    state.stored = broker.persist.enabled() && !req.expiry.is_zero();
    state.token = req.token;
    let session = Arc::new(Session::new(
        broker.next_session_id(),
        Arc::clone(&client_id),
        owner,
        state,
    ));
    sessions.insert(client_id, Arc::clone(&session));
    Ok((session, false))
}

/// The owner attaches to its existing session (called with the map locked).
/// When a connection was attached, its peer and id: a takeover.
fn resume(
    broker: &Broker,
    existing: &Arc<Session>,
    req: AttachRequest<'_>,
    receive_max: usize,
    max_packet: Option<u32>,
    max_queue: usize,
) -> Option<(Option<std::net::SocketAddr>, ConnId)> {
    // Router before state (the lock order): forget the old subscriptions
    // before the new connection can receive.
    let mut router = broker.router.write();
    let mut st = existing.state.lock();
    if req.connect.clean_start {
        router.remove_all(&SubKey(Arc::clone(existing)));
    }
    drop(router);
    let taken = st.attached.take().map(|old| {
        st.kicked = Some((old.id, Kick::TakenOver));
        old.wake.notify_one();
        (st.principal.peer, old.id)
    });
    if req.connect.clean_start {
        st.queue.clear();
        st.inflight.clear();
        st.incoming_qos2.clear();
        st.dropped = 0;
    }
    let persistent = broker.persist.enabled() && !req.expiry.is_zero();
    if st.stored && (req.connect.clean_start || !persistent) {
        // What is on disk is gone (clean start), or the session no longer
        // outlives its connection; a persistent one is written afresh.
        forget_stored(&broker.persist, &mut st);
    }
    if persistent && !st.stored {
        // Messages queued before (a rare case: a session that was not
        // persistent, taken over by one that is) stay in memory only.
        st.stored = true;
    }
    st.attached = Some(req.attachment);
    st.offline_since_ms = None;
    st.expiry = req.expiry;
    st.generation += 1;
    st.send_quota = crate::session::state::quota(receive_max);
    st.client_max_packet = max_packet;
    st.max_queue = max_queue;
    st.token = req.token;
    // The login's freshly compiled policy, applied to what waited.
    st.install_policy(&broker.authz, &broker.persist, req.principal, req.policy);
    taken
}

/// End a session at once, whoever is attached (called with the map locked).
/// The attached connection, if any, is kicked with `why`.
fn discard(broker: &Broker, sessions: &mut SessionMap, session: &Arc<Session>, why: Kick) {
    let mut router = broker.router.write();
    let mut st = session.state.lock();
    if let Some(old) = st.attached.take() {
        st.kicked = Some((old.id, why));
        old.wake.notify_one();
    }
    end_locked(&broker.persist, &mut router, sessions, session, &mut st);
}

/// End `session` with the map, router and state locks held (in that
/// order): out of the store, the router and the map, nothing left inside.
fn end_locked(
    persist: &Persister,
    router: &mut SubscriptionTrie<SubKey>,
    sessions: &mut SessionMap,
    session: &Arc<Session>,
    st: &mut SessionState,
) {
    st.ended = true;
    st.queue.clear();
    st.inflight.clear();
    st.incoming_qos2.clear();
    forget_stored(persist, st);
    router.remove_all(&SubKey(Arc::clone(session)));
    if let Some(current) = sessions.get(&session.client_id) {
        if Arc::ptr_eq(current, session) {
            sessions.remove(&session.client_id);
        }
    }
}

/// What [`hand_off`] did.
#[derive(Debug)]
pub enum HandOff {
    /// No session of that client id here (or none the caller asked about).
    NoSession,
    /// The single-node rules refuse the newcomer; the session is untouched.
    Refused,
    /// The session left this node: its state (record and deliveries, in
    /// flight first) when the owner resumes it elsewhere, None when it was
    /// discarded.
    Gone(Option<Box<(StoredSession, Vec<StoredDelivery>)>>),
}

/// The session of `client_id` leaves this node for another node of the
/// cluster (`cluster::ownership`). `newcomer` is the principal connecting
/// there, judged by the single-node rules ([`takeover_rule`]); None: the
/// session is gone whoever asks (another node owns it now). The attached
/// connection is kicked (0x8E), the session ends here (out of the map, the
/// router and the session store), and its will follows `moved`. With
/// `want_state` and the owner resuming, its state is returned, taken under
/// the same locks that end it, so nothing queued here after the snapshot
/// is lost silently: nothing can queue to an ended session.
/// `clean_only` leaves sessions that outlive their connection alone (their
/// ownership is the cluster's record, not a broadcast).
pub fn hand_off(
    broker: &Broker,
    client_id: &str,
    newcomer: Option<&OwnerKey>,
    want_state: bool,
    moved: Moved,
    clean_only: bool,
) -> HandOff {
    let takeover = broker.config().sessions.takeover;
    let mut sessions = broker.sessions.lock();
    let Some(session) = sessions.get(client_id).cloned() else {
        return HandOff::NoSession;
    };
    let rule = newcomer.map_or(TakeoverRule::Discard, |n| {
        takeover_rule(takeover, &session.owner, n)
    });
    if rule == TakeoverRule::Refuse {
        return HandOff::Refused;
    }
    let mut router = broker.router.write();
    let key = SubKey(Arc::clone(&session));
    let resume = want_state && rule == TakeoverRule::Resume;
    let subs = if resume {
        router.subscriptions_of(&key)
    } else {
        Vec::new()
    };
    let mut st = session.state.lock();
    if clean_only && !st.expiry.is_zero() {
        return HandOff::NoSession;
    }
    let state = resume.then(|| {
        let subs = subs
            .into_iter()
            .map(|(f, g, o)| crate::session::durable::stored_subscription(f, g, &o))
            .collect();
        let record = st.record(session.owner.username(), subs, None);
        // In flight in the order sent: the new node resends them so.
        let inflight = st.inflight.ids_in_order().into_iter().filter_map(|id| {
            let o = st.inflight.get(&id)?;
            Some(SessionState::stored_delivery(
                &o.delivery,
                Some((id, o.phase)),
            ))
        });
        let queued = st
            .queue
            .iter()
            .map(|d| SessionState::stored_delivery(d, None));
        Box::new((record, inflight.chain(queued).collect()))
    });
    if let Some(old) = st.attached.take() {
        st.kicked = Some((old.id, Kick::TakenOver));
        old.wake.notify_one();
    }
    st.moved = Some(moved);
    // Delayed work (a will delay, the expiry) saw an older generation.
    st.generation += 1;
    end_locked(
        &broker.persist,
        &mut router,
        &mut sessions,
        &session,
        &mut st,
    );
    HandOff::Gone(state)
}

/// Remove the session's record and deliveries from the store.
fn forget_stored(persist: &Persister, st: &mut SessionState) {
    if st.stored {
        persist.submit(Op::RemoveSession {
            client_id: Arc::clone(&st.principal.client_id),
        });
        st.stored = false;
    }
}

/// The connection `conn` lets go of the session, if it still holds it: the
/// session goes offline. Returns its expiry and generation (for the will
/// and the expiry timer), or None when another connection holds it now.
pub fn detach(session: &Session, conn: ConnId) -> Option<(Duration, u64)> {
    let mut st = session.state.lock();
    if !st.is_attached_to(conn) {
        return None;
    }
    st.attached = None;
    st.offline_since_ms = Some(crate::session::durable::now_ms());
    Some((st.expiry, st.generation))
}

/// End a detached session whose `generation` is still the one the caller
/// saw (expiry, or a connection ending with expiry 0). A reconnect in
/// between moved the generation on, and the session lives. Returns whether
/// it was ended.
pub fn end_if_current(broker: &Broker, session: &Arc<Session>, generation: u64) -> bool {
    let mut sessions = broker.sessions.lock();
    let mut router = broker.router.write();
    let mut st = session.state.lock();
    if st.ended || st.generation != generation || st.attached.is_some() {
        return false;
    }
    end_locked(
        &broker.persist,
        &mut router,
        &mut sessions,
        session,
        &mut st,
    );
    drop((st, router, sessions));
    cluster_ended(broker, session);
    true
}

/// On a cluster node, a session that ended here gives up its ownership
/// record (`cluster::ownership`).
fn cluster_ended(broker: &Broker, session: &Session) {
    if let Some(cluster) = broker.cluster() {
        crate::cluster::ownership::session_ended(cluster, &session.client_id);
    }
}

/// The session's user was removed or disabled: kick the attached
/// connection (0x98) or end the offline session; either way its will is
/// dropped.
pub fn revoke(broker: &Broker, session: &Arc<Session>) {
    broker
        .audit
        .revocation(&session.client_id, session.owner.username());
    let mut sessions = broker.sessions.lock();
    let mut router = broker.router.write();
    let mut st = session.state.lock();
    st.revoked = true;
    st.expiry = Duration::ZERO;
    if let Some((id, wake)) = st.attached.as_ref().map(|a| (a.id, Arc::clone(&a.wake))) {
        st.kicked = Some((id, Kick::NotAuthorized));
        wake.notify_one();
        return;
    }
    end_locked(
        &broker.persist,
        &mut router,
        &mut sessions,
        session,
        &mut st,
    );
    drop((st, router, sessions));
    cluster_ended(broker, session);
}

/// Shutdown: wake every attached connection, which then sees the flag
/// (its packet loop waits on its wake-up, not on the shutdown signal).
pub fn wake_all(broker: &Broker) {
    let sessions: Vec<Arc<Session>> = broker.sessions.lock().values().cloned().collect();
    for session in sessions {
        if let Some(a) = session.state.lock().attached.as_ref() {
            a.wake.notify_one();
        }
    }
}

/// An operator disconnects the session's connection (v5 DISCONNECT 0x98).
/// Only the connection goes: the session stays, as after any lost
/// connection (its will fires, its expiry counts). Returns whether a
/// connection was attached.
pub fn kick(session: &Session) -> bool {
    let mut st = session.state.lock();
    match st.attached.as_ref().map(|a| (a.id, Arc::clone(&a.wake))) {
        Some((id, wake)) => {
            st.kicked = Some((id, Kick::Administrative));
            wake.notify_one();
            true
        }
        None => false,
    }
}

/// The session's policy could not be recompiled: never leave it on its old
/// rights. An attached connection is closed (0x80); an offline session
/// accepts nothing until a later refresh or its owner's next login
/// compiles again.
pub fn policy_failed(session: &Session) {
    let mut st = session.state.lock();
    st.policy_failed = true;
    if let Some((id, wake)) = st.attached.as_ref().map(|a| (a.id, Arc::clone(&a.wake))) {
        st.kicked = Some((id, Kick::PolicyFailed));
        wake.notify_one();
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
