//! The one conformance suite every store backend must pass. A backend's test
//! file opens a real store and calls [`run_all`]; there are no mocks.
//!
//! Each check starts by importing an empty snapshot, so the checks do not
//! depend on each other's leftovers and a store can be reused.

#![allow(dead_code)]

use std::sync::Arc;

use warden_auth::{
    AdminStore, ChangeQuery, NewAdminChange, NewUser, PolicySnapshot, PrincipalKey, RuleFilter,
    StoreError, StoreErrorKind, UserPatch,
};
mod transfer;

pub use transfer::{export_import_round_trip, import_spans_many_statements};

use warden_policy::{ActionKind, ActionSet, Effect, QoS, RuleId, RuleSpec, Subject};

pub async fn run_all(store: Arc<dyn AdminStore>) {
    let s = store.as_ref();
    users_crud(s).await;
    roles_and_memberships(s).await;
    rules_crud(s).await;
    rules_for_scope(s).await;
    version_bumps_on_every_write(s).await;
    conflicts_and_not_found(s).await;
    invalid_input(s).await;
    delete_cascades(s).await;
    export_import_round_trip(s).await;
    import_spans_many_statements(s).await;
    certificate_pins(s).await;
    admin_changes_recorded(s).await;
    rehash_compare_and_set(s).await;
}

pub(crate) async fn reset(store: &dyn AdminStore) {
    store
        .import(PolicySnapshot::default())
        .await
        .expect("reset");
}

fn user(name: &str, hash: Option<&str>) -> NewUser {
    NewUser {
        username: name.to_owned(),
        password_hash: hash.map(str::to_owned),
        superuser: false,
        enabled: true,
        roles: Vec::new(),
        cert_fingerprint: None,
    }
}

pub fn spec(effect: Effect, subject: Subject, actions: &[ActionKind], pattern: &str) -> RuleSpec {
    RuleSpec {
        effect,
        subject,
        actions: ActionSet::of(actions),
        pattern: pattern.to_owned(),
        max_qos: None,
        retain: None,
    }
}

pub(crate) fn kind<T: std::fmt::Debug>(result: Result<T, StoreError>) -> StoreErrorKind {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

pub async fn users_crud(store: &dyn AdminStore) {
    reset(store).await;
    assert_eq!(store.user("alice").await.unwrap(), None);
    store
        .create_user(user("alice", Some("$argon2id$fake")))
        .await
        .unwrap();
    let mut cert_only = user("bob", None);
    cert_only.superuser = true;
    cert_only.roles = vec!["ops".into(), "dev".into()];
    store.create_user(cert_only).await.unwrap();

    let alice = store.user("alice").await.unwrap().expect("alice exists");
    assert_eq!(alice.password_hash.as_deref(), Some("$argon2id$fake"));
    assert!(alice.enabled && !alice.superuser && alice.roles.is_empty());
    let bob = store.user("bob").await.unwrap().expect("bob exists");
    assert_eq!(bob.password_hash, None);
    assert!(bob.superuser);
    assert_eq!(bob.roles, vec!["dev".to_owned(), "ops".to_owned()]);
    assert!(
        !format!("{alice:?}").contains("fake"),
        "Debug must redact the hash"
    );

    let patch = UserPatch {
        enabled: Some(false),
        password_hash: Some(None),
        ..UserPatch::default()
    };
    store.update_user("alice", patch).await.unwrap();
    let alice = store.user("alice").await.unwrap().expect("alice exists");
    assert!(!alice.enabled && alice.password_hash.is_none() && !alice.superuser);
    let patch = UserPatch {
        password_hash: Some(Some("$argon2id$new".into())),
        ..UserPatch::default()
    };
    store.update_user("alice", patch).await.unwrap();
    let alice = store.user("alice").await.unwrap().expect("alice exists");
    assert_eq!(alice.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(!alice.enabled, "fields not in the patch stay as they were");

    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    store.delete_user("alice").await.unwrap();
    assert_eq!(store.user("alice").await.unwrap(), None);
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

/// A user pinned to one certificate: the pin is normalized, read back on
/// the login path and in listings, changed, cleared, and carried by export
/// and import; a malformed one is refused.
pub async fn certificate_pins(store: &dyn AdminStore) {
    reset(store).await;
    let pin = "ab".repeat(32);
    let written = pin.to_uppercase();
    let mut dev = user("dev", None);
    dev.cert_fingerprint = Some(written.clone());
    store.create_user(dev).await.unwrap();
    let got = store.user("dev").await.unwrap().expect("dev exists");
    assert_eq!(got.cert_fingerprint.as_deref(), Some(pin.as_str()));
    let listed = store.list_users().await.unwrap();
    assert_eq!(listed[0].cert_fingerprint.as_deref(), Some(pin.as_str()));

    let other = "0f".repeat(32);
    let colons = other
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let patch = UserPatch {
        cert_fingerprint: Some(Some(colons)),
        ..UserPatch::default()
    };
    store.update_user("dev", patch).await.unwrap();
    let got = store.user("dev").await.unwrap().expect("dev exists");
    assert_eq!(got.cert_fingerprint.as_deref(), Some(other.as_str()));

    let snapshot = store.export().await.unwrap();
    assert_eq!(
        snapshot.users[0].cert_fingerprint.as_deref(),
        Some(other.as_str())
    );
    store.import(snapshot.clone()).await.unwrap();
    assert_eq!(store.export().await.unwrap(), snapshot);

    let clear = UserPatch {
        cert_fingerprint: Some(None),
        ..UserPatch::default()
    };
    store.update_user("dev", clear).await.unwrap();
    let got = store.user("dev").await.unwrap().expect("dev exists");
    assert_eq!(got.cert_fingerprint, None);

    let mut bad = user("bad", None);
    bad.cert_fingerprint = Some("not-hex".into());
    assert_eq!(kind(store.create_user(bad).await), StoreErrorKind::Invalid);
    let bad_patch = UserPatch {
        cert_fingerprint: Some(Some("12".into())),
        ..UserPatch::default()
    };
    assert_eq!(
        kind(store.update_user("dev", bad_patch).await),
        StoreErrorKind::Invalid
    );
    reset(store).await;
}

pub async fn roles_and_memberships(store: &dyn AdminStore) {
    reset(store).await;
    store.create_user(user("carol", None)).await.unwrap();
    store.create_role("ops").await.unwrap();
    store.grant("ops", "carol").await.unwrap();
    store.grant("dev", "carol").await.unwrap(); // creates the role "dev"
    let roles = store.list_roles().await.unwrap();
    let summary: Vec<_> = roles
        .iter()
        .map(|r| (r.name.as_str(), r.members.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("dev", vec!["carol".to_owned()]),
            ("ops", vec!["carol".to_owned()])
        ]
    );
    assert_eq!(
        store.user("carol").await.unwrap().unwrap().roles,
        ["dev", "ops"]
    );

    store.revoke("ops", "carol").await.unwrap();
    assert_eq!(store.user("carol").await.unwrap().unwrap().roles, ["dev"]);
    store.delete_role("ops").await.unwrap();
    assert_eq!(
        kind(store.delete_role("dev").await),
        StoreErrorKind::Conflict,
        "role with members"
    );
    store.revoke("dev", "carol").await.unwrap();
    store.delete_role("dev").await.unwrap();
    assert!(store.list_roles().await.unwrap().is_empty());
}

pub async fn rules_crud(store: &dyn AdminStore) {
    reset(store).await;
    store.create_user(user("dave", None)).await.unwrap();
    store.create_role("ops").await.unwrap();
    let mut first = spec(
        Effect::Allow,
        Subject::User("dave".into()),
        &[ActionKind::Publish],
        "dave/#",
    );
    first.max_qos = Some(QoS::AtLeastOnce);
    first.retain = Some(false);
    let second = spec(
        Effect::Deny,
        Subject::Role("ops".into()),
        &[ActionKind::Subscribe, ActionKind::Receive],
        "secret/+",
    );
    let third = spec(
        Effect::Allow,
        Subject::Everyone,
        &[ActionKind::Connect],
        "dev-*",
    );
    let a = store.add_rule(first.clone()).await.unwrap();
    let b = store.add_rule(second.clone()).await.unwrap();
    let c = store.add_rule(third.clone()).await.unwrap();
    assert!(a < b && b < c, "ids increase: {a:?} {b:?} {c:?}");

    let all = store.list_rules(RuleFilter::default()).await.unwrap();
    assert_eq!(
        all,
        vec![
            first.clone().with_id(a),
            second.clone().with_id(b),
            third.with_id(c)
        ]
    );
    let only_ops = store
        .list_rules(RuleFilter {
            subject: Some(Subject::Role("ops".into())),
        })
        .await
        .unwrap();
    assert_eq!(only_ops, vec![second.with_id(b)]);

    store.remove_rule(b).await.unwrap();
    let ids: Vec<_> = store
        .list_rules(RuleFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [a, c]);
    assert_eq!(kind(store.remove_rule(b).await), StoreErrorKind::NotFound);
    let d = store.add_rule(first).await.unwrap();
    assert!(d > c, "a removed id is not reused");
}

pub async fn rules_for_scope(store: &dyn AdminStore) {
    reset(store).await;
    for name in ["erin", "frank"] {
        store.create_user(user(name, None)).await.unwrap();
    }
    for role in ["ops", "dev", "sales"] {
        store.create_role(role).await.unwrap();
    }
    let mut ids = Vec::new();
    for subject in [
        Subject::User("erin".into()),
        Subject::User("frank".into()),
        Subject::Role("ops".into()),
        Subject::Role("dev".into()),
        Subject::Role("sales".into()),
        Subject::Everyone,
    ] {
        let rule = spec(Effect::Allow, subject, &[ActionKind::Publish], "t/#");
        ids.push(store.add_rule(rule).await.unwrap());
    }
    let key = PrincipalKey {
        username: Some("erin".into()),
        roles: vec!["ops".into(), "dev".into()],
    };
    let got: Vec<_> = store
        .rules_for(&key)
        .await
        .unwrap()
        .0
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        got,
        [ids[0], ids[2], ids[3], ids[5]],
        "erin, ops, dev, everyone; not frank, not sales"
    );

    let anonymous = PrincipalKey {
        username: None,
        roles: Vec::new(),
    };
    let got: Vec<_> = store
        .rules_for(&anonymous)
        .await
        .unwrap()
        .0
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, [ids[5]], "anonymous gets the rules for everyone only");

    let tricky = PrincipalKey {
        username: Some("erin\"]".into()),
        roles: vec!["o\"ps".into(), "".into()],
    };
    let got: Vec<_> = store
        .rules_for(&tricky)
        .await
        .unwrap()
        .0
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, [ids[5]], "names are bound, not spliced");
}

pub async fn version_bumps_on_every_write(store: &dyn AdminStore) {
    reset(store).await;
    let mut last = store.policy_version().await.unwrap();
    let mut step = |name: &str, now: warden_policy::PolicyVersion| {
        assert!(
            now > last,
            "{name} did not bump the version ({last:?} -> {now:?})"
        );
        last = now;
    };
    store.create_user(user("gina", None)).await.unwrap();
    step("create_user", store.policy_version().await.unwrap());
    store
        .update_user(
            "gina",
            UserPatch {
                superuser: Some(true),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    step("update_user", store.policy_version().await.unwrap());
    store.create_role("ops").await.unwrap();
    step("create_role", store.policy_version().await.unwrap());
    store.grant("ops", "gina").await.unwrap();
    step("grant", store.policy_version().await.unwrap());
    let id = store
        .add_rule(spec(
            Effect::Allow,
            Subject::Everyone,
            &[ActionKind::Receive],
            "#",
        ))
        .await
        .unwrap();
    step("add_rule", store.policy_version().await.unwrap());
    store.remove_rule(id).await.unwrap();
    step("remove_rule", store.policy_version().await.unwrap());
    store.revoke("ops", "gina").await.unwrap();
    step("revoke", store.policy_version().await.unwrap());
    store.delete_role("ops").await.unwrap();
    step("delete_role", store.policy_version().await.unwrap());
    store.delete_user("gina").await.unwrap();
    step("delete_user", store.policy_version().await.unwrap());
    store.import(PolicySnapshot::default()).await.unwrap();
    step("import", store.policy_version().await.unwrap());

    let before = store.policy_version().await.unwrap();
    assert_eq!(
        kind(store.delete_user("nobody").await),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        store.policy_version().await.unwrap(),
        before,
        "a failed write changes nothing"
    );
    store.list_users().await.unwrap();
    store.export().await.unwrap();
    assert_eq!(
        store.policy_version().await.unwrap(),
        before,
        "reads do not bump"
    );
}

pub async fn conflicts_and_not_found(store: &dyn AdminStore) {
    reset(store).await;
    store.create_user(user("hank", None)).await.unwrap();
    store.create_role("ops").await.unwrap();
    store.grant("ops", "hank").await.unwrap();
    assert_eq!(
        kind(store.create_user(user("hank", None)).await),
        StoreErrorKind::Conflict
    );
    assert_eq!(
        kind(store.create_role("ops").await),
        StoreErrorKind::Conflict
    );
    assert_eq!(
        kind(store.grant("ops", "hank").await),
        StoreErrorKind::Conflict
    );

    assert_eq!(
        kind(store.update_user("nobody", UserPatch::default()).await),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        kind(store.delete_user("nobody").await),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        kind(store.delete_role("nothing").await),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        kind(store.grant("ops", "nobody").await),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        kind(store.revoke("ops", "nobody").await),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        kind(store.revoke("nothing", "hank").await),
        StoreErrorKind::NotFound
    );
    assert_eq!(
        kind(store.remove_rule(RuleId(999_999)).await),
        StoreErrorKind::NotFound
    );
    let for_ghost = spec(
        Effect::Allow,
        Subject::User("ghost".into()),
        &[ActionKind::Publish],
        "a",
    );
    assert_eq!(
        kind(store.add_rule(for_ghost).await),
        StoreErrorKind::NotFound
    );
    let for_no_role = spec(
        Effect::Allow,
        Subject::Role("ghosts".into()),
        &[ActionKind::Publish],
        "a",
    );
    assert_eq!(
        kind(store.add_rule(for_no_role).await),
        StoreErrorKind::NotFound
    );
    assert!(store
        .list_roles()
        .await
        .unwrap()
        .iter()
        .all(|r| r.name != "ghosts"));
}

pub async fn invalid_input(store: &dyn AdminStore) {
    reset(store).await;
    let before = store.policy_version().await.unwrap();
    let no_actions = spec(Effect::Allow, Subject::Everyone, &[], "a/b");
    assert_eq!(
        kind(store.add_rule(no_actions).await),
        StoreErrorKind::Invalid
    );
    let bad_filter = spec(
        Effect::Allow,
        Subject::Everyone,
        &[ActionKind::Subscribe],
        "a/#/b",
    );
    assert_eq!(
        kind(store.add_rule(bad_filter).await),
        StoreErrorKind::Invalid
    );
    let mixed = spec(
        Effect::Allow,
        Subject::Everyone,
        &[ActionKind::Connect, ActionKind::Publish],
        "x",
    );
    assert_eq!(kind(store.add_rule(mixed).await), StoreErrorKind::Invalid);
    assert_eq!(
        kind(store.create_user(user("", None)).await),
        StoreErrorKind::Invalid
    );
    assert_eq!(
        kind(store.create_user(user("a\u{0}b", None)).await),
        StoreErrorKind::Invalid
    );
    assert_eq!(kind(store.create_role("").await), StoreErrorKind::Invalid);
    assert!(store
        .list_rules(RuleFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.policy_version().await.unwrap(), before);
}

pub async fn delete_cascades(store: &dyn AdminStore) {
    reset(store).await;
    store.create_user(user("ivy", None)).await.unwrap();
    store.create_user(user("jack", None)).await.unwrap();
    store.grant("ops", "ivy").await.unwrap();
    let ivy_rule = store
        .add_rule(spec(
            Effect::Allow,
            Subject::User("ivy".into()),
            &[ActionKind::Publish],
            "ivy/#",
        ))
        .await
        .unwrap();
    let jack_rule = store
        .add_rule(spec(
            Effect::Allow,
            Subject::User("jack".into()),
            &[ActionKind::Publish],
            "jack/#",
        ))
        .await
        .unwrap();
    store.delete_user("ivy").await.unwrap();
    let left: Vec<_> = store
        .list_rules(RuleFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [jack_rule], "ivy's rule {ivy_rule:?} goes with her");
    let ops = store.list_roles().await.unwrap();
    assert_eq!(ops.len(), 1);
    assert!(ops[0].members.is_empty(), "ivy's membership goes with her");
    // A new user of the same name starts without the old rules or roles.
    store.create_user(user("ivy", None)).await.unwrap();
    let key = PrincipalKey {
        username: Some("ivy".into()),
        roles: Vec::new(),
    };
    assert!(store.rules_for(&key).await.unwrap().0.is_empty());

    store
        .add_rule(spec(
            Effect::Deny,
            Subject::Role("ops".into()),
            &[ActionKind::Publish],
            "x",
        ))
        .await
        .unwrap();
    store.delete_role("ops").await.unwrap();
    let left: Vec<_> = store
        .list_rules(RuleFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [jack_rule], "a deleted role's rules go with it");
}

/// Admin changes: recorded with increasing ids, read back as written (any
/// text), filtered by id and time, bumping the version, and kept by import.
/// Relative to what the store already holds, since a store may be reused.
pub async fn admin_changes_recorded(store: &dyn AdminStore) {
    reset(store).await;
    let before = store.admin_changes(ChangeQuery::ALL).await.expect("list");
    let last = before.last().map_or(0, |c| c.id);
    let base = before
        .iter()
        .map(|c| c.at_ms)
        .max()
        .unwrap_or(0)
        .max(1_700_000_000_000);
    let change = |at_ms: i64, what: &str| NewAdminChange {
        at_ms,
        user: "ops (sudo by ä)".to_owned(),
        host: "host-1.example".to_owned(),
        what: what.to_owned(),
    };
    let version = store.policy_version().await.unwrap();
    store
        .record_admin_change(change(base + 1_000, "user add alice roles=ops"))
        .await
        .expect("record");
    let bumped = store.policy_version().await.unwrap();
    assert!(bumped.0 > version.0, "recording bumps the version");
    let tricky = "acl add 7: allow publish user:a \"x/${username}/#\" 'q' \\ ✓ {\"j\":1}";
    store
        .record_admin_change(change(base + 2_000, tricky))
        .await
        .expect("record");
    // An import replaces the policy but not the record of who changed it.
    store.import(PolicySnapshot::default()).await.unwrap();

    let after = ChangeQuery {
        after: last,
        since_ms: i64::MIN,
    };
    let got = store.admin_changes(after).await.expect("list");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].id > last && got[1].id > got[0].id, "{got:?}");
    assert_eq!(got[0].what, "user add alice roles=ops");
    assert_eq!(got[0].user, "ops (sudo by ä)");
    assert_eq!(got[0].host, "host-1.example");
    assert_eq!(got[0].at_ms, base + 1_000);
    assert_eq!(got[1].what, tricky);

    let since = ChangeQuery {
        after: last,
        since_ms: base + 1_500,
    };
    let recent = store.admin_changes(since).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].id, got[1].id);
    let newer = ChangeQuery {
        after: got[1].id,
        since_ms: i64::MIN,
    };
    assert!(store.admin_changes(newer).await.unwrap().is_empty());
}

/// A hash `mosquitto_passwd` 2.0.11 wrote (password "secret").
const MOSQUITTO_HASH: &str = "$7$101$MtvRmjAwWVjauHux$VLPZcLLOTCWKnqT0624OmOsrVFul32Bf0cGcYjmUagT8KVEC8BNYk/1zrp7zDH0VdtzGVVOpOjv4XFHWCLCr+w==";

/// The login rehash: replaced once, only while the old hash is stored, and
/// without moving the policy version.
pub async fn rehash_compare_and_set(store: &dyn AdminStore) {
    reset(store).await;
    store
        .create_user(user("mig", Some(MOSQUITTO_HASH)))
        .await
        .unwrap();
    store.create_user(user("certonly", None)).await.unwrap();
    let version = store.policy_version().await.unwrap();
    let stored = || async { store.user("mig").await.unwrap().unwrap().password_hash };

    // A stale expectation changes nothing.
    assert!(!store
        .replace_password_hash("mig", "$7$101$other$hash", "$argon2id$new")
        .await
        .unwrap());
    assert_eq!(stored().await.as_deref(), Some(MOSQUITTO_HASH));

    // Two logins race: exactly one swap wins.
    let (a, b) = tokio::join!(
        store.replace_password_hash("mig", MOSQUITTO_HASH, "$argon2id$first"),
        store.replace_password_hash("mig", MOSQUITTO_HASH, "$argon2id$second"),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one swap must win: {a} {b}");
    let winner = if a {
        "$argon2id$first"
    } else {
        "$argon2id$second"
    };
    assert_eq!(stored().await.as_deref(), Some(winner));

    // Once: the old hash no longer matches.
    assert!(!store
        .replace_password_hash("mig", MOSQUITTO_HASH, "$argon2id$third")
        .await
        .unwrap());
    assert_eq!(stored().await.as_deref(), Some(winner));

    // No user, or no password: nothing to swap, not an error.
    assert!(!store
        .replace_password_hash("ghost", MOSQUITTO_HASH, "$argon2id$x")
        .await
        .unwrap());
    assert!(!store
        .replace_password_hash("certonly", "", "$argon2id$x")
        .await
        .unwrap());
    assert_eq!(
        store.user("certonly").await.unwrap().unwrap().password_hash,
        None
    );
    assert_eq!(store.user("ghost").await.unwrap(), None);

    // Not a policy change: the version did not move, the roles are intact.
    assert_eq!(store.policy_version().await.unwrap(), version);
    // An admin's password change after the swap still wins over a late swap.
    store
        .update_user(
            "mig",
            UserPatch {
                password_hash: Some(Some("$argon2id$admin".into())),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    assert!(!store
        .replace_password_hash("mig", winner, "$argon2id$late")
        .await
        .unwrap());
    assert_eq!(stored().await.as_deref(), Some("$argon2id$admin"));
}
