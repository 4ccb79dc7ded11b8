//! Receiver-driven flow control between nodes (docs/cluster.md, "Flow
//! control"): two Warden nodes on one PostgreSQL policy store and a
//! nats-server of the test's own.
//!
//! A saturating QoS 1 fan-in (several publishers on node 1, each as fast as
//! its in-flight window allows) into subscribers on node 2 with
//! overlapping filters, so that node 2's single link task gets several
//! copies of each message: node 2 is the slower side. Without flow control, NATS (async-nats' per-subscription buffer)
//! drops what node 2 cannot take; with it, node 1 stops sending while node
//! 2 is more than the window behind, its outbox fills and its publishers
//! are paced. Every PUBACKed message must arrive, and node 2 must never be
//! a slow consumer.
//!
//! A receiving node that stops reading (SIGSTOP of its process) must not
//! stall node 1's publishers for more than the flow timeout: node 1 gives
//! up waiting for it (counted), and waits for it again once it reports
//! progress after SIGCONT.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use warden_e2e::http::{scrape, value};
use warden_e2e::nats::{cluster_yaml, two_nodes, NatsServer};
use warden_e2e::stores::TestStore;
use warden_e2e::wire::Incoming;
use warden_e2e::*;

/// Publishers on node 1, messages each: more than async-nats holds per
/// subscription (65,536), or nothing could be lost without flow control.
const PUBLISHERS: u32 = 4;
const EACH: u32 = 30_000;
/// Subscribers on node 2 (each message is routed to every one).
const SUBSCRIBERS: usize = 1;
/// Each subscriber's filters: one NATS subscription each on node 2, and
/// each matches every message, so NATS brings node 2 as many copies of
/// each message (its link task drops all but one): node 2 does several
/// times node 1's work per message, as a node with many overlapping
/// filters does.
const FILTERS: [&str; 6] = ["fl/#", "fl/+", "+/+", "+/#", "#", "+/+/#"];
/// Messages published while node 2 is stopped.
const STOPPED: u32 = 60_000;

fn node(store: &TestStore, nats: &NatsServer, cluster: &str, id: &str) -> TestBroker {
    TestBroker::start(BrokerOptions {
        store: Some(store.yaml.clone()),
        metrics: true,
        // The subscribers' queues hold the whole run: their own pace is
        // not what is tested.
        max_queued_messages: 2 * PUBLISHERS * EACH,
        extra_yaml: cluster_yaml(&[nats.url()], cluster, id, ""),
        ..Default::default()
    })
}

async fn metric(n: &TestBroker, key: &str) -> f64 {
    value(&scrape(n.addr("metrics")).await, key)
}

/// Publish QoS 1 messages whose payloads are the numbers `from..from +
/// count` on `topic`, at most `window` unacknowledged; the numbers
/// acknowledged with code 0.
async fn publish_range(c: &mut RawClient, topic: &str, from: u32, count: u32) -> Vec<u32> {
    let window = 64;
    let mut acked = Vec::with_capacity(count as usize);
    let mut inflight: HashMap<u16, u32> = HashMap::new();
    let mut next = from;
    let mut id: u16 = 0;
    loop {
        while next < from + count && inflight.len() < window {
            id = id.wrapping_add(1).max(1);
            let mut p = Publish::new(topic, next.to_string().as_bytes(), 1);
            p.packet_id = id;
            c.publish(&p).await.expect("send PUBLISH");
            inflight.insert(id, next);
            next += 1;
        }
        if inflight.is_empty() {
            return acked;
        }
        match c.recv(Duration::from_secs(15)).await {
            Ok(Incoming::PubAck { packet_id, code }) => {
                let n = inflight.remove(&packet_id).expect("PUBACK of a PUBLISH");
                assert_eq!(code, 0, "PUBACK code of {n}");
                acked.push(n);
            }
            Ok(_) => {}
            Err(e) => panic!("no PUBACK ({} of {count} acknowledged): {e:?}", acked.len()),
        }
    }
}

/// Every numbered payload `c` receives until `quiet` passes without one.
async fn receive_all(c: &mut RawClient, quiet: Duration) -> BTreeMap<u32, u32> {
    let mut got = BTreeMap::new();
    while let Some(p) = c.next_publish(quiet).await {
        if let Some(n) = std::str::from_utf8(&p.payload)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        {
            *got.entry(n).or_insert(0) += 1;
        }
    }
    got
}

/// Publish probes until one reaches every subscriber: node 1 knows node
/// 2's interest.
async fn until_flowing(publisher: &mut RawClient, subs: &mut [RawClient]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publisher
            .publish_acked(Publish::new("fl/probe", b"probe", 1))
            .await;
        let mut all = true;
        for s in subs.iter_mut() {
            all &= s.next_publish(Duration::from_millis(300)).await.is_some();
        }
        if all {
            for s in subs.iter_mut() {
                while s.next_publish(Duration::from_millis(300)).await.is_some() {}
            }
            return;
        }
        assert!(Instant::now() < deadline, "no message reached node 2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturating_fan_in_reaches_a_slower_node_whole() {
    let (_nats, _store, n1, n2) = two_nodes("flow", node).await;
    let mut subs = Vec::new();
    for i in 0..SUBSCRIBERS {
        let mut s = n2
            .login(Version::V5, &client_id(&format!("sub{i}")), "root", "pw")
            .await;
        let subs_of: Vec<Sub> = FILTERS.iter().map(|f| Sub::new(f, 1)).collect();
        let codes = s.subscribe_with(1, &subs_of, &Props::default()).await;
        assert_eq!(codes, vec![1; FILTERS.len()]);
        subs.push(s);
    }
    let mut probe = n1
        .login(Version::V5, &client_id("probe"), "root", "pw")
        .await;
    until_flowing(&mut probe, &mut subs).await;

    let receivers: Vec<_> = subs
        .into_iter()
        .map(|mut s| tokio::spawn(async move { receive_all(&mut s, Duration::from_secs(5)).await }))
        .collect();
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let mut c = n1
            .login(Version::V5, &client_id(&format!("pub{p}")), "root", "pw")
            .await;
        publishers.push(tokio::spawn(async move {
            publish_range(&mut c, &format!("fl/{p}"), p * EACH, EACH).await
        }));
    }
    let mut acked = Vec::new();
    for p in publishers {
        acked.extend(p.await.expect("publisher task"));
    }
    assert_eq!(acked.len(), (PUBLISHERS * EACH) as usize);
    for (i, r) in receivers.into_iter().enumerate() {
        let got = r.await.expect("subscriber task");
        let lost: Vec<u32> = acked
            .iter()
            .copied()
            .filter(|n| !got.contains_key(n))
            .collect();
        let twice = got.values().filter(|c| **c > 1).count();
        println!(
            "subscriber {i}: {} acknowledged, {} distinct received, {twice} twice, {} lost",
            acked.len(),
            got.len(),
            lost.len()
        );
        assert!(
            lost.is_empty(),
            "acknowledged and lost at subscriber {i}: {} (first {:?})",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
    }
    let waits = metric(&n1, "warden_cluster_flow_waits_total").await;
    println!("flow waits on node 1: {waits}");
    assert_eq!(metric(&n2, "warden_cluster_slow_consumer_total").await, 0.0);
    assert_eq!(metric(&n1, "warden_cluster_not_forwarded_total").await, 0.0);
    assert_eq!(metric(&n1, "warden_cluster_flow_timeouts_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiving_node_that_stops_reading_does_not_stall_publishers() {
    let (_nats, _store, n1, n2) = two_nodes("flowstop", node).await;
    let mut sub = n2.login(Version::V5, &client_id("sub"), "root", "pw").await;
    assert_eq!(sub.subscribe("fl/#", 1).await, 1);
    let mut publisher = n1.login(Version::V5, &client_id("pub"), "root", "pw").await;
    until_flowing(&mut publisher, std::slice::from_mut(&mut sub)).await;

    // Node 2 reads nothing: node 1 runs a window ahead, waits for node 2's
    // progress, gives up after the flow timeout and goes on. More than the
    // window (16,384) plus the outbox (16,384) plus async-nats' buffer
    // must be sent for that.
    n2.signal("STOP");
    let started = Instant::now();
    let acked = publish_range(&mut publisher, "fl/stopped", 0, STOPPED).await;
    println!(
        "node 2 stopped: {} acknowledged in {:?}",
        acked.len(),
        started.elapsed()
    );
    assert_eq!(acked.len(), STOPPED as usize);
    assert_eq!(metric(&n1, "warden_cluster_flow_timeouts_total").await, 1.0);
    assert!(n1.log().contains("not waiting for it"));

    // Node 2 reads again: it reports progress, node 1 waits for it again,
    // and what is published now arrives whole.
    n2.signal("CONT");
    assert!(n1.wait_log("reports progress again", WAIT).await);
    while sub.next_publish(Duration::from_secs(2)).await.is_some() {}
    let receiving = tokio::spawn(async move {
        let got = receive_all(&mut sub, Duration::from_secs(5)).await;
        (sub, got)
    });
    let timeouts = metric(&n1, "warden_cluster_flow_timeouts_total").await;
    let acked = publish_range(&mut publisher, "fl/after", 1_000_000, 2_000).await;
    let (_sub, got) = receiving.await.expect("subscriber task");
    let lost: Vec<u32> = acked
        .iter()
        .copied()
        .filter(|n| !got.contains_key(n))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged and lost after SIGCONT: {lost:?}"
    );
    assert_eq!(
        metric(&n1, "warden_cluster_flow_timeouts_total").await,
        timeouts
    );
}
