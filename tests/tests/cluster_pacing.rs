//! A publisher faster than the cluster's outbox to NATS, between healthy
//! nodes (two Warden nodes on one PostgreSQL policy store, a nats-server of
//! the test's own): the outbox is made small (`cluster.outbox_capacity`)
//! so that one publisher overfills it within a few thousand messages. The
//! publisher is paused instead of losing messages (docs/cluster.md, "What
//! this slice guarantees"): every QoS 1 message acknowledged on node 1
//! reaches the subscriber on node 2, every QoS 0 one too, and
//! `warden_cluster_not_forwarded_total` stays 0 while
//! `warden_cluster_outbox_waits_total` shows that the outbox was full.
//!
//! A NATS server that stops reading (SIGSTOP) must not stall publishers
//! for ever: after the outbox took nothing for 2 s, publishes stay local
//! (counted) and the publisher gets its PUBACKs; once the server reads
//! again, the outbox moves and publishers are paced again.
//!
//! The receiving node's own bound (the subscriber's session queue,
//! `limits.max_queued_messages`) is set above the message count: a
//! subscriber slower than the stream is that node's matter, documented
//! beside this one.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use warden_e2e::http::{scrape, value};
use warden_e2e::nats::{cluster_yaml, publish_numbered, receive_numbered, two_nodes, NatsServer};
use warden_e2e::stores::TestStore;
use warden_e2e::*;

/// Small enough that a publisher with 64 messages in flight fills it.
const OUTBOX: usize = 4;

/// Messages per QoS.
const COUNT: u32 = 4_000;

fn node(store: &TestStore, nats: &NatsServer, cluster: &str, id: &str) -> TestBroker {
    TestBroker::start(BrokerOptions {
        store: Some(store.yaml.clone()),
        metrics: true,
        // Above COUNT: the receiving node keeps whatever its subscriber
        // has not taken yet.
        max_queued_messages: 2 * COUNT,
        extra_yaml: cluster_yaml(
            &[nats.url()],
            cluster,
            id,
            &format!("  outbox_capacity: {OUTBOX}\n"),
        ),
        ..Default::default()
    })
}

async fn metric(n: &TestBroker, key: &str) -> f64 {
    value(&scrape(n.addr("metrics")).await, key)
}

/// Publish probes until one reaches `sub`: node 1 knows node 2's interest.
async fn until_flowing(publisher: &mut RawClient, sub: &mut RawClient) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        publisher
            .publish_acked(Publish::new("bp/probe", b"probe", 1))
            .await;
        if sub.next_publish(Duration::from_millis(300)).await.is_some() {
            while sub.next_publish(Duration::from_millis(300)).await.is_some() {}
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no message reached node 2"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_faster_than_nats_is_paced_not_dropped() {
    let (_nats, _store, n1, n2) = two_nodes("pace", node).await;
    let mut sub = n2.login(Version::V5, &client_id("sub"), "root", "pw").await;
    assert_eq!(sub.subscribe("bp/#", 1).await, 1);
    let mut publisher = n1.login(Version::V5, &client_id("pub"), "root", "pw").await;
    until_flowing(&mut publisher, &mut sub).await;

    // QoS 1, 64 in flight: each PUBACK means the message has its place in
    // the outbox.
    let receiving = tokio::spawn(async move {
        let got = receive_numbered(&mut sub, Duration::from_secs(5)).await;
        (sub, got)
    });
    let acked = AtomicU32::new(0);
    let published = publish_numbered(&mut publisher, "bp/q1", COUNT, 64, &acked).await;
    let (mut sub, got) = receiving.await.expect("subscriber task");
    assert_eq!(
        published.acked.len(),
        COUNT as usize,
        "{:?}",
        published.refused
    );
    let lost: Vec<u32> = published
        .acked
        .iter()
        .copied()
        .filter(|n| !got.contains_key(n))
        .collect();
    let twice = got.values().filter(|c| **c > 1).count();
    let waits = metric(&n1, "warden_cluster_outbox_waits_total").await;
    println!(
        "QoS 1: {COUNT} acknowledged, {} distinct received, {twice} twice, outbox waits {waits}",
        got.len()
    );
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(
        waits > 0.0,
        "the outbox never filled: the test proves nothing"
    );
    assert_eq!(metric(&n1, "warden_cluster_not_forwarded_total").await, 0.0);

    // QoS 0 as fast as the socket takes it: paced the same way (node 1
    // stops reading), then a QoS 1 marker whose PUBACK comes after every
    // earlier message had its place (the outbox is in order).
    let receiving = tokio::spawn(async move {
        let got = receive_numbered(&mut sub, Duration::from_secs(5)).await;
        (sub, got)
    });
    let before = metric(&n1, "warden_cluster_outbox_waits_total").await;
    for i in 0..COUNT {
        let p = Publish::new("bp/q0", i.to_string().as_bytes(), 0);
        publisher.publish(&p).await.expect("send PUBLISH");
    }
    assert_eq!(
        publisher
            .publish_acked(Publish::new("bp/marker", b"marker", 1))
            .await,
        0
    );
    let (sub, got) = receiving.await.expect("subscriber task");
    let missing: Vec<u32> = (0..COUNT).filter(|n| !got.contains_key(n)).collect();
    let waits = metric(&n1, "warden_cluster_outbox_waits_total").await - before;
    println!(
        "QoS 0: {COUNT} sent, {} distinct received, outbox waits {waits}",
        got.len()
    );
    assert!(missing.is_empty(), "QoS 0 lost: {missing:?}");
    assert!(waits > 0.0, "the outbox never filled with QoS 0");
    assert_eq!(metric(&n1, "warden_cluster_not_forwarded_total").await, 0.0);
    // Node 2 kept up: nothing dropped by NATS or by the subscriber's queue.
    assert_eq!(metric(&n2, "warden_cluster_slow_consumer_total").await, 0.0);
    assert_eq!(metric(&n2, "warden_dropped_messages_total").await, 0.0);
    drop(sub);
}

/// One QoS 1 publish of `size` bytes (not a number: `receive_numbered`
/// passes over it), with `window` in flight; how many got PUBACK 0.
async fn publish_bulk(c: &mut RawClient, count: u32, size: usize, window: usize) -> u32 {
    let payload = vec![b'x'; size];
    let mut inflight = 0usize;
    let mut sent = 0u32;
    let mut acked = 0u32;
    let mut id: u16 = 0;
    while acked < count {
        while sent < count && inflight < window {
            id = id.wrapping_add(1).max(1);
            let mut p = Publish::new("bp/bulk", &payload, 1);
            p.packet_id = id;
            c.publish(&p).await.expect("send PUBLISH");
            inflight += 1;
            sent += 1;
        }
        match c.recv(Duration::from_secs(15)).await {
            Ok(wire::Incoming::PubAck { code, .. }) => {
                assert_eq!(code, 0);
                inflight -= 1;
                acked += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("no PUBACK ({acked} of {count}): {e:?}"),
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_nats_server_does_not_stall_publishers_for_ever() {
    let (nats, _store, n1, n2) = two_nodes("hung", node).await;
    let mut sub = n2.login(Version::V5, &client_id("sub"), "root", "pw").await;
    assert_eq!(sub.subscribe("bp/#", 1).await, 1);
    let mut publisher = n1.login(Version::V5, &client_id("pub"), "root", "pw").await;
    until_flowing(&mut publisher, &mut sub).await;

    // The server reads nothing: async-nats' buffer (2,048 messages) and
    // the sockets (a few MiB) fill, then the outbox; 5,000 messages of
    // 8 KiB are more than they hold.
    nats.signal("STOP");
    let started = std::time::Instant::now();
    let acked = publish_bulk(&mut publisher, 5_000, 8 * 1024, 64).await;
    let took = started.elapsed();
    let stalls = metric(&n1, "warden_cluster_outbox_stalls_total").await;
    let kept = metric(&n1, "warden_cluster_not_forwarded_total").await;
    println!("hung NATS: {acked} acknowledged in {took:?}, stalls {stalls}, kept local {kept}");
    assert_eq!(stalls, 1.0, "the outbox was found stalled once");
    assert!(kept > 0.0);
    assert!(!n1.log().contains("the outbox moves again"));

    // The server reads again: the outbox moves, publishers wait again.
    nats.signal("CONT");
    assert!(n1.wait_log("the outbox moves again", WAIT).await);
    while sub.next_publish(Duration::from_secs(2)).await.is_some() {}
    let receiving = tokio::spawn(async move {
        let got = receive_numbered(&mut sub, Duration::from_secs(5)).await;
        (sub, got)
    });
    let kept_before = metric(&n1, "warden_cluster_not_forwarded_total").await;
    let counter = AtomicU32::new(0);
    let published = publish_numbered(&mut publisher, "bp/after", 1_000, 64, &counter).await;
    let (_sub, got) = receiving.await.expect("subscriber task");
    let lost: Vec<u32> = published
        .acked
        .iter()
        .copied()
        .filter(|n| !got.contains_key(n))
        .collect();
    assert_eq!(published.acked.len(), 1_000);
    assert!(
        lost.is_empty(),
        "acknowledged and lost after recovery: {lost:?}"
    );
    assert_eq!(
        metric(&n1, "warden_cluster_not_forwarded_total").await,
        kept_before
    );
}
