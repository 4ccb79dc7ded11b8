//! Runs the conformance suite against the machine's MariaDB/MySQL server, plus
//! the MySQL specifics: the polled change feed and its delay, an unreachable
//! server, an outage through a cut proxy, exact name comparison, the name
//! length limit, and the login-path latency.
//!
//! Each test creates its own database (`support::unique_name`) on the server
//! named by `WARDEN_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`)
//! and drops it afterwards, even when the test fails.

mod suite;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::mysql_db::{base_url, server_addr, split_url, TestDb};
use warden_auth::{open, AdminStore, NewUser, PrincipalKey, StoreConfig, StoreErrorKind};
use warden_policy::{ActionKind, Effect, Subject};

fn new_user(name: &str, roles: &[&str]) -> NewUser {
    NewUser {
        username: name.to_owned(),
        password_hash: Some("$argon2id$fake".to_owned()),
        superuser: false,
        enabled: true,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        cert_fingerprint: None,
    }
}

#[tokio::test]
async fn conformance() {
    let db = TestDb::create().await;
    let store = open(&db.config(None)).await.expect("open the MySQL store");
    assert_eq!(store.backend(), "mysql");
    store.ping().await.unwrap();
    let again = store.migrate().await.unwrap(); // a second run is a no-op
    assert!(again.applied.is_empty(), "{again:?}");
    suite::run_all(store).await;
}

/// The broker polls; measure how long a write takes to show up in a poll
/// loop running at the advertised interval, from a second handle.
#[tokio::test]
async fn polled_feed_sees_a_write_within_a_second() {
    let db = TestDb::create().await;
    let writer = open(&db.config(None)).await.unwrap();
    let reader = open(&db.config(None)).await.unwrap();
    let every = match reader.changes() {
        warden_auth::ChangeFeed::Poll(every) => every,
        other => panic!("mysql should poll, got {other:?}"),
    };
    assert!(every <= Duration::from_secs(1), "{every:?}");
    let mut delays = Vec::new();
    for round in 0..4u64 {
        let before = reader.policy_version().await.unwrap();
        let poller = {
            let reader = Arc::clone(&reader);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if reader.policy_version().await.unwrap() > before {
                        return Instant::now();
                    }
                }
            })
        };
        // Spread the writes over the poll phase.
        tokio::time::sleep(every / 4 * (round as u32 + 1)).await;
        let written = Instant::now();
        writer.create_role(&format!("r{round}")).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(2), poller)
            .await
            .expect("the poller saw the write")
            .unwrap();
        delays.push(seen.saturating_duration_since(written));
    }
    let worst = delays.iter().max().copied().unwrap_or_default();
    println!("mysql change-feed delay (poll every {every:?}): {delays:?}, worst {worst:?}");
    assert!(worst < Duration::from_secs(1), "{delays:?}");
}

#[tokio::test]
async fn unreachable_server_is_unavailable_within_the_timeout() {
    let config = StoreConfig::Mysql {
        url: "mysql://root@127.0.0.1:1/test".to_owned(),
        pool: Some(2),
        timeout: Some(Duration::from_secs(1)),
    };
    let started = Instant::now();
    let err = open(&config).await.err().expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bad_url_is_invalid() {
    let config = StoreConfig::Mysql {
        url: "postgres://127.0.0.1/x".to_owned(),
        pool: None,
        timeout: None,
    };
    let err = open(&config).await.err().expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}

/// Names compare byte for byte: no case folding, no trailing-space padding.
#[tokio::test]
async fn names_are_exact_and_bounded() {
    let db = TestDb::create().await;
    let store = open(&db.config(None)).await.unwrap();
    store
        .create_user(new_user("alice", &["ops"]))
        .await
        .unwrap();
    store
        .add_rule(suite::spec(
            Effect::Allow,
            Subject::User("alice".into()),
            &[ActionKind::Publish],
            "alice/#",
        ))
        .await
        .unwrap();
    for other in ["alice ", "ALICE", "Alice"] {
        assert_eq!(store.user(other).await.unwrap(), None, "{other:?}");
        let key = PrincipalKey {
            username: Some(other.to_owned()),
            roles: vec!["ops ".to_owned(), "OPS".to_owned()],
        };
        assert!(
            store.rules_for(&key).await.unwrap().0.is_empty(),
            "{other:?}"
        );
    }
    store.create_user(new_user("alice ", &[])).await.unwrap();
    store.create_user(new_user("ALICE", &[])).await.unwrap();
    store
        .create_user(new_user("ünïcødé 🦀", &["ops"]))
        .await
        .unwrap();
    let unicode = store.user("ünïcødé 🦀").await.unwrap().expect("stored");
    assert_eq!(unicode.roles, ["ops"]);

    let longest = "é".repeat(warden_auth::mysql::MAX_NAME_BYTES / 2);
    store.create_user(new_user(&longest, &[])).await.unwrap();
    let too_long = format!("{longest}x");
    let before = store.policy_version().await.unwrap();
    let err = store
        .create_user(new_user(&too_long, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    let err = store.grant(&too_long, "alice").await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    assert_eq!(store.policy_version().await.unwrap(), before);
}

/// Through a proxy: work, cut (calls fail fast as Unavailable), restore
/// (the pool reconnects), and nothing written before the cut is lost.
#[tokio::test]
async fn outage_through_a_proxy() {
    let db = TestDb::create().await;
    let proxy = support::proxy::Proxy::start(server_addr()).await;
    let (server, _) = split_url(&base_url());
    let user_part = server
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map_or(String::new(), |(user, _)| format!("{user}@"));
    let config = StoreConfig::Mysql {
        url: db.url_on(&format!("mysql://{user_part}{}", proxy.addr)),
        pool: Some(2),
        timeout: Some(Duration::from_secs(1)),
    };
    let store = open(&config).await.unwrap();
    store.create_user(new_user("kim", &["ops"])).await.unwrap();
    let version = store.policy_version().await.unwrap();

    proxy.cut();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let errors = [
            timed(store.user("kim")).await,
            timed(store.policy_version()).await,
            timed(store.create_role("during")).await,
            timed(store.ping()).await,
        ];
        for (took, err) in errors {
            let err = err.expect("calls fail while the store is cut off");
            assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
            // The timeout is 1 s: a call may use all of it, never more.
            assert!(took < Duration::from_millis(1500), "a call took {took:?}");
            slowest = slowest.max(took);
        }
    }
    println!("mysql calls while cut off: slowest failure after {slowest:?}");

    proxy.restore();
    let started = Instant::now();
    let mut tries = 0;
    let kim = loop {
        tries += 1;
        match store.user("kim").await {
            Ok(kim) => break kim,
            Err(e) if started.elapsed() < Duration::from_secs(5) => {
                assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery after the proxy came back: {e}"),
        }
    };
    println!(
        "mysql recovered after restore in {:?} ({tries} tries)",
        started.elapsed()
    );
    let kim = kim.expect("kim survived the outage");
    assert_eq!(kim.roles, ["ops"]);
    assert_eq!(
        store.policy_version().await.unwrap(),
        version,
        "nothing applied while cut"
    );
    assert!(store
        .list_roles()
        .await
        .unwrap()
        .iter()
        .all(|r| r.name != "during"));
    store.create_role("after").await.unwrap();
    assert!(store.policy_version().await.unwrap() > version);
}

/// How long a store call took, and its error if it failed.
async fn timed<T>(
    call: impl std::future::Future<Output = Result<T, warden_auth::StoreError>>,
) -> (Duration, Option<warden_auth::StoreError>) {
    let started = Instant::now();
    let result = call.await;
    (started.elapsed(), result.err())
}

/// Login path without argon2: `user()` then `rules_for()` with its roles.
#[tokio::test]
async fn login_path_latency() {
    let db = TestDb::create().await;
    let store = open(&db.config(None)).await.unwrap();
    seed_login_policy(store.as_ref()).await;
    let mut samples = Vec::with_capacity(500);
    for i in 0..550 {
        let started = Instant::now();
        let user = store.user("dana").await.unwrap().expect("dana exists");
        let key = PrincipalKey {
            username: Some(user.username),
            roles: user.roles,
        };
        let rules = store.rules_for(&key).await.unwrap();
        let took = started.elapsed();
        assert_eq!(rules.0.len(), 8);
        if i >= 50 {
            samples.push(took); // the first 50 warm the pool and statement cache
        }
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "mysql login path (user + rules_for, argon2 excluded, {} runs): p50 {} us, p99 {} us",
        samples.len(),
        pct(50).as_micros(),
        pct(99).as_micros()
    );
    assert!(pct(50) < Duration::from_millis(50), "p50 {:?}", pct(50));
}

/// dana in three roles; two rules each for her, her roles and everyone,
/// plus rules for others that must not be returned.
async fn seed_login_policy(store: &dyn AdminStore) {
    store
        .create_user(new_user("dana", &["ops", "dev", "audit"]))
        .await
        .unwrap();
    store
        .create_user(new_user("eve", &["sales"]))
        .await
        .unwrap();
    let subjects = [
        Subject::User("dana".into()),
        Subject::Role("ops".into()),
        Subject::Role("dev".into()),
        Subject::Everyone,
        Subject::User("eve".into()),
        Subject::Role("sales".into()),
    ];
    for subject in subjects {
        for pattern in ["a/#", "b/+/c"] {
            let rule = suite::spec(
                Effect::Allow,
                subject.clone(),
                &[ActionKind::Publish],
                pattern,
            );
            store.add_rule(rule).await.unwrap();
        }
    }
}
