//! What travels from a publisher to its subscribers: one reference-counted
//! [`Message`] per PUBLISH, and a small [`Delivery`] per subscriber that points
//! at it. The payload is never copied on the way.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warden_codec::{Properties, PropertySet};
use warden_policy::QoS;

use crate::wake::Wake;

/// A published message as the router holds it.
#[derive(Debug)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 properties forwarded unchanged to subscribers: payload format,
    /// content type, response topic, correlation data, user properties.
    /// Per-hop properties (topic alias, subscription ids, expiry) are not kept here.
    pub properties: Properties,
    /// When the message expires (v5 Message Expiry Interval), if ever.
    pub expires_at: Option<Instant>,
    /// The publisher's client id, for No Local.
    pub origin: Arc<str>,
    /// The publisher's acknowledgement waiting on this message's stored
    /// deliveries (QoS 1, persistence on), if any.
    pub ack_gate: Option<AckGate>,
}

/// Lets a publisher's PUBACK go out as soon as every persistent subscriber
/// the message was stored for has acknowledged it (or the broker dropped
/// it), without waiting for the session store: nothing acknowledged can be
/// lost then, because no one is owed the message any more. Counted in
/// `SessionState::store_delivery` and `forget_delivery`; the publisher
/// reads it only after routing, when every count-up has happened, so a
/// transient zero while routing is never taken for a release.
#[derive(Debug)]
pub struct AckGate {
    stored: AtomicU32,
    publisher: Arc<Wake>,
}

impl AckGate {
    pub fn new(publisher: Arc<Wake>) -> AckGate {
        AckGate {
            stored: AtomicU32::new(0),
            publisher,
        }
    }

    /// A delivery of the message was written for a persistent session.
    pub(crate) fn stored(&self) {
        self.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// A stored delivery is gone (acknowledged, expired, denied, dropped);
    /// the last one wakes the publisher.
    pub(crate) fn settled(&self) {
        if self.stored.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.publisher.notify_one();
        }
    }

    /// No stored delivery is outstanding (read after routing).
    pub fn is_settled(&self) -> bool {
        self.stored.load(Ordering::Acquire) == 0
    }
}

impl Message {
    /// Seconds left before expiry, or None if it never expires. Some(0) means
    /// it has expired and must not be delivered.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            if left.is_zero() {
                0
            } else {
                // Round up so a message with 0.4 s left is not reported as expired.
                u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0))
                    .unwrap_or(u32::MAX)
            }
        })
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.remaining_expiry(now) == Some(0)
    }

    /// Copy the properties a subscriber may see; per-hop ones are dropped.
    pub fn forwarded_properties(props: &Properties) -> Properties {
        if props.is_empty() {
            // Every 3.x publish and most 5.0 ones: nothing to allocate.
            return Properties::default();
        }
        Properties::from(PropertySet {
            payload_format_indicator: props.payload_format_indicator,
            content_type: props.content_type.clone(),
            response_topic: props.response_topic.clone(),
            correlation_data: props.correlation_data.clone(),
            user_properties: props.user_properties.clone(),
            ..PropertySet::default()
        })
    }

    /// The expiry instant for an interval given in seconds.
    pub fn expiry_from(interval: Option<u32>, now: Instant) -> Option<Instant> {
        interval.map(|secs| now + Duration::from_secs(u64::from(secs)))
    }
}

/// One message on its way to one subscriber.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub msg: Arc<Message>,
    /// The QoS it is delivered at: min(published, subscribed, policy max).
    pub qos: QoS,
    /// The RETAIN flag as the subscriber sees it.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions (v5).
    pub sub_ids: Vec<u32>,
    /// The session's policy epoch this delivery was authorized under
    /// (`SessionState::authorize_delivery`).
    pub epoch: u32,
    /// Its key in the session store (per session, increasing); 0 when it is
    /// not stored (QoS 0, or a session that ends with its connection).
    pub seq: u64,
}
