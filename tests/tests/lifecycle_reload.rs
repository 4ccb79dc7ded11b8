//! SIGHUP reloads the config file and never stops the broker: certificates
//! rotated in place reach new handshakes, a new client CA bundle drops the
//! remembered client chains, limits and `on_deny` apply live, an invalid file
//! keeps the running config, and what needs a restart is named.

use std::time::Duration;

use warden_e2e::lifecycle::{edit_config, first_cert_der, rotate_server_cert, server_cert_der};
use warden_e2e::*;

async fn setup() -> TestBroker {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "r/#").await;
    broker
}

/// SIGHUP, then wait for the reload's outcome line.
async fn reload(broker: &TestBroker, outcome: &str) {
    let before = broker.log().matches(outcome).count();
    broker.signal("HUP");
    let deadline = tokio::time::Instant::now() + WAIT;
    while broker.log().matches(outcome).count() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {outcome:?} after SIGHUP; log:\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Subscribes to `topic`, publishes `payload` there at QoS 1 and expects it
/// back: the connection works both ways.
async fn round_trip(c: &mut RawClient, topic: &str, payload: &[u8]) {
    assert_eq!(c.subscribe(topic, 1).await, 1, "SUBACK for {topic}");
    assert_eq!(c.publish_acked(Publish::new(topic, payload, 1)).await, 0);
    let got = c.next_publish(WAIT).await.expect("own message back");
    assert_eq!(got.payload, payload);
}

#[tokio::test]
async fn sighup_with_an_unchanged_config_keeps_the_broker_and_its_clients() {
    let mut broker = setup().await;
    let mut before = broker
        .login(Version::V5, &client_id("before"), "alice", "pw")
        .await;
    reload(&broker, "config reloaded").await;
    assert!(broker.wait_exit(QUIET).is_none(), "still running");
    round_trip(&mut before, "r/before", b"still here").await;
    let mut after = broker
        .login(Version::V5, &client_id("after"), "alice", "pw")
        .await;
    round_trip(&mut after, "r/after", b"new").await;
    let log = broker.log();
    assert_eq!(log.matches("config reloaded").count(), 1, "{log}");
    assert!(!log.contains("need a restart"), "{log}");
}

#[tokio::test]
async fn a_server_certificate_rotated_in_place_reaches_new_handshakes() {
    let broker = setup().await;
    let original = first_cert_der(&broker.pki.server.cert_pem);
    let served = server_cert_der(broker.tls_addr(), broker.ca_pem()).await;
    assert_eq!(served.as_deref(), Ok(&original[..]));
    let mut before = broker
        .login(Version::V5, &client_id("before"), "alice", "pw")
        .await;

    let rotated = rotate_server_cert(&broker);
    reload(&broker, "config reloaded").await;

    let served = server_cert_der(broker.tls_addr(), &rotated.ca_pem).await;
    assert_eq!(
        served.as_deref(),
        Ok(&rotated.cert_der[..]),
        "new handshake"
    );
    assert!(
        server_cert_der(broker.tls_addr(), broker.ca_pem())
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    round_trip(&mut before, "r/before", b"old session").await;
    let mut after = RawClient::tls(broker.tls_addr(), &rotated.ca_pem, None)
        .await
        .expect("TLS with the new certificate");
    let c = Connect::new(Version::V5, &client_id("after")).login("alice", "pw");
    let (_, code, _) = after.connect(&c).await.expect("CONNACK");
    assert_eq!(code, 0);
    round_trip(&mut after, "r/after", b"new session").await;
}

/// Connects to the mTLS listener with `cert`; the CONNACK code, or how the
/// TLS handshake failed.
async fn try_mtls(broker: &TestBroker, cert: &certs::CertFiles) -> Result<u8, RawError> {
    let mut raw = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), Some(cert)).await?;
    let c = Connect::new(Version::V5, &client_id("m"));
    raw.connect(&c).await.map(|(_, code, _)| code)
}

#[tokio::test]
async fn a_new_client_ca_bundle_applies_to_certificates_seen_before() {
    let broker = setup().await;
    broker.add_user_no_password("dev").await;
    let trusted = broker.pki.client("dev");
    let foreign = broker.pki.rogue_client("dev");
    // Verified once, so its chain is remembered.
    assert_eq!(try_mtls(&broker, &trusted).await.ok(), Some(0));
    assert!(try_mtls(&broker, &foreign).await.is_err());

    let rogue_ca = std::fs::read(&broker.pki.rogue_ca_file).expect("rogue CA");
    std::fs::write(&broker.pki.ca_file, rogue_ca).expect("overwrite the client CA bundle");
    reload(&broker, "config reloaded").await;

    assert!(
        broker.log().contains("client CA bundle changed"),
        "{}",
        broker.log()
    );
    match try_mtls(&broker, &trusted).await {
        Err(RawError::Tls(_)) => {}
        other => panic!("a certificate of the old CA must be refused now: {other:?}"),
    }
    assert_eq!(try_mtls(&broker, &foreign).await.ok(), Some(0));
}

/// The 1-based line of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

#[tokio::test]
async fn an_invalid_config_keeps_the_running_one_and_says_where() {
    let mut broker = setup().await;
    edit_config(&broker, |text| {
        text.replace("max_packet_size: 1MiB", "max_packet_size: banana")
    });
    let line = line_of(
        &std::fs::read_to_string(&broker.config).expect("config"),
        "limits:",
    );
    reload(&broker, "config reload failed").await;
    let log = broker.log();
    let failure = log
        .lines()
        .find(|l| l.contains("config reload failed"))
        .expect("the failure line");
    assert!(failure.contains("ERROR"), "{failure}");
    assert!(failure.contains("limits.max_packet_size"), "{failure}");
    assert!(failure.contains(&format!("line {line}")), "{failure}");

    assert!(broker.wait_exit(QUIET).is_none(), "still running");
    let mut c = broker
        .login(Version::V5, &client_id("after"), "alice", "pw")
        .await;
    // The running 1 MiB limit still holds.
    round_trip(&mut c, "r/big", &[7u8; 100_000]).await;
}

#[tokio::test]
async fn limits_apply_to_new_connections_and_existing_ones_keep_theirs() {
    let broker = setup().await;
    let mut before = broker
        .login(Version::V5, &client_id("before"), "alice", "pw")
        .await;
    edit_config(&broker, |text| {
        text.replace("max_packet_size: 1MiB", "max_packet_size: 1KiB")
    });
    reload(&broker, "config reloaded").await;

    round_trip(&mut before, "r/before", &[1u8; 4000]).await;
    let mut after = broker
        .login(Version::V5, &client_id("after"), "alice", "pw")
        .await;
    after
        .publish(&Publish::new("r/after", &[2u8; 4000], 0))
        .await
        .expect("send");
    let end = after.ending(WAIT).await;
    assert_eq!(end.disconnect_code(), Some(0x95), "new limit: {end:?}");
}

#[tokio::test]
async fn a_restart_only_change_is_named_and_everything_else_applies() {
    let mut broker = setup().await;
    let tls_addr = broker.tls_addr();
    edit_config(&broker, |text| {
        text.replacen("bind: \"127.0.0.1:0\"", "bind: \"127.0.0.1:1\"", 1)
            .replace("on_deny: ignore", "on_deny: disconnect")
    });
    reload(&broker, "config reloaded").await;
    let log = broker.log();
    let warn = log
        .lines()
        .find(|l| l.contains("need a restart"))
        .unwrap_or_else(|| panic!("no restart line:\n{log}"));
    assert!(warn.contains("WARN"), "{warn}");
    assert!(
        warn.contains("config reload: these changes need a restart: listeners[0].bind"),
        "{warn}"
    );

    assert!(broker.wait_exit(QUIET).is_none(), "still running");
    assert_eq!(broker.tls_addr(), tls_addr);
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    round_trip(&mut c, "r/ok", b"allowed").await;
    // on_deny: disconnect is live: a denied publish now closes with 0x87.
    c.publish(&Publish::new("elsewhere", b"denied", 0))
        .await
        .expect("send");
    let end = c.ending(WAIT).await;
    assert_eq!(end.disconnect_code(), Some(0x87), "{end:?}");
}

#[tokio::test]
async fn rust_log_keeps_deciding_over_a_reloaded_log_level() {
    let broker = setup().await;
    edit_config(&broker, |text| text + "log: { level: debug }\n");
    reload(&broker, "config reloaded").await;
    let mut c = broker
        .login(Version::V5, &client_id("quiet"), "alice", "pw")
        .await;
    c.disconnect().await;
    tokio::time::sleep(QUIET).await;
    let log = broker.log();
    assert!(log.contains("log_level=\"RUST_LOG decides\""), "{log}");
    // The harness sets RUST_LOG: info unless WARDEN_E2E_LOG says otherwise.
    if std::env::var("WARDEN_E2E_LOG").is_err() {
        assert!(
            !log.contains("DEBUG"),
            "RUST_LOG=info keeps debug out:\n{log}"
        );
    }
}

#[tokio::test]
async fn an_unusable_key_file_keeps_the_listeners_certificate() {
    let broker = setup().await;
    let original = first_cert_der(&broker.pki.server.cert_pem);
    std::fs::write(&broker.pki.server.key, "not a key\n").expect("spoil the key");
    reload(&broker, "config reloaded").await;
    let log = broker.log();
    let why = log
        .lines()
        .find(|l| l.contains("keeping the previous certificates"))
        .unwrap_or_else(|| panic!("no line about the key:\n{log}"));
    assert!(why.contains("server.key"), "names the file: {why}");
    let served = server_cert_der(broker.tls_addr(), broker.ca_pem()).await;
    assert_eq!(
        served.as_deref(),
        Ok(&original[..]),
        "old certificate served"
    );
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    round_trip(&mut c, "r/x", b"served").await;
}
