//! Mutual TLS identities: each `username_from` mapping (SAN DNS, e-mail,
//! URI, subject), rules on certificate fields (`${cert.o}`, `${cert.ou}`,
//! `${cert.serial}`, `${cert.fingerprint}`), pinning a user to one
//! certificate, and refusals that name the certificate and the reason.

use std::time::Duration;

use warden_e2e::certs::{CertFiles, ClientSpec};
use warden_e2e::*;

fn with_mapping(from: &'static str) -> TestBroker {
    TestBroker::start(BrokerOptions {
        mtls_username_from: from,
        ..BrokerOptions::default()
    })
}

/// CONNECT over mTLS with `cert` (no username, no password); the CONNACK code.
async fn connect_code(broker: &TestBroker, cert: &CertFiles) -> u8 {
    mtls_client(broker, cert).await.1
}

async fn mtls_client(broker: &TestBroker, cert: &CertFiles) -> (RawClient, u8) {
    let mut raw = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), Some(cert))
        .await
        .expect("TLS with a valid certificate");
    let (_, code, _) = raw
        .connect(&Connect::new(Version::V5, &client_id("map")))
        .await
        .expect("CONNACK");
    (raw, code)
}

/// A user named `name` without a password, allowed to publish below `name/`.
async fn cert_user(broker: &TestBroker, name: &str) {
    broker.add_user_no_password(name).await;
    broker.allow(name, "publish", "${username}/#").await;
}

#[tokio::test]
async fn san_dns_maps_the_first_dns_name() {
    let broker = with_mapping("san_dns");
    cert_user(&broker, "gw1.example").await;
    let spec = ClientSpec {
        dns: vec!["gw1.example".into(), "other.example".into()],
        ..ClientSpec::default()
    };
    let cert = broker.pki.client_with("dns", "ignored-cn", &spec);
    let (mut raw, code) = mtls_client(&broker, &cert).await;
    assert_eq!(code, 0, "mapped from the first DNS SAN, no password");
    assert_eq!(
        raw.publish_acked(Publish::new("gw1.example/t", b"x", 1))
            .await,
        0,
        "${{username}} is the SAN"
    );
    // No DNS SAN: nothing to map, no username either.
    let plain = broker.pki.client("gw1.example");
    assert_ne!(connect_code(&broker, &plain).await, 0);
}

#[tokio::test]
async fn san_email_maps_the_first_email() {
    let broker = with_mapping("san_email");
    cert_user(&broker, "ops@example.com").await;
    let spec = ClientSpec {
        dns: vec!["not-this.example".into()],
        email: vec!["ops@example.com".into()],
        ..ClientSpec::default()
    };
    let cert = broker.pki.client_with("email", "someone", &spec);
    assert_eq!(connect_code(&broker, &cert).await, 0);
}

#[tokio::test]
async fn san_uri_maps_the_first_uri() {
    let broker = with_mapping("san_uri");
    cert_user(&broker, "spiffe://fleet/dev-9").await;
    let spec = ClientSpec {
        uri: vec!["spiffe://fleet/dev-9".into()],
        ..ClientSpec::default()
    };
    let cert = broker.pki.client_with("uri", "dev-9", &spec);
    assert_eq!(connect_code(&broker, &cert).await, 0);
    let other = ClientSpec {
        uri: vec!["spiffe://fleet/dev-10".into()],
        ..ClientSpec::default()
    };
    let stranger = broker.pki.client_with("uri2", "dev-9", &other);
    assert_eq!(
        connect_code(&broker, &stranger).await,
        0x86,
        "unknown user behind the URI"
    );
}

#[tokio::test]
async fn subject_maps_the_whole_subject() {
    let broker = with_mapping("subject");
    // RFC 4514 order: the last RDN first.
    cert_user(&broker, "O=Warden e2e,CN=dev-3").await;
    let cert = broker.pki.client("dev-3");
    assert_eq!(connect_code(&broker, &cert).await, 0);
}

#[tokio::test]
async fn certificate_fields_in_rules() {
    let broker = TestBroker::start_default();
    broker.add_user_no_password("dev-5").await;
    broker
        .allow(
            "dev-5",
            "publish",
            "org/${cert.o}/${cert.ou}/${cert.serial}/#",
        )
        .await;
    broker
        .allow("dev-5", "publish", "fp/${cert.fingerprint}")
        .await;
    let spec = ClientSpec {
        ou: Some("line-2".into()),
        serial: Some(vec![0x0a, 0xbc, 0xde]),
        ..ClientSpec::default()
    };
    let cert = broker.pki.client_with("fields", "dev-5", &spec);
    let (mut raw, code) = mtls_client(&broker, &cert).await;
    assert_eq!(code, 0);
    let own = "org/Warden e2e/line-2/0abcde/t";
    assert_eq!(raw.publish_acked(Publish::new(own, b"x", 1)).await, 0);
    let other_serial = "org/Warden e2e/line-2/0abcdf/t";
    assert_eq!(
        raw.publish_acked(Publish::new(other_serial, b"x", 1)).await,
        0x87
    );
    let fp = format!("fp/{}", cert.fingerprint());
    assert_eq!(raw.publish_acked(Publish::new(&fp, b"x", 1)).await, 0);
    assert_eq!(
        raw.publish_acked(Publish::new("fp/0000", b"x", 1)).await,
        0x87
    );
}

#[tokio::test]
async fn a_pinned_user_accepts_only_its_certificate() {
    let broker = TestBroker::start_default();
    let first = broker
        .pki
        .client_with("pin-a", "alice", &ClientSpec::default());
    let second = broker
        .pki
        .client_with("pin-b", "alice", &ClientSpec::default());
    broker
        .cli_ok(&[
            "user",
            "add",
            "alice",
            "--no-password",
            "--cert-fingerprint",
            &first.fingerprint().to_uppercase(),
        ])
        .await;
    let shown = broker.cli_ok(&["user", "show", "alice"]).await;
    assert!(shown.contains(&first.fingerprint()), "{shown}");

    let (mut live, code) = mtls_client(&broker, &first).await;
    assert_eq!(code, 0, "the pinned certificate gets in");
    assert_eq!(
        connect_code(&broker, &second).await,
        0x87,
        "same CN, another certificate"
    );
    assert!(
        broker
            .wait_log("user pinned to another certificate", WAIT)
            .await,
        "the refusal names the reason"
    );
    let log = broker.log();
    let line = log
        .lines()
        .find(|l| l.contains("user pinned to another certificate"))
        .unwrap_or_default();
    assert!(
        line.contains("alice") && line.contains(&second.fingerprint()),
        "the refusal names the certificate: {line}"
    );

    // Re-pinned to the second certificate: the live session of the first
    // is ended by the policy refresh.
    broker
        .cli_ok(&["user", "pin", "alice", &second.fingerprint()])
        .await;
    let ending = live.ending(Duration::from_secs(5)).await;
    assert!(
        ending
            .packets
            .iter()
            .any(|p| matches!(p, Incoming::Disconnect { code: 0x98, .. })),
        "{ending:?}"
    );
    assert_eq!(connect_code(&broker, &second).await, 0);
}

/// Whether a log line has `username` set to `name` (however the log
/// format quotes it).
fn names(line: &str, name: &str) -> bool {
    line.contains(&format!("username={name}")) || line.contains(&format!("username=\"{name}\""))
}

#[tokio::test]
async fn refused_certificate_logins_name_the_certificate_and_the_reason() {
    let broker = TestBroker::start_default();
    broker.add_user_no_password("bob").await;
    broker.cli_ok(&["user", "disable", "bob"]).await;
    let unknown = broker.pki.client("mallory");
    let disabled = broker.pki.client("bob");
    assert_eq!(connect_code(&broker, &unknown).await, 0x86);
    assert_eq!(connect_code(&broker, &disabled).await, 0x87);
    assert!(broker.wait_log("user disabled", WAIT).await);
    let log = broker.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("login refused"))
        .collect();
    assert!(
        refusals
            .iter()
            .any(|l| names(l, "mallory") && l.contains("unknown user") && l.contains("CN=mallory")),
        "{refusals:#?}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| names(l, "bob") && l.contains("user disabled")),
        "{refusals:#?}"
    );
}
