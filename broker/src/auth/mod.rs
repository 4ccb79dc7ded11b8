//! Authentication at CONNECT: who is this client?
//!
//! Two ways in: a client certificate on a listener with `username_from`
//! (the certificate names the user; no password is needed, but the user must
//! exist in the store and be enabled), or a username and password checked
//! against the store's argon2id hash. Anonymous clients get in only when
//! `allow_anonymous` is on, and then only with the `everyone` rules.
//!
//! An unknown user and a wrong password give the same answer after about the
//! same time: an unknown user still pays for one argon2 verification against a
//! dummy hash. Verification runs on the blocking pool, never on the async
//! workers, so a login storm does not stall message traffic, at most one per
//! CPU at a time; a login verified within the last minutes skips argon2
//! (`cache.rs`).

pub mod cache;

use warden_auth::{password, Store, StoreError, UserRecord};
use warden_policy::PolicyVersion;

pub use cache::CredentialCache;

use crate::login_cache::LoginCache;

/// Where user records come from: the store at a confirmed policy version,
/// through the login cache.
#[derive(Clone, Copy)]
pub struct Users<'a> {
    pub store: &'a dyn Store,
    pub cache: &'a LoginCache,
    pub version: PolicyVersion,
}

impl Users<'_> {
    async fn get(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.cache.user(self.store, name, self.version).await
    }
}

/// Why a client was not let in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user, wrong password, or no password for a password login.
    #[error("bad username or password")]
    BadCredentials,
    /// Known and verified, but not allowed in (disabled, or anonymous).
    #[error("not authorized")]
    NotAuthorized,
    /// The store could not answer: fail closed.
    #[error("store unavailable")]
    Unavailable,
}

/// The authenticated identity, before rules are compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub username: Option<String>,
    pub roles: Vec<String>,
    pub superuser: bool,
}

/// What the client presented.
#[derive(Debug)]
pub struct Credentials<'a> {
    /// The username the listener mapped from a verified client certificate.
    pub cert_username: Option<String>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

fn unavailable(err: StoreError) -> AuthError {
    // Debug only: the policy registry logs the outage once, not per login.
    tracing::debug!(error = %err, "store lookup failed at login; refusing (fail closed)");
    AuthError::Unavailable
}

fn accepted(user: UserRecord) -> Result<Authenticated, AuthError> {
    if !user.enabled {
        return Err(AuthError::NotAuthorized);
    }
    Ok(Authenticated {
        username: Some(user.username),
        roles: user.roles,
        superuser: user.superuser,
    })
}

/// Decide who the client is.
pub async fn authenticate(
    users: Users<'_>,
    cache: &CredentialCache,
    allow_anonymous: bool,
    creds: Credentials<'_>,
) -> Result<Authenticated, AuthError> {
    if let Some(name) = creds.cert_username {
        // The certificate was verified by the TLS layer; the store still
        // decides whether that user exists and is enabled.
        let user = users.get(&name).await.map_err(unavailable)?;
        return match user {
            Some(user) => accepted(user),
            None => Err(AuthError::BadCredentials),
        };
    }
    let Some(name) = creds.username else {
        if creds.password.is_some() {
            return Err(AuthError::BadCredentials);
        }
        return if allow_anonymous {
            Ok(Authenticated {
                username: None,
                roles: Vec::new(),
                superuser: false,
            })
        } else {
            Err(AuthError::NotAuthorized)
        };
    };
    let supplied = creds.password.unwrap_or_default().to_vec();
    let user = users.get(name).await.map_err(unavailable)?;
    let Some(user) = user else {
        let _slot = cache.verify_slots.acquire().await.ok();
        password::dummy_verify_blocking(supplied).await;
        return Err(AuthError::BadCredentials);
    };
    let Some(hash) = user.password_hash.clone() else {
        // A certificate-only user cannot log in with a password.
        let _slot = cache.verify_slots.acquire().await.ok();
        password::dummy_verify_blocking(supplied).await;
        return Err(AuthError::BadCredentials);
    };
    if cache.contains(name, &supplied, &hash) {
        return accepted(user);
    }
    // Closed only if the broker is shutting down; then verify anyway.
    let _slot = cache.verify_slots.acquire().await.ok();
    let verified = password::verify_password_blocking(supplied.clone(), hash.clone()).await;
    match verified {
        Ok(true) => {
            cache.insert(name, &supplied, &hash);
            accepted(user)
        }
        Ok(false) => Err(AuthError::BadCredentials),
        Err(err) => {
            tracing::warn!(user = name, error = %err, "stored password hash unusable");
            Err(AuthError::BadCredentials)
        }
    }
}
