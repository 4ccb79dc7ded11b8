//! kill -9 after `durable()` loses nothing: the test re-runs itself as a
//! child process that writes, reports the durable ticket, keeps writing,
//! and is killed with SIGKILL; the parent then reopens the store.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;
use crate::config::PersistenceMode;
use crate::persist::{Persister, SessionStore};

const CHILD_ENV: &str = "WARDEN_PERSIST_KILL_CHILD_DIR";
const TEST_NAME: &str = "persist::tests::kill::kill_9_after_durable_loses_nothing_durable";
/// Sessions written before the child reports; each is two ops (session, delivery).
const FIRST: u64 = 500;

fn ops_for(i: u64) -> [Op; 2] {
    let id = format!("client-{i}");
    [
        Op::PutSession(Box::new(session(&id, None, 3600))),
        put_delivery(&id, i, delivery("t", Some((1, Phase::AwaitAck)))),
    ]
}

/// The child: periodic mode with an fsync interval far longer than the
/// test, so only the journal write (no fsync) stands between it and loss.
fn child(dir: &str) -> ! {
    let (p, _) = Persister::open(
        std::path::Path::new(dir),
        PersistenceMode::Periodic,
        Duration::from_secs(3600),
    )
    .expect("open");
    let mut last = 0;
    for i in 0..FIRST {
        for op in ops_for(i) {
            last = p.submit(op);
        }
    }
    while p.durable() < last {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("DURABLE {}", p.durable());
    // Keep writing so the kill lands in the middle of batches.
    let mut i = FIRST;
    loop {
        for op in ops_for(i) {
            p.submit(op);
        }
        i += 1;
        if p.is_congested() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn kill_9_after_durable_loses_nothing_durable() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut proc = Command::new(std::env::current_exe().expect("test binary"))
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = proc.stdout.take().expect("stdout");
    let durable: u64 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest may print its own words on the same line first.
        .find_map(|l| {
            l.split("DURABLE ")
                .nth(1)
                .and_then(|t| t.trim().parse().ok())
        })
        .expect("child reported a durable ticket");
    std::thread::sleep(Duration::from_millis(50));
    proc.kill().expect("SIGKILL");
    proc.wait().expect("reap");

    let store = crate::persist::open_store(dir.path(), PersistenceMode::Periodic)
        .expect("reopen after kill");
    let loaded = store.load().expect("load");
    // Tickets 2i+1 and 2i+2 are session i's ops.
    let covered = durable / 2;
    assert!(covered >= FIRST);
    let by_id: std::collections::HashMap<_, _> = loaded
        .sessions
        .iter()
        .map(|s| (s.session.client_id.clone(), s))
        .collect();
    for i in 0..covered {
        let s = by_id
            .get(&format!("client-{i}"))
            .unwrap_or_else(|| panic!("session {i} lost"));
        assert_eq!(
            s.deliveries,
            vec![(i, delivery("t", Some((1, Phase::AwaitAck))))],
            "session {i}"
        );
    }
    // Whatever else survived is whole: every session has its delivery or
    // was cut before it (same batch order), never a torn record.
    assert!(loaded.sessions.len() as u64 >= covered);
}
