//! [`Persister`]: the handle the broker holds, and the one writer thread
//! behind it. `submit` only appends to a queue, so it never blocks and can be
//! called under the broker's locks; the thread swaps the whole queue out,
//! coalesces it, writes it as one engine batch, fsyncs per the mode (group
//! commit: one fsync per batch in `sync` mode) and then publishes the batch's
//! last ticket as durable. Acks wait for that ticket.
//!
//! On an engine error the thread logs once per outage and retries with
//! backoff, and `durable` does not move: acks stay held and the queue fills
//! until publishers are paused by [`Persister::is_congested`] (fail closed).

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::coalesce::coalesce_from;
use super::hold_back::HoldBack;
use super::{expiry, open_store, Loaded, Op, PersistError, SessionStore};
use crate::config::PersistenceMode;

/// Orders submitted ops; a ticket is durable once `durable() >= ticket`.
pub type Ticket = u64;

/// Bytes of queued ops above which [`Persister::is_congested`] is true. A
/// byte budget rather than an op count, because one op can carry a large
/// payload: 64 MiB is a second of writes at several hundred thousand small
/// messages per second, and a bounded amount of memory at any payload size.
pub const QUEUE_BYTE_BUDGET: usize = 64 * 1024 * 1024;
/// What an op costs in the budget beyond its strings and payloads.
const OP_OVERHEAD: usize = 96;

type FlushReply = oneshot::Sender<Result<(), PersistError>>;

/// How long an op nobody waits on may sit in the queue before the writer
/// takes it (see [`Op::is_lazy`]): the same bound as the hold-back, which
/// would keep such a put for that long anyway.
const LAZY_FOR: Duration = super::hold_back::HOLD_FOR;
/// A queue this long wakes the writer whatever it holds (bounded batches).
const LAZY_BATCH: usize = 4096;

#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    last_ticket: Ticket,
    flushes: Vec<FlushReply>,
    closed: bool,
    /// An op someone may be waiting on is queued: the writer was woken.
    urgent: bool,
    /// When the oldest queued op arrived.
    since: Option<Instant>,
    writer: WriterState,
}

/// What the writer thread is doing, as submitters need to know it.
#[derive(Clone, Copy, Debug, Default)]
enum WriterState {
    #[default]
    Working,
    /// Waiting, until the instant if any (else until woken).
    Asleep(Option<Instant>),
}

impl WriterState {
    /// Whether the writer, left alone, would take the queue only after `by`.
    fn sleeps_past(self, by: Instant) -> bool {
        match self {
            WriterState::Working => false,
            WriterState::Asleep(until) => until.is_none_or(|at| at > by),
        }
    }
}

impl Queue {
    /// Whether the writer should take the queue now.
    fn ready(&self, now: Instant) -> bool {
        self.closed
            || !self.flushes.is_empty()
            || self.urgent
            || self.ops.len() >= LAZY_BATCH
            || self.since.is_some_and(|s| now >= s + LAZY_FOR)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    pending_bytes: AtomicUsize,
    /// The highest durable ticket: read on every acknowledgement, so a
    /// plain atomic (waiters are woken through `waiters`).
    durable: AtomicU64,
    /// Connections waiting for a ticket, woken through their own `Wake`
    /// (no extra future per connection).
    waiters: Mutex<Vec<(Ticket, Arc<crate::wake::Wake>)>>,
}

/// Closes the queue when the last [`Persister`] clone goes: the thread then
/// writes and fsyncs what is left and exits.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// Cheap-clone handle on the session store's writer.
#[derive(Clone)]
pub struct Persister {
    shared: Arc<Shared>,
    /// `None` in mode `none`.
    handle: Option<Arc<Handle>>,
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister")
            .field("enabled", &self.enabled())
            .field("durable", &self.durable())
            .finish()
    }
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
        pending_bytes: AtomicUsize::new(0),
        durable: AtomicU64::new(0),
        waiters: Mutex::new(Vec::new()),
    })
}

impl Persister {
    /// Mode `none`: nothing is written; `submit` returns 0, which is durable.
    pub fn disabled() -> Persister {
        Persister {
            shared: shared(),
            handle: None,
        }
    }

    /// Opens the engine in `dir`, loads it (dropping what expired while the
    /// broker was down) and starts the writer thread.
    pub fn open(
        dir: &Path,
        mode: PersistenceMode,
        fsync_interval: Duration,
    ) -> Result<(Persister, Loaded), PersistError> {
        Persister::with_store(open_store(dir, mode)?, mode, fsync_interval)
    }

    /// [`Persister::open`] on a store already opened (any engine).
    pub fn with_store<S: SessionStore>(
        store: S,
        mode: PersistenceMode,
        fsync_interval: Duration,
    ) -> Result<(Persister, Loaded), PersistError> {
        let mut loaded = store.load()?;
        let purge = expiry::purge(&mut loaded, expiry::now_ms());
        loaded.expired = purge
            .iter()
            .filter_map(|op| match op {
                Op::RemoveSession { client_id } => Some(Arc::clone(client_id)),
                _ => None,
            })
            .collect();
        if !purge.is_empty() {
            store.apply(&purge)?;
            store.sync()?;
        }
        let shared = shared();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("warden-persist".into())
            .spawn(move || run(&thread_shared, &store, mode, fsync_interval))?;
        let persister = Persister {
            shared: Arc::clone(&shared),
            handle: Some(Arc::new(Handle { shared })),
        };
        Ok((persister, loaded))
    }

    pub fn enabled(&self) -> bool {
        self.handle.is_some()
    }

    /// Queues `op`; never blocks on I/O. Tickets increase in submit order.
    pub fn submit(&self, op: Op) -> Ticket {
        if self.handle.is_none() {
            return 0;
        }
        let cost = op_cost(&op);
        let lazy = op.is_lazy();
        let mut q = self.shared.queue.lock();
        // Wake the writer only when it would not come by itself soon
        // enough: for the first op someone waits on, for a long queue, or
        // for a first lazy op the sleeping writer would otherwise take too
        // late. At high rates nearly every op is lazy, and the writer then
        // wakes on its own timer once per batch instead of being woken (a
        // futex call and a context switch) for nearly every op.
        let first = q.ops.is_empty();
        let since = *q.since.get_or_insert_with(Instant::now);
        let wake = if !lazy {
            !std::mem::replace(&mut q.urgent, true)
        } else if first {
            q.writer.sleeps_past(since + LAZY_FOR)
        } else {
            q.ops.len() + 1 == LAZY_BATCH
        };
        q.ops.push(op);
        q.last_ticket += 1;
        let ticket = q.last_ticket;
        self.shared.pending_bytes.fetch_add(cost, Ordering::Relaxed);
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
        ticket
    }

    /// More than [`QUEUE_BYTE_BUDGET`] waits to be written: publishers
    /// should stop reading until it drains.
    pub fn is_congested(&self) -> bool {
        self.shared.pending_bytes.load(Ordering::Relaxed) > QUEUE_BYTE_BUDGET
    }

    /// The highest ticket written per the mode: in `periodic` in the
    /// journal (survives kill -9), in `sync` also fsynced.
    pub fn durable(&self) -> Ticket {
        self.shared.durable.load(Ordering::SeqCst)
    }

    /// Wake `wake` (once) when `t` is durable, or now if it already is.
    pub fn notify_when_durable(&self, t: Ticket, wake: &Arc<crate::wake::Wake>) {
        if self.durable() < t {
            self.shared.waiters.lock().push((t, Arc::clone(wake)));
            // The writer may have moved on between the look and the push.
            if self.durable() < t {
                return;
            }
        }
        wake.notify_one();
    }

    /// Resolves once `t` is durable (at once for ticket 0 or a disabled
    /// store). While the engine fails it waits: callers bound it (a
    /// connect timeout).
    pub async fn durable_at(&self, t: Ticket) {
        if self.durable() >= t {
            return;
        }
        let wake = Arc::new(crate::wake::Wake::new());
        while self.durable() < t {
            self.notify_when_durable(t, &wake);
            wake.notified().await;
        }
    }

    /// Writes and fsyncs everything submitted so far. Fails if the engine
    /// fails meanwhile; the writer keeps retrying.
    pub async fn flush(&self) -> Result<(), PersistError> {
        self.flush_then(false).await
    }

    /// At a graceful stop: [`Persister::flush`], then the engine's last
    /// call ([`SessionStore::close`]); the writer exits and later submits
    /// are not written.
    pub async fn close(&self) -> Result<(), PersistError> {
        self.flush_then(true).await
    }

    async fn flush_then(&self, close: bool) -> Result<(), PersistError> {
        if self.handle.is_none() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock();
            q.flushes.push(tx);
            q.closed |= close;
        }
        self.shared.wake.notify_one();
        rx.await.map_err(|_| PersistError::WriterGone)?
    }
}

fn props_len(p: &super::StoredProps) -> usize {
    p.content_type.as_ref().map_or(0, String::len)
        + p.response_topic.as_ref().map_or(0, String::len)
        + p.correlation_data.as_ref().map_or(0, |c| c.len())
        + p.user_properties
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

fn msg_len(m: &super::StoredMessage) -> usize {
    m.topic.len() + m.payload.len() + m.origin.len() + props_len(&m.props)
}

/// Approximate memory an op holds while queued.
fn op_cost(op: &Op) -> usize {
    OP_OVERHEAD
        + match op {
            Op::PutSession(s) => {
                s.client_id.len()
                    + s.subscriptions
                        .iter()
                        .map(|x| x.filter.len() + OP_OVERHEAD)
                        .sum::<usize>()
                    + s.will
                        .as_ref()
                        .map_or(0, |w| w.topic.len() + w.payload.len() + props_len(&w.props))
            }
            Op::PutDelivery {
                client_id,
                delivery,
                ..
            } => client_id.len() + msg_len(&delivery.msg),
            Op::RemoveSession { client_id }
            | Op::SetInflight { client_id, .. }
            | Op::RemoveDelivery { client_id, .. } => client_id.len(),
            Op::PutRetained(m) => msg_len(m),
            Op::RemoveRetained { topic } => topic.len(),
        }
}

/// Logs an engine outage once and backs off between retries.
struct Outage {
    failing: bool,
    backoff: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Outage {
    fn new() -> Outage {
        Outage {
            failing: false,
            backoff: MIN_BACKOFF,
        }
    }

    /// Runs `f` until it succeeds. The first failure is logged and answers
    /// `flushes` with the error, so a shutdown does not wait on a dead disk.
    fn retry(
        &mut self,
        flushes: &mut Vec<FlushReply>,
        mut f: impl FnMut() -> Result<(), PersistError>,
    ) {
        loop {
            match f() {
                Ok(()) => {
                    if self.failing {
                        tracing::info!(
                            "session store writes succeed again; held acks are released"
                        );
                    }
                    self.failing = false;
                    self.backoff = MIN_BACKOFF;
                    return;
                }
                Err(e) => {
                    if !self.failing {
                        tracing::error!(error = %e, "session store write failed; acks are held and the write is retried");
                        self.failing = true;
                    }
                    for reply in flushes.drain(..) {
                        let _ = reply.send(Err(PersistError::Engine(e.to_string())));
                    }
                    std::thread::sleep(self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The writer thread's loop; returns once the queue is closed and drained.
fn run<S: SessionStore>(
    shared: &Shared,
    store: &S,
    mode: PersistenceMode,
    fsync_interval: Duration,
) {
    let mut outage = Outage::new();
    // The previous batch's buffer, swapped back in as the submit queue.
    let mut spare: Vec<Op> = Vec::new();
    let mut held = HoldBack::default();
    let mut unsynced = false;
    let mut next_fsync = Instant::now() + fsync_interval;
    // The last ticket taken from the queue.
    let mut taken: Ticket = 0;
    loop {
        let (mut ops, last, mut flushes, closed) = {
            let mut q = shared.queue.lock();
            while !q.ready(Instant::now()) {
                let until = [
                    held.due(),
                    unsynced.then_some(next_fsync),
                    q.since.map(|s| s + LAZY_FOR),
                ]
                .into_iter()
                .flatten()
                .min();
                q.writer = WriterState::Asleep(until);
                let timed_out = match until {
                    Some(at) => shared.wake.wait_until(&mut q, at).timed_out(),
                    None => {
                        shared.wake.wait(&mut q);
                        false
                    }
                };
                q.writer = WriterState::Working;
                if timed_out {
                    break;
                }
            }
            q.urgent = false;
            q.since = None;
            shared.pending_bytes.store(0, Ordering::Relaxed);
            let ops = std::mem::replace(&mut q.ops, std::mem::take(&mut spare));
            let flushes = std::mem::take(&mut q.flushes);
            (ops, q.last_ticket, flushes, q.closed)
        };
        let before = taken;
        taken = last;
        if !ops.is_empty() || !held.is_empty() {
            held.absorb(&mut ops);
            let mut new = coalesce_from(&mut ops);
            let now = Instant::now();
            // A flush or the last batch writes everything.
            let complete = closed || !flushes.is_empty();
            let mut batch = Vec::new();
            held.release(now, complete, &mut batch);
            if !complete {
                held.hold(&mut new, before, now);
            }
            // Held puts first: they were submitted before. Most batches
            // release none, and then no op is moved again.
            if batch.is_empty() {
                batch = new;
            } else {
                batch.append(&mut new);
            }
            if !batch.is_empty() {
                outage.retry(&mut flushes, || store.apply(&batch));
                unsynced = true;
            }
            if mode == PersistenceMode::Sync && unsynced {
                outage.retry(&mut flushes, || store.sync());
                unsynced = false;
            }
            let durable = held.durable(last);
            shared.durable.store(durable, Ordering::SeqCst);
            shared.waiters.lock().retain(|(t, wake)| {
                let done = *t <= durable;
                if done {
                    wake.notify_one();
                }
                !done
            });
        }
        spare = ops;
        let due = Instant::now() >= next_fsync;
        if unsynced && (due || closed || !flushes.is_empty()) {
            outage.retry(&mut flushes, || store.sync());
            unsynced = false;
        }
        if due || !unsynced {
            next_fsync = Instant::now() + fsync_interval;
        }
        if closed {
            if let Err(e) = store.close() {
                tracing::warn!(error = %e, "session store: the final checkpoint failed (the next start replays the log)");
            }
        }
        for reply in flushes {
            let _ = reply.send(Ok(()));
        }
        if closed {
            return;
        }
    }
}
