//! Rules as the stores keep them and the YAML export writes them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::PolicyError;
use crate::placeholder;
use crate::qos::QoS;

/// A rule's stable id, assigned by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(pub u64);

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// Whom a rule applies to. Serialised as `"user:NAME"`, `"role:NAME"` or `"everyone"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    User(String),
    Role(String),
    Everyone,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::User(name) => write!(f, "user:{name}"),
            Subject::Role(name) => write!(f, "role:{name}"),
            Subject::Everyone => f.write_str("everyone"),
        }
    }
}

impl std::str::FromStr for Subject {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Subject, PolicyError> {
        let bad = || PolicyError::InvalidSubject(s.to_owned());
        if s == "everyone" {
            return Ok(Subject::Everyone);
        }
        match s.split_once(':') {
            Some(("user", name)) if !name.is_empty() => Ok(Subject::User(name.to_owned())),
            Some(("role", name)) if !name.is_empty() => Ok(Subject::Role(name.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Connect,
    Publish,
    Subscribe,
    Receive,
}

impl ActionKind {
    pub const ALL: [ActionKind; 4] = [
        ActionKind::Connect,
        ActionKind::Publish,
        ActionKind::Subscribe,
        ActionKind::Receive,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Connect => "connect",
            ActionKind::Publish => "publish",
            ActionKind::Subscribe => "subscribe",
            ActionKind::Receive => "receive",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of action kinds. Serialised as a list: `["publish", "subscribe"]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ActionSet(u8);

impl ActionSet {
    pub const EMPTY: ActionSet = ActionSet(0);

    pub fn of(kinds: &[ActionKind]) -> ActionSet {
        kinds.iter().fold(ActionSet::EMPTY, |set, k| set.with(*k))
    }

    #[must_use]
    pub fn with(self, kind: ActionKind) -> ActionSet {
        ActionSet(self.0 | kind.bit())
    }

    pub fn contains(self, kind: ActionKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = ActionKind> {
        ActionKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl FromIterator<ActionKind> for ActionSet {
    fn from_iter<I: IntoIterator<Item = ActionKind>>(iter: I) -> Self {
        iter.into_iter().fold(ActionSet::EMPTY, ActionSet::with)
    }
}

impl Serialize for ActionSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ActionSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let kinds = Vec::<ActionKind>::deserialize(deserializer)?;
        Ok(kinds.into_iter().collect())
    }
}

/// A rule before the store gives it an id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleSpec {
    pub effect: Effect,
    pub subject: Subject,
    pub actions: ActionSet,
    /// Topic filter template for publish/subscribe/receive rules; client-id
    /// pattern (`*` = any run of characters) for connect rules.
    /// Placeholders: `${username}` `${clientid}` `${cert.cn}` `${cert.san}`.
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_qos: Option<QoS>,
    /// On an allow rule, `Some(false)`: this rule does not allow retained
    /// messages. On a deny rule, `Some(r)`: the deny applies only to messages
    /// whose retain flag is `r`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
}

impl RuleSpec {
    /// Checks everything that can be checked without a principal.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.actions.is_empty() {
            return Err(PolicyError::NoActions);
        }
        if self.effect == Effect::Deny && self.max_qos.is_some() {
            return Err(PolicyError::MaxQosOnDeny);
        }
        if self.actions.contains(ActionKind::Connect) {
            if self.actions != ActionSet::of(&[ActionKind::Connect]) {
                return Err(PolicyError::ConnectMixedWithTopicActions);
            }
            if self.max_qos.is_some() || self.retain.is_some() {
                return Err(PolicyError::ConditionOnConnect);
            }
            placeholder::validate_client_id_pattern(&self.pattern)
        } else {
            placeholder::validate_filter_template(&self.pattern)
        }
    }

    pub fn with_id(self, id: RuleId) -> Rule {
        Rule {
            id,
            effect: self.effect,
            subject: self.subject,
            actions: self.actions,
            pattern: self.pattern,
            max_qos: self.max_qos,
            retain: self.retain,
        }
    }
}

/// A stored rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub id: RuleId,
    pub effect: Effect,
    pub subject: Subject,
    pub actions: ActionSet,
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_qos: Option<QoS>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
}

impl Rule {
    pub fn spec(&self) -> RuleSpec {
        RuleSpec {
            effect: self.effect,
            subject: self.subject.clone(),
            actions: self.actions,
            pattern: self.pattern.clone(),
            max_qos: self.max_qos,
            retain: self.retain,
        }
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        self.spec().validate()
    }
}

/// The rules loaded for one principal (or a whole export). Order never matters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleSet(pub Vec<Rule>);
