//! Listener behaviour: connect timeout, connection limit, plain TCP only when
//! configured (with a warning), TLS on the default listener.

use std::time::{Duration, Instant};

use warden_e2e::*;

#[tokio::test]
async fn silent_client_is_closed_after_connect_timeout() {
    let broker = TestBroker::start(BrokerOptions {
        connect_timeout: Some("1s"),
        ..BrokerOptions::default()
    });
    let started = Instant::now();
    let mut raw = broker.raw().await;
    let end = raw.ending(Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(end.packets.is_empty(), "no packet before CONNECT: {end:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "closed after {took:?}, want about 1 s"
    );
}

#[tokio::test]
async fn connection_limit_refuses_the_extra_connection() {
    let broker = TestBroker::start(BrokerOptions {
        max_connections: Some(2),
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", "pw", "t/#").await;
    let first = broker
        .login(Version::V5, &client_id("a"), "alice", "pw")
        .await;
    let _second = broker
        .login(Version::V5, &client_id("b"), "alice", "pw")
        .await;

    let third = async {
        let mut raw = RawClient::tls(broker.tls_addr(), broker.ca_pem(), None).await?;
        let c = Connect::new(Version::V5, &client_id("c")).login("alice", "pw");
        raw.connect(&c).await.map(|(_, code, _)| code)
    };
    match tokio::time::timeout(WAIT, third)
        .await
        .expect("third connection decided")
    {
        Ok(code) => assert_ne!(code, 0, "third connection must not be accepted"),
        Err(RawError::Closed | RawError::Tls(_) | RawError::Io(_)) => {}
        Err(other) => panic!("third connection: {other:?}"),
    }

    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _again = broker
        .login(Version::V5, &client_id("d"), "alice", "pw")
        .await;
}

#[tokio::test]
async fn no_plain_tcp_unless_configured() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    // Plain MQTT bytes sent to the TLS port never reach the MQTT layer.
    let mut raw = RawClient::tcp(broker.tls_addr())
        .await
        .expect("tcp connect");
    let c = Connect::new(Version::V311, &client_id("p")).login("alice", "pw");
    let r = raw.connect(&c).await;
    assert!(r.is_err(), "plain CONNECT to the TLS listener got {r:?}");
    assert!(
        !broker.log().contains("(plain)"),
        "no plain listener by default"
    );
}

#[tokio::test]
async fn plain_tcp_listener_works_and_is_warned_about() {
    let broker = TestBroker::start(BrokerOptions {
        plain_tcp: true,
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", "pw", "t/#").await;
    let mut raw = RawClient::tcp(broker.plain_addr())
        .await
        .expect("tcp connect");
    let c = Connect::new(Version::V311, &client_id("p")).login("alice", "pw");
    let (_, code, _) = raw.connect(&c).await.expect("CONNACK over plain TCP");
    assert_eq!(code, 0);
    let log = broker.log();
    let warned = log.lines().any(|l| {
        let lower = l.to_lowercase();
        l.contains("WARN") && (lower.contains("plain") || lower.contains("unencrypted"))
    });
    assert!(warned, "a WARN line about the plain listener; log:\n{log}");
}
