//! The bytes a message travels in between nodes: the NATS payload is a
//! short binary header followed by the MQTT payload, and the topic is the
//! subject (`subject.rs`), so nothing is said twice. No NATS headers: they
//! are text, and would cost more than the whole header below.
//!
//! ```text
//! byte 0       version (1)
//! byte 1       flags: bits 0-1 QoS, bit 2 RETAIN, bit 3 expiry follows,
//!              bit 4 properties follow
//! bytes 2-9    the sending node's instance id (u64, big endian; random per
//!              process start)
//! varint       sequence number of the message at that instance
//! [varint]     seconds of message expiry left when it was sent
//! [properties] one byte saying which follow (bit 0 payload format,
//!              bit 1 content type, bit 2 response topic, bit 3 correlation
//!              data, bit 4 user properties), then each present one in that
//!              order: payload format as one byte, strings and binary data
//!              as varint length + bytes, user properties as a varint count
//!              of (name, value) string pairs
//! rest         the MQTT payload
//! ```
//!
//! A varint is LEB128 (7 bits per byte, low first). A QoS 0 message with no
//! properties costs 10 bytes plus the sequence number (1 to 10 bytes).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use warden_codec::Properties;
use warden_policy::QoS;

use crate::session::message::Message;

const VERSION: u8 = 1;

const RETAIN: u8 = 1 << 2;
const EXPIRY: u8 = 1 << 3;
const PROPS: u8 = 1 << 4;

const P_FORMAT: u8 = 1;
const P_CONTENT_TYPE: u8 = 1 << 1;
const P_RESPONSE_TOPIC: u8 = 1 << 2;
const P_CORRELATION: u8 = 1 << 3;
const P_USER: u8 = 1 << 4;

/// Why a payload from NATS is not a message of ours.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("truncated")]
    Truncated,
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("invalid QoS")]
    Qos,
    #[error("a string is not UTF-8")]
    Utf8,
}

/// A message as it arrived from another node.
#[derive(Debug, PartialEq)]
pub struct Received {
    pub instance: u64,
    pub seq: u64,
    pub qos: QoS,
    pub retain: bool,
    /// Seconds of expiry left when it was sent.
    pub expiry: Option<u32>,
    pub properties: Properties,
    /// A slice of the NATS payload: not copied.
    pub payload: Bytes,
}

/// Write `msg` as sent by `instance` with sequence number `seq`; `expiry`
/// is its remaining expiry in seconds, if it expires.
pub fn encode(msg: &Message, instance: u64, seq: u64, expiry: Option<u32>) -> Bytes {
    let props = &msg.properties;
    let has_props = props.payload_format_indicator.is_some()
        || props.content_type.is_some()
        || props.response_topic.is_some()
        || props.correlation_data.is_some()
        || !props.user_properties.is_empty();
    let mut out = BytesMut::with_capacity(24 + msg.payload.len());
    out.put_u8(VERSION);
    let mut flags = msg.qos.as_u8();
    if msg.retain {
        flags |= RETAIN;
    }
    if expiry.is_some() {
        flags |= EXPIRY;
    }
    if has_props {
        flags |= PROPS;
    }
    out.put_u8(flags);
    out.put_u64(instance);
    put_varint(&mut out, seq);
    if let Some(e) = expiry {
        put_varint(&mut out, u64::from(e));
    }
    if has_props {
        put_properties(&mut out, props);
    }
    out.put_slice(&msg.payload);
    out.freeze()
}

fn put_properties(out: &mut BytesMut, props: &Properties) {
    let mut present = 0;
    for (bit, set) in [
        (P_FORMAT, props.payload_format_indicator.is_some()),
        (P_CONTENT_TYPE, props.content_type.is_some()),
        (P_RESPONSE_TOPIC, props.response_topic.is_some()),
        (P_CORRELATION, props.correlation_data.is_some()),
        (P_USER, !props.user_properties.is_empty()),
    ] {
        if set {
            present |= bit;
        }
    }
    out.put_u8(present);
    if let Some(f) = props.payload_format_indicator {
        out.put_u8(f);
    }
    if let Some(s) = &props.content_type {
        put_bytes(out, s.as_bytes());
    }
    if let Some(s) = &props.response_topic {
        put_bytes(out, s.as_bytes());
    }
    if let Some(d) = &props.correlation_data {
        put_bytes(out, d);
    }
    if !props.user_properties.is_empty() {
        put_varint(out, props.user_properties.len() as u64);
        for (k, v) in &props.user_properties {
            put_bytes(out, k.as_bytes());
            put_bytes(out, v.as_bytes());
        }
    }
}

/// Read a payload written by [`encode`].
pub fn decode(mut buf: Bytes) -> Result<Received, EnvelopeError> {
    if buf.remaining() < 10 {
        return Err(EnvelopeError::Truncated);
    }
    let version = buf.get_u8();
    if version != VERSION {
        return Err(EnvelopeError::Version(version));
    }
    let flags = buf.get_u8();
    let qos = QoS::from_u8(flags & 0b11).ok_or(EnvelopeError::Qos)?;
    let instance = buf.get_u64();
    let seq = get_varint(&mut buf)?;
    let expiry = if flags & EXPIRY != 0 {
        Some(u32::try_from(get_varint(&mut buf)?).unwrap_or(u32::MAX))
    } else {
        None
    };
    let properties = if flags & PROPS != 0 {
        get_properties(&mut buf)?
    } else {
        Properties::default()
    };
    Ok(Received {
        instance,
        seq,
        qos,
        retain: flags & RETAIN != 0,
        expiry,
        properties,
        payload: buf,
    })
}

fn get_properties(buf: &mut Bytes) -> Result<Properties, EnvelopeError> {
    if !buf.has_remaining() {
        return Err(EnvelopeError::Truncated);
    }
    let present = buf.get_u8();
    let mut props = Properties::default();
    if present & P_FORMAT != 0 {
        if !buf.has_remaining() {
            return Err(EnvelopeError::Truncated);
        }
        props.payload_format_indicator = Some(buf.get_u8());
    }
    if present & P_CONTENT_TYPE != 0 {
        props.content_type = Some(get_string(buf)?);
    }
    if present & P_RESPONSE_TOPIC != 0 {
        props.response_topic = Some(get_string(buf)?);
    }
    if present & P_CORRELATION != 0 {
        props.correlation_data = Some(get_bytes(buf)?);
    }
    if present & P_USER != 0 {
        let n = get_varint(buf)?;
        // Each pair takes at least two bytes: a count beyond that is a lie,
        // and must not size an allocation.
        if n > buf.remaining() as u64 / 2 {
            return Err(EnvelopeError::Truncated);
        }
        for _ in 0..n {
            let k = get_string(buf)?;
            let v = get_string(buf)?;
            props.user_properties.push((k, v));
        }
    }
    Ok(props)
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn get_varint(buf: &mut Bytes) -> Result<u64, EnvelopeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return Err(EnvelopeError::Truncated);
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(EnvelopeError::Truncated)
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, EnvelopeError> {
    let len = get_varint(buf)?;
    let len = usize::try_from(len).map_err(|_| EnvelopeError::Truncated)?;
    if buf.remaining() < len {
        return Err(EnvelopeError::Truncated);
    }
    Ok(buf.split_to(len))
}

fn get_string(buf: &mut Bytes) -> Result<String, EnvelopeError> {
    let b = get_bytes(buf)?;
    String::from_utf8(b.to_vec()).map_err(|_| EnvelopeError::Utf8)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use warden_codec::PropertySet;

    use super::*;

    fn message(qos: QoS, retain: bool, properties: Properties, payload: &[u8]) -> Message {
        Message {
            topic: Arc::from("a/b"),
            payload: Bytes::copy_from_slice(payload),
            qos,
            retain,
            properties,
            expires_at: None,
            origin: Arc::from("c"),
            ack_gate: None,
        }
    }

    #[test]
    fn a_bare_message_costs_a_dozen_bytes() {
        let m = message(QoS::AtMostOnce, false, Properties::default(), b"hi");
        let bytes = encode(&m, 7, 5, None);
        assert_eq!(bytes.len(), 10 + 1 + 2);
        let r = decode(bytes).expect("decodes");
        assert_eq!(
            (r.instance, r.seq, r.qos, r.retain),
            (7, 5, QoS::AtMostOnce, false)
        );
        assert_eq!(&r.payload[..], b"hi");
        assert_eq!(r.expiry, None);
    }

    #[test]
    fn truncations_and_other_versions_are_refused() {
        let props = Properties::from(PropertySet {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..PropertySet::default()
        });
        let m = message(QoS::ExactlyOnce, true, props, b"");
        let bytes = encode(&m, 1, u64::MAX, Some(9));
        for cut in 0..bytes.len() {
            assert!(decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut other = bytes.to_vec();
        other[0] = 2;
        assert_eq!(decode(Bytes::from(other)), Err(EnvelopeError::Version(2)));
        let mut bad_qos = bytes.to_vec();
        bad_qos[1] |= 0b11;
        assert_eq!(decode(Bytes::from(bad_qos)), Err(EnvelopeError::Qos));
    }

    fn props() -> impl Strategy<Value = Properties> {
        (
            proptest::option::of(0u8..2),
            proptest::option::of(".{0,8}"),
            proptest::option::of(".{0,8}"),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            proptest::collection::vec((".{0,4}", ".{0,4}"), 0..3),
        )
            .prop_map(|(f, ct, rt, cd, up)| {
                Properties::from(PropertySet {
                    payload_format_indicator: f,
                    content_type: ct,
                    response_topic: rt,
                    correlation_data: cd.map(Bytes::from),
                    user_properties: up,
                    ..PropertySet::default()
                })
            })
    }

    proptest! {
        #[test]
        fn what_is_encoded_decodes(
            qos in 0u8..3,
            retain in any::<bool>(),
            instance in any::<u64>(),
            seq in any::<u64>(),
            expiry in proptest::option::of(any::<u32>()),
            properties in props(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let qos = QoS::from_u8(qos).unwrap_or(QoS::AtMostOnce);
            let m = message(qos, retain, properties.clone(), &payload);
            let r = decode(encode(&m, instance, seq, expiry)).expect("decodes");
            prop_assert_eq!(r, Received {
                instance, seq, qos, retain, expiry, properties,
                payload: Bytes::from(payload),
            });
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(Bytes::from(bytes));
        }
    }
}
