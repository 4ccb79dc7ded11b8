//! `sessions.takeover: any` (Mosquitto's way): another principal on an
//! existing client id closes the old connection (v5 DISCONNECT 0x8E),
//! discards the old session and starts clean with session present = 0 even
//! with clean start 0; nothing of the old session reaches it. The same user
//! still resumes its own session, in this mode and the default one (issue 9).

use std::time::Duration;

use warden_e2e::sessions::*;
use warden_e2e::*;

const VERSIONS: [Version; 2] = [Version::V311, Version::V5];

fn any() -> BrokerOptions {
    BrokerOptions {
        extra_yaml: "sessions: { takeover: any }\n".into(),
        ..BrokerOptions::default()
    }
}

/// alice and bob may both use `a/#`, so only the session (not the rules)
/// decides what bob receives after the takeover.
async fn setup(opts: BrokerOptions) -> TestBroker {
    let broker = TestBroker::start(opts);
    broker.user_with_rights("alice", "pw", "a/#").await;
    broker.user_with_rights("bob", "pw", "a/#").await;
    broker
}

/// alice's session on `id`: subscribed to `a/#`, one message inflight
/// (received, never acknowledged), then offline with two more queued.
async fn alice_with_state(broker: &TestBroker, version: Version, id: &str) {
    let mut alice = broker
        .login_with(persistent(version, id, Some("alice"), false))
        .await;
    alice.auto_ack = false;
    assert_eq!(alice.subscribe("a/#", 1).await, 1);
    publish_as_alice(broker, &["inflight"]).await;
    alice.next_publish(WAIT).await.expect("inflight delivery");
    drop(alice);
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_as_alice(broker, &["queued1", "queued2"]).await;
}

/// bob takes `id` with clean 0: accepted, clean, and given nothing old.
async fn bob_takes_over_clean(broker: &TestBroker, version: Version, id: &str) -> RawClient {
    let (mut bob, present, code) =
        try_connect(broker, &persistent(version, id, Some("bob"), false)).await;
    assert!(
        !present,
        "{version:?}: bob must start clean, not with alice's session"
    );
    assert_eq!(code, 0, "{version:?}: takeover any admits bob");
    let got = drain(&mut bob, QUIET).await;
    assert!(
        got.is_empty(),
        "{version:?}: bob got alice's messages {:?}",
        payloads(&got)
    );
    publish_as_alice(broker, &["after-takeover"]).await;
    let got = drain(&mut bob, QUIET).await;
    assert!(
        got.is_empty(),
        "{version:?}: bob inherited alice's subscription: {:?}",
        payloads(&got)
    );
    bob
}

#[tokio::test]
async fn other_user_takes_an_offline_session_clean() {
    let broker = setup(any()).await;
    for version in VERSIONS {
        let id = client_id("offline");
        alice_with_state(&broker, version, &id).await;
        bob_takes_over_clean(&broker, version, &id).await;
    }
}

#[tokio::test]
async fn other_user_takes_a_live_session_and_the_old_connection_gets_0x8e() {
    let broker = setup(any()).await;
    for version in VERSIONS {
        let id = client_id("live");
        let mut alice = broker
            .login_with(persistent(version, &id, Some("alice"), false))
            .await;
        assert_eq!(alice.subscribe("a/#", 1).await, 1);
        let _bob = bob_takes_over_clean(&broker, version, &id).await;
        let end = alice.ending(WAIT).await;
        let expected = (version == Version::V5).then_some(0x8E);
        assert_eq!(
            end.disconnect_code(),
            expected,
            "{version:?}: old connection: {end:?}"
        );
    }
}

#[tokio::test]
async fn the_old_session_is_discarded_not_kept_aside() {
    let broker = setup(any()).await;
    for version in VERSIONS {
        let id = client_id("discard");
        alice_with_state(&broker, version, &id).await;
        // bob asks to resume (clean 0) but gets a new session of his own.
        let mut c = Connect::new(version, &id).login("bob", "pw");
        c.clean = false;
        let (mut bob, present, code) = try_connect(&broker, &c).await;
        assert_eq!(
            (present, code),
            (false, 0),
            "{version:?}: bob admitted clean"
        );
        bob.disconnect().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut alice, present, code) =
            try_connect(&broker, &persistent(version, &id, Some("alice"), false)).await;
        assert_eq!(code, 0);
        assert!(
            !present,
            "{version:?}: alice's old session was discarded by the takeover"
        );
        let got = drain(&mut alice, QUIET).await;
        assert!(
            got.is_empty(),
            "{version:?}: old messages {:?}",
            payloads(&got)
        );
    }
}

async fn assert_same_user_resumes(opts: BrokerOptions) {
    let broker = setup(opts).await;
    for version in VERSIONS {
        let id = client_id("resume");
        alice_with_state(&broker, version, &id).await;
        let (mut alice, present, code) =
            try_connect(&broker, &persistent(version, &id, Some("alice"), false)).await;
        assert_eq!(
            (present, code),
            (true, 0),
            "{version:?}: alice resumes her session"
        );
        let got = drain(&mut alice, Duration::from_secs(2)).await;
        assert_eq!(
            payloads(&got),
            ["inflight", "queued1", "queued2"],
            "{version:?}: inflight then queued"
        );
        assert!(
            got[0].dup,
            "{version:?}: the inflight message is resent with DUP"
        );
    }
}

#[tokio::test]
async fn same_user_resumes_its_session_with_takeover_any() {
    assert_same_user_resumes(any()).await;
}

#[tokio::test]
async fn same_user_resumes_its_session_with_takeover_same_user() {
    assert_same_user_resumes(BrokerOptions::default()).await;
}

/// The old connection's will belongs to its own principal: closed by the
/// server with 0x8E (not a normal DISCONNECT, MQTT 5 §3.1.4 and §3.14.2.1),
/// it fires as the existing suite expects for a takeover, authorized for
/// alice and not for the newcomer.
#[tokio::test]
async fn takeover_by_another_user_checks_the_old_will_against_its_owner() {
    let broker = TestBroker::start(any());
    broker.user_with_rights("alice", "pw", "a/#").await;
    broker.add_user("bob", "pw", &[]).await;
    broker.allow("bob", "subscribe,receive", "a/#").await;
    let mut watcher = broker
        .login(Version::V5, &client_id("watch"), "bob", "pw")
        .await;
    assert_eq!(watcher.subscribe("a/will", 1).await, 1);
    let id = client_id("will");
    let mut c = Connect::new(Version::V5, &id).login("alice", "pw");
    c.will = Some(Will {
        topic: "a/will".into(),
        payload: b"alice-gone".to_vec(),
        qos: 1,
        ..Will::default()
    });
    let _alice = broker.login_with(c).await;
    let _bob = broker
        .login_with(Connect::new(Version::V5, &id).login("bob", "pw"))
        .await;
    let will = watcher
        .next_publish(WAIT)
        .await
        .expect("alice's will, authorized for alice (bob may not publish a/will)");
    assert_eq!(will.payload, b"alice-gone");
}
