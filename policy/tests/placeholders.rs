//! Table tests for placeholder substitution (including injection and the
//! fail-closed treatment of deny rules), connect rules, rule validation,
//! serde shapes and explain.

mod common;

use common::*;
use warden_policy::*;

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
        cert: Some(std::sync::Arc::new(cert)),
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

#[test]
fn invalid_rule_fails_compile_only_for_clients_it_applies_to() {
    let broken = rule(1, Effect::Allow, "user:bob", &[Pub], "a/${nope}");
    let p = policy(vec![broken.clone(), allow(2, &[Pub], "x")]);
    assert!(p.decide(&publish("x")).is_allow());
    let bob = Principal {
        username: Some("bob".into()),
        ..alice()
    };
    let result = AclEngine::default().compile(&bob, &RuleSet(vec![broken]), PolicyVersion(1));
    assert!(result.is_err());
}
