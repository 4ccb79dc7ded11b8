//! Redis test key prefixes on the server `WARDEN_TEST_REDIS_URL` names
//! (default `redis://127.0.0.1:6379/0`): one prefix per test, its keys
//! deleted by [`Keys`]'s `Drop`, also when the test fails.

use std::time::Duration;

use redis::Commands;
use warden_auth::redis::keys;
use warden_auth::StoreConfig;

pub fn server_url() -> String {
    std::env::var("WARDEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

pub fn config(url: &str, prefix: &str, timeout: Duration) -> StoreConfig {
    StoreConfig::Redis {
        url: url.to_owned(),
        prefix: Some(prefix.to_owned()),
        timeout: Some(timeout),
    }
}

/// Deletes every key under the prefix when dropped (the synchronous client
/// works in Drop).
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    pub fn new(label: &str) -> Keys {
        Keys {
            prefix: format!("{}:", super::unique_name(label)),
        }
    }

    pub fn count(&self) -> usize {
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
