//! OCSP checking of client certificates against a real responder
//! (`openssl ocsp` on loopback): good certificates get in, revoked ones are
//! refused (v5 CONNACK 0x87) under soft_fail and hard_fail alike; with the
//! responder down or silent, soft_fail lets clients in with one warning and
//! hard_fail refuses them (0x88, server unavailable); answers are kept until
//! their nextUpdate and not at all without one; a responder the CA
//! delegated to is believed, one another CA made is not.

use std::path::PathBuf;

use warden_e2e::certs::{CertFiles, ClientSpec};
use warden_e2e::clients::Mosq;
use warden_e2e::http::scrape;
use warden_e2e::ocsp::{
    client_subject, free_port, IndexEntry, OcspResponder, Signer, SilentResponder,
};
use warden_e2e::*;

const ALICE: &[u8] = &[0x21, 0x01];
const BOB: &[u8] = &[0x21, 0x02];
const ERIN: &[u8] = &[0x21, 0x03];

/// The `mtls` listener checks with hard_fail; `extra` adds listeners.
async fn broker(mtls_extra: &str, extra: &str) -> TestBroker {
    let broker = TestBroker::start(BrokerOptions {
        mtls_extra: format!("    ocsp: hard_fail\n    ocsp_timeout: 1s\n{mtls_extra}"),
        extra_listeners: extra.to_owned(),
        extra_listener_count: extra.matches("- name:").count(),
        metrics: true,
        ..BrokerOptions::default()
    });
    for name in ["alice", "bob", "erin"] {
        broker.add_user_no_password(name).await;
        broker
            .allow(name, "publish,subscribe,receive", "${username}/#")
            .await;
    }
    broker
}

/// Another mTLS listener, named `name`, with these OCSP keys.
fn mtls_listener(name: &str, ocsp: &str) -> String {
    format!(
        "  - name: {name}\n    kind: tls\n    bind: \"127.0.0.1:0\"\n    cert: @DIR@/server.pem\n    key: @DIR@/server.key\n    client_auth: required\n    client_ca: @DIR@/ca.pem\n    username_from: cn\n{ocsp}"
    )
}

fn soft_listener() -> String {
    mtls_listener("mtls-soft", "    ocsp: soft_fail\n    ocsp_timeout: 1s\n")
}

fn cert(broker: &TestBroker, name: &str, serial: &[u8], ocsp_url: Option<String>) -> CertFiles {
    let spec = ClientSpec {
        serial: Some(serial.to_vec()),
        ocsp_url,
        ..ClientSpec::default()
    };
    broker.pki.client_with(name, name, &spec)
}

fn ca_key(broker: &TestBroker) -> PathBuf {
    let path = broker.dir.path().join("ca.key");
    std::fs::write(&path, broker.pki.ca_key_pem()).expect("write CA key");
    path
}

/// A responder signing with the CA's own key.
fn ca_responder(
    broker: &TestBroker,
    port: u16,
    entries: &[IndexEntry<'_>],
    next_update_minutes: Option<u32>,
) -> OcspResponder {
    let key = ca_key(broker);
    OcspResponder::start(
        broker.dir.path(),
        port,
        &broker.pki.ca_file,
        Signer {
            cert: &broker.pki.ca_file,
            key: &key,
        },
        entries,
        next_update_minutes,
    )
}

fn entry(name: &str, serial: &'static [u8], revoked: bool) -> IndexEntry<'static> {
    IndexEntry {
        serial,
        subject: client_subject(name),
        revoked,
    }
}

/// The CONNACK code for a login on `listener` with `cert`.
async fn connack(broker: &TestBroker, listener: &str, cert: &CertFiles, version: Version) -> u8 {
    let mut raw = RawClient::tls(broker.addr(listener), broker.ca_pem(), Some(cert))
        .await
        .expect("TLS handshake");
    let (_, code, _) = raw
        .connect(&Connect::new(version, &client_id("ocsp")))
        .await
        .expect("CONNACK");
    code
}

async fn ocsp_count(broker: &TestBroker, result: &str, source: &str) -> f64 {
    let samples = scrape(broker.addr("metrics")).await;
    let key = format!("warden_ocsp_checks_total{{result=\"{result}\",source=\"{source}\"}}");
    samples.get(&key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn good_gets_in_and_revoked_is_refused_in_both_modes() {
    let broker = broker("", &soft_listener()).await;
    let port = free_port();
    let url = Some(format!("http://127.0.0.1:{port}/ocsp"));
    let alice = cert(&broker, "alice", ALICE, url.clone());
    let bob = cert(&broker, "bob", BOB, url);
    let _responder = ca_responder(
        &broker,
        port,
        &[entry("alice", ALICE, false), entry("bob", BOB, true)],
        Some(10),
    );

    assert_eq!(connack(&broker, "mtls", &alice, Version::V5).await, 0);
    assert_eq!(connack(&broker, "mtls-soft", &alice, Version::V5).await, 0);
    assert_eq!(connack(&broker, "mtls", &bob, Version::V5).await, 0x87);
    assert_eq!(connack(&broker, "mtls-soft", &bob, Version::V5).await, 0x87);
    assert_eq!(connack(&broker, "mtls", &bob, Version::V311).await, 0x05);
    assert!(
        broker
            .wait_log("reason=certificate revoked (OCSP)", WAIT)
            .await,
        "the refusal names the reason: {}",
        broker.log()
    );
    assert!(broker.log().contains("CN=bob cert_fingerprint="));
    assert_eq!(ocsp_count(&broker, "good", "responder").await, 1.0);
    assert_eq!(ocsp_count(&broker, "revoked", "responder").await, 1.0);
    assert_eq!(ocsp_count(&broker, "revoked", "cache").await, 2.0);

    // A non-Rust client sees the same.
    for (cert, topic, ok) in [(&alice, "alice/m", true), (&bob, "bob/m", false)] {
        let mosq = Mosq {
            port: broker.mtls_addr().port(),
            version: "mqttv311",
            ca: &broker.pki.ca_file,
            cert: Some(cert),
            login: None,
            client_id: &client_id("mosq"),
        };
        let out = mosq.publish(topic, "hi", 1).await;
        assert_eq!(
            out.status.success(),
            ok,
            "mosquitto_pub: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn responder_down_lets_in_under_soft_fail_and_refuses_under_hard_fail() {
    let broker = broker("", &soft_listener()).await;
    let nobody = free_port();
    let alice = cert(
        &broker,
        "alice",
        ALICE,
        Some(format!("http://127.0.0.1:{nobody}/")),
    );
    let silent = SilentResponder::start();
    let erin = cert(
        &broker,
        "erin",
        ERIN,
        Some(format!("http://127.0.0.1:{}/", silent.port)),
    );

    for _ in 0..3 {
        assert_eq!(connack(&broker, "mtls-soft", &alice, Version::V5).await, 0);
    }
    assert_eq!(connack(&broker, "mtls-soft", &erin, Version::V5).await, 0);
    assert_eq!(connack(&broker, "mtls", &alice, Version::V5).await, 0x88);
    assert_eq!(connack(&broker, "mtls", &alice, Version::V311).await, 0x03);
    assert_eq!(connack(&broker, "mtls", &erin, Version::V5).await, 0x88);

    let log = broker.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("clients are let in (ocsp: soft_fail)"))
        .collect::<Vec<_>>();
    assert_eq!(
        warnings.len(),
        2,
        "one warning per responder and cause (unreachable, timeout): {warnings:#?}"
    );
    assert!(warnings.iter().any(|l| l.contains("cause=unreachable")));
    assert!(warnings.iter().any(|l| l.contains("cause=timeout")));
    assert!(
        log.contains("OCSP timeout: no answer within 1s; ocsp: hard_fail"),
        "{log}"
    );
    assert_eq!(ocsp_count(&broker, "unreachable", "responder").await, 5.0);
    assert_eq!(ocsp_count(&broker, "timeout", "responder").await, 2.0);
}

#[tokio::test]
async fn answers_are_kept_until_next_update_and_not_without_one() {
    let broker = broker("", "").await;
    let (kept_port, fresh_port) = (free_port(), free_port());
    let alice = cert(
        &broker,
        "alice",
        ALICE,
        Some(format!("http://127.0.0.1:{kept_port}/")),
    );
    let erin = cert(
        &broker,
        "erin",
        ERIN,
        Some(format!("http://127.0.0.1:{fresh_port}/")),
    );
    let mut kept = ca_responder(
        &broker,
        kept_port,
        &[entry("alice", ALICE, false)],
        Some(10),
    );
    let mut fresh = ca_responder(&broker, fresh_port, &[entry("erin", ERIN, false)], None);
    assert_eq!(connack(&broker, "mtls", &alice, Version::V5).await, 0);
    assert_eq!(connack(&broker, "mtls", &erin, Version::V5).await, 0);
    kept.stop();
    fresh.stop();

    // Alice's answer holds for ten minutes; Erin's held for one login.
    assert_eq!(connack(&broker, "mtls", &alice, Version::V5).await, 0);
    assert_eq!(connack(&broker, "mtls", &erin, Version::V5).await, 0x88);
    assert_eq!(ocsp_count(&broker, "good", "responder").await, 2.0);
    assert_eq!(ocsp_count(&broker, "good", "cache").await, 1.0);
    assert_eq!(ocsp_count(&broker, "unreachable", "responder").await, 1.0);
}

#[tokio::test]
async fn a_delegated_responder_is_believed_and_a_foreign_one_is_not() {
    let (good_port, rogue_port) = (free_port(), free_port());
    let rogue = mtls_listener(
        "mtls-rogue",
        &format!("    ocsp: hard_fail\n    ocsp_responder: http://127.0.0.1:{rogue_port}/\n"),
    );
    let broker = broker(
        &format!("    ocsp_responder: http://127.0.0.1:{good_port}/\n"),
        &rogue,
    )
    .await;
    // No AIA: the configured responder is asked.
    let alice = cert(&broker, "alice", ALICE, None);
    let delegate = broker.pki.ocsp_signer("ocsp-delegate", false);
    let foreign = broker.pki.ocsp_signer("ocsp-foreign", true);
    let entries = [entry("alice", ALICE, false)];
    let start = |port, signer: &CertFiles| {
        OcspResponder::start(
            broker.dir.path(),
            port,
            &broker.pki.ca_file,
            Signer {
                cert: &signer.cert,
                key: &signer.key,
            },
            &entries,
            None,
        )
    };
    let _good = start(good_port, &delegate);
    let _rogue = start(rogue_port, &foreign);

    assert_eq!(connack(&broker, "mtls", &alice, Version::V5).await, 0);
    assert_eq!(
        connack(&broker, "mtls-rogue", &alice, Version::V5).await,
        0x88
    );
    assert!(
        broker
            .wait_log(
                "response signed by neither the issuer nor a responder it authorized",
                WAIT
            )
            .await,
        "{}",
        broker.log()
    );
    assert_eq!(ocsp_count(&broker, "invalid", "responder").await, 1.0);
}
