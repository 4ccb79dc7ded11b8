//! `auth.chain` and `auth.compose`: several authenticators asked in order.
//!
//! - `first_match`: the first that accepts the login decides; one that
//!   refuses passes the login on. None accepted: the refusal is
//!   server-unavailable when any of them was unavailable (the client comes
//!   back later rather than being counted as a bad password), else the
//!   first refusal.
//! - `all_must_allow`: every authenticator that applies must accept; the
//!   first refusal ends the login. They must agree on the username; the
//!   roles are the union, superuser only if all say so, and the rules of a
//!   token and of the HTTP service both join the store's.
//!
//! The JWT authenticator applies to logins that present a token; it also
//! consults the store for that user (enabled, pinned, roles), so the store
//! authenticator skips token logins. The HTTP authenticator applies to
//! logins with a username or a client certificate.

use std::sync::Arc;

use async_trait::async_trait;

use super::extension::{Authenticator, Login, Outcome};
use super::http::{HttpAuth, HttpGrant, LoginRequest};
use super::jwt::{looks_like_jwt, JwtVerifier, TokenGrant};
use super::{merge_roles, store_login, token_login, Authenticated, Credentials, Refusal};
use crate::config::Compose;

/// The token a login presents for the JWT verifier, if any.
fn presented_token<'a>(creds: &Credentials<'a>) -> Option<&'a [u8]> {
    creds.method_token.or(creds
        .password
        .filter(|p| creds.cert_username.is_none() && looks_like_jwt(p)))
}

pub struct JwtStep<'a>(pub &'a JwtVerifier);

#[async_trait]
impl Authenticator for JwtStep<'_> {
    fn name(&self) -> &'static str {
        "jwt"
    }

    async fn authenticate(&self, login: &Login<'_>) -> Outcome {
        let Some(token) = presented_token(login.creds) else {
            return Outcome::Skip;
        };
        match token_login(login.users, self.0, token, login.creds).await {
            Ok(authed) => Outcome::Allow(authed),
            Err(refusal) => Outcome::Refuse(refusal),
        }
    }
}

/// The store: password, certificate or anonymous logins. `jwt`: whether a
/// JWT verifier is configured (its token logins are then not the store's).
pub struct StoreStep {
    pub jwt: bool,
}

#[async_trait]
impl Authenticator for StoreStep {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn authenticate(&self, login: &Login<'_>) -> Outcome {
        if self.jwt && presented_token(login.creds).is_some() {
            return Outcome::Skip;
        }
        match store_login(
            login.users,
            login.passwords,
            login.allow_anonymous,
            login.creds,
        )
        .await
        {
            Ok(authed) => Outcome::Allow(authed),
            Err(refusal) => Outcome::Refuse(refusal),
        }
    }
}

pub struct HttpStep<'a>(pub &'a HttpAuth);

#[async_trait]
impl Authenticator for HttpStep<'_> {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn authenticate(&self, login: &Login<'_>) -> Outcome {
        let creds = login.creds;
        if creds.username.is_none() && creds.cert_username.is_none() && creds.cert.is_none() {
            return Outcome::Skip;
        }
        let request = LoginRequest {
            username: creds.username,
            password: creds.password,
            client_id: creds.client_id,
            peer: creds.peer,
            listener: creds.listener,
            cert: creds.cert,
            cert_username: creds.cert_username.as_deref(),
        };
        let principal = match self.0.authenticate(&request).await {
            Ok(p) => p,
            Err(refusal) => return Outcome::Refuse(refusal),
        };
        // The rules at login: every publish and delivery is then decided
        // locally.
        let rules = match self.0.rules(&principal).await {
            Ok(r) => r,
            Err(refusal) => return Outcome::Refuse(refusal),
        };
        Outcome::Allow(Authenticated {
            username: Some(principal.username.clone()),
            roles: principal.roles.clone(),
            superuser: false,
            token: Some(HttpAuth::grant(&principal, &rules)),
            rehash: None,
        })
    }
}

/// Ask `steps` in order and combine their answers by `compose`.
pub async fn run(
    steps: &[&dyn Authenticator],
    compose: Compose,
    login: &Login<'_>,
) -> Result<Authenticated, Refusal> {
    match compose {
        Compose::FirstMatch => first_match(steps, login).await,
        Compose::AllMustAllow => all_must_allow(steps, login).await,
    }
}

async fn first_match(
    steps: &[&dyn Authenticator],
    login: &Login<'_>,
) -> Result<Authenticated, Refusal> {
    let mut unavailable = None;
    let mut refused = None;
    for step in steps {
        match step.authenticate(login).await {
            Outcome::Allow(authed) => return Ok(authed),
            Outcome::Refuse(r) => {
                tracing::debug!(
                    authenticator = step.name(),
                    reason = r.reason,
                    "authenticator refused; asking the next"
                );
                let slot = if matches!(
                    r.error,
                    super::AuthError::Unavailable | super::AuthError::Busy
                ) {
                    &mut unavailable
                } else {
                    &mut refused
                };
                slot.get_or_insert(r);
            }
            Outcome::Skip => {}
        }
    }
    Err(unavailable
        .or(refused)
        .unwrap_or_else(|| Refusal::denied("no authenticator applies to these credentials")))
}

async fn all_must_allow(
    steps: &[&dyn Authenticator],
    login: &Login<'_>,
) -> Result<Authenticated, Refusal> {
    let mut merged: Option<Authenticated> = None;
    for step in steps {
        match step.authenticate(login).await {
            Outcome::Allow(authed) => {
                merged = Some(match merged {
                    None => authed,
                    Some(prev) => merge(prev, authed)?,
                });
            }
            Outcome::Refuse(r) => return Err(r),
            Outcome::Skip => {}
        }
    }
    merged.ok_or_else(|| Refusal::denied("no authenticator applies to these credentials"))
}

fn merge(a: Authenticated, b: Authenticated) -> Result<Authenticated, Refusal> {
    if a.username != b.username {
        return Err(Refusal::denied("authenticators disagree on the username"));
    }
    Ok(Authenticated {
        username: a.username,
        roles: merge_roles(&a.roles, &b.roles),
        superuser: a.superuser && b.superuser,
        token: merge_grants(a.token, b.token),
        rehash: a.rehash.or(b.rehash),
    })
}

/// A token's grant (its expiry, its rules) with the service's rules
/// after its own.
fn merge_grants(a: Option<TokenGrant>, b: Option<TokenGrant>) -> Option<TokenGrant> {
    let (mut first, second) = match (a, b) {
        (Some(a), Some(b)) if a.http.is_some() && b.http.is_none() => (b, a),
        (Some(a), Some(b)) => (a, b),
        (a, b) => return a.or(b),
    };
    if let (None, Some(h)) = (&first.http, &second.http) {
        let start = first.rules.len();
        first.rules.extend_from_slice(second.http_rules());
        first.http = Some(Arc::new(HttpGrant {
            attributes: h.attributes.clone(),
            rules_start: start,
            authorize_each: h.authorize_each,
            roles: h.roles.clone(),
        }));
    }
    first.roles = merge_roles(&first.roles, &second.roles);
    Some(first)
}
