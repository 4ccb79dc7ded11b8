//! The writer thread: durable advances only once a batch is written (and
//! fsynced in `sync` mode), engine errors hold it back, the queue reports
//! congestion, and expired state is purged at open.

// The gates are held across awaits on purpose: they stand for a slow disk
// while the test watches `durable` from the runtime.
#![allow(clippy::await_holding_lock)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::*;
use crate::config::PersistenceMode;
use crate::persist::{
    open_store, FjallStore, Loaded, PersistError, Persister, SessionStore, SqliteStore,
    StoredSession, QUEUE_BYTE_BUDGET,
};

const LONG: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_secs(10);

/// The real engine, with gates a test can hold to stop `apply` or `sync`
/// mid-way, and a switch that makes `apply` fail.
#[derive(Default)]
struct Gated {
    inner: Option<SqliteStore>,
    apply_gate: Mutex<()>,
    sync_gate: Mutex<()>,
    fail_applies: AtomicUsize,
    /// Calls of `apply` begun (counted before the gate).
    entered: AtomicUsize,
    applied: AtomicUsize,
    synced: AtomicUsize,
}

impl Gated {
    fn new(dir: &std::path::Path) -> Arc<Gated> {
        Arc::new(Gated {
            inner: Some(open_store(dir, PersistenceMode::Periodic).expect("open")),
            ..Gated::default()
        })
    }
    fn inner(&self) -> &SqliteStore {
        self.inner.as_ref().expect("store")
    }
}

impl SessionStore for Gated {
    fn apply(&self, batch: &[Op]) -> Result<(), PersistError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _held = self.apply_gate.lock();
        if self.fail_applies.load(Ordering::SeqCst) > 0 {
            return Err(PersistError::Engine("injected failure".into()));
        }
        self.inner().apply(batch)?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn sync(&self) -> Result<(), PersistError> {
        let _held = self.sync_gate.lock();
        self.inner().sync()?;
        self.synced.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn load(&self) -> Result<Loaded, PersistError> {
        self.inner().load()
    }
    fn disk_bytes(&self) -> u64 {
        self.inner().disk_bytes()
    }
}

/// Waits the way a connection does: woken through its `Wake` by the
/// writer once `t` is durable.
async fn durable_within(p: &Persister, t: u64) {
    let wake = std::sync::Arc::new(crate::wake::Wake::new());
    let wait = async {
        while p.durable() < t {
            p.notify_when_durable(t, &wake);
            wake.notified().await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("ticket became durable");
}

#[tokio::test]
async fn periodic_durable_follows_the_write_not_the_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Gated::new(dir.path());
    let (p, _) =
        Persister::with_store(Arc::clone(&store), PersistenceMode::Periodic, LONG).expect("open");
    let sync_held = store.sync_gate.lock();
    let apply_held = store.apply_gate.lock();
    let t = p.submit(Op::PutSession(Box::new(session("c", None, 60))));
    assert_eq!(t, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(p.durable(), 0, "not durable before the engine has it");
    drop(apply_held);
    durable_within(&p, t).await;
    assert_eq!(store.applied.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.synced.load(Ordering::SeqCst),
        0,
        "periodic: no fsync per batch"
    );
    assert_eq!(store.load().expect("load").sessions.len(), 1);
    drop(sync_held);
    p.flush().await.expect("flush");
    assert_eq!(store.synced.load(Ordering::SeqCst), 1, "flush fsyncs");
}

#[tokio::test]
async fn sync_durable_waits_for_the_fsync_one_per_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Gated::new(dir.path());
    let (p, _) =
        Persister::with_store(Arc::clone(&store), PersistenceMode::Sync, LONG).expect("open");
    let sync_held = store.sync_gate.lock();
    let t1 = p.submit(Op::PutSession(Box::new(session("a", None, 60))));
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.applied.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "apply never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Queued behind the fsync: these form the next batch.
    let t2 = p.submit(Op::PutSession(Box::new(session("b", None, 60))));
    let t3 = p.submit(Op::PutSession(Box::new(session("c", None, 60))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        p.durable(),
        0,
        "written but not fsynced is not durable in sync mode"
    );
    drop(sync_held);
    durable_within(&p, t1.max(t2).max(t3)).await;
    assert_eq!(
        store.applied.load(Ordering::SeqCst),
        2,
        "group commit: two batches"
    );
    assert_eq!(
        store.synced.load(Ordering::SeqCst),
        2,
        "one fsync per batch"
    );
}

#[tokio::test]
async fn engine_errors_hold_durable_back_until_a_retry_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Gated::new(dir.path());
    store.fail_applies.store(1, Ordering::SeqCst);
    let (p, _) =
        Persister::with_store(Arc::clone(&store), PersistenceMode::Periodic, LONG).expect("open");
    let t = p.submit(put_delivery("c", 1, delivery("t", None)));
    let flushed = tokio::time::timeout(WAIT, p.flush())
        .await
        .expect("flush answers");
    assert!(flushed.is_err(), "flush reports the outage");
    assert_eq!(p.durable(), 0);
    store.fail_applies.store(0, Ordering::SeqCst);
    durable_within(&p, t).await;
    p.flush().await.expect("flush after recovery");
}

#[tokio::test]
async fn the_queue_reports_congestion_above_its_budget_and_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Gated::new(dir.path());
    let (p, _) =
        Persister::with_store(Arc::clone(&store), PersistenceMode::Periodic, LONG).expect("open");
    let payload = bytes::Bytes::from(vec![0u8; 1024 * 1024]);
    let held = store.apply_gate.lock();
    // One op first, taken by the writer, which then waits at the gate:
    // everything after it stays queued, however slow the writer is to wake.
    let mut last = p.submit(Op::PutRetained(Box::new(message("big/first", b"x", None))));
    let stuck = async {
        while store.entered.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, stuck)
        .await
        .expect("the writer takes the first batch");
    for i in 0..(QUEUE_BYTE_BUDGET / payload.len() + 2) {
        assert!(!p.is_congested() || i > QUEUE_BYTE_BUDGET / payload.len() - 2);
        let mut m = message(&format!("big/{i}"), b"", None);
        m.payload = payload.clone();
        last = p.submit(Op::PutRetained(Box::new(m)));
    }
    assert!(p.is_congested());
    drop(held);
    durable_within(&p, last).await;
    assert!(!p.is_congested());
}

#[tokio::test]
async fn disabled_is_durable_at_once() {
    let p = Persister::disabled();
    assert!(!p.enabled());
    let t = p.submit(Op::PutSession(Box::new(session("c", None, 60))));
    assert_eq!((t, p.durable()), (0, 0));
    durable_within(&p, t).await;
    p.flush().await.expect("flush");
    assert!(!p.is_congested());
}

#[test]
fn expired_sessions_and_messages_are_purged_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    purge_at_open(Arc::new(
        open_store(dir.path(), PersistenceMode::Periodic).expect("open"),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    purge_at_open(Arc::new(
        FjallStore::open(dir.path(), PersistenceMode::Periodic).expect("open"),
    ));
}

fn purge_at_open<S: SessionStore>(store: Arc<S>) {
    let now = crate::persist::expiry::now_ms();
    let mut expired_msg = delivery("t", None);
    expired_msg.msg.expires_at_ms = Some(now - 1);
    let mut expired_inflight = expired_msg.clone();
    expired_inflight.inflight = Some((4, Phase::AwaitAck));
    let mut live_msg = delivery("t", None);
    live_msg.msg.expires_at_ms = Some(now + 3_600_000);
    store
        .apply(&[
            // Disconnected 20 s ago with a 10 s expiry: gone, with its queue.
            Op::PutSession(Box::new(StoredSession {
                will: None,
                ..session("expired", Some(now - 20_000), 10)
            })),
            put_delivery("expired", 1, delivery("t", None)),
            // The same with a will: kept, without its queue, for the broker
            // to publish the will.
            Op::PutSession(Box::new(session("expired-will", Some(now - 20_000), 10))),
            put_delivery("expired-will", 1, delivery("t", None)),
            Op::PutSession(Box::new(session("recent", Some(now - 20_000), 3600))),
            put_delivery("recent", 1, expired_msg),
            put_delivery("recent", 2, expired_inflight.clone()),
            put_delivery("recent", 3, live_msg.clone()),
            Op::PutSession(Box::new(session("forever", Some(0), u32::MAX))),
            Op::PutSession(Box::new(session("was-online", None, 10))),
            Op::PutRetained(Box::new(message("old", b"x", Some(now - 1)))),
            Op::PutRetained(Box::new(message("new", b"x", Some(now + 3_600_000)))),
        ])
        .expect("apply");
    let (_p, loaded) =
        Persister::with_store(Arc::clone(&store), PersistenceMode::Periodic, LONG).expect("open");
    for on_disk in [loaded, store.load().expect("load")] {
        let mut ids: Vec<_> = on_disk
            .sessions
            .iter()
            .map(|s| s.session.client_id.as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["expired-will", "forever", "recent", "was-online"]);
        let owed = on_disk
            .sessions
            .iter()
            .find(|s| s.session.client_id == "expired-will")
            .expect("expired-will");
        assert!(owed.deliveries.is_empty(), "its queue is dropped");
        assert!(owed.session.will.is_some());
        let recent = on_disk
            .sessions
            .iter()
            .find(|s| s.session.client_id == "recent")
            .expect("recent");
        assert_eq!(
            recent.deliveries,
            vec![(2, expired_inflight.clone()), (3, live_msg.clone())]
        );
        let topics: Vec<_> = on_disk.retained.iter().map(|m| &*m.topic).collect();
        assert_eq!(topics, ["new"]);
    }
}

/// The real engine, recording every op it is given, with a hook that runs
/// inside `apply` (to submit while a batch is being written).
#[derive(Default)]
struct Recording {
    inner: Option<SqliteStore>,
    seen: Mutex<Vec<Op>>,
    closes: AtomicUsize,
    #[allow(clippy::type_complexity)]
    hook: Mutex<Option<Box<dyn FnMut(&[Op]) + Send>>>,
}

impl Recording {
    fn new(dir: &std::path::Path) -> Arc<Recording> {
        Arc::new(Recording {
            inner: Some(open_store(dir, PersistenceMode::Periodic).expect("open")),
            ..Recording::default()
        })
    }
    fn inner(&self) -> &SqliteStore {
        self.inner.as_ref().expect("store")
    }
    /// Whether the engine was ever given an op on delivery `seq` of `client`.
    fn saw_delivery(&self, client: &str, seq: u64) -> bool {
        self.seen.lock().iter().any(|op| match op {
            Op::PutDelivery {
                client_id, seq: s, ..
            }
            | Op::SetInflight {
                client_id, seq: s, ..
            }
            | Op::RemoveDelivery { client_id, seq: s } => **client_id == *client && *s == seq,
            _ => false,
        })
    }
}

impl SessionStore for Recording {
    fn apply(&self, batch: &[Op]) -> Result<(), PersistError> {
        self.inner().apply(batch)?;
        self.seen.lock().extend(batch.iter().cloned());
        if let Some(hook) = self.hook.lock().as_mut() {
            hook(batch);
        }
        Ok(())
    }
    fn sync(&self) -> Result<(), PersistError> {
        self.inner().sync()
    }
    fn close(&self) -> Result<(), PersistError> {
        self.closes.fetch_add(1, Ordering::SeqCst);
        self.inner().close()
    }
    fn load(&self) -> Result<Loaded, PersistError> {
        self.inner().load()
    }
    fn disk_bytes(&self) -> u64 {
        self.inner().disk_bytes()
    }
}

/// A recording writer (periodic) whose session `c` is already durable.
async fn recording_with_session(dir: &std::path::Path) -> (Arc<Recording>, Persister) {
    let store = Recording::new(dir);
    let (p, _) =
        Persister::with_store(Arc::clone(&store), PersistenceMode::Periodic, LONG).expect("open");
    let t = p.submit(Op::PutSession(Box::new(session("c", None, 60))));
    durable_within(&p, t).await;
    (store, p)
}

/// A delivery stored for an online subscriber and sent at once.
fn sent(client: &str, seq: u64) -> Op {
    put_online(
        client,
        seq,
        delivery("t", Some((seq as u16, Phase::AwaitAck))),
    )
}

#[tokio::test]
async fn a_delivery_acknowledged_by_the_next_batch_never_reaches_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, p) = recording_with_session(dir.path()).await;
    // Batch: a delivery sent to its subscriber (held back) beside a record
    // (written). While that batch is written, the subscriber acknowledges:
    // the removal lands in the next batch, where the two cancel.
    let acked = p.clone();
    *store.hook.lock() = Some(Box::new(move |batch: &[Op]| {
        if batch
            .iter()
            .any(|op| matches!(op, Op::PutSession(s) if s.client_id == "x"))
        {
            acked.submit(remove_delivery("c", 1));
        }
    }));
    let t_put = p.submit(sent("c", 1));
    let t_x = p.submit(Op::PutSession(Box::new(session("x", None, 60))));
    assert!(t_put < t_x);
    durable_within(&p, t_x + 1).await;
    store.hook.lock().take();
    assert!(
        !store.saw_delivery("c", 1),
        "a put and its removal one batch apart both stay out of the engine"
    );
    // A delivery never acknowledged is written on its own within the
    // hold-back window, and then it is durable.
    let t = p.submit(sent("c", 2));
    durable_within(&p, t).await;
    assert!(store.saw_delivery("c", 2));
    let c = store.load().expect("load");
    let c = c
        .sessions
        .iter()
        .find(|s| s.session.client_id == "c")
        .expect("c");
    assert_eq!(c.deliveries.len(), 1);
    assert_eq!(c.deliveries[0].0, 2);
    assert_eq!(c.deliveries[0].1.inflight, Some((2, Phase::AwaitAck)));
}

#[tokio::test]
async fn durable_stays_behind_a_held_back_delivery_until_it_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, p) = recording_with_session(dir.path()).await;
    // Inside the batch that holds the delivery back, the record after it
    // is written, but neither may be reported durable yet.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (watch, durable_seen) = (p.clone(), Arc::clone(&seen));
    *store.hook.lock() = Some(Box::new(move |_: &[Op]| {
        durable_seen.lock().push(watch.durable());
    }));
    let t_put = p.submit(sent("c", 1));
    let t_rec = p.submit(Op::PutSession(Box::new(session("x", None, 60))));
    durable_within(&p, t_rec).await;
    store.hook.lock().take();
    assert!(
        store.saw_delivery("c", 1),
        "written once nothing removed it"
    );
    // Every apply saw the durable ticket still below the held-back put
    // until the batch that wrote it.
    let seen = seen.lock().clone();
    assert!(seen.iter().all(|&d| d < t_put), "{seen:?} vs {t_put}");
}

#[tokio::test]
async fn flush_and_close_write_what_is_held_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Recording::new(dir.path());
    let (p, _) =
        Persister::with_store(Arc::clone(&store), PersistenceMode::Periodic, LONG).expect("open");
    p.submit(Op::PutSession(Box::new(session("c", None, 60))));
    p.submit(sent("c", 1));
    p.flush().await.expect("flush");
    assert!(store.saw_delivery("c", 1));
    p.submit(sent("c", 2));
    p.close().await.expect("close");
    assert!(store.saw_delivery("c", 2));
    assert_eq!(store.closes.load(Ordering::SeqCst), 1);
    let wal = dir.path().join("state.sqlite-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "the WAL is folded into the database at close");
    let loaded = store.load().expect("load");
    assert_eq!(loaded.sessions[0].deliveries.len(), 2);
}

/// Ops nobody waits on (`Op::is_lazy`) do not wake the writer, but it still
/// takes them on its own, alone or behind an op someone waits on, and in
/// submit order.
#[tokio::test]
async fn lazy_ops_are_written_without_a_wake_up_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, p) = recording_with_session(dir.path()).await;
    // A put for an offline session (someone waits), then lazy ops only.
    let t_put = p.submit(put_delivery("c", 1, delivery("t", None)));
    assert!(!put_delivery("c", 1, delivery("t", None)).is_lazy());
    durable_within(&p, t_put).await;
    let set = Op::SetInflight {
        client_id: "c".into(),
        seq: 1,
        packet_id: 7,
        phase: Phase::AwaitAck,
    };
    assert!(set.is_lazy());
    let t_set = p.submit(set);
    durable_within(&p, t_set).await;
    let loaded = store.load().expect("load");
    let c = &loaded.sessions[0];
    assert_eq!(c.deliveries[0].1.inflight, Some((7, Phase::AwaitAck)));
    // A removal alone, with nothing else queued, still reaches the engine.
    let t_rm = p.submit(remove_delivery("c", 1));
    durable_within(&p, t_rm).await;
    assert!(store.load().expect("load").sessions[0]
        .deliveries
        .is_empty());
    // QoS 2's move to AwaitComp is waited on by its PUBREL: not lazy.
    assert!(!Op::SetInflight {
        client_id: "c".into(),
        seq: 2,
        packet_id: 8,
        phase: Phase::AwaitComp,
    }
    .is_lazy());
}
