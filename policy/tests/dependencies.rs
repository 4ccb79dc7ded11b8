//! `principal_dependencies`: what of a principal its compiled policy depends
//! on. The broker shares one compiled policy between principals that agree
//! on everything marked, so a false "independent" would hand one client
//! another's rights. The property test checks exactly that: whenever the
//! analysis says a part does not matter, changing it changes no decision.

mod common;

use common::*;
use proptest::prelude::*;
use warden_policy::{
    principal_dependencies, Action, ActionKind, CertInfo, Effect, Principal, PrincipalDependencies,
    RuleSet,
};

use ActionKind::{Connect, Publish, Receive, Subscribe};

fn deps(rules: Vec<warden_policy::Rule>) -> PrincipalDependencies {
    principal_dependencies(&alice(), &RuleSet(rules))
}

#[test]
fn plain_and_username_rules_depend_on_nothing_else() {
    let d = deps(vec![
        allow(1, &[Publish, Subscribe], "a/${username}/#"),
        deny(2, &[Receive], "b/#"),
    ]);
    assert_eq!(d, PrincipalDependencies::default());
}

#[test]
fn client_id_placeholders_and_connect_rules_depend_on_the_client_id() {
    assert!(deps(vec![allow(1, &[Publish], "d/${clientid}/#")]).client_id);
    assert!(deps(vec![allow(1, &[Connect], "alice-*")]).client_id);
    assert!(!deps(vec![allow(1, &[Publish], "d/${clientid}/#")]).cert);
}

#[test]
fn cert_placeholders_depend_on_the_certificate() {
    for pattern in ["c/${cert.cn}/#", "s/${cert.san}/#"] {
        let d = deps(vec![allow(1, &[Publish], pattern)]);
        assert!(d.cert && !d.client_id, "{pattern}");
    }
}

#[test]
fn rules_of_other_subjects_do_not_count() {
    let d = deps(vec![rule(
        1,
        Effect::Allow,
        "user:bob",
        &[Connect, Publish],
        "x/${clientid}",
    )]);
    assert_eq!(d, PrincipalDependencies::default());
}

#[test]
fn an_unparsable_pattern_depends_on_everything() {
    let d = deps(vec![allow(1, &[Publish], "x/${unterminated")]);
    assert!(d.client_id && d.cert);
}

const PATTERNS: &[&str] = &[
    "a/${username}/#",
    "d/${clientid}/#",
    "d/+/t",
    "c/${cert.cn}/#",
    "s/${cert.san}/+",
    "#",
    "alice-*",
    "alice-1",
    "other-*",
];
const TOPICS: &[&str] = &[
    "a/alice/x",
    "d/alice-1/x",
    "d/alice-2/x",
    "d/z/t",
    "c/dev1/x",
    "c/dev2/x",
    "s/dev1/y",
    "s/host2/y",
    "q",
];

fn arb_rule() -> impl Strategy<Value = warden_policy::Rule> {
    (
        0..PATTERNS.len(),
        any::<bool>(),
        prop::sample::subsequence(vec![Connect, Publish, Subscribe, Receive], 1..=2),
        prop::sample::select(vec!["everyone", "user:alice", "role:sensors", "user:bob"]),
    )
        .prop_map(|(p, is_allow, actions, subject)| {
            let effect = if is_allow {
                Effect::Allow
            } else {
                Effect::Deny
            };
            let pattern = PATTERNS[p];
            // Connect rules take client-id patterns, the others topic filters.
            let actions: Vec<_> = if pattern.starts_with("alice-") || pattern.starts_with("other-")
            {
                vec![Connect]
            } else {
                actions.into_iter().filter(|a| *a != Connect).collect()
            };
            let actions = if actions.is_empty() {
                vec![Publish]
            } else {
                actions
            };
            rule(0, effect, subject, &actions, pattern)
        })
}

fn with_cert(mut p: Principal, cn: &str, sans: &[&str]) -> Principal {
    p.cert = Some(std::sync::Arc::new(CertInfo {
        subject: format!("CN={cn}"),
        cn: Some(cn.to_owned()),
        sans: sans.iter().map(|s| (*s).to_owned()).collect(),
        ..CertInfo::default()
    }));
    p
}

fn decisions(p: &Principal, rules: &[warden_policy::Rule]) -> Vec<warden_policy::Decision> {
    let policy = policy_for(p, rules.to_vec());
    let mut out = vec![policy.decide(&Action::Connect)];
    for topic in TOPICS {
        out.push(policy.decide(&publish(topic)));
        out.push(policy.decide(&Action::Subscribe {
            filter: topic,
            qos: Q1,
        }));
        out.push(policy.decide(&Action::Receive {
            topic,
            qos: Q1,
            retain: false,
        }));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn an_independent_part_never_changes_a_decision(
        mut rules in prop::collection::vec(arb_rule(), 1..6)
    ) {
        for (i, r) in rules.iter_mut().enumerate() {
            r.id = warden_policy::RuleId(i as u64 + 1);
        }
        let base = with_cert(alice(), "dev1", &["dev1", "host1"]);
        let d = principal_dependencies(&base, &RuleSet(rules.clone()));
        let mut other_client = base.clone();
        other_client.client_id = "alice-2".into();
        let other_cert = with_cert(base.clone(), "dev2", &["host2"]);
        let no_cert = Principal { cert: None, ..base.clone() };
        let want = decisions(&base, &rules);
        if !d.client_id {
            prop_assert_eq!(&decisions(&other_client, &rules), &want);
        }
        if !d.cert {
            prop_assert_eq!(&decisions(&other_cert, &rules), &want);
            prop_assert_eq!(&decisions(&no_cert, &rules), &want);
        }
    }
}
