//! Listener behaviour: connect timeout, connection limit, plain TCP only when
//! configured (with a warning), TLS on the default listener.

use std::time::{Duration, Instant};

use warden_e2e::*;
use warden_e2e::{raw, wire};

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

#[tokio::test]
async fn tls_1_2_and_1_3_are_both_accepted() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = raw::tls_config_versions(broker.ca_pem(), None, &[version]);
        let mut c = RawClient::tls_with(broker.tls_addr(), config)
            .await
            .unwrap_or_else(|e| panic!("{version:?}: {e:?}"));
        let connect = Connect::new(Version::V5, &client_id("tls")).login("alice", "pw");
        let (_, code, _) = c.connect(&connect).await.expect("CONNACK");
        assert_eq!(code, 0, "{version:?}");
    }
}

#[tokio::test]
async fn mqtt_3_1_client_connects_and_subscribes() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    let mut body = vec![0, 6];
    body.extend_from_slice(b"MQIsdp");
    body.extend([3, 0xC2, 0, 60]);
    for field in [&b"mqtt31-client"[..], b"alice", b"pw"] {
        body.extend((field.len() as u16).to_be_bytes());
        body.extend_from_slice(field);
    }
    let mut c = broker.raw().await;
    c.send(&wire::frame(0x10, &body)).await.expect("send");
    let ack = c.recv(WAIT).await.expect("CONNACK");
    assert!(matches!(ack, Incoming::ConnAck { code: 0, .. }), "{ack:?}");
    assert_eq!(c.subscribe("t/#", 1).await, 1);
}

#[tokio::test]
async fn server_keep_alive_caps_the_clients_keep_alive() {
    let broker = TestBroker::start(BrokerOptions {
        max_keepalive: 2,
        ..BrokerOptions::default()
    });
    broker.user_with_rights("alice", "pw", "t/#").await;
    let mut c = broker.raw().await;
    let connect = Connect::new(Version::V5, &client_id("ka")).login("alice", "pw");
    let (_, code, props) = c.connect(&connect).await.expect("CONNACK");
    assert_eq!(code, 0);
    assert_eq!(
        props.u16(wire::SERVER_KEEP_ALIVE),
        Some(2),
        "Server Keep Alive sent"
    );
    let started = Instant::now();
    c.ending(Duration::from_secs(6)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(5),
        "closed after {took:?}, want 1.5 × 2 s"
    );
}

#[tokio::test]
async fn unknown_user_costs_about_as_much_as_a_wrong_password() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    let mut timings = [Duration::ZERO; 2];
    for round in 0..2 {
        for (i, user) in ["alice", "nobody"].iter().enumerate() {
            let mut c = broker.raw().await;
            let started = Instant::now();
            let connect = Connect::new(Version::V5, &client_id("t")).login(user, "wrong");
            let (_, code, _) = c.connect(&connect).await.expect("CONNACK");
            assert_eq!(code, 0x86, "round {round} {user}");
            timings[i] += started.elapsed();
        }
    }
    let [wrong, unknown] = timings;
    assert!(
        unknown * 4 >= wrong,
        "unknown user answered in {unknown:?}, wrong password in {wrong:?}: a dummy hash check is missing"
    );
}
