//! Limits that hold under attack (issue 13, Defence): each refuses only the
//! offender, with the protocol's reason code where there is one, and is
//! counted in `warden_limit_refusals_total{limit=...}` by exact deltas.
//!
//! - A flood of connections past `limits.max_connections_per_ip` (and the
//!   broker-wide `limits.max_connections`) is closed before CONNACK, while
//!   the clients already connected keep exchanging messages.
//! - `limits.connection_rate_per_ip`: a burst past the rate is closed.
//! - `limits.max_subscriptions`: the excess filters get SUBACK 0x97 (v5) /
//!   0x80 (v3); the granted ones still deliver.
//! - `limits.publish_rate`: a client publishing faster is disconnected with
//!   DISCONNECT 0x96; another client is untouched.

use std::collections::HashMap;
use std::time::Duration;

use warden_e2e::http::{scrape, value};
use warden_e2e::*;

fn refusals(samples: &HashMap<String, f64>, limit: &str) -> f64 {
    value(
        samples,
        &format!("warden_limit_refusals_total{{limit=\"{limit}\"}}"),
    )
}

/// A connection attempt the broker must refuse: closed (before or during
/// the TLS handshake, or before CONNACK), never a successful CONNACK.
async fn refused(broker: &TestBroker) {
    let attempt = async {
        let mut raw = RawClient::tls(broker.tls_addr(), broker.ca_pem(), None).await?;
        let c = Connect::new(Version::V5, &client_id("flood")).login("alice", "pw");
        raw.connect(&c).await.map(|(_, code, _)| code)
    };
    match tokio::time::timeout(WAIT, attempt)
        .await
        .expect("the attempt was decided")
    {
        Ok(code) => panic!("a connection past the limit got CONNACK {code:#x}"),
        Err(RawError::Closed | RawError::Tls(_) | RawError::Io(_)) => {}
        Err(other) => panic!("connection past the limit: {other:?}"),
    }
}

/// `from` publishes QoS 1 to `to`'s subscription: both still work.
async fn round_trip(from: &mut RawClient, to: &mut RawClient, topic: &str, body: &[u8]) {
    assert_eq!(from.publish_acked(Publish::new(topic, body, 1)).await, 0);
    let got = to.next_publish(WAIT).await.expect("delivered");
    assert_eq!(got.payload, body);
}

#[tokio::test]
async fn a_connection_flood_from_one_address_is_refused_and_existing_clients_carry_on() {
    const PER_IP: usize = 4;
    const FLOOD: usize = 12;
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        limits_extra: format!(", max_connections_per_ip: {PER_IP}"),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker.user_with_rights("alice", "pw", "f/#").await;
    let mut clients = Vec::new();
    for i in 0..PER_IP {
        let mut c = broker
            .login(Version::V5, &client_id(&format!("held{i}")), "alice", "pw")
            .await;
        assert_eq!(c.subscribe(&format!("f/{i}"), 1).await, 1);
        clients.push(c);
    }
    let before = scrape(m).await;
    for _ in 0..FLOOD {
        refused(&broker).await;
    }
    let after = scrape(m).await;
    assert_eq!(
        refusals(&after, "max_connections_per_ip") - refusals(&before, "max_connections_per_ip"),
        FLOOD as f64
    );
    // Nobody else was refused, and no login was even attempted.
    assert_eq!(
        value(
            &after,
            "warden_authentications_total{result=\"success\",reason=\"ok\"}"
        ) - value(
            &before,
            "warden_authentications_total{result=\"success\",reason=\"ok\"}"
        ),
        0.0
    );
    // The clients connected before the flood still round-trip.
    let (a, rest) = clients.split_at_mut(1);
    round_trip(&mut a[0], &mut rest[0], "f/1", b"after the flood").await;
    round_trip(&mut rest[1], &mut a[0], "f/0", b"both ways").await;
    // A slot given back is a slot for the next client.
    clients.pop().expect("a client").disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _again = broker
        .login(Version::V311, &client_id("again"), "alice", "pw")
        .await;
}

#[tokio::test]
async fn the_broker_wide_connection_limit_counts_every_listener() {
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        plain_tcp: true,
        limits_extra: ", max_connections: 2".into(),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker.user_with_rights("alice", "pw", "g/#").await;
    let mut tls = broker
        .login(Version::V5, &client_id("tls"), "alice", "pw")
        .await;
    let mut plain = RawClient::tcp(broker.plain_addr()).await.expect("tcp");
    let c = Connect::new(Version::V5, &client_id("plain")).login("alice", "pw");
    assert_eq!(plain.connect(&c).await.expect("CONNACK").1, 0);
    assert_eq!(plain.subscribe("g/x", 1).await, 1);
    let before = scrape(m).await;
    refused(&broker).await;
    // Plain TCP too: the third connection is closed without a CONNACK.
    let mut third = RawClient::tcp(broker.plain_addr()).await.expect("tcp");
    let c = Connect::new(Version::V5, &client_id("third")).login("alice", "pw");
    match third.connect(&c).await {
        Err(RawError::Closed | RawError::Io(_)) => {}
        other => panic!("third connection: {other:?}"),
    }
    let after = scrape(m).await;
    assert_eq!(
        refusals(&after, "max_connections") - refusals(&before, "max_connections"),
        2.0
    );
    round_trip(&mut tls, &mut plain, "g/x", b"still here").await;
}

#[tokio::test]
async fn connections_faster_than_the_rate_per_address_are_refused() {
    const RATE: usize = 3;
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        plain_tcp: true,
        limits_extra: format!(", connection_rate_per_ip: {RATE}"),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker.user_with_rights("alice", "pw", "r/#").await;
    let before = scrape(m).await;
    // Far more attempts than the burst, back to back: the burst gets in
    // (plus what the rate refilled meanwhile), the rest are closed.
    let mut accepted = 0usize;
    let mut closed = 0usize;
    for i in 0..(RATE * 4) {
        let mut raw = RawClient::tcp(broker.plain_addr()).await.expect("tcp");
        let c = Connect::new(Version::V311, &client_id(&format!("r{i}"))).login("alice", "pw");
        match raw.connect(&c).await {
            Ok((_, 0, _)) => accepted += 1,
            Ok((_, code, _)) => panic!("CONNACK {code:#x}"),
            Err(RawError::Closed | RawError::Io(_)) => closed += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(accepted >= RATE, "the burst is let in ({accepted})");
    assert!(closed > 0, "nothing was refused");
    let after = scrape(m).await;
    assert_eq!(
        refusals(&after, "connection_rate_per_ip") - refusals(&before, "connection_rate_per_ip"),
        closed as f64
    );
}

#[tokio::test]
async fn subscriptions_past_the_limit_get_quota_exceeded() {
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        limits_extra: ", max_subscriptions: 3".into(),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker.user_with_rights("alice", "pw", "s/#").await;
    let before = scrape(m).await;
    let mut c = broker
        .login(Version::V5, &client_id("subs"), "alice", "pw")
        .await;
    let subs: Vec<Sub> = (0..5).map(|i| Sub::new(&format!("s/{i}"), 1)).collect();
    let codes = c.subscribe_with(1, &subs, &Props::default()).await;
    assert_eq!(codes, vec![1, 1, 1, 0x97, 0x97]);
    // Subscribing again to a filter it holds replaces it: not an excess.
    assert_eq!(c.subscribe("s/0", 0).await, 0);
    assert_eq!(c.subscribe("s/9", 0).await, 0x97);
    // Unsubscribing frees a place.
    c.send(&wire::encode_unsubscribe(7, &["s/1"], Version::V5))
        .await
        .expect("UNSUBSCRIBE");
    c.expect("UNSUBACK", |i| matches!(i, Incoming::UnsubAck { .. }))
        .await;
    assert_eq!(c.subscribe("s/9", 1).await, 1);
    // v3 clients get 0x80 for the excess.
    let mut v3 = broker
        .login(Version::V311, &client_id("subs3"), "alice", "pw")
        .await;
    let subs: Vec<Sub> = (0..4).map(|i| Sub::new(&format!("s/{i}"), 1)).collect();
    assert_eq!(
        v3.subscribe_with(1, &subs, &Props::default()).await,
        vec![1, 1, 1, 0x80]
    );
    // The granted subscriptions deliver.
    let mut p = broker
        .login(Version::V5, &client_id("pub"), "alice", "pw")
        .await;
    assert_eq!(p.publish_acked(Publish::new("s/9", b"hi", 1)).await, 0);
    assert_eq!(
        c.next_publish(WAIT).await.expect("delivered").payload,
        b"hi"
    );
    let after = scrape(m).await;
    assert_eq!(
        refusals(&after, "max_subscriptions") - refusals(&before, "max_subscriptions"),
        4.0
    );
}

#[tokio::test]
async fn a_client_publishing_past_the_rate_is_disconnected_with_0x96() {
    const RATE: usize = 5;
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        limits_extra: format!(", publish_rate: {RATE}"),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker.user_with_rights("alice", "pw", "p/#").await;
    let mut sub = broker
        .login(Version::V5, &client_id("sub"), "alice", "pw")
        .await;
    assert_eq!(sub.subscribe("p/#", 0).await, 0);
    let mut calm = broker
        .login(Version::V5, &client_id("calm"), "alice", "pw")
        .await;
    let before = scrape(m).await;
    let mut noisy = broker
        .login(Version::V5, &client_id("noisy"), "alice", "pw")
        .await;
    // One more than the burst, in one write: the broker reads them all
    // at once, so the rate cannot refill in between, and nothing is left
    // unread when it closes (which would reset the connection).
    let mut burst = Vec::new();
    for i in 0..=RATE {
        let p = Publish::new("p/noisy", format!("{i}").as_bytes(), 0);
        burst.extend(wire::encode_publish(&p, Version::V5));
    }
    noisy.send(&burst).await.expect("send the burst");
    let ending = noisy.ending(WAIT).await;
    assert_eq!(ending.disconnect_code(), Some(0x96), "{ending:?}");
    // The other publisher is untouched.
    assert_eq!(
        calm.publish_acked(Publish::new("p/calm", b"ok", 1)).await,
        0
    );
    let got = warden_e2e::sessions::drain(&mut sub, Duration::from_millis(500)).await;
    assert!(got.iter().any(|p| p.payload == b"ok"), "{got:?}");
    let after = scrape(m).await;
    assert_eq!(
        refusals(&after, "publish_rate") - refusals(&before, "publish_rate"),
        1.0
    );
}
