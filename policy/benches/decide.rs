//! Criterion benchmark of `decide` for publish: 10, 100 and 10,000 rules for
//! one principal, and a principal with 50 wildcard rules.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use warden_policy::{
    AclEngine, Action, ActionKind, ActionSet, Effect, PolicyEngine, PolicyVersion, Principal, QoS,
    Rule, RuleId, RuleSet, RuleSpec, Subject,
};

fn rule(id: u64, effect: Effect, pattern: String) -> Rule {
    RuleSpec {
        effect,
        subject: Subject::User("alice".into()),
        actions: ActionSet::of(&[ActionKind::Publish, ActionKind::Subscribe]),
        pattern,
        max_qos: None,
        retain: None,
    }
    .with_id(RuleId(id))
}

/// `n` literal-prefix rules like `fleet/17/${username}/#`, one deny in ten.
fn literal_rules(n: u64) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let effect = if i % 10 == 9 {
                Effect::Deny
            } else {
                Effect::Allow
            };
            rule(i, effect, format!("fleet/{i}/${{username}}/#"))
        })
        .collect()
}

/// 50 rules with `+` and `#` at several levels.
fn wildcard_rules() -> Vec<Rule> {
    (0..50u64)
        .map(|i| {
            let pattern = match i % 5 {
                0 => format!("site/+/dev{i}/#"),
                1 => format!("+/area{i}/+/temp"),
                2 => format!("site/{i}/+/+/#"),
                3 => format!("+/+/x{i}/#"),
                _ => format!("site/+/+/y{i}"),
            };
            rule(i, Effect::Allow, pattern)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let alice = Principal {
        username: Some("alice".into()),
        client_id: "alice-1".into(),
        ..Principal::default()
    };
    let engine = AclEngine::default();
    let mut group = c.benchmark_group("decide_publish");
    for n in [10u64, 100, 10_000] {
        let policy = engine
            .compile(&alice, &RuleSet(literal_rules(n)), PolicyVersion(1))
            .unwrap_or_else(|e| panic!("compile: {e}"));
        let topic = format!("fleet/{}/alice/telemetry", n / 2);
        group.bench_function(format!("{n}_rules"), |b| {
            b.iter(|| {
                let action = Action::Publish {
                    topic: black_box(&topic),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                };
                black_box(policy.decide(&action))
            })
        });
    }
    let policy = engine
        .compile(&alice, &RuleSet(wildcard_rules()), PolicyVersion(1))
        .unwrap_or_else(|e| panic!("compile: {e}"));
    group.bench_function("50_wildcard_rules", |b| {
        b.iter(|| {
            let action = Action::Publish {
                topic: black_box("site/7/dev20/a/b"),
                qos: QoS::AtLeastOnce,
                retain: false,
            };
            black_box(policy.decide(&action))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
