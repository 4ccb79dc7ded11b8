//! Table tests for the policy semantics of DESIGN.md §3 and policy/README.md:
//! resolution, subjects, superusers, subscribe coverage vs overlap, QoS and
//! retain conditions, `$` topics and `$share`. Placeholders and connect rules
//! are in placeholders.rs.

mod common;

use common::*;
use warden_policy::*;

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
fn ten_thousand_rules_compile_and_decide() {
    let rules: Vec<Rule> = (0..10_000u64)
        .map(|i| allow(i, &[Pub], &format!("fleet/{i}/#")))
        .collect();
    let p = policy(rules);
    assert_eq!(p.decide(&publish("fleet/9999/x")), allowed(9999, Q0));
    assert!(!p.decide(&publish("fleet/10000/x")).is_allow());
}
