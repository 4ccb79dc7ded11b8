//! `warden export` and `warden import` end to end: the real binary moves a
//! policy from one SQLite store to another through a YAML file, and the
//! second store then lists and decides exactly like the first.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_one_line_error, stderr, Env};
use serde_json::Value;

impl Env {
    /// What the admin CLI shows of the policy, and a few decisions.
    fn views(&self) -> Vec<Value> {
        let mut views = vec![
            self.json(&["user", "list"]),
            self.json(&["acl", "list"]),
            self.json(&["role", "list"]),
        ];
        for (user, action, topic) in [
            ("alice", "publish", "sensors/alice/t"),
            ("alice", "subscribe", "ops/x"),
            ("bob", "subscribe", "secret/x"),
            ("carol", "publish", "sensors/carol/t"),
        ] {
            views.push(self.json(&["check", user, action, topic]));
        }
        views
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Users with and without passwords, a disabled user, a superuser, roles,
/// and rules with every option the CLI has.
fn fill(env: &Env) {
    let pw = "s3cret pw\n";
    env.ok_stdin(
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--role",
            "sensors",
        ],
        pw,
    );
    env.ok_stdin(&["user", "add", "carol", "--password-stdin"], pw);
    env.ok(&[
        "user",
        "add",
        "bob",
        "--no-password",
        "--superuser",
        "--role",
        "ops",
    ]);
    env.ok(&["user", "disable", "carol"]);
    env.ok(&["role", "add", "auditors"]);
    env.ok(&["role", "grant", "ops", "alice"]);
    let rules: [&[&str]; 5] = [
        &[
            "--role",
            "sensors",
            "--allow",
            "publish",
            "sensors/${username}/#",
            "--max-qos",
            "1",
            "--retain",
            "false",
        ],
        &["--user", "alice", "--allow", "subscribe", "ops/+"],
        &["--everyone", "--deny", "all", "secret/#"],
        &["--role", "ops", "--allow", "connect", "ops-*"],
        &[
            "--role",
            "auditors",
            "--allow",
            "receive",
            "audit/${clientid}",
        ],
    ];
    for rule in rules {
        let mut args = vec!["acl", "add"];
        args.extend_from_slice(rule);
        env.ok(&args);
    }
    // A removed rule leaves a gap in the ids that the import must keep.
    let gone = env.json(&["acl", "add", "--everyone", "--allow", "publish", "tmp"]);
    let id = gone["id"].as_u64().expect("rule id").to_string();
    env.ok(&["acl", "remove", &id]);
    env.ok(&[
        "acl", "add", "--user", "bob", "--deny", "receive", "noisy/#", "--retain", "true",
    ]);
}

fn export_to(env: &Env, file: &Path) -> String {
    let yaml = env.ok(&["export"]);
    std::fs::write(file, &yaml).expect("write the export");
    yaml
}

#[test]
fn export_then_import_gives_an_identical_store() {
    let source = Env::new();
    let target = Env::new();
    fill(&source);
    let file = target.path("policy.yaml");
    let yaml = export_to(&source, &file);
    assert!(yaml.starts_with("# Warden policy exported from the sqlite store"));
    assert!(yaml.contains("keep this file secret"));
    assert!(yaml.contains("$argon2id$"), "hashes are exported:\n{yaml}");

    let file_arg = file.to_str().expect("utf-8 path");
    let out = target.ok(&["import", file_arg]);
    assert_eq!(
        out,
        "sqlite: imported 3 users, 3 roles, 3 memberships, 6 rules\n"
    );
    assert_eq!(target.views(), source.views());
    assert_eq!(target.ok(&["export"]), yaml, "export -> import -> export");
    let rules = target.json(&["acl", "list"]);
    let ids: Vec<u64> = rules
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 7], "ids kept, gap included");
    // Flags travel too: carol is still disabled on the target.
    let carol = target.json(&["user", "show", "carol"]);
    assert_eq!(carol["enabled"], Value::Bool(false));
}

#[test]
fn import_refuses_a_non_empty_store_without_replace() {
    let source = Env::new();
    fill(&source);
    let target = Env::new();
    target.ok(&["user", "add", "zed", "--no-password"]);
    let file = target.path("policy.yaml");
    export_to(&source, &file);
    let file_arg = file.to_str().expect("utf-8 path");

    let out = target.run_stdin(&["import", file_arg], "");
    assert_one_line_error(&out, "pass --replace");
    assert!(stderr(&out).contains("not empty (1 users, 0 roles, 0 rules)"));
    let users = target.json(&["user", "list"]);
    assert_eq!(users.as_array().map(Vec::len), Some(1), "nothing changed");

    target.ok(&["import", "--replace", file_arg]);
    assert_eq!(
        target.views(),
        source.views(),
        "zed is gone, the rest is there"
    );
}

#[test]
fn import_reads_stdin_and_json() {
    let source = Env::new();
    fill(&source);
    let target = Env::new();
    let json = source.ok(&["export", "--json"]);
    let out = target.json_stdin(&["import", "-"], &json);
    assert_eq!(out["result"], "imported");
    assert_eq!(out["rules"], 6);
    assert_eq!(target.views(), source.views());
}

#[test]
fn a_broken_file_is_a_one_line_error_and_changes_nothing() {
    let env = Env::new();
    env.ok(&["user", "add", "zed", "--no-password"]);
    let bad = "users:\n  - username: a\n    enabled: maybe\n    superuser: false\n";
    let out = env.run_stdin(&["import", "--replace", "-"], bad);
    assert_one_line_error(&out, "cannot parse stdin");
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));
    let dangling = "roles: [ops]\nmemberships:\n  - { role: ops, username: ghost }\n";
    let out = env.run_stdin(&["import", "--replace", "-"], dangling);
    assert_one_line_error(&out, "stdin is not a valid policy");
    let out = env.run_stdin(&["import", "no/such/file.yaml"], "");
    assert_one_line_error(&out, "cannot read no/such/file.yaml");
    let users = env.json(&["user", "list"]);
    assert_eq!(users[0]["username"], "zed");
}

#[test]
fn export_help_warns_about_password_hashes() {
    let env = Env::new();
    let help = env.ok(&["export", "--help"]);
    assert!(help.contains("password hashes"), "{help}");
    assert!(help.contains("secret"), "{help}");
    let help = env.ok(&["import", "--help"]);
    assert!(help.contains("--replace"), "{help}");
}
