//! Subscription matching and v5 options: `+`/`#`, `$`-topics excluded from
//! leading wildcards, no-local, subscription identifiers, unsubscribe.

use warden_e2e::wire;
use warden_e2e::wire::SUBSCRIPTION_ID;
use warden_e2e::*;

async fn setup() -> TestBroker {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "#").await;
    broker
        .allow("alice", "publish,subscribe,receive", "$app/#")
        .await;
    broker
}

#[tokio::test]
async fn wildcards_match_and_dollar_topics_are_excluded_from_leading_wildcards() {
    let broker = setup().await;
    let mut s = broker
        .login(Version::V5, &client_id("s"), "alice", "pw")
        .await;
    s.subscribe_with(
        1,
        &[Sub::new("#", 0), Sub::new("+/x", 0)],
        &Props::default(),
    )
    .await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    p.publish_acked(Publish::new("$app/x", b"dollar", 1)).await;
    s.expect_no_publish(QUIET, "# and +/x must not match $app/x")
        .await;
    p.publish_acked(Publish::new("a/x", b"plain", 1)).await;
    let got = s.next_publish(WAIT).await.expect("a/x matches");
    assert_eq!(got.topic, "a/x");
    s.expect_no_publish(QUIET, "overlapping subscriptions: one copy in v5")
        .await;

    let mut d = broker
        .login(Version::V5, &client_id("d"), "alice", "pw")
        .await;
    d.subscribe("$app/+", 0).await;
    p.publish_acked(Publish::new("$app/x", b"dollar", 1)).await;
    assert_eq!(
        d.next_publish(WAIT).await.expect("explicit $ filter").topic,
        "$app/x"
    );
}

#[tokio::test]
async fn v5_no_local_suppresses_own_messages() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("nl"), "alice", "pw")
        .await;
    let mut sub = Sub::new("nl/#", 1);
    sub.no_local = true;
    c.subscribe_with(1, &[sub], &Props::default()).await;
    c.publish_acked(Publish::new("nl/a", b"mine", 1)).await;
    c.expect_no_publish(QUIET, "no-local").await;
    let mut other = broker
        .login(Version::V5, &client_id("o"), "alice", "pw")
        .await;
    other
        .publish_acked(Publish::new("nl/a", b"theirs", 1))
        .await;
    assert_eq!(
        c.next_publish(WAIT)
            .await
            .expect("others' messages")
            .payload,
        b"theirs"
    );
}

#[tokio::test]
async fn v5_subscription_identifiers_are_echoed() {
    let broker = setup().await;
    let mut c = broker
        .login(Version::V5, &client_id("sid"), "alice", "pw")
        .await;
    c.subscribe_with(
        1,
        &[Sub::new("id/a/#", 1)],
        &Props(vec![Prop::VarInt(SUBSCRIPTION_ID, 7)]),
    )
    .await;
    c.subscribe_with(
        2,
        &[Sub::new("id/+/b", 1)],
        &Props(vec![Prop::VarInt(SUBSCRIPTION_ID, 300)]),
    )
    .await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    p.publish_acked(Publish::new("id/a/c", b"one", 1)).await;
    let got = c.next_publish(WAIT).await.expect("delivered");
    assert_eq!(got.props.var_ints(SUBSCRIPTION_ID), vec![7]);
    p.publish_acked(Publish::new("id/a/b", b"both", 1)).await;
    let mut ids = Vec::new();
    while let Some(m) = c.next_publish(QUIET).await {
        ids.extend(m.props.var_ints(SUBSCRIPTION_ID));
    }
    ids.sort_unstable();
    assert_eq!(ids, vec![7, 300], "both identifiers, in one or two copies");
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let broker = setup().await;
    for version in [Version::V311, Version::V5] {
        let mut c = broker.login(version, &client_id("u"), "alice", "pw").await;
        c.subscribe("un/#", 1).await;
        c.send(&wire::encode_unsubscribe(9, &["un/#"], version))
            .await
            .expect("send");
        let ack = c
            .expect("UNSUBACK", |i| matches!(i, Incoming::UnsubAck { .. }))
            .await;
        let Incoming::UnsubAck { packet_id, codes } = ack else {
            unreachable!()
        };
        assert_eq!(packet_id, 9);
        if version == Version::V5 {
            assert_eq!(codes, vec![0x00]);
        }
        let mut p = broker
            .login(Version::V5, &client_id("p"), "alice", "pw")
            .await;
        p.publish_acked(Publish::new("un/x", b"x", 1)).await;
        c.expect_no_publish(QUIET, "after UNSUBSCRIBE").await;
    }
}
