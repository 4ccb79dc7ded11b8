//! A PostgreSQL or MySQL store that cannot be reached: `warden serve` and
//! `warden config check --connect` fail within the store timeout, naming
//! host:port and the real cause ("connection refused"), never the password
//! of the URL; a reachable store passes `config check --connect`.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use warden_e2e::cli;

/// The store timeout the configs below set.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);
/// Generous room beyond it: the machine may be busy.
const SLACK: Duration = Duration::from_secs(20);

/// A config in a fresh directory whose store is `store` (a flow mapping).
fn config(dir: &Path, store: &str) -> PathBuf {
    let text = format!(
        "data_dir: {}/data\nlisteners:\n  - {{ name: plain, kind: tcp, bind: \"127.0.0.1:0\" }}\nstore: {store}\n",
        dir.display()
    );
    let path = dir.join("warden.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A local port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

fn unreachable_store(scheme: &str, port: u16) -> String {
    format!(
        "{{ backend: {scheme}, url: \"{scheme}://warden:unreach-secret-77@127.0.0.1:{port}/test\", timeout: {}s }}",
        STORE_TIMEOUT.as_secs()
    )
}

/// `warden -c CONFIG serve`, which must exit on its own.
async fn serve(config: &Path) -> Output {
    let child = tokio::process::Command::new(cli::warden_bin())
        .arg("-c")
        .arg(config)
        .arg("serve")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn warden serve");
    tokio::time::timeout(STORE_TIMEOUT + SLACK, child.wait_with_output())
        .await
        .expect("serve gave up within the store timeout (plus slack)")
        .expect("serve output")
}

fn assert_names_the_cause(out: &Output, port: u16) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "one error line last: {stderr}");
    assert!(
        last.contains(&format!("127.0.0.1:{port}")),
        "host:port in {last:?}"
    );
    assert!(
        last.to_lowercase().contains("refused"),
        "the cause in {last:?}"
    );
    assert!(!stderr.contains("unreach-secret-77"), "{stderr}");
}

async fn unreachable_at_start(scheme: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = closed_port();
    let config = config(dir.path(), &unreachable_store(scheme, port));
    let started = Instant::now();
    let out = serve(&config).await;
    assert!(started.elapsed() < STORE_TIMEOUT + SLACK);
    assert_names_the_cause(&out, port);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{scheme}://warden:***@127.0.0.1:{port}/test")),
        "the startup line names the store without its password: {stderr}"
    );

    let out = cli::run(&config, &["config", "check", "--connect"], None).await;
    assert_names_the_cause(&out, port);
    assert!(out.stdout.is_empty(), "{out:?}");
    // Without --connect the store is not touched.
    let out = cli::run(&config, &["config", "check"], None).await;
    assert_eq!(cli::success(&["config", "check"], &out), "ok\n");
}

#[tokio::test]
async fn an_unreachable_postgres_fails_fast_with_host_port_and_cause() {
    unreachable_at_start("postgres").await;
}

#[tokio::test]
async fn an_unreachable_mysql_fails_fast_with_host_port_and_cause() {
    unreachable_at_start("mysql").await;
}

#[tokio::test]
async fn config_check_connect_reaches_real_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (store, shown) in [
        (
            "{ backend: postgres, url: \"postgres://postgres:pw-not-shown@127.0.0.1:5432/test\" }",
            "postgres://postgres:***@127.0.0.1:5432/test",
        ),
        (
            "{ backend: mysql, url: \"mysql://root@127.0.0.1:3306/test\" }",
            "mysql://root@127.0.0.1:3306/test",
        ),
        (
            "{ backend: redis, url: \"redis://127.0.0.1:6379/0\" }",
            "redis://127.0.0.1:6379/0",
        ),
    ] {
        let config = config(dir.path(), store);
        let args = ["config", "check", "--connect"];
        let out = cli::run(&config, &args, None).await;
        let stdout = cli::success(&args, &out);
        assert_eq!(stdout, format!("ok: store {shown} answered\n"));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("pw-not-shown"));
        let out = cli::run(&config, &["--json", "config", "check", "--connect"], None).await;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        assert_eq!(v["store"]["result"], "ok", "{v}");
    }
    // A SQLite file that does not exist yet is fine (serve creates it).
    let config = config(dir.path(), "{ backend: sqlite, path: fresh.db }");
    let out = cli::run(&config, &["config", "check", "--connect"], None).await;
    let stdout = cli::success(&["config", "check", "--connect"], &out);
    assert!(stdout.starts_with("ok: store sqlite:"), "{stdout}");
}
