//! Moving from Mosquitto, side by side: a real Mosquitto (Debian's 2.0)
//! runs with a `mosquitto_passwd`-made password file and an ACL file, and
//! another with the dynamic-security plugin configured through
//! `mosquitto_ctrl`; `warden import mosquitto` / `mosquitto-dynsec` brings
//! the same files into Warden (SQLite, PostgreSQL, Redis). The same clients
//! with the same passwords then ask both brokers the same questions: may
//! this publish go through (PUBACK reason code), and does a subscriber get
//! the message on this topic. The answers must agree, except for the rows
//! listed as documented Warden semantics (docs/migration.md).
//!
//! Each Mosquitto runs on a free port of its own (never 1883). After the
//! logins, the imported Mosquitto hashes must have been replaced by argon2id
//! in the store, once.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_e2e::stores::{Backend, TestStore};
use warden_e2e::*;

/// The dynamic-security plugin of Debian's `mosquitto` package.
fn dynsec_plugin() -> String {
    let listed = Command::new("dpkg")
        .args(["-L", "mosquitto"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    listed
        .lines()
        .find(|l| l.ends_with("/mosquitto_dynamic_security.so"))
        .unwrap_or("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
        .to_owned()
}

/// `mosquitto` lives in /usr/sbin, which a non-root PATH may lack.
fn mosquitto_bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// A Mosquitto broker of the test's own, killed on drop.
struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts `mosquitto -c` with `body` after its listener line.
fn start_mosquitto(dir: &Path, name: &str, body: &str) -> Mosquitto {
    let port = free_port();
    let conf = dir.join(format!("{name}.conf"));
    // `user root` keeps a broker started by root as root (it would drop to
    // the `mosquitto` user and lose access to the test's files); started
    // by anyone else the line has no effect.
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nuser root\nallow_anonymous false\n{body}"),
    )
    .expect("write mosquitto.conf");
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(mosquitto_bin())
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("mosquitto log"))
        .spawn()
        .expect("mosquitto (scripts/install-test-deps installs it)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let broker = Mosquitto { child, addr, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not start: {}",
            std::fs::read_to_string(&broker.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The users of the password-file setup: (name, password, `-H sha512`).
const PASSWD_USERS: &[(&str, &str, bool)] = &[
    ("alice", "alice-pw", false),
    ("bob", "bob pw 2", false),
    ("carol", "carol-pw", true),
    ("feeder", "feeder-pw", false),
];

const ACL: &str = "\
# made for the side-by-side migration test
user alice
topic readwrite sensors/alice/#
topic read public/#
topic deny public/secret

user bob
topic write public/#
topic read sensors/+/temp

user carol
topic read carol/#

user feeder
topic write sensors/#
topic write public/#
topic write carol/#
topic write clients/#
topic write sentinel/#

pattern readwrite devices/%u/#
pattern deny devices/%u/locked
pattern read clients/%c/in
pattern write clients/%c/out
pattern read sentinel/%u
";

/// One question asked of both brokers.
#[derive(Clone, Copy, Debug)]
enum Ask {
    /// (user, client id, topic): a PUBACK reason code below 0x80?
    Publish(&'static str, &'static str, &'static str),
    /// (user, client id, filter, topic): is a message on `topic`, published
    /// by the feeder, delivered to a subscriber of `filter`?
    Receive(&'static str, &'static str, &'static str, &'static str),
}

const PASSWD_TABLE: &[Ask] = &[
    Ask::Publish("alice", "dev1", "sensors/alice/t"),
    Ask::Publish("alice", "dev1", "sensors/bob/t"),
    Ask::Publish("alice", "dev1", "public/x"),
    Ask::Publish("alice", "dev1", "devices/alice/x"),
    Ask::Publish("alice", "dev1", "devices/alice/locked"),
    Ask::Publish("alice", "dev1", "devices/bob/x"),
    Ask::Publish("alice", "dev1", "clients/dev1/out"),
    Ask::Publish("alice", "dev1", "clients/dev2/out"),
    Ask::Publish("alice", "dev1", "clients/dev1/in"),
    Ask::Publish("bob", "dev2", "public/x"),
    Ask::Publish("bob", "dev2", "public/secret"),
    Ask::Publish("bob", "dev2", "sensors/a/temp"),
    Ask::Publish("carol", "dev3", "carol/x"),
    Ask::Publish("carol", "dev3", "devices/carol/a/b"),
    Ask::Receive("alice", "dev1", "public/#", "public/a"),
    Ask::Receive("alice", "dev1", "public/#", "public/secret"),
    Ask::Receive("alice", "dev1", "public/secret", "public/secret"),
    Ask::Receive("alice", "dev1", "sensors/alice/#", "sensors/alice/t"),
    Ask::Receive("alice", "dev1", "clients/dev1/in", "clients/dev1/in"),
    Ask::Receive("alice", "dev1", "clients/dev2/in", "clients/dev2/in"),
    Ask::Receive("alice", "dev1", "sensors/bob/t", "sensors/bob/t"),
    Ask::Receive("bob", "dev2", "sensors/+/temp", "sensors/x/temp"),
    Ask::Receive("bob", "dev2", "sensors/x/temp", "sensors/x/temp"),
    Ask::Receive("bob", "dev2", "public/a", "public/a"),
    Ask::Receive("carol", "dev3", "carol/#", "carol/a"),
    Ask::Receive("carol", "dev3", "carol/+", "carol/b"),
    // Documented difference: Mosquitto accepts any SUBSCRIBE and filters
    // at delivery; Warden grants a filter only if allow rules cover it.
    Ask::Receive("carol", "dev3", "#", "carol/c"),
];

/// The rows where Warden answers differently on purpose (docs/migration.md).
fn documented_difference(ask: &Ask) -> bool {
    matches!(ask, Ask::Receive("carol", "dev3", "#", _))
}

async fn login(addr: SocketAddr, user: &str, password: &str, client_id: &str) -> RawClient {
    let mut c = RawClient::tcp(addr).await.expect("TCP connect");
    let (_, code, _) = c
        .connect(&Connect::new(Version::V5, client_id).login(user, password))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0, "{user} ({client_id}) must log in at {addr}");
    c
}

struct Side<'a> {
    name: &'static str,
    addr: SocketAddr,
    passwords: &'a [(&'static str, &'static str)],
    feeder: &'static str,
}

impl Side<'_> {
    fn password(&self, user: &str) -> &'static str {
        self.passwords
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no password for {user}"))
    }

    async fn answer(&self, ask: Ask, n: usize) -> bool {
        match ask {
            Ask::Publish(user, id, topic) => {
                let mut c = login(self.addr, user, self.password(user), id).await;
                let code = c.publish_acked(Publish::new(topic, b"x", 1)).await;
                c.disconnect().await;
                // Success codes are below 0x80: Mosquitto answers 0x10 (no
                // matching subscribers) where Warden answers 0.
                code < 0x80
            }
            Ask::Receive(user, id, filter, topic) => {
                let mut sub = login(self.addr, user, self.password(user), id).await;
                sub.subscribe(filter, 1).await;
                let sentinel = format!("sentinel/{user}");
                sub.subscribe(&sentinel, 1).await;
                let mut feeder = login(
                    self.addr,
                    self.feeder,
                    self.password(self.feeder),
                    &format!("feed-{n}"),
                )
                .await;
                let marker = format!("m{n}");
                feeder
                    .publish_acked(Publish::new(topic, marker.as_bytes(), 1))
                    .await;
                // Delivered in order: once the sentinel is here, the message
                // either came before it or is not coming.
                feeder
                    .publish_acked(Publish::new(&sentinel, b"end", 1))
                    .await;
                let mut got = false;
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let Some(p) = sub.next_publish(left).await else {
                        panic!("{}: the sentinel never arrived for {ask:?}", self.name)
                    };
                    sub.ack(&p).await;
                    if p.topic == sentinel {
                        break;
                    }
                    if p.topic == topic && p.payload == marker.as_bytes() {
                        got = true;
                    }
                }
                sub.disconnect().await;
                feeder.disconnect().await;
                got
            }
        }
    }
}

/// Ask both; compare; return the table as text for the failure message.
/// Both brokers, the same users and passwords (the feeder publishes), one
/// table of questions.
async fn side_by_side(
    mosquitto_name: &'static str,
    mosquitto: SocketAddr,
    warden: SocketAddr,
    passwords: &[(&'static str, &'static str)],
    table: &[Ask],
) {
    let side = |name, addr| Side {
        name,
        addr,
        passwords,
        feeder: "feeder",
    };
    compare(
        &side(mosquitto_name, mosquitto),
        &side("warden", warden),
        table,
    )
    .await;
}

async fn compare(mosquitto: &Side<'_>, warden: &Side<'_>, table: &[Ask]) {
    let mut mismatches = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for (n, ask) in table.iter().enumerate() {
        let m = mosquitto.answer(*ask, n).await;
        let w = warden.answer(*ask, n).await;
        if m {
            allowed += 1;
        } else {
            denied += 1;
        }
        let differs = m != w;
        if differs != documented_difference(ask) {
            mismatches.push(format!("{ask:?}: mosquitto {m}, warden {w}"));
        }
    }
    assert!(
        allowed > 0 && denied > 0,
        "the table must hold both answers"
    );
    assert!(
        mismatches.is_empty(),
        "Warden and Mosquitto disagree:\n{}",
        mismatches.join("\n")
    );
}

/// The password hash of `user` in `warden export`.
async fn stored_hash(broker: &TestBroker, user: &str) -> String {
    let export = broker.cli_ok(&["export"]).await;
    let mut lines = export.lines();
    while let Some(line) = lines.next() {
        if line.trim_start_matches("- ").trim() == format!("username: {user}") {
            for next in lines.by_ref() {
                if let Some(hash) = next.trim().strip_prefix("password_hash: ") {
                    return hash.trim_matches(['\'', '"']).to_owned();
                }
                if next.trim_start().starts_with("- ") {
                    break;
                }
            }
        }
    }
    panic!("no hash for {user} in:\n{export}")
}

async fn wait_rehashed(broker: &TestBroker, user: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let hash = stored_hash(broker, user).await;
        if hash.starts_with("$argon2id$") {
            return hash;
        }
        assert!(
            Instant::now() < deadline,
            "{user} still has {}… after logging in; log:\n{}",
            &hash[..4.min(hash.len())],
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn warden_with(store: &TestStore) -> TestBroker {
    TestBroker::start(BrokerOptions {
        plain_tcp: true,
        store: Some(store.yaml.clone()),
        ..Default::default()
    })
}

async fn password_file_side_by_side(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    let passwd_s = passwd.display().to_string();
    for (i, (user, password, sha512)) in PASSWD_USERS.iter().enumerate() {
        let mut args = Vec::new();
        if i == 0 {
            args.push("-c");
        }
        if *sha512 {
            args.extend(["-H", "sha512"]);
        }
        args.extend(["-b", &passwd_s, user, password]);
        run("mosquitto_passwd", &args);
    }
    let text = std::fs::read_to_string(&passwd).expect("passwd");
    assert!(
        text.contains("carol:$6$") && text.contains("alice:$7$"),
        "{text}"
    );
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).expect("acl");
    let mosquitto = start_mosquitto(
        dir.path(),
        "mosquitto",
        &format!(
            "password_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        ),
    );

    let store = TestStore::new(backend, None, "5s");
    let warden = warden_with(&store);
    let acl_s = acl.display().to_string();
    let dry = warden
        .cli_ok(&[
            "import",
            "mosquitto",
            "--passwd",
            &passwd_s,
            "--acl",
            &acl_s,
            "--dry-run",
        ])
        .await;
    assert!(dry.contains("would import 4 users"), "{dry}");
    assert!(!dry.contains("$7$"), "no hash in the plan output: {dry}");
    assert!(
        !warden.cli_ok(&["user", "list"]).await.contains("alice"),
        "a dry run writes nothing"
    );
    let out = warden
        .cli_ok(&[
            "import",
            "mosquitto",
            "--passwd",
            &passwd_s,
            "--acl",
            &acl_s,
        ])
        .await;
    assert!(out.contains("imported 4 users"), "{out}");

    let passwords: Vec<(&str, &str)> = PASSWD_USERS.iter().map(|(u, p, _)| (*u, *p)).collect();
    side_by_side(
        "mosquitto",
        mosquitto.addr,
        warden.plain_addr(),
        &passwords,
        PASSWD_TABLE,
    )
    .await;

    // Every user has logged in: their Mosquitto hashes are now argon2id,
    // replaced once, and the passwords still work.
    for (user, password, _) in PASSWD_USERS {
        let first = wait_rehashed(&warden, user).await;
        login(
            warden.plain_addr(),
            user,
            password,
            &format!("again-{user}"),
        )
        .await
        .disconnect()
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            stored_hash(&warden, user).await,
            first,
            "{user} rehashed twice"
        );
    }
    let bad = RawClient::tcp(warden.plain_addr()).await;
    let mut bad = bad.expect("TCP");
    let (_, code, _) = bad
        .connect(&Connect::new(Version::V5, "bad").login("alice", "wrong"))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0x86, "a wrong password still fails after the rehash");
}

#[tokio::test]
async fn password_and_acl_file_sqlite() {
    password_file_side_by_side(Backend::Sqlite).await;
}

#[tokio::test]
async fn password_and_acl_file_postgres() {
    password_file_side_by_side(Backend::Postgres).await;
}

#[tokio::test]
async fn password_and_acl_file_redis() {
    password_file_side_by_side(Backend::Redis).await;
}

/// dynsec clients: (name, password).
const DYNSEC_USERS: &[(&str, &str)] = &[
    ("dave", "dave-pw"),
    ("erin", "erin-pw"),
    ("feeder", "feeder-pw"),
];

const DYNSEC_TABLE: &[Ask] = &[
    Ask::Publish("dave", "d1", "sensors/a"),
    Ask::Publish("dave", "d1", "sensors/secret/x"),
    Ask::Publish("dave", "d1", "other/x"),
    Ask::Publish("erin", "e1", "sensors/a"),
    Ask::Publish("erin", "e1", "public/a"),
    Ask::Receive("dave", "d1", "sensors/+", "sensors/a"),
    Ask::Receive("dave", "d1", "sensors/private/x", "sensors/private/x"),
    Ask::Receive("dave", "d1", "public/#", "public/a"),
    Ask::Receive("erin", "e1", "public/#", "public/a"),
    Ask::Receive("erin", "e1", "status", "status"),
    Ask::Receive("erin", "e1", "sensors/#", "sensors/a"),
];

async fn dynsec_side_by_side(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("dynamic-security.json");
    let json_s = json.display().to_string();
    run(
        "mosquitto_ctrl",
        &["dynsec", "init", &json_s, "admin", "admin-pw"],
    );
    let mosquitto = start_mosquitto(
        dir.path(),
        "dynsec",
        &format!(
            "plugin {}\nplugin_opt_config_file {json_s}\n",
            dynsec_plugin()
        ),
    );
    let port = mosquitto.addr.port().to_string();
    let ctrl = |args: &[&str]| {
        let mut all = vec![
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "admin",
            "-P",
            "admin-pw",
            "dynsec",
        ];
        all.extend_from_slice(args);
        run("mosquitto_ctrl", &all);
    };
    for (user, password) in DYNSEC_USERS {
        ctrl(&["createClient", user, "-p", password]);
    }
    for role in ["sensors", "readers", "probe", "feeder"] {
        ctrl(&["createRole", role]);
    }
    ctrl(&[
        "addRoleACL",
        "sensors",
        "publishClientSend",
        "sensors/#",
        "allow",
        "5",
    ]);
    ctrl(&[
        "addRoleACL",
        "sensors",
        "publishClientSend",
        "sensors/secret/#",
        "deny",
        "10",
    ]);
    ctrl(&[
        "addRoleACL",
        "sensors",
        "subscribePattern",
        "sensors/#",
        "allow",
    ]);
    ctrl(&[
        "addRoleACL",
        "sensors",
        "publishClientReceive",
        "sensors/private/#",
        "deny",
    ]);
    ctrl(&[
        "addRoleACL",
        "readers",
        "subscribePattern",
        "public/#",
        "allow",
    ]);
    ctrl(&[
        "addRoleACL",
        "readers",
        "subscribeLiteral",
        "status",
        "allow",
    ]);
    ctrl(&[
        "addRoleACL",
        "probe",
        "subscribePattern",
        "sentinel/#",
        "allow",
    ]);
    ctrl(&["addRoleACL", "feeder", "publishClientSend", "#", "allow"]);
    ctrl(&["createGroup", "fleet"]);
    ctrl(&["addGroupRole", "fleet", "readers", "3"]);
    ctrl(&["addGroupClient", "fleet", "erin"]);
    ctrl(&["addClientRole", "dave", "sensors", "1"]);
    ctrl(&["addClientRole", "dave", "probe"]);
    ctrl(&["addClientRole", "erin", "probe"]);
    ctrl(&["addClientRole", "feeder", "feeder"]);
    let saved = std::fs::read_to_string(&json).expect("dynsec json");
    assert!(
        saved.contains("\"fleet\"") && saved.contains("sensors/secret/#"),
        "{saved}"
    );

    let store = TestStore::new(backend, None, "5s");
    let warden = warden_with(&store);
    let out = warden
        .cli_ok(&["import", "mosquitto-dynsec", &json_s])
        .await;
    // admin, dave, erin, feeder.
    assert!(out.contains("imported 4 users"), "{out}");
    let passwords: Vec<(&str, &str)> = DYNSEC_USERS.to_vec();
    side_by_side(
        "mosquitto-dynsec",
        mosquitto.addr,
        warden.plain_addr(),
        &passwords,
        DYNSEC_TABLE,
    )
    .await;
    wait_rehashed(&warden, "dave").await;
}

#[tokio::test]
async fn dynsec_sqlite() {
    dynsec_side_by_side(Backend::Sqlite).await;
}

#[tokio::test]
async fn dynsec_postgres() {
    dynsec_side_by_side(Backend::Postgres).await;
}

#[tokio::test]
async fn dynsec_redis() {
    dynsec_side_by_side(Backend::Redis).await;
}

/// An allow that Mosquitto checks before an overlapping pattern deny cannot
/// be expressed: the import says which line and why, writes nothing (exit
/// status 1), and `--skip-refused` imports the rest.
#[tokio::test]
async fn inexact_lines_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    let passwd_s = passwd.display().to_string();
    run(
        "mosquitto_passwd",
        &["-c", "-b", &passwd_s, "zed", "zed-pw"],
    );
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic read anon/#\nuser zed\ntopic readwrite devices/#\npattern deny devices/%u/locked\n",
    )
    .expect("acl");
    let acl_s = acl.display().to_string();
    let warden = TestBroker::start_default();
    let args = [
        "import",
        "mosquitto",
        "--passwd",
        &passwd_s,
        "--acl",
        &acl_s,
    ];
    let out = warden.cli(&args).await;
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("acl line 1: topic read anon/#"), "{text}");
    assert!(text.contains("anonymous clients only"), "{text}");
    assert!(
        text.contains("acl line 3: topic readwrite devices/#"),
        "{text}"
    );
    assert!(text.contains("pattern deny devices/%u/locked"), "{text}");
    assert!(text.contains("nothing was written"), "{text}");
    assert!(!warden.cli_ok(&["user", "list"]).await.contains("zed"));

    let mut skip = args.to_vec();
    skip.push("--skip-refused");
    let out = warden.cli_ok(&skip).await;
    assert!(out.contains("refused (left out)"), "{out}");
    assert!(warden.cli_ok(&["user", "list"]).await.contains("zed"));
    let rules = warden.cli_ok(&["acl", "list"]).await;
    assert!(rules.contains("devices/${username}/locked"), "{rules}");
    assert!(!rules.contains("devices/#"), "{rules}");
    // Importing the same users again is refused, not merged.
    let again = warden.cli(&skip).await;
    assert_eq!(again.status.code(), Some(1));
}
