//! The extension API: what an authenticator, a policy source and an event
//! sink are (docs/extending.md). The JWT verifier, the HTTP service and the
//! store are authenticators behind [`Authenticator`]; the HTTP service and
//! the store are policy sources behind [`PolicySource`]; the audit log is an
//! [`EventSink`]. `chain.rs` runs the authenticators `auth.chain` names.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use warden_auth::{PrincipalKey, Store};
use warden_policy::Rule;

use super::{Authenticated, Credentials, Passwords, Refusal, Users};

/// Everything an authenticator may look at for one login.
pub struct Login<'a> {
    pub creds: &'a Credentials<'a>,
    /// The store at the version this login confirmed (through the login
    /// cache), for authenticators that consult it.
    pub users: Users<'a>,
    pub passwords: Passwords<'a>,
    pub allow_anonymous: bool,
}

/// What one authenticator says about a login.
#[derive(Debug)]
pub enum Outcome {
    /// Who it is: username, roles, and a grant with rules of its own.
    Allow(Authenticated),
    /// Not this one: bad credentials, not authorized, or unavailable.
    Refuse(Refusal),
    /// It has nothing to say about these credentials (e.g. the JWT
    /// authenticator and a login without a token).
    Skip,
}

/// Credentials or a certificate to a principal, or a refusal. Must fail
/// closed: an authenticator that cannot decide refuses with
/// `AuthError::Unavailable`, never allows.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// For logs and `auth.chain`.
    fn name(&self) -> &'static str;
    async fn authenticate(&self, login: &Login<'_>) -> Outcome;
}

/// How long rules from a source stay good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Until the source's version moves (the store's policy version).
    Version(String),
    /// For this long, then they are asked for again.
    Ttl(Duration),
}

/// Rules for one principal, in the store's rule schema.
#[derive(Clone, Debug)]
pub struct SourceRules {
    pub rules: Arc<Vec<Rule>>,
    pub freshness: Freshness,
}

/// Why a policy source could not answer (the login is then refused as
/// server-unavailable; live sessions keep what they have).
#[derive(Debug, thiserror::Error)]
#[error("policy source unavailable: {0}")]
pub struct SourceUnavailable(pub String);

/// A principal to rules. The broker compiles what every source gives a
/// principal together (deny overrides), and decides each publish and
/// delivery locally.
#[async_trait]
pub trait PolicySource: Send + Sync {
    fn name(&self) -> &'static str;
    async fn rules(&self, principal: &PrincipalKey) -> Result<SourceRules, SourceUnavailable>;
}

/// Something that happened, for an event sink. Borrowed: a sink that keeps
/// events copies what it needs. Every event the audit log records passes
/// through here (`Audit::add_sink`), plus connects and disconnects.
#[derive(Debug)]
pub enum Event<'a> {
    Connected {
        client_id: &'a str,
        username: Option<&'a str>,
        peer: std::net::SocketAddr,
        listener: &'a str,
        protocol: &'a str,
        /// How the client proved who it is: jwt, certificate, password,
        /// anonymous.
        auth: &'a str,
    },
    Disconnected {
        client_id: &'a str,
        username: Option<&'a str>,
        /// The broker's word for why (e.g. `client_disconnect`,
        /// `keep_alive_timeout`, `takeover`).
        reason: &'a str,
    },
    /// A decision point denied a publish, subscribe, receive or will.
    Denied(&'a crate::observe::audit::DenyRecord),
    /// A session's user was removed or disabled.
    Revoked {
        client_id: &'a str,
        username: Option<&'a str>,
    },
    /// A temporary ban (`kind`: ip or username).
    Banned {
        kind: &'a str,
        subject: &'a str,
        seconds: u64,
        reason: &'a str,
    },
    LoginRefused {
        peer: std::net::SocketAddr,
        client_id: &'a str,
        username: Option<&'a str>,
        reason: &'a str,
    },
    Kicked {
        client_id: &'a str,
        username: Option<&'a str>,
        by: &'a str,
    },
    PolicyChanged {
        version: u64,
        sessions: usize,
    },
    AdminChange(&'a warden_auth::AdminChange),
}

/// Receives events off the message path. Must not block: a sink that
/// ships them somewhere queues them, bounded.
pub trait EventSink: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// The store as a policy source: the rules of the user, its roles and
/// everyone, fresh until the policy version moves.
pub struct StoreRules<'a>(pub &'a dyn Store);

#[async_trait]
impl PolicySource for StoreRules<'_> {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn rules(&self, principal: &PrincipalKey) -> Result<SourceRules, SourceUnavailable> {
        let version = self
            .0
            .policy_version()
            .await
            .map_err(|e| SourceUnavailable(e.to_string()))?;
        let rules = self
            .0
            .rules_for(principal)
            .await
            .map_err(|e| SourceUnavailable(e.to_string()))?;
        Ok(SourceRules {
            rules: Arc::new(rules.0),
            freshness: Freshness::Version(version.0.to_string()),
        })
    }
}

#[async_trait]
impl PolicySource for super::http::HttpAuth {
    fn name(&self) -> &'static str {
        "http"
    }

    async fn rules(&self, principal: &PrincipalKey) -> Result<SourceRules, SourceUnavailable> {
        let username = principal.username.clone().ok_or_else(|| {
            SourceUnavailable("the service has no rules for anonymous clients".into())
        })?;
        let who = Arc::new(super::http::HttpPrincipal {
            username,
            roles: principal.roles.clone(),
            attributes: serde_json::Map::new(),
            authorize_each: false,
        });
        let rules = super::http::HttpAuth::rules(self, &who)
            .await
            .map_err(|r| SourceUnavailable(r.reason.to_owned()))?;
        Ok(SourceRules {
            rules,
            freshness: Freshness::Ttl(self.cache_ttl()),
        })
    }
}

impl EventSink for crate::observe::Audit {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::LoginRefused {
                peer,
                client_id,
                username,
                reason,
            } => self.auth_failure(*peer, client_id, *username, reason),
            Event::Kicked {
                client_id,
                username,
                by,
            } => self.kick(client_id, *username, by),
            Event::PolicyChanged { version, sessions } => self.policy_change(*version, *sessions),
            Event::AdminChange(change) => self.admin_change(change),
            Event::Denied(record) => self.deny((*record).clone()),
            Event::Revoked {
                client_id,
                username,
            } => self.revocation(client_id, *username),
            Event::Banned {
                kind,
                subject,
                seconds,
                reason,
            } => self.ban(kind, subject, Duration::from_secs(*seconds), reason),
            // The process log has them; the audit log does not.
            Event::Connected { .. } | Event::Disconnected { .. } => {}
        }
    }
}
