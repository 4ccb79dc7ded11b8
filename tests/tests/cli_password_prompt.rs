//! `warden user add NAME` without --password-stdin, on a real pseudo-terminal
//! (tests/scripts/pty_password_prompt.py): it prompts twice, the terminal
//! never shows the password, and the stored password is the one typed (the
//! user logs in with it). Two different answers add no one.

use std::path::Path;

use serde_json::Value;
use warden_e2e::*;

/// Runs the pty driver; returns (exit status, what the terminal showed).
fn on_a_terminal(broker: &TestBroker, name: &str, first: &str, second: &str) -> (i64, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pty_password_prompt.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(cli::warden_bin())
        .arg(&broker.config)
        .args([name, first, second])
        .output()
        .expect("python3 (scripts/install-test-deps installs it)");
    assert!(
        out.status.success(),
        "pty driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("driver JSON");
    (
        report["exit"].as_i64().expect("exit"),
        report["terminal"].as_str().expect("terminal").to_owned(),
    )
}

#[tokio::test]
async fn user_add_prompts_twice_without_echo() {
    let broker = TestBroker::start_default();
    let password = "pty-s3cret-Zq9";
    let (code, terminal) = on_a_terminal(&broker, "ptyuser", password, password);
    assert_eq!(code, 0, "{terminal}");
    let first = terminal.find("Password: ").expect("first prompt");
    let second = terminal.find("Password (again): ").expect("second prompt");
    assert!(first < second, "{terminal}");
    assert!(terminal.contains("user ptyuser: added"), "{terminal}");
    assert!(!terminal.contains(password), "echoed: {terminal:?}");

    let shown = broker.cli_ok(&["user", "show", "ptyuser", "--json"]).await;
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["has_password"], true);
    // The stored hash is of what was typed: the user logs in with it.
    broker
        .login(Version::V5, &client_id("pty"), "ptyuser", password)
        .await;
}

#[tokio::test]
async fn different_answers_add_no_one() {
    let broker = TestBroker::start_default();
    let (code, terminal) = on_a_terminal(&broker, "ptyother", "one-pw", "two-pw");
    assert_eq!(code, 1, "{terminal}");
    assert!(
        terminal.contains("error: the passwords do not match"),
        "{terminal}"
    );
    assert!(!terminal.contains("one-pw") && !terminal.contains("two-pw"));
    let out = broker.cli(&["user", "show", "ptyother"]).await;
    assert!(!out.status.success(), "no user was added");
}
