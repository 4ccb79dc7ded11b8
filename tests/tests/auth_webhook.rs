//! `auth.webhook`: the event sink over HTTP. A real HTTP receiver gets
//! batches with connects, denies, refused logins, admin changes and
//! disconnects; with the receiver down the broker keeps serving clients,
//! the bounded queue drops its oldest events and the dropped counter grows;
//! back up, the receiver gets batches again, told how many were dropped.

use std::time::{Duration, Instant};

use serde_json::Value;
use warden_e2e::auth_service::AuthService;
use warden_e2e::http::{scrape, value};
use warden_e2e::*;

async fn setup() -> (AuthService, TestBroker) {
    let receiver = AuthService::start().await;
    let broker = TestBroker::start(BrokerOptions {
        auth_extra: format!(
            ", webhook: {{ url: \"{}/events\", batch_size: 5, interval: 200ms, \
             queue: 20, timeout: 500ms }}",
            receiver.url()
        ),
        metrics: true,
        ..BrokerOptions::default()
    });
    (receiver, broker)
}

/// Wait until the receiver has an event for which `pred` holds.
async fn wait_event(receiver: &AuthService, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Some(e) = receiver.with(|s| s.events()).into_iter().find(&pred) {
            return e;
        }
        assert!(
            start.elapsed() < WAIT,
            "no {what} event; got {:?}",
            receiver.with(|s| s.events())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is(e: &Value, event: &str, client: &str) -> bool {
    e["event"] == event && e["client_id"] == client
}

#[tokio::test]
async fn the_receiver_gets_batches_of_the_events() {
    let (receiver, broker) = setup().await;
    broker.add_user("bob", "pw", &[]).await;
    let id = client_id("bob");
    let mut bob = broker.login(Version::V5, &id, "bob", "pw").await;
    // No rule allows it: a deny.
    assert_eq!(bob.publish_acked(Publish::new("x/1", b"1", 1)).await, 0x87);
    let mut raw = broker.raw().await;
    let c = Connect::new(Version::V5, &client_id("bad")).login("bob", "wrong");
    assert_eq!(raw.connect(&c).await.expect("CONNACK").1, 0x86);
    drop(bob);

    let connected = wait_event(&receiver, "connected", |e| is(e, "connected", &id)).await;
    assert_eq!(connected["username"], "bob");
    assert_eq!(connected["auth"], "password");
    assert!(connected["ts"].as_u64().is_some_and(|t| t > 0));
    let denied = wait_event(&receiver, "denied", |e| is(e, "denied", &id)).await;
    assert_eq!(denied["action"], "publish");
    assert_eq!(denied["topic"], "x/1");
    let refused = wait_event(&receiver, "login_refused", |e| {
        e["event"] == "login_refused"
    })
    .await;
    assert_eq!(refused["username"], "bob");
    assert!(refused.get("password").is_none(), "no secret in events");
    wait_event(&receiver, "disconnected", |e| is(e, "disconnected", &id)).await;
    // An admin change made with the CLI, as the broker picks it up.
    broker.add_user("carol", "pw", &[]).await;
    let change = wait_event(&receiver, "admin_change", |e| {
        e["event"] == "admin_change" && e["what"] == "user add carol"
    })
    .await;
    assert!(
        change["user"].as_str().is_some_and(|u| !u.is_empty()),
        "{change}"
    );

    // Batches respect batch_size, and nothing was dropped.
    receiver.with(|s| {
        for b in &s.batches {
            let n = b["events"].as_array().map_or(0, Vec::len);
            assert!((1..=5).contains(&n), "batch of {n}");
            assert_eq!(b["dropped"], 0);
        }
    });
}

#[tokio::test]
async fn the_receiver_down_costs_events_not_service() {
    let (receiver, broker) = setup().await;
    broker.add_user("bob", "pw", &[]).await;
    broker
        .cli_stdin(
            &["user", "add", "root", "--password-stdin", "--superuser"],
            "pw",
        )
        .await;
    receiver.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // More events than the queue holds (20): connects, denies and
    // disconnects of clients that are served all the same.
    let mut root = broker
        .login(Version::V5, &client_id("root"), "root", "pw")
        .await;
    assert_eq!(root.subscribe("t/#", 1).await, 1);
    for n in 0..15u8 {
        let mut bob = broker
            .login(Version::V5, &client_id("bob"), "bob", "pw")
            .await;
        assert_eq!(bob.publish_acked(Publish::new("t/1", &[n], 1)).await, 0x87);
        root.publish_acked(Publish::new("t/2", &[n], 1)).await;
        assert_eq!(root.next_publish(WAIT).await.expect("served").payload, [n]);
    }
    let start = Instant::now();
    loop {
        let m = scrape(broker.addr("metrics")).await;
        let dropped = value(&m, "warden_auth_webhook_events_total{outcome=\"dropped\"}");
        if dropped > 0.0 {
            assert!(value(&m, "warden_auth_webhook_queued") <= 20.0);
            break;
        }
        assert!(start.elapsed() < WAIT, "nothing dropped: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(broker.wait_log("event webhook unreachable", WAIT).await);

    // Back: the queue is sent, with how many were dropped.
    receiver.restart().await;
    let start = Instant::now();
    loop {
        let dropped =
            receiver.with(|s| s.batches.iter().filter_map(|b| b["dropped"].as_u64()).max());
        if dropped.is_some_and(|d| d > 0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no batch after recovery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(broker.wait_log("event webhook reachable again", WAIT).await);
}
