//! Finds the real `warden` binary and runs its admin CLI against a test
//! broker's config. The binary is the one `cargo build -p warden` put next to
//! the test executables; it is built once on demand when missing.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

use tokio::io::AsyncWriteExt;

/// Path of the `warden` binary (`WARDEN_BIN` overrides), built if missing.
pub fn warden_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = locate_warden_bin();
        if !bin.exists() {
            if let Some(profile_dir) = bin.parent() {
                build_binary(profile_dir);
            }
        }
        assert!(bin.exists(), "warden binary not found at {}", bin.display());
        bin
    })
}

/// Where the `warden` binary is (`WARDEN_BIN`, else next to the test
/// executable's profile directory), whether or not it exists yet.
pub fn locate_warden_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("WARDEN_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/warden
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    profile_dir.join(format!("warden{}", std::env::consts::EXE_SUFFIX))
}

/// Builds the binary once; cargo's own build lock serialises test processes
/// that get here at the same time.
fn build_binary(profile_dir: &Path) {
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    cmd.args(["build", "-p", "warden", "--bin", "warden"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("running cargo build -p warden");
    assert!(status.success(), "cargo build -p warden failed");
}

/// Runs `warden -c CONFIG ARGS…`, feeding `stdin` when given.
pub async fn run(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(warden_bin());
    cmd.arg("-c")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn warden CLI");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        pipe.write_all(b"\n").await.expect("write stdin");
        drop(pipe);
    }
    let wait = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output());
    wait.await
        .unwrap_or_else(|_| panic!("warden {args:?} took over 30 s"))
        .expect("warden CLI output")
}

/// Panics with the CLI's output unless it exited 0; returns stdout.
pub fn success(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "warden {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
