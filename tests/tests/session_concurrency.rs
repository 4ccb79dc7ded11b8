//! A bounded randomized run (about 20 s) of several users reconnecting with
//! colliding client ids (random user, version, clean start, expiry, acking)
//! while a superuser publishes tagged messages to every user's prefix and
//! rules are removed and re-added and users disabled and enabled. Asserted
//! invariants (issue 9): no message on `uX/...` ever reaches a connection of
//! another user; none reaches X while X may not receive it (from 1.5 s after
//! the CLI change returned until the restoring command starts); and once a
//! connection is admitted on a client id, older connections on that id stop
//! receiving (one live owner per session). The seed is fixed, printed on
//! failure, and `WARDEN_E2E_SEED` replays another.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden_e2e::wire::{self, SESSION_EXPIRY};
use warden_e2e::*;

const USERS: [&str; 4] = ["u1", "u2", "u3", "u4"];
const IDS: u64 = 5;
const WORKERS: u64 = 6;
const RUN: Duration = Duration::from_secs(20);
/// Policy poll interval (1 s) plus slack for the change to reach sessions.
const APPLIED: u64 = 1500;
/// How long after a newer admission an older connection may still read.
const KICK_SLACK: u64 = 1000;
const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// xorshift64*: small, deterministic, good enough to pick test actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }
}

/// One PUBLISH read by a test connection.
struct Receipt {
    conn: u64,
    user: usize,
    client_id: String,
    topic_user: Option<usize>,
    at: u64,
}

/// A period during which `user` may not receive its own prefix.
struct Window {
    user: usize,
    from: u64,
    until: u64,
}

/// A connection the broker admitted: (connection serial, client id, when).
type Admission = (u64, String, u64);

struct Record {
    t0: Instant,
    receipts: Mutex<Vec<Receipt>>,
    windows: Mutex<Vec<Window>>,
    admissions: Mutex<Vec<Admission>>,
    events: Mutex<Vec<String>>,
}

impl Record {
    fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }
    fn event(&self, what: String) {
        let line = format!("{:>6} ms {what}", self.now());
        self.events.lock().expect("events").push(line);
    }
}

fn topic_user(topic: &str) -> Option<usize> {
    let prefix = topic.split('/').next()?;
    USERS.iter().position(|u| *u == prefix)
}

fn random_connect(rng: &mut Rng, ids: &[String], user: usize) -> Connect {
    let version = if rng.coin() {
        Version::V5
    } else {
        Version::V311
    };
    let id = &ids[rng.below(IDS) as usize];
    let mut c = Connect::new(version, id).login(USERS[user], "pw");
    c.clean = rng.below(3) == 0;
    if version == Version::V5 && rng.coin() {
        c.props.0.push(Prop::U32(SESSION_EXPIRY, 60));
    }
    c
}

/// Reads for `hold`, recording every PUBLISH; acknowledges QoS 1 if `ack`.
async fn hold(
    c: &mut RawClient,
    rec: &Record,
    conn: u64,
    user: usize,
    id: &str,
    hold: Duration,
    ack: bool,
) {
    let deadline = Instant::now() + hold;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv(left).await {
            Ok(Incoming::Publish(p)) => {
                rec.receipts.lock().expect("receipts").push(Receipt {
                    conn,
                    user,
                    client_id: id.to_owned(),
                    topic_user: topic_user(&p.topic),
                    at: rec.now(),
                });
                if ack && p.qos == 1 {
                    let _ = c.send(&wire::encode_ack(0x40, p.packet_id)).await;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

async fn worker(
    broker: Arc<TestBroker>,
    rec: Arc<Record>,
    ids: Arc<Vec<String>>,
    seed: u64,
    k: u64,
) {
    let mut rng = Rng(seed ^ (k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut serial = 0;
    while rec.t0.elapsed() < RUN {
        // A pause between attempts keeps refused logins from spinning.
        tokio::time::sleep(Duration::from_millis(30 + rng.below(70))).await;
        serial += 1;
        let conn = k * 1_000_000 + serial;
        let user = rng.below(USERS.len() as u64) as usize;
        let c = random_connect(&mut rng, &ids, user);
        let Ok(mut raw) = RawClient::tls(broker.tls_addr(), broker.ca_pem(), None).await else {
            continue;
        };
        let Ok((_, code, _)) = raw.connect(&c).await else {
            continue;
        };
        if code != 0 {
            continue;
        }
        let at = rec.now();
        rec.admissions
            .lock()
            .expect("admissions")
            .push((conn, c.client_id.clone(), at));
        let other = USERS[rng.below(USERS.len() as u64) as usize];
        let subs = [
            Sub::new(&format!("{}/#", USERS[user]), 1),
            Sub::new(&format!("{other}/#"), 1),
        ];
        let bytes = wire::encode_subscribe(1, &subs, &Props::default(), c.version);
        let _ = raw.send(&bytes).await;
        let for_ms = Duration::from_millis(200 + rng.below(1300));
        let ack = rng.below(4) != 0;
        hold(&mut raw, &rec, conn, user, &c.client_id, for_ms, ack).await;
        if rng.coin() {
            raw.disconnect().await;
        }
    }
}

async fn publisher(broker: Arc<TestBroker>, rec: Arc<Record>) {
    let mut p = broker
        .login(Version::V5, &client_id("root"), "root", "pw")
        .await;
    let mut seq = 0u64;
    while rec.t0.elapsed() < RUN {
        for u in USERS {
            seq += 1;
            let qos = (seq % 2) as u8;
            p.publish_acked(Publish::new(
                &format!("{u}/m"),
                seq.to_string().as_bytes(),
                qos,
            ))
            .await;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// How a user is currently cut off, to be undone later.
#[derive(Clone, Copy)]
enum Cut {
    Rule,
    Disabled,
}

/// Cuts and restores users at random; every cut becomes a `Window`.
async fn chaos(broker: Arc<TestBroker>, rec: Arc<Record>, mut rules: Vec<u64>, seed: u64) {
    let mut rng = Rng(seed.rotate_left(17) | 1);
    let mut cut: Vec<Option<(Cut, u64)>> = vec![None; USERS.len()];
    while rec.t0.elapsed() < RUN.saturating_sub(Duration::from_secs(2)) {
        tokio::time::sleep(Duration::from_millis(700 + rng.below(1300))).await;
        let u = rng.below(USERS.len() as u64) as usize;
        match cut[u] {
            None => {
                let how = if rng.coin() { Cut::Rule } else { Cut::Disabled };
                match how {
                    Cut::Rule => {
                        broker
                            .cli_ok(&["acl", "remove", &rules[u].to_string()])
                            .await
                    }
                    Cut::Disabled => broker.cli_ok(&["user", "disable", USERS[u]]).await,
                };
                let from = rec.now() + APPLIED;
                rec.event(format!(
                    "{} cut ({})",
                    USERS[u],
                    if matches!(how, Cut::Rule) {
                        "rule removed"
                    } else {
                        "disabled"
                    }
                ));
                cut[u] = Some((how, from));
            }
            Some(how) => {
                restore(&broker, &rec, &mut rules, u, how).await;
                cut[u] = None;
            }
        }
    }
    for (u, pending) in cut.into_iter().enumerate() {
        if let Some(how) = pending {
            restore(&broker, &rec, &mut rules, u, how).await;
        }
    }
}

async fn restore(
    broker: &TestBroker,
    rec: &Record,
    rules: &mut [u64],
    u: usize,
    (how, from): (Cut, u64),
) {
    let until = rec.now();
    rec.windows.lock().expect("windows").push(Window {
        user: u,
        from,
        until,
    });
    match how {
        Cut::Rule => {
            rules[u] = broker
                .allow(
                    USERS[u],
                    "publish,subscribe,receive",
                    &format!("{}/#", USERS[u]),
                )
                .await
        }
        Cut::Disabled => {
            broker.cli_ok(&["user", "enable", USERS[u]]).await;
        }
    }
    rec.event(format!("{} restored", USERS[u]));
}

/// Every receipt that breaks an invariant, described.
fn violations(rec: &Record) -> Vec<String> {
    let receipts = rec.receipts.lock().expect("receipts");
    let windows = rec.windows.lock().expect("windows");
    let admissions = rec.admissions.lock().expect("admissions");
    let mut out = Vec::new();
    for r in receipts.iter() {
        let who = USERS[r.user];
        match r.topic_user {
            Some(t) if t != r.user => out.push(format!(
                "{} ms: {who} on {} got a message of {}",
                r.at, r.client_id, USERS[t]
            )),
            None => out.push(format!(
                "{} ms: {who} got a message outside every prefix",
                r.at
            )),
            Some(_) => {}
        }
        // Own-prefix receipts only, so each receipt counts under one kind.
        let own = r.topic_user == Some(r.user);
        if let Some(w) = windows
            .iter()
            .find(|w| own && w.user == r.user && w.from <= r.at && r.at <= w.until)
        {
            out.push(format!(
                "{} ms: {who} on {} received while cut off ({}..{} ms)",
                r.at, r.client_id, w.from, w.until
            ));
        }
        let newer = admissions.iter().find(|(conn, id, at)| {
            *id == r.client_id
                && *conn != r.conn
                && at + KICK_SLACK < r.at
                && admitted_before(&admissions, r.conn, *at)
        });
        if let Some((conn, _, at)) = newer {
            out.push(format!(
                "{} ms: connection {} on {} still received after connection {conn} took the id at {at} ms",
                r.at, r.conn, r.client_id
            ));
        }
    }
    out
}

/// Whether connection `conn` was admitted before `at`.
fn admitted_before(admissions: &[Admission], conn: u64, at: u64) -> bool {
    admissions.iter().any(|(c, _, a)| *c == conn && *a < at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_reaches_a_principal_that_may_not_receive_it() {
    let seed = std::env::var("WARDEN_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let broker = Arc::new(TestBroker::start_default());
    let mut rules = Vec::new();
    for u in USERS {
        broker.add_user(u, "pw", &[]).await;
        rules.push(
            broker
                .allow(u, "publish,subscribe,receive", &format!("{u}/#"))
                .await,
        );
    }
    let args = ["user", "add", "root", "--password-stdin", "--superuser"];
    warden_e2e::cli::success(&args, &broker.cli_stdin(&args, "pw").await);
    let ids: Arc<Vec<String>> = Arc::new((0..IDS).map(|_| client_id("shared")).collect());
    let rec = Arc::new(Record {
        t0: Instant::now(),
        receipts: Mutex::default(),
        windows: Mutex::default(),
        admissions: Mutex::default(),
        events: Mutex::default(),
    });
    let mut tasks = Vec::new();
    for k in 0..WORKERS {
        tasks.push(tokio::spawn(worker(
            broker.clone(),
            rec.clone(),
            ids.clone(),
            seed,
            k,
        )));
    }
    tasks.push(tokio::spawn(publisher(broker.clone(), rec.clone())));
    tasks.push(tokio::spawn(chaos(
        broker.clone(),
        rec.clone(),
        rules,
        seed,
    )));
    for t in tasks {
        t.await
            .unwrap_or_else(|e| panic!("seed {seed}: task failed: {e}"));
    }
    let bad = violations(&rec);
    let events = rec.events.lock().expect("events").join("\n");
    let received = rec.receipts.lock().expect("receipts").len();
    let admitted = rec.admissions.lock().expect("admissions").len();
    eprintln!("seed {seed}: {admitted} connections admitted, {received} messages received");
    let count = |kind: &str| bad.iter().filter(|v| v.contains(kind)).count();
    assert!(
        bad.is_empty(),
        "seed {seed}: {} violations ({} cross-user, {} while cut off, {} after a newer \
         admission), first ones:\n{}\nchanges:\n{events}",
        bad.len(),
        count("got a message of"),
        count("while cut off"),
        count("took the id"),
        bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(
        admitted >= 10 && received >= 50,
        "seed {seed}: too little happened to judge"
    );
}
