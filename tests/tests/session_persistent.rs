//! Sessions: persistent sessions queue QoS 1/2 while offline and deliver on
//! resume (bounded, oldest dropped), unacknowledged messages are resent with
//! DUP, clean start discards, v5 session expiry, session takeover.

use std::time::Duration;

use warden_e2e::wire::SESSION_EXPIRY;
use warden_e2e::*;

async fn setup(opts: BrokerOptions) -> TestBroker {
    let broker = TestBroker::start(opts);
    broker.user_with_rights("alice", "pw", "s/#").await;
    broker
}

fn persistent(version: Version, id: &str, clean: bool) -> Connect {
    let mut c = Connect::new(version, id).login("alice", "pw");
    c.clean = clean;
    if version == Version::V5 {
        c.props.0.push(Prop::U32(SESSION_EXPIRY, 300));
    }
    c
}

async fn connack(broker: &TestBroker, c: &Connect) -> (RawClient, bool) {
    let mut raw = broker.raw().await;
    let (present, code, _) = raw.connect(c).await.expect("CONNACK");
    assert_eq!(code, 0);
    (raw, present)
}

async fn publish_all(broker: &TestBroker, payloads: &[&str]) {
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    for m in payloads {
        assert_eq!(
            p.publish_acked(Publish::new("s/q", m.as_bytes(), 1)).await,
            0
        );
    }
}

#[tokio::test]
async fn offline_qos1_messages_are_queued_and_delivered_on_resume() {
    let broker = setup(BrokerOptions::default()).await;
    for version in [Version::V311, Version::V5] {
        let id = client_id("persist");
        let (mut s, present) = connack(&broker, &persistent(version, &id, false)).await;
        assert!(!present, "new session");
        s.subscribe("s/#", 1).await;
        s.disconnect().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        publish_all(&broker, &["a", "b", "c"]).await;
        let (mut s, present) = connack(&broker, &persistent(version, &id, false)).await;
        assert!(present, "{version:?} session present on resume");
        let mut got = Vec::new();
        while let Some(m) = s.next_publish(Duration::from_secs(2)).await {
            got.push(String::from_utf8_lossy(&m.payload).into_owned());
        }
        assert_eq!(got, ["a", "b", "c"], "{version:?} queued messages in order");
        s.disconnect().await;
    }
}

#[tokio::test]
async fn offline_queue_is_bounded_and_drops_the_oldest() {
    let broker = setup(BrokerOptions {
        max_queued_messages: 3,
        ..BrokerOptions::default()
    })
    .await;
    let id = client_id("bounded");
    let (mut s, _) = connack(&broker, &persistent(Version::V5, &id, false)).await;
    s.subscribe("s/#", 1).await;
    s.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_all(&broker, &["1", "2", "3", "4", "5"]).await;
    let (mut s, _) = connack(&broker, &persistent(Version::V5, &id, false)).await;
    let mut got = Vec::new();
    while let Some(m) = s.next_publish(Duration::from_secs(2)).await {
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
    }
    assert_eq!(got, ["3", "4", "5"], "the newest 3 are kept");
}

#[tokio::test]
async fn unacknowledged_message_is_resent_with_dup_on_resume() {
    let broker = setup(BrokerOptions::default()).await;
    let id = client_id("dup");
    let (mut s, _) = connack(&broker, &persistent(Version::V311, &id, false)).await;
    s.auto_ack = false;
    s.subscribe("s/#", 1).await;
    publish_all(&broker, &["once"]).await;
    let first = s.next_publish(WAIT).await.expect("first delivery");
    assert!(!first.dup);
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut s, present) = connack(&broker, &persistent(Version::V311, &id, false)).await;
    assert!(present);
    let again = s.next_publish(WAIT).await.expect("redelivery");
    assert!(again.dup, "resent with DUP=1: {again:?}");
    assert_eq!(
        (again.packet_id, again.payload.as_slice()),
        (first.packet_id, &b"once"[..])
    );
}

#[tokio::test]
async fn clean_start_discards_the_session() {
    let broker = setup(BrokerOptions::default()).await;
    for version in [Version::V311, Version::V5] {
        let id = client_id("clean");
        let (mut s, _) = connack(&broker, &persistent(version, &id, false)).await;
        s.subscribe("s/#", 1).await;
        s.disconnect().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        publish_all(&broker, &["lost"]).await;
        let (mut s, present) = connack(&broker, &persistent(version, &id, true)).await;
        assert!(!present, "{version:?} clean start: no session");
        s.expect_no_publish(QUIET, "queued messages discarded")
            .await;
        publish_all(&broker, &["after"]).await;
        s.expect_no_publish(QUIET, "subscriptions discarded").await;
    }
}

#[tokio::test]
async fn v5_session_without_expiry_ends_at_disconnect() {
    let broker = setup(BrokerOptions::default()).await;
    let id = client_id("noexp");
    let mut c = Connect::new(Version::V5, &id).login("alice", "pw");
    c.clean = false;
    let (mut s, _) = connack(&broker, &c).await;
    s.subscribe("s/#", 1).await;
    s.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_all(&broker, &["gone"]).await;
    let (mut s, present) = connack(&broker, &c).await;
    assert!(
        !present,
        "session expiry 0: the session ended with the connection"
    );
    s.expect_no_publish(QUIET, "nothing queued").await;
}

#[tokio::test]
async fn v5_takeover_sends_0x8e_to_the_old_connection() {
    let broker = setup(BrokerOptions::default()).await;
    let id = client_id("take");
    let mut old = broker.login(Version::V5, &id, "alice", "pw").await;
    let _new = broker.login(Version::V5, &id, "alice", "pw").await;
    let end = old.ending(WAIT).await;
    assert_eq!(
        end.disconnect_code(),
        Some(0x8E),
        "session taken over: {end:?}"
    );
}

#[tokio::test]
async fn v311_takeover_closes_the_old_connection() {
    let broker = setup(BrokerOptions::default()).await;
    let id = client_id("take");
    let mut old = broker.login(Version::V311, &id, "alice", "pw").await;
    let mut new = broker.login(Version::V311, &id, "alice", "pw").await;
    let end = old.ending(WAIT).await;
    assert!(
        end.packets.is_empty(),
        "v3.1.1: closed without a packet: {end:?}"
    );
    assert_eq!(new.subscribe("s/#", 0).await, 0, "the new connection works");
}

#[tokio::test]
async fn v5_session_is_gone_after_its_expiry_interval() {
    let broker = setup(BrokerOptions::default()).await;
    let id = client_id("short");
    let mut c = Connect::new(Version::V5, &id).login("alice", "pw");
    c.clean = false;
    c.props.0.push(Prop::U32(SESSION_EXPIRY, 1));
    let (mut s, _) = connack(&broker, &c).await;
    s.subscribe("s/#", 1).await;
    s.disconnect().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, present) = connack(&broker, &c).await;
    assert!(!present, "session expiry 1 s: gone after 2.5 s");
}
