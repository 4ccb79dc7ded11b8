//! Logins under load (issue 13, Defence).
//!
//! - Many concurrent first logins of one user share one argon2
//!   verification (single flight): all succeed, and
//!   `warden_password_verifications_total{kind="argon2"}` moves by one.
//! - A device secret from `warden user add NAME --generate-secret` (printed
//!   once) logs in, on SQLite and on a networked store, checked by HMAC
//!   (`kind="device_secret"`) with no argon2 at all; a wrong one is refused.

use std::collections::HashMap;

use warden_e2e::http::{scrape, value};
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::*;

const ARGON2: &str = "warden_password_verifications_total{kind=\"argon2\"}";
const DEVICE: &str = "warden_password_verifications_total{kind=\"device_secret\"}";
const SHARED: &str = "warden_password_verifications_shared_total";

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    value(after, key) - value(before, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_logins_of_one_user_share_one_verification() {
    const N: usize = 150;
    let broker = TestBroker::start(BrokerOptions {
        metrics: true,
        // The TLS handshakes of a debug build on a busy machine come first,
        // and the connect timeout runs from the accept.
        connect_timeout: Some("120s"),
        ..BrokerOptions::default()
    });
    let m = broker.addr("metrics");
    broker
        .user_with_rights("fleet", "fleet-pw", "fleet/#")
        .await;
    let before = scrape(m).await;
    // Connect first, then send every CONNECT at once: the logins are
    // verified together, not one after another.
    let clients = futures::future::join_all((0..N).map(|_| broker.raw())).await;
    let logins: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut raw)| {
            let c = Connect::new(Version::V5, &client_id(&format!("dev{i}")))
                .login("fleet", "fleet-pw");
            tokio::spawn(async move { raw.connect(&c).await.map(|(_, code, _)| (code, raw)) })
        })
        .collect();
    let mut held = Vec::with_capacity(N);
    for login in logins {
        let (code, raw) = login.await.expect("join").expect("CONNACK");
        assert_eq!(code, 0);
        held.push(raw);
    }
    let after = scrape(m).await;
    assert_eq!(
        delta(&before, &after, ARGON2),
        1.0,
        "one verification for {N} logins"
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "warden_authentications_total{result=\"success\",reason=\"ok\"}"
        ),
        N as f64
    );
    // The ones that came while it ran waited for it; the rest found the
    // verified login in the cache.
    assert!(delta(&before, &after, SHARED) <= (N - 1) as f64);
    assert_eq!(value(&after, "warden_password_verifications_waiting"), 0.0);
}

/// `warden user add NAME --generate-secret`: the secret from its output.
async fn add_device(broker: &TestBroker, name: &str) -> String {
    let out = broker
        .cli_ok(&[
            "user",
            "add",
            name,
            "--generate-secret",
            "--role",
            "devices",
        ])
        .await;
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret in {out:?}"))
        .trim()
        .to_owned();
    assert_eq!(secret.len(), 43, "256 bits in base64url: {secret}");
    secret
}

async fn device_secrets_log_in(broker: TestBroker) {
    let m = broker.addr("metrics");
    let s1 = add_device(&broker, "sensor-1").await;
    let s2 = add_device(&broker, "sensor-2").await;
    broker
        .acl(&[
            "--role",
            "devices",
            "--allow",
            "publish,subscribe,receive",
            "dev/#",
        ])
        .await;
    assert_ne!(s1, s2);
    // JSON output carries it too, once.
    let json = broker
        .cli_ok(&["--json", "user", "add", "sensor-3", "--generate-secret"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["secret"].as_str().map(str::len), Some(43), "{json}");
    // `user show` never shows it.
    let shown = broker.cli_ok(&["user", "show", "sensor-1"]).await;
    assert!(!shown.contains(&s1));

    let before = scrape(m).await;
    let mut one = broker
        .login(Version::V5, &client_id("s1"), "sensor-1", &s1)
        .await;
    let mut two = broker
        .login(Version::V311, &client_id("s2"), "sensor-2", &s2)
        .await;
    assert_eq!(two.subscribe("dev/1", 1).await, 1);
    assert_eq!(
        one.publish_acked(Publish::new("dev/1", b"t=21", 1)).await,
        0
    );
    assert_eq!(
        two.next_publish(WAIT).await.expect("delivered").payload,
        b"t=21"
    );
    // Another device's secret is not this one's.
    let (_, _, code) = warden_e2e::sessions::try_connect(
        &broker,
        &Connect::new(Version::V5, &client_id("x")).login("sensor-1", &s2),
    )
    .await;
    assert_eq!(code, 0x86);
    let after = scrape(m).await;
    assert_eq!(delta(&before, &after, DEVICE), 3.0);
    assert_eq!(
        delta(&before, &after, ARGON2),
        0.0,
        "no argon2 for a device secret"
    );

    // A new secret replaces the old one.
    let out = broker
        .cli_ok(&["user", "passwd", "sensor-1", "--generate-secret"])
        .await;
    let s1b = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("a new secret")
        .trim()
        .to_owned();
    assert_ne!(s1, s1b);
    let (_, _, code) = warden_e2e::sessions::try_connect(
        &broker,
        &Connect::new(Version::V5, &client_id("old")).login("sensor-1", &s1),
    )
    .await;
    assert_eq!(code, 0x86, "the old secret is gone");
    let _new = broker
        .login(Version::V5, &client_id("new"), "sensor-1", &s1b)
        .await;
}

#[tokio::test]
async fn device_secrets_log_in_on_sqlite() {
    device_secrets_log_in(TestBroker::start(BrokerOptions {
        metrics: true,
        ..BrokerOptions::default()
    }))
    .await;
}

#[tokio::test]
async fn device_secrets_log_in_on_postgres() {
    let store = TestStore::new(Backend::Postgres, None, "5s");
    device_secrets_log_in(TestBroker::start(BrokerOptions {
        metrics: true,
        store: Some(store.yaml.clone()),
        ..BrokerOptions::default()
    }))
    .await;
}

#[tokio::test]
async fn device_secrets_log_in_on_redis() {
    let store = TestStore::new(Backend::Redis, None, "5s");
    device_secrets_log_in(TestBroker::start(BrokerOptions {
        metrics: true,
        store: Some(store.yaml.clone()),
        ..BrokerOptions::default()
    }))
    .await;
}
