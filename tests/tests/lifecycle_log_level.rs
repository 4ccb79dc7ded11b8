//! `log.level` applies live on SIGHUP when `RUST_LOG` is not set, and the
//! built-in quieting directives stay under it (no rustls SNI warning even
//! at debug). A test binary of its own: the broker here runs without
//! `RUST_LOG`, which the harness otherwise always sets (and which decides
//! over the config's level; see `observe_logs.rs` for how it adds to it).

use std::time::Duration;

use warden_e2e::clients::Mosq;
use warden_e2e::lifecycle::{edit_config, without_rust_log};
use warden_e2e::*;

/// Connects and disconnects a client; at debug level the broker logs
/// "connection ended" for it.
async fn connect_and_leave(broker: &TestBroker) {
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    c.disconnect().await;
}

#[tokio::test]
async fn a_reloaded_log_level_applies_at_once() {
    let bin_dir = tempfile::tempdir().expect("tempdir");
    without_rust_log(bin_dir.path());
    let mut broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "r/#").await;

    connect_and_leave(&broker).await;
    tokio::time::sleep(QUIET).await;
    assert!(
        !broker.log().contains("connection ended"),
        "info level: no debug lines yet:\n{}",
        broker.log()
    );

    edit_config(&broker, |text| text + "log: { level: debug }\n");
    broker.signal("HUP");
    assert!(
        broker.wait_log("config reloaded", WAIT).await,
        "{}",
        broker.log()
    );
    assert!(
        broker.log().contains("log_level=\"changed\""),
        "{}",
        broker.log()
    );
    connect_and_leave(&broker).await;
    assert!(
        broker
            .wait_log("connection ended", Duration::from_secs(5))
            .await,
        "debug lines after the reload:\n{}",
        broker.log()
    );
    // mosquitto_pub -h 127.0.0.1 sends the address as SNI: rustls would
    // warn; the built-in filter keeps it quiet at debug too.
    let ca = broker.dir.path().join("ca.pem");
    let id = client_id("sni");
    let out = Mosq::with_password(broker.tls_addr().port(), &ca, ("alice", "pw"), &id)
        .publish("r/x", "hello", 0)
        .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        broker.wait_log(&format!("client_id=\"{id}\""), WAIT).await,
        "{}",
        broker.log()
    );
    tokio::time::sleep(QUIET).await;
    assert!(
        !broker.log().contains("Illegal SNI"),
        "rustls stays quiet at debug:\n{}",
        broker.log()
    );
    assert!(broker.wait_exit(QUIET).is_none(), "still running");
}
