//! The malformed-input table: one rule per row, grouped by packet.

use warden_codec::ProtocolVersion;

use super::raw::*;
use super::Want::{self, *};

const V3: Option<ProtocolVersion> = Some(ProtocolVersion::V311);
const V5: Option<ProtocolVersion> = Some(ProtocolVersion::V5);
const PRE: Option<ProtocolVersion> = None;

pub type Case = (&'static str, Option<ProtocolVersion>, Vec<u8>, Want);

pub fn all() -> Vec<Case> {
    let groups: [fn() -> Vec<Case>; 6] = [
        fixed_header_cases,
        connect_cases,
        publish_cases,
        acknowledgements_cases,
        subscribe_unsubscribe_cases,
        pingreq_disconnect_auth_cases,
    ];
    groups.iter().flat_map(|group| group()).collect()
}

/// Fixed header.
#[rustfmt::skip]
fn fixed_header_cases() -> Vec<Case> {
    let cid = s(b"c");
    vec![
        ("reserved packet type 0", V3, vec![0x00, 0x00], Malformed),
        ("first packet not CONNECT", PRE, vec![0xC0, 0x00], Protocol),
        ("second CONNECT", V3, connect3(0x02, &cid), Protocol),
        ("CONNECT fixed flags", PRE, { let mut c = connect3(0x02, &cid); c[0] = 0x11; c }, Malformed),
        ("PUBREL flags 0000", V3, vec![0x60, 2, 0, 1], Malformed),
        ("SUBSCRIBE flags 0000", V3, frame(0x80, &cat(&[&[0, 1], &s(b"a"), &[0]])), Malformed),
        ("UNSUBSCRIBE flags 0000", V3, frame(0xA0, &cat(&[&[0, 1], &s(b"a")])), Malformed),
        ("PUBACK flags 0010", V3, vec![0x42, 2, 0, 1], Malformed),
        ("PINGREQ flags 0001", V3, vec![0xC1, 0], Malformed),
        ("PUBLISH QoS 3", V3, frame(0x36, &cat(&[&s(b"t"), &[0, 1]])), Malformed),
        ("PUBLISH QoS 0 DUP 3.1.1", V3, frame(0x38, &s(b"t")), Malformed),
        ("PUBLISH QoS 0 DUP 5.0", V5, frame(0x38, &cat(&[&s(b"t"), &[0]])), Malformed),
        ("AUTH before 5.0", V3, vec![0xF0, 0], Malformed),
        ("remaining length not minimal", V3, vec![0xC0, 0x80, 0x00], Malformed),
        ("remaining length of five bytes", V3, vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Malformed),
        ("too large, header only", V3, vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F], TooLarge),
    ]
}

/// CONNECT.
#[rustfmt::skip]
fn connect_cases() -> Vec<Case> {
    let cid = s(b"c");
    vec![
        ("CONNECT reserved flag", PRE, connect3(0x03, &cid), Malformed),
        ("will QoS without will flag", PRE, connect3(0x0A, &cid), Malformed),
        ("will retain without will flag", PRE, connect3(0x22, &cid), Malformed),
        ("will QoS 3", PRE, connect3(0x1E, &cat(&[&cid, &s(b"w"), &s(b"m")])), Malformed),
        ("will topic with wildcard", PRE, connect3(0x06, &cat(&[&cid, &s(b"w/#"), &s(b"m")])), Malformed),
        ("password without user name 3.1.1", PRE, connect3(0x42, &cat(&[&cid, &s(b"pw")])), Malformed),
        ("password without user name 5.0", PRE, connect5(0x42, &[], &cat(&[&cid, &s(b"pw")])), Accepted),
        ("protocol level 6", PRE, connect(b"MQTT", 6, 0x02, None, &cid), Unsupported),
        ("protocol level 3 named MQTT", PRE, connect(b"MQTT", 3, 0x02, None, &cid), Unsupported),
        ("MQIsdp at level 4", PRE, connect(b"MQIsdp", 4, 0x02, None, &cid), Unsupported),
        ("unknown protocol name", PRE, connect(b"HTTP", 4, 0x02, None, &cid), Unsupported),
        ("MQTT 3.1 accepted", PRE, connect(b"MQIsdp", 3, 0x02, None, &cid), Accepted),
        ("client id invalid UTF-8", PRE, connect3(0x02, &s(&[0xC3])), Malformed),
        ("client id with U+0000", PRE, connect3(0x02, &s(b"a\0b")), Malformed),
        ("client id with encoded surrogate", PRE, connect3(0x02, &s(&[0xED, 0xA0, 0x80])), Malformed),
        ("string longer than packet", PRE, connect3(0x02, &[0, 9, b'c']), Malformed),
        ("byte after CONNECT payload", PRE, connect3(0x02, &cat(&[&cid, &[0]])), Malformed),
        ("receive maximum 0", PRE, connect5(0x02, &[0x21, 0, 0], &cid), Protocol),
        ("maximum packet size 0", PRE, connect5(0x02, &[0x27, 0, 0, 0, 0], &cid), Protocol),
        ("request problem information 2", PRE, connect5(0x02, &[0x17, 2], &cid), Protocol),
        ("auth data without method", PRE, connect5(0x02, &[0x16, 0, 1, 9], &cid), Protocol),
        ("topic alias in CONNECT", PRE, connect5(0x02, &[0x23, 0, 1], &cid), Malformed),
        ("session expiry twice", PRE, connect5(0x02, &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], &cid), Protocol),
        ("session expiry in will properties", PRE, connect5(0x06, &[], &cat(&[&cid, &p(&[0x11, 0, 0, 0, 1]), &s(b"w"), &s(b"m")])), Malformed),
        ("will delay in will properties", PRE, connect5(0x06, &[], &cat(&[&cid, &p(&[0x18, 0, 0, 0, 1]), &s(b"w"), &s(b"m")])), Accepted),
    ]
}

/// PUBLISH.
#[rustfmt::skip]
fn publish_cases() -> Vec<Case> {
    vec![
        ("topic with +", V3, frame(0x30, &s(b"a/+")), Malformed),
        ("topic with #", V5, frame(0x30, &cat(&[&s(b"a/#"), &[0]])), Malformed),
        ("empty topic 3.1.1", V3, frame(0x30, &s(b"")), Malformed),
        ("empty topic without alias 5.0", V5, frame(0x30, &cat(&[&s(b""), &[0]])), Protocol),
        ("empty topic with alias 5.0", V5, frame(0x30, &cat(&[&s(b""), &p(&[0x23, 0, 1])])), Accepted),
        ("topic alias 0", V5, publish5(&[0x23, 0, 0]), Protocol),
        ("packet id 0 at QoS 1", V3, frame(0x32, &cat(&[&s(b"t"), &[0, 0]])), Protocol),
        ("session expiry in PUBLISH", V5, publish5(&[0x11, 0, 0, 0, 1]), Malformed),
        ("unknown property 0x7F", V5, publish5(&[0x7F, 0]), Malformed),
        ("message expiry twice", V5, publish5(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]), Protocol),
        ("user property twice", V5, publish5(&cat(&[ &[0x26], &s(b"k"), &s(b"v"), &[0x26], &s(b"k"), &s(b"v"), ])), Accepted),
        ("two subscription ids in PUBLISH", V5, publish5(&[0x0B, 1, 0x0B, 2]), Accepted),
        ("subscription id 0", V5, publish5(&[0x0B, 0]), Protocol),
        ("payload format 2", V5, publish5(&[0x01, 2]), Protocol),
        ("response topic with wildcard", V5, publish5(&cat(&[&[0x08], &s(b"r/+")])), Protocol),
        ("property length beyond packet", V5, frame(0x30, &cat(&[&s(b"t"), &[9, 0x01]])), Malformed),
        ("truncated property value", V5, frame(0x30, &cat(&[&s(b"t"), &[2, 0x02, 0]])), Malformed),
    ]
}

/// Acknowledgements.
#[rustfmt::skip]
fn acknowledgements_cases() -> Vec<Case> {
    vec![
        ("PUBACK packet id 0", V3, vec![0x40, 2, 0, 0], Protocol),
        ("PUBACK with extra byte 3.1.1", V3, vec![0x40, 3, 0, 1, 0], Malformed),
        ("PUBACK reason 0x92", V5, vec![0x40, 3, 0, 1, 0x92], Malformed),
        ("PUBREL reason 0x10", V5, vec![0x62, 3, 0, 1, 0x10], Malformed),
        ("PUBREL reason 0x92", V5, vec![0x62, 3, 0, 1, 0x92], Accepted),
        ("PUBCOMP short form", V5, vec![0x70, 2, 0, 1], Accepted),
        ("CONNACK reserved flags", V3, vec![0x20, 2, 0x02, 0], Malformed),
        ("CONNACK session present on refusal", V3, vec![0x20, 2, 0x01, 0x05], Protocol),
        ("CONNACK return code 6", V3, vec![0x20, 2, 0, 6], Malformed),
        ("SUBACK code 3", V3, vec![0x90, 3, 0, 1, 3], Malformed),
        ("SUBACK without codes", V3, vec![0x90, 2, 0, 1], Protocol),
        ("UNSUBACK 3.1.1 with a code", V3, vec![0xB0, 3, 0, 1, 0], Malformed),
        ("UNSUBACK code 0x01 5.0", V5, vec![0xB0, 4, 0, 1, 0, 0x01], Malformed),
    ]
}

/// SUBSCRIBE / UNSUBSCRIBE.
#[rustfmt::skip]
fn subscribe_unsubscribe_cases() -> Vec<Case> {
    vec![
        ("SUBSCRIBE without filters 3.1.1", V3, vec![0x82, 2, 0, 1], Protocol),
        ("SUBSCRIBE without filters 5.0", V5, vec![0x82, 3, 0, 1, 0], Protocol),
        ("SUBSCRIBE packet id 0", V3, frame(0x82, &cat(&[&[0, 0], &s(b"a"), &[0]])), Protocol),
        ("SUBSCRIBE filter without options", V3, frame(0x82, &cat(&[&[0, 1], &s(b"a")])), Malformed),
        ("SUBSCRIBE reserved bits 3.1.1", V3, frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x04]])), Malformed),
        ("SUBSCRIBE QoS 3 3.1.1", V3, frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x03]])), Malformed),
        ("SUBSCRIBE reserved bits 5.0", V5, subscribe5(&[], b"a", 0x40), Malformed),
        ("SUBSCRIBE QoS 3 5.0", V5, subscribe5(&[], b"a", 0x03), Protocol),
        ("retain handling 3", V5, subscribe5(&[], b"a", 0x30), Protocol),
        ("No Local on a shared subscription", V5, subscribe5(&[], b"$share/g/a", 0x04), Protocol),
        ("all 5.0 options", V5, subscribe5(&[], b"a/+", 0x2E), Accepted),
        ("two subscription ids in SUBSCRIBE", V5, subscribe5(&[0x0B, 1, 0x0B, 2], b"a", 0), Protocol),
        ("reason string in SUBSCRIBE", V5, subscribe5(&cat(&[&[0x1F], &s(b"r")]), b"a", 0), Malformed),
        ("UNSUBSCRIBE without filters", V3, vec![0xA2, 2, 0, 1], Protocol),
        ("UNSUBSCRIBE packet id 0", V3, frame(0xA2, &cat(&[&[0, 0], &s(b"a")])), Protocol),
    ]
}

/// PINGREQ, DISCONNECT, AUTH.
#[rustfmt::skip]
fn pingreq_disconnect_auth_cases() -> Vec<Case> {
    vec![
        ("PINGREQ with a body", V3, vec![0xC0, 1, 0], Malformed),
        ("DISCONNECT with a body 3.1.1", V3, vec![0xE0, 1, 0], Malformed),
        ("DISCONNECT reason 0x01", V5, vec![0xE0, 1, 0x01], Malformed),
        ("DISCONNECT with will 0x04", V5, vec![0xE0, 1, 0x04], Accepted),
        ("DISCONNECT with session expiry", V5, vec![0xE0, 7, 0, 5, 0x11, 0, 0, 0, 9], Accepted),
        ("DISCONNECT with topic alias", V5, vec![0xE0, 5, 0, 3, 0x23, 0, 1], Malformed),
        ("AUTH reason 0x01", V5, vec![0xF0, 2, 0x01, 0], Malformed),
        ("AUTH empty", V5, vec![0xF0, 0], Accepted),
    ]
}
