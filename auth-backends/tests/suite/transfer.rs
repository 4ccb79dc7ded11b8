//! Export/import checks of the conformance suite: round trips keep ids and
//! give identical exports; a refused import changes nothing.

use warden_auth::{
    AdminStore, Membership, PolicySnapshot, RuleFilter, SnapshotUser, StoreErrorKind,
};
use warden_policy::{ActionKind, Effect, QoS, RuleId, Subject};

use super::{kind, reset, spec};

fn sample_snapshot() -> PolicySnapshot {
    let user = |name: &str, hash: Option<&str>, superuser| SnapshotUser {
        username: name.to_owned(),
        password_hash: hash.map(str::to_owned),
        enabled: true,
        superuser,
        cert_fingerprint: None,
    };
    let mut limited = spec(
        Effect::Allow,
        Subject::Role("dev".into()),
        &[ActionKind::Publish, ActionKind::Subscribe],
        "dev/${username}/#",
    );
    limited.max_qos = Some(QoS::ExactlyOnce);
    limited.retain = Some(true);
    PolicySnapshot {
        users: vec![
            user(
                "kim",
                Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA"),
                false,
            ),
            user("lee", None, true),
        ],
        roles: vec!["dev".into(), "ops".into()],
        memberships: vec![
            Membership {
                role: "dev".into(),
                username: "kim".into(),
            },
            Membership {
                role: "ops".into(),
                username: "kim".into(),
            },
        ],
        rules: vec![
            limited.with_id(RuleId(7)),
            spec(
                Effect::Deny,
                Subject::User("lee".into()),
                &[ActionKind::Receive],
                "private/#",
            )
            .with_id(RuleId(40)),
            spec(
                Effect::Allow,
                Subject::Everyone,
                &[ActionKind::Connect],
                "*",
            )
            .with_id(RuleId(41)),
        ],
    }
}

pub async fn export_import_round_trip(store: &dyn AdminStore) {
    reset(store).await;
    let snapshot = sample_snapshot();
    store.import(snapshot.clone()).await.unwrap();
    let exported = store.export().await.unwrap();
    assert_eq!(
        exported, snapshot,
        "export gives back what was imported, ids kept"
    );
    store.import(exported.clone()).await.unwrap();
    assert_eq!(
        store.export().await.unwrap(),
        exported,
        "export -> import -> export is stable"
    );
    let kim = store.user("kim").await.unwrap().expect("kim imported");
    assert_eq!(kim.roles, ["dev", "ops"]);
    let next = store
        .add_rule(spec(
            Effect::Allow,
            Subject::Everyone,
            &[ActionKind::Publish],
            "p",
        ))
        .await
        .unwrap();
    assert!(next > RuleId(41), "new ids continue above imported ones");

    let mut broken = sample_snapshot();
    broken.memberships.push(Membership {
        role: "nope".into(),
        username: "kim".into(),
    });
    assert_eq!(kind(store.import(broken).await), StoreErrorKind::Invalid);
    let mut duplicate = sample_snapshot();
    duplicate.rules.push(
        spec(
            Effect::Allow,
            Subject::Everyone,
            &[ActionKind::Publish],
            "q",
        )
        .with_id(RuleId(7)),
    );
    assert_eq!(kind(store.import(duplicate).await), StoreErrorKind::Invalid);
    assert_eq!(
        store.list_rules(RuleFilter::default()).await.unwrap().len(),
        4,
        "a refused import changes nothing"
    );
}

/// An import larger than one multi-row INSERT (the store writes rows in
/// statements of a thousand): every row lands, in every table, with its
/// hash, pin, flags and rule id.
pub async fn import_spans_many_statements(store: &dyn AdminStore) {
    reset(store).await;
    const N: usize = 2_345;
    let name = |i: usize| format!("dev{i:05}");
    let users = (0..N)
        .map(|i| SnapshotUser {
            username: name(i),
            password_hash: (i % 3 != 0).then(|| format!("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$h{i}")),
            enabled: i % 7 != 0,
            superuser: i % 11 == 0,
            cert_fingerprint: (i % 5 == 0).then(|| format!("{i:064x}")),
        })
        .collect();
    let roles: Vec<String> = (0..1_201).map(|i| format!("group{i:05}")).collect();
    let memberships = (0..N)
        .map(|i| Membership {
            role: roles[i % roles.len()].clone(),
            username: name(i),
        })
        .collect();
    let rules = (0..N)
        .map(|i| {
            let mut rule = spec(
                if i % 4 == 0 {
                    Effect::Deny
                } else {
                    Effect::Allow
                },
                Subject::User(name(i)),
                &[ActionKind::Publish, ActionKind::Subscribe],
                &format!("fleet/{}/#", name(i)),
            );
            // Limits belong to allow rules only.
            if i % 4 != 0 {
                rule.max_qos = (i % 2 == 0).then_some(QoS::AtLeastOnce);
                rule.retain = (i % 3 == 0).then_some(false);
            }
            rule.with_id(RuleId(10 + 2 * i as u64))
        })
        .collect();
    let snapshot = PolicySnapshot {
        users,
        roles,
        memberships,
        rules,
    };
    store.import(snapshot.clone()).await.unwrap();
    let mut exported = store.export().await.unwrap();
    // Exports list memberships by role; compare as sets.
    let key = |m: &Membership| (m.role.clone(), m.username.clone());
    exported.memberships.sort_by_key(key);
    let mut expected = snapshot;
    expected.memberships.sort_by_key(key);
    assert_eq!(
        exported, expected,
        "every row of a large import lands as given"
    );
}
