//! Certificate revocation lists on an mTLS listener: a CRL rewritten on disk
//! is picked up without a restart and disconnects the live client whose
//! certificate it revokes (v5 DISCONNECT 0x87) while others stay; a SIGHUP
//! that points the listener at another list does the same; revoked
//! certificates are refused at the handshake, by Rust and non-Rust clients.

use std::time::{Duration, Instant};

use warden_e2e::certs::{CertFiles, ClientSpec};
use warden_e2e::clients::Mosq;
use warden_e2e::*;

/// The broker's CRL poll interval (`revocation::POLL_EVERY`).
const POLL: Duration = Duration::from_millis(250);

const ALICE_SERIAL: &[u8] = &[0x11, 0x01];
const BOB_SERIAL: &[u8] = &[0x11, 0x02];

struct Setup {
    broker: TestBroker,
    alice: CertFiles,
    bob: CertFiles,
}

async fn setup() -> Setup {
    let broker = TestBroker::start(BrokerOptions {
        mtls_extra: "    crl: @DIR@/ca.crl\n".into(),
        empty_crl: true,
        ..BrokerOptions::default()
    });
    for name in ["alice", "bob"] {
        broker.add_user_no_password(name).await;
        broker
            .allow(name, "publish,subscribe,receive", "${username}/#")
            .await;
    }
    let cert = |name: &str, serial: &[u8]| {
        let spec = ClientSpec {
            serial: Some(serial.to_vec()),
            ..ClientSpec::default()
        };
        broker.pki.client_with(name, name, &spec)
    };
    let alice = cert("alice", ALICE_SERIAL);
    let bob = cert("bob", BOB_SERIAL);
    Setup { broker, alice, bob }
}

/// Writes a CRL revoking `revoked` as `name` in the test's directory.
fn write_crl(broker: &TestBroker, name: &str, revoked: &[&[u8]]) -> std::path::PathBuf {
    let path = broker.dir.path().join(name);
    std::fs::write(&path, broker.pki.crl(revoked)).expect("write CRL");
    path
}

async fn connected(broker: &TestBroker, cert: &CertFiles) -> RawClient {
    let mut raw = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), Some(cert))
        .await
        .expect("TLS");
    let (_, code, _) = raw
        .connect(&Connect::new(Version::V5, &client_id("crl")))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0);
    raw
}

async fn refused_at_tls(broker: &TestBroker, cert: &CertFiles) -> bool {
    let attempt = async {
        let mut raw = RawClient::tls(broker.mtls_addr(), broker.ca_pem(), Some(cert)).await?;
        raw.connect(&Connect::new(Version::V5, &client_id("crl")))
            .await
            .map(|(_, code, _)| code)
    };
    matches!(attempt.await, Err(RawError::Tls(_)) | Err(RawError::Closed))
}

/// Waits for the DISCONNECT that ends `raw`; its reason and when it came.
async fn disconnected(raw: &mut RawClient, wait: Duration) -> (Option<u8>, Instant) {
    let ending = raw.ending(wait).await;
    let code = ending.packets.iter().find_map(|p| match p {
        Incoming::Disconnect { code, .. } => Some(*code),
        _ => None,
    });
    (code, Instant::now())
}

#[tokio::test]
async fn a_rewritten_crl_disconnects_the_revoked_client_and_keeps_the_other() {
    let Setup { broker, alice, bob } = setup().await;
    let mut a = connected(&broker, &alice).await;
    let mut b = connected(&broker, &bob).await;

    let written = Instant::now();
    write_crl(&broker, "ca.crl", &[ALICE_SERIAL]);
    let (code, at) = disconnected(&mut a, POLL + Duration::from_secs(3)).await;
    assert_eq!(
        code,
        Some(0x87),
        "v5 DISCONNECT 0x87 for the revoked client"
    );
    let took = at - written;
    // Noticed at the next poll, then applied: within a second of the reload.
    assert!(
        took <= POLL + Duration::from_secs(1),
        "disconnected {took:?} after the CRL was written"
    );
    assert!(
        broker
            .wait_log("certificate revocation lists applied", WAIT)
            .await
    );

    // Bob is untouched and still served.
    assert_eq!(
        b.publish_acked(Publish::new("bob/t", b"still here", 1))
            .await,
        0
    );
    assert!(
        refused_at_tls(&broker, &alice).await,
        "alice can no longer connect"
    );
    let _again = connected(&broker, &bob).await;
    assert!(
        broker.wait_log("handshake failed", WAIT).await,
        "the refused handshake is logged with its reason"
    );
}

#[tokio::test]
async fn sighup_with_another_crl_file_applies_it() {
    let Setup { broker, alice, bob } = setup().await;
    let mut b = connected(&broker, &bob).await;
    let mut a = connected(&broker, &alice).await;
    write_crl(&broker, "bob.crl", &[BOB_SERIAL]);
    let config = std::fs::read_to_string(&broker.config).expect("config");
    let config = config.replace("/ca.crl", "/bob.crl");
    std::fs::write(&broker.config, config).expect("rewrite config");
    broker.signal("HUP");
    let (code, _) = disconnected(&mut b, Duration::from_secs(5)).await;
    assert_eq!(code, Some(0x87));
    assert_eq!(a.publish_acked(Publish::new("alice/t", b"ok", 1)).await, 0);
    assert!(refused_at_tls(&broker, &bob).await);
}

#[tokio::test]
async fn mosquitto_pub_with_a_revoked_certificate_is_refused() {
    let Setup { broker, alice, bob } = setup().await;
    write_crl(&broker, "ca.crl", &[ALICE_SERIAL]);
    assert!(broker.wait_log("CRL file changed; reloaded", WAIT).await);
    for (cert, ok) in [(&alice, false), (&bob, true)] {
        let mosq = Mosq {
            port: broker.mtls_addr().port(),
            version: "mqttv311",
            ca: &broker.pki.ca_file,
            cert: Some(cert),
            login: None,
            client_id: &client_id("mosq"),
        };
        let topic = if ok { "bob/m" } else { "alice/m" };
        let out = mosq.publish(topic, "hi", 1).await;
        assert_eq!(
            out.status.success(),
            ok,
            "mosquitto_pub: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
