//! v5 PUBLISH properties: topic aliases, message expiry, user properties and
//! request/response properties passed through unchanged.

use std::time::Duration;

use warden_e2e::wire;
use warden_e2e::wire::{
    CONTENT_TYPE, CORRELATION_DATA, MESSAGE_EXPIRY, PAYLOAD_FORMAT, RESPONSE_TOPIC, TOPIC_ALIAS,
};
use warden_e2e::*;

async fn setup() -> (TestBroker, RawClient, RawClient) {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "pp/#").await;
    let mut s = broker
        .login(Version::V5, &client_id("s"), "alice", "pw")
        .await;
    s.subscribe("pp/#", 1).await;
    let p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    (broker, s, p)
}

#[tokio::test]
async fn topic_alias_from_the_client_is_resolved() {
    let (_broker, mut s, mut p) = setup().await;
    let mut first = Publish::new("pp/alias", b"1", 1);
    first.props.0.push(Prop::U16(TOPIC_ALIAS, 3));
    assert_eq!(p.publish_acked(first).await, 0);
    let mut second = Publish::new("", b"2", 1);
    second.props.0.push(Prop::U16(TOPIC_ALIAS, 3));
    assert_eq!(p.publish_acked(second).await, 0);
    for want in [b"1", b"2"] {
        let got = s.next_publish(WAIT).await.expect("delivered");
        assert_eq!(
            (got.topic.as_str(), got.payload.as_slice()),
            ("pp/alias", &want[..])
        );
    }
}

#[tokio::test]
async fn topic_alias_above_the_maximum_is_a_protocol_error() {
    let (_broker, _s, mut p) = setup().await;
    let mut bad = Publish::new("pp/x", b"1", 0);
    bad.props.0.push(Prop::U16(TOPIC_ALIAS, 17));
    p.publish(&bad).await.expect("send");
    let end = p.ending(WAIT).await;
    assert_eq!(
        end.disconnect_code(),
        Some(0x94),
        "Topic Alias invalid: {end:?}"
    );
}

#[tokio::test]
async fn unknown_topic_alias_is_a_protocol_error() {
    let (_broker, _s, mut p) = setup().await;
    let mut bad = Publish::new("", b"1", 0);
    bad.props.0.push(Prop::U16(TOPIC_ALIAS, 5));
    p.publish(&bad).await.expect("send");
    let end = p.ending(WAIT).await;
    assert_eq!(
        end.disconnect_code(),
        Some(0x82),
        "alias never set: {end:?}"
    );
}

#[tokio::test]
async fn user_and_request_response_properties_pass_through_unchanged() {
    let (_broker, mut s, mut p) = setup().await;
    let mut m = Publish::new("pp/req", b"{}", 1);
    m.props.0.extend([
        Prop::Byte(PAYLOAD_FORMAT, 1),
        Prop::Str(CONTENT_TYPE, "application/json".into()),
        Prop::Str(RESPONSE_TOPIC, "pp/reply".into()),
        Prop::Bin(CORRELATION_DATA, vec![0, 1, 2, 0xFF]),
        Prop::Pair("k".into(), "v1".into()),
        Prop::Pair("k".into(), "v2".into()),
        Prop::Pair("other".into(), "x".into()),
    ]);
    p.publish_acked(m).await;
    let got = s.next_publish(WAIT).await.expect("delivered");
    assert_eq!(got.props.str(CONTENT_TYPE), Some("application/json"));
    assert_eq!(got.props.str(RESPONSE_TOPIC), Some("pp/reply"));
    assert_eq!(got.props.bin(CORRELATION_DATA), Some(&[0, 1, 2, 0xFF][..]));
    let user = got.props.user();
    let want: Vec<(String, String)> = [("k", "v1"), ("k", "v2"), ("other", "x")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(user, want, "user properties in order, duplicates kept");
}

#[tokio::test]
async fn expired_message_is_not_delivered_and_remaining_expiry_is_sent() {
    let (broker, _s, mut p) = setup().await;
    let id = client_id("offline");
    let mut c = Connect::new(Version::V5, &id).login("alice", "pw");
    c.clean = false;
    c.props.0.push(Prop::U32(wire::SESSION_EXPIRY, 300));
    let mut off = broker.login_with(c.clone()).await;
    off.subscribe("pp/#", 1).await;
    off.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut short = Publish::new("pp/exp", b"short", 1);
    short.props.0.push(Prop::U32(MESSAGE_EXPIRY, 1));
    p.publish_acked(short).await;
    let mut long = Publish::new("pp/exp", b"long", 1);
    long.props.0.push(Prop::U32(MESSAGE_EXPIRY, 100));
    p.publish_acked(long).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;

    c.clean = false;
    let mut back = broker.login_with(c).await;
    let got = back.next_publish(WAIT).await.expect("unexpired message");
    assert_eq!(got.payload, b"long", "the expired one is dropped");
    let left = got
        .props
        .u32(MESSAGE_EXPIRY)
        .expect("expiry property forwarded");
    assert!(
        (90..100).contains(&left),
        "remaining expiry {left}, want about 98"
    );
    back.expect_no_publish(QUIET, "expired message").await;
}
