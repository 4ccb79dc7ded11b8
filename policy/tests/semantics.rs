//! Table tests for the policy semantics of DESIGN.md §3 and policy/README.md:
//! one assertion per rule of the model, plus the wildcard, `$`, `$share` and
//! placeholder-injection corner cases.

use warden_policy::{
    AclEngine, Action, ActionKind, ActionSet, CertInfo, CompiledPolicy, Decision, DenyReason,
    Effect, EngineOptions, PolicyEngine, PolicyError, PolicyVersion, Principal, QoS, Rule, RuleId,
    RuleSet, RuleSpec, Subject, SubscriptionFilter,
};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;

fn rule(id: u64, effect: Effect, subject: &str, actions: &[ActionKind], pattern: &str) -> Rule {
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

fn allow(id: u64, actions: &[ActionKind], pattern: &str) -> Rule {
    rule(id, Effect::Allow, "everyone", actions, pattern)
}

fn deny(id: u64, actions: &[ActionKind], pattern: &str) -> Rule {
    rule(id, Effect::Deny, "everyone", actions, pattern)
}

fn alice() -> Principal {
    Principal {
        username: Some("alice".into()),
        client_id: "alice-1".into(),
        listener: "tls".into(),
        roles: vec!["sensors".into()],
        ..Principal::default()
    }
}

fn policy_for(p: &Principal, rules: Vec<Rule>) -> std::sync::Arc<dyn CompiledPolicy> {
    AclEngine::default()
        .compile(p, &RuleSet(rules), PolicyVersion(1))
        .expect("compile")
}

fn policy(rules: Vec<Rule>) -> std::sync::Arc<dyn CompiledPolicy> {
    policy_for(&alice(), rules)
}

fn publish(topic: &str) -> Action<'_> {
    Action::Publish {
        topic,
        qos: Q0,
        retain: false,
    }
}

fn receive(topic: &str) -> Action<'_> {
    Action::Receive {
        topic,
        qos: Q2,
        retain: false,
    }
}

fn subscribe(filter: &str, qos: QoS) -> Action<'_> {
    Action::Subscribe { filter, qos }
}

fn allowed(id: u64, qos: QoS) -> Decision {
    Decision::Allow {
        qos,
        rule: Some(RuleId(id)),
    }
}

fn denied(reason: DenyReason, id: Option<u64>) -> Decision {
    Decision::Deny {
        reason,
        rule: id.map(RuleId),
    }
}

use ActionKind::{Connect, Publish as Pub, Receive as Recv, Subscribe as Sub};

#[test]
fn no_matching_allow_means_deny() {
    let p = policy(vec![allow(1, &[Pub], "a/b")]);
    assert_eq!(
        p.decide(&publish("a/c")),
        denied(DenyReason::NoMatchingAllow, None)
    );
}

#[test]
fn empty_rule_set_denies_everything_but_connect() {
    let p = policy(vec![]);
    assert!(!p.decide(&publish("a")).is_allow());
    assert!(!p.decide(&subscribe("a", Q0)).is_allow());
    assert!(!p.decide(&receive("a")).is_allow());
    assert!(p.decide(&Action::Connect).is_allow());
}

#[test]
fn matching_allow_allows_and_names_the_rule() {
    let p = policy(vec![allow(7, &[Pub], "a/+")]);
    assert_eq!(p.decide(&publish("a/b")), allowed(7, Q0));
}

#[test]
fn deny_overrides_allow() {
    let p = policy(vec![allow(1, &[Pub], "a/#"), deny(2, &[Pub], "a/secret")]);
    assert_eq!(
        p.decide(&publish("a/secret")),
        denied(DenyReason::DeniedByRule, Some(2))
    );
    assert_eq!(p.decide(&publish("a/open")), allowed(1, Q0));
}

#[test]
fn order_in_the_store_never_matters() {
    let rules = vec![
        deny(9, &[Pub], "a/+"),
        allow(3, &[Pub], "a/#"),
        allow(1, &[Pub], "#"),
    ];
    let mut reversed = rules.clone();
    reversed.reverse();
    for topic in ["a/x", "a/x/y", "b"] {
        assert_eq!(
            policy(rules.clone()).decide(&publish(topic)),
            policy(reversed.clone()).decide(&publish(topic))
        );
    }
}

#[test]
fn actions_are_separate() {
    let p = policy(vec![allow(1, &[Pub], "a/#")]);
    assert!(p.decide(&publish("a/x")).is_allow());
    assert!(!p.decide(&receive("a/x")).is_allow());
    assert!(!p.decide(&subscribe("a/x", Q0)).is_allow());
}

#[test]
fn subjects_user_role_everyone() {
    let rules = vec![
        rule(1, Effect::Allow, "user:alice", &[Pub], "u/alice"),
        rule(2, Effect::Allow, "role:sensors", &[Pub], "r/sensors"),
        rule(3, Effect::Allow, "user:bob", &[Pub], "u/bob"),
        rule(4, Effect::Allow, "role:ops", &[Pub], "r/ops"),
        rule(5, Effect::Allow, "everyone", &[Pub], "all"),
    ];
    let p = policy(rules);
    assert!(p.decide(&publish("u/alice")).is_allow());
    assert!(p.decide(&publish("r/sensors")).is_allow());
    assert!(!p.decide(&publish("u/bob")).is_allow());
    assert!(!p.decide(&publish("r/ops")).is_allow());
    assert!(p.decide(&publish("all")).is_allow());
}

#[test]
fn deny_for_a_role_the_client_lacks_does_not_apply() {
    let p = policy(vec![
        allow(1, &[Pub], "#"),
        rule(2, Effect::Deny, "role:ops", &[Pub], "#"),
    ]);
    assert!(p.decide(&publish("x")).is_allow());
}

#[test]
fn superuser_bypasses_rules_by_default() {
    let su = Principal {
        superuser: true,
        ..alice()
    };
    let p = policy_for(&su, vec![deny(1, &[Pub], "#")]);
    assert_eq!(
        p.decide(&Action::Publish {
            topic: "x",
            qos: Q2,
            retain: true
        }),
        Decision::Allow {
            qos: Q2,
            rule: None
        }
    );
    assert_eq!(
        p.decide(&subscribe("$SYS/#", Q1)),
        Decision::Allow {
            qos: Q1,
            rule: None
        }
    );
}

#[test]
fn superuser_evaluated_like_anyone_when_bypass_is_off() {
    let su = Principal {
        superuser: true,
        ..alice()
    };
    let engine = AclEngine::new(EngineOptions {
        superuser_bypass: false,
    });
    let p = engine
        .compile(&su, &RuleSet(vec![deny(1, &[Pub], "#")]), PolicyVersion(1))
        .expect("compile");
    assert_eq!(
        p.decide(&publish("x")),
        denied(DenyReason::DeniedByRule, Some(1))
    );
}

#[test]
fn invalid_topics_are_denied_even_for_superusers() {
    let su = Principal {
        superuser: true,
        ..alice()
    };
    let p = policy_for(&su, vec![]);
    assert_eq!(
        p.decide(&publish("a/+")),
        denied(DenyReason::InvalidTopic, None)
    );
    assert_eq!(
        p.decide(&publish("")),
        denied(DenyReason::InvalidTopic, None)
    );
    assert_eq!(
        p.decide(&subscribe("a/#/b", Q0)),
        denied(DenyReason::InvalidTopic, None)
    );
    assert_eq!(
        p.decide(&receive("a\0")),
        denied(DenyReason::InvalidTopic, None)
    );
}

#[test]
fn subscribe_allowed_when_an_allow_covers_the_filter() {
    let p = policy(vec![allow(1, &[Sub], "a/#")]);
    assert_eq!(p.decide(&subscribe("a/+/c", Q1)), allowed(1, Q1));
    assert_eq!(p.decide(&subscribe("a", Q1)), allowed(1, Q1));
}

#[test]
fn subscribe_refused_when_allow_only_overlaps() {
    let p = policy(vec![allow(1, &[Sub], "a/+")]);
    assert_eq!(
        p.decide(&subscribe("a/#", Q0)),
        denied(DenyReason::NoMatchingAllow, None)
    );
    assert_eq!(
        p.decide(&subscribe("#", Q0)),
        denied(DenyReason::NoMatchingAllow, None)
    );
}

#[test]
fn subscribe_denied_when_a_deny_covers_the_filter() {
    let p = policy(vec![allow(1, &[Sub], "#"), deny(2, &[Sub], "a/#")]);
    assert_eq!(
        p.decide(&subscribe("a/b", Q0)),
        denied(DenyReason::DeniedByRule, Some(2))
    );
}

#[test]
fn overlapping_deny_grants_subscription_and_receive_filters() {
    let p = policy(vec![
        allow(1, &[Sub, Recv], "#"),
        deny(2, &[Sub, Recv], "a/secret"),
    ]);
    assert_eq!(p.decide(&subscribe("a/+", Q0)), allowed(1, Q0));
    assert_eq!(
        p.decide(&receive("a/secret")),
        denied(DenyReason::DeniedByRule, Some(2))
    );
    assert_eq!(p.decide(&receive("a/open")), allowed(1, Q2));
}

#[test]
fn subscribe_max_qos_grants_lower_qos() {
    let mut r = allow(1, &[Sub], "a/#");
    r.max_qos = Some(Q1);
    let p = policy(vec![r]);
    assert_eq!(p.decide(&subscribe("a/b", Q2)), allowed(1, Q1));
    assert_eq!(p.decide(&subscribe("a/b", Q0)), allowed(1, Q0));
}

#[test]
fn subscribe_takes_the_most_generous_covering_allow() {
    let mut low = allow(1, &[Sub], "a/#");
    low.max_qos = Some(Q0);
    let mut high = allow(2, &[Sub], "a/b");
    high.max_qos = Some(Q2);
    let p = policy(vec![low, high]);
    assert_eq!(p.decide(&subscribe("a/b", Q2)), allowed(2, Q2));
    assert_eq!(p.decide(&subscribe("a/c", Q2)), allowed(1, Q0));
}

#[test]
fn publish_above_max_qos_is_denied() {
    let mut r = allow(1, &[Pub], "a/#");
    r.max_qos = Some(Q1);
    let p = policy(vec![r]);
    assert_eq!(
        p.decide(&Action::Publish {
            topic: "a/b",
            qos: Q2,
            retain: false
        }),
        denied(DenyReason::QosAboveMax, Some(1))
    );
    assert_eq!(
        p.decide(&Action::Publish {
            topic: "a/b",
            qos: Q1,
            retain: false
        }),
        allowed(1, Q1)
    );
}

#[test]
fn receive_above_max_qos_is_delivered_lower() {
    let mut r = allow(1, &[Recv], "a/#");
    r.max_qos = Some(Q0);
    let p = policy(vec![r]);
    assert_eq!(p.decide(&receive("a/b")), allowed(1, Q0));
}

#[test]
fn retain_false_denies_retained_publish() {
    let mut r = allow(1, &[Pub], "a/#");
    r.retain = Some(false);
    let p = policy(vec![r]);
    assert_eq!(
        p.decide(&Action::Publish {
            topic: "a/b",
            qos: Q0,
            retain: true
        }),
        denied(DenyReason::RetainNotAllowed, Some(1))
    );
    assert_eq!(
        p.decide(&Action::Publish {
            topic: "a/b",
            qos: Q0,
            retain: false
        }),
        allowed(1, Q0)
    );
}

#[test]
fn retained_publish_allowed_by_another_allow() {
    let mut r = allow(1, &[Pub], "a/#");
    r.retain = Some(false);
    let p = policy(vec![r, allow(2, &[Pub], "a/status")]);
    assert_eq!(
        p.decide(&Action::Publish {
            topic: "a/status",
            qos: Q0,
            retain: true
        }),
        allowed(2, Q0)
    );
}

#[test]
fn deny_with_retain_true_denies_only_retained() {
    let mut d = deny(2, &[Pub, Sub], "a/#");
    d.retain = Some(true);
    let p = policy(vec![allow(1, &[Pub, Sub], "a/#"), d]);
    assert_eq!(
        p.decide(&Action::Publish {
            topic: "a/b",
            qos: Q0,
            retain: true
        }),
        denied(DenyReason::DeniedByRule, Some(2))
    );
    assert_eq!(p.decide(&publish("a/b")), allowed(1, Q0));
    assert_eq!(p.decide(&subscribe("a/b", Q0)), allowed(1, Q0));
}

#[test]
fn dollar_topics_not_matched_by_leading_wildcards() {
    let p = policy(vec![
        allow(1, &[Pub, Sub, Recv], "#"),
        allow(2, &[Pub], "+/x"),
    ]);
    assert!(!p.decide(&publish("$SYS/x")).is_allow());
    assert!(!p.decide(&receive("$SYS/broker/load")).is_allow());
    assert!(!p.decide(&subscribe("$SYS/#", Q0)).is_allow());
    assert!(p.decide(&publish("a/x")).is_allow());
}

#[test]
fn dollar_topics_matched_by_explicit_rules() {
    let p = policy(vec![allow(1, &[Sub, Recv], "$SYS/#")]);
    assert!(p.decide(&subscribe("$SYS/broker/+", Q0)).is_allow());
    assert!(p.decide(&receive("$SYS/broker/load")).is_allow());
}

#[test]
fn shared_subscription_is_checked_on_the_plain_filter() {
    let p = policy(vec![allow(1, &[Sub], "jobs/#")]);
    let s = SubscriptionFilter::parse("$share/workers/jobs/+").expect("valid");
    assert_eq!(s.share_group.as_deref(), Some("workers"));
    assert!(p.decide(&subscribe(s.filter.as_str(), Q0)).is_allow());
    let other = SubscriptionFilter::parse("$share/workers/other").expect("valid");
    assert!(!p.decide(&subscribe(other.filter.as_str(), Q0)).is_allow());
}

#[test]
fn username_placeholder_substituted() {
    let p = policy(vec![allow(1, &[Pub], "sensors/${username}/#")]);
    assert!(p.decide(&publish("sensors/alice/t")).is_allow());
    assert!(!p.decide(&publish("sensors/bob/t")).is_allow());
}

#[test]
fn clientid_and_cert_placeholders_substituted() {
    let cert = CertInfo {
        cn: Some("dev-7".into()),
        sans: vec!["a.example".into(), "b.example".into()],
        ..CertInfo::default()
    };
    let who = Principal {
        cert: Some(cert),
        ..alice()
    };
    let rules = vec![
        allow(1, &[Pub], "c/${clientid}"),
        allow(2, &[Pub], "cn/${cert.cn}"),
        allow(3, &[Pub], "san/${cert.san}/#"),
    ];
    let p = policy_for(&who, rules);
    assert!(p.decide(&publish("c/alice-1")).is_allow());
    assert!(p.decide(&publish("cn/dev-7")).is_allow());
    assert!(p.decide(&publish("san/a.example/x")).is_allow());
    assert!(p.decide(&publish("san/b.example/x")).is_allow());
    assert!(!p.decide(&publish("san/c.example/x")).is_allow());
}

#[test]
fn injected_username_does_not_widen_an_allow() {
    let evil = Principal {
        username: Some("a/#".into()),
        ..alice()
    };
    let p = policy_for(&evil, vec![allow(1, &[Pub, Sub], "${username}/data")]);
    assert!(!p.decide(&publish("a/anything")).is_allow());
    assert!(!p.decide(&publish("a/x/data")).is_allow());
    assert!(!p.decide(&subscribe("a/#", Q0)).is_allow());
    assert_eq!(p.warnings().len(), 1);
}

#[test]
fn injected_plus_in_clientid_does_not_widen() {
    let evil = Principal {
        client_id: "+".into(),
        ..alice()
    };
    let p = policy_for(&evil, vec![allow(1, &[Pub], "c/${clientid}/x")]);
    assert!(!p.decide(&publish("c/other/x")).is_allow());
}

#[test]
fn dollar_username_cannot_reach_dollar_topics() {
    let evil = Principal {
        username: Some("$SYS".into()),
        ..alice()
    };
    let p = policy_for(&evil, vec![allow(1, &[Sub], "${username}/#")]);
    assert!(!p.decide(&subscribe("$SYS/#", Q0)).is_allow());
}

#[test]
fn missing_placeholder_value_disables_allow() {
    let anon = Principal {
        username: None,
        ..alice()
    };
    let p = policy_for(
        &anon,
        vec![
            allow(1, &[Pub], "u/${username}"),
            allow(2, &[Pub], "cn/${cert.cn}"),
        ],
    );
    assert!(!p.decide(&publish("u/")).is_allow());
    assert_eq!(p.warnings().len(), 2);
}

#[test]
fn deny_with_unusable_placeholder_fails_closed() {
    let anon = Principal {
        username: None,
        ..alice()
    };
    let rules = vec![
        allow(1, &[Pub], "#"),
        deny(2, &[Pub], "home/${username}/private"),
    ];
    let p = policy_for(&anon, rules);
    assert_eq!(
        p.decide(&publish("home/x/private")),
        denied(DenyReason::DeniedByRule, Some(2))
    );
    assert_eq!(
        p.decide(&publish("home/other")),
        denied(DenyReason::DeniedByRule, Some(2))
    );
    assert!(p.decide(&publish("office/x")).is_allow());
    assert_eq!(p.warnings()[0].widened_to.as_deref(), Some("home/#"));
}

#[test]
fn deny_with_unusable_first_level_placeholder_denies_every_topic() {
    let evil = Principal {
        username: Some("a+b".into()),
        ..alice()
    };
    let p = policy_for(
        &evil,
        vec![allow(1, &[Pub], "#"), deny(2, &[Pub], "${username}/x")],
    );
    assert!(!p.decide(&publish("anything")).is_allow());
    assert!(!p.decide(&publish("$SYS/x")).is_allow());
}

#[test]
fn connect_without_connect_rules_is_allowed() {
    let p = policy(vec![allow(1, &[Pub], "#")]);
    assert_eq!(
        p.decide(&Action::Connect),
        Decision::Allow {
            qos: Q0,
            rule: None
        }
    );
}

#[test]
fn connect_client_id_must_match_an_allow() {
    let ok = policy(vec![allow(1, &[Connect], "${username}-*")]);
    assert_eq!(
        ok.decide(&Action::Connect),
        Decision::Allow {
            qos: Q0,
            rule: Some(RuleId(1))
        }
    );
    let other = Principal {
        client_id: "bob-1".into(),
        ..alice()
    };
    let p = policy_for(&other, vec![allow(1, &[Connect], "${username}-*")]);
    assert_eq!(
        p.decide(&Action::Connect),
        denied(DenyReason::ClientIdNotAllowed, None)
    );
}

#[test]
fn connect_deny_overrides_allow() {
    let p = policy(vec![
        allow(1, &[Connect], "*"),
        deny(2, &[Connect], "alice-*"),
    ]);
    assert_eq!(
        p.decide(&Action::Connect),
        denied(DenyReason::DeniedByRule, Some(2))
    );
}

#[test]
fn connect_placeholder_star_is_literal() {
    let star = Principal {
        username: Some("*".into()),
        client_id: "whatever".into(),
        ..alice()
    };
    let p = policy_for(&star, vec![allow(1, &[Connect], "${username}")]);
    assert!(!p.decide(&Action::Connect).is_allow());
}

#[test]
fn connect_rule_with_missing_value_still_gates() {
    let anon = Principal {
        username: None,
        ..alice()
    };
    let p = policy_for(&anon, vec![allow(1, &[Connect], "${username}-*")]);
    assert_eq!(
        p.decide(&Action::Connect),
        denied(DenyReason::ClientIdNotAllowed, None)
    );
}

#[test]
fn rule_validation() {
    let mut mixed = allow(1, &[Connect, Pub], "x").spec();
    assert_eq!(
        mixed.validate(),
        Err(PolicyError::ConnectMixedWithTopicActions)
    );
    mixed.actions = ActionSet::of(&[Pub]);
    mixed.pattern = "a/${nope}".into();
    assert_eq!(
        mixed.validate(),
        Err(PolicyError::UnknownPlaceholder("nope".into()))
    );
    mixed.pattern = "a/#/b".into();
    assert!(matches!(
        mixed.validate(),
        Err(PolicyError::InvalidFilter { .. })
    ));
    mixed.pattern = "a/${username".into();
    assert!(matches!(
        mixed.validate(),
        Err(PolicyError::UnterminatedPlaceholder(_))
    ));
    mixed.pattern = "a/x${username}".into();
    assert_eq!(mixed.validate(), Ok(()));
    let mut d = deny(1, &[Pub], "a").spec();
    d.max_qos = Some(Q1);
    assert_eq!(d.validate(), Err(PolicyError::MaxQosOnDeny));
    let invalid = RuleSet(vec![allow(1, &[Pub], "a/${bad}")]);
    assert!(AclEngine::default()
        .compile(&alice(), &invalid, PolicyVersion(1))
        .is_err());
}

#[test]
fn rule_spec_yaml_shape() {
    let yaml = "{ effect: allow, subject: \"role:sensors\", actions: [publish], pattern: \"sensors/${username}/#\", max_qos: 1, retain: false }";
    let spec: RuleSpec = serde_yaml::from_str(yaml).expect("parse");
    assert_eq!(spec.subject, Subject::Role("sensors".into()));
    assert_eq!(spec.max_qos, Some(Q1));
    let json = serde_json::to_value(allow(3, &[Pub, Sub], "a").spec()).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"effect":"allow","subject":"everyone","actions":["publish","subscribe"],"pattern":"a"})
    );
    assert!(serde_yaml::from_str::<RuleSpec>(
        "{ effect: allow, subject: \"group:x\", actions: [], pattern: a }"
    )
    .is_err());
    assert!(serde_json::from_str::<QoS>("3").is_err());
}

#[test]
fn explain_lists_every_applicable_rule() {
    let rules = vec![
        allow(1, &[Pub], "a/#"),
        deny(2, &[Pub], "a/secret"),
        allow(3, &[Sub], "a/#"),
        rule(4, Effect::Allow, "user:bob", &[Pub], "#"),
    ];
    let e = policy(rules).explain(&publish("a/secret"));
    assert_eq!(e.decision, denied(DenyReason::DeniedByRule, Some(2)));
    let ids: Vec<u64> = e.rules.iter().map(|t| t.rule.0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(e.rules.iter().any(|t| t.rule == RuleId(2) && t.decided));
    assert!(e.to_string().contains("rule 2"));
}

#[test]
fn version_is_kept() {
    let p = AclEngine::default()
        .compile(&alice(), &RuleSet::default(), PolicyVersion(42))
        .expect("compile");
    assert_eq!(p.version(), PolicyVersion(42));
}
