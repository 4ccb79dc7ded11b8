//! `TestBroker`: the real `warden` binary started on ephemeral ports with a
//! fresh data directory, certificates and config, killed on drop. It keeps the
//! broker's log for assertions and runs the admin CLI against the same config.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::certs::TestPki;
use crate::cli;
use crate::raw::RawClient;
use crate::wire::{Connect, Version};

const TEMPLATE: &str = include_str!("../fixtures/warden.yaml");

/// What differs between test brokers; `Default` is the contract's base config.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// Add a plain TCP listener named `plain`.
    pub plain_tcp: bool,
    pub allow_anonymous: bool,
    /// `ignore` or `disconnect`.
    pub on_deny: &'static str,
    /// `connect_timeout` of the `tls` listener, e.g. "1s".
    pub connect_timeout: Option<&'static str>,
    /// `max_connections` of the `tls` listener.
    pub max_connections: Option<u32>,
    pub max_packet_size: &'static str,
    pub max_queued_messages: u32,
    /// `limits.max_keepalive` in seconds (0: the client's keep alive stands).
    pub max_keepalive: u32,
    /// The `store:` block as a YAML flow mapping; None is SQLite in the
    /// test's directory.
    pub store: Option<String>,
    /// `limits.write_stall`, e.g. "2s".
    pub write_stall: Option<&'static str>,
    /// More keys of the `limits:` flow mapping, starting with ", ", e.g.
    /// ", max_subscriptions: 3".
    pub limits_extra: String,
    /// Top-level YAML appended to the config as written, one key per line,
    /// e.g. "sessions: { takeover: any }\npersistence: { mode: sync }\n".
    pub extra_yaml: String,
    /// `username_from` of the `mtls` listener (default `cn`).
    pub mtls_username_from: &'static str,
    /// More keys of the `mtls` listener, each a full line with 4 spaces of
    /// indent, e.g. "    crl: @DIR@/ca.crl\n" (`@DIR@` is the test's dir).
    pub mtls_extra: String,
    /// More keys of the `auth:` flow mapping, starting with ", ".
    pub auth_extra: String,
    /// Write `ca.crl`, a CRL of the test CA revoking nothing, before the
    /// broker starts.
    pub empty_crl: bool,
    /// Serve the metrics listener (with the admin API's token
    /// [`ADMIN_TOKEN`] in a token file); its address is `addr("metrics")`.
    pub metrics: bool,
    /// Add the WebSocket listeners: `ws` and `wss` (any origin), `wss-mtls`
    /// (client certificates required, username from the CN) and `ws-origin`
    /// (only the origin `http://allowed.example`).
    pub websockets: bool,
    /// More listener entries, as YAML list items indented by two spaces
    /// (`@DIR@` is the test directory), and how many listeners they are.
    pub extra_listeners: String,
    pub extra_listener_count: usize,
    /// More server certificates issued by the test CA before the start:
    /// `(stem, names)` writes `@DIR@/<stem>.pem` and `@DIR@/<stem>.key`.
    pub server_certs: Vec<(&'static str, Vec<&'static str>)>,
    /// `RUST_LOG` for the broker; None is `WARDEN_E2E_LOG`, else `info`.
    pub rust_log: Option<String>,
}

/// The admin API token of a broker started with `metrics: true`.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            plain_tcp: false,
            allow_anonymous: false,
            on_deny: "ignore",
            connect_timeout: None,
            max_connections: None,
            max_packet_size: "1MiB",
            max_queued_messages: 1000,
            max_keepalive: 0,
            store: None,
            write_stall: None,
            limits_extra: String::new(),
            extra_yaml: String::new(),
            mtls_username_from: "cn",
            mtls_extra: String::new(),
            auth_extra: String::new(),
            empty_crl: false,
            metrics: false,
            websockets: false,
            extra_listeners: String::new(),
            extra_listener_count: 0,
            server_certs: Vec::new(),
            rust_log: None,
        }
    }
}

impl BrokerOptions {
    fn render(&self, dir: &Path) -> String {
        let mut tls_extra = String::new();
        if let Some(t) = self.connect_timeout {
            tls_extra.push_str(&format!("    connect_timeout: {t}\n"));
        }
        if let Some(n) = self.max_connections {
            tls_extra.push_str(&format!("    max_connections: {n}\n"));
        }
        let mut plain = if self.plain_tcp {
            "  - name: plain\n    kind: tcp\n    bind: \"127.0.0.1:0\"\n".to_owned()
        } else {
            String::new()
        };
        if self.websockets {
            plain.push_str(WS_LISTENERS);
        }
        plain.push_str(&self.extra_listeners);
        let store = self
            .store
            .clone()
            .unwrap_or_else(|| "{ backend: sqlite, path: @DIR@/data/warden.db }".to_owned());
        let mut limits_extra = self
            .write_stall
            .map(|w| format!(", write_stall: {w}"))
            .unwrap_or_default();
        limits_extra.push_str(&self.limits_extra);
        let mut text = TEMPLATE
            .replace("@MTLS_EXTRA@\n", &self.mtls_extra)
            .replace("@MTLS_FROM@", self.mtls_username_from)
            .replace("@AUTH_EXTRA@", &self.auth_extra)
            .replace("@STORE@", &store)
            .replace("@LIMITS_EXTRA@", &limits_extra)
            .replace("@TLS_EXTRA@\n", &tls_extra)
            .replace("@PLAIN@\n", &plain)
            .replace("@DIR@", &dir.display().to_string())
            .replace("@ANON@", &self.allow_anonymous.to_string())
            .replace("@ON_DENY@", self.on_deny)
            .replace("@MAX_PACKET@", self.max_packet_size)
            .replace("@MAX_QUEUED@", &self.max_queued_messages.to_string())
            .replace("@MAX_KEEPALIVE@", &self.max_keepalive.to_string());
        text.push_str(&self.extra_yaml);
        if self.metrics {
            text.push_str(&format!(
                "metrics: {{ bind: \"127.0.0.1:0\", token_file: {}/admin-token }}\n",
                dir.display()
            ));
        }
        text
    }

    fn listener_count(&self) -> usize {
        2 + usize::from(self.plain_tcp)
            + usize::from(self.metrics)
            + if self.websockets { 4 } else { 0 }
            + self.extra_listener_count
    }
}

const WS_LISTENERS: &str = "  - name: ws
    kind: ws
    bind: \"127.0.0.1:0\"
  - name: wss
    kind: wss
    bind: \"127.0.0.1:0\"
    cert: @DIR@/server.pem
    key: @DIR@/server.key
  - name: wss-mtls
    kind: wss
    bind: \"127.0.0.1:0\"
    cert: @DIR@/server.pem
    key: @DIR@/server.key
    client_auth: required
    client_ca: @DIR@/ca.pem
    username_from: cn
  - name: ws-origin
    kind: ws
    bind: \"127.0.0.1:0\"
    allowed_origins: [\"http://allowed.example\"]
";

pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub pki: TestPki,
    pub config: PathBuf,
    listener_count: usize,
    child: Child,
    log: Arc<Mutex<String>>,
    addrs: HashMap<String, SocketAddr>,
    rust_log: String,
}

/// Finds `listening on <addr> (<name>)` in a log line.
fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr_text = rest.split_whitespace().next()?;
    let addr: SocketAddr = addr_text.parse().ok()?;
    let after = &rest[rest.find('(')? + 1..];
    let name = &after[..after.find(')')?];
    Some((name.to_string(), addr))
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn pump(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    tx: mpsc::Sender<(String, SocketAddr)>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            if let Some(found) = parse_listening(&line) {
                let _ = tx.send(found);
            }
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// `warden -c CONFIG serve`, its output pumped into `log`; the receiver
/// gets each `listening on` line.
fn spawn_serve(
    config: &Path,
    log: &Arc<Mutex<String>>,
    rust_log: &str,
) -> (Child, mpsc::Receiver<(String, SocketAddr)>) {
    let mut child = Command::new(cli::warden_bin())
        .arg("-c")
        .arg(config)
        .arg("serve")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warden serve");
    let (tx, rx) = mpsc::channel();
    if let Some(err) = child.stderr.take() {
        pump(err, log.clone(), tx.clone());
    }
    if let Some(out) = child.stdout.take() {
        pump(out, log.clone(), tx);
    }
    (child, rx)
}

impl TestBroker {
    /// Starts a broker with the default options.
    pub fn start_default() -> Self {
        Self::start(BrokerOptions::default())
    }

    /// Writes certificates and config into a new temporary directory, starts
    /// `warden -c CONFIG serve` and waits (20 s at most) for every listener.
    pub fn start(opts: BrokerOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warden-e2e-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let pki = TestPki::new(dir.path());
        if opts.empty_crl {
            std::fs::write(dir.path().join("ca.crl"), pki.crl(&[])).expect("write CRL");
        }
        for (stem, names) in &opts.server_certs {
            pki.server_cert(stem, names);
        }
        let config = dir.path().join("warden.yaml");
        std::fs::write(&config, opts.render(dir.path())).expect("write config");
        if opts.metrics {
            std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("token file");
        }

        let log = Arc::new(Mutex::new(String::new()));
        let rust_log = opts
            .rust_log
            .clone()
            .unwrap_or_else(|| std::env::var("WARDEN_E2E_LOG").unwrap_or("info".into()));
        let (child, rx) = spawn_serve(&config, &log, &rust_log);
        let mut broker = Self {
            dir,
            pki,
            config,
            listener_count: opts.listener_count(),
            child,
            log,
            addrs: HashMap::new(),
            rust_log,
        };
        broker.wait_listening(&rx, broker.listener_count);
        broker
    }

    /// The broker process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a `kill -s` name: TERM, HUP, INT, KILL) to the broker.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits up to `wait` for the broker to exit; its status, or None if it
    /// is still running.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same directory and config (after it
    /// exited or was killed; a running one is killed with SIGKILL first).
    /// Listener ports are new; the log continues in the same buffer.
    pub fn restart(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str("---- restart ----\n");
        let (child, rx) = spawn_serve(&self.config, &self.log, &self.rust_log);
        self.child = child;
        self.addrs.clear();
        self.wait_listening(&rx, self.listener_count);
    }

    fn wait_listening(&mut self, rx: &mpsc::Receiver<(String, SocketAddr)>, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.addrs.len() < want {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("warden serve exited with {status}:\n{}", self.log());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "warden serve: {} of {want} listeners after 20 s; log:\n{}",
                    self.addrs.len(),
                    self.log()
                );
            }
            if let Ok((name, addr)) = rx.recv_timeout(left.min(Duration::from_millis(100))) {
                self.addrs.insert(name, addr);
            }
        }
    }

    /// The broker's log so far (stderr and stdout, ANSI codes removed).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.log().contains(needle)
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        *self
            .addrs
            .get(listener)
            .unwrap_or_else(|| panic!("no listener {listener}; have {:?}", self.addrs))
    }
    pub fn tls_addr(&self) -> SocketAddr {
        self.addr("tls")
    }
    pub fn mtls_addr(&self) -> SocketAddr {
        self.addr("mtls")
    }
    pub fn plain_addr(&self) -> SocketAddr {
        self.addr("plain")
    }
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// `warden -c CONFIG ARGS…`.
    pub async fn cli(&self, args: &[&str]) -> Output {
        cli::run(&self.config, args, None).await
    }

    /// `warden -c CONFIG ARGS…` with `stdin` fed to it.
    pub async fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        cli::run(&self.config, args, Some(stdin)).await
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub async fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        cli::success(args, &out)
    }

    /// `warden user add NAME --password-stdin --role R…`.
    pub async fn add_user(&self, name: &str, password: &str, roles: &[&str]) {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        for r in roles {
            args.extend(["--role", r]);
        }
        let out = self.cli_stdin(&args, password).await;
        cli::success(&args, &out);
    }

    /// `warden user add NAME --no-password` (certificate-identified users).
    pub async fn add_user_no_password(&self, name: &str) {
        self.cli_ok(&["user", "add", name, "--no-password"]).await;
    }

    /// `warden acl add ARGS… --json`; returns the new rule id.
    pub async fn acl(&self, args: &[&str]) -> u64 {
        let mut full = vec!["acl", "add"];
        full.extend_from_slice(args);
        full.push("--json");
        let stdout = self.cli_ok(&full).await;
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("acl add --json printed {stdout:?}: {e}"));
        v["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("acl add --json printed no id: {stdout}"))
    }

    /// Allows `actions` (comma-separated) on `pattern` for `user`.
    pub async fn allow(&self, user: &str, actions: &str, pattern: &str) -> u64 {
        self.acl(&["--user", user, "--allow", actions, pattern])
            .await
    }

    /// Denies `actions` on `pattern` for `user`.
    pub async fn deny(&self, user: &str, actions: &str, pattern: &str) -> u64 {
        self.acl(&["--user", user, "--deny", actions, pattern])
            .await
    }

    /// A user with a password and the publish/subscribe/receive rights on `pattern`.
    pub async fn user_with_rights(&self, name: &str, password: &str, pattern: &str) {
        self.add_user(name, password, &[]).await;
        self.allow(name, "publish,subscribe,receive", pattern).await;
    }

    /// A raw TLS connection to the `tls` listener (no CONNECT sent yet).
    pub async fn raw(&self) -> RawClient {
        RawClient::tls(self.tls_addr(), self.ca_pem(), None)
            .await
            .unwrap_or_else(|e| panic!("TLS connect: {e:?}\nlog:\n{}", self.log()))
    }

    /// A raw client logged in with `user`/`password`; asserts CONNACK success.
    pub async fn login(
        &self,
        version: Version,
        client_id: &str,
        user: &str,
        password: &str,
    ) -> RawClient {
        self.login_with(Connect::new(version, client_id).login(user, password))
            .await
    }

    /// A raw client connected with `connect`; asserts CONNACK success.
    pub async fn login_with(&self, connect: Connect) -> RawClient {
        self.connect_ok(&connect).await.0
    }

    /// Connects with `connect`; asserts CONNACK success and returns the
    /// client with the Session Present flag.
    pub async fn connect_ok(&self, connect: &Connect) -> (RawClient, bool) {
        let mut c = self.raw().await;
        let (present, code, _) = c
            .connect(connect)
            .await
            .unwrap_or_else(|e| panic!("CONNECT {}: {e:?}", connect.client_id));
        assert_eq!(
            code,
            0,
            "CONNACK for {}; log:\n{}",
            connect.client_id,
            self.log()
        );
        (c, present)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- warden log ----\n{}", self.log());
        }
    }
}
