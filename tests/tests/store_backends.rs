//! The same broker scenario on each of the five stores: connect, an allowed
//! publish, a denied subscribe, and a right revoked while subscribed (the
//! deliveries stop). Then, for each networked store, an outage: the store
//! stops answering (a proxy in front of it is cut), new logins get "server
//! unavailable", connected clients keep working, and after the store comes
//! back logins work again with nothing lost.
//!
//! The tests print the measured revocation delay and login latencies
//! (`--nocapture`); they assert only generous bounds.

use std::time::{Duration, Instant};

use warden_e2e::proxy::Proxy;
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::*;

fn start(store: &TestStore) -> TestBroker {
    TestBroker::start(BrokerOptions {
        store: Some(store.yaml.clone()),
        ..Default::default()
    })
}

/// alice may subscribe to and receive `t/#` except `t/secret/#`; bob may
/// publish on `t/#`. Returns the id of alice's receive rule.
async fn grant(broker: &TestBroker) -> u64 {
    broker.add_user("alice", "pw", &[]).await;
    broker.add_user("bob", "pw", &[]).await;
    let rule = broker.allow("alice", "subscribe,receive", "t/#").await;
    broker.deny("alice", "subscribe", "t/secret/#").await;
    broker.allow("bob", "publish", "t/#").await;
    rule
}

/// Publish from `bob` every 20 ms; return how long after `since` alice still
/// received messages (zero if none arrived at all).
async fn last_delivery(bob: &mut RawClient, alice: &mut RawClient, since: Instant) -> Duration {
    let mut last = Duration::ZERO;
    let mut quiet = 0;
    while since.elapsed() < Duration::from_secs(5) && quiet < 25 {
        let sent = since.elapsed();
        assert_eq!(bob.publish_acked(Publish::new("t/live", b"x", 1)).await, 0);
        match alice.next_publish(Duration::from_millis(20)).await {
            Some(_) => {
                last = sent;
                quiet = 0;
            }
            None => quiet += 1,
        }
    }
    last
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// CONNECT → CONNACK times for `n` logins: with a password (argon2
/// included) and with a client certificate (no argon2).
async fn login_latency(broker: &TestBroker, backend: Backend, n: usize) {
    broker.add_user_no_password("carol").await;
    let carol = broker.pki.client("carol");
    let (mut with_pw, mut with_cert) = (Vec::new(), Vec::new());
    for i in 0..n {
        let mut c = broker.raw().await;
        let t = Instant::now();
        let (_, code, _) = c
            .connect(&Connect::new(Version::V5, &format!("lat-pw-{i}")).login("alice", "pw"))
            .await
            .expect("CONNACK");
        with_pw.push(t.elapsed());
        assert_eq!(code, 0);
        let mut c = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), Some(&carol))
            .await
            .expect("mTLS");
        let t = Instant::now();
        let (_, code, _) = c
            .connect(&Connect::new(Version::V5, &format!("lat-cert-{i}")))
            .await
            .expect("CONNACK");
        with_cert.push(t.elapsed());
        assert_eq!(code, 0);
    }
    with_pw.sort();
    with_cert.sort();
    eprintln!(
        "MEASURE backend={} login_with_argon2_p50_ms={:.2} p99_ms={:.2} login_without_argon2_p50_ms={:.2} p99_ms={:.2}",
        backend.name(),
        percentile(&with_pw, 0.5).as_secs_f64() * 1e3,
        percentile(&with_pw, 0.99).as_secs_f64() * 1e3,
        percentile(&with_cert, 0.5).as_secs_f64() * 1e3,
        percentile(&with_cert, 0.99).as_secs_f64() * 1e3,
    );
}

async fn scenario(backend: Backend) {
    let store = TestStore::new(backend, None, "5s");
    let broker = start(&store);
    let receive_rule = grant(&broker).await;

    let mut alice = broker
        .login(Version::V5, &client_id("alice"), "alice", "pw")
        .await;
    assert_eq!(
        alice.subscribe("t/secret/#", 0).await,
        0x87,
        "denied subscribe"
    );
    assert_eq!(alice.subscribe("t/#", 0).await, 0, "allowed subscribe");
    let mut bob = broker
        .login(Version::V5, &client_id("bob"), "bob", "pw")
        .await;
    assert_eq!(bob.publish_acked(Publish::new("t/a", b"one", 1)).await, 0);
    let got = alice
        .next_publish(WAIT)
        .await
        .expect("allowed publish is delivered");
    assert_eq!(got.payload, b"one");
    assert_eq!(
        bob.publish_acked(Publish::new("elsewhere", b"no", 1)).await,
        0x87,
        "publish outside the rule"
    );

    broker
        .cli_ok(&["acl", "remove", &receive_rule.to_string()])
        .await;
    let delay = last_delivery(&mut bob, &mut alice, Instant::now()).await;
    eprintln!(
        "MEASURE backend={} revocation_delay_ms={}",
        backend.name(),
        delay.as_millis()
    );
    assert!(delay < Duration::from_secs(3), "revocation took {delay:?}");
    assert_eq!(
        bob.publish_acked(Publish::new("t/after", b"late", 1)).await,
        0
    );
    alice
        .expect_no_publish(Duration::from_millis(800), "receive right was revoked")
        .await;

    login_latency(&broker, backend, 20).await;
}

async fn outage(backend: Backend) {
    let server = backend.server().expect("a networked store");
    let proxy = Proxy::start(server).await;
    let store = TestStore::new(backend, Some(proxy.port()), "2s");
    let broker = start(&store);
    grant(&broker).await;
    let mut alice = broker
        .login(Version::V5, &client_id("alice"), "alice", "pw")
        .await;
    assert_eq!(alice.subscribe("t/#", 0).await, 0);
    let mut bob = broker
        .login(Version::V311, &client_id("bob"), "bob", "pw")
        .await;

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (version, want) in [(Version::V5, 0x88), (Version::V311, 0x03)] {
        let mut c = broker.raw().await;
        let connect = Connect::new(version, &client_id("during")).login("alice", "pw");
        let (_, code, _) = c
            .connect(&connect)
            .await
            .expect("CONNACK during the outage");
        assert_eq!(
            code,
            want,
            "{version:?} login while {} is down",
            backend.name()
        );
    }
    assert_eq!(
        bob.publish_acked(Publish::new("t/during", b"kept", 1))
            .await,
        0
    );
    let got = alice
        .next_publish(WAIT)
        .await
        .expect("live sessions keep working");
    assert_eq!(got.payload, b"kept");

    proxy.restore();
    let back = Instant::now();
    loop {
        let mut c = broker.raw().await;
        let connect = Connect::new(Version::V5, &client_id("after")).login("alice", "pw");
        let (_, code, _) = c.connect(&connect).await.expect("CONNACK after the outage");
        if code == 0 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "logins still fail: {code:#x}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "MEASURE backend={} logins_back_after_ms={}",
        backend.name(),
        back.elapsed().as_millis()
    );
    // Wait for the registry's next poll to see the store again.
    assert!(
        broker
            .wait_log("store reachable again", Duration::from_secs(5))
            .await
    );
    let log = broker.log();
    assert_eq!(
        log.matches("store unavailable;").count(),
        1,
        "outage logged once:\n{log}"
    );
    assert_eq!(
        log.matches("store reachable again").count(),
        1,
        "recovery logged once"
    );
}

#[tokio::test]
async fn scenario_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test]
async fn scenario_postgres() {
    scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn scenario_mysql() {
    scenario(Backend::Mysql).await;
}

#[tokio::test]
async fn scenario_mongodb() {
    scenario(Backend::Mongodb).await;
}

#[tokio::test]
async fn scenario_redis() {
    scenario(Backend::Redis).await;
}

// Multi-threaded: the proxy's tasks must run while the harness blocks
// waiting for the broker to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_postgres() {
    outage(Backend::Postgres).await;
}

// Multi-threaded: the proxy's tasks must run while the harness blocks
// waiting for the broker to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mysql() {
    outage(Backend::Mysql).await;
}

// Multi-threaded: the proxy's tasks must run while the harness blocks
// waiting for the broker to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_mongodb() {
    outage(Backend::Mongodb).await;
}

// Multi-threaded: the proxy's tasks must run while the harness blocks
// waiting for the broker to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_redis() {
    outage(Backend::Redis).await;
}
