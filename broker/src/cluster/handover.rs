//! A session moving between nodes over NATS request/reply.
//!
//! The node a client connects to (B) asks the node the ownership record
//! names (A) on `warden.<cluster>.session.<A>`. A judges the newcomer by the
//! single-node rules (`lifecycle::takeover_rule`): refused, or A rewrites
//! the record for B (`ownership.rs`), kicks its connection (v5 DISCONNECT
//! 0x8E), ends the session here and answers with
//! its state when the owner resumes it: the record (subscriptions, expiry,
//! inbound QoS 2 ids) and the messages in flight and queued, in the session
//! store's own encoding (`persist::record`). B builds the session from it
//! ([`install`]) before the login attaches, so the login resumes it as it
//! would a local one (session present = 1).
//!
//! The payloads are the store's records (a format byte, then postcard). An
//! answer larger than the server's `max_payload` loses its newest queued
//! messages until it fits (logged).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_policy::{CompiledPolicy, Principal, QoS};

use crate::broker::Broker;
use crate::persist::record::{decode, encode};
use crate::persist::{StoredDelivery, StoredSession};
use crate::session::durable::{self, message_from, options_from};
use crate::session::lifecycle::{self, HandOff};
use crate::session::message::Delivery;
use crate::session::state::{Moved, OwnerKey, Session, SessionState, SubKey};

/// How long the new node waits for the old one. A node that is gone
/// answers at once (the server says "no responders"); this bounds a node
/// that is alive but stuck.
const ASK_WAIT: Duration = Duration::from_secs(3);

/// B to A: let go of `client_id`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub client_id: String,
    /// The principal connecting on B (None: anonymous).
    pub username: Option<String>,
    /// The state is wanted (clean start 0); otherwise A discards it.
    pub want_state: bool,
    /// B's node id: the record names it after the takeover.
    pub node: String,
    /// The newcomer's session outlives its connection: A rewrites the
    /// record for B; otherwise A deletes it.
    pub persistent: bool,
}

/// A session's state as it travels.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    pub session: StoredSession,
    /// In flight first, then queued, each in its order.
    pub deliveries: Vec<StoredDelivery>,
}

/// A's answer. NoSession, Discarded and State: A rewrote the record for
/// B (or deleted it, for a clean session) before it let go.
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    /// A holds no session of that client id.
    NoSession,
    /// The single-node rules refuse the newcomer.
    Refused,
    /// A ended its session without handing its state over.
    Discarded,
    /// A ended its session; here it is.
    State(Box<Handover>),
    /// The record does not name A (any more), or a connect of the client id
    /// under way on A did not finish in time: B reads the record again.
    Moved,
    /// A cannot write the record (NATS or its bucket).
    Unavailable,
    /// No answer (never sent): A is gone or stuck.
    #[serde(skip)]
    Silent,
}

/// Sent on `warden.<cluster>.claim` by every connection.
#[derive(Debug, Serialize, Deserialize)]
pub struct Announce {
    pub client_id: String,
    pub username: Option<String>,
    pub node: String,
    /// The connection's stamp (`clock.rs`): which of two is newer.
    pub stamp: u64,
    /// Its session outlives the connection (it holds the record).
    pub persistent: bool,
}

pub fn owner_key(username: Option<&str>) -> OwnerKey {
    username.map_or(OwnerKey::Anonymous, |u| OwnerKey::User(Arc::from(u)))
}

/// B's side: ask, and read the answer.
pub async fn ask(client: &async_nats::Client, subject: String, request: &Request) -> Answer {
    let Ok(payload) = encode(request) else {
        return Answer::Silent;
    };
    match tokio::time::timeout(ASK_WAIT, client.request(subject, payload.into())).await {
        Ok(Ok(reply)) => decode(&reply.payload).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "cluster: unreadable takeover answer");
            Answer::Silent
        }),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "cluster: no answer to a takeover request");
            Answer::Silent
        }
        Err(_) => Answer::Silent,
    }
}

/// A's side, once the record names B (or is deleted): let go of the
/// session (kick its connection, 0x8E) and say what B gets.
pub fn let_go(broker: &Arc<Broker>, request: &Request) -> Answer {
    let newcomer = owner_key(request.username.as_deref());
    let gone = lifecycle::hand_off(
        broker,
        &request.client_id,
        Some(&newcomer),
        request.want_state,
        Moved::HandedOver,
        false,
    );
    match gone {
        HandOff::NoSession => Answer::NoSession,
        HandOff::Refused => {
            // Judged before the record changed, under the client id's
            // lock: not reached.
            tracing::warn!(client_id = %request.client_id, "takeover refused after the record moved");
            Answer::Discarded
        }
        HandOff::Gone(None) => {
            tracing::info!(client_id = %request.client_id, node = %request.node, "session taken over by another node (discarded here)");
            Answer::Discarded
        }
        HandOff::Gone(Some(state)) => {
            let (session, deliveries) = *state;
            tracing::info!(client_id = %request.client_id, node = %request.node, messages = deliveries.len(), "session handed over to another node");
            Answer::State(Box::new(Handover {
                session,
                deliveries,
            }))
        }
    }
}

/// Send `answer` to B.
pub async fn reply(
    client: &async_nats::Client,
    reply: async_nats::Subject,
    answer: Answer,
    client_id: &str,
) {
    let max = client.server_info().max_payload.max(1024);
    let Some(payload) = fit(answer, max) else {
        return;
    };
    if let Err(err) = client.publish(reply, payload.into()).await {
        tracing::warn!(client_id, error = %err, "cluster: takeover answer not sent");
    }
}

/// The answer encoded within `max` bytes: the newest queued messages go
/// first when it is too large.
fn fit(mut answer: Answer, max: usize) -> Option<Vec<u8>> {
    let mut dropped = 0usize;
    loop {
        let bytes = encode(&answer).ok()?;
        let Answer::State(state) = &mut answer else {
            return Some(bytes);
        };
        if bytes.len() <= max || state.deliveries.is_empty() {
            if dropped > 0 {
                tracing::warn!(client_id = %state.session.client_id, dropped, "cluster: session too large for one NATS message; its newest queued messages were dropped");
            }
            return Some(bytes);
        }
        let n = (state.deliveries.len() / 10).max(1);
        let keep = state.deliveries.len() - n;
        state.deliveries.truncate(keep);
        dropped += n;
    }
}

/// B's side: the session handed over, built here, offline, for the login
/// to resume. Its subscriptions still allowed go into the router, its
/// record and QoS 1/2 messages into this node's session store.
pub fn install(
    broker: &Arc<Broker>,
    state: Handover,
    principal: &Principal,
    policy: &Arc<dyn CompiledPolicy>,
) {
    let config = broker.config();
    let limits = &config.limits;
    let stored = state.session;
    let client_id: Arc<str> = Arc::from(stored.client_id.as_str());
    let mut st = SessionState::offline(
        Arc::clone(&client_id),
        principal.clone(),
        Arc::clone(policy),
        limits.max_queued_messages,
        usize::from(limits.receive_maximum.get()),
        Duration::from_secs(u64::from(stored.expiry_secs)),
        crate::session::restore::protocol(stored.protocol),
    );
    st.stored = broker.persist.enabled();
    st.offline_since_ms = Some(durable::now_ms());
    st.incoming_qos2 = stored.incoming_qos2.iter().copied().collect();
    for sd in state.deliveries {
        let d = Delivery {
            msg: Arc::new(message_from(sd.msg)),
            qos: QoS::from_u8(sd.qos).unwrap_or(QoS::AtMostOnce),
            retain: sd.retain,
            sub_ids: sd.sub_ids,
            epoch: 0,
            seq: 0,
        };
        durable::place_restored(&mut st, d, sd.inflight);
    }
    let session = Arc::new(Session::new(
        broker.next_session_id(),
        Arc::clone(&client_id),
        OwnerKey::of(principal),
        st,
    ));
    {
        let mut sessions = broker.sessions.lock();
        let mut router = broker.router.write();
        let key = SubKey(Arc::clone(&session));
        for sub in &stored.subscriptions {
            let opts = options_from(sub);
            let qos = QoS::from_u8(opts.qos).unwrap_or(QoS::AtMostOnce);
            if !broker
                .authz
                .subscription_still_allowed(&**policy, &sub.filter, qos)
            {
                tracing::info!(client_id = %client_id, filter = %sub.filter, "handed-over subscription no longer allowed; removed");
                continue;
            }
            router.subscribe(&sub.filter, sub.share_group.as_deref(), key.clone(), opts);
        }
        sessions.insert(client_id, Arc::clone(&session));
    }
    // The record first: the store returns no delivery without one.
    durable::write_record(broker, &session, None);
    let persist = &broker.persist;
    let mut st = session.state.lock();
    let mut inflight = std::mem::take(&mut st.inflight);
    for id in inflight.ids_in_order() {
        let Some(mut o) = inflight.remove(&id) else {
            continue;
        };
        st.store_delivery(persist, &mut o.delivery);
        st.store_phase(persist, o.delivery.seq, id, o.phase);
        st.inflight.insert(id, o);
    }
    let queue = std::mem::take(&mut st.queue);
    for mut d in queue {
        st.store_delivery(persist, &mut d);
        st.queue.push_back(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{StoredMessage, StoredProps};

    fn state(n: usize) -> Answer {
        let msg = StoredMessage {
            topic: Arc::from("a/b"),
            payload: bytes::Bytes::from(vec![7u8; 100]),
            qos: 1,
            retain: false,
            props: StoredProps::default(),
            expires_at_ms: None,
            origin: Arc::from("p"),
        };
        Answer::State(Box::new(Handover {
            session: StoredSession {
                client_id: "c".into(),
                owner: Some("alice".into()),
                protocol: 5,
                expiry_secs: 300,
                disconnected_at_ms: None,
                subscriptions: Vec::new(),
                will: None,
                incoming_qos2: vec![3],
            },
            deliveries: (0..n)
                .map(|i| StoredDelivery {
                    msg: msg.clone(),
                    qos: 1,
                    retain: false,
                    sub_ids: Vec::new(),
                    inflight: (i == 0).then_some((1, crate::persist::Phase::AwaitAck)),
                })
                .collect(),
        }))
    }

    #[test]
    fn answers_round_trip_and_fit_the_payload_limit() {
        let bytes = fit(state(50), 1 << 20).expect("encoded");
        match decode::<Answer>(&bytes).expect("decoded") {
            Answer::State(h) => {
                assert_eq!(h.deliveries.len(), 50);
                assert_eq!(h.session.incoming_qos2, vec![3]);
                assert_eq!(
                    h.deliveries[0].inflight,
                    Some((1, crate::persist::Phase::AwaitAck))
                );
            }
            other => panic!("{other:?}"),
        }
        let small = fit(state(50), 2_000).expect("encoded");
        assert!(small.len() <= 2_000);
        match decode::<Answer>(&small).expect("decoded") {
            // The oldest (in flight first) are kept.
            Answer::State(h) => {
                assert!(!h.deliveries.is_empty() && h.deliveries.len() < 50);
                assert!(h.deliveries[0].inflight.is_some());
            }
            other => panic!("{other:?}"),
        }
        let refused = fit(Answer::Refused, 10).expect("encoded");
        assert!(matches!(decode::<Answer>(&refused), Ok(Answer::Refused)));
    }
}
