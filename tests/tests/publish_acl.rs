//! PUBLISH authorization, per DESIGN.md §2: v5 PUBACK/PUBREC 0x87 and not
//! delivered; v3.1.1 QoS 1 acknowledged and dropped, QoS 0 dropped; the
//! retain flag checked; `on_deny: disconnect` → v5 DISCONNECT 0x87.

use std::time::Duration;

use warden_e2e::*;

/// alice may publish on `alice/#`; watcher (superuser) sees everything.
async fn setup(opts: BrokerOptions) -> (TestBroker, RawClient) {
    let broker = TestBroker::start(opts);
    broker.add_user("alice", "pw", &[]).await;
    broker.allow("alice", "publish", "alice/#").await;
    broker
        .acl(&[
            "--user",
            "alice",
            "--allow",
            "publish",
            "noretain/#",
            "--retain",
            "false",
        ])
        .await;
    broker
        .cli_stdin(
            &["user", "add", "watcher", "--password-stdin", "--superuser"],
            "pw",
        )
        .await;
    let mut watcher = broker
        .login(Version::V5, &client_id("watch"), "watcher", "pw")
        .await;
    assert_eq!(watcher.subscribe("#", 2).await, 2);
    (broker, watcher)
}

#[tokio::test]
async fn v5_denied_publish_gets_0x87_and_is_not_delivered() {
    let (broker, mut watcher) = setup(BrokerOptions::default()).await;
    let mut c = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    assert_eq!(
        c.publish_acked(Publish::new("bob/x", b"no", 1)).await,
        0x87,
        "QoS 1 PUBACK"
    );
    assert_eq!(
        c.publish_acked(Publish::new("bob/y", b"no", 2)).await,
        0x87,
        "QoS 2 PUBREC"
    );
    c.publish_acked(Publish::new("bob/z", b"no", 0)).await;
    watcher.expect_no_publish(QUIET, "denied publishes").await;
    assert_eq!(
        c.publish_acked(Publish::new("alice/x", b"yes", 1)).await,
        0x00
    );
    let got = watcher
        .next_publish(WAIT)
        .await
        .expect("allowed publish delivered");
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("alice/x", &b"yes"[..])
    );
}

#[tokio::test]
async fn v311_denied_qos1_is_acknowledged_and_dropped() {
    let (broker, mut watcher) = setup(BrokerOptions::default()).await;
    let mut c = broker
        .login(Version::V311, &client_id("p"), "alice", "pw")
        .await;
    assert_eq!(
        c.publish_acked(Publish::new("bob/x", b"no", 1)).await,
        0x00,
        "plain PUBACK"
    );
    assert_eq!(
        c.publish_acked(Publish::new("bob/y", b"no", 2)).await,
        0x00,
        "plain PUBREC"
    );
    c.publish_acked(Publish::new("bob/z", b"no", 0)).await;
    watcher.expect_no_publish(QUIET, "denied publishes").await;
    // The connection stays usable after the denials.
    assert_eq!(
        c.publish_acked(Publish::new("alice/ok", b"yes", 1)).await,
        0x00
    );
    let got = watcher
        .next_publish(WAIT)
        .await
        .expect("allowed publish delivered");
    assert_eq!(got.topic, "alice/ok");
}

#[tokio::test]
async fn retained_publish_needs_the_retain_right() {
    let (broker, mut watcher) = setup(BrokerOptions::default()).await;
    let mut c = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    let mut retained = Publish::new("noretain/a", b"r", 1);
    retained.retain = true;
    assert_eq!(c.publish_acked(retained).await, 0x87);
    watcher
        .expect_no_publish(QUIET, "denied retained publish")
        .await;
    assert_eq!(
        c.publish_acked(Publish::new("noretain/a", b"plain", 1))
            .await,
        0x00
    );
    assert_eq!(
        watcher.next_publish(WAIT).await.expect("delivered").payload,
        b"plain"
    );
}

#[tokio::test]
async fn on_deny_disconnect_sends_v5_disconnect_0x87() {
    let opts = BrokerOptions {
        on_deny: "disconnect",
        ..BrokerOptions::default()
    };
    let (broker, mut watcher) = setup(opts).await;
    let mut c = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    c.publish(&Publish::new("bob/x", b"no", 1))
        .await
        .expect("send");
    let end = c.ending(WAIT).await;
    assert_eq!(
        end.disconnect_code(),
        Some(0x87),
        "DISCONNECT 0x87 then close: {end:?}"
    );
    assert!(
        !end.packets
            .iter()
            .any(|p| matches!(p, Incoming::PubAck { .. })),
        "no PUBACK for the denied publish: {end:?}"
    );
    watcher.expect_no_publish(QUIET, "denied publish").await;
}

#[tokio::test]
async fn on_deny_disconnect_closes_a_v311_connection() {
    let opts = BrokerOptions {
        on_deny: "disconnect",
        ..BrokerOptions::default()
    };
    let (broker, mut watcher) = setup(opts).await;
    let mut c = broker
        .login(Version::V311, &client_id("p"), "alice", "pw")
        .await;
    c.publish(&Publish::new("bob/x", b"no", 0))
        .await
        .expect("send");
    let end = c.ending(Duration::from_secs(5)).await;
    assert!(
        end.packets.is_empty(),
        "v3.1.1 is closed without a packet: {end:?}"
    );
    watcher.expect_no_publish(QUIET, "denied publish").await;
}
