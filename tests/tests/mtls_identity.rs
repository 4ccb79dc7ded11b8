//! Mutual TLS on a `client_auth: required` listener: no certificate or one
//! from another CA is refused at TLS; a valid certificate connects as the
//! CN's user, with no password and that user's rules.

use std::time::Duration;

use warden_e2e::certs;
use warden_e2e::clients::{v3_mtls_options, Mosq, V3Client};
use warden_e2e::*;

async fn setup() -> TestBroker {
    let broker = TestBroker::start_default();
    broker.add_user_no_password("alice").await;
    broker
        .allow("alice", "publish,subscribe,receive", "alice/#")
        .await;
    broker.user_with_rights("watcher", "pw", "#").await;
    broker
}

/// Connects to the mTLS listener and sends CONNECT; returns how it went.
async fn try_mtls(broker: &TestBroker, cert: Option<&certs::CertFiles>) -> Result<u8, RawError> {
    let mut raw = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), cert).await?;
    let c = Connect::new(Version::V5, &client_id("m"));
    raw.connect(&c).await.map(|(_, code, _)| code)
}

fn assert_tls_refused(result: Result<u8, RawError>, what: &str) {
    match result {
        Err(RawError::Tls(rustls::Error::AlertReceived(_))) => {}
        other => panic!("{what}: want a TLS alert from the server, got {other:?}"),
    }
}

#[tokio::test]
async fn no_client_certificate_is_refused_at_tls() {
    let broker = setup().await;
    assert_tls_refused(try_mtls(&broker, None).await, "no certificate");
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_at_tls() {
    let broker = setup().await;
    let rogue = broker.pki.rogue_client("alice");
    assert_tls_refused(try_mtls(&broker, Some(&rogue)).await, "rogue CA");
}

#[tokio::test]
async fn valid_certificate_connects_as_the_cn_user_with_its_rules() {
    let broker = setup().await;
    let cert = broker.pki.client("alice");
    let mut raw = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), Some(&cert))
        .await
        .expect("TLS with a valid certificate");
    let (_, code, _) = raw
        .connect(&Connect::new(Version::V5, &client_id("alice")))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0, "no password needed with a certificate");
    assert_eq!(
        raw.publish_acked(Publish::new("alice/t", b"mine", 1)).await,
        0x00
    );
    assert_eq!(
        raw.publish_acked(Publish::new("bob/t", b"not mine", 1))
            .await,
        0x87
    );
    assert_eq!(raw.subscribe("bob/#", 1).await, 0x87);
    assert_eq!(raw.subscribe("alice/#", 1).await, 0x01);
}

#[tokio::test]
async fn certificate_for_an_unknown_user_is_refused_at_connect() {
    let broker = setup().await;
    let cert = broker.pki.client("mallory");
    let code = try_mtls(&broker, Some(&cert))
        .await
        .expect("TLS passes, CONNACK");
    assert!(
        code == 0x86 || code == 0x87,
        "unknown certificate user: CONNACK 0x{code:02x}"
    );
}

#[tokio::test]
async fn certificate_for_a_disabled_user_is_refused_at_connect() {
    let broker = setup().await;
    broker.cli_ok(&["user", "disable", "alice"]).await;
    let cert = broker.pki.client("alice");
    let code = try_mtls(&broker, Some(&cert))
        .await
        .expect("TLS passes, CONNACK");
    assert!(
        code == 0x86 || code == 0x87,
        "disabled user: CONNACK 0x{code:02x}"
    );
}

#[tokio::test]
async fn mosquitto_pub_with_a_client_certificate_over_mtls() {
    let broker = setup().await;
    let mut watcher = broker
        .login(Version::V5, &client_id("w"), "watcher", "pw")
        .await;
    watcher.subscribe("#", 1).await;
    let cert = broker.pki.client("alice");
    for version in ["mqttv311", "mqttv5"] {
        let mosq = Mosq {
            port: broker.mtls_addr().port(),
            version,
            ca: &broker.pki.ca_file,
            cert: Some(&cert),
            login: None,
            client_id: &client_id("mosq"),
        };
        let out = mosq.publish("alice/mosq", version, 1).await;
        assert!(
            out.status.success(),
            "mosquitto_pub {version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = watcher.next_publish(WAIT).await.expect("delivered");
        assert_eq!(
            (got.topic.as_str(), got.payload.as_slice()),
            ("alice/mosq", version.as_bytes())
        );
    }
}

#[tokio::test]
async fn mosquitto_pub_without_a_certificate_fails() {
    let broker = setup().await;
    let mosq = Mosq {
        port: broker.mtls_addr().port(),
        version: "mqttv311",
        ca: &broker.pki.ca_file,
        cert: None,
        login: Some(("watcher", "pw")),
        client_id: &client_id("mosq"),
    };
    let out = mosq.publish("alice/x", "no", 1).await;
    assert!(
        !out.status.success(),
        "mosquitto_pub without a certificate must fail"
    );
}

#[tokio::test]
async fn rumqttc_with_a_client_certificate_receives_its_topics() {
    let broker = setup().await;
    let cert = broker.pki.client("alice");
    let mut c = V3Client::start(v3_mtls_options(&broker, &client_id("r"), &cert));
    c.connack().await.expect("CONNACK");
    c.client
        .subscribe("alice/#", rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    c.wait_for(WAIT, |p| matches!(p, rumqttc::Packet::SubAck(_)))
        .await
        .expect("SUBACK");
    let mut w = broker
        .login(Version::V5, &client_id("w"), "watcher", "pw")
        .await;
    w.publish_acked(Publish::new("alice/in", b"hello", 1)).await;
    let got = c
        .next_publish(Duration::from_secs(5))
        .await
        .expect("delivered");
    assert_eq!(got.payload.as_ref(), b"hello");
}
