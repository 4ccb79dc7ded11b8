//! Runs the conformance suite against the machine's PostgreSQL server, plus
//! the PostgreSQL specifics: the LISTEN/NOTIFY feed, unreachable servers, an
//! outage through a cut proxy, rule ids, and login-path latency.
//!
//! Each test makes its own database (`CREATE DATABASE <unique>`) on the
//! server named by WARDEN_TEST_POSTGRES_URL (default: the local `postgres`
//! database) and drops it afterwards, also when the test fails.

mod suite;
mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::pg_db::{admin_server_addr, config, url_for, PgDb};
use tokio::sync::mpsc;
use warden_auth::{
    open, AdminStore, ChangeFeed, NewUser, PolicySnapshot, PrincipalKey, StoreErrorKind,
};
use warden_policy::{ActionKind, Effect, PolicyVersion, RuleId, Subject};

/// Run `body` with a fresh database, dropped afterwards even on panic.
async fn with_db<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = PgDb::create(prefix).await;
    body(db.name.clone()).await;
}

async fn open_db(db: &str, timeout: Duration) -> Arc<dyn AdminStore> {
    open(&config(url_for(db, None), timeout))
        .await
        .expect("open postgres store")
}

fn push_feed(store: &dyn AdminStore) -> mpsc::Receiver<PolicyVersion> {
    match store.changes() {
        ChangeFeed::Push(rx) => rx,
        other => panic!("postgres should push changes, got {other:?}"),
    }
}

/// Wait until the feed reports `want` (or later), returning how long it took.
async fn await_version(
    rx: &mut mpsc::Receiver<PolicyVersion>,
    want: PolicyVersion,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(v)) if v >= want => return started.elapsed(),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("change feed ended"),
            Err(_) => panic!("version {want:?} not seen within {limit:?}"),
        }
    }
}

fn rule(subject: Subject, pattern: &str) -> warden_policy::RuleSpec {
    suite::spec(Effect::Allow, subject, &[ActionKind::Publish], pattern)
}

fn user(name: &str, roles: &[&str]) -> NewUser {
    NewUser {
        username: name.to_owned(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        superuser: false,
        enabled: true,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        cert_fingerprint: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test]
async fn conformance() {
    with_db("warden_pg_suite", |db| async move {
        let store = open_db(&db, Duration::from_secs(5)).await;
        assert_eq!(store.backend(), "postgres");
        store.ping().await.unwrap();
        let again = store.migrate().await.unwrap(); // a second run is a no-op
        assert!(again.applied.is_empty(), "{again:?}");
        suite::run_all(store).await;
    })
    .await;
}

#[tokio::test]
async fn feed_delivers_each_write_within_a_second() {
    with_db("warden_pg_feed", |db| async move {
        let store = open_db(&db, Duration::from_secs(5)).await;
        let mut rx = push_feed(store.as_ref());
        let now = store.policy_version().await.unwrap();
        await_version(&mut rx, now, Duration::from_secs(5)).await;
        let mut delays = Vec::new();
        for i in 0..20 {
            store.create_role(&format!("r{i}")).await.unwrap();
            let started = Instant::now();
            let want = store.policy_version().await.unwrap();
            await_version(&mut rx, want, Duration::from_secs(1)).await;
            delays.push(started.elapsed());
        }
        delays.sort();
        println!(
            "postgres change feed delay after commit: p50 {:?}, max {:?} (20 writes)",
            percentile(&delays, 0.5),
            percentile(&delays, 1.0)
        );
        // A failed write sends nothing and leaves the version alone.
        let before = store.policy_version().await.unwrap();
        assert!(store.create_role("r0").await.is_err());
        assert_eq!(store.policy_version().await.unwrap(), before);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), rx.recv())
                .await
                .is_err(),
            "a rolled-back write must not notify"
        );
    })
    .await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_within_the_timeout() {
    let started = Instant::now();
    let url = url_for("nothing", Some("127.0.0.1:1"));
    let err = open(&config(url, Duration::from_secs(1)))
        .await
        .err()
        .expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    println!("unreachable postgres: {err} after {:?}", started.elapsed());
}

#[tokio::test]
async fn bad_urls_are_refused() {
    let wrong_scheme = config(
        "mysql://root@127.0.0.1/x".to_owned(),
        Duration::from_secs(1),
    );
    let err = open(&wrong_scheme).await.err().expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
    let bad_option = config(
        format!("{}?sslmode=sometimes", url_for("x", None)),
        Duration::from_secs(1),
    );
    let err = open(&bad_option).await.err().expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Invalid, "{err}");
}

#[tokio::test]
async fn rule_ids_are_never_reused() {
    with_db("warden_pg_ids", |db| async move {
        let store = open_db(&db, Duration::from_secs(5)).await;
        let first = store.add_rule(rule(Subject::Everyone, "a")).await.unwrap();
        store.remove_rule(first).await.unwrap();
        let second = store.add_rule(rule(Subject::Everyone, "b")).await.unwrap();
        assert!(second > first);
        store.import(PolicySnapshot::default()).await.unwrap();
        let third = store.add_rule(rule(Subject::Everyone, "c")).await.unwrap();
        assert!(third > second, "{third} after {second}");
        let imported = PolicySnapshot {
            rules: vec![rule(Subject::Everyone, "d").with_id(RuleId(1000))],
            ..PolicySnapshot::default()
        };
        store.import(imported).await.unwrap();
        let next = store.add_rule(rule(Subject::Everyone, "e")).await.unwrap();
        assert!(next > RuleId(1000), "{next}");
    })
    .await;
}

/// Work through a proxy, cut it: calls fail as Unavailable within the
/// timeout; restore it: the pool reconnects, nothing is lost, and the feed
/// catches up with a write made during the outage.
#[tokio::test]
async fn outage_through_a_proxy_fails_fast_and_recovers() {
    with_db("warden_pg_outage", |db| async move {
        let target = admin_server_addr();
        let proxy = support::proxy::Proxy::start(target).await;
        let via_proxy = url_for(&db, Some(&proxy.addr.to_string()));
        let timeout = Duration::from_secs(1);
        let store = open(&config(via_proxy, timeout)).await.unwrap();
        let direct = open_db(&db, Duration::from_secs(5)).await;
        store.create_user(user("ann", &["ops"])).await.unwrap();
        let id = store
            .add_rule(rule(Subject::Role("ops".into()), "ops/#"))
            .await
            .unwrap();
        let mut rx = push_feed(store.as_ref());
        let seen = store.policy_version().await.unwrap();
        await_version(&mut rx, seen, Duration::from_secs(5)).await;

        proxy.cut();
        for _ in 0..3 {
            let started = Instant::now();
            let err = store.user("ann").await.expect_err("store is cut off");
            assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
            let err = store
                .create_role("late")
                .await
                .expect_err("store is cut off");
            assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
            assert!(started.elapsed() < timeout * 2 + Duration::from_millis(500));
        }
        // A write made elsewhere during the outage: the feed must catch up.
        direct.create_role("during").await.unwrap();
        let during = direct.policy_version().await.unwrap();

        proxy.restore();
        let started = Instant::now();
        while store.ping().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ann = store.user("ann").await.unwrap().expect("ann survived");
        assert_eq!(ann.roles, ["ops"]);
        let key = PrincipalKey {
            username: Some("ann".into()),
            roles: ann.roles.clone(),
        };
        let rules = store.rules_for(&key).await.unwrap();
        assert_eq!(rules.0.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
        assert!(store
            .list_roles()
            .await
            .unwrap()
            .iter()
            .all(|r| r.name != "late"));
        let caught_up = await_version(&mut rx, during, Duration::from_secs(15)).await;
        println!("postgres feed caught up {caught_up:?} after the proxy came back");
        store.create_role("after").await.unwrap();
        let after = store.policy_version().await.unwrap();
        await_version(&mut rx, after, Duration::from_secs(1)).await;
    })
    .await;
}

/// The broker's login path without argon2: `user()` then `rules_for()`.
#[tokio::test]
async fn login_path_latency() {
    with_db("warden_pg_latency", |db| async move {
        let store = open_db(&db, Duration::from_secs(5)).await;
        store.create_user(user("kim", &["dev", "ops"])).await.unwrap();
        store.create_user(user("lee", &["ops"])).await.unwrap();
        for i in 0..10 {
            let pattern = format!("t/{i}/#");
            store.add_rule(rule(Subject::User("kim".into()), &pattern)).await.unwrap();
            store.add_rule(rule(Subject::User("lee".into()), &pattern)).await.unwrap();
            store.add_rule(rule(Subject::Role("ops".into()), &pattern)).await.unwrap();
            store.add_rule(rule(Subject::Everyone, &pattern)).await.unwrap();
        }
        let mut samples = Vec::with_capacity(500);
        for i in 0..550 {
            let started = Instant::now();
            let kim = store.user("kim").await.unwrap().expect("kim exists");
            let key = PrincipalKey {
                username: Some(kim.username),
                roles: kim.roles,
            };
            let rules = store.rules_for(&key).await.unwrap();
            // The first 50 warm the pool and the statement cache.
            if i >= 50 {
                samples.push(started.elapsed());
            }
            assert_eq!(rules.0.len(), 30);
        }
        samples.sort();
        println!(
            "postgres login path (user + rules_for, argon2 excluded, {} runs): p50 {} us, p99 {} us",
            samples.len(),
            percentile(&samples, 0.5).as_micros(),
            percentile(&samples, 0.99).as_micros()
        );
    })
    .await;
}
