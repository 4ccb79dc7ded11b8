//! Retained messages across three Warden nodes (one PostgreSQL policy
//! store, a JetStream nats-server of the test's own): a retained message
//! set on node 1 is sent to a new subscriber on node 3, as that
//! subscriber's `receive` rights on node 3 allow; an empty retained
//! publish clears it everywhere; a message set on another node replaces
//! it; a restarted node loads the stream's messages over what its own
//! disk had; the nodes read the stream through one consumer each.

use std::time::{Duration, Instant};

use warden_e2e::nats::{cluster_name, cluster_node, NatsServer};
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::*;

fn node(store: &TestStore, nats: &NatsServer, cluster: &str, id: &str) -> TestBroker {
    cluster_node(store, &[nats.url()], cluster, id, "", false)
}

fn retained(topic: &str, payload: &[u8]) -> Publish {
    let mut p = Publish::new(topic, payload, 1);
    p.retain = true;
    p
}

/// The retained messages a new subscription of `user` to `filter` on `n`
/// gets (topic, payload), sorted; each must carry RETAIN.
async fn retained_seen(n: &TestBroker, user: &str, filter: &str) -> Vec<(String, Vec<u8>)> {
    let mut c = n.login(Version::V5, &client_id("look"), user, "pw").await;
    assert_eq!(c.subscribe(filter, 1).await, 1, "SUBACK for {filter}");
    let mut got = Vec::new();
    while let Some(p) = c.next_publish(Duration::from_millis(400)).await {
        assert!(p.retain, "{} came without RETAIN", p.topic);
        got.push((p.topic, p.payload));
    }
    c.disconnect().await;
    got.sort();
    got
}

/// Waits (up to 10 s: the stream is read asynchronously, eventually
/// consistent) until a new subscription sees exactly `want`.
async fn expect_retained(n: &TestBroker, user: &str, filter: &str, want: &[(&str, &[u8])]) {
    let mut want: Vec<(String, Vec<u8>)> = want
        .iter()
        .map(|(t, p)| ((*t).to_owned(), p.to_vec()))
        .collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = retained_seen(n, user, filter).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "retained on {filter} for {user}: {got:?}, want {want:?}\n{}",
            n.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_shared_by_the_nodes_and_survive_a_restart() {
    std::env::set_var("WARDEN_E2E_LOG", "info,warden::cluster=debug");
    let nats = NatsServer::start_with(&["-js"]);
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("ret");
    let n1 = node(&store, &nats, &cluster, "n1");
    let n2 = node(&store, &nats, &cluster, "n2");
    let mut n3 = node(&store, &nats, &cluster, "n3");
    n1.user_with_rights("u", "pw", "r/#").await;
    // Checked on the subscriber's node: may subscribe to all of r/#,
    // receive only r/open/#.
    n1.add_user("few", "pw", &[]).await;
    n1.allow("few", "subscribe", "r/#").await;
    n1.allow("few", "receive", "r/open/#").await;

    let mut p1 = n1.login(Version::V5, &client_id("p1"), "u", "pw").await;
    assert_eq!(p1.publish_acked(retained("r/a", b"one")).await, 0);
    assert_eq!(p1.publish_acked(retained("r/open/x", b"x")).await, 0);
    // A retained message set on node 1, seen on subscribe at node 3 (and
    // 2), as each subscriber's rights allow.
    expect_retained(&n3, "u", "r/#", &[("r/a", b"one"), ("r/open/x", b"x")]).await;
    expect_retained(&n2, "u", "r/a", &[("r/a", b"one")]).await;
    expect_retained(&n3, "few", "r/#", &[("r/open/x", b"x")]).await;

    // Replaced from node 2: node 1's cache follows too.
    let mut p2 = n2.login(Version::V5, &client_id("p2"), "u", "pw").await;
    assert_eq!(p2.publish_acked(retained("r/a", b"two")).await, 0);
    expect_retained(&n1, "u", "r/a", &[("r/a", b"two")]).await;
    expect_retained(&n3, "u", "r/a", &[("r/a", b"two")]).await;

    // An empty retained publish on node 1 clears it on every node.
    assert_eq!(p1.publish_acked(retained("r/open/x", b"")).await, 0);
    expect_retained(&n3, "u", "r/#", &[("r/a", b"two")]).await;
    expect_retained(&n2, "u", "r/#", &[("r/a", b"two")]).await;
    expect_retained(&n1, "u", "r/#", &[("r/a", b"two")]).await;

    // One consumer per node on the retained stream, however many
    // subscriptions looked at it.
    let jsz = warden_e2e::http::get(nats.monitor(), "/jsz", None)
        .await
        .json();
    assert_eq!(jsz["consumers"].as_u64(), Some(3), "{jsz}");
    // The retained stream and the session ownership bucket's stream.
    assert_eq!(jsz["streams"].as_u64(), Some(2), "{jsz}");

    // Node 3 stops hard; meanwhile r/b is set and r/a cleared. Started
    // again, it has the stream's messages, not what it had before.
    n3.signal("KILL");
    assert!(n3.wait_exit(Duration::from_secs(10)).is_some());
    assert_eq!(p1.publish_acked(retained("r/b", b"b")).await, 0);
    assert_eq!(p1.publish_acked(retained("r/a", b"")).await, 0);
    expect_retained(&n1, "u", "r/#", &[("r/b", b"b")]).await;
    n3.restart();
    assert!(
        n3.wait_log("cluster: retained messages loaded from NATS", WAIT)
            .await,
        "{}",
        n3.log()
    );
    // Loaded before the listeners opened: the first look sees it.
    assert_eq!(
        retained_seen(&n3, "u", "r/#").await,
        [("r/b".to_owned(), b"b".to_vec())]
    );

    // A retained message also goes live to current subscribers elsewhere.
    let mut live = n3.login(Version::V5, &client_id("live"), "u", "pw").await;
    assert_eq!(live.subscribe("r/live", 1).await, 1);
    assert_eq!(p1.publish_acked(retained("r/live", b"now")).await, 0);
    let p = live
        .next_publish(WAIT)
        .await
        .expect("live retained message");
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("r/live", &b"now"[..]));
    drop((n1, n2, n3));
}
