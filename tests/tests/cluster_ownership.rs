//! Session ownership records across the nodes of a cluster (issue 15):
//! Warden nodes on one PostgreSQL policy store and a JetStream-enabled
//! nats-server of the test's own.
//!
//! - The bucket holds one record per session that outlives its connection:
//!   a record goes when its session ends on its node (expiry 0 at
//!   DISCONNECT, session expiry elapsed, a clean connect taking the client
//!   id over on another node); a clean session never has one; the node a
//!   session moved away from does not delete the new owner's record.
//! - Two connects of one client id on two nodes at the same instant, many
//!   times over (v5, persistent and clean): neither is refused (never
//!   0x88), exactly one connection is left, the other kicked with 0x8E, and
//!   the session's subscription made before survives every race.

use std::time::{Duration, Instant};

use warden_e2e::http::{scrape, value};
use warden_e2e::nats::{cluster_name, cluster_node, NatsCluster, NatsServer};
use warden_e2e::sessions::*;
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::wire::SESSION_EXPIRY;
use warden_e2e::*;

const READY: &str = "cluster: session ownership bucket ready";

/// A node (with /metrics), once its ownership bucket is set up.
async fn node(store: &TestStore, urls: &[String], cluster: &str, id: &str) -> TestBroker {
    let n = cluster_node(store, urls, cluster, id, "", true);
    assert!(
        n.wait_log(READY, Duration::from_secs(20)).await,
        "node {id}: no bucket:\n{}",
        n.log()
    );
    n
}

/// The number of records in the cluster's ownership bucket.
async fn records(nats: &NatsServer, cluster: &str) -> u64 {
    let stream = format!("KV_warden-{cluster}-sessions");
    nats.stream_messages(&stream).await.unwrap_or(0)
}

/// Waits (10 s at most) until the bucket holds `want` records.
async fn records_until(nats: &NatsServer, cluster: &str, want: u64, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = records(nats, cluster).await;
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{why}: {n} records, want {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// alice's v5 CONNECT with session expiry `secs` (clean start 0).
fn expiring(id: &str, secs: u32) -> Connect {
    let mut c = Connect::new(Version::V5, id).login("alice", "pw");
    c.clean = false;
    c.props.0.push(Prop::U32(SESSION_EXPIRY, secs));
    c
}

/// A v5 DISCONNECT that sets the session expiry to 0: the session ends.
async fn disconnect_ending_session(c: &mut RawClient) {
    // DISCONNECT, remaining length 7: reason 0, properties (5 bytes):
    // session expiry interval = 0.
    let bytes = [0xE0, 0x07, 0x00, 0x05, SESSION_EXPIRY, 0, 0, 0, 0];
    c.send(&bytes).await.expect("DISCONNECT sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_records_go_when_their_sessions_end() {
    let nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("recgone");
    let mut n1 = node(&store, &[nats.url()], &cluster, "n1").await;
    let n2 = node(&store, &[nats.url()], &cluster, "n2").await;
    n1.user_with_rights("alice", "pw", "a/#").await;
    assert_eq!(records(&nats, &cluster).await, 0);

    // Expiry 0 at DISCONNECT: the record goes with the session.
    let id = client_id("gone0");
    let (mut c, _) = n1.connect_ok(&expiring(&id, 300)).await;
    assert_eq!(
        records(&nats, &cluster).await,
        1,
        "registered before CONNACK"
    );
    disconnect_ending_session(&mut c).await;
    records_until(&nats, &cluster, 0, "after DISCONNECT with expiry 0").await;

    // The session expiry elapses: the record goes.
    let id = client_id("expires");
    let (mut c, _) = n1.connect_ok(&expiring(&id, 2)).await;
    assert_eq!(c.subscribe("a/x", 1).await, 1);
    c.disconnect().await;
    assert_eq!(records(&nats, &cluster).await, 1, "offline, not expired");
    records_until(&nats, &cluster, 0, "after the session expiry").await;

    // Clean sessions never have one (checked right after CONNACK: a record
    // would have been written before it).
    let (mut v3, _) = n1
        .connect_ok(&Connect::new(Version::V311, &client_id("v3clean")).login("alice", "pw"))
        .await;
    let (mut v5, _) = n2
        .connect_ok(&Connect::new(Version::V5, &client_id("v5clean")).login("alice", "pw"))
        .await;
    assert_eq!(records(&nats, &cluster).await, 0, "clean sessions");
    v3.disconnect().await;
    v5.disconnect().await;

    // A session that moves: the node it left does not delete the new
    // owner's record; the new owner does when the session ends there.
    let id = client_id("moves");
    let (mut c1, _) = n1.connect_ok(&expiring(&id, 300)).await;
    let (mut c2, present) = n2.connect_ok(&expiring(&id, 300)).await;
    assert!(present);
    assert_eq!(
        c1.ending(Duration::from_secs(10)).await.disconnect_code(),
        Some(0x8E)
    );
    assert_eq!(records(&nats, &cluster).await, 1);
    disconnect_ending_session(&mut c2).await;
    records_until(&nats, &cluster, 0, "moved, then ended on node 2").await;

    // A clean connect on node 2 takes over a session of node 1: node 1
    // deletes the record as it lets go.
    let id = client_id("tocean");
    let (mut c1, _) = n1.connect_ok(&expiring(&id, 300)).await;
    assert_eq!(records(&nats, &cluster).await, 1);
    let (mut c2, present) = n2
        .connect_ok(&Connect::new(Version::V5, &id).login("alice", "pw"))
        .await;
    assert!(!present);
    assert_eq!(
        c1.ending(Duration::from_secs(10)).await.disconnect_code(),
        Some(0x8E)
    );
    assert_eq!(records(&nats, &cluster).await, 0, "deleted by node 1");
    c2.disconnect().await;

    // Many sessions come and go: the bucket does not grow.
    for i in 0..20 {
        let (mut c, _) = n1
            .connect_ok(&expiring(&client_id(&format!("churn{i}")), 300))
            .await;
        disconnect_ending_session(&mut c).await;
    }
    records_until(&nats, &cluster, 0, "after 20 sessions came and went").await;
    let m1 = scrape(n1.addr("metrics")).await;
    let m2 = scrape(n2.addr("metrics")).await;
    println!(
        "records deleted: node 1 {}, node 2 {}",
        value(&m1, "warden_cluster_session_records_deleted_total"),
        value(&m2, "warden_cluster_session_records_deleted_total"),
    );
    assert_eq!(
        value(&m1, "warden_cluster_session_records_deleted_total"),
        23.0
    );
    assert_eq!(
        value(&m2, "warden_cluster_session_records_deleted_total"),
        1.0
    );

    // A session that expires while its node is down: its record goes once
    // the node is back and has restored what it stored.
    let id = client_id("downexpiry");
    let (mut c, _) = n1.connect_ok(&expiring(&id, 2)).await;
    assert_eq!(c.subscribe("a/x", 1).await, 1);
    c.disconnect().await;
    assert_eq!(records(&nats, &cluster).await, 1);
    n1.signal("KILL");
    assert!(n1.wait_exit(Duration::from_secs(10)).is_some());
    // Down for longer than the session expiry (the downtime itself, not a
    // wait for a result).
    tokio::time::sleep(Duration::from_secs(3)).await;
    n1.restart();
    records_until(&nats, &cluster, 0, "after the restart of its node").await;
}

/// Of two connections, the one the broker kicks first: its index and the
/// v5 DISCONNECT reason code it got (fails if neither is kicked).
async fn first_kicked(a: &mut RawClient, b: &mut RawClient) -> (usize, Option<u8>) {
    let wait = Duration::from_secs(15);
    tokio::select! {
        e = a.ending(wait) => (0, e.disconnect_code()),
        e = b.ending(wait) => (1, e.disconnect_code()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connects_at_once_on_two_nodes_end_with_one() {
    let nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("race");
    let n1 = node(&store, &[nats.url()], &cluster, "n1").await;
    let n2 = node(&store, &[nats.url()], &cluster, "n2").await;
    let n3 = node(&store, &[nats.url()], &cluster, "n3").await;
    races(&n1, &n2, &n3).await;
    // One record: the first persistent session's; the clean one never had
    // any, and the mixed one ended.
    records_until(&nats, &cluster, 1, "after the races").await;
}

/// The same on a 3-server NATS cluster, each node on its own server: the
/// bucket has three replicas, and each node reads from its own server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connects_at_once_over_a_nats_cluster_end_with_one() {
    let nats = NatsCluster::start_unadvertised(3).await;
    let urls = nats.urls();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("racecl");
    let n1 = node(&store, &urls[0..1], &cluster, "n1").await;
    let n2 = node(&store, &urls[1..2], &cluster, "n2").await;
    let n3 = node(&store, &urls[2..3], &cluster, "n3").await;
    races(&n1, &n2, &n3).await;
    records_until(&nats.servers[0], &cluster, 1, "after the races").await;
}

/// Rounds of two connects at once with one client id, on nodes 1 and 2:
/// persistent, clean, and one of each; node 3 publishes.
async fn races(n1: &TestBroker, n2: &TestBroker, n3: &TestBroker) {
    n1.user_with_rights("alice", "pw", "a/#").await;
    let mut publisher = n3.login(Version::V5, &client_id("rp"), "alice", "pw").await;

    // A persistent session with a subscription, offline on node 1.
    let id = client_id("racer");
    let (mut c, _) = n1
        .connect_ok(&persistent(Version::V5, &id, Some("alice"), false))
        .await;
    assert_eq!(c.subscribe("a/race", 1).await, 1);
    c.disconnect().await;

    for round in 0..15 {
        let connect = persistent(Version::V5, &id, Some("alice"), false);
        let ((mut a, pa, ca), (mut b, pb, cb)) =
            tokio::join!(try_connect(n1, &connect), try_connect(n2, &connect));
        assert_eq!((ca, cb), (0, 0), "round {round}: CONNACK codes");
        let (kicked, code) = first_kicked(&mut a, &mut b).await;
        assert_eq!(code, Some(0x8E), "round {round}: the other one kicked");
        let (mut survivor, present) = if kicked == 0 { (b, pb) } else { (a, pa) };
        assert!(present, "round {round}: the survivor has the session");
        // Its subscription survived the race, and it is still connected.
        let payload = format!("r{round}");
        assert_eq!(
            publisher
                .publish_acked(Publish::new("a/race", payload.as_bytes(), 1))
                .await,
            0
        );
        let got = survivor.next_publish(WAIT).await;
        assert_eq!(
            got.map(|p| p.payload),
            Some(payload.into_bytes()),
            "round {round}: the survivor (on node {}) gets what is published",
            2 - kicked
        );
        survivor.disconnect().await;
    }

    let id = client_id("cleanracer");
    for round in 0..15 {
        let connect = Connect::new(Version::V5, &id).login("alice", "pw");
        let ((mut a, _, ca), (mut b, _, cb)) =
            tokio::join!(try_connect(n1, &connect), try_connect(n2, &connect));
        assert_eq!((ca, cb), (0, 0), "clean round {round}: CONNACK codes");
        let (kicked, code) = first_kicked(&mut a, &mut b).await;
        assert_eq!(
            code,
            Some(0x8E),
            "clean round {round}: the other one kicked"
        );
        let mut survivor = if kicked == 0 { b } else { a };
        let topic = format!("a/clean/{round}");
        assert_eq!(survivor.subscribe(&topic, 1).await, 1);
        assert_eq!(
            publisher.publish_acked(Publish::new(&topic, b"c", 1)).await,
            0
        );
        let got = survivor.next_publish(WAIT).await;
        assert_eq!(
            got.map(|p| p.topic),
            Some(topic),
            "clean round {round}: the survivor (on node {}) is connected",
            2 - kicked
        );
        survivor.disconnect().await;
    }
    // A persistent and a clean connect at once: still exactly one left.
    let id = client_id("mixedracer");
    for round in 0..10 {
        let persistent = persistent(Version::V5, &id, Some("alice"), false);
        let clean = Connect::new(Version::V5, &id).login("alice", "pw");
        let ((mut a, _, ca), (mut b, _, cb)) =
            tokio::join!(try_connect(n1, &persistent), try_connect(n2, &clean));
        assert_eq!((ca, cb), (0, 0), "mixed round {round}: CONNACK codes");
        let (kicked, code) = first_kicked(&mut a, &mut b).await;
        assert_eq!(
            code,
            Some(0x8E),
            "mixed round {round}: the other one kicked"
        );
        let mut survivor = if kicked == 0 { b } else { a };
        let topic = format!("a/mixed/{round}");
        assert_eq!(survivor.subscribe(&topic, 1).await, 1);
        assert_eq!(
            publisher.publish_acked(Publish::new(&topic, b"m", 1)).await,
            0
        );
        let got = survivor.next_publish(WAIT).await;
        assert_eq!(
            got.map(|p| p.topic),
            Some(topic),
            "mixed round {round}: the survivor (on node {}) is connected",
            2 - kicked
        );
        // Ends the session either way (a clean one, or expiry 0 now).
        disconnect_ending_session(&mut survivor).await;
    }
    let logs = n1.log() + &n2.log();
    let count = |needle: &str| logs.matches(needle).count();
    println!(
        "takeovers between the nodes: {} persistent, {} clean ({} times the newer clean connection stayed)",
        count("session taken over from another node"),
        count("connection taken over by a connection on another node"),
        count("this newer one stays"),
    );
    // Both nodes answered every request: nobody took over a node that
    // looked dead, and no connect gave up.
    assert_eq!(count("did not answer"), 0, "{logs}");
    assert_eq!(count("connect refused"), 0, "{logs}");
}
