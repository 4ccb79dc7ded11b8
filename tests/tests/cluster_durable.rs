//! `cluster.durable_qos`: QoS 1 messages go through a JetStream stream
//! before their PUBACK, and each node reads the stream through one durable
//! consumer. A node that was away (killed and restarted with a persistent
//! subscriber session, or cut off from its NATS server) gets what was
//! published meanwhile once it is back; with NATS down, a v5 publisher gets
//! PUBACK 0x80 and a v3.1.1 one a plain PUBACK (it has no other). The
//! cluster's metrics are read from `/metrics` on the way.

use std::time::{Duration, Instant};

use warden_e2e::http::{scrape, value};
use warden_e2e::nats::{cluster_name, cluster_node, receive_numbered, NatsCluster, NatsServer};
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::wire::SESSION_EXPIRY;
use warden_e2e::*;

fn node(store: &TestStore, urls: &[String], cluster: &str, id: &str, extra: &str) -> TestBroker {
    cluster_node(store, urls, cluster, id, extra, true)
}

/// One metric of `n`, waiting (10 s at most) until `want` holds for it.
async fn metric_until(n: &TestBroker, key: &str, want: impl Fn(f64) -> bool) -> f64 {
    warden_e2e::http::metric_until(n.addr("metrics"), key, Duration::from_secs(10), want).await
}

/// The durable consumers JetStream holds on the stream `stream`.
async fn consumers(nats: &NatsServer, stream: &str) -> Vec<String> {
    let jsz = nats.jsz().await;
    let mut names = Vec::new();
    for account in jsz["account_details"].as_array().into_iter().flatten() {
        for s in account["stream_detail"].as_array().into_iter().flatten() {
            if s["name"].as_str() != Some(stream) {
                continue;
            }
            for c in s["consumer_detail"].as_array().into_iter().flatten() {
                if let Some(name) = c["name"].as_str() {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names.sort();
    names
}

async fn wait_consumers(nats: &NatsServer, stream: &str, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = consumers(nats, stream).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "consumers of {stream}: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn persistent(id: &str) -> Connect {
    let mut c = Connect::new(Version::V5, id).login("root", "pw");
    c.clean = false;
    c.props.0.push(Prop::U32(SESSION_EXPIRY, 3600));
    c
}

async fn add_root(n: &TestBroker) {
    n.cli_stdin(
        &["user", "add", "root", "--password-stdin", "--superuser"],
        "pw",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_gets_what_was_published_while_it_was_down() {
    let nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("dur");
    let extra = "  durable_qos: true\n";
    let urls = [nats.url()];
    let n1 = node(&store, &urls, &cluster, "n1", extra);
    let mut n2 = node(&store, &urls, &cluster, "n2", extra);
    add_root(&n1).await;
    let stream = format!("warden-{cluster}-qos");
    // One consumer per node, however many subscriptions.
    wait_consumers(
        &nats,
        &stream,
        &[
            format!("warden-{cluster}-n1"),
            format!("warden-{cluster}-n2"),
        ],
    )
    .await;

    // A persistent subscriber on node 2, offline.
    let sub_id = client_id("sub");
    let mut sub = n2.login_with(persistent(&sub_id)).await;
    assert_eq!(sub.subscribe("d/#", 1).await, 1);
    assert_eq!(sub.subscribe("d/+", 1).await, 1);
    sub.disconnect().await;
    // The subscription is on disk (persistence: periodic, fsync every 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    n2.signal("KILL");
    assert!(n2.wait_exit(WAIT).is_some(), "node 2 did not die");

    let mut publisher = n1.login(Version::V5, &client_id("pub"), "root", "pw").await;
    for i in 0..50u32 {
        let code = publisher
            .publish_acked(Publish::new("d/x", i.to_string().as_bytes(), 1))
            .await;
        assert_eq!(code, 0, "PUBACK of {i}");
    }
    let s1 = scrape(n1.addr("metrics")).await;
    assert!(value(&s1, "warden_cluster_durable_stored_total") >= 50.0);

    n2.restart();
    let mut sub = n2.login_with(persistent(&sub_id)).await;
    let got = receive_numbered(&mut sub, Duration::from_secs(5)).await;
    let missing: Vec<u32> = (0..50).filter(|i| !got.contains_key(i)).collect();
    assert!(missing.is_empty(), "missing after the restart: {missing:?}");
    // Both filters match: one delivery each, as from a local publisher.
    assert!(got.values().all(|n| *n == 1), "{got:?}");
    let s2 = scrape(n2.addr("metrics")).await;
    assert!(value(&s2, "warden_cluster_durable_received_total") >= 50.0);
    assert_eq!(value(&s2, "warden_cluster_nats_connected"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_nats_catches_up_when_it_is_back() {
    let nats = NatsCluster::start_unadvertised(3).await;
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("cut");
    // Three copies: the stream outlives any one server.
    let extra = "  durable_qos: true\n  durable_replicas: 3\n";
    let n1 = node(&store, &[nats.servers[0].url()], &cluster, "n1", extra);
    let n2 = node(&store, &[nats.servers[1].url()], &cluster, "n2", extra);
    add_root(&n1).await;
    let stream = format!("warden-{cluster}-qos");
    wait_consumers(
        &nats.servers[0],
        &stream,
        &[
            format!("warden-{cluster}-n1"),
            format!("warden-{cluster}-n2"),
        ],
    )
    .await;

    // A clean-session subscriber, online on node 2 throughout.
    let mut sub = n2.login(Version::V5, &client_id("sub"), "root", "pw").await;
    assert_eq!(sub.subscribe("c/#", 1).await, 1);
    let mut publisher = n1.login(Version::V5, &client_id("pub"), "root", "pw").await;
    assert_eq!(
        publisher
            .publish_acked(Publish::new("c/x", b"1000", 1))
            .await,
        0
    );
    assert_eq!(
        receive_numbered(&mut sub, Duration::from_secs(2))
            .await
            .len(),
        1
    );

    // Node 2's only NATS server goes away (the test cluster does not
    // advertise the others to clients, so node 2 has nowhere to go).
    let mut servers = nats.servers;
    servers[1].stop();
    metric_until(&n2, "warden_cluster_nats_connected", |v| v == 0.0).await;
    // Published while node 2 is cut off. A v5 publisher publishes again
    // what JetStream did not acknowledge (0x80 while the stream elects a
    // new leader, if its leader was on the stopped server).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..30u32 {
        loop {
            let code = publisher
                .publish_acked(Publish::new("c/x", i.to_string().as_bytes(), 1))
                .await;
            if code == 0 {
                acked.push(i);
                break;
            }
            assert_eq!(code, 0x80, "PUBACK of {i}");
            refused += 1;
            assert!(Instant::now() < deadline, "JetStream did not recover");
        }
    }
    // Nothing reaches node 2 while it is cut off.
    sub.expect_no_publish(QUIET, "node 2 is cut off").await;
    servers[1].resume();
    metric_until(&n2, "warden_cluster_nats_connected", |v| v == 1.0).await;
    let mut got = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.iter().any(|i| !got.contains_key(i)) && Instant::now() < deadline {
        got.extend(receive_numbered(&mut sub, Duration::from_secs(1)).await);
    }
    let missing: Vec<u32> = acked
        .iter()
        .copied()
        .filter(|i| !got.contains_key(i))
        .collect();
    println!(
        "acknowledged {}, refused 0x80 and published again {refused}, received {}, missing {missing:?}",
        acked.len(),
        got.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let s1 = scrape(n1.addr("metrics")).await;
    assert!(value(&s1, "warden_cluster_durable_stored_total") >= 31.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_refuses_v5_and_acknowledges_v3() {
    let mut nats = NatsServer::start_js();
    let store = TestStore::new(Backend::Postgres, None, "5s");
    let cluster = cluster_name("down");
    let n1 = node(
        &store,
        &[nats.url()],
        &cluster,
        "n1",
        "  durable_qos: true\n  durable_ack_timeout: 1s\n",
    );
    add_root(&n1).await;
    let mut local = n1.login(Version::V5, &client_id("sub"), "root", "pw").await;
    assert_eq!(local.subscribe("z/#", 1).await, 1);
    let mut v5 = n1.login(Version::V5, &client_id("v5"), "root", "pw").await;
    let mut v3 = n1
        .login(Version::V311, &client_id("v3"), "root", "pw")
        .await;
    // Healthy: stored, acknowledged.
    let deadline = Instant::now() + Duration::from_secs(20);
    while v5.publish_acked(Publish::new("z/a", b"0", 1)).await != 0 {
        assert!(Instant::now() < deadline, "the stream never came up");
    }

    // QoS 2: the PUBREC waits for JetStream too.
    assert_eq!(v5.publish_acked(Publish::new("z/a", b"3", 2)).await, 0);

    nats.stop();
    metric_until(&n1, "warden_cluster_nats_connected", |v| v == 0.0).await;
    assert_eq!(v5.publish_acked(Publish::new("z/a", b"1", 1)).await, 0x80);
    // A refused PUBREC ends the QoS 2 flow; the same packet id is free again.
    let mut p = Publish::new("z/a", b"4", 2);
    p.packet_id = 77;
    assert_eq!(v5.publish_acked(p.clone()).await, 0x80);
    assert_eq!(v5.publish_acked(p).await, 0x80);
    // v3.1.1 has no negative PUBACK: the message went to local subscribers.
    assert_eq!(v3.publish_acked(Publish::new("z/a", b"2", 1)).await, 0);
    let got = receive_numbered(&mut local, Duration::from_secs(1)).await;
    assert!(got.contains_key(&1) && got.contains_key(&2), "{got:?}");
    // Refused twice, routed twice: not taken for a resent QoS 2 PUBLISH.
    assert_eq!(got.get(&4), Some(&2), "{got:?}");
    let s = scrape(n1.addr("metrics")).await;
    assert!(
        value(
            &s,
            "warden_cluster_durable_failed_total{reason=\"unavailable\"}"
        ) >= 4.0,
        "{s:?}"
    );
}
