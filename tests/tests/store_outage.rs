//! Store outage: new logins fail closed with "server unavailable" (v3.1.1
//! 0x03, v5 0x88) while connected clients keep their compiled policy. The
//! SQLite file is truncated under the running broker, so every query fails.

use std::time::Duration;

use warden_e2e::*;

#[tokio::test]
async fn broken_store_refuses_new_logins_and_keeps_sessions() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "pw", "t/#").await;
    let mut live = broker
        .login(Version::V5, &client_id("live"), "alice", "pw")
        .await;
    assert_eq!(live.subscribe("t/#", 1).await, 1);

    let db = broker.dir.path().join("data").join("warden.db");
    for suffix in ["", "-wal", "-shm"] {
        let path = db.with_file_name(format!("warden.db{suffix}"));
        if path.exists() {
            std::fs::write(&path, b"this is not a database").expect("break the store");
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for (version, want) in [(Version::V311, 0x03), (Version::V5, 0x88)] {
        let mut c = broker.raw().await;
        let connect = Connect::new(version, &client_id("new")).login("alice", "pw");
        let (_, code, _) = c.connect(&connect).await.expect("CONNACK");
        assert_eq!(code, want, "{version:?}: new login while the store is down");
    }

    assert_eq!(
        live.publish_acked(Publish::new("t/x", b"still", 1)).await,
        0,
        "a connected client keeps its compiled policy"
    );
    assert_eq!(
        live.next_publish(WAIT).await.expect("delivered").payload,
        b"still"
    );
}
