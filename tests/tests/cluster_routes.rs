//! The interest protocol over a NATS cluster of three servers (issue 15):
//! Warden nodes 1, 2 and 3, each connected to a different server of a
//! 3-server NATS cluster with JetStream (the test's own, on loopback), one
//! PostgreSQL policy store.
//!
//! - A subscriber on node 3 subscribes to a fresh topic; right after its
//!   SUBACK a publisher on node 1 publishes: the message arrives, round
//!   after round (the guarantee docs/cluster.md gives: the SUBACK waits
//!   until the other nodes know of the interest, and the interest note
//!   travels the routes behind the NATS subscription it announces).
//! - A publish no other node wants costs no NATS message: node 1's data
//!   connection sends its server nothing, and node 1 forwards nothing.

use std::time::Duration;

use warden_e2e::http::{metric_until, scrape, value};
use warden_e2e::nats::{cluster_name, cluster_node, Conn, NatsCluster, NatsServer};
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::*;

/// The data connection of node `id` on `nats` (not its control one).
async fn data_conn(nats: &NatsServer, id: &str) -> Conn {
    let suffix = format!(" node {id}");
    let conns = nats.connections().await;
    conns
        .iter()
        .find(|c| c.name.ends_with(&suffix))
        .cloned()
        .unwrap_or_else(|| panic!("no connection of {id}: {conns:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_crosses_a_three_server_nats_cluster() {
    let nats = NatsCluster::start_unadvertised(3).await;
    let urls = nats.urls();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("routes");
    let nodes: Vec<TestBroker> = (0..3)
        .map(|i| {
            let id = format!("n{}", i + 1);
            cluster_node(&store, &[urls[i].clone()], &cluster, &id, "", true)
        })
        .collect();
    for n in &nodes {
        metric_until(
            n.addr("metrics"),
            "warden_cluster_nats_connected",
            Duration::from_secs(20),
            |v| v == 1.0,
        )
        .await;
    }
    let (n1, n3) = (&nodes[0], &nodes[2]);
    n1.user_with_rights("u", "pw", "r/#").await;
    let mut p = n1.login(Version::V5, &client_id("p"), "u", "pw").await;
    let mut local = n1.login(Version::V5, &client_id("local"), "u", "pw").await;
    assert_eq!(local.subscribe("r/local/#", 1).await, 1);

    // A fresh topic each round, a new subscription right before the
    // publish: no round may lose its message.
    let mut sub = n3.login(Version::V5, &client_id("s"), "u", "pw").await;
    for i in 0..60 {
        let topic = format!("r/fresh/{i}");
        assert_eq!(sub.subscribe(&topic, 1).await, 1);
        assert_eq!(p.publish_acked(Publish::new(&topic, b"x", 1)).await, 0);
        let got = sub.next_publish(WAIT).await;
        assert_eq!(
            got.map(|m| m.topic),
            Some(topic),
            "round {i}: the message published right after the SUBACK"
        );
    }
    // The same with a new connection each round (its first subscription).
    for i in 0..20 {
        let topic = format!("r/conn/{i}");
        let mut s = n3.login(Version::V5, &client_id("sc"), "u", "pw").await;
        assert_eq!(s.subscribe(&topic, 0).await, 0);
        assert_eq!(p.publish_acked(Publish::new(&topic, b"y", 1)).await, 0);
        let got = s.next_publish(WAIT).await;
        assert_eq!(got.map(|m| m.topic), Some(topic), "connection round {i}");
        s.disconnect().await;
    }

    // Past the settling time of the last hello (a node sends everything
    // until it knows everyone's interest), publishes nobody on another
    // node wants cost no NATS message.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = data_conn(&nats.servers[0], "n1").await;
    let forwarded = value(
        &scrape(n1.addr("metrics")).await,
        "warden_cluster_forwarded_total",
    );
    for i in 0..100 {
        let topic = format!("r/local/{i}");
        assert_eq!(p.publish_acked(Publish::new(&topic, b"l", 1)).await, 0);
        assert!(local.next_publish(WAIT).await.is_some(), "local delivery");
    }
    for _ in 0..50 {
        assert_eq!(p.publish_acked(Publish::new("r/nobody", b"n", 1)).await, 0);
    }
    // Then one that node 3 wants: exactly one NATS message.
    assert_eq!(sub.subscribe("r/sentinel", 1).await, 1);
    assert_eq!(
        p.publish_acked(Publish::new("r/sentinel", b"s", 1)).await,
        0
    );
    let got = sub.next_publish(WAIT).await.expect("the sentinel");
    assert_eq!(got.topic, "r/sentinel");
    let after = data_conn(&nats.servers[0], "n1").await;
    let m1 = scrape(n1.addr("metrics")).await;
    println!(
        "node 1 data connection: {} NATS messages for 150 local-only publishes and 1 remote; forwarded {}",
        after.in_msgs - before.in_msgs,
        value(&m1, "warden_cluster_forwarded_total") - forwarded
    );
    assert_eq!(after.in_msgs - before.in_msgs, 1, "NATS messages sent");
    assert_eq!(
        value(&m1, "warden_cluster_forwarded_total") - forwarded,
        1.0,
        "forwarded"
    );
}
