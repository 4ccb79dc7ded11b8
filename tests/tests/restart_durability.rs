//! Restart durability (issue 10): retained messages and offline persistent
//! sessions (v5 with session expiry, v3.1.1 clean session 0) survive SIGTERM
//! and SIGKILL in `periodic` and `sync` mode — QoS 2 exactly once — while
//! `none` keeps today's memory-only behaviour; retained replacements and
//! clears and the queue limit hold on disk too; session expiry counts the
//! downtime; a resumed session is re-checked against the policy as it is
//! after the restart; ownership and subscriptions (identifiers, granted QoS,
//! options) survive.

use std::time::Duration;

use warden_e2e::durable::*;
use warden_e2e::wire::{Prop, SUBSCRIPTION_ID, WILL_DELAY};
use warden_e2e::*;

const EXPIRY: u32 = 300;

/// What the publisher sends to `d/q` while the subscribers are offline.
const BATCH: [(&str, u8); 5] = [
    ("one", 1),
    ("two", 1),
    ("three", 1),
    ("four", 2),
    ("five", 2),
];

/// A v5 subscriber with session expiry and a v3.1.1 clean-session-0 one.
fn offline_subscribers() -> [Connect; 2] {
    [
        persistent(Version::V5, &client_id("sub5"), "alice", "pw", EXPIRY),
        persistent(Version::V311, &client_id("sub3"), "alice", "pw", 0),
    ]
}

/// Creates the session, subscribes `d/q` at QoS 2 and disconnects.
async fn subscribe_then_leave(broker: &TestBroker, c: &Connect) {
    let (mut s, present) = resume(broker, c).await;
    assert!(!present, "{:?}: a new session", c.version);
    assert_eq!(s.subscribe("d/q", 2).await, 2, "granted QoS 2");
    s.disconnect().await;
}

/// The retained message on `d/r`, then BATCH on `d/q`, each acknowledged
/// (PUBACK, or PUBREC/PUBREL/PUBCOMP) before the next.
async fn publish_batch(broker: &TestBroker) {
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    let mut retained = Publish::new("d/r", b"kept", 1);
    retained.retain = true;
    let code = p.publish_acked(retained).await;
    assert!(code < 0x80, "retained message accepted: {code:#04x}");
    for (text, qos) in BATCH {
        let code = p
            .publish_acked(Publish::new("d/q", text.as_bytes(), qos))
            .await;
        assert_eq!(code, 0, "{text} acknowledged");
    }
    p.disconnect().await;
}

/// Resumes `c`: session present, the whole batch in order at its QoS, each
/// once (QoS 2 with the full handshake), and nothing more.
async fn assert_batch_delivered(broker: &TestBroker, c: &Connect) {
    let mut s = resume_present(broker, c).await;
    let got = take(&mut s, BATCH.len(), WAIT).await;
    let seen: Vec<(String, u8)> = got
        .iter()
        .map(|m| (String::from_utf8_lossy(&m.payload).into_owned(), m.qos))
        .collect();
    let want: Vec<(String, u8)> = BATCH.iter().map(|(t, q)| (t.to_string(), *q)).collect();
    assert_eq!(
        seen, want,
        "{:?}: queued messages after the restart",
        c.version
    );
    for m in &got {
        assert_eq!(m.topic, "d/q");
        assert!(!m.dup, "never sent before, so DUP=0: {m:?}");
        assert!(!m.retain, "a live message, not retained: {m:?}");
    }
    s.expect_no_publish(QUIET, "each message once (QoS 2 exactly once)")
        .await;
    s.disconnect().await;
}

/// A new subscriber to `d/r` gets the retained message with RETAIN=1.
async fn assert_retained(broker: &TestBroker) {
    let mut n = broker
        .login(Version::V5, &client_id("late"), "alice", "pw")
        .await;
    assert_eq!(n.subscribe("d/r", 1).await, 1);
    let m = n
        .next_publish(WAIT)
        .await
        .expect("the retained message survives the restart");
    assert_eq!(
        (m.topic.as_str(), m.payload.as_slice(), m.qos, m.retain),
        ("d/r", &b"kept"[..], 1, true)
    );
}

async fn offline_session_survives(mode: &str, how: Stop) {
    let mut broker = TestBroker::start(with_mode(mode));
    broker.user_with_rights("alice", "pw", "d/#").await;
    let subs = offline_subscribers();
    for c in &subs {
        subscribe_then_leave(&broker, c).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_batch(&broker).await;
    stop_and_restart(&mut broker, how);
    for c in &subs {
        assert_batch_delivered(&broker, c).await;
    }
    assert_retained(&broker).await;
}

#[tokio::test]
async fn periodic_sigterm_keeps_retained_and_offline_queues() {
    offline_session_survives("periodic", Stop::Term).await;
}

#[tokio::test]
async fn periodic_sigkill_keeps_retained_and_offline_queues() {
    offline_session_survives("periodic", Stop::Kill).await;
}

#[tokio::test]
async fn sync_sigterm_keeps_retained_and_offline_queues() {
    offline_session_survives("sync", Stop::Term).await;
}

#[tokio::test]
async fn sync_sigkill_keeps_retained_and_offline_queues() {
    offline_session_survives("sync", Stop::Kill).await;
}

#[tokio::test]
async fn mode_none_forgets_everything_at_a_restart() {
    let mut broker = TestBroker::start(with_mode("none"));
    broker.user_with_rights("alice", "pw", "d/#").await;
    let subs = offline_subscribers();
    for c in &subs {
        subscribe_then_leave(&broker, c).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_batch(&broker).await;
    stop_and_restart(&mut broker, Stop::Term);
    for c in &subs {
        let (mut s, present) = resume(&broker, c).await;
        assert!(!present, "{:?}: mode none keeps no session", c.version);
        s.expect_no_publish(QUIET, "mode none: nothing queued survives")
            .await;
    }
    let mut n = broker
        .login(Version::V5, &client_id("late"), "alice", "pw")
        .await;
    assert_eq!(n.subscribe("d/r", 1).await, 1);
    n.expect_no_publish(QUIET, "mode none: no retained message survives")
        .await;
}

/// A v5 session with `expiry` seconds: subscribe, disconnect, SIGTERM, stay
/// down until `downtime` after the disconnect, restart; session present?
async fn present_after_downtime(expiry: u32, downtime: Duration) -> bool {
    let mut broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "e/#").await;
    let c = persistent(Version::V5, &client_id("exp"), "alice", "pw", expiry);
    let (mut s, _) = resume(&broker, &c).await;
    assert_eq!(s.subscribe("e/#", 1).await, 1);
    s.disconnect().await;
    let left_at = tokio::time::Instant::now();
    stop(&mut broker, Stop::Term);
    tokio::time::sleep_until(left_at + downtime).await;
    broker.restart();
    let (_, present) = resume(&broker, &c).await;
    present
}

#[tokio::test]
async fn session_expiry_counts_the_downtime() {
    assert!(
        !present_after_downtime(3, Duration::from_secs(4)).await,
        "session expiry 3 s, 4 s since the disconnect (mostly downtime): expired"
    );
}

#[tokio::test]
async fn session_within_its_expiry_survives_a_short_downtime() {
    assert!(
        present_after_downtime(EXPIRY, Duration::from_secs(1)).await,
        "session expiry 300 s, 1 s downtime: session present"
    );
}

#[tokio::test]
async fn resumed_session_is_rechecked_against_rules_changed_while_down() {
    let mut broker = TestBroker::start_default();
    broker.add_user("reader", "pw", &[]).await;
    broker.allow("reader", "subscribe", "a/#").await;
    broker.allow("reader", "receive", "a/x").await;
    let y_rule = broker.allow("reader", "receive", "a/y").await;
    broker.user_with_rights("writer", "pw", "a/#").await;

    let c = persistent(Version::V5, &client_id("reader"), "reader", "pw", EXPIRY);
    let (mut s, _) = resume(&broker, &c).await;
    assert_eq!(s.subscribe("a/#", 1).await, 1);
    s.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut w = broker
        .login(Version::V5, &client_id("w"), "writer", "pw")
        .await;
    for (topic, text) in [("a/x", "x1"), ("a/y", "y1"), ("a/x", "x2"), ("a/y", "y2")] {
        assert_eq!(
            w.publish_acked(Publish::new(topic, text.as_bytes(), 1))
                .await,
            0
        );
    }
    w.disconnect().await;

    stop(&mut broker, Stop::Term);
    broker.cli_ok(&["acl", "remove", &y_rule.to_string()]).await;
    broker.restart();

    let mut s = resume_present(&broker, &c).await;
    let got = take(&mut s, 2, WAIT).await;
    assert_eq!(texts(&got), ["x1", "x2"], "a/x is still allowed");
    s.expect_no_publish(
        QUIET,
        "receive on a/y was removed while the broker was down",
    )
    .await;
}

#[tokio::test]
async fn session_owner_survives_the_restart() {
    let mut broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "o/#").await;
    broker.user_with_rights("bob", "pw", "o/#").await;
    let sessions = [
        (
            persistent(Version::V5, &client_id("own5"), "alice", "pw", EXPIRY),
            0x85,
        ),
        (
            persistent(Version::V311, &client_id("own3"), "alice", "pw", 0),
            0x02,
        ),
    ];
    for (c, _) in &sessions {
        let (mut s, _) = resume(&broker, c).await;
        assert_eq!(s.subscribe("o/#", 1).await, 1);
        s.disconnect().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    assert_eq!(p.publish_acked(Publish::new("o/m", b"mine", 1)).await, 0);
    p.disconnect().await;

    stop_and_restart(&mut broker, Stop::Term);
    for (c, refused) in &sessions {
        let mut thief = c.clone();
        thief.username = Some("bob".into());
        let mut raw = broker.raw().await;
        let (_, code, _) = raw.connect(&thief).await.expect("CONNACK");
        assert_eq!(
            code, *refused,
            "{:?}: bob must not take alice's stored session",
            c.version
        );
        let mut s = resume_present(&broker, c).await;
        let got = take(&mut s, 1, WAIT).await;
        assert_eq!(
            texts(&got),
            ["mine"],
            "{:?}: queue left untouched",
            c.version
        );
    }
}

#[tokio::test]
async fn subscriptions_keep_identifiers_qos_and_options() {
    let mut broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "k/#").await;
    let c = persistent(Version::V5, &client_id("subs"), "alice", "pw", EXPIRY);
    let (mut s, _) = resume(&broker, &c).await;
    let with_id = |id| Props(vec![Prop::VarInt(SUBSCRIPTION_ID, id)]);
    let granted = s
        .subscribe_with(1, &[Sub::new("k/a/#", 1)], &with_id(42))
        .await;
    assert_eq!(granted, [1]);
    let mut own = Sub::new("k/b/+", 2);
    own.no_local = true;
    assert_eq!(s.subscribe_with(2, &[own], &with_id(7)).await, [2]);

    // Online at the SIGTERM: the session must outlive the shutdown too.
    stop_and_restart(&mut broker, Stop::Term);
    let mut s = resume_present(&broker, &c).await;
    let mut p = broker
        .login(Version::V5, &client_id("p"), "alice", "pw")
        .await;
    for topic in ["k/a/1", "k/b/x"] {
        assert_eq!(p.publish_acked(Publish::new(topic, b"m", 2)).await, 0);
    }
    let got = take(&mut s, 2, WAIT).await;
    let seen: Vec<(&str, u8, Vec<u32>)> = got
        .iter()
        .map(|m| (m.topic.as_str(), m.qos, m.props.var_ints(SUBSCRIPTION_ID)))
        .collect();
    assert_eq!(
        seen,
        [("k/a/1", 1, vec![42]), ("k/b/x", 2, vec![7])],
        "granted QoS and subscription identifiers as before the restart"
    );
    let code = s.publish_acked(Publish::new("k/b/self", b"echo", 1)).await;
    assert!(code < 0x80, "own message accepted: {code:#04x}");
    s.expect_no_publish(QUIET, "no_local still applies after the restart")
        .await;
}

#[tokio::test]
async fn retained_replacements_and_clears_survive_sigkill() {
    let mut broker = TestBroker::start(with_mode("periodic"));
    broker.user_with_rights("alice", "pw", "d/#").await;
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    for (topic, text) in [
        ("d/gone", "old"),
        ("d/gone", ""),
        ("d/new", "v1"),
        ("d/new", "v2"),
    ] {
        let mut m = Publish::new(topic, text.as_bytes(), 1);
        m.retain = true;
        let code = p.publish_acked(m).await;
        assert!(
            code < 0x80,
            "retained {topic} {text:?} accepted: {code:#04x}"
        );
    }
    stop_and_restart(&mut broker, Stop::Kill);
    let mut n = broker
        .login(Version::V5, &client_id("late"), "alice", "pw")
        .await;
    assert_eq!(n.subscribe("d/#", 1).await, 1);
    let got = take(&mut n, 1, WAIT).await;
    let seen: Vec<(&str, &[u8], bool)> = got
        .iter()
        .map(|m| (m.topic.as_str(), m.payload.as_slice(), m.retain))
        .collect();
    assert_eq!(
        seen,
        [("d/new", &b"v2"[..], true)],
        "the latest retained value after the restart"
    );
    n.expect_no_publish(QUIET, "a cleared retained message stays cleared")
        .await;
}

#[tokio::test]
async fn queue_limit_applies_to_what_survives_a_restart() {
    let mut broker = TestBroker::start(BrokerOptions {
        max_queued_messages: 3,
        ..with_mode("periodic")
    });
    broker.user_with_rights("alice", "pw", "d/#").await;
    let c = persistent(Version::V5, &client_id("bounded"), "alice", "pw", EXPIRY);
    subscribe_then_leave(&broker, &c).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    for text in ["1", "2", "3", "4", "5"] {
        let code = p
            .publish_acked(Publish::new("d/q", text.as_bytes(), 1))
            .await;
        assert!(code < 0x80, "{text} accepted: {code:#04x}");
    }
    stop_and_restart(&mut broker, Stop::Kill);
    let mut s = resume_present(&broker, &c).await;
    let got = take(&mut s, 5, Duration::from_secs(2)).await;
    assert_eq!(
        texts(&got),
        ["3", "4", "5"],
        "max_queued_messages 3: the newest 3, on disk as in memory"
    );
}

#[tokio::test]
async fn will_of_a_session_that_expired_while_down_is_published_at_start() {
    let mut broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "w/#").await;
    let watch = persistent(Version::V5, &client_id("watch"), "alice", "pw", EXPIRY);
    let (mut w, _) = resume(&broker, &watch).await;
    assert_eq!(w.subscribe("w/#", 1).await, 1);
    w.disconnect().await;
    // Session expiry 2 s, will delay 60 s: the will is due when the session
    // ends, 2 s after the connection drops, which happens while the broker
    // is down.
    let mut dies = persistent(Version::V5, &client_id("dies"), "alice", "pw", 2);
    let mut will = Will {
        topic: "w/dies".into(),
        payload: b"gone".to_vec(),
        qos: 1,
        ..Will::default()
    };
    will.props.0.push(Prop::U32(WILL_DELAY, 60));
    dies.will = Some(will);
    let (d, _) = resume(&broker, &dies).await;
    drop(d);
    // Let the broker see the drop (the session goes offline, its expiry
    // starts), then stop it well inside the 2 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&mut broker, Stop::Term);
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart();
    let mut w = resume_present(&broker, &watch).await;
    let got = take(&mut w, 2, Duration::from_secs(3)).await;
    assert_eq!(
        texts(&got),
        ["gone"],
        "the will, once, to the persistent watcher"
    );
    assert_eq!(got[0].topic, "w/dies");
    let (_, present) = resume(&broker, &dies).await;
    assert!(!present, "the expired session itself is gone");
}
