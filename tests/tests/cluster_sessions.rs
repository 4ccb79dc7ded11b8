//! Sessions across the nodes of a cluster (issue 15): Warden nodes on one
//! PostgreSQL policy store and a JetStream-enabled nats-server of the
//! test's own. A persistent client moves from node 1 to node 2 and gets the
//! QoS 1 messages queued while it was offline (session present, the old
//! connection kicked with 0x8E); another user is refused by the single-node
//! rules; a killed owner is taken over and yields when it comes back; a
//! will fires once, and not when the session is taken over on another
//! node; without NATS, persistent sessions are refused (0x88 / 0x03) and
//! clean ones served.

use std::time::{Duration, Instant};

use warden_e2e::nats::{cluster_name, cluster_node, NatsServer};
use warden_e2e::sessions::*;
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::wire::WILL_DELAY;
use warden_e2e::*;

/// Unique per test: two tests never share subjects or a bucket.
const READY: &str = "cluster: session ownership bucket ready";

/// A node, once its ownership bucket is set up.
async fn node(store: &TestStore, nats: &NatsServer, cluster: &str, id: &str) -> TestBroker {
    let n = cluster_node(store, &[nats.url()], cluster, id, "", false);
    assert!(
        n.wait_log(READY, Duration::from_secs(20)).await,
        "node {id}: no bucket:\n{}",
        n.log()
    );
    n
}

/// alice and bob, each with every right on their own tree; alice's watcher
/// `w` may receive alice's wills.
async fn users(n: &TestBroker) {
    n.user_with_rights("alice", "pw", "a/#").await;
    n.user_with_rights("bob", "pw", "b/#").await;
    n.user_with_rights("w", "pw", "a/#").await;
}

/// QoS 1 publishes on `a/x` from a connection of alice's on `n`.
async fn publish(n: &TestBroker, payloads: &[&str]) {
    let mut p = n
        .login(Version::V5, &client_id("apub"), "alice", "pw")
        .await;
    for m in payloads {
        assert_eq!(
            p.publish_acked(Publish::new("a/x", m.as_bytes(), 1)).await,
            0
        );
    }
    p.disconnect().await;
}

/// The v5 DISCONNECT code a kicked connection was sent.
async fn kicked_with(c: &mut RawClient) -> Option<u8> {
    c.ending(Duration::from_secs(10)).await.disconnect_code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_moves_to_another_node_with_its_queue() {
    let nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("move");
    let n1 = node(&store, &nats, &cluster, "n1").await;
    let n2 = node(&store, &nats, &cluster, "n2").await;
    let n3 = node(&store, &nats, &cluster, "n3").await;
    users(&n1).await;
    let id = client_id("mover");

    // Subscribed on node 1, then offline: node 1 keeps its queue.
    let (mut c, present) = n1
        .connect_ok(&persistent(Version::V5, &id, Some("alice"), false))
        .await;
    assert!(!present);
    assert_eq!(c.subscribe("a/#", 1).await, 1);
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Published on node 3 while the client is offline.
    publish(&n3, &["q1", "q2"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // It connects to node 2: the session comes over with its queue.
    let started = Instant::now();
    let (mut c2, present) = n2
        .connect_ok(&persistent(Version::V5, &id, Some("alice"), false))
        .await;
    let moved = started.elapsed();
    assert!(present, "session present on node 2\n{}", n2.log());
    let got = payloads(&drain(&mut c2, Duration::from_secs(2)).await);
    assert_eq!(got, ["q1", "q2"], "queued messages handed over");
    // Printed, not asserted: a move against a reconnection to the same
    // node (each a TLS handshake, a login and CONNACK).
    c2.disconnect().await;
    let started = Instant::now();
    let (mut c2, present) = n2
        .connect_ok(&persistent(Version::V5, &id, Some("alice"), false))
        .await;
    println!(
        "CONNACK: {moved:?} moving from node 1 (2 queued), {:?} back on the same node",
        started.elapsed()
    );
    assert!(present);
    assert!(n1.log().contains("session handed over to another node"));
    assert!(n2.log().contains("session taken over from another node"));

    // Its subscription lives on node 2 now: a publish on node 1 reaches it.
    publish(&n1, &["live"]).await;
    let got = payloads(&drain(&mut c2, Duration::from_secs(2)).await);
    assert_eq!(got, ["live"]);

    // Back to node 1 while connected on node 2: the connection on node 2
    // is kicked with 0x8E, and node 1 has the session.
    let (mut c1, present) = n1
        .connect_ok(&persistent(Version::V5, &id, Some("alice"), false))
        .await;
    assert!(present);
    assert_eq!(kicked_with(&mut c2).await, Some(0x8E), "{}", n2.log());
    publish(&n3, &["back"]).await;
    let got = payloads(&drain(&mut c1, Duration::from_secs(2)).await);
    assert_eq!(got, ["back"], "one copy, on node 1");

    // A message in flight (sent, not acknowledged) moves too, and is sent
    // again by the new node.
    c1.auto_ack = false;
    publish(&n3, &["unacked"]).await;
    let p = c1.next_publish(WAIT).await.expect("unacked sent on node 1");
    assert_eq!(p.payload, b"unacked");
    let (mut c2, present) = n2
        .connect_ok(&persistent(Version::V5, &id, Some("alice"), false))
        .await;
    assert!(present);
    assert_eq!(kicked_with(&mut c1).await, Some(0x8E));
    let got = payloads(&drain(&mut c2, Duration::from_secs(2)).await);
    assert_eq!(got, ["unacked"], "in flight, resent by node 2");
    c2.disconnect().await;

    // A v3.1.1 client moves the same way (no DISCONNECT on v3: a close).
    let id3 = client_id("mover3");
    let (mut v3, _) = n1
        .connect_ok(&persistent(Version::V311, &id3, Some("alice"), false))
        .await;
    assert_eq!(v3.subscribe("a/#", 1).await, 1);
    v3.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&n2, &["v3"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut v3, present) = n3
        .connect_ok(&persistent(Version::V311, &id3, Some("alice"), false))
        .await;
    assert!(present);
    let got = payloads(&drain(&mut v3, Duration::from_secs(2)).await);
    assert_eq!(got, ["v3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_take_a_session_over_from_another_node() {
    let nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("theft");
    let n1 = node(&store, &nats, &cluster, "n1").await;
    let n2 = node(&store, &nats, &cluster, "n2").await;
    users(&n1).await;
    for version in [Version::V5, Version::V311] {
        let id = client_id("owned");
        let mut alice = n1
            .login_with(persistent(version, &id, Some("alice"), false))
            .await;
        assert_eq!(alice.subscribe("a/#", 1).await, 1);

        // Online on node 1: bob on node 2 is refused, alice stays.
        let (mut thief, present, code) =
            try_connect(&n2, &persistent(version, &id, Some("bob"), false)).await;
        assert_eq!((present, code), (false, id_refused(version)), "{version:?}");
        assert_closed_without_publish(&mut thief, "bob").await;
        publish(&n2, &["still-alice"]).await;
        let got = payloads(&drain(&mut alice, Duration::from_secs(2)).await);
        assert_eq!(
            got,
            ["still-alice"],
            "{version:?}: alice kept her connection"
        );

        // Offline on node 1, a message queued: still refused, and alice
        // resumes on node 2 with it.
        alice.disconnect().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        publish(&n1, &["queued"]).await;
        let (_thief, present, code) =
            try_connect(&n2, &persistent(version, &id, Some("bob"), true)).await;
        assert_eq!((present, code), (false, id_refused(version)), "{version:?}");
        let (mut alice, present) = n2
            .connect_ok(&persistent(version, &id, Some("alice"), false))
            .await;
        assert!(present, "{version:?}");
        let got = payloads(&drain(&mut alice, Duration::from_secs(2)).await);
        assert_eq!(got, ["queued"], "{version:?}");
        alice.disconnect().await;
    }
    assert!(n1.log().contains("takeover from another node refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_taken_over_and_yields_when_it_comes_back() {
    let nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("kill");
    let mut n1 = node(&store, &nats, &cluster, "n1").await;
    let n2 = node(&store, &nats, &cluster, "n2").await;
    users(&n1).await;
    let id = client_id("survivor");
    let mut c = n1
        .login_with(persistent(Version::V5, &id, Some("alice"), false))
        .await;
    assert_eq!(c.subscribe("a/#", 1).await, 1);

    n1.signal("KILL");
    assert!(n1.wait_exit(Duration::from_secs(5)).is_some());
    drop(c);

    // Node 2 takes the session with the next epoch; node 1's queue is out of
    // reach, so the session starts empty there.
    let (mut c, present) = n2
        .connect_ok(&persistent(Version::V5, &id, Some("alice"), false))
        .await;
    assert!(!present, "node 1's state is not reachable");
    let log = n2.log();
    assert!(
        log.contains("session taken over from a node that did not answer")
            && log.contains("epoch=2"),
        "{log}"
    );
    assert_eq!(c.subscribe("a/#", 1).await, 1);

    // Node 1 comes back with the session in its store: it yields.
    n1.restart();
    assert!(
        n1.wait_log(
            "session owned by another node now; dropped here",
            Duration::from_secs(20)
        )
        .await,
        "{}",
        n1.log()
    );
    publish(&n1, &["after-restart"]).await;
    let got = payloads(&drain(&mut c, Duration::from_secs(2)).await);
    assert_eq!(got, ["after-restart"], "still connected on node 2");

    // Node 2 keeps it: offline there, a message queued from node 1, and
    // the client resumes on node 2.
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&n1, &["queued-on-2"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut c, present) = n2
        .connect_ok(&persistent(Version::V5, &id, Some("alice"), false))
        .await;
    assert!(present);
    let got = payloads(&drain(&mut c, Duration::from_secs(2)).await);
    assert_eq!(got, ["queued-on-2"]);
    assert!(
        !n1.log().contains("session handed over to another node"),
        "node 1 was never asked: it had yielded"
    );
}

/// A persistent v5 CONNECT of alice's with a will on `topic` delayed by
/// `delay` seconds.
fn with_will(id: &str, topic: &str, delay: u32) -> Connect {
    let mut c = persistent(Version::V5, id, Some("alice"), false);
    let mut props = Props::default();
    if delay > 0 {
        props.0.push(Prop::U32(WILL_DELAY, delay));
    }
    c.will = Some(Will {
        topic: topic.to_owned(),
        payload: b"gone".to_vec(),
        qos: 1,
        retain: false,
        props,
    });
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_fires_once_and_not_when_another_node_takes_over() {
    let nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("will");
    let n1 = node(&store, &nats, &cluster, "n1").await;
    let n2 = node(&store, &nats, &cluster, "n2").await;
    let n3 = node(&store, &nats, &cluster, "n3").await;
    users(&n1).await;
    let mut watchers = Vec::new();
    for n in [&n1, &n2, &n3] {
        let mut w = n.login(Version::V5, &client_id("w"), "w", "pw").await;
        assert_eq!(w.subscribe("a/will/#", 1).await, 1);
        watchers.push(w);
    }

    // The client dies (no DISCONNECT): each watcher, on every node, gets
    // the will once.
    let dies = client_id("dies");
    let c = n1.login_with(with_will(&dies, "a/will/dies", 0)).await;
    drop(c);
    for w in &mut watchers {
        let got = payloads(&drain(w, Duration::from_secs(2)).await);
        assert_eq!(got, ["gone"], "one will per watcher");
    }

    // A will with a delay, its session taken over on node 2: the takeover
    // cancels it, on node 1 and everywhere.
    let moves = client_id("moves");
    let mut old = n1.login_with(with_will(&moves, "a/will/moves", 3)).await;
    let (mut new, present) = n2
        .connect_ok(&persistent(Version::V5, &moves, Some("alice"), false))
        .await;
    assert!(present);
    assert_eq!(kicked_with(&mut old).await, Some(0x8E));
    tokio::time::sleep(Duration::from_secs(4)).await;
    for w in &mut watchers {
        w.expect_no_publish(QUIET, "no will after a takeover").await;
    }
    new.disconnect().await;

    // The same with a will delay, the client dying on node 2 this time:
    // node 2 owns it and fires it once, after the delay.
    let late = client_id("late");
    let c = n2.login_with(with_will(&late, "a/will/late", 1)).await;
    drop(c);
    for w in &mut watchers {
        let got = payloads(&drain(w, Duration::from_secs(4)).await);
        assert_eq!(got, ["gone"], "one delayed will per watcher");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_persistent_sessions_are_refused_and_clean_ones_served() {
    let mut nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("down");
    let n1 = node(&store, &nats, &cluster, "n1").await;
    users(&n1).await;

    nats.stop();
    assert!(
        n1.wait_log("cluster: NATS unreachable", Duration::from_secs(20))
            .await
    );
    for (version, code) in [(Version::V5, 0x88), (Version::V311, 0x03)] {
        let id = client_id("p");
        let (mut c, present, got) =
            try_connect(&n1, &persistent(version, &id, Some("alice"), false)).await;
        assert_eq!(
            (present, got),
            (false, code),
            "{version:?}: persistent refused"
        );
        assert_closed_without_publish(&mut c, "refused").await;
        let (mut clean, present, got) =
            try_connect(&n1, &persistent(version, &id, Some("alice"), true)).await;
        if version == Version::V5 {
            // Clean start with an expiry is still persistent: refused.
            assert_eq!((present, got), (false, 0x88));
            let (c, _, got) =
                try_connect(&n1, &Connect::new(version, &id).login("alice", "pw")).await;
            clean = c;
            assert_eq!(got, 0, "clean v5 session served");
        } else {
            assert_eq!(got, 0, "clean v3 session served");
        }
        assert_eq!(clean.subscribe("a/#", 1).await, 1);
        publish(&n1, &["local"]).await;
        let got = payloads(&drain(&mut clean, Duration::from_secs(2)).await);
        assert_eq!(got, ["local"]);
    }

    // NATS back: persistent sessions are registered again.
    nats.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let id = client_id("again");
        let (_c, _, code) =
            try_connect(&n1, &persistent(Version::V5, &id, Some("alice"), false)).await;
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused:\n{}", n1.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
