//! What the session layer writes to the session store (`crate::persist`):
//! the conversions between live state and stored records, and the few
//! points where a persistent session's state changes on disk.
//!
//! Only what a restart can deliver is written: the record and the QoS 1/2
//! deliveries of sessions that outlive their connection (`stored`), and
//! retained messages. A clean session, or a QoS 0 message, costs nothing
//! here. Every write is submitted under the session lock, so the store sees
//! one session's changes in the order they happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_codec::{Properties, PropertySet, ProtocolVersion};
use warden_policy::QoS;

use crate::persist::{
    Op, Persister, Phase as StoredPhase, StoredDelivery, StoredMessage, StoredProps, StoredSession,
    StoredSubscription, StoredWill, Ticket,
};
use crate::router::SubOptions;
use crate::session::connect::Will;
use crate::session::message::{Delivery, Message};
use crate::session::state::{Phase, SessionState};

pub use crate::persist::now_ms;

fn props_of(p: &Properties) -> StoredProps {
    StoredProps {
        payload_format_indicator: p.payload_format_indicator,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
    }
}

fn properties_of(p: &StoredProps) -> Properties {
    Properties::from(PropertySet {
        payload_format_indicator: p.payload_format_indicator,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        ..PropertySet::default()
    })
}

pub fn stored_message(msg: &Message) -> StoredMessage {
    let now = Instant::now();
    StoredMessage {
        topic: Arc::clone(&msg.topic),
        payload: msg.payload.clone(),
        qos: msg.qos.as_u8(),
        retain: msg.retain,
        props: props_of(&msg.properties),
        expires_at_ms: msg.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            now_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
        }),
        origin: Arc::clone(&msg.origin),
    }
}

pub fn message_from(stored: StoredMessage) -> Message {
    let now = Instant::now();
    let wall = now_ms();
    Message {
        topic: stored.topic,
        payload: stored.payload,
        qos: QoS::from_u8(stored.qos).unwrap_or(QoS::AtMostOnce),
        retain: stored.retain,
        properties: properties_of(&stored.props),
        expires_at: stored
            .expires_at_ms
            .map(|at| now + Duration::from_millis(at.saturating_sub(wall))),
        origin: stored.origin,
        ack_gate: None,
    }
}

fn stored_phase(phase: Phase) -> StoredPhase {
    match phase {
        Phase::AwaitAck => StoredPhase::AwaitAck,
        Phase::AwaitRec => StoredPhase::AwaitRec,
        Phase::AwaitComp => StoredPhase::AwaitComp,
    }
}

pub fn phase_from(phase: StoredPhase) -> Phase {
    match phase {
        StoredPhase::AwaitAck => Phase::AwaitAck,
        StoredPhase::AwaitRec => Phase::AwaitRec,
        StoredPhase::AwaitComp => Phase::AwaitComp,
    }
}

/// Put a delivery read back from the session store (a restart, or a
/// session handed over by another node) where it was: in flight under its
/// packet id, or queued.
pub fn place_restored(
    st: &mut crate::session::state::SessionState,
    d: crate::session::message::Delivery,
    inflight: Option<(u16, StoredPhase)>,
) {
    match inflight {
        Some((id, phase)) => st.inflight.insert(
            id,
            crate::session::state::Outgoing {
                delivery: d,
                phase: phase_from(phase),
            },
        ),
        None => st.queue.push_back(d),
    }
}

pub fn stored_will(will: &Will) -> StoredWill {
    StoredWill {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos.as_u8(),
        retain: will.retain,
        props: props_of(&will.properties),
        message_expiry: will.properties.message_expiry_interval,
        delay_secs: u32::try_from(will.delay.as_secs()).unwrap_or(u32::MAX),
    }
}

pub fn will_from(stored: StoredWill) -> Will {
    let mut properties = properties_of(&stored.props);
    properties.message_expiry_interval = stored.message_expiry;
    Will {
        topic: stored.topic,
        payload: stored.payload,
        qos: QoS::from_u8(stored.qos).unwrap_or(QoS::AtMostOnce),
        retain: stored.retain,
        properties,
        delay: Duration::from_secs(u64::from(stored.delay_secs)),
    }
}

pub fn stored_subscription(
    filter: String,
    group: Option<String>,
    o: &SubOptions,
) -> StoredSubscription {
    StoredSubscription {
        filter,
        share_group: group,
        qos: o.qos,
        no_local: o.no_local,
        retain_as_published: o.retain_as_published,
        retain_handling: o.retain_handling,
        subscription_id: o.subscription_id,
    }
}

pub fn options_from(s: &StoredSubscription) -> SubOptions {
    SubOptions {
        qos: s.qos,
        no_local: s.no_local,
        retain_as_published: s.retain_as_published,
        retain_handling: s.retain_handling,
        subscription_id: s.subscription_id,
    }
}

fn protocol_level(v: ProtocolVersion) -> u8 {
    match v {
        ProtocolVersion::V31 => 3,
        ProtocolVersion::V311 => 4,
        ProtocolVersion::V5 => 5,
    }
}

impl SessionState {
    pub(crate) fn stored_delivery(d: &Delivery, inflight: Option<(u16, Phase)>) -> StoredDelivery {
        StoredDelivery {
            msg: stored_message(&d.msg),
            qos: d.qos.as_u8(),
            retain: d.retain,
            sub_ids: d.sub_ids.clone(),
            inflight: inflight.map(|(id, p)| (id, stored_phase(p))),
        }
    }

    /// Give a new delivery its `seq` and write it, when the session is
    /// stored and the message is one a restart can deliver (QoS 1/2).
    pub(crate) fn store_delivery(&mut self, persist: &Persister, d: &mut Delivery) -> Ticket {
        if !self.stored || d.qos == QoS::AtMostOnce {
            return 0;
        }
        self.next_seq += 1;
        d.seq = self.next_seq;
        if let Some(gate) = &d.msg.ack_gate {
            gate.stored();
        }
        persist.submit(Op::PutDelivery {
            client_id: Arc::clone(&self.principal.client_id),
            seq: d.seq,
            delivery: Box::new(Self::stored_delivery(d, None)),
            // QoS 2 is not held back: its PUBREL waits for the next phase
            // to be durable, which a held-back put would delay.
            ack_expected: self.attached.is_some() && d.qos == QoS::AtLeastOnce,
        })
    }

    /// A stored delivery is gone: acknowledged, expired, denied or dropped.
    pub(crate) fn forget_delivery(&self, persist: &Persister, d: &Delivery) {
        if self.stored && d.seq != 0 {
            if let Some(gate) = &d.msg.ack_gate {
                gate.settled();
            }
            persist.submit(Op::RemoveDelivery {
                client_id: Arc::clone(&self.principal.client_id),
                seq: d.seq,
            });
        }
    }

    /// A stored delivery went into flight, or its QoS 2 phase moved.
    pub(crate) fn store_phase(
        &self,
        persist: &Persister,
        seq: u64,
        id: u16,
        phase: Phase,
    ) -> Ticket {
        if self.stored && seq != 0 {
            persist.submit(Op::SetInflight {
                client_id: Arc::clone(&self.principal.client_id),
                seq,
                packet_id: id,
                phase: stored_phase(phase),
            })
        } else {
            0
        }
    }

    /// The session's record as the store keeps it.
    pub(crate) fn record(
        &self,
        owner: Option<&str>,
        subscriptions: Vec<StoredSubscription>,
        will: Option<StoredWill>,
    ) -> StoredSession {
        let mut incoming_qos2: Vec<u16> = self.incoming_qos2.iter().copied().collect();
        incoming_qos2.sort_unstable();
        StoredSession {
            client_id: self.principal.client_id.to_string(),
            owner: owner.map(str::to_owned),
            protocol: protocol_level(self.protocol),
            expiry_secs: u32::try_from(self.expiry.as_secs()).unwrap_or(u32::MAX),
            // The expiry counts from the disconnect, not from this write.
            disconnected_at_ms: match self.attached {
                Some(_) => None,
                None => Some(self.offline_since_ms.unwrap_or_else(now_ms)),
            },
            subscriptions,
            will,
            incoming_qos2,
        }
    }
}

/// Write the session's record (subscriptions, will, expiry, inbound QoS 2
/// state) when it is stored. `will` is the will still to be published, if
/// any.
pub fn write_record(
    broker: &crate::broker::Broker,
    session: &Arc<crate::session::state::Session>,
    will: Option<&Will>,
) -> Ticket {
    if !session.state.lock().stored {
        return 0;
    }
    // Router before state (the lock order).
    let subs: Vec<StoredSubscription> = broker
        .router
        .read()
        .subscriptions_of(&crate::session::state::SubKey(Arc::clone(session)))
        .into_iter()
        .map(|(filter, group, o)| stored_subscription(filter, group, &o))
        .collect();
    let st = session.state.lock();
    if !st.stored || st.ended {
        return 0;
    }
    let record = st.record(session.owner.username(), subs, will.map(stored_will));
    broker.persist.submit(Op::PutSession(Box::new(record)))
}
