//! The verdict of one policy decision, with the rule that decided it.

use serde::Serialize;

use crate::qos::QoS;
use crate::rule::RuleId;

/// The verdict. `Copy`, so the publish path never allocates for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
#[non_exhaustive]
pub enum Decision {
    /// Allowed. `qos` is the granted QoS: for subscribe and receive it may be
    /// lower than requested (`max_qos`); for connect it is `AtMostOnce` and
    /// carries no meaning. `rule` is `None` for a superuser bypass or for a
    /// connect with no connect rule.
    Allow { qos: QoS, rule: Option<RuleId> },
    /// Denied, with why and the rule that decided (if one did).
    Deny {
        reason: DenyReason,
        rule: Option<RuleId>,
    },
}

/// Why an action was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenyReason {
    /// No allow rule matched.
    NoMatchingAllow,
    /// A deny rule matched (deny overrides allow).
    DeniedByRule,
    /// Publish: allow rules matched, but the QoS is above their `max_qos`.
    QosAboveMax,
    /// Publish/receive: allow rules matched, but they do not allow retained messages.
    RetainNotAllowed,
    /// The topic or filter in the request is not valid MQTT.
    InvalidTopic,
    /// Connect rules apply to this client and none allows its client id.
    ClientIdNotAllowed,
    /// An external decider (`auth.http` with `authorize_each`) said deny.
    DeniedByService,
    /// An external decider had no answer in time (down, slow, malformed):
    /// fail closed.
    ServiceUnavailable,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The rule that decided, if any.
    pub fn rule(&self) -> Option<RuleId> {
        match self {
            Decision::Allow { rule, .. } | Decision::Deny { rule, .. } => *rule,
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DenyReason::NoMatchingAllow => "no matching allow rule",
            DenyReason::DeniedByRule => "denied by rule",
            DenyReason::QosAboveMax => "qos above max_qos",
            DenyReason::RetainNotAllowed => "retained messages not allowed",
            DenyReason::InvalidTopic => "invalid topic or filter",
            DenyReason::ClientIdNotAllowed => "client id not allowed",
            DenyReason::DeniedByService => "denied by the auth service",
            DenyReason::ServiceUnavailable => "no answer from the auth service (fail closed)",
        })
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Allow { qos, rule: Some(r) } => write!(f, "allow (qos {qos}, rule {})", r.0),
            Decision::Allow { qos, rule: None } => write!(f, "allow (qos {qos})"),
            Decision::Deny {
                reason,
                rule: Some(r),
            } => write!(f, "deny: {reason} (rule {})", r.0),
            Decision::Deny { reason, rule: None } => write!(f, "deny: {reason}"),
        }
    }
}
