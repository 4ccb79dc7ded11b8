//! The admin CLI end to end: the real `warden` binary against a SQLite store
//! in a temporary directory, configured by a YAML file written there.

mod common;

use common::{assert_one_line_error, stderr, stdout, Env};
use serde_json::Value;

impl Env {
    fn add_user(&self, name: &str) {
        let out = self.run_stdin(&["user", "add", name, "--password-stdin"], "s3cret pw\n");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("user {name}: added\n"));
    }

    fn add_rule(&self, args: &[&str]) -> u64 {
        let mut all = vec!["acl", "add"];
        all.extend_from_slice(args);
        let value = self.json(&all);
        value["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no id in {value}"))
    }
}

#[test]
fn user_add_from_stdin_then_list_and_show() {
    let env = Env::new();
    env.add_user("alice");
    let out = env.run_stdin(
        &[
            "user",
            "add",
            "bob",
            "--no-password",
            "--superuser",
            "--role",
            "ops",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let table = env.ok(&["user", "list"]);
    assert_eq!(
        table,
        "USERNAME  ENABLED  SUPERUSER  PASSWORD  ROLES\n\
         alice     yes      no         yes\n\
         bob       yes      yes        no        ops\n"
    );

    let users = env.json(&["user", "list"]);
    assert_eq!(
        users,
        serde_json::json!([
            {"username": "alice", "enabled": true, "superuser": false, "has_password": true, "roles": []},
            {"username": "bob", "enabled": true, "superuser": true, "has_password": false, "roles": ["ops"]},
        ])
    );
    let shown = env.ok(&["user", "show", "alice", "--json"]);
    assert!(!shown.contains("argon2"), "hash leaked: {shown}");
    assert!(!env.ok(&["user", "list"]).contains("argon2"));
}

#[test]
fn duplicate_user_is_a_one_line_error() {
    let env = Env::new();
    env.add_user("alice");
    let out = env.run_stdin(&["user", "add", "alice", "--password-stdin"], "other\n");
    assert_one_line_error(&out, "cannot add user \"alice\"");
}

#[test]
fn password_is_never_taken_without_a_terminal_or_stdin_flag() {
    let env = Env::new();
    let out = env.run_stdin(&["user", "add", "carol"], "pw\n");
    assert_one_line_error(&out, "--password-stdin");
    let users = env.json(&["user", "list"]);
    assert_eq!(users, serde_json::json!([]));
}

#[test]
fn user_disable_enable_passwd_remove() {
    let env = Env::new();
    env.add_user("alice");
    assert_eq!(
        env.ok(&["user", "disable", "alice"]),
        "user alice: disabled\n"
    );
    assert_eq!(
        env.json(&["user", "show", "alice"])["enabled"],
        Value::Bool(false)
    );
    assert_eq!(
        env.ok(&["user", "enable", "alice"]),
        "user alice: enabled\n"
    );
    assert_eq!(
        env.json(&["user", "show", "alice"])["enabled"],
        Value::Bool(true)
    );
    let out = env.run_stdin(&["user", "passwd", "alice", "--password-stdin"], "new pw\n");
    assert_eq!(
        stdout(&out),
        "user alice: password changed\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(
        env.ok(&["user", "remove", "alice"]),
        "user alice: removed\n"
    );
    assert_one_line_error(
        &env.run(&["user", "show", "alice"]),
        "user \"alice\" does not exist",
    );
    assert_one_line_error(
        &env.run(&["user", "remove", "alice"]),
        "cannot remove user \"alice\"",
    );
}

#[test]
fn acl_add_list_remove() {
    let env = Env::new();
    env.add_user("alice");
    let first = env.add_rule(&[
        "--user",
        "alice",
        "--allow",
        "publish,subscribe",
        "sensors/${username}/#",
        "--max-qos",
        "1",
    ]);
    let second = env.add_rule(&[
        "--everyone",
        "--deny",
        "all",
        "secret/#",
        "--retain",
        "true",
    ]);
    assert!(second > first);

    let table = env.ok(&["acl", "list"]);
    assert_eq!(
        table,
        format!(
            "ID  EFFECT  SUBJECT     ACTIONS                    PATTERN                MAX_QOS  RETAIN\n\
             {first}   allow   user:alice  publish,subscribe          sensors/${{username}}/#  1        -\n\
             {second}   deny    everyone    publish,subscribe,receive  secret/#               -        true\n"
        )
    );
    let mine = env.json(&["acl", "list", "--user", "alice"]);
    assert_eq!(
        mine,
        serde_json::json!([{
            "id": first, "effect": "allow", "subject": "user:alice",
            "actions": ["publish", "subscribe"], "pattern": "sensors/${username}/#", "max_qos": 1
        }])
    );

    assert_eq!(
        env.ok(&["acl", "remove", &first.to_string()]),
        format!("removed rule {first}\n")
    );
    let left = env.json(&["acl", "list"]);
    assert_eq!(left.as_array().map(Vec::len), Some(1));
    assert_eq!(left[0]["id"], Value::from(second));
}

#[test]
fn invalid_rules_are_one_line_errors() {
    let env = Env::new();
    env.add_user("alice");
    let out = env.run(&[
        "acl", "add", "--user", "alice", "--allow", "publish", "a/#/b",
    ]);
    assert_one_line_error(&out, "invalid rule: invalid topic filter \"a/#/b\"");
    let out = env.run(&[
        "acl",
        "add",
        "--user",
        "alice",
        "--deny",
        "publish",
        "a/b",
        "--max-qos",
        "1",
    ]);
    assert_one_line_error(&out, "max_qos");
    let out = env.run(&[
        "acl",
        "add",
        "--user",
        "alice",
        "--allow",
        "connect,publish",
        "a",
    ]);
    assert_one_line_error(&out, "connect rule");
    assert_eq!(env.json(&["acl", "list"]), serde_json::json!([]));

    // Usage errors stay clap's: exit status 2.
    let out = env.run(&["acl", "add", "--user", "alice", "--allow", "write", "a"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&[
        "acl",
        "add",
        "--user",
        "alice",
        "--everyone",
        "--allow",
        "publish",
        "a",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_names_the_deciding_rule() {
    let env = Env::new();
    env.add_user("alice");
    let allow = env.add_rule(&[
        "--user",
        "alice",
        "--allow",
        "publish",
        "sensors/${username}/#",
    ]);
    let deny = env.add_rule(&[
        "--user",
        "alice",
        "--deny",
        "publish",
        "sensors/alice/secret",
    ]);

    let ok = env.json(&["check", "alice", "publish", "sensors/alice/t", "--qos", "1"]);
    assert_eq!(ok["allowed"], Value::Bool(true));
    assert_eq!(ok["decision"]["verdict"], "allow");
    assert_eq!(ok["decision"]["rule"], Value::from(allow));

    let denied = env.json(&["check", "alice", "publish", "sensors/alice/secret"]);
    assert_eq!(denied["allowed"], Value::Bool(false));
    assert_eq!(denied["decision"]["verdict"], "deny");
    assert_eq!(denied["decision"]["reason"], "denied_by_rule");
    assert_eq!(denied["decision"]["rule"], Value::from(deny));

    let text = env.ok(&["check", "alice", "publish", "other/t"]);
    assert!(text.starts_with("deny: no matching allow rule\n"), "{text}");
    assert!(text.contains("deciding rule: none\n"), "{text}");

    let text = env.ok(&["check", "alice", "publish", "sensors/alice/t"]);
    assert!(
        text.starts_with(&format!("allow (qos 0, rule {allow})\n")),
        "{text}"
    );

    // Only --exit-code turns a deny into a status (3); an error stays 1.
    let out = env.run(&[
        "check",
        "alice",
        "publish",
        "sensors/alice/secret",
        "--exit-code",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let out = env.run(&[
        "check",
        "alice",
        "publish",
        "sensors/alice/t",
        "--exit-code",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_one_line_error(
        &env.run(&["check", "nobody", "publish", "a"]),
        "user \"nobody\" does not exist",
    );
}

#[test]
fn role_grant_and_revoke_change_the_verdict() {
    let env = Env::new();
    env.add_user("bob");
    assert_eq!(env.ok(&["role", "add", "ops"]), "role ops: added\n");
    let rule = env.add_rule(&["--role", "ops", "--allow", "subscribe", "ops/#"]);

    let before = env.json(&["check", "bob", "subscribe", "ops/+/status"]);
    assert_eq!(before["allowed"], Value::Bool(false));

    assert_eq!(
        env.ok(&["role", "grant", "ops", "bob"]),
        "user bob is now a member of role ops\n"
    );
    assert_eq!(
        env.json(&["user", "show", "bob"])["roles"],
        serde_json::json!(["ops"])
    );
    assert_eq!(
        env.json(&["role", "list"]),
        serde_json::json!([{"name": "ops", "members": ["bob"]}])
    );
    let after = env.json(&["check", "bob", "subscribe", "$share/g/ops/+/status"]);
    assert_eq!(after["allowed"], Value::Bool(true));
    assert_eq!(after["decision"]["rule"], Value::from(rule));

    assert_eq!(
        env.ok(&["role", "revoke", "ops", "bob"]),
        "user bob is no longer a member of role ops\n"
    );
    assert_eq!(
        env.json(&["user", "show", "bob"])["roles"],
        serde_json::json!([])
    );
    let revoked = env.json(&["check", "bob", "subscribe", "ops/+/status"]);
    assert_eq!(revoked["allowed"], Value::Bool(false));
    assert_eq!(env.ok(&["role", "remove", "ops"]), "role ops: removed\n");
}

#[test]
fn migrate_is_idempotent_and_config_commands_work() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["migrate"]),
        "sqlite: applied 0001 init\nsqlite: applied 0002 cert fingerprint\n\
         sqlite: applied 0003 admin changes\nsqlite: now at version 3\n"
    );
    assert_eq!(env.ok(&["migrate"]), "sqlite: already at version 3\n");
    let json = env.json(&["migrate"]);
    assert_eq!(
        json,
        serde_json::json!({"backend": "sqlite", "applied": [], "version": 3})
    );
    assert_eq!(env.ok(&["config", "check"]), "ok\n");
    assert!(env.ok(&["config", "default"]).contains("data_dir"));

    std::fs::write(&env.config, "data_dir: data\nnot_a_key: 1\n").expect("write");
    let out = env.run(&["config", "check"]);
    assert_one_line_error(&out, "not_a_key");
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let env = Env::new();
    let text = env.ok(&["--version"]);
    // warden 0.1.0 (commit 0123456789ab, built 2026-12-03)
    let rest = text
        .strip_prefix(&format!("warden {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{text}"));
    let (commit, date) = rest.split_once(", built ").expect("built");
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{text}"
    );
    let date = date.strip_suffix(")\n").expect(")");
    assert_eq!(date.len(), 10, "{text}");
    assert_eq!(&date[4..5], "-");
}

#[test]
fn completions_for_three_shells() {
    let env = Env::new();
    assert!(env.ok(&["completions", "bash"]).contains("_warden()"));
    assert!(env
        .ok(&["completions", "zsh"])
        .starts_with("#compdef warden"));
    let fish = env.ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c warden"), "{fish}");
    assert!(fish.contains("policy"), "the new subcommands are completed");
    let out = env.run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown shell");
}
