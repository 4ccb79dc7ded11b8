//! Last will: sent on an ungraceful end (keepalive timeout, socket closed,
//! v5 DISCONNECT 0x04), not on a normal DISCONNECT; v5 will delay interval.

use std::time::{Duration, Instant};

use warden_e2e::wire;
use warden_e2e::wire::WILL_DELAY;
use warden_e2e::*;

async fn setup() -> (TestBroker, RawClient) {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "w/#").await;
    let mut watcher = broker
        .login(Version::V5, &client_id("watch"), "alice", "pw")
        .await;
    assert_eq!(watcher.subscribe("w/#", 1).await, 1);
    (broker, watcher)
}

fn with_will(version: Version, keep_alive: u16, delay: Option<u32>) -> Connect {
    let mut c = Connect::new(version, &client_id("dying")).login("alice", "pw");
    c.keep_alive = keep_alive;
    let mut will = Will {
        topic: "w/will".into(),
        payload: b"gone".to_vec(),
        qos: 1,
        ..Will::default()
    };
    if let Some(d) = delay {
        will.props.0.push(Prop::U32(WILL_DELAY, d));
        c.props.0.push(Prop::U32(wire::SESSION_EXPIRY, 60));
    }
    c.will = Some(will);
    c
}

#[tokio::test]
async fn keepalive_timeout_fires_the_will() {
    let (broker, mut watcher) = setup().await;
    for version in [Version::V311, Version::V5] {
        let started = Instant::now();
        let _silent = broker.login_with(with_will(version, 1, None)).await;
        let will = watcher
            .next_publish(Duration::from_secs(5))
            .await
            .expect("will");
        assert_eq!(
            (will.topic.as_str(), will.payload.as_slice()),
            ("w/will", &b"gone"[..])
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{version:?}: fired after {took:?}, before 1.5 × keepalive"
        );
    }
}

#[tokio::test]
async fn keepalive_timeout_closes_the_connection() {
    let (broker, _watcher) = setup().await;
    let mut silent = broker
        .login(Version::V311, &client_id("ka"), "alice", "pw")
        .await;
    silent.send(&wire::encode_pingreq()).await.expect("ping");
    assert_eq!(
        silent.recv(WAIT).await.expect("PINGRESP"),
        Incoming::PingResp
    );
    let mut c = Connect::new(Version::V311, &client_id("ka")).login("alice", "pw");
    c.keep_alive = 1;
    let mut silent = broker.login_with(c).await;
    let started = Instant::now();
    silent.ending(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after about 1.5 s"
    );
}

#[tokio::test]
async fn closed_socket_fires_the_will() {
    let (broker, mut watcher) = setup().await;
    for version in [Version::V311, Version::V5] {
        drop(broker.login_with(with_will(version, 60, None)).await);
        let will = watcher.next_publish(WAIT).await.expect("will");
        assert_eq!(will.topic, "w/will", "{version:?}");
    }
}

#[tokio::test]
async fn normal_disconnect_does_not_fire_the_will() {
    let (broker, mut watcher) = setup().await;
    for version in [Version::V311, Version::V5] {
        let mut c = broker.login_with(with_will(version, 60, None)).await;
        c.disconnect().await;
        watcher
            .expect_no_publish(Duration::from_secs(1), "will after normal DISCONNECT")
            .await;
    }
}

#[tokio::test]
async fn v5_disconnect_0x04_fires_the_will() {
    let (broker, mut watcher) = setup().await;
    let mut c = broker.login_with(with_will(Version::V5, 60, None)).await;
    c.send(&wire::encode_disconnect(Version::V5, 0x04))
        .await
        .expect("DISCONNECT 0x04");
    let will = watcher
        .next_publish(WAIT)
        .await
        .expect("will after DISCONNECT 0x04");
    assert_eq!(will.payload, b"gone");
}

#[tokio::test]
async fn v5_will_delay_postpones_the_will() {
    let (broker, mut watcher) = setup().await;
    let started = Instant::now();
    drop(broker.login_with(with_will(Version::V5, 60, Some(2))).await);
    watcher
        .expect_no_publish(Duration::from_millis(1200), "will before its delay")
        .await;
    let will = watcher
        .next_publish(Duration::from_secs(4))
        .await
        .expect("delayed will");
    assert_eq!(will.topic, "w/will");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1800),
        "fired after {took:?}, delay was 2 s"
    );
}

#[tokio::test]
async fn v5_will_delay_is_cancelled_by_a_reconnect() {
    let (broker, mut watcher) = setup().await;
    // The delay leaves room for a slow (argon2) login under a loaded machine.
    let c = with_will(Version::V5, 60, Some(5));
    drop(broker.login_with(c.clone()).await);
    let dropped = Instant::now();
    let mut again = c.clone();
    again.clean = false;
    again.will = None;
    let _back = broker.login_with(again).await;
    assert!(
        dropped.elapsed() < Duration::from_secs(5),
        "reconnect took too long to test this"
    );
    let until = Duration::from_millis(5500).saturating_sub(dropped.elapsed());
    watcher
        .expect_no_publish(until, "will after the client came back")
        .await;
}

#[tokio::test]
async fn protocol_error_fires_the_will() {
    let (broker, mut watcher) = setup().await;
    for version in [Version::V311, Version::V5] {
        let mut c = broker.login_with(with_will(version, 60, None)).await;
        // PUBLISH with QoS 3: malformed.
        c.send(&wire::frame(0x36, &[0, 3, b'w', b'/', b'x', 0, 1]))
            .await
            .expect("send");
        let will = watcher.next_publish(WAIT).await.expect("will");
        assert_eq!(will.topic, "w/will", "{version:?}");
    }
}

#[tokio::test]
async fn takeover_fires_the_old_connections_will() {
    let (broker, mut watcher) = setup().await;
    for version in [Version::V311, Version::V5] {
        let c = with_will(version, 60, None);
        let _old = broker.login_with(c.clone()).await;
        let mut again = c.clone();
        again.will = None;
        let _new = broker.login_with(again).await;
        let will = watcher
            .next_publish(WAIT)
            .await
            .expect("will of the old connection");
        assert_eq!(will.topic, "w/will", "{version:?}");
    }
}

#[tokio::test]
async fn will_is_checked_again_when_it_fires() {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    broker.allow("alice", "subscribe,receive", "w/#").await;
    let publish = broker.allow("alice", "publish", "w/#").await;
    let mut watcher = broker
        .login(Version::V5, &client_id("watch"), "alice", "pw")
        .await;
    watcher.subscribe("w/#", 1).await;
    let dying = broker.login_with(with_will(Version::V5, 60, None)).await;
    broker
        .cli_ok(&["acl", "remove", &publish.to_string()])
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(dying);
    watcher
        .expect_no_publish(
            Duration::from_secs(2),
            "will after its publish right was removed",
        )
        .await;
}
