//! Session ownership with `sessions.takeover: same_user` (the default): a
//! different principal connecting with the client id of an existing session,
//! online or offline, is refused (CONNACK v5 0x85 / v3.1.1 0x02) and the
//! owner's session is untouched: no session present for the newcomer, no
//! inflight retransmission, no queued messages, no subscriptions, and the
//! owner still resumes everything (issue 9).

use std::time::Duration;

use warden_e2e::sessions::*;
use warden_e2e::*;

const VERSIONS: [Version; 2] = [Version::V311, Version::V5];

/// alice owns `a/#`; bob only `b/#`; carol may receive on `a/#` but not
/// subscribe there.
async fn setup(opts: BrokerOptions) -> TestBroker {
    let broker = TestBroker::start(opts);
    broker.user_with_rights("alice", "pw", "a/#").await;
    broker.user_with_rights("bob", "pw", "b/#").await;
    broker.user_with_rights("carol", "pw", "c/#").await;
    broker.allow("carol", "receive", "a/#").await;
    broker
}

/// alice's persistent session subscribed to `a/#` at QoS 1, left offline.
async fn offline_session(broker: &TestBroker, version: Version, id: &str) {
    let (mut s, present, code) =
        try_connect(broker, &persistent(version, id, Some("alice"), false)).await;
    assert_eq!(
        (present, code),
        (false, 0),
        "{version:?}: alice's new session"
    );
    assert_eq!(s.subscribe("a/#", 1).await, 1);
    s.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// `user` connects with alice's client id and clean 0: refused, never told
/// of a session, never sent a PUBLISH.
async fn assert_refused(broker: &TestBroker, version: Version, id: &str, user: &str, clean: bool) {
    let c = persistent(version, id, Some(user), clean);
    let (mut thief, present, code) = try_connect(broker, &c).await;
    assert!(
        !present,
        "{version:?}: {user} sees session present = 1 for alice's session (theft)"
    );
    assert_eq!(
        code,
        id_refused(version),
        "{version:?}: {user} on alice's client id must be refused"
    );
    assert_closed_without_publish(&mut thief, &format!("{version:?}: {user} after refusal")).await;
}

/// alice resumes: session present, and exactly `want` delivered.
async fn assert_owner_resumes(broker: &TestBroker, version: Version, id: &str, want: &[&str]) {
    let (mut s, present, code) =
        try_connect(broker, &persistent(version, id, Some("alice"), false)).await;
    assert_eq!(code, 0, "{version:?}: alice resumes");
    assert!(present, "{version:?}: alice's session survived the attempt");
    let got = payloads(&drain(&mut s, Duration::from_secs(2)).await);
    assert_eq!(got, want, "{version:?}: alice's messages kept for her");
}

#[tokio::test]
async fn other_user_is_refused_on_a_live_session_and_the_owner_stays_connected() {
    let broker = setup(BrokerOptions::default()).await;
    for version in VERSIONS {
        let id = client_id("live");
        let mut alice = broker
            .login_with(persistent(version, &id, Some("alice"), false))
            .await;
        assert_eq!(alice.subscribe("a/#", 1).await, 1);
        assert_refused(&broker, version, &id, "bob", false).await;
        publish_as_alice(&broker, &["still-mine"]).await;
        let got = alice.recv(WAIT).await;
        assert!(
            matches!(&got, Ok(Incoming::Publish(p)) if p.payload == b"still-mine"),
            "{version:?}: alice still connected and subscribed, got {got:?}"
        );
    }
}

#[tokio::test]
async fn inflight_message_is_not_retransmitted_to_another_user() {
    let broker = setup(BrokerOptions::default()).await;
    for version in VERSIONS {
        let id = client_id("inflight");
        let mut alice = broker
            .login_with(persistent(version, &id, Some("alice"), false))
            .await;
        alice.auto_ack = false;
        assert_eq!(alice.subscribe("a/#", 1).await, 1);
        publish_as_alice(&broker, &["unacked"]).await;
        let first = alice.next_publish(WAIT).await.expect("first delivery");
        drop(alice);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_refused(&broker, version, &id, "bob", false).await;
        let (mut s, present, code) =
            try_connect(&broker, &persistent(version, &id, Some("alice"), false)).await;
        assert_eq!((present, code), (true, 0), "{version:?}: alice resumes");
        let again = s.next_publish(WAIT).await.expect("alice's retransmission");
        assert!(again.dup, "{version:?}: resent to alice with DUP");
        assert_eq!(
            (again.packet_id, again.payload.as_slice()),
            (first.packet_id, &b"unacked"[..])
        );
    }
}

#[tokio::test]
async fn queued_messages_are_not_given_to_another_user() {
    let broker = setup(BrokerOptions::default()).await;
    for version in VERSIONS {
        let id = client_id("queued");
        offline_session(&broker, version, &id).await;
        publish_as_alice(&broker, &["q1", "q2", "q3"]).await;
        assert_refused(&broker, version, &id, "bob", false).await;
        assert_owner_resumes(&broker, version, &id, &["q1", "q2", "q3"]).await;
    }
}

#[tokio::test]
async fn subscriptions_are_not_inherited_by_another_user() {
    let broker = setup(BrokerOptions::default()).await;
    for version in VERSIONS {
        let id = client_id("subs");
        offline_session(&broker, version, &id).await;
        assert_refused(&broker, version, &id, "bob", false).await;
        publish_as_alice(&broker, &["after"]).await;
        assert_owner_resumes(&broker, version, &id, &["after"]).await;
    }
}

#[tokio::test]
async fn receive_only_user_cannot_take_the_session() {
    let broker = setup(BrokerOptions::default()).await;
    for version in VERSIONS {
        let id = client_id("recv-only");
        offline_session(&broker, version, &id).await;
        publish_as_alice(&broker, &["before"]).await;
        assert_refused(&broker, version, &id, "carol", false).await;
        publish_as_alice(&broker, &["after"]).await;
        assert_owner_resumes(&broker, version, &id, &["before", "after"]).await;
    }
}

#[tokio::test]
async fn clean_start_by_another_user_cannot_wipe_the_session() {
    let broker = setup(BrokerOptions::default()).await;
    for version in VERSIONS {
        let id = client_id("wipe");
        offline_session(&broker, version, &id).await;
        publish_as_alice(&broker, &["kept"]).await;
        assert_refused(&broker, version, &id, "bob", true).await;
        assert_owner_resumes(&broker, version, &id, &["kept"]).await;
    }
}

#[tokio::test]
async fn anonymous_clients_are_their_own_owner_class() {
    let broker = setup(BrokerOptions {
        allow_anonymous: true,
        ..BrokerOptions::default()
    })
    .await;
    for version in VERSIONS {
        let id = client_id("anon-vs-alice");
        offline_session(&broker, version, &id).await;
        let (mut anon, present, code) =
            try_connect(&broker, &persistent(version, &id, None, false)).await;
        assert!(!present, "{version:?}: anonymous sees alice's session");
        assert_eq!(
            code,
            id_refused(version),
            "{version:?}: anonymous on alice's id"
        );
        assert_closed_without_publish(&mut anon, "anonymous after refusal").await;

        let id = client_id("alice-vs-anon");
        let (mut anon, _, code) =
            try_connect(&broker, &persistent(version, &id, None, false)).await;
        assert_eq!(code, 0, "{version:?}: anonymous session");
        anon.disconnect().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, present, code) =
            try_connect(&broker, &persistent(version, &id, Some("alice"), false)).await;
        assert!(!present, "{version:?}: alice sees the anonymous session");
        assert_eq!(
            code,
            id_refused(version),
            "{version:?}: alice on an anonymous id"
        );
    }
}

#[tokio::test]
async fn refused_newcomer_does_not_fire_the_owners_will() {
    let broker = setup(BrokerOptions::default()).await;
    let mut watcher = broker
        .login(Version::V5, &client_id("watch"), "alice", "pw")
        .await;
    assert_eq!(watcher.subscribe("a/will", 1).await, 1);
    // Kept open to the end: dropping one would (rightly) fire its will.
    let mut owners = Vec::new();
    for version in VERSIONS {
        let id = client_id("will-owner");
        let mut c = persistent(version, &id, Some("alice"), false);
        c.will = Some(Will {
            topic: "a/will".into(),
            payload: b"alice-gone".to_vec(),
            qos: 1,
            ..Will::default()
        });
        owners.push(broker.login_with(c).await);
        assert_refused(&broker, version, &id, "bob", false).await;
        watcher
            .expect_no_publish(QUIET, "alice's will after a refused takeover")
            .await;
    }
}
