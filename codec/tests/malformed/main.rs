//! A table of inputs that break one rule of MQTT 3.1.1 / 5.0 each, with the
//! exact outcome expected (malformed 0x81, protocol error 0x82, too large
//! 0x95, unsupported protocol), plus the near misses that must be accepted.

mod cases;
mod raw;

use bytes::BytesMut;
use raw::*;
use warden_codec::{decode, CodecError, Packet, ProtocolVersion};

const PRE: Option<ProtocolVersion> = None;
const V3: Option<ProtocolVersion> = Some(ProtocolVersion::V311);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Want {
    Malformed,
    Protocol,
    TooLarge,
    Unsupported,
    Accepted,
}

#[test]
fn each_rule_gives_its_error() {
    let mut failures = Vec::new();
    for (name, state, bytes, want) in cases::all() {
        let mut buf = BytesMut::from(&bytes[..]);
        let got = decode(&mut buf, state, 1_000_000);
        let (ok, code) = match (&got, want) {
            (Ok(Some(_)), Want::Accepted) => (buf.is_empty(), None),
            (Err(e @ CodecError::Malformed(_)), Want::Malformed) => {
                (true, Some((e.reason_code().0, 0x81)))
            }
            (Err(e @ CodecError::Protocol(_)), Want::Protocol) => {
                (true, Some((e.reason_code().0, 0x82)))
            }
            (Err(e @ CodecError::PacketTooLarge { .. }), Want::TooLarge) => {
                (true, Some((e.reason_code().0, 0x95)))
            }
            (Err(e @ CodecError::UnsupportedProtocol { .. }), Want::Unsupported) => {
                (e.is_unsupported_protocol(), Some((e.reason_code().0, 0x84)))
            }
            _ => (false, None),
        };
        if !ok || code.is_some_and(|(got, want)| got != want) {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn too_large_names_the_size_without_the_body() {
    let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let err = decode(&mut buf, V3, 1000);
    assert_eq!(
        err,
        Err(CodecError::PacketTooLarge {
            size: 268_435_460,
            max: 1000
        })
    );
    // Exactly at the limit is fine (and then waits for the body).
    let mut buf = BytesMut::from(&[0x30u8, 0x0A][..]);
    assert_eq!(decode(&mut buf, V3, 12), Ok(None));
    assert_eq!(
        decode(&mut buf, V3, 11),
        Err(CodecError::PacketTooLarge { size: 12, max: 11 })
    );
}

#[test]
fn unsupported_protocol_answers_in_the_clients_format() {
    let answer = |level| {
        let mut buf = BytesMut::from(&connect(b"MQTT", level, 0x02, None, &s(b"c"))[..]);
        decode(&mut buf, PRE, 1000)
            .err()
            .and_then(|e| e.unsupported_protocol_connack())
    };
    assert_eq!(answer(6), Some((true, 0x84)));
    assert_eq!(answer(2), Some((false, 0x01)));
    assert_eq!(
        CodecError::Malformed("x").unsupported_protocol_connack(),
        None
    );
}

#[test]
fn accepted_connect_fields() {
    let bytes = connect5(0x42, &[0x11, 0, 0, 0, 30], &cat(&[&s(b"c"), &s(b"pw")]));
    let mut buf = BytesMut::from(&bytes[..]);
    let Ok(Some(Packet::Connect(c))) = decode(&mut buf, PRE, 1000) else {
        panic!("CONNECT did not decode");
    };
    assert_eq!(c.protocol, ProtocolVersion::V5);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "c");
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
    assert_eq!(c.properties.session_expiry_interval, Some(30));
}
