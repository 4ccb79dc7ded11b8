//! Retained messages: set, replace, clear with an empty payload; v5 retain
//! handling 0/1/2 and retain-as-published.

use warden_e2e::wire;
use warden_e2e::*;

async fn setup() -> (TestBroker, RawClient) {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "r/#").await;
    let p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    (broker, p)
}

fn retained(topic: &str, payload: &[u8]) -> Publish {
    let mut p = Publish::new(topic, payload, 1);
    p.retain = true;
    p
}

async fn first_retained(broker: &TestBroker, version: Version, filter: &str) -> Option<Publish> {
    let mut s = broker.login(version, &client_id("s"), "alice", "pw").await;
    s.subscribe(filter, 1).await;
    let got = s.next_publish(QUIET).await;
    if got.is_some() {
        s.expect_no_publish(QUIET, "one retained message per topic")
            .await;
    }
    got
}

#[tokio::test]
async fn retained_message_is_set_replaced_and_cleared() {
    let (broker, mut p) = setup().await;
    p.publish_acked(retained("r/a", b"one")).await;
    for version in [Version::V311, Version::V5] {
        let got = first_retained(&broker, version, "r/#")
            .await
            .expect("retained");
        assert_eq!(
            (got.payload.as_slice(), got.retain),
            (&b"one"[..], true),
            "{version:?}"
        );
    }
    p.publish_acked(retained("r/a", b"two")).await;
    let got = first_retained(&broker, Version::V5, "r/a")
        .await
        .expect("replaced");
    assert_eq!(got.payload, b"two");
    p.publish_acked(retained("r/a", b"")).await;
    assert_eq!(
        first_retained(&broker, Version::V5, "r/#").await,
        None,
        "cleared"
    );
}

#[tokio::test]
async fn live_message_to_existing_subscriber_has_retain_0() {
    let (broker, mut p) = setup().await;
    let mut s = broker
        .login(Version::V311, &client_id("s"), "alice", "pw")
        .await;
    s.subscribe("r/#", 1).await;
    p.publish_acked(retained("r/live", b"x")).await;
    let got = s.next_publish(WAIT).await.expect("delivered");
    assert!(
        !got.retain,
        "v3.1.1 §3.3.1.3: retain 0 for a live subscriber"
    );
}

#[tokio::test]
async fn v5_retain_handling_0_1_2() {
    let (broker, mut p) = setup().await;
    p.publish_acked(retained("r/h", b"kept")).await;
    let mut s = broker
        .login(Version::V5, &client_id("s"), "alice", "pw")
        .await;
    for (handling, first, second) in [(0u8, true, true), (1, true, false), (2, false, false)] {
        let filter = "r/+".to_string();
        let mut sub = Sub::new(&filter, 1);
        sub.retain_handling = handling;
        s.subscribe_with(1, &[sub.clone()], &Props::default()).await;
        let got = s.next_publish(QUIET).await;
        assert_eq!(
            got.is_some(),
            first,
            "retain handling {handling}, new subscription"
        );
        s.subscribe_with(2, &[sub], &Props::default()).await;
        let got = s.next_publish(QUIET).await;
        assert_eq!(
            got.is_some(),
            second,
            "retain handling {handling}, existing subscription"
        );
        s.send(&wire::encode_unsubscribe(3, &[&filter], Version::V5))
            .await
            .expect("unsub");
        s.expect("UNSUBACK", |i| matches!(i, Incoming::UnsubAck { .. }))
            .await;
    }
}

#[tokio::test]
async fn v5_retain_as_published() {
    let (broker, mut p) = setup().await;
    let mut s = broker
        .login(Version::V5, &client_id("s"), "alice", "pw")
        .await;
    let mut rap = Sub::new("r/rap/#", 1);
    rap.retain_as_published = true;
    s.subscribe_with(1, &[rap, Sub::new("r/plain/#", 1)], &Props::default())
        .await;
    p.publish_acked(retained("r/rap/x", b"1")).await;
    let got = s.next_publish(WAIT).await.expect("rap");
    assert!(got.retain, "retain-as-published keeps the flag");
    p.publish_acked(retained("r/plain/x", b"2")).await;
    let got = s.next_publish(WAIT).await.expect("plain");
    assert!(
        !got.retain,
        "without retain-as-published the flag is cleared"
    );
}
