//! Delivery authorization (`receive`): checked for every message, including
//! retained messages sent on subscribe and wills.

use warden_e2e::*;

async fn setup() -> TestBroker {
    let broker = TestBroker::start_default();
    broker.add_user("reader", "pw", &[]).await;
    broker.allow("reader", "subscribe", "feed/#").await;
    broker.allow("reader", "receive", "feed/#").await;
    broker.deny("reader", "receive", "feed/secret/#").await;
    broker
        .cli_stdin(
            &["user", "add", "writer", "--password-stdin", "--superuser"],
            "pw",
        )
        .await;
    broker
}

#[tokio::test]
async fn receive_deny_keeps_matching_messages_out() {
    let broker = setup().await;
    for version in [Version::V311, Version::V5] {
        let mut r = broker.login(version, &client_id("r"), "reader", "pw").await;
        assert_eq!(
            r.subscribe("feed/#", 1).await,
            1,
            "deny overlaps only: granted"
        );
        let mut w = broker
            .login(Version::V5, &client_id("w"), "writer", "pw")
            .await;
        w.publish_acked(Publish::new("feed/secret/x", b"hidden", 1))
            .await;
        w.publish_acked(Publish::new("feed/public", b"shown", 1))
            .await;
        let got = r.next_publish(WAIT).await.expect("public message");
        assert_eq!(got.topic, "feed/public", "{version:?}");
        r.expect_no_publish(QUIET, "denied topic").await;
    }
}

#[tokio::test]
async fn retained_message_is_not_sent_without_receive_right() {
    let broker = setup().await;
    let mut w = broker
        .login(Version::V5, &client_id("w"), "writer", "pw")
        .await;
    let mut secret = Publish::new("feed/secret/r", b"hidden", 1);
    secret.retain = true;
    w.publish_acked(secret).await;
    let mut public = Publish::new("feed/pub/r", b"shown", 1);
    public.retain = true;
    w.publish_acked(public).await;

    let mut r = broker
        .login(Version::V5, &client_id("r"), "reader", "pw")
        .await;
    assert_eq!(r.subscribe("feed/#", 1).await, 1);
    let got = r
        .next_publish(WAIT)
        .await
        .expect("allowed retained message");
    assert_eq!((got.topic.as_str(), got.retain), ("feed/pub/r", true));
    r.expect_no_publish(QUIET, "retained message without receive right")
        .await;
}

#[tokio::test]
async fn will_is_not_delivered_without_receive_right() {
    let broker = setup().await;
    let mut r = broker
        .login(Version::V5, &client_id("r"), "reader", "pw")
        .await;
    assert_eq!(r.subscribe("feed/#", 1).await, 1);
    let mut c = Connect::new(Version::V5, &client_id("dying")).login("writer", "pw");
    c.will = Some(Will {
        topic: "feed/secret/will".into(),
        payload: b"bye".to_vec(),
        qos: 1,
        ..Will::default()
    });
    let dying = broker.login_with(c).await;
    drop(dying);
    r.expect_no_publish(std::time::Duration::from_secs(2), "will on a denied topic")
        .await;

    let mut c = Connect::new(Version::V5, &client_id("dying")).login("writer", "pw");
    c.will = Some(Will {
        topic: "feed/open/will".into(),
        payload: b"bye".to_vec(),
        qos: 1,
        ..Will::default()
    });
    drop(broker.login_with(c).await);
    let got = r
        .next_publish(WAIT)
        .await
        .expect("will on an allowed topic");
    assert_eq!(got.topic, "feed/open/will");
}
