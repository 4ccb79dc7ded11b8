//! Malformed input closes that one connection: v5 gets DISCONNECT 0x81
//! (malformed) or 0x82 (protocol error) first, v3.1.1 is just closed. Other
//! connections are unaffected.

use warden_e2e::wire::{frame, SUBSCRIPTION_ID};
use warden_e2e::*;
use warden_e2e::{raw, wire};

async fn setup() -> TestBroker {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "m/#").await;
    broker
}

/// Sends `bytes` after a successful CONNECT and returns how the connection ended.
async fn after_connect(broker: &TestBroker, version: Version, bytes: &[u8]) -> raw::Ending {
    let mut c = broker.login(version, &client_id("m"), "alice", "pw").await;
    c.send(bytes).await.expect("send");
    c.ending(WAIT).await
}

fn topic_bytes(topic: &[u8]) -> Vec<u8> {
    let mut b = (topic.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(topic);
    b
}

/// Each case: name, bytes, v5 reason code.
fn cases() -> Vec<(&'static str, Vec<u8>, u8)> {
    let mut publish_qos3 = topic_bytes(b"m/a");
    publish_qos3.extend([0, 1, 0]);
    let mut nul_topic = topic_bytes(b"m/\0");
    nul_topic.push(0);
    let mut surrogate = topic_bytes(&[b'm', b'/', 0xED, 0xA0, 0x80]);
    surrogate.push(0);
    let mut sub_bad_flags = vec![0, 1, 0];
    sub_bad_flags.extend(topic_bytes(b"m/a"));
    sub_bad_flags.push(0);
    let mut sub_reserved_opts = vec![0, 1, 0];
    sub_reserved_opts.extend(topic_bytes(b"m/a"));
    sub_reserved_opts.push(0xC0);
    let mut sub_id_zero = vec![0, 1, 2, SUBSCRIPTION_ID, 0];
    sub_id_zero.extend(topic_bytes(b"m/a"));
    sub_id_zero.push(0);
    let mut shared_no_local = vec![0, 1, 0];
    shared_no_local.extend(topic_bytes(b"$share/g/m/#"));
    shared_no_local.push(0x05);
    let mut empty_topic = topic_bytes(b"");
    empty_topic.push(0);
    vec![
        ("PUBLISH with QoS 3", frame(0x36, &publish_qos3), 0x81),
        ("U+0000 in a topic", frame(0x30, &nul_topic), 0x81),
        ("UTF-16 surrogate in a topic", frame(0x30, &surrogate), 0x81),
        (
            "remaining length of 5 bytes",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            0x81,
        ),
        (
            "SUBSCRIBE with reserved flags 0000",
            frame(0x80, &sub_bad_flags),
            0x81,
        ),
        (
            "SUBSCRIBE options reserved bits",
            frame(0x82, &sub_reserved_opts),
            0x81,
        ),
        ("PINGREQ with a body", frame(0xC0, &[0]), 0x81),
        (
            "second CONNECT",
            wire::encode_connect(&Connect::new(Version::V5, "again")),
            0x82,
        ),
        ("subscription identifier 0", frame(0x82, &sub_id_zero), 0x82),
        (
            "no-local on a shared subscription",
            frame(0x82, &shared_no_local),
            0x82,
        ),
        (
            "empty topic without an alias",
            frame(0x30, &empty_topic),
            0x82,
        ),
    ]
}

#[tokio::test]
async fn v5_malformed_packets_get_the_spec_reason_code_and_close() {
    let broker = setup().await;
    let mut wrong = Vec::new();
    for (name, bytes, want) in cases() {
        let end = after_connect(&broker, Version::V5, &bytes).await;
        let got = end.disconnect_code();
        if got != Some(want) {
            wrong.push(format!(
                "{name}: want DISCONNECT 0x{want:02x}, got {got:x?} ({:?})",
                end.end
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn v311_malformed_packets_close_without_a_reply() {
    let broker = setup().await;
    let mut wrong = Vec::new();
    for (name, bytes, _) in cases() {
        let v5_only = [
            "subscription identifier 0",
            "no-local on a shared subscription",
            "empty topic without an alias",
            "AUTH without an authentication method",
        ];
        if v5_only.contains(&name) {
            continue; // v5 only
        }
        let bytes = if name == "second CONNECT" {
            wire::encode_connect(&Connect::new(Version::V311, "again"))
        } else {
            bytes
        };
        let end = after_connect(&broker, Version::V311, &bytes).await;
        if !end.packets.is_empty() {
            wrong.push(format!("{name}: got {:?} before the close", end.packets));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn malformed_connect_is_closed_without_connack_success() {
    let broker = setup().await;
    let bad = [
        frame(
            0x10,
            &[0, 4, b'M', b'Q', b'T', b'X', 4, 2, 0, 60, 0, 1, b'x'],
        ),
        frame(
            0x10,
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 3, 0, 60, 0, 1, b'x'],
        ),
        frame(0x30, &[0, 1, b'a']),
    ];
    for bytes in bad {
        let mut raw = broker.raw().await;
        raw.send(&bytes).await.expect("send");
        let end = raw.ending(WAIT).await;
        let accepted = end
            .packets
            .iter()
            .any(|p| matches!(p, Incoming::ConnAck { code: 0, .. }));
        assert!(!accepted, "{bytes:02x?} accepted: {end:?}");
    }
}

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_then_close() {
    let broker = setup().await;
    let mut raw = broker.raw().await;
    raw.transcript = Some(Vec::new());
    let body = [0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 60, 0, 1, b'x'];
    raw.send(&frame(0x10, &body)).await.expect("send");
    let end = raw.ending(WAIT).await;
    let bytes = raw.transcript.take().unwrap_or_default();
    // v3.1.1 [MQTT-3.1.2-2]: CONNACK 0x01; v5 §3.1.2.2 allows CONNACK 0x84
    // in the 5.0 format instead. Either, and then the connection closes.
    let v311 = [0x20, 0x02, 0x00, 0x01];
    let v5 = bytes.len() >= 5 && bytes[..4] == [0x20, bytes[1], 0x00, 0x84];
    assert!(bytes == v311 || v5, "got {bytes:02x?} ({end:?})");
}

#[tokio::test]
async fn other_connections_survive_a_malformed_one() {
    let broker = setup().await;
    let mut good = broker
        .login(Version::V5, &client_id("good"), "alice", "pw")
        .await;
    good.subscribe("m/#", 1).await;
    after_connect(&broker, Version::V5, &frame(0x36, &[0, 1, b'm', 0, 1])).await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    p.publish_acked(Publish::new("m/ok", b"still here", 1))
        .await;
    assert_eq!(
        good.next_publish(WAIT).await.expect("delivered").payload,
        b"still here"
    );
}
