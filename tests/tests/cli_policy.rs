//! The policy-as-code and audit commands of the real `warden` binary on each
//! of the five stores: `migrate` (what it applied, then "already at"),
//! `policy test` with docs/policy-tests.example.yaml (all hold, then a
//! removed rule makes three fail: exit 3), `export -o` (mode 0600),
//! `policy diff` (against an export and the live store, with the verdicts
//! that change), `check --anonymous` and `--cert-cn`, and `audit list` (every
//! write recorded, with who and where). Then a running broker logs the admin
//! changes it picks up.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::*;

/// A config naming `store`, in a fresh directory, for CLI runs.
struct Cli {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Cli {
    fn new(store: &TestStore) -> Cli {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("warden.yaml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!("data_dir: {}\nstore: {}\n", data.display(), store.yaml),
        )
        .expect("write config");
        Cli { dir, config }
    }

    async fn run(&self, args: &[&str]) -> Output {
        cli::run(&self.config, args, None).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        cli::success(args, &self.run(args).await)
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/policy-tests.example.yaml")
        .display()
        .to_string()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `migrate` says on a fresh store, then on the second run.
fn migrate_lines(backend: Backend) -> (&'static [&'static str], &'static str) {
    match backend {
        Backend::Sqlite | Backend::Postgres | Backend::Mysql => (
            &[
                "applied 0001 init",
                "applied 0002 cert fingerprint",
                "applied 0003 admin changes",
                "now at version 3",
            ],
            "already at version 3",
        ),
        Backend::Redis => (
            &["applied key schema 1 recorded", "now at version 1"],
            "already at version 1",
        ),
        Backend::Mongodb => (
            &["applied collection admin_changes created", "up to date"],
            "already up to date",
        ),
    }
}

async fn scenario(backend: Backend) {
    let store = TestStore::new(backend, None, "5s");
    let cli = Cli::new(&store);
    let name = backend.name();

    let first = cli.ok(&["migrate"]).await;
    let (applied, again) = migrate_lines(backend);
    for line in applied {
        assert!(
            first.contains(&format!("{name}: {line}\n")),
            "{name}: {first}"
        );
    }
    assert_eq!(
        cli.ok(&["migrate"]).await,
        format!("{name}: {again}\n"),
        "{name}"
    );

    // The README's walk-through plus a certificate-identified device: the
    // setup docs/policy-tests.example.yaml describes.
    let add = |args: &'static [&'static str], stdin: Option<&'static str>| {
        let config = cli.config.clone();
        async move {
            let out = cli::run(&config, args, stdin).await;
            cli::success(args, &out)
        }
    };
    add(
        &["user", "add", "alice", "--password-stdin"],
        Some("s3cret"),
    )
    .await;
    add(
        &[
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--role",
            "sensors",
        ],
        Some("s3cret"),
    )
    .await;
    let home: u64 = add(
        &[
            "acl",
            "add",
            "--user",
            "alice",
            "--allow",
            "publish,subscribe,receive",
            "home/alice/#",
        ],
        None,
    )
    .await
    .trim()
    .parse()
    .expect("rule id");
    add(
        &[
            "acl",
            "add",
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
        None,
    )
    .await;
    add(&["user", "add", "dev1", "--no-password"], None).await;
    add(
        &[
            "acl",
            "add",
            "--user",
            "dev1",
            "--allow",
            "publish",
            "devices/${cert.cn}/#",
        ],
        None,
    )
    .await;

    let passed = cli.run(&["policy", "test", &example()]).await;
    assert_eq!(code(&passed), Some(0), "{name}: {}", stdout(&passed));
    assert!(
        stdout(&passed).ends_with("9 of 9 expectations hold\n"),
        "{name}: {}",
        stdout(&passed)
    );

    let before = cli.path("before.yaml");
    cli.ok(&["export", "-o", &before]).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&before)
            .expect("export file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    assert!(std::fs::read_to_string(&before)
        .expect("read export")
        .contains("username: alice"));

    let same = cli.run(&["policy", "diff", &before]).await;
    assert_eq!(code(&same), Some(0), "{name}: {}", stdout(&same));
    assert!(stdout(&same).contains("users, roles and rules are the same"));

    cli.ok(&["acl", "remove", &home.to_string()]).await;

    let failed = cli.run(&["policy", "test", &example(), "--json"]).await;
    assert_eq!(code(&failed), Some(3), "{name}: {}", stdout(&failed));
    let report: Value = serde_json::from_slice(&failed.stdout).expect("json");
    assert_eq!(report["failed"], 3, "{name}: {report}");
    assert_eq!(report["passed"], 6);
    let first = &report["results"][0];
    assert_eq!(first["ok"], false);
    assert_eq!(first["expected"], "allow");
    assert_eq!(first["got"], "deny");
    assert_eq!(first["decision"], "deny: no matching allow rule");

    let text = cli.run(&["policy", "test", &example()]).await;
    assert_eq!(code(&text), Some(3));
    assert!(
        stdout(&text).contains(
            "FAIL    1  alice may switch her lamp\n            alice publish \"home/alice/lamp\"\n            expected: allow\n            got:      deny: no matching allow rule\n"
        ),
        "{name}: {}",
        stdout(&text)
    );

    let diff = cli
        .run(&["policy", "diff", &before, "--live", "--tests", &example()])
        .await;
    assert_eq!(code(&diff), Some(3), "{name}: {}", stdout(&diff));
    let diff = stdout(&diff);
    assert!(
        diff.contains(&format!(
            "rules:\n  - {home}: allow publish,subscribe,receive user:alice \"home/alice/#\"\n"
        )),
        "{name}: {diff}"
    );
    assert!(
        diff.contains(
            "    1  alice may switch her lamp: allow -> deny (the file expects otherwise)"
        ),
        "{name}: {diff}"
    );
    let after = cli.path("after.yaml");
    cli.ok(&["export", "-o", &after]).await;
    let files = cli
        .run(&["policy", "diff", &before, &after, "--json"])
        .await;
    assert_eq!(code(&files), Some(3), "{name}: {}", stdout(&files));
    let files: Value = serde_json::from_slice(&files.stdout).expect("json");
    assert_eq!(files["same"], false);
    assert_eq!(files["rules_removed"][0]["id"], home);
    assert_eq!(files["users_added"], Value::Array(vec![]));

    let anon = cli.json(&["check", "--anonymous", "connect"]).await;
    assert_eq!(anon["allowed"], false, "{name}: {anon}");
    assert_eq!(anon["login_refused"], "anonymous logins are off");
    let device = cli
        .json(&[
            "check",
            "--cert-cn",
            "dev1",
            "--cert-san",
            "dev1.devices.example",
            "publish",
            "devices/dev1/t",
        ])
        .await;
    assert_eq!(device["allowed"], true, "{name}: {device}");
    assert_eq!(device["user"], "dev1");

    let changes = cli.json(&["audit", "list"]).await;
    let whats: Vec<&str> = changes
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["what"].as_str().expect("what"))
        .collect();
    assert_eq!(
        whats,
        [
            "user add alice".to_owned(),
            "user add bob roles=sensors".to_owned(),
            format!("acl add {home}: allow publish,subscribe,receive user:alice \"home/alice/#\""),
            format!(
                "acl add {}: allow publish role:sensors \"sensors/${{username}}/#\" max_qos=1 retain=false",
                home + 1
            ),
            "user add dev1 no-password".to_owned(),
            format!(
                "acl add {}: allow publish user:dev1 \"devices/${{cert.cn}}/#\"",
                home + 2
            ),
            format!("acl remove {home}: allow publish,subscribe,receive user:alice \"home/alice/#\""),
        ],
        "{name}"
    );
    for change in changes.as_array().into_iter().flatten() {
        assert!(!change["user"].as_str().unwrap_or("").is_empty());
        assert!(!change["host"].as_str().unwrap_or("").is_empty());
        assert!(!change.to_string().contains("argon2"), "{change}");
    }
    let none = cli
        .json(&["audit", "list", "--since", "2999-01-01T00:00:00Z"])
        .await;
    assert_eq!(none, Value::Array(vec![]));

    let missing = cli.run(&["policy", "test", &cli.path("nope.yaml")]).await;
    assert_eq!(code(&missing), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: cannot read "), "{err}");
}

#[tokio::test]
async fn policy_and_audit_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test]
async fn policy_and_audit_on_postgres() {
    scenario(Backend::Postgres).await;
}

#[tokio::test]
async fn policy_and_audit_on_mysql() {
    scenario(Backend::Mysql).await;
}

#[tokio::test]
async fn policy_and_audit_on_mongodb() {
    scenario(Backend::Mongodb).await;
}

#[tokio::test]
async fn policy_and_audit_on_redis() {
    scenario(Backend::Redis).await;
}

/// Waits until the broker's log has `needle`.
async fn log_line(broker: &TestBroker, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let log = broker.log();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {needle:?} in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn broker_logs_admin_changes(backend: Backend) {
    let store = TestStore::new(backend, None, "5s");
    let broker = TestBroker::start(BrokerOptions {
        store: Some(store.yaml.clone()),
        ..Default::default()
    });
    broker.add_user("carol", "pw", &["ops"]).await;
    broker.cli_ok(&["role", "revoke", "ops", "carol"]).await;
    let line = log_line(&broker, "admin change: user add carol roles=ops").await;
    assert!(line.contains("by="), "{line}");
    assert!(line.contains("host="), "{line}");
    log_line(&broker, "admin change: role revoke ops carol").await;
    assert!(!broker.log().contains("argon2"), "no hash in the log");
}

#[tokio::test]
async fn broker_logs_admin_changes_on_sqlite() {
    broker_logs_admin_changes(Backend::Sqlite).await;
}

#[tokio::test]
async fn broker_logs_admin_changes_on_postgres() {
    broker_logs_admin_changes(Backend::Postgres).await;
}

#[tokio::test]
async fn broker_logs_admin_changes_on_redis() {
    broker_logs_admin_changes(Backend::Redis).await;
}
