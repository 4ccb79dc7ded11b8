//! Inflight QoS 1/2 state across a SIGKILL (issue 10): outgoing messages a
//! subscriber had not acknowledged are resent on resume with their original
//! packet ids (QoS 1 and unreceived QoS 2 as PUBLISH with DUP=1, a QoS 2 the
//! client had PUBREC'd as PUBREL only), and an incoming QoS 2 whose PUBREL
//! comes after the restart completes with PUBCOMP and is delivered exactly
//! once (MQTT 3.1.1 §4.4, 5.0 §4.4 and §4.3.3).

use std::time::Duration;

use warden_e2e::durable::*;
use warden_e2e::*;

const EXPIRY: u32 = 300;

/// Packet ids one subscriber saw before the kill: a QoS 1 it never
/// acknowledged, a QoS 2 it PUBREC'd (and got PUBREL for, but sent no
/// PUBCOMP), and a QoS 2 it never answered.
struct Unfinished {
    connect: Connect,
    q1: u16,
    received: u16,
    unanswered: u16,
}

fn is_publish_of(p: &Incoming, text: &[u8]) -> bool {
    matches!(p, Incoming::Publish(m) if m.payload == text)
}

async fn next_unacked(s: &mut RawClient, what: &str) -> Publish {
    s.next_publish(WAIT)
        .await
        .unwrap_or_else(|| panic!("{what} delivered before the kill"))
}

/// Publishes the three messages while both subscribers are online and leaves
/// each one's flows unfinished as `Unfinished` describes.
async fn leave_unfinished(
    broker: &TestBroker,
    subs: &mut [(Connect, RawClient)],
) -> Vec<Unfinished> {
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    assert_eq!(p.publish_acked(Publish::new("i/t", b"q1", 1)).await, 0);
    let mut q1 = Vec::new();
    for (_, s) in subs.iter_mut() {
        q1.push(next_unacked(s, "q1").await.packet_id);
    }
    assert_eq!(
        p.publish_acked(Publish::new("i/t", b"received", 2)).await,
        0
    );
    let mut received = Vec::new();
    for (_, s) in subs.iter_mut() {
        let m = next_unacked(s, "received").await;
        send_ack(s, 0x50, m.packet_id).await;
        let id = m.packet_id;
        s.expect(
            "PUBREL",
            |i| matches!(i, Incoming::PubRel { packet_id, .. } if *packet_id == id),
        )
        .await;
        received.push(id);
    }
    assert_eq!(
        p.publish_acked(Publish::new("i/t", b"unanswered", 2)).await,
        0
    );
    let mut unfinished = Vec::new();
    for (i, (c, s)) in subs.iter_mut().enumerate() {
        unfinished.push(Unfinished {
            connect: c.clone(),
            q1: q1[i],
            received: received[i],
            unanswered: next_unacked(s, "unanswered").await.packet_id,
        });
    }
    unfinished
}

/// The resent PUBLISH carrying `text`: DUP=1, the original id and QoS.
fn assert_resent(seen: &[Incoming], text: &[u8], id: u16, qos: u8, version: Version) {
    let copies: Vec<&Publish> = seen
        .iter()
        .filter_map(|p| match p {
            Incoming::Publish(m) if m.payload == text => Some(m),
            _ => None,
        })
        .collect();
    let what = String::from_utf8_lossy(text);
    assert_eq!(
        copies.len(),
        1,
        "{version:?} {what}: resent once, saw {seen:?}"
    );
    let m = copies[0];
    assert!(
        m.dup,
        "{version:?} {what}: a re-delivery carries DUP=1: {m:?}"
    );
    assert_eq!(
        (m.packet_id, m.qos),
        (id, qos),
        "{version:?} {what}: resent with its original packet id [MQTT-4.4.0-1]"
    );
}

/// Resumes one subscriber, checks what the broker resends, finishes every
/// flow and checks nothing comes twice.
async fn assert_resumed(broker: &TestBroker, u: &Unfinished) {
    let v = u.connect.version;
    let mut s = resume_present(broker, &u.connect).await;
    s.auto_ack = false;
    let rel = u.received;
    let seen = gather(&mut s, WAIT, |seen| {
        seen.iter().any(|p| is_publish_of(p, b"q1"))
            && seen.iter().any(|p| is_publish_of(p, b"unanswered"))
            && seen
                .iter()
                .any(|p| matches!(p, Incoming::PubRel { packet_id, .. } if *packet_id == rel))
    })
    .await;
    assert_resent(&seen, b"q1", u.q1, 1, v);
    assert_resent(&seen, b"unanswered", u.unanswered, 2, v);
    assert!(
        seen.iter()
            .any(|p| matches!(p, Incoming::PubRel { packet_id, .. } if *packet_id == rel)),
        "{v:?}: the PUBREC'd QoS 2 gets its PUBREL again: {seen:?}"
    );
    assert!(
        !seen.iter().any(|p| is_publish_of(p, b"received")),
        "{v:?}: a QoS 2 PUBLISH is never resent after its PUBREL [MQTT-4.3.3-4]: {seen:?}"
    );
    let order: Vec<&[u8]> = seen
        .iter()
        .filter_map(|p| match p {
            Incoming::Publish(m) => Some(m.payload.as_slice()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [&b"q1"[..], &b"unanswered"[..]],
        "{v:?}: resent in the original order [MQTT-4.6.0-1]"
    );

    send_ack(&mut s, 0x40, u.q1).await;
    send_ack(&mut s, 0x70, rel).await;
    send_ack(&mut s, 0x50, u.unanswered).await;
    let id = u.unanswered;
    s.expect(
        "PUBREL for the unanswered QoS 2",
        |i| matches!(i, Incoming::PubRel { packet_id, .. } if *packet_id == id),
    )
    .await;
    send_ack(&mut s, 0x70, id).await;
    s.expect_no_publish(QUIET, "every flow finished: no message twice")
        .await;
}

#[tokio::test]
async fn unacknowledged_deliveries_resume_after_sigkill() {
    let mut broker = TestBroker::start(with_mode("sync"));
    broker.user_with_rights("alice", "pw", "i/#").await;
    let mut subs = Vec::new();
    for c in [
        persistent(Version::V5, &client_id("in5"), "alice", "pw", EXPIRY),
        persistent(Version::V311, &client_id("in3"), "alice", "pw", 0),
    ] {
        let (mut s, _) = resume(&broker, &c).await;
        s.auto_ack = false;
        assert_eq!(s.subscribe("i/#", 2).await, 2);
        subs.push((c, s));
    }
    let unfinished = leave_unfinished(&broker, &mut subs).await;
    stop_and_restart(&mut broker, Stop::Kill);
    drop(subs);
    for u in &unfinished {
        assert_resumed(&broker, u).await;
    }
}

/// Subscriber online (auto-acknowledging); a persistent publisher sends a
/// QoS 2 PUBLISH, gets PUBREC, the broker is killed; after the restart the
/// publisher sends PUBREL on its resumed session.
async fn inbound_qos2_across_sigkill(mode: &str) {
    let mut broker = TestBroker::start(with_mode(mode));
    broker.user_with_rights("alice", "pw", "n/#").await;
    let sub = persistent(Version::V5, &client_id("nsub"), "alice", "pw", EXPIRY);
    let (mut s, _) = resume(&broker, &sub).await;
    assert_eq!(s.subscribe("n/#", 2).await, 2);
    let publisher = persistent(Version::V5, &client_id("npub"), "alice", "pw", EXPIRY);
    let (mut p, _) = resume(&broker, &publisher).await;
    let mut m = Publish::new("n/once", b"exactly", 2);
    m.packet_id = 7;
    p.publish(&m).await.expect("send PUBLISH");
    match p
        .expect("PUBREC", |i| {
            matches!(i, Incoming::PubRec { packet_id: 7, .. })
        })
        .await
    {
        Incoming::PubRec { code, .. } => assert_eq!(code, 0, "PUBREC success"),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // A broker may deliver on PUBLISH (method A) or on PUBREL (method B).
    let before = take(&mut s, 1, QUIET).await;

    stop_and_restart(&mut broker, Stop::Kill);
    let mut s = resume_present(&broker, &sub).await;
    let mut p = resume_present(&broker, &publisher).await;
    send_ack(&mut p, 0x62, 7).await;
    match p
        .expect("PUBCOMP", |i| {
            matches!(i, Incoming::PubComp { packet_id: 7, .. })
        })
        .await
    {
        Incoming::PubComp { code, .. } => assert_eq!(
            code, 0,
            "PUBCOMP success, not 0x92 (packet identifier not found): the QoS 2 state was lost"
        ),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let wait = if before.is_empty() { WAIT } else { QUIET };
    let after = take(&mut s, 1, wait).await;
    s.expect_no_publish(QUIET, "QoS 2: no further copy").await;
    assert_eq!(
        before.len() + after.len(),
        1,
        "delivered exactly once overall: {} before the kill, {} after",
        before.len(),
        after.len()
    );
}

#[tokio::test]
async fn inbound_qos2_completes_after_sigkill_sync() {
    inbound_qos2_across_sigkill("sync").await;
}

#[tokio::test]
async fn inbound_qos2_completes_after_sigkill_periodic() {
    inbound_qos2_across_sigkill("periodic").await;
}

#[tokio::test]
async fn session_without_expiry_is_not_revived_by_a_restart() {
    // The control case: a v5 session with expiry 0 ends with its connection,
    // so its inflight message must not come back after the restart.
    let mut broker = TestBroker::start(with_mode("sync"));
    broker.user_with_rights("alice", "pw", "i/#").await;
    let id = client_id("short");
    let mut s = broker.login(Version::V5, &id, "alice", "pw").await;
    s.auto_ack = false;
    assert_eq!(s.subscribe("i/#", 1).await, 1);
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    assert_eq!(p.publish_acked(Publish::new("i/t", b"gone", 1)).await, 0);
    next_unacked(&mut s, "gone").await;
    stop_and_restart(&mut broker, Stop::Kill);
    let (mut s, present) = resume(&broker, &persistent(Version::V5, &id, "alice", "pw", 0)).await;
    assert!(
        !present,
        "session expiry 0: the session ended with its connection"
    );
    s.expect_no_publish(
        Duration::from_millis(500),
        "nothing of that session survives",
    )
    .await;
}
