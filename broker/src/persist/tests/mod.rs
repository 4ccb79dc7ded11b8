//! Tests of the session store on the real engines in temp dirs, plus the
//! (ignored) measurements quoted in docs/architecture.md.

mod coalescing;
mod disk;
mod kill;
mod round_trip;
mod writer;

use bytes::Bytes;

use super::{
    Op, Phase, StoredDelivery, StoredMessage, StoredProps, StoredSession, StoredSubscription,
    StoredWill,
};

/// Every v5 property set, so a round trip covers them all.
pub fn full_props() -> StoredProps {
    StoredProps {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/to/me".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr\xff")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "v2".into())],
    }
}

pub fn message(topic: &str, payload: &[u8], expires_at_ms: Option<u64>) -> StoredMessage {
    StoredMessage {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        qos: 1,
        retain: false,
        props: full_props(),
        expires_at_ms,
        origin: "publisher-1".into(),
    }
}

pub fn delivery(topic: &str, inflight: Option<(u16, Phase)>) -> StoredDelivery {
    StoredDelivery {
        msg: message(topic, b"payload \x00\xff", None),
        qos: 1,
        retain: false,
        sub_ids: vec![7, 42],
        inflight,
    }
}

pub fn session(
    client_id: &str,
    disconnected_at_ms: Option<u64>,
    expiry_secs: u32,
) -> StoredSession {
    StoredSession {
        client_id: client_id.into(),
        owner: Some("alice".into()),
        protocol: 5,
        expiry_secs,
        disconnected_at_ms,
        subscriptions: vec![
            StoredSubscription {
                filter: "sensors/+/temp".into(),
                share_group: None,
                qos: 1,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
                subscription_id: Some(7),
            },
            StoredSubscription {
                filter: "jobs/#".into(),
                share_group: Some("workers".into()),
                qos: 2,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
                subscription_id: None,
            },
        ],
        will: Some(StoredWill {
            topic: "clients/gone".into(),
            payload: Bytes::from_static(b"bye"),
            qos: 1,
            retain: true,
            props: full_props(),
            message_expiry: Some(60),
            delay_secs: 5,
        }),
        incoming_qos2: vec![3, 9],
    }
}

pub fn put_delivery(client_id: &str, seq: u64, d: StoredDelivery) -> Op {
    Op::PutDelivery {
        client_id: client_id.into(),
        seq,
        delivery: Box::new(d),
        ack_expected: false,
    }
}

/// A delivery stored for an online subscriber (the writer may hold it back).
pub fn put_online(client_id: &str, seq: u64, d: StoredDelivery) -> Op {
    Op::PutDelivery {
        client_id: client_id.into(),
        seq,
        delivery: Box::new(d),
        ack_expected: true,
    }
}

pub fn remove_delivery(client_id: &str, seq: u64) -> Op {
    Op::RemoveDelivery {
        client_id: client_id.into(),
        seq,
    }
}
