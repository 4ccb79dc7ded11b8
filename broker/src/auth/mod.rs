//! Authentication at CONNECT: who is this client?
//!
//! Two ways in: a client certificate on a listener with `username_from`
//! (the certificate names the user; no password is needed, but the user must
//! exist in the store and be enabled), or a username and password checked
//! against the store's argon2id hash. A user pinned to a certificate
//! fingerprint gets in only over a connection that presented that
//! certificate, whichever way it logs in. Anonymous clients get in only when
//! `allow_anonymous` is on, and then only with the `everyone` rules.
//!
//! An unknown user and a wrong password give the same answer after about the
//! same time: an unknown user still pays for one argon2 verification against a
//! dummy hash. Verification runs on the blocking pool, never on the async
//! workers, so a login storm does not stall message traffic, in a bounded
//! queue, with concurrent logins of the same credentials sharing one
//! verification (`verify.rs`); a login verified within the last minutes
//! skips argon2 (`cache.rs`). A device secret (`--generate-secret`) is
//! checked with one HMAC instead. A password that verified against a hash
//! imported from another broker (or a weak argon2 one) is rehashed to
//! argon2id in the background (`rehash.rs`).
//!
//! Every login goes through the chain of authenticators (`chain.rs`, the
//! traits in `extension.rs`): the JWT verifier, the HTTP service
//! (`http.rs`), the store and registered extensions, composed by
//! `auth.compose`. `each.rs` asks the HTTP service per topic
//! (`authorize_each`); `webhook.rs` ships events over HTTP.

pub mod cache;
pub mod chain;
pub mod each;
pub mod extension;
pub mod http;
pub mod jwt;
pub mod rehash;
pub mod verify;
pub mod webhook;

use warden_auth::{foreign_hash, Store, StoreError, UserRecord};
use warden_policy::PolicyVersion;

pub use cache::CredentialCache;
pub use http::HttpAuth;
pub use jwt::{JwtVerifier, TokenGrant};
pub use rehash::Rehash;
pub use verify::{Verdict, Verifier};

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
    /// No turn to verify the password within the queue's bounds.
    #[error("server busy")]
    Busy,
}

/// A refused login: the answer the client gets, and for the log the reason
/// in plain words (the client never sees it: an unknown user and a wrong
/// password must look alike from outside).
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub error: AuthError,
    pub reason: &'static str,
}

impl Refusal {
    fn bad(reason: &'static str) -> Refusal {
        Refusal {
            error: AuthError::BadCredentials,
            reason,
        }
    }

    fn denied(reason: &'static str) -> Refusal {
        Refusal {
            error: AuthError::NotAuthorized,
            reason,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

/// The authenticated identity, before rules are compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub username: Option<String>,
    pub roles: Vec<String>,
    pub superuser: bool,
    /// Set for a JWT login: what the token grants, and until when.
    pub token: Option<TokenGrant>,
    /// Set when the password verified against a foreign or weak hash that
    /// the caller should replace (`rehash::spawn`).
    pub rehash: Option<Box<Rehash>>,
}

/// How passwords are checked: the cache of verified logins, the shared
/// verifications and their queue, and the queue's bounds.
#[derive(Clone, Copy)]
pub struct Passwords<'a> {
    pub cache: &'a CredentialCache,
    pub verifier: &'a Verifier,
    pub config: &'a crate::config::VerifyConfig,
}

fn busy() -> Refusal {
    Refusal {
        error: AuthError::Busy,
        reason: "server busy: no turn to verify the password in time",
    }
}

/// What the client presented.
#[derive(Debug)]
pub struct Credentials<'a> {
    /// The username the listener mapped from a verified client certificate.
    pub cert_username: Option<String>,
    /// The SHA-256 fingerprint of the verified client certificate, if any
    /// (checked against a user's pin whichever way it logs in).
    pub cert_fingerprint: Option<&'a str>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// MQTT 5 authentication method `jwt`: the token in the CONNECT's
    /// authentication data.
    pub method_token: Option<&'a [u8]>,
    /// Where the login comes from, for authenticators that ask about it
    /// (the HTTP service).
    pub client_id: &'a str,
    pub peer: Option<std::net::SocketAddr>,
    pub listener: &'a str,
    /// The verified client certificate, if any.
    pub cert: Option<&'a warden_policy::CertInfo>,
}

fn unavailable(err: StoreError) -> Refusal {
    // Debug only: the policy registry logs the outage once, not per login.
    tracing::debug!(error = %err, "store lookup failed at login; refusing (fail closed)");
    Refusal {
        error: AuthError::Unavailable,
        reason: "store unavailable",
    }
}

/// Whether `presented` is the certificate `user` is pinned to (always true
/// for a user without a pin).
pub fn pin_holds(user: &UserRecord, presented: Option<&str>) -> bool {
    match (&user.cert_fingerprint, presented) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(pin), Some(fp)) => {
            // Both are 64 hex digits; compared without an early exit.
            pin.len() == fp.len()
                && pin
                    .bytes()
                    .zip(fp.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
    }
}

fn accepted(user: UserRecord, fingerprint: Option<&str>) -> Result<Authenticated, Refusal> {
    if !user.enabled {
        return Err(Refusal::denied("user disabled"));
    }
    if !pin_holds(&user, fingerprint) {
        return Err(Refusal::denied(if fingerprint.is_some() {
            "user pinned to another certificate"
        } else {
            "user pinned to a certificate; none presented"
        }));
    }
    Ok(Authenticated {
        username: Some(user.username),
        roles: user.roles,
        superuser: user.superuser,
        token: None,
        rehash: None,
    })
}

/// A token login: the token decides who it is; the store, if it knows the
/// user, still decides whether it is enabled and pinned, and adds its roles.
pub(crate) async fn token_login(
    users: Users<'_>,
    verifier: &JwtVerifier,
    token: &[u8],
    creds: &Credentials<'_>,
) -> Result<Authenticated, Refusal> {
    let token = std::str::from_utf8(token).map_err(|_| Refusal::bad("malformed token"))?;
    let grant = verifier
        .verify(token, creds.username, creds.method_token.is_some())
        .map_err(Refusal::bad)?;
    let user = users.get(&grant.username).await.map_err(unavailable)?;
    let (roles, superuser) = match user {
        Some(user) => {
            let store_roles = user.roles.clone();
            let authed = accepted(user, creds.cert_fingerprint)?;
            (merge_roles(&store_roles, &grant.roles), authed.superuser)
        }
        None if grant.require_store_user => return Err(Refusal::bad("unknown user")),
        None => (grant.roles.clone(), false),
    };
    Ok(Authenticated {
        username: Some(grant.username.clone()),
        roles,
        superuser,
        token: Some(grant),
        rehash: None,
    })
}

/// The store's roles and the token's, sorted, without duplicates.
pub fn merge_roles(store: &[String], token: &[String]) -> Vec<String> {
    let mut all: Vec<String> = store.iter().chain(token).cloned().collect();
    all.sort();
    all.dedup();
    all
}

/// Decide who the client is: every login goes through the chain of
/// [`extension::Authenticator`]s, `auth.chain` (built-ins and registered
/// extensions) or by default the JWT verifier, the HTTP service and the
/// store, those that are configured.
pub async fn authenticate(
    users: Users<'_>,
    passwords: Passwords<'_>,
    auth: &crate::config::AuthConfig,
    jwt: Option<&JwtVerifier>,
    http: Option<&HttpAuth>,
    creds: Credentials<'_>,
) -> Result<Authenticated, Refusal> {
    let allow_anonymous = auth.allow_anonymous;
    // Without auth.http and auth.chain the chain is the built-in order (a
    // token to the JWT authenticator, anything else to the store's), which
    // has a method token refused when no JWT is configured rather than
    // passed to the store as a password login.
    if auth.chain.is_empty() && http.is_none() && jwt.is_none() && creds.method_token.is_some() {
        return Err(Refusal::bad("JWT authentication is not configured"));
    }
    use crate::config::ChainStep;
    let jwt_step = jwt.map(chain::JwtStep);
    let http_step = http.map(chain::HttpStep);
    let store_step = chain::StoreStep { jwt: jwt.is_some() };
    static DEFAULT_ORDER: [ChainStep; 3] = [ChainStep::Jwt, ChainStep::Http, ChainStep::Store];
    let order: &[ChainStep] = if auth.chain.is_empty() {
        &DEFAULT_ORDER
    } else {
        &auth.chain
    };
    // Extensions built at start (`extension::install`), held for the login.
    let extensions: Vec<Option<std::sync::Arc<dyn extension::Authenticator>>> = order
        .iter()
        .filter_map(|step| match step {
            ChainStep::Extension { name, .. } => Some(extension::built(name)),
            _ => None,
        })
        .collect();
    let mut extensions = extensions.iter();
    // A step whose backend is not running (not configured) has nothing
    // to say: the config check makes that the unlisted default only.
    let steps: Vec<&dyn extension::Authenticator> = order
        .iter()
        .filter_map(|step| match step {
            ChainStep::Extension { .. } => extensions.next()?.as_deref(),
            ChainStep::Jwt => jwt_step
                .as_ref()
                .map(|s| s as &dyn extension::Authenticator),
            ChainStep::Http => http_step
                .as_ref()
                .map(|s| s as &dyn extension::Authenticator),
            ChainStep::Store => Some(&store_step as &dyn extension::Authenticator),
        })
        .collect();
    let login = extension::Login {
        creds: &creds,
        users,
        passwords,
        allow_anonymous,
    };
    chain::run(&steps, auth.compose, &login).await
}

/// The store's own login: a certificate's user, a username and password,
/// or anonymous.
pub(crate) async fn store_login(
    users: Users<'_>,
    passwords: Passwords<'_>,
    allow_anonymous: bool,
    creds: &Credentials<'_>,
) -> Result<Authenticated, Refusal> {
    let fingerprint = creds.cert_fingerprint;
    if let Some(name) = creds.cert_username.clone() {
        // The certificate was verified by the TLS layer; the store still
        // decides whether that user exists and is enabled.
        let user = users.get(&name).await.map_err(unavailable)?;
        return match user {
            Some(user) => accepted(user, fingerprint),
            None => Err(Refusal::bad("unknown user")),
        };
    }
    let Some(name) = creds.username else {
        if creds.password.is_some() {
            return Err(Refusal::bad("password without a username"));
        }
        return if allow_anonymous {
            Ok(Authenticated {
                username: None,
                roles: Vec::new(),
                superuser: false,
                token: None,
                rehash: None,
            })
        } else {
            Err(Refusal::denied("no credentials (anonymous logins are off)"))
        };
    };
    let supplied = creds.password.unwrap_or_default();
    let user = users.get(name).await.map_err(unavailable)?;
    let dummy = || async {
        passwords
            .verifier
            .dummy(passwords.config, supplied)
            .await
            .map_err(|()| busy())
    };
    let Some(user) = user else {
        dummy().await?;
        return Err(Refusal::bad("unknown user"));
    };
    let Some(hash) = user.password_hash.clone() else {
        // A certificate-only user cannot log in with a password.
        dummy().await?;
        return Err(Refusal::bad("user has no password (certificate only)"));
    };
    let verdict = passwords
        .verifier
        .verify(passwords.config, passwords.cache, name, supplied, &hash)
        .await;
    match verdict {
        Verdict::Match => {
            let mut authed = accepted(user, fingerprint)?;
            if foreign_hash::needs_rehash(&hash) {
                authed.rehash = Some(Box::new(Rehash {
                    username: name.to_owned(),
                    old_hash: hash,
                    password: supplied.to_vec(),
                }));
            }
            Ok(authed)
        }
        Verdict::Mismatch => Err(Refusal::bad("wrong password")),
        Verdict::Unusable => Err(Refusal::bad("stored password hash unusable")),
        Verdict::Busy => Err(busy()),
    }
}
