//! Proptest strategies shared by the codec tests: valid packets for each
//! protocol version, with only the properties each packet type allows.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use warden_codec::*;

/// Where a property block sits (mirrors the table in MQTT 5.0 §2.2.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubResp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

pub fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _é€-]{0,10}"
}

pub fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9$é]{1,5}(/[a-z0-9é]{0,5}){0,3}"
}

pub fn filter() -> impl Strategy<Value = String> {
    prop_oneof![
        topic(),
        "[a-z]{1,4}/\\+/[a-z]{1,4}",
        "[a-z]{1,4}/#",
        Just("#".to_owned())
    ]
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..20).prop_map(Bytes::from)
}

fn flag() -> impl Strategy<Value = Option<bool>> {
    option::of(any::<bool>())
}

/// Every property with a value valid somewhere; `mask` then keeps the
/// ones allowed in the packet type.
fn all_properties() -> impl Strategy<Value = Properties> {
    let publish = (
        option::of(0u8..=1),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic()),
        option::of(binary()),
        vec(1u32..=268_435_455, 0..3),
        option::of(1u16..),
    );
    let connect = (
        option::of(any::<u32>()),
        option::of(text()),
        option::of(binary()),
        flag(),
        flag(),
        option::of(1u16..),
        option::of(any::<u16>()),
        option::of(1u32..),
        option::of(any::<u32>()),
    );
    let connack = (
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(0u8..=1),
        flag(),
        flag(),
        flag(),
        flag(),
    );
    let users = vec((text(), text()), 0..3);
    (publish, connect, connack, users).prop_map(|(p, c, a, users)| {
        Properties::from(PropertySet {
            payload_format_indicator: p.0,
            message_expiry_interval: p.1,
            content_type: p.2,
            response_topic: p.3,
            correlation_data: p.4,
            subscription_identifiers: p.5,
            topic_alias: p.6,
            session_expiry_interval: c.0,
            authentication_data: c.2.filter(|_| c.1.is_some()),
            authentication_method: c.1,
            request_problem_information: c.3,
            request_response_information: c.4,
            receive_maximum: c.5,
            topic_alias_maximum: c.6,
            maximum_packet_size: c.7,
            will_delay_interval: c.8,
            assigned_client_identifier: a.0,
            server_keep_alive: a.1,
            response_information: a.2,
            server_reference: a.3,
            reason_string: a.4,
            maximum_qos: a.5,
            retain_available: a.6,
            wildcard_subscription_available: a.7,
            subscription_identifier_available: a.8,
            shared_subscription_available: a.9,
            user_properties: users,
        })
    })
}

/// Clears the properties `ctx` does not allow.
pub fn mask(mut p: Properties, ctx: Ctx) -> Properties {
    use Ctx::*;
    let keep = |allowed: &[Ctx]| allowed.contains(&ctx);
    if !keep(&[Publish, Will]) {
        p.payload_format_indicator = None;
        p.message_expiry_interval = None;
        p.content_type = None;
        p.response_topic = None;
        p.correlation_data = None;
    }
    if !keep(&[Publish, Subscribe]) {
        p.subscription_identifiers.clear();
    }
    if ctx == Subscribe {
        p.subscription_identifiers.truncate(1);
    }
    if !keep(&[Publish]) {
        p.topic_alias = None;
    }
    if !keep(&[Connect, ConnAck, Disconnect]) {
        p.session_expiry_interval = None;
    }
    if !keep(&[Connect, ConnAck, Auth]) {
        p.authentication_method = None;
        p.authentication_data = None;
    }
    if !keep(&[Connect]) {
        p.request_problem_information = None;
        p.request_response_information = None;
    }
    if !keep(&[Connect, ConnAck]) {
        p.receive_maximum = None;
        p.topic_alias_maximum = None;
        p.maximum_packet_size = None;
    }
    if !keep(&[Will]) {
        p.will_delay_interval = None;
    }
    if !keep(&[ConnAck]) {
        p.assigned_client_identifier = None;
        p.server_keep_alive = None;
        p.response_information = None;
        p.maximum_qos = None;
        p.retain_available = None;
        p.wildcard_subscription_available = None;
        p.subscription_identifier_available = None;
        p.shared_subscription_available = None;
    }
    if !keep(&[ConnAck, Disconnect]) {
        p.server_reference = None;
    }
    if keep(&[Connect, Will, Publish, Subscribe, Unsubscribe]) {
        p.reason_string = None;
    }
    p
}

/// Properties for `ctx` in `version`: always empty before 5.0.
pub fn props(version: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<Properties> {
    if version.is_v5() {
        all_properties().prop_map(move |p| mask(p, ctx)).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

/// Encodes `packet` and checks `encoded_len` agrees.
pub fn encode_checked(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    let result = encode(packet, version, &mut buf);
    assert_eq!(result, Ok(()), "encode failed for {packet:?}");
    assert_eq!(
        buf.len(),
        encoded_len(packet, version),
        "encoded_len for {packet:?}"
    );
    buf
}

/// Decodes with the version a server would pass: `None` for CONNECT.
pub fn decode_as_server(
    buf: &mut BytesMut,
    version: ProtocolVersion,
) -> Result<Option<Packet>, CodecError> {
    let state = if buf.first().is_some_and(|b| b >> 4 == 1) {
        None
    } else {
        Some(version)
    };
    decode(buf, state, u32::MAX)
}
