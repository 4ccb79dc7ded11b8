//! The data dir stays small under a steady workload: queued messages that
//! are put and later removed do not pile up on disk (journals are dropped
//! once flushed, compaction discards the tombstones).

use super::*;
use crate::config::PersistenceMode;
use crate::persist::{open_store, FjallStore, SessionStore};

/// Messages put and removed; each carries 512 bytes, so ~140 MB pass through.
const PAIRS: u64 = 200_000;
const BATCH: u64 = 64;
/// fjall: the journal limit (32 MiB) plus memtables and live segments;
/// SQLite: the WAL (checkpointed every 1,000 pages) and the live rows. Far
/// below the ~140 MB written.
const MAX_DISK: u64 = 64 * 1024 * 1024;
/// How long the store's background work may take to catch up.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

#[test]
fn steady_put_and_remove_keeps_the_data_dir_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    steady(open_store(dir.path(), PersistenceMode::Periodic).expect("open"));
}

#[test]
fn fjall_steady_put_and_remove_keeps_the_data_dir_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    steady(FjallStore::open(dir.path(), PersistenceMode::Periodic).expect("open"));
}

fn steady(store: impl SessionStore) {
    store
        .apply(&[Op::PutSession(Box::new(session("sub", None, 3600)))])
        .expect("apply");
    let mut d = delivery("t", None);
    d.msg.payload = bytes::Bytes::from(vec![7u8; 512]);
    let mut peak = 0;
    let mut batch = Vec::with_capacity(2 * BATCH as usize);
    for start in (0..PAIRS).step_by(BATCH as usize) {
        batch.clear();
        for seq in start..start + BATCH {
            batch.push(put_delivery("sub", seq, d.clone()));
            // Acked one batch later, as a subscriber behind the writer is.
            if let Some(acked) = seq.checked_sub(BATCH) {
                batch.push(remove_delivery("sub", acked));
            }
        }
        store.apply(&batch).expect("apply");
        peak = peak.max(store.disk_bytes());
    }
    // The store's background work (fjall's flushes and compactions) runs
    // on threads of its own: on a machine busy with other tests it can
    // fall behind the loop above, so the peak says more about the machine
    // than about the store. What must hold is that nothing piles up: once
    // that work catches up, the data dir is small again.
    let deadline = std::time::Instant::now() + SETTLE;
    let mut now = store.disk_bytes();
    while now >= MAX_DISK && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = store.disk_bytes();
    }
    eprintln!("peak disk {peak} bytes after {PAIRS} put+remove pairs, {now} settled");
    assert!(now < MAX_DISK, "data dir grew to {now} bytes (peak {peak})");
    let loaded = store.load().expect("load");
    assert_eq!(loaded.sessions[0].deliveries.len(), BATCH as usize);
}
