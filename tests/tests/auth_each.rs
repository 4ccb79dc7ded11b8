//! `auth.http` with `authorize_each`: a real HTTP service decides every
//! publish, subscribe and delivery topic (`POST /authorize`); its answers
//! are cached for their TTL (a cached topic is not asked again: counted on
//! the service's side); anything but an explicit allow (service down, slow,
//! malformed) is a deny.

use std::time::{Duration, Instant};

use serde_json::json;
use warden_e2e::auth_service::{AuthService, Mode};
use warden_e2e::http::{scrape, value};
use warden_e2e::*;

/// A service knowing alice (no rules of her own: every topic is the
/// service's to decide) and a broker asking it, with `extra` in auth.http.
async fn setup(extra: &str) -> (AuthService, TestBroker) {
    let service = AuthService::start().await;
    service.add_user("alice", "pw", &["staff"], json!([]));
    service.with(|s| s.authorize_ttl = Some(60));
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: format!(
            ", http: {{ url: \"{}\", timeout: 500ms, connect_timeout: 300ms, \
             breaker_open: 200ms, breaker_max_open: 500ms{extra} }}",
            service.url()
        ),
        metrics: true,
        ..BrokerOptions::default()
    });
    broker
        .cli_stdin(
            &["user", "add", "root", "--password-stdin", "--superuser"],
            "pw",
        )
        .await;
    (service, broker)
}

fn asked(service: &AuthService, action: &str, topic: &str) -> usize {
    service.with(|s| s.asked(action, topic))
}

#[tokio::test]
async fn the_service_decides_each_topic_and_its_cached_answers_spare_it() {
    let (service, broker) = setup(", authorize_each: true").await;
    service.with(|s| {
        s.allow("alice", "publish", "dev/1");
        s.allow("alice", "subscribe", "cmd/alice");
        s.allow("alice", "receive", "cmd/alice");
        s.allow("alice", "subscribe", "note/alice");
    });
    let id = client_id("alice");
    let mut alice = broker.login(Version::V5, &id, "alice", "pw").await;

    // Publish: allowed and denied by the service, each asked once.
    for _ in 0..3 {
        assert_eq!(alice.publish_acked(Publish::new("dev/1", b"1", 1)).await, 0);
        assert_eq!(
            alice.publish_acked(Publish::new("dev/2", b"1", 1)).await,
            0x87
        );
    }
    assert_eq!(asked(&service, "publish", "dev/1"), 1, "cache hits");
    assert_eq!(asked(&service, "publish", "dev/2"), 1, "denies are cached");
    // What the service was told.
    let first = service.with(|s| s.authorized[0].clone());
    assert_eq!(
        (first.0.as_str(), first.1.as_str(), first.2.as_str()),
        ("alice", id.as_str(), "publish")
    );

    // Subscribe: the filter is asked; a filter without wildcards also
    // has its receive answer fetched, so deliveries are decided from the
    // cache.
    assert_eq!(alice.subscribe("cmd/alice", 1).await, 1);
    assert_eq!(alice.subscribe("cmd/bob", 1).await, 0x87);
    assert_eq!(alice.subscribe("note/alice", 1).await, 1);
    assert_eq!(asked(&service, "receive", "cmd/alice"), 1);

    // Receive: decided by the service's cached answer.
    let mut root = broker
        .login(Version::V5, &client_id("root"), "root", "pw")
        .await;
    for n in 0..3u8 {
        root.publish_acked(Publish::new("cmd/alice", &[n], 1)).await;
        assert_eq!(
            alice.next_publish(WAIT).await.expect("delivered").payload,
            [n]
        );
    }
    assert_eq!(asked(&service, "receive", "cmd/alice"), 1, "cache hits");
    // Subscribed, but the service refuses delivery on note/alice.
    root.publish_acked(Publish::new("note/alice", b"no", 1))
        .await;
    alice
        .expect_no_publish(QUIET, "the service denies receive")
        .await;
    assert_eq!(asked(&service, "receive", "note/alice"), 1);

    let m = scrape(broker.addr("metrics")).await;
    assert!(
        value(
            &m,
            "warden_auth_http_decisions_total{outcome=\"cache_hit\"}"
        ) >= 6.0
    );
    assert!(value(&m, "warden_auth_http_decisions_total{outcome=\"asked\"}") >= 6.0);
    assert!(broker.wait_log("denied by the auth service", WAIT).await);
}

#[tokio::test]
async fn a_wildcard_subscription_learns_each_topic_and_answers_expire() {
    let (service, broker) = setup("").await;
    // No authorize_each in the config: the service insists in its answer.
    service.with(|s| {
        s.authorize_each = true;
        s.authorize_ttl = Some(1);
        s.allow("alice", "subscribe", "cmd/#");
        s.allow("alice", "receive", "cmd/ok");
        s.allow("alice", "publish", "dev/1");
    });
    let mut alice = broker
        .login(Version::V5, &client_id("alice"), "alice", "pw")
        .await;
    assert_eq!(alice.subscribe("cmd/#", 1).await, 1);
    let mut root = broker
        .login(Version::V5, &client_id("root"), "root", "pw")
        .await;
    // The first delivery on a topic nobody has asked about yet is withheld
    // (fail closed) while the answer is fetched; later ones follow it.
    let start = Instant::now();
    loop {
        root.publish_acked(Publish::new("cmd/ok", b"ok", 1)).await;
        if let Some(p) = alice.next_publish(Duration::from_millis(300)).await {
            assert_eq!(p.payload, b"ok");
            break;
        }
        assert!(start.elapsed() < WAIT, "never delivered:\n{}", broker.log());
    }
    for _ in 0..3 {
        root.publish_acked(Publish::new("cmd/no", b"no", 1)).await;
    }
    alice.expect_no_publish(QUIET, "receive denied").await;
    assert!(asked(&service, "receive", "cmd/no") >= 1);

    // Answers last their TTL (1 s), not the connection: a revoked publish
    // right is noticed.
    assert_eq!(alice.publish_acked(Publish::new("dev/1", b"1", 1)).await, 0);
    service.with(|s| {
        s.allowed.clear();
    });
    let start = Instant::now();
    loop {
        let code = alice.publish_acked(Publish::new("dev/1", b"1", 1)).await;
        if code == 0x87 {
            break;
        }
        assert_eq!(code, 0);
        assert!(start.elapsed() < WAIT, "the answer never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(asked(&service, "publish", "dev/1") >= 2);
}

#[tokio::test]
async fn no_answer_is_a_deny() {
    let (service, broker) = setup(", authorize_each: true").await;
    service.with(|s| {
        s.allow("alice", "publish", "dev/1");
        s.allow("alice", "publish", "dev/2");
        s.allow("alice", "publish", "dev/3");
        s.allow("alice", "subscribe", "cmd/alice");
    });
    let mut alice = broker
        .login(Version::V5, &client_id("alice"), "alice", "pw")
        .await;
    assert_eq!(alice.publish_acked(Publish::new("dev/1", b"1", 1)).await, 0);

    // Malformed answers deny, and are not remembered.
    service.with(|s| s.mode = Mode::MalformedAuthorize);
    assert_eq!(
        alice.publish_acked(Publish::new("dev/2", b"1", 1)).await,
        0x87
    );
    assert!(broker.wait_log("malformed /authorize answer", WAIT).await);
    // Slow answers (past the 500 ms timeout) deny.
    service.with(|s| s.mode = Mode::Slow(Duration::from_millis(900)));
    assert_eq!(
        alice.publish_acked(Publish::new("dev/3", b"1", 1)).await,
        0x87
    );
    service.with(|s| s.mode = Mode::Normal);
    // Down: the cached answer still holds; anything new is denied.
    service.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(alice.publish_acked(Publish::new("dev/1", b"1", 1)).await, 0);
    assert_eq!(
        alice.publish_acked(Publish::new("dev/2", b"1", 1)).await,
        0x87
    );
    assert_eq!(alice.subscribe("cmd/alice", 1).await, 0x87);
    let m = scrape(broker.addr("metrics")).await;
    assert!(value(&m, "warden_auth_http_decisions_total{outcome=\"unknown\"}") >= 3.0);

    // Back: the answers come again (once the breaker lets a probe by).
    service.restart().await;
    let start = Instant::now();
    loop {
        let code = alice.publish_acked(Publish::new("dev/2", b"1", 1)).await;
        if code == 0 {
            break;
        }
        assert_eq!(code, 0x87);
        assert!(start.elapsed() < WAIT, "no recovery:\n{}", broker.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alice.subscribe("cmd/alice", 1).await, 1);
}

#[tokio::test]
async fn the_python_example_service_decides_each_topic() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr").port()
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/auth_service.py");
    let mut child = tokio::process::Command::new("python3")
        .args([script, "--port", &port.to_string(), "--authorize-each"])
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(start.elapsed() < WAIT, "service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: format!(", http: {{ url: \"http://127.0.0.1:{port}\" }}"),
        ..BrokerOptions::default()
    });
    let mut alice = broker
        .login(Version::V5, &client_id("alice"), "alice", "pw")
        .await;
    assert_eq!(
        alice
            .publish_acked(Publish::new("devices/alice/t", b"x", 1))
            .await,
        0
    );
    assert_eq!(
        alice
            .publish_acked(Publish::new("devices/bob/t", b"x", 1))
            .await,
        0x87
    );
    assert_eq!(alice.subscribe("cmd/alice/reboot", 1).await, 1);
    assert_eq!(alice.subscribe("cmd/bob/reboot", 1).await, 0x87);
    let mut sensor = broker
        .login(Version::V5, &client_id("sensor"), "sensor-17", "s3")
        .await;
    assert_eq!(sensor.subscribe("devices/#", 1).await, 0x87, "not staff");
    child.kill().await.ok();
}
