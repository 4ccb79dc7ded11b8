//! The admin CLI against a running broker's store: users, roles, rules, and
//! its errors.

use warden_e2e::*;

#[tokio::test]
async fn role_grant_gives_the_roles_rules() {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    broker.cli_ok(&["role", "add", "sensors"]).await;
    broker
        .acl(&["--role", "sensors", "--allow", "publish", "sensors/#"])
        .await;
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    assert_eq!(
        c.publish_acked(Publish::new("sensors/t", b"1", 1)).await,
        0x87,
        "no role yet"
    );
    broker.cli_ok(&["role", "grant", "sensors", "alice"]).await;
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    let code = c.publish_acked(Publish::new("sensors/t", b"2", 1)).await;
    assert_eq!(code, 0x00, "role granted; log:\n{}", broker.log());
}

#[tokio::test]
async fn user_add_with_role_flag() {
    let broker = TestBroker::start_default();
    broker.add_user("bob", "pw", &["ops"]).await;
    broker
        .acl(&["--role", "ops", "--allow", "subscribe,receive", "ops/#"])
        .await;
    let mut c = broker
        .login(Version::V311, &client_id("c"), "bob", "pw")
        .await;
    assert_eq!(c.subscribe("ops/#", 1).await, 1);
}

#[tokio::test]
async fn acl_ids_are_distinct_and_removal_works() {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    let a = broker.allow("alice", "publish", "a/#").await;
    let b = broker.allow("alice", "publish", "b/#").await;
    assert_ne!(a, b);
    broker.cli_ok(&["acl", "remove", &a.to_string()]).await;
    let mut c = broker
        .login(Version::V5, &client_id("c"), "alice", "pw")
        .await;
    assert_eq!(
        c.publish_acked(Publish::new("a/x", b"1", 1)).await,
        0x87,
        "rule a removed"
    );
    assert_eq!(
        c.publish_acked(Publish::new("b/x", b"1", 1)).await,
        0x00,
        "rule b kept"
    );
    let out = broker.cli(&["acl", "remove", &a.to_string()]).await;
    assert!(!out.status.success(), "removing a missing rule fails");
}

#[tokio::test]
async fn duplicate_user_and_bad_rule_are_errors() {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    let dup = broker
        .cli_stdin(&["user", "add", "alice", "--password-stdin"], "pw2")
        .await;
    assert!(!dup.status.success(), "second user add alice must fail");
    let bad = broker
        .cli(&[
            "acl", "add", "--user", "alice", "--allow", "publish", "a/#/b",
        ])
        .await;
    assert!(
        !bad.status.success(),
        "invalid filter a/#/b must be refused"
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line error, got:\n{stderr}"
    );
}

#[tokio::test]
async fn user_list_shows_users() {
    let broker = TestBroker::start_default();
    broker.add_user("alice", "pw", &[]).await;
    broker.add_user("bob", "pw", &[]).await;
    let out = broker.cli_ok(&["user", "list"]).await;
    assert!(
        out.contains("alice") && out.contains("bob"),
        "user list:\n{out}"
    );
}

#[tokio::test]
async fn passwd_replaces_the_password() {
    let broker = TestBroker::start_default();
    broker.user_with_rights("alice", "old-pw", "t/#").await;
    let args = ["user", "passwd", "alice", "--password-stdin"];
    let out = broker.cli_stdin(&args, "new-pw").await;
    warden_e2e::cli::success(&args, &out);
    let mut old = broker.raw().await;
    let connect = Connect::new(Version::V5, &client_id("c")).login("alice", "old-pw");
    assert_eq!(old.connect(&connect).await.expect("CONNACK").1, 0x86);
    broker
        .login(Version::V5, &client_id("c"), "alice", "new-pw")
        .await;
}

#[tokio::test]
async fn unknown_config_key_is_refused_with_field_and_line() {
    let broker = TestBroker::start_default();
    let bad = broker.dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(&broker.config).expect("config");
    let text = text.replace("policy: {", "policy: { on_deni: ignore,");
    std::fs::write(&bad, text).expect("write bad config");
    let out = warden_e2e::cli::run(&bad, &["serve"], None).await;
    assert!(!out.status.success(), "serve with an unknown key must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("on_deni") && stderr.contains("line"),
        "error names the key and the line: {stderr}"
    );
}
