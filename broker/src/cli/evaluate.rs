//! The one place the CLI asks the policy engine a question: who the client
//! would be (a stored user, an anonymous client, or a certificate identity,
//! built as the broker builds them at CONNECT), what it would do, and what
//! the broker would answer and why. `warden check`, `warden policy test` and
//! `warden policy diff` all go through [`evaluate`]; the answers come from
//! the same `AclEngine` compile and decide the broker runs.
//!
//! The policy comes from a [`Source`]: the configured store, or a file made
//! by `warden export` (for `policy diff`).

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use warden_auth::{PolicySnapshot, PrincipalKey, Store, UserRecord};
use warden_policy::{
    AclEngine, Action, CertInfo, Decision, EngineOptions, Explanation, PolicyEngine, PolicyVersion,
    Principal, QoS, RuleSet, Subject, SubscriptionFilter,
};

use crate::auth::pin_holds;
use crate::config::{Config, UsernameFrom};
use crate::listener::PeerInfo;

/// Where the users and rules come from.
#[async_trait]
pub trait Source: Send + Sync {
    async fn user(&self, name: &str) -> anyhow::Result<Option<UserRecord>>;
    async fn rules_for(&self, key: &PrincipalKey) -> anyhow::Result<RuleSet>;
    async fn version(&self) -> anyhow::Result<PolicyVersion>;
}

/// The configured store, read the way the broker reads it at CONNECT.
pub struct StoreSource<'a>(pub &'a dyn Store);

#[async_trait]
impl Source for StoreSource<'_> {
    async fn user(&self, name: &str) -> anyhow::Result<Option<UserRecord>> {
        self.0
            .user(name)
            .await
            .with_context(|| format!("cannot read user {name:?}"))
    }
    async fn rules_for(&self, key: &PrincipalKey) -> anyhow::Result<RuleSet> {
        self.0.rules_for(key).await.context("cannot load rules")
    }
    async fn version(&self) -> anyhow::Result<PolicyVersion> {
        self.0
            .policy_version()
            .await
            .context("cannot read the policy version")
    }
}

/// A policy file from `warden export`, answering as a store holding it would.
#[async_trait]
impl Source for PolicySnapshot {
    async fn user(&self, name: &str) -> anyhow::Result<Option<UserRecord>> {
        Ok(self
            .users
            .iter()
            .find(|u| u.username == name)
            .map(|u| UserRecord {
                username: u.username.clone(),
                password_hash: u.password_hash.clone(),
                enabled: u.enabled,
                superuser: u.superuser,
                // Memberships are sorted by (role, user): roles come sorted.
                roles: self
                    .memberships
                    .iter()
                    .filter(|m| m.username == name)
                    .map(|m| m.role.clone())
                    .collect(),
                cert_fingerprint: u.cert_fingerprint.clone(),
            }))
    }
    async fn rules_for(&self, key: &PrincipalKey) -> anyhow::Result<RuleSet> {
        let mut rules: Vec<_> = self
            .rules
            .iter()
            .filter(|r| match &r.subject {
                Subject::Everyone => true,
                Subject::User(name) => key.username.as_deref() == Some(name.as_str()),
                Subject::Role(name) => key.roles.contains(name),
            })
            .cloned()
            .collect();
        rules.sort_by_key(|r| r.id);
        Ok(RuleSet(rules))
    }
    async fn version(&self) -> anyhow::Result<PolicyVersion> {
        Ok(PolicyVersion(0))
    }
}

/// The facts of an imagined client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
    /// Subject alternative names: `name@host` is an e-mail SAN, `scheme://…`
    /// a URI SAN, anything else a DNS SAN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub san: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub o: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ou: Option<String>,
    /// SHA-256 of the certificate (for users pinned to one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl CertSpec {
    /// What the listener would take from such a certificate.
    pub fn info(&self) -> anyhow::Result<CertInfo> {
        let mut info = CertInfo {
            subject: self
                .cn
                .as_deref()
                .map_or_else(String::new, |cn| format!("CN={cn}")),
            cn: self.cn.clone(),
            sans: self.san.clone(),
            o: self.o.clone(),
            ou: self.ou.clone(),
            ..CertInfo::default()
        };
        for san in &self.san {
            if san.contains("://") {
                info.san_uri.push(san.clone());
            } else if san.contains('@') {
                info.san_email.push(san.clone());
            } else {
                info.san_dns.push(san.clone());
            }
        }
        if let Some(fp) = &self.fingerprint {
            info.fingerprint = warden_auth::normalize_fingerprint(fp)
                .context("invalid certificate fingerprint")?;
        }
        Ok(info)
    }
}

/// Who the imagined client is. With a certificate and no user, the user is
/// the one the certificate names (`username_from`); with neither, the client
/// is anonymous.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: Option<String>,
    pub client_id: Option<String>,
    pub cert: Option<CertSpec>,
}

/// The broker settings a verdict depends on.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub superuser_bypass: bool,
    pub allow_anonymous: bool,
    /// How a certificate names its user: from `--username-from`, else the
    /// first listener that maps certificates, else the CN.
    pub username_from: UsernameFrom,
}

impl Settings {
    pub fn from_config(config: &Config, username_from: Option<UsernameFrom>) -> Settings {
        Settings {
            superuser_bypass: config.policy.superuser_bypass,
            allow_anonymous: config.auth.allow_anonymous,
            username_from: username_from
                .or_else(|| config.listeners.iter().find_map(|l| l.username_from()))
                .unwrap_or(UsernameFrom::Cn),
        }
    }
}

/// The engine's action names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CheckAction {
    Connect,
    Publish,
    Subscribe,
    Receive,
}

/// What the imagined client does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub action: CheckAction,
    /// Topic (publish, receive) or filter (subscribe; a `$share/GROUP/`
    /// prefix is stripped as the broker does). Not used for connect.
    pub topic: Option<String>,
    pub qos: u8,
    pub retain: bool,
}

/// The answer, and everything that went into it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The user the client would be; None for an anonymous client.
    pub user: Option<String>,
    pub client_id: String,
    pub anonymous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertSpec>,
    pub roles: Vec<String>,
    pub superuser: bool,
    pub enabled: bool,
    /// Why the login itself would be refused (unknown user, disabled,
    /// pinned to another certificate, anonymous logins off); None if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_refused: Option<String>,
    pub allowed: bool,
    /// The policy's verdict (`allow` or `deny`, with qos or reason and rule).
    pub decision: Decision,
    /// Every rule of this client that applies to the action, matched or
    /// not, and why.
    pub explanation: Explanation,
}

/// What the broker would decide for `identity` doing `query`.
pub async fn evaluate(
    source: &dyn Source,
    settings: Settings,
    identity: &Identity,
    query: &Query,
) -> anyhow::Result<Report> {
    let cert = identity.cert.as_ref().map(CertSpec::info).transpose()?;
    let username = match (&identity.user, &cert) {
        (Some(user), _) => Some(user.clone()),
        (None, Some(info)) => {
            let peer = PeerInfo {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                listener: "check".into(),
                tls: true,
                cert: Some(Arc::new(info.clone())),
                ocsp: None,
            };
            Some(
                peer.mapped_username(settings.username_from)
                    .with_context(|| {
                        format!(
                            "the certificate names no user for username_from {:?}",
                            settings.username_from
                        )
                    })?,
            )
        }
        (None, None) => None,
    };
    let (user, login_refused) = match &username {
        Some(name) => match source.user(name).await? {
            Some(user) => {
                let presented = cert
                    .as_ref()
                    .map(|c| c.fingerprint.as_str())
                    .filter(|f| !f.is_empty());
                let refused = if !user.enabled {
                    Some("user disabled".to_owned())
                } else if !pin_holds(&user, presented) {
                    Some(
                        if presented.is_some() {
                            "user pinned to another certificate"
                        } else {
                            "user pinned to a certificate; none presented"
                        }
                        .to_owned(),
                    )
                } else {
                    None
                };
                (Some(user), refused)
            }
            None => (None, Some("unknown user".to_owned())),
        },
        None if settings.allow_anonymous => (None, None),
        None => (None, Some("anonymous logins are off".to_owned())),
    };
    let roles = user.as_ref().map(|u| u.roles.clone()).unwrap_or_default();
    let superuser = user.as_ref().is_some_and(|u| u.superuser);
    let principal = Principal {
        username: username.as_deref().map(Arc::from),
        client_id: identity
            .client_id
            .as_deref()
            .or(username.as_deref())
            .unwrap_or("check")
            .into(),
        peer: None,
        listener: "check".into(),
        cert: cert.map(Arc::new),
        roles: roles.clone(),
        superuser,
    };
    let key = PrincipalKey {
        username: username.clone(),
        roles: principal.roles.clone(),
    };
    let rules = source.rules_for(&key).await?;
    let version = source.version().await?;
    let engine = AclEngine::new(EngineOptions {
        superuser_bypass: settings.superuser_bypass,
    });
    let policy = engine
        .compile(&principal, &rules, version)
        .context("cannot compile the policy")?;

    let qos = QoS::from_u8(query.qos).unwrap_or(QoS::AtMostOnce);
    let filter;
    let action = match (query.action, query.topic.as_deref()) {
        (CheckAction::Connect, _) => Action::Connect,
        (CheckAction::Publish, Some(topic)) => Action::Publish {
            topic,
            qos,
            retain: query.retain,
        },
        (CheckAction::Receive, Some(topic)) => Action::Receive {
            topic,
            qos,
            retain: query.retain,
        },
        (CheckAction::Subscribe, Some(raw)) => {
            filter = plain_filter(raw);
            Action::Subscribe {
                filter: &filter,
                qos,
            }
        }
        (action, None) => anyhow::bail!("a topic is needed for {action:?}"),
    };
    let decision = policy.decide(&action);
    Ok(Report {
        user: username,
        client_id: principal.client_id.to_string(),
        anonymous: principal.username.is_none(),
        cert: identity.cert.clone(),
        roles,
        superuser,
        enabled: user.as_ref().is_none_or(|u| u.enabled),
        // A refused login never gets past CONNECT, whatever the rules say.
        allowed: decision.is_allow() && login_refused.is_none(),
        login_refused,
        decision,
        explanation: policy.explain(&action),
    })
}

/// The filter without a `$share/GROUP/` prefix; an invalid one is passed on
/// unchanged so the policy reports it as an invalid topic.
fn plain_filter(raw: &str) -> String {
    match SubscriptionFilter::parse(raw) {
        Ok(sub) => sub.filter.as_str().to_owned(),
        Err(_) => raw.to_owned(),
    }
}

/// The verdict as a word.
pub fn verdict(allowed: bool) -> &'static str {
    if allowed {
        "allow"
    } else {
        "deny"
    }
}

#[cfg(test)]
mod tests {
    use warden_auth::{Membership, SnapshotUser};
    use warden_policy::{ActionKind, ActionSet, Effect, RuleId, RuleSpec};

    use super::*;

    fn snapshot() -> PolicySnapshot {
        let rule = |id, subject, pattern: &str| {
            RuleSpec {
                effect: Effect::Allow,
                subject,
                actions: ActionSet::of(&[ActionKind::Publish]),
                pattern: pattern.into(),
                max_qos: None,
                retain: None,
            }
            .with_id(RuleId(id))
        };
        PolicySnapshot {
            users: vec![SnapshotUser {
                username: "dev1".into(),
                password_hash: None,
                enabled: true,
                superuser: false,
                cert_fingerprint: None,
            }],
            roles: vec!["devices".into()],
            memberships: vec![Membership {
                role: "devices".into(),
                username: "dev1".into(),
            }],
            rules: vec![
                rule(1, Subject::Role("devices".into()), "d/${cert.cn}/#"),
                rule(2, Subject::Everyone, "public/#"),
            ],
        }
    }

    fn settings(allow_anonymous: bool) -> Settings {
        Settings {
            superuser_bypass: true,
            allow_anonymous,
            username_from: UsernameFrom::Cn,
        }
    }

    fn publish(topic: &str) -> Query {
        Query {
            action: CheckAction::Publish,
            topic: Some(topic.into()),
            qos: 0,
            retain: false,
        }
    }

    #[tokio::test]
    async fn a_certificate_names_the_user_and_fills_its_placeholders() {
        let who = Identity {
            cert: Some(CertSpec {
                cn: Some("dev1".into()),
                ..CertSpec::default()
            }),
            ..Identity::default()
        };
        let snap = snapshot();
        let report = evaluate(&snap, settings(false), &who, &publish("d/dev1/t"))
            .await
            .unwrap();
        assert!(report.allowed, "{report:?}");
        assert_eq!(report.user.as_deref(), Some("dev1"));
        assert_eq!(report.decision.rule(), Some(RuleId(1)));
        let other = evaluate(&snap, settings(false), &who, &publish("d/dev2/t"))
            .await
            .unwrap();
        assert!(!other.allowed);
    }

    #[tokio::test]
    async fn anonymous_clients_get_the_everyone_rules_only_when_allowed_in() {
        let snap = snapshot();
        let anon = Identity::default();
        let on = evaluate(&snap, settings(true), &anon, &publish("public/x"))
            .await
            .unwrap();
        assert!(on.allowed && on.anonymous, "{on:?}");
        let off = evaluate(&snap, settings(false), &anon, &publish("public/x"))
            .await
            .unwrap();
        assert!(!off.allowed);
        assert_eq!(
            off.login_refused.as_deref(),
            Some("anonymous logins are off")
        );
    }

    #[test]
    fn sans_are_sorted_by_kind() {
        let info = CertSpec {
            san: vec!["a.example".into(), "x@y".into(), "spiffe://d/1".into()],
            ..CertSpec::default()
        }
        .info()
        .unwrap();
        assert_eq!(info.san_dns, ["a.example"]);
        assert_eq!(info.san_email, ["x@y"]);
        assert_eq!(info.san_uri, ["spiffe://d/1"]);
        assert_eq!(info.sans.len(), 3);
    }
}
