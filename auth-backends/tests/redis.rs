//! Runs the conformance suite against the machine's Redis server
//! (`WARDEN_TEST_REDIS_URL`, default `redis://127.0.0.1:6379/0`), plus the
//! Redis specifics: the key schema, the pub/sub change feed, an unreachable
//! server and an outage through a cuttable proxy. Each test uses its own
//! key prefix and deletes its keys at the end, even when it fails.

mod suite;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Commands, IntoConnectionInfo};
use support::redis_keys::{config, server_url, Keys};
use warden_auth::redis::keys;
use warden_auth::{open, AdminStore, ChangeFeed, NewUser, PrincipalKey, StoreErrorKind};
use warden_policy::{ActionKind, Effect, Subject};

async fn open_at(url: &str, keys: &Keys) -> Arc<dyn AdminStore> {
    open(&config(url, &keys.prefix, Duration::from_secs(2)))
        .await
        .expect("open redis store")
}

fn user(name: &str) -> NewUser {
    NewUser {
        username: name.to_owned(),
        password_hash: Some("$argon2id$fake".into()),
        superuser: false,
        enabled: true,
        roles: Vec::new(),
        cert_fingerprint: None,
    }
}

#[tokio::test]
async fn conformance() {
    let keys = Keys::new("conf");
    let store = open_at(&server_url(), &keys).await;
    assert_eq!(store.backend(), "redis");
    store.ping().await.unwrap();
    let again = store.migrate().await.unwrap(); // a second run is a no-op
    assert!(again.applied.is_empty(), "{again:?}");
    suite::run_all(Arc::clone(&store)).await;
    store.import(Default::default()).await.unwrap();
    drop(store);
    drop(keys);
}

/// Names full of separators round-trip, and the Lua scripts write the very
/// keys `keys.rs` documents.
#[tokio::test]
async fn key_schema_is_unambiguous_and_shared_with_lua() {
    let keys = Keys::new("schema");
    let store = open_at(&server_url(), &keys).await;
    let names = ["a", "a:roles", "1:a", "a:1:a:roles", "ä b*?[x]"];
    for name in names {
        let mut new = user(name);
        new.roles = vec![format!("{name}:members"), name.to_owned()];
        store.create_user(new).await.unwrap();
    }
    let mut conn = redis::Client::open(server_url())
        .and_then(|c| c.get_connection())
        .unwrap();
    for name in names {
        let found = store.user(name).await.unwrap().expect("user exists");
        let mut roles = vec![name.to_owned(), format!("{name}:members")];
        roles.sort();
        assert_eq!(found.roles, roles, "{name:?}");
        let hash: Option<String> = conn
            .hget(keys::user(&keys.prefix, name), "password_hash")
            .unwrap();
        assert_eq!(hash.as_deref(), Some("$argon2id$fake"), "{name:?}");
        let members: Vec<String> = conn
            .smembers(keys::role_members(&keys.prefix, name))
            .unwrap();
        assert_eq!(members, [name.to_owned()], "{name:?}");
    }
    let id = store
        .add_rule(suite::spec(
            Effect::Allow,
            Subject::User("a:roles".into()),
            &[ActionKind::Publish],
            "x",
        ))
        .await
        .unwrap();
    let indexed: Vec<u64> = conn
        .smembers(keys::user_rules(&keys.prefix, "a:roles"))
        .unwrap();
    assert_eq!(indexed, [id.0]);
    let version: u64 = conn.get(keys::version(&keys.prefix)).unwrap();
    assert_eq!(store.policy_version().await.unwrap().0, version);
    assert!(keys.count() > 10);
    drop(store);
    drop(keys);
}

async fn next_version(feed: &mut tokio::sync::mpsc::Receiver<warden_policy::PolicyVersion>) -> u64 {
    tokio::time::timeout(Duration::from_secs(1), feed.recv())
        .await
        .expect("a version within 1 s")
        .expect("feed open")
        .0
}

#[tokio::test]
async fn change_feed_pushes_each_write_within_a_second() {
    let keys = Keys::new("feed");
    let store = open_at(&server_url(), &keys).await;
    let ChangeFeed::Push(mut feed) = store.changes() else {
        panic!("redis should push changes");
    };
    // The feed starts by sending the current version.
    let start = next_version(&mut feed).await;
    assert_eq!(start, store.policy_version().await.unwrap().0);
    let mut delays = Vec::new();
    for i in 0..20 {
        let before = Instant::now();
        store.create_role(&format!("r{i}")).await.unwrap();
        let got = next_version(&mut feed).await;
        delays.push(before.elapsed());
        assert_eq!(got, store.policy_version().await.unwrap().0);
    }
    delays.sort();
    println!(
        "redis change feed: write -> version received p50 {:?}, max {:?} (20 writes)",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    drop(feed);
    drop(store);
    drop(keys);
}

#[tokio::test]
async fn unreachable_server_is_unavailable_within_the_timeout() {
    let started = Instant::now();
    let err = open(&config(
        "redis://127.0.0.1:1/0",
        "x:",
        Duration::from_secs(1),
    ))
    .await
    .err()
    .expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    let bad = open(&config("redis://", "x:", Duration::from_secs(1)))
        .await
        .err()
        .expect("a URL without a host must fail");
    assert_eq!(bad.kind(), StoreErrorKind::Invalid, "{bad}");
}

/// A server that accepts but never answers: the call times out, as
/// Unavailable, instead of hanging.
#[tokio::test]
async fn silent_server_times_out_as_unavailable() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/0", silent.local_addr().unwrap());
    let started = Instant::now();
    let err = open(&config(&url, "x:", Duration::from_secs(1)))
        .await
        .err()
        .expect("open must fail");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}

/// `rediss://` takes the TLS path: against a plain-text server the
/// handshake fails as Unavailable (and nothing panics choosing a provider).
#[tokio::test]
async fn tls_url_against_plain_server_is_unavailable() {
    let url = server_url().replacen("redis://", "rediss://", 1);
    let err = open(&config(&url, "x:", Duration::from_secs(1)))
        .await
        .err()
        .expect("TLS to a plain server must fail");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
}

async fn proxy_for_server() -> (support::proxy::Proxy, String) {
    let info = server_url().into_connection_info().expect("server URL");
    let redis::ConnectionAddr::Tcp(host, port) = info.addr else {
        panic!("the outage test needs a redis:// TCP URL");
    };
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve server")
        .next()
        .expect("an address");
    let proxy = support::proxy::Proxy::start(target).await;
    let url = format!("redis://127.0.0.1:{}/{}", proxy.port(), info.redis.db);
    (proxy, url)
}

/// Retry `call` until it succeeds; the manager reconnects on the first
/// call after the server is back.
async fn until_ok<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, warden_auth::StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("store did not come back: {e}"),
        }
    }
}

#[tokio::test]
async fn outage_through_a_proxy_fails_fast_and_recovers() {
    let keys = Keys::new("outage");
    let (proxy, url) = proxy_for_server().await;
    let timeout = Duration::from_secs(1);
    let store = open(&config(&url, &keys.prefix, timeout)).await.unwrap();
    let direct = open_at(&server_url(), &keys).await;
    let ChangeFeed::Push(mut feed) = store.changes() else {
        panic!("redis should push changes");
    };
    next_version(&mut feed).await;
    store.create_user(user("kim")).await.unwrap();
    let before = next_version(&mut feed).await;

    proxy.cut();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.user("kim").await.expect_err("cut: no answer");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        assert!(started.elapsed() < timeout + Duration::from_millis(500));
        let err = store.create_role("ops").await.expect_err("cut: no write");
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    }
    // A write the cut-off feed cannot hear about.
    direct.create_role("during").await.unwrap();
    let during = direct.policy_version().await.unwrap().0;
    assert!(during > before);

    proxy.restore();
    let kim = until_ok(|| store.user("kim")).await.expect("kim kept");
    assert_eq!(kim.username, "kim");
    let roles: Vec<_> = store.list_roles().await.unwrap();
    assert_eq!(roles.len(), 1, "the write made during the outage is there");
    store.create_role("after").await.unwrap();
    // The feed reconnects and catches up: it reports `during` or later.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = tokio::time::timeout(Duration::from_secs(15), feed.recv())
            .await
            .expect("feed resumes")
            .expect("feed open")
            .0;
        if got > during {
            break;
        }
        assert!(Instant::now() < deadline, "feed stuck at {got}");
    }
    drop(feed);
    drop((store, direct, proxy));
    drop(keys);
}

/// The broker's login path without argon2: user() then rules_for().
#[tokio::test]
async fn login_path_latency() {
    let keys = Keys::new("latency");
    let store = open_at(&server_url(), &keys).await;
    let mut kim = user("kim");
    kim.roles = vec!["dev".into(), "ops".into()];
    store.create_user(kim).await.unwrap();
    for (subject, pattern) in [
        (Subject::User("kim".into()), "kim/#"),
        (Subject::Role("dev".into()), "dev/#"),
        (Subject::Role("ops".into()), "ops/#"),
        (Subject::Everyone, "public/#"),
    ] {
        let rule = suite::spec(Effect::Allow, subject, &[ActionKind::Publish], pattern);
        store.add_rule(rule).await.unwrap();
    }
    let mut samples = Vec::with_capacity(500);
    for _ in 0..550 {
        let started = Instant::now();
        let user = store.user("kim").await.unwrap().expect("kim");
        let key = PrincipalKey {
            username: Some(user.username),
            roles: user.roles,
        };
        let rules = store.rules_for(&key).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(rules.0.len(), 4);
    }
    let mut samples = samples.split_off(50); // warm-up
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)].as_micros();
    println!(
        "redis login path (user + rules_for, no argon2), {} runs: p50 {} us, p99 {} us",
        samples.len(),
        pct(50),
        pct(99)
    );
    drop(store);
    drop(keys);
}
