//! Helpers shared by the policy table tests: rule builders, a sample principal, short decision constructors.
#![allow(dead_code, unused_imports)]

use warden_policy::{
    AclEngine, Action, ActionKind, ActionSet, CompiledPolicy, Decision, DenyReason, Effect,
    PolicyEngine, PolicyVersion, Principal, QoS, Rule, RuleId, RuleSet, RuleSpec,
};

pub const Q0: QoS = QoS::AtMostOnce;
pub const Q1: QoS = QoS::AtLeastOnce;
pub const Q2: QoS = QoS::ExactlyOnce;

pub fn rule(id: u64, effect: Effect, subject: &str, actions: &[ActionKind], pattern: &str) -> Rule {
    RuleSpec {
        effect,
        subject: subject.parse().expect("subject"),
        actions: ActionSet::of(actions),
        pattern: pattern.to_owned(),
        max_qos: None,
        retain: None,
    }
    .with_id(RuleId(id))
}

pub fn allow(id: u64, actions: &[ActionKind], pattern: &str) -> Rule {
    rule(id, Effect::Allow, "everyone", actions, pattern)
}

pub fn deny(id: u64, actions: &[ActionKind], pattern: &str) -> Rule {
    rule(id, Effect::Deny, "everyone", actions, pattern)
}

pub fn alice() -> Principal {
    Principal {
        username: Some("alice".into()),
        client_id: "alice-1".into(),
        listener: "tls".into(),
        roles: vec!["sensors".into()],
        ..Principal::default()
    }
}

pub fn policy_for(p: &Principal, rules: Vec<Rule>) -> std::sync::Arc<dyn CompiledPolicy> {
    AclEngine::default()
        .compile(p, &RuleSet(rules), PolicyVersion(1))
        .expect("compile")
}

pub fn policy(rules: Vec<Rule>) -> std::sync::Arc<dyn CompiledPolicy> {
    policy_for(&alice(), rules)
}

pub fn publish(topic: &str) -> Action<'_> {
    Action::Publish {
        topic,
        qos: Q0,
        retain: false,
    }
}

pub fn receive(topic: &str) -> Action<'_> {
    Action::Receive {
        topic,
        qos: Q2,
        retain: false,
    }
}

pub fn subscribe(filter: &str, qos: QoS) -> Action<'_> {
    Action::Subscribe { filter, qos }
}

pub fn allowed(id: u64, qos: QoS) -> Decision {
    Decision::Allow {
        qos,
        rule: Some(RuleId(id)),
    }
}

pub fn denied(reason: DenyReason, id: Option<u64>) -> Decision {
    Decision::Deny {
        reason,
        rule: id.map(RuleId),
    }
}

pub use ActionKind::{Connect, Publish as Pub, Receive as Recv, Subscribe as Sub};
