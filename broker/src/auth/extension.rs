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

/// Builds an authenticator from its `auth.chain` entry (the whole map,
/// `extension: NAME` included). Err: a message naming what is wrong in it.
pub type AuthenticatorFactory = fn(&serde_yaml::Value) -> Result<Arc<dyn Authenticator>, String>;

/// Why an extension could not be registered or built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtensionError {
    #[error("an authenticator named {0:?} is already registered (or built in)")]
    Duplicate(String),
    #[error("no extension named {0:?} is registered in this build")]
    Unknown(String),
    #[error("auth.chain extension {name:?}: {message}")]
    Build { name: String, message: String },
}

/// The factories registered by name. A process-wide table: a crate that
/// links Warden registers its extensions before the configuration is read
/// (in its `main`, before `warden::cli::dispatch`).
static FACTORIES: std::sync::LazyLock<
    parking_lot::RwLock<std::collections::BTreeMap<String, AuthenticatorFactory>>,
> = std::sync::LazyLock::new(Default::default);

/// The authenticators built for this process's `auth.chain`, by name.
static BUILT: std::sync::LazyLock<
    parking_lot::RwLock<std::collections::HashMap<String, Arc<dyn Authenticator>>>,
> = std::sync::LazyLock::new(Default::default);

const BUILT_IN: [&str; 3] = ["jwt", "http", "store"];

/// Make `factory` available to `auth.chain` entries `{extension: NAME}`.
pub fn register_authenticator(
    name: &str,
    factory: AuthenticatorFactory,
) -> Result<(), ExtensionError> {
    let mut table = FACTORIES.write();
    if BUILT_IN.contains(&name) || table.contains_key(name) {
        return Err(ExtensionError::Duplicate(name.to_owned()));
    }
    table.insert(name.to_owned(), factory);
    Ok(())
}

pub fn is_registered(name: &str) -> bool {
    FACTORIES.read().contains_key(name)
}

/// The names registered, sorted.
pub fn registered() -> Vec<String> {
    FACTORIES.read().keys().cloned().collect()
}

/// Build the extension `name` from `config`.
pub fn build(
    name: &str,
    config: &serde_yaml::Value,
) -> Result<Arc<dyn Authenticator>, ExtensionError> {
    let factory = FACTORIES
        .read()
        .get(name)
        .copied()
        .ok_or_else(|| ExtensionError::Unknown(name.to_owned()))?;
    factory(config).map_err(|message| ExtensionError::Build {
        name: name.to_owned(),
        message,
    })
}

/// Build every extension `chain` names, once, at start (changes to
/// `auth.chain` need a restart).
pub fn install(chain: &[crate::config::ChainStep]) -> Result<(), ExtensionError> {
    let mut built = std::collections::HashMap::new();
    for step in chain {
        if let crate::config::ChainStep::Extension { name, config } = step {
            built.insert(name.clone(), build(name, config)?);
            tracing::info!(extension = %name, "authenticator extension configured");
        }
    }
    *BUILT.write() = built;
    Ok(())
}

/// The extension built for `name` by [`install`].
pub fn built(name: &str) -> Option<Arc<dyn Authenticator>> {
    BUILT.read().get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthError, Refusal};

    /// An authenticator that lets in one username, with the role its
    /// configuration names, and refuses the others.
    struct OneUser {
        user: String,
        role: String,
    }

    #[async_trait]
    impl Authenticator for OneUser {
        fn name(&self) -> &'static str {
            "one-user"
        }
        async fn authenticate(&self, login: &Login<'_>) -> Outcome {
            match login.creds.username {
                Some(u) if u == self.user => Outcome::Allow(super::super::Authenticated {
                    username: Some(u.to_owned()),
                    roles: vec![self.role.clone()],
                    superuser: false,
                    token: None,
                    rehash: None,
                }),
                Some(_) => Outcome::Refuse(Refusal {
                    error: AuthError::BadCredentials,
                    reason: "not the one user",
                }),
                None => Outcome::Skip,
            }
        }
    }

    fn one_user(config: &serde_yaml::Value) -> Result<Arc<dyn Authenticator>, String> {
        let field = |key: &str| {
            config
                .get(key)
                .and_then(serde_yaml::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("{key} is required"))
        };
        Ok(Arc::new(OneUser {
            user: field("user")?,
            role: field("role")?,
        }))
    }

    #[test]
    fn a_registered_factory_is_built_from_its_chain_entry() {
        register_authenticator("test-one-user", one_user).unwrap();
        assert_eq!(
            register_authenticator("test-one-user", one_user),
            Err(ExtensionError::Duplicate("test-one-user".into()))
        );
        assert!(register_authenticator("store", one_user).is_err());
        assert!(is_registered("test-one-user"));
        assert!(registered().contains(&"test-one-user".to_owned()));
        let config: serde_yaml::Value =
            serde_yaml::from_str("{extension: test-one-user, user: dev, role: sensors}").unwrap();
        let step = crate::config::ChainStep::Extension {
            name: "test-one-user".into(),
            config,
        };
        install(std::slice::from_ref(&step)).unwrap();
        let ext = built("test-one-user").expect("built");
        assert_eq!(ext.name(), "one-user");
        let missing: serde_yaml::Value =
            serde_yaml::from_str("{extension: test-one-user, user: dev}").unwrap();
        assert!(matches!(
            build("test-one-user", &missing),
            Err(ExtensionError::Build { message, .. }) if message == "role is required"
        ));
        assert_eq!(
            build("nope", &missing).err(),
            Some(ExtensionError::Unknown("nope".into()))
        );
    }
}
