//! The expectations file of `warden policy test` and `policy diff --tests`:
//! who does what, and whether the broker must allow or deny it.
//! docs/policy-tests.example.yaml shows every field.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::evaluate::{evaluate, CertSpec, CheckAction, Identity, Query, Report, Settings, Source};
use crate::config::UsernameFrom;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn of(allowed: bool) -> Verdict {
        if allowed {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// One expectation. Exactly one of `user`, `cert` (the user then comes
/// from the certificate) and `anonymous: true` says who the client is; a
/// `user` with a `cert` is a password login over a connection that also
/// presented that certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_from: Option<UsernameFrom>,
    pub action: CheckAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    pub expect: Verdict,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tests: Vec<Expectation>,
}

impl Expectation {
    fn check(&self) -> Result<(), String> {
        match (self.user.is_some(), self.cert.is_some(), self.anonymous) {
            (_, _, true) if self.user.is_some() || self.cert.is_some() => {
                return Err("anonymous: true takes no user or cert".into())
            }
            (false, false, false) => {
                return Err("say who the client is: user, cert or anonymous: true".into())
            }
            _ => {}
        }
        if self.qos > 2 {
            return Err(format!("qos {} is not 0, 1 or 2", self.qos));
        }
        if self.action != CheckAction::Connect && self.topic.is_none() {
            return Err("a topic is needed for this action".into());
        }
        Ok(())
    }

    /// `alice publish "a/b" qos 1 retained`, for reports.
    pub fn describe(&self) -> String {
        let who = match (&self.user, &self.cert) {
            (Some(user), _) => user.clone(),
            (None, Some(cert)) => format!(
                "cert CN={}{}",
                cert.cn.as_deref().unwrap_or("-"),
                if cert.san.is_empty() {
                    String::new()
                } else {
                    format!(" SAN={}", cert.san.join(","))
                }
            ),
            (None, None) => "anonymous".to_owned(),
        };
        let action = serde_json::to_value(self.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut text = format!("{who} {action}");
        if let Some(topic) = &self.topic {
            text.push_str(&format!(" {topic:?}"));
        }
        if self.qos > 0 {
            text.push_str(&format!(" qos {}", self.qos));
        }
        if self.retain {
            text.push_str(" retained");
        }
        text
    }

    /// The expectation's own name, or what it checks.
    pub fn title(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.describe())
    }

    /// What the broker would decide, from `source`.
    pub async fn run(&self, source: &dyn Source, settings: Settings) -> anyhow::Result<Report> {
        let identity = Identity {
            user: self.user.clone(),
            client_id: self.client_id.clone(),
            cert: self.cert.clone(),
        };
        let query = Query {
            action: self.action,
            topic: self.topic.clone(),
            qos: self.qos,
            retain: self.retain,
        };
        let settings = Settings {
            username_from: self.username_from.unwrap_or(settings.username_from),
            ..settings
        };
        evaluate(source, settings, &identity, &query).await
    }
}

/// Reads and checks an expectations file (`tests:` and a list).
pub fn load(path: &Path) -> anyhow::Result<Vec<Expectation>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: File = serde_yaml::from_str(&text)
        .with_context(|| format!("invalid expectations file {}", path.display()))?;
    for (i, test) in file.tests.iter().enumerate() {
        if let Err(why) = test.check() {
            bail!(
                "invalid expectations file {}: test {} ({}): {why}",
                path.display(),
                i + 1,
                test.title()
            );
        }
    }
    Ok(file.tests)
}

/// The rule that decided, as `4 (allow "a/#")`, or `none`.
pub fn deciding_rule(report: &Report) -> String {
    let Some(id) = report.decision.rule() else {
        return "none".to_owned();
    };
    match report.explanation.rules.iter().find(|t| t.rule == id) {
        Some(trace) => format!(
            "{id} ({} {:?})",
            super::acl::effect_str(trace.effect),
            trace.pattern
        ),
        None => id.to_string(),
    }
}

/// The verdict with its reason: `allow (qos 0, rule 4)`, or
/// `deny: user disabled` when the login itself would be refused.
pub fn got(report: &Report) -> String {
    match &report.login_refused {
        Some(why) => format!("deny: login refused, {why}"),
        None => report.decision.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy-tests.example.yaml");
        let tests = load(&path).unwrap();
        assert!(tests.len() >= 5);
        assert!(tests.iter().any(|t| t.anonymous));
        assert!(tests.iter().any(|t| t.cert.is_some()));
    }

    #[test]
    fn who_must_be_said_once() {
        let parse = |yaml: &str| -> Expectation { serde_yaml::from_str(yaml).unwrap() };
        let none = parse("{action: connect, expect: allow}");
        assert!(none.check().unwrap_err().contains("say who"));
        let both = parse("{user: a, anonymous: true, action: connect, expect: allow}");
        assert!(both.check().is_err());
        let no_topic = parse("{user: a, action: publish, expect: deny}");
        assert!(no_topic.check().unwrap_err().contains("topic"));
        assert!(
            serde_yaml::from_str::<Expectation>("{user: a, action: write, expect: deny}").is_err()
        );
    }
}
