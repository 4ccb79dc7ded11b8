//! Rehash on login: a user imported with a foreign hash (Mosquitto `$6$`/
//! `$7$`, bcrypt, go-auth PBKDF2) or a weak argon2 hash gets a fresh
//! argon2id hash the first time it logs in with the right password.
//!
//! The login that verified the old hash hands a [`Rehash`] to [`spawn`],
//! which hashes on the blocking pool (bounded by the same slots as
//! verification) and then asks the store to swap the hash only if it is
//! still the one that verified. The CONNACK does not wait for any of it.
//! Two logins racing both hash, but only one swap matches; a password an
//! admin changed in between is left alone.

use std::sync::Arc;

use warden_auth::password::{hash_password_with, PasswordParams};
use warden_auth::Store;

use crate::broker::Broker;

/// What a rehash needs: who, the hash that verified, and the password that
/// verified against it. Boxed in [`super::Authenticated`], since almost
/// every login has none.
#[derive(Clone, PartialEq, Eq)]
pub struct Rehash {
    pub username: String,
    pub old_hash: String,
    pub password: Vec<u8>,
}

// Neither the password nor the hash may reach a log line.
impl std::fmt::Debug for Rehash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rehash")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Run `job` in the background.
pub fn spawn(broker: &Arc<Broker>, job: Box<Rehash>) {
    let broker = Arc::clone(broker);
    tokio::spawn(async move {
        let name = job.username.clone();
        match run(&broker, *job).await {
            Ok(true) => {
                // The login cache holds the record with the old hash until
                // the policy moves; without this each later verify would
                // see the old hash and try again.
                broker.logins.forget_user(&name);
                tracing::info!(user = %name, "password hash upgraded to argon2id");
            }
            Ok(false) => {
                tracing::debug!(user = %name, "password hash changed meanwhile; rehash skipped")
            }
            Err(reason) => tracing::warn!(user = %name, reason = %reason, "password rehash failed"),
        }
    });
}

async fn run(broker: &Broker, job: Rehash) -> Result<bool, String> {
    let new_hash = {
        let _slot = broker.verifier.background_turn().await;
        let password = job.password;
        tokio::task::spawn_blocking(move || {
            hash_password_with(&password, &PasswordParams::default())
        })
        .await
        .map_err(|_| "hashing task did not finish".to_owned())?
        .map_err(|e| e.to_string())?
    };
    replace(&*broker.store, &job.username, &job.old_hash, &new_hash).await
}

async fn replace(
    store: &dyn Store,
    username: &str,
    old_hash: &str,
    new_hash: &str,
) -> Result<bool, String> {
    store
        .replace_password_hash(username, old_hash, new_hash)
        .await
        .map_err(|e| e.to_string())
}
