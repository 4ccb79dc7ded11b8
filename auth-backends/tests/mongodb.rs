//! Runs the conformance suite against a real MongoDB-wire server, plus the
//! MongoDB specifics: the polling feed and its delay, login latency, an
//! unreachable server, an outage through a proxy, racing duplicate creates.
//!
//! The server is the one `WARDEN_TEST_MONGODB_URL` names, by default the
//! CongoDB test server that `scripts/mongo-test-server` starts on port
//! 27018. It is standalone, so these tests take the no-transaction path and
//! the polling feed. Every test works in its own database and drops it.

mod suite;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::mongo_db::{
    base_url, drop_database, open_store, require_server, server_addr, url_for, url_via,
};
use warden_auth::mongodb::MongoStore;
use warden_auth::{
    AdminStore, ChangeFeed, NewUser, PrincipalKey, Store, StoreConfig, StoreErrorKind,
};
use warden_policy::{ActionKind, Effect, Subject};

fn user(name: &str, roles: &[&str]) -> NewUser {
    NewUser {
        username: name.to_owned(),
        password_hash: Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".to_owned()),
        superuser: false,
        enabled: true,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        cert_fingerprint: None,
    }
}

#[tokio::test]
async fn conformance() {
    let name = support::unique_name("warden_conf");
    let store = open_store(&name, Duration::from_secs(5)).await;
    assert_eq!(store.backend(), "mongodb");
    assert!(
        !store.uses_transactions(),
        "the test server is standalone: the fallback path is under test"
    );
    store.ping().await.unwrap();
    let again = store.migrate().await.unwrap(); // a second run is a no-op
    assert!(again.applied.is_empty(), "{again:?}");
    suite::run_all(Arc::new(store)).await;
    drop_database(&name).await;
}

#[tokio::test]
async fn open_through_config_and_indexes_exist() {
    require_server().await;
    let name = support::unique_name("warden_cfg");
    let config = StoreConfig::Mongodb {
        url: url_for(&name),
        timeout: Some(Duration::from_secs(5)),
    };
    let store = warden_auth::open(&config).await.unwrap();
    assert_eq!(store.backend(), "mongodb");
    let client = mongodb::Client::with_uri_str(base_url()).await.unwrap();
    let users = client
        .database(&name)
        .collection::<mongodb::bson::Document>("users");
    let indexes = users.list_index_names().await.unwrap();
    assert!(
        indexes.iter().any(|i| i == "username_unique"),
        "{indexes:?}"
    );
    drop_database(&name).await;
}

#[tokio::test]
async fn polling_feed_sees_a_write_within_a_second() {
    let name = support::unique_name("warden_feed");
    let writer = open_store(&name, Duration::from_secs(5)).await;
    let reader = Arc::new(open_store(&name, Duration::from_secs(5)).await);
    let ChangeFeed::Poll(every) = reader.changes() else {
        panic!("a standalone server has no change streams: the feed must poll");
    };
    assert!(every <= Duration::from_secs(1));
    let start_version = reader.policy_version().await.unwrap();
    // The broker's side: poll the version at the feed's interval.
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let poller = {
        let reader = Arc::clone(&reader);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                if reader.policy_version().await.unwrap() > start_version {
                    let _ = seen_tx.send(Instant::now());
                    return;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(120)).await;
    let written = Instant::now();
    writer.create_role("ops").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(3), seen_rx)
        .await
        .expect("the poller saw no new version")
        .unwrap();
    let delay = seen.saturating_duration_since(written);
    println!("mongodb change-feed delay (poll every {every:?}): {delay:?}");
    assert!(delay < Duration::from_secs(1), "took {delay:?}");
    poller.await.unwrap();
    assert_eq!(reader.list_roles().await.unwrap().len(), 1);
    drop_database(&name).await;
}

#[tokio::test]
async fn login_path_latency() {
    let name = support::unique_name("warden_lat");
    let store = open_store(&name, Duration::from_secs(5)).await;
    store
        .create_user(user("alice", &["dev", "ops"]))
        .await
        .unwrap();
    for (i, subject) in [
        Subject::User("alice".into()),
        Subject::Role("dev".into()),
        Subject::Role("ops".into()),
        Subject::Everyone,
    ]
    .into_iter()
    .cycle()
    .take(20)
    .enumerate()
    {
        let rule = suite::spec(
            Effect::Allow,
            subject,
            &[ActionKind::Publish],
            &format!("t/{i}/#"),
        );
        store.add_rule(rule).await.unwrap();
    }
    let mut samples = Vec::with_capacity(500);
    for _ in 0..500 {
        let started = Instant::now();
        let found = store.user("alice").await.unwrap().expect("alice");
        let key = PrincipalKey {
            username: Some(found.username),
            roles: found.roles,
        };
        let rules = store.rules_for(&key).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(rules.0.len(), 20);
    }
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    println!(
        "mongodb login path (user + rules_for, argon2 excluded, 500 runs): p50 {} us, p99 {} us",
        p50.as_micros(),
        p99.as_micros()
    );
    drop_database(&name).await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_within_the_timeout() {
    let started = Instant::now();
    let config = StoreConfig::Mongodb {
        url: "mongodb://127.0.0.1:1/warden?directConnection=true".to_owned(),
        timeout: Some(Duration::from_secs(1)),
    };
    let err = warden_auth::open(&config)
        .await
        .err()
        .expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// Cut the connection under a working store: calls fail as Unavailable
/// within the timeout; after the restore the driver reconnects and nothing
/// written before the cut is lost.
#[tokio::test]
async fn outage_through_a_proxy_and_recovery() {
    require_server().await;
    let name = support::unique_name("warden_out");
    let proxy = support::proxy::Proxy::start(server_addr()).await;
    let timeout = Duration::from_secs(1);
    let store = MongoStore::open(&url_via(proxy.addr, &name), timeout)
        .await
        .unwrap();
    store.create_user(user("kim", &["dev"])).await.unwrap();
    let before = store.policy_version().await.unwrap();

    proxy.cut();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.user("kim").await.expect_err("store is cut off");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        let err = store
            .create_role("ops")
            .await
            .expect_err("store is cut off");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        assert!(
            started.elapsed() < timeout * 3,
            "two calls took {:?}",
            started.elapsed()
        );
    }

    proxy.restore();
    let restored = Instant::now();
    let kim = loop {
        match store.user("kim").await {
            Ok(found) => break found.expect("kim survived the outage"),
            Err(e) if restored.elapsed() < Duration::from_secs(15) => {
                assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery after 15 s: {e}"),
        }
    };
    println!("mongodb recovered {:?} after restore", restored.elapsed());
    assert_eq!(kim.roles, ["dev"]);
    assert!(store.policy_version().await.unwrap() >= before);
    store.create_role("ops").await.unwrap();
    assert_eq!(store.list_roles().await.unwrap().len(), 2);
    drop(proxy);
    drop_database(&name).await;
}

/// Duplicate detection does not rely on the server's unique indexes: of
/// several racing creates of one name exactly one wins.
#[tokio::test]
async fn racing_creates_give_one_winner() {
    let name = support::unique_name("warden_race");
    let store = Arc::new(open_store(&name, Duration::from_secs(5)).await);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create_role("ops").await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.list_roles().await.unwrap().len(), 1);
    drop_database(&name).await;
}
