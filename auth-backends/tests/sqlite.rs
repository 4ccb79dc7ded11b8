//! Runs the conformance suite against a real SQLite file, plus the SQLite
//! specifics: opening failures, timeouts, two handles on one file.

mod suite;

use std::time::Duration;

use warden_auth::{open, StoreConfig, StoreErrorKind};

fn config_in(dir: &tempfile::TempDir) -> StoreConfig {
    StoreConfig::sqlite(dir.path().join("warden.db"))
}

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&config_in(&dir)).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    store.ping().await.unwrap();
    let again = store.migrate().await.unwrap(); // a second run is a no-op
    assert!(again.applied.is_empty(), "{again:?}");
    suite::run_all(store).await;
}

#[tokio::test]
async fn sqlite_polls_for_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&config_in(&dir)).await.unwrap();
    match store.changes() {
        warden_auth::ChangeFeed::Poll(every) => assert!(every <= Duration::from_secs(1)),
        other => panic!("sqlite should poll, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_handle_sees_writes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(&config_in(&dir)).await.unwrap();
    let reader = open(&config_in(&dir)).await.unwrap();
    let before = reader.policy_version().await.unwrap();
    writer.create_role("ops").await.unwrap();
    assert!(reader.policy_version().await.unwrap() > before);
    assert_eq!(reader.list_roles().await.unwrap().len(), 1);
}

#[tokio::test]
async fn missing_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::sqlite(dir.path().join("no/such/dir/warden.db"));
    let err = open(&config).await.err().expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn bad_config_is_invalid() {
    let config = StoreConfig::sqlite("");
    let err = open(&config).await.err().expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}

#[tokio::test]
async fn not_a_database_is_not_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x55u8; 8192]).unwrap();
    let err = open(&StoreConfig::sqlite(&path))
        .await
        .err()
        .expect("open must fail");
    assert!(
        matches!(
            err.kind(),
            StoreErrorKind::Internal | StoreErrorKind::Unavailable
        ),
        "{err}"
    );
}

/// A writer holding the write lock past the timeout makes other calls time
/// out as Unavailable instead of hanging.
#[tokio::test]
async fn locked_database_times_out_as_unavailable() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.db");
    let config = StoreConfig::Sqlite {
        path: path.clone(),
        timeout: Some(Duration::from_millis(300)),
    };
    let store = open(&config).await.unwrap();
    let url = format!("sqlite://{}", path.display());
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = store
        .create_role("ops")
        .await
        .expect_err("write must fail while locked");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    store.create_role("ops").await.unwrap();
}

#[tokio::test]
async fn migrate_lists_each_migration_it_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = warden_auth::connect(&config_in(&dir)).await.unwrap();
    let first = store.migrate().await.unwrap();
    assert_eq!(
        first.applied,
        ["0001 init", "0002 cert fingerprint", "0003 admin changes"]
    );
    assert_eq!(first.version, Some(3));
    let second = store.migrate().await.unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(second.version, Some(3));
}
