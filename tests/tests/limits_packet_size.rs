//! Maximum packet size in both directions: a client packet above the broker's
//! limit → v5 DISCONNECT 0x95 (v3.1.1: closed); the broker never sends a
//! client a packet above the client's v5 Maximum Packet Size.

use warden_e2e::wire::{MAXIMUM_PACKET_SIZE, TOPIC_ALIAS_MAXIMUM};
use warden_e2e::*;

async fn setup() -> TestBroker {
    let broker = TestBroker::start(BrokerOptions {
        max_packet_size: "1KiB",
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", "pw", "big/#").await;
    broker
}

#[tokio::test]
async fn connack_advertises_the_limits() {
    let broker = setup().await;
    let mut raw = broker.raw().await;
    let c = Connect::new(Version::V5, &client_id("l")).login("alice", "pw");
    let (_, code, props) = raw.connect(&c).await.expect("CONNACK");
    assert_eq!(code, 0);
    assert_eq!(props.u32(MAXIMUM_PACKET_SIZE), Some(1024));
    assert_eq!(props.u16(TOPIC_ALIAS_MAXIMUM), Some(16));
}

#[tokio::test]
async fn v5_packet_above_the_limit_gets_0x95() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("big"), "alice", "pw")
        .await;
    c.publish(&Publish::new("big/x", &[7u8; 2000], 0))
        .await
        .expect("send");
    let end = c.ending(WAIT).await;
    assert_eq!(
        end.disconnect_code(),
        Some(0x95),
        "packet too large: {end:?}"
    );
}

#[tokio::test]
async fn v5_length_above_the_limit_is_refused_before_the_body_arrives() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("big"), "alice", "pw")
        .await;
    // Only the fixed header of a 100 MB PUBLISH: the broker must not wait for it.
    c.send(&[0x30, 0x80, 0xC2, 0xD7, 0x2F])
        .await
        .expect("send header");
    let end = c.ending(WAIT).await;
    assert_eq!(end.disconnect_code(), Some(0x95), "{end:?}");
}

#[tokio::test]
async fn v311_packet_above_the_limit_closes_the_connection() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V311, &client_id("big"), "alice", "pw")
        .await;
    c.publish(&Publish::new("big/x", &[7u8; 2000], 0))
        .await
        .expect("send");
    let end = c.ending(WAIT).await;
    assert!(end.packets.is_empty(), "closed without a packet: {end:?}");
}

#[tokio::test]
async fn broker_respects_the_clients_maximum_packet_size() {
    let broker = setup().await;
    let mut c = Connect::new(Version::V5, &client_id("small")).login("alice", "pw");
    c.props.0.push(Prop::U32(MAXIMUM_PACKET_SIZE, 100));
    let mut small = broker.login_with(c).await;
    small.subscribe("big/#", 0).await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    p.publish_acked(Publish::new("big/x", &[1u8; 500], 1)).await;
    p.publish_acked(Publish::new("big/y", b"fits", 1)).await;
    let got = small.next_publish(WAIT).await.expect("the small message");
    assert_eq!(
        got.payload, b"fits",
        "the 500-byte message is dropped, not sent"
    );
}
