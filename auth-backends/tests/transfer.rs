//! Export → import between every ordered pair of the five backends (20
//! pairs), on the machine's real servers: a source store is filled through
//! the admin API with a policy that uses every feature, exported, imported
//! into a fresh target of another backend, and the target must then export
//! the identical snapshot and answer `user()` and `rules_for()` exactly as
//! the source does. Every store made here is removed by its guard.

mod support;

use support::stores::{open_isolated, Backend};
use warden_auth::password::hash_password;
use warden_auth::{AdminStore, NewUser, PolicySnapshot, PrincipalKey, RuleFilter, UserPatch};
use warden_policy::{ActionKind, ActionSet, Effect, QoS, RuleId, RuleSpec, Subject};

fn new_user(name: &str, hash: Option<String>, roles: &[&str]) -> NewUser {
    NewUser {
        username: name.to_owned(),
        password_hash: hash,
        superuser: false,
        enabled: true,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        cert_fingerprint: None,
    }
}

fn rule(effect: Effect, subject: Subject, actions: &[ActionKind], pattern: &str) -> RuleSpec {
    RuleSpec {
        effect,
        subject,
        actions: ActionSet::of(actions),
        pattern: pattern.to_owned(),
        max_qos: None,
        retain: None,
    }
}

fn user(name: &str) -> Subject {
    Subject::User(name.to_owned())
}

fn role(name: &str) -> Subject {
    Subject::Role(name.to_owned())
}

/// Users of every kind: argon2id, Mosquitto `$7$` and bcrypt hashes (the
/// formats import accepts), a certificate-only user, a disabled user, a
/// superuser, and names that need quoting in some stores.
async fn fill_users(store: &dyn AdminStore) {
    let argon = hash_password("correct horse").expect("hash a password");
    let mosquitto = "$7$101$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA==";
    let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    let users = [
        new_user("alice", Some(argon.clone()), &["sensors", "ops"]),
        new_user("bob", Some(mosquitto.to_owned()), &["sensors"]),
        new_user("carol", Some(bcrypt.to_owned()), &[]),
        // Logs in with a client certificate only (CN = the name).
        new_user("device-42.plant.example", None, &["devices"]),
        new_user("dave", Some(argon.clone()), &["ops"]),
        new_user("root", Some(argon), &[]),
        new_user("ünï:cødé user", None, &["devices"]),
    ];
    for user in users {
        store.create_user(user).await.expect("create user");
    }
    let disable = UserPatch {
        enabled: Some(false),
        ..UserPatch::default()
    };
    store
        .update_user("dave", disable)
        .await
        .expect("disable dave");
    let promote = UserPatch {
        superuser: Some(true),
        ..UserPatch::default()
    };
    store.update_user("root", promote).await.expect("superuser");
    // A role without members, and a membership added after the user.
    store.create_role("auditors").await.expect("create role");
    store.grant("auditors", "carol").await.expect("grant");
    store.create_role("empty").await.expect("create role");
}

/// Rules of every shape. One rule is added and removed again so the ids
/// have a gap that an import must keep.
async fn fill_rules(store: &dyn AdminStore) {
    use ActionKind::{Connect, Publish, Receive, Subscribe};
    let mut capped = rule(
        Effect::Allow,
        role("sensors"),
        &[Publish],
        "sensors/${username}/#",
    );
    capped.max_qos = Some(QoS::AtLeastOnce);
    capped.retain = Some(false);
    let mut retained = rule(
        Effect::Allow,
        user("alice"),
        &[Publish, Subscribe],
        "status/+",
    );
    retained.max_qos = Some(QoS::ExactlyOnce);
    retained.retain = Some(true);
    let mut qos0 = rule(Effect::Allow, Subject::Everyone, &[Subscribe], "public/#");
    qos0.max_qos = Some(QoS::AtMostOnce);
    let mut no_retain_deny = rule(Effect::Deny, role("devices"), &[Publish], "config/#");
    no_retain_deny.retain = Some(true);
    let rules = [
        capped,
        retained,
        qos0,
        no_retain_deny,
        rule(Effect::Allow, role("sensors"), &[Connect], "sensor-*"),
        rule(Effect::Deny, user("bob"), &[Connect], "*-test"),
        rule(
            Effect::Allow,
            Subject::Everyone,
            &[Connect],
            "${username}-*",
        ),
        rule(
            Effect::Allow,
            role("devices"),
            &[Publish, Subscribe, Receive],
            "devices/${cert.cn}/#",
        ),
        rule(
            Effect::Allow,
            role("devices"),
            &[Subscribe],
            "san/${cert.san}/+",
        ),
        rule(
            Effect::Allow,
            Subject::Everyone,
            &[Publish],
            "clients/${clientid}/out",
        ),
        rule(Effect::Deny, Subject::Everyone, &[Receive], "secret/#"),
        rule(Effect::Deny, role("ops"), &[Subscribe], "#"),
        rule(Effect::Allow, role("ops"), &[Publish, Receive], "ops/+/cmd"),
        rule(Effect::Allow, role("auditors"), &[Receive], "$SYS/#"),
        rule(Effect::Allow, user("carol"), &[Subscribe], "audit/#"),
        rule(
            Effect::Allow,
            user("ünï:cødé user"),
            &[Publish],
            "ü/${username}",
        ),
    ];
    let mut ids = Vec::new();
    for (i, spec) in rules.into_iter().enumerate() {
        ids.push(store.add_rule(spec).await.expect("add rule"));
        if i == 5 {
            let gap = rule(Effect::Allow, Subject::Everyone, &[Publish], "gone");
            let gone = store.add_rule(gap).await.expect("add rule");
            store.remove_rule(gone).await.expect("remove rule");
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
}

/// The principals whose answers must agree: members of several roles, a
/// certificate-only user, a disabled user, a superuser, a user with no
/// roles, an unknown user, and an anonymous client.
fn principals() -> Vec<PrincipalKey> {
    let key = |name: Option<&str>, roles: &[&str]| PrincipalKey {
        username: name.map(str::to_owned),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    vec![
        key(Some("alice"), &["ops", "sensors"]),
        key(Some("bob"), &["sensors"]),
        key(Some("carol"), &["auditors"]),
        key(Some("device-42.plant.example"), &["devices"]),
        key(Some("dave"), &["ops"]),
        key(Some("root"), &[]),
        key(Some("ünï:cødé user"), &["devices"]),
        key(Some("nobody"), &["sensors", "no-such-role"]),
        key(None, &[]),
    ]
}

/// Asserts the policy is what [`fill_users`] and [`fill_rules`] made, so
/// that a store losing data on both sides cannot pass as "identical".
fn assert_complete(snapshot: &PolicySnapshot) {
    assert_eq!(snapshot.users.len(), 7, "{:?}", snapshot.users);
    assert_eq!(
        snapshot.roles,
        ["auditors", "devices", "empty", "ops", "sensors"]
    );
    assert_eq!(snapshot.memberships.len(), 7, "{:?}", snapshot.memberships);
    assert_eq!(snapshot.rules.len(), 16);
    let ids: Vec<u64> = snapshot.rules.iter().map(|r| r.id.0).collect();
    assert!(
        ids.windows(2).any(|w| w[1] - w[0] > 1),
        "the removed rule leaves a gap: {ids:?}"
    );
    let find = |name: &str| {
        snapshot
            .users
            .iter()
            .find(|u| u.username == name)
            .unwrap_or_else(|| panic!("{name} exported"))
    };
    assert!(!find("dave").enabled);
    assert!(find("root").superuser);
    assert_eq!(find("device-42.plant.example").password_hash, None);
    let alice = find("alice").password_hash.as_deref().unwrap_or_default();
    assert!(alice.starts_with("$argon2id$"), "hashes travel: {alice}");
    assert!(find("bob")
        .password_hash
        .as_deref()
        .is_some_and(|h| h.starts_with("$7$")));
}

/// `user()` and `rules_for()` give the same answers on both stores.
async fn assert_same_answers(source: &dyn AdminStore, target: &dyn AdminStore) {
    let names = [
        "alice",
        "bob",
        "carol",
        "device-42.plant.example",
        "dave",
        "root",
        "ünï:cødé user",
        "nobody",
        "ALICE",
    ];
    for name in names {
        let want = source.user(name).await.expect("source user()");
        let got = target.user(name).await.expect("target user()");
        assert_eq!(got, want, "user({name:?})");
    }
    let mut non_empty = 0;
    for key in principals() {
        let want = source.rules_for(&key).await.expect("source rules_for()");
        let got = target.rules_for(&key).await.expect("target rules_for()");
        assert_eq!(got, want, "rules_for({key:?})");
        non_empty += usize::from(!want.0.is_empty());
    }
    assert_eq!(non_empty, principals().len(), "every principal has rules");
    let want = source.list_roles().await.expect("source roles");
    assert_eq!(target.list_roles().await.expect("target roles"), want);
    let want = source.list_users().await.expect("source users");
    assert_eq!(target.list_users().await.expect("target users"), want);
}

async fn round_trip(from: Backend, to: Backend) {
    let (source, source_guard) = open_isolated(from).await;
    let (target, target_guard) = open_isolated(to).await;
    fill_users(source.as_ref()).await;
    fill_rules(source.as_ref()).await;
    let exported = source.export().await.expect("export the source");
    assert_complete(&exported);

    // The snapshot also survives its file format on the way.
    let yaml = serde_yaml::to_string(&exported).expect("snapshot to YAML");
    let parsed: PolicySnapshot = serde_yaml::from_str(&yaml).expect("YAML to snapshot");
    assert_eq!(parsed, exported, "YAML round trip");

    let before = target.policy_version().await.expect("target version");
    target.import(parsed).await.expect("import into the target");
    assert!(target.policy_version().await.expect("version") > before);
    let again = target.export().await.expect("export the target");
    assert_eq!(again, exported, "{from:?} -> {to:?}: identical snapshots");
    assert_same_answers(source.as_ref(), target.as_ref()).await;

    // Ids continue above the imported ones on the target.
    let last = exported.rules.iter().map(|r| r.id).max();
    let spec = rule(
        Effect::Allow,
        Subject::Everyone,
        &[ActionKind::Publish],
        "n",
    );
    let next = target.add_rule(spec).await.expect("add after import");
    assert!(Some(next) > last, "{next} after {last:?}");
    let all = target
        .list_rules(RuleFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 17);
    assert!(all.iter().all(|r| r.id != RuleId(0)));

    // The stores go before their guards remove the data under them.
    drop((source, target));
    drop((source_guard, target_guard));
}

macro_rules! pairs {
    ($($name:ident: $from:ident -> $to:ident;)*) => {$(
        #[tokio::test]
        async fn $name() {
            round_trip(Backend::$from, Backend::$to).await;
        }
    )*};
}

pairs! {
    sqlite_to_postgres: Sqlite -> Postgres;
    sqlite_to_mysql: Sqlite -> Mysql;
    sqlite_to_mongodb: Sqlite -> Mongodb;
    sqlite_to_redis: Sqlite -> Redis;
    postgres_to_sqlite: Postgres -> Sqlite;
    postgres_to_mysql: Postgres -> Mysql;
    postgres_to_mongodb: Postgres -> Mongodb;
    postgres_to_redis: Postgres -> Redis;
    mysql_to_sqlite: Mysql -> Sqlite;
    mysql_to_postgres: Mysql -> Postgres;
    mysql_to_mongodb: Mysql -> Mongodb;
    mysql_to_redis: Mysql -> Redis;
    mongodb_to_sqlite: Mongodb -> Sqlite;
    mongodb_to_postgres: Mongodb -> Postgres;
    mongodb_to_mysql: Mongodb -> Mysql;
    mongodb_to_redis: Mongodb -> Redis;
    redis_to_sqlite: Redis -> Sqlite;
    redis_to_postgres: Redis -> Postgres;
    redis_to_mysql: Redis -> Mysql;
    redis_to_mongodb: Redis -> Mongodb;
}
