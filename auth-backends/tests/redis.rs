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
use warden_auth::redis::{keys, RedisStore};
use warden_auth::{
    open, AdminStore, ChangeFeed, NewUser, PrincipalKey, Store, StoreConfig, StoreErrorKind,
};
use warden_policy::{ActionKind, Effect, Subject};

fn server_url() -> String {
    std::env::var("WARDEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Deletes every key under the prefix when dropped, so a failed assertion
/// does not leave keys behind (the synchronous client works in Drop).
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(label: &str) -> Keys {
        Keys {
            prefix: format!("{}:", support::unique_name(label)),
        }
    }

    fn count(&self) -> usize {
        let mut conn = redis::Client::open(server_url())
            .and_then(|c| c.get_connection())
            .expect("connect for counting");
        let found: Vec<String> = conn
            .scan_match::<_, String>(keys::all_pattern(&self.prefix))
            .expect("scan")
            .collect();
        found.len()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(server_url()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let found: Vec<String> = match conn.scan_match(keys::all_pattern(&self.prefix)) {
            Ok(iter) => iter.collect(),
            Err(_) => return,
        };
        for chunk in found.chunks(500) {
            let _: Result<(), _> = conn.del(chunk);
        }
    }
}

fn config(url: &str, prefix: &str, timeout: Duration) -> StoreConfig {
    StoreConfig::Redis {
        url: url.to_owned(),
        prefix: Some(prefix.to_owned()),
        timeout: Some(timeout),
    }
}

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
    }
}

#[tokio::test]
async fn conformance() {
    let keys = Keys::new("conf");
    let store = open_at(&server_url(), &keys).await;
    assert_eq!(store.backend(), "redis");
    store.ping().await.unwrap();
    store.migrate().await.unwrap(); // a second run is a no-op
    suite::run_all(Arc::clone(&store)).await;
    drop(keys);
}
