//! Policy changes reach live sessions within about a second: a removed rule
//! stops deliveries and publishes, a new deny takes effect, queued messages
//! are re-checked on resume, a removed or disabled user is disconnected.

use std::time::{Duration, Instant};

use warden_e2e::wire;
use warden_e2e::*;

async fn setup() -> (TestBroker, u64) {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    broker.allow("alice", "subscribe", "rv/#").await;
    let receive = broker.allow("alice", "receive", "rv/#").await;
    broker
        .cli_stdin(
            &["user", "add", "root", "--password-stdin", "--superuser"],
            "pw",
        )
        .await;
    (broker, receive)
}

#[tokio::test]
async fn removed_receive_rule_stops_deliveries_within_2s() {
    let (broker, rule) = setup().await;
    let mut s = broker
        .login(Version::V5, &client_id("s"), "alice", "pw")
        .await;
    s.subscribe("rv/#", 1).await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "root", "pw")
        .await;
    p.publish_acked(Publish::new("rv/a", b"before", 1)).await;
    assert_eq!(
        s.next_publish(WAIT).await.expect("before").payload,
        b"before"
    );

    broker.cli_ok(&["acl", "remove", &rule.to_string()]).await;
    let removed = Instant::now();
    // Keep publishing; the last delivery must come within 2 s of the removal.
    let mut last_delivery = None;
    while removed.elapsed() < Duration::from_secs(3) {
        p.publish_acked(Publish::new("rv/a", b"after", 1)).await;
        if s.next_publish(Duration::from_millis(200)).await.is_some() {
            last_delivery = Some(removed.elapsed());
        }
    }
    if let Some(at) = last_delivery {
        assert!(
            at < Duration::from_secs(2),
            "still delivered {at:?} after the removal"
        );
    }
    s.expect_no_publish(QUIET, "after the rule was removed")
        .await;
}

#[tokio::test]
async fn new_deny_rule_applies_to_a_live_publisher() {
    let (broker, _) = setup().await;
    broker.allow("alice", "publish", "rv/#").await;
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    assert_eq!(c.publish_acked(Publish::new("rv/x", b"1", 1)).await, 0);
    broker.deny("alice", "publish", "rv/x").await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(c.publish_acked(Publish::new("rv/x", b"2", 1)).await, 0x87);
}

#[tokio::test]
async fn queued_messages_are_rechecked_on_resume() {
    let (broker, rule) = setup().await;
    let id = client_id("q");
    let mut c = Connect::new(Version::V5, &id).login("alice", "pw");
    c.clean = false;
    c.props.0.push(Prop::U32(wire::SESSION_EXPIRY, 300));
    let mut s = broker.login_with(c.clone()).await;
    s.subscribe("rv/#", 1).await;
    s.disconnect().await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "root", "pw")
        .await;
    p.publish_acked(Publish::new("rv/q", b"queued", 1)).await;
    broker.cli_ok(&["acl", "remove", &rule.to_string()]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut back = broker.login_with(c).await;
    back.expect_no_publish(
        Duration::from_secs(1),
        "queued message without receive right",
    )
    .await;
}

async fn assert_kicked(broker: &TestBroker, admin: &[&str]) {
    let mut c = broker
        .login(Version::V5, &client_id("k"), "alice", "pw")
        .await;
    let mut v3 = broker
        .login(Version::V311, &client_id("k3"), "alice", "pw")
        .await;
    broker.cli_ok(admin).await;
    let started = Instant::now();
    let end = c.ending(Duration::from_secs(4)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{admin:?}: kicked after {:?}",
        started.elapsed()
    );
    if let Some(code) = end.disconnect_code() {
        assert!(
            code >= 0x80,
            "{admin:?}: DISCONNECT with an error code, got 0x{code:02x}"
        );
    }
    v3.ending(Duration::from_secs(4)).await;
    let mut again = broker.raw().await;
    let (_, code, _) = again
        .connect(&Connect::new(Version::V5, &client_id("k")).login("alice", "pw"))
        .await
        .expect("CONNACK");
    assert_ne!(code, 0, "{admin:?}: cannot log in again");
}

#[tokio::test]
async fn removed_user_is_disconnected() {
    let (broker, _) = setup().await;
    assert_kicked(&broker, &["user", "remove", "alice"]).await;
}

#[tokio::test]
async fn disabled_user_is_disconnected() {
    let (broker, _) = setup().await;
    assert_kicked(&broker, &["user", "disable", "alice"]).await;
}
