//! What happens after a connection ends: the will (now, or after the v5
//! Will Delay Interval unless the session resumes first) and the end of the
//! session when its expiry interval passes without a new connection.
//!
//! A will is authorized when it fires, with its publisher's policy as it is
//! then: the user is looked up again, and a removed or disabled user's will
//! is dropped. It is always checked against the principal that set it (the
//! session's fixed owner), never against whoever connected next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_policy::CompiledPolicy;

use crate::authorize::Who;
use crate::broker::Broker;
use crate::session::connect::Will;
use crate::session::lifecycle;
use crate::session::message::Message;
use crate::session::state::{Moved, Session, SubKey};

/// Publish the will of a connection that ended. `released` is the session's
/// expiry and generation when this connection was still attached at the
/// end; None when another connection took the session over or the session
/// was discarded.
///
/// With a will delay and a session that outlives the connection, wait
/// first; a reconnect within the delay (the generation moves on) cancels it,
/// and the session ending early sends it at that moment (MQTT 5
/// §3.1.3.2.2). A takeover is such a reconnect: with a delay the will is
/// not sent, without one it is.
pub fn fire(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    will: Will,
    released: Option<(Duration, u64)>,
) {
    let broker = Arc::clone(broker);
    let session = Arc::clone(session);
    match released {
        None => {
            let (ended, moved) = {
                let st = session.state.lock();
                (st.ended, st.moved)
            };
            if moved == Some(Moved::Lost) {
                tracing::info!(client_id = %session.client_id, "will dropped: another node of the cluster owns the session now");
            } else if will.delay.is_zero() || (ended && moved.is_none()) {
                tokio::spawn(async move { publish_checked(&broker, &session, will).await });
            } else {
                tracing::debug!(client_id = %session.client_id, "will cancelled: the session was taken over within the will delay");
            }
        }
        Some((expiry, generation)) => {
            let wait = will.delay.min(expiry);
            tokio::spawn(async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                    let resumed = {
                        let st = session.state.lock();
                        st.generation != generation || st.attached.is_some()
                    };
                    if resumed {
                        return;
                    }
                }
                publish_checked(&broker, &session, will).await;
                // Published: a restart must not publish it again.
                crate::session::durable::write_record(&broker, &session, None);
            });
        }
    }
}

/// Publish the will of a session that expired while the broker was down
/// (at start, once), checked like any will.
pub(crate) async fn publish_expired(broker: &Broker, session: &Arc<Session>, will: Will) {
    publish_checked(broker, session, will).await;
}

async fn publish_checked(broker: &Broker, session: &Arc<Session>, will: Will) {
    if !owned_here(broker, session).await {
        tracing::info!(client_id = %session.client_id, topic = %will.topic, reason = "another node of the cluster owns the session", "will dropped");
        return;
    }
    let Some(policy) = current_policy(broker, session, &will.topic).await else {
        return;
    };
    let who = Who {
        client_id: &session.client_id,
        username: session.owner.username(),
        // The connection is gone; its address is in the deny's client id.
        peer: None,
    };
    if !broker
        .authz
        .will_allowed(who, &*policy, &will.topic, will.qos, will.retain)
    {
        return;
    }
    let now = Instant::now();
    let msg = Message {
        topic: Arc::from(will.topic.as_str()),
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties: Message::forwarded_properties(&will.properties),
        expires_at: Message::expiry_from(will.properties.message_expiry_interval, now),
        origin: Arc::clone(&session.client_id),
        ack_gate: None,
    };
    tracing::debug!(client_id = %session.client_id, topic = %msg.topic, "publishing will");
    // A will is published once; it does not wait for slow subscribers,
    // but waits for room in the cluster's outbox while NATS is up, as a
    // client's publish does.
    let (_, deferred) = broker.publish(
        Arc::new(msg),
        Some(&SubKey(Arc::clone(session))),
        &mut Vec::new(),
    );
    if let (Some(d), Some(cluster)) = (deferred, broker.cluster()) {
        cluster.place_waiting(d).await;
    }
}

/// Whether this node may publish the session's will: always on a single
/// node. In a cluster, a will is published once, by the node that owns the
/// session: not after the session was lost to another node, nor (for a
/// session that outlives its connection, the only kind the cluster
/// registers) when the cluster's record names another node. A session
/// handed over on request was owned here when its connection was kicked.
async fn owned_here(broker: &Broker, session: &Session) -> bool {
    let (moved, persistent) = {
        let st = session.state.lock();
        (st.moved, !st.expiry.is_zero())
    };
    match moved {
        Some(Moved::Lost) => false,
        Some(Moved::HandedOver) => true,
        None => match broker.cluster() {
            Some(cluster) if persistent => cluster.sessions.may_fire_will(&session.client_id).await,
            _ => true,
        },
    }
}

/// The will publisher's policy now. The user is looked up afresh: removed
/// or disabled means no will. When the store cannot answer, the policy the
/// session holds stands (as it does for connected clients during an
/// outage); a policy that cannot be compiled means no will (fail closed).
async fn current_policy(
    broker: &Broker,
    session: &Session,
    topic: &str,
) -> Option<Arc<dyn CompiledPolicy>> {
    let dropped = |why: &str| {
        tracing::info!(client_id = %session.client_id, %topic, reason = why, "will dropped");
    };
    let (revoked, mut principal, held) = {
        let st = session.state.lock();
        (st.revoked, st.principal.clone(), Arc::clone(&st.policy))
    };
    if revoked {
        dropped("the user was removed or disabled");
        return None;
    }
    let store = &*broker.store;
    let Ok(version) = broker.logins.version(store).await else {
        return Some(held);
    };
    if let Some(name) = session.owner.username() {
        match broker.logins.user(store, name, version).await {
            Ok(Some(user)) if user.enabled => {
                principal.roles = user.roles;
                principal.superuser = user.superuser;
            }
            Ok(_) => {
                dropped("the user was removed or disabled");
                return None;
            }
            Err(_) => return Some(held),
        }
    }
    match crate::session::connect::compile(broker, &principal, version).await {
        Ok(policy) => Some(policy),
        Err(()) => {
            dropped("its policy could not be compiled");
            None
        }
    }
}

/// End the session now (expiry 0) or after `expiry` unless it resumes.
pub fn schedule_expiry(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    expiry: Duration,
    generation: u64,
) {
    if expiry.is_zero() {
        lifecycle::end_if_current(broker, session, generation);
        return;
    }
    let broker = Arc::clone(broker);
    let session = Arc::clone(session);
    tokio::spawn(async move {
        tokio::time::sleep(expiry).await;
        lifecycle::end_if_current(&broker, &session, generation);
    });
}
