//! Write-through (`broker/src/session/direct.rs`): a publisher's task writes
//! a delivery straight into an idle plain-TCP subscriber's socket. What a
//! subscriber sees must not change: every message once, in order, QoS 1
//! kept in flight until acknowledged (and resent on resume), nothing after
//! a takeover to the old connection, and TLS subscribers served as before.

use std::time::Duration;

use warden_e2e::http::{scrape, value};
use warden_e2e::*;

const THROUGH: &str = "warden_written_through_messages_total";

async fn setup() -> TestBroker {
    let broker = TestBroker::start(BrokerOptions {
        plain_tcp: true,
        metrics: true,
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", "pw", "q/#").await;
    broker
}

async fn plain(broker: &TestBroker, connect: Connect) -> RawClient {
    let mut raw = RawClient::tcp(broker.plain_addr()).await.expect("tcp");
    let (_, code, _) = raw.connect(&connect).await.expect("CONNACK");
    assert_eq!(code, 0, "CONNACK");
    raw
}

fn login(version: Version, id: &str) -> Connect {
    Connect::new(version, id).login("alice", "pw")
}

async fn through(broker: &TestBroker) -> f64 {
    value(&scrape(broker.addr("metrics")).await, THROUGH)
}

/// Publishes `n` messages `{prefix}{i}` on `topic` at `qos`, one at a time
/// with a pause after each (so the subscriber is idle before the next),
/// and checks each arrives at `sub` in order.
async fn paced(
    publ: &mut RawClient,
    sub: &mut RawClient,
    (topic, prefix, qos, n): (&str, &str, u8, u32),
    pause: Duration,
) {
    for i in 0..n {
        let payload = format!("{prefix}{i}");
        let m = Publish::new(topic, payload.as_bytes(), qos);
        assert_eq!(publ.publish_acked(m).await, 0);
        let got = sub.next_publish(WAIT).await.expect("delivered");
        assert_eq!(got.payload, payload.as_bytes());
        assert_eq!(got.qos, qos);
        tokio::time::sleep(pause).await;
    }
}

#[tokio::test]
async fn paced_and_burst_deliveries_arrive_once_each_in_order() {
    let broker = setup().await;
    for version in [Version::V311, Version::V5] {
        let mut sub = plain(&broker, login(version, &client_id("s"))).await;
        assert_eq!(sub.subscribe("q/#", 1).await, 1);
        let mut publ = plain(&broker, login(version, &client_id("p"))).await;
        let start = through(&broker).await;
        // Paced: the subscriber is idle before each one.
        for i in 0..20u32 {
            let qos = (i % 2) as u8;
            let m = Publish::new("q/t", format!("m{i}").as_bytes(), qos);
            assert_eq!(publ.publish_acked(m).await, 0);
            let got = sub.next_publish(WAIT).await.expect("delivered");
            assert_eq!(got.payload, format!("m{i}").as_bytes(), "{version:?}");
            assert_eq!(got.qos, qos);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let paced = through(&broker).await - start;
        assert!(
            paced >= 10.0,
            "{version:?}: {paced} of 20 paced deliveries were written through"
        );
        // A burst, unacknowledged on the publisher's side: the queue takes
        // over, and order holds across the two paths.
        for i in 0..500u32 {
            // Every tenth at QoS 1: 50 unacknowledged, within the broker's
            // Receive Maximum.
            let qos = u8::from(i % 10 == 0);
            let mut m = Publish::new("q/b", format!("b{i}").as_bytes(), qos);
            m.packet_id = if qos == 1 { 1000 + i as u16 } else { 0 };
            publ.publish(&m).await.expect("send");
        }
        for i in 0..500u32 {
            let got = sub.next_publish(WAIT).await.expect("burst delivered");
            assert_eq!(got.payload, format!("b{i}").as_bytes(), "{version:?}");
        }
        sub.expect_no_publish(QUIET, "exactly once each").await;
    }
}

#[tokio::test]
async fn a_written_through_qos1_delivery_stays_in_flight_until_acknowledged() {
    let broker = setup().await;
    let id = client_id("s");
    let mut keep = login(Version::V311, &id);
    keep.clean = false;
    let mut sub = plain(&broker, keep.clone()).await;
    sub.auto_ack = false;
    assert_eq!(sub.subscribe("q/#", 1).await, 1);
    let mut publ = plain(&broker, login(Version::V311, &client_id("p"))).await;
    let start = through(&broker).await;
    paced(
        &mut publ,
        &mut sub,
        ("q/t", "m", 1, 3),
        Duration::from_millis(20),
    )
    .await;
    assert!(through(&broker).await > start, "none was written through");
    // Gone without acknowledging: the resumed session gets all three again.
    drop(sub);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = plain(&broker, keep).await;
    for i in 0..3u32 {
        let got = again.next_publish(WAIT).await.expect("resent");
        assert_eq!(got.payload, format!("m{i}").as_bytes());
        assert!(got.dup, "a resent QoS 1 delivery carries DUP");
    }
    again.expect_no_publish(QUIET, "nothing else").await;
}

#[tokio::test]
async fn after_a_takeover_only_the_new_connection_is_written_to() {
    let broker = setup().await;
    let id = client_id("s");
    let mut old = plain(&broker, login(Version::V5, &id)).await;
    assert_eq!(old.subscribe("q/#", 0).await, 0);
    let mut publ = plain(&broker, login(Version::V5, &client_id("p"))).await;
    assert_eq!(
        publ.publish_acked(Publish::new("q/t", b"before", 0)).await,
        0
    );
    assert_eq!(
        old.next_publish(WAIT).await.expect("delivered").payload,
        b"before"
    );
    // The old connection is idle (armed) when the new one takes over.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut keep = login(Version::V5, &id);
    keep.clean = false;
    let mut new = plain(&broker, keep).await;
    let ended = old.ending(WAIT).await;
    assert_eq!(ended.disconnect_code(), Some(0x8e), "{ended:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    paced(
        &mut publ,
        &mut new,
        ("q/t", "after", 0, 5),
        Duration::from_millis(10),
    )
    .await;
}

#[tokio::test]
async fn tls_subscribers_are_served_by_their_own_task() {
    let broker = setup().await;
    let mut sub = broker
        .login(Version::V311, &client_id("s"), "alice", "pw")
        .await;
    assert_eq!(sub.subscribe("q/#", 1).await, 1);
    let mut publ = plain(&broker, login(Version::V311, &client_id("p"))).await;
    let start = through(&broker).await;
    paced(
        &mut publ,
        &mut sub,
        ("q/t", "m", 1, 10),
        Duration::from_millis(10),
    )
    .await;
    assert_eq!(
        through(&broker).await,
        start,
        "a TLS socket is never written through"
    );
}
