//! What happens after a connection ends: the will (now, or after the v5
//! Will Delay Interval unless the session resumes first) and the end of the
//! session when its expiry interval passes without a new connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::authorize::Who;
use crate::broker::Broker;
use crate::session::connect::Will;
use crate::session::message::Message;
use crate::session::state::{Session, SubKey};

/// Publish the will, re-checked against the publisher's current policy (it
/// may have changed since CONNECT). With a will delay and a session that
/// outlives the connection, wait first; a reconnect within the delay (the
/// session's generation moves on) cancels it, and the session ending early
/// sends it at that moment (MQTT 5 §3.1.3.2.2).
pub fn fire(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    will: Will,
    session_expiry: Duration,
    generation: Option<u64>,
) {
    let wait = will.delay.min(session_expiry);
    let (Some(generation), false) = (generation, wait.is_zero()) else {
        publish_will(broker, session, will);
        return;
    };
    let broker = Arc::clone(broker);
    let session = Arc::clone(session);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let resumed = {
            let st = session.state.lock();
            st.generation != generation || st.owner.is_some()
        };
        if !resumed {
            publish_will(&broker, &session, will);
        }
    });
}

fn publish_will(broker: &Broker, session: &Arc<Session>, will: Will) {
    let allowed = {
        let st = session.state.lock();
        let who = Who {
            client_id: &session.client_id,
            username: st.principal.username.as_deref(),
        };
        broker
            .authz
            .will_allowed(who, &*st.policy, &will.topic, will.qos, will.retain)
    };
    if !allowed {
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
    };
    tracing::debug!(client_id = %session.client_id, topic = %msg.topic, "publishing will");
    // A will is published once; it does not wait for slow subscribers.
    broker.publish(
        Arc::new(msg),
        Some(&SubKey(Arc::clone(session))),
        &mut Vec::new(),
    );
}

/// End the session now (expiry 0) or after `expiry` unless it resumes.
pub fn schedule_expiry(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    expiry: Duration,
    generation: u64,
) {
    if expiry.is_zero() {
        broker.remove_session(session);
        return;
    }
    let broker = Arc::clone(broker);
    let session = Arc::clone(session);
    tokio::spawn(async move {
        tokio::time::sleep(expiry).await;
        let expired = {
            let st = session.state.lock();
            st.generation == generation && st.owner.is_none()
        };
        if expired {
            broker.remove_session(&session);
        }
    });
}
