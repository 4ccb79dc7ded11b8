//! Back-pressure from the outbox to local publishers (docs/cluster.md,
//! "What this slice guarantees").
//!
//! A local publish that another node wants takes a place in the bounded
//! outbox (`shared.rs`). When the outbox is full because NATS is slower
//! than the publishers, the message is not dropped: it becomes a
//! [`Deferred`] that its publisher's connection holds, and that connection
//! stops reading (TCP back-pressure, as for a congested local subscriber)
//! until the message has its place. Its PUBACK/PUBREC goes out only then.
//! One message waits per publisher, so the memory stays bounded.
//!
//! While NATS is down, waiting would stall every publisher for the whole
//! outage: a publish then stays local (counted `not_forwarded`), as before.
//! "Down" is what the NATS client reported (disconnected), or an outbox
//! that nothing took from for [`OUTBOX_STALL`] (a server that stopped
//! reading without closing the connection): the outbox is then "stalled"
//! until the publishing task takes from it again.
//!
//! The publishing task wakes the waiting connections each time it takes a
//! batch from the outbox; a connection registers its wake-up at most once
//! per such round.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Cluster, Outgoing};
use crate::session::message::Message;
use crate::wake::Wake;

/// How long the outbox may stay full without the publishing task taking
/// anything from it before it counts as stalled (NATS not reading).
pub const OUTBOX_STALL: Duration = Duration::from_secs(2);

/// A local publish waiting for room in the outbox, held by its
/// publisher's connection.
#[derive(Debug)]
pub struct Deferred {
    msg: Arc<Message>,
    seq: u64,
    /// The shared groups served on this node (`shared.rs`).
    served: Box<[u64]>,
    /// When it found the outbox full.
    since: Instant,
    /// The waiters' round it registered its wake-up in (0: none yet).
    round: u64,
}

impl Deferred {
    pub(super) fn new(msg: &Arc<Message>, seq: u64) -> Box<Deferred> {
        Box::new(Deferred {
            msg: Arc::clone(msg),
            seq,
            served: Box::default(),
            since: Instant::now(),
            round: 0,
        })
    }

    /// Name the shared groups this node served (after routing).
    pub fn set_served(&mut self, served: Vec<u64>) {
        self.served = served.into_boxed_slice();
    }

    fn outgoing(&mut self) -> Outgoing {
        let msg = Arc::clone(&self.msg);
        if self.served.is_empty() {
            Outgoing::Message(msg, self.seq)
        } else {
            Outgoing::Served(msg, self.seq, std::mem::take(&mut self.served))
        }
    }
}

/// What became of a [`Deferred`] message at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// In the outbox: acknowledge it, read the publisher again.
    Sent,
    /// Left local (NATS down or the outbox stalled; counted).
    Dropped,
    /// Still waiting; look again when woken, or at this instant at the
    /// latest (the stall deadline).
    Wait(Instant),
}

/// The rule for a publish that found the outbox full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Wait for room, until this instant at the latest.
    Wait(Instant),
    /// Stay local: NATS is down or the outbox known to be stalled.
    Drop,
    /// Stay local, and from now on the outbox counts as stalled.
    Stalled,
}

/// Whether a publish that found the outbox full (first at `since`) waits:
/// only while NATS is connected and the outbox moved (or the wait began)
/// less than [`OUTBOX_STALL`] ago.
pub(crate) fn verdict(
    connected: bool,
    stalled: bool,
    since: Instant,
    moved: Instant,
    now: Instant,
) -> Verdict {
    if !connected || stalled {
        return Verdict::Drop;
    }
    let at = since.max(moved) + OUTBOX_STALL;
    if now >= at {
        Verdict::Stalled
    } else {
        Verdict::Wait(at)
    }
}

/// The cluster's side of the back-pressure.
#[derive(Debug)]
pub struct Pacing {
    /// The origin of `moved_ms`.
    epoch: Instant,
    /// When the publishing task last took from the outbox (ms since
    /// `epoch`).
    moved_ms: AtomicU64,
    /// The outbox took nothing for [`OUTBOX_STALL`] while full.
    stalled: AtomicBool,
    /// Connections waiting for room; `waiting` says the list is not empty
    /// without taking the lock.
    waiters: Mutex<Vec<Arc<Wake>>>,
    waiting: AtomicBool,
    /// Bumped each time the waiters are woken (starts at 1).
    round: AtomicU64,
    /// Local publishes that found the outbox full and paused their
    /// publisher (`warden_cluster_outbox_waits_total`).
    pub waits: AtomicU64,
    /// Times the outbox was found stalled.
    pub stalls: AtomicU64,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            epoch: Instant::now(),
            moved_ms: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
            round: AtomicU64::new(1),
            waits: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
        }
    }
}

impl Pacing {
    fn moved_at(&self) -> Instant {
        self.epoch + Duration::from_millis(self.moved_ms.load(Ordering::Relaxed))
    }

    /// Whether a publish finding the outbox full should wait for room.
    pub(super) fn should_wait(&self, connected: bool) -> bool {
        connected && !self.stalled.load(Ordering::Relaxed)
    }

    /// The publishing task took a batch from the outbox: the outbox moves
    /// again, and the waiting connections look for room. One clock read
    /// per batch.
    pub(super) fn moved(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved_ms.store(ms, Ordering::Relaxed);
        if self.stalled.load(Ordering::Relaxed) && self.stalled.swap(false, Ordering::AcqRel) {
            tracing::info!("cluster: the outbox moves again; publishers wait for room again");
        }
        // Pairs with the fence in `register`: either the waiter's second
        // look finds the room this batch freed, or this load sees it.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) {
            self.wake_all();
        }
    }

    /// Wake every waiting connection (a batch taken, or NATS down).
    pub(super) fn wake_all(&self) {
        let woken = {
            let mut waiters = self.waiters.lock();
            self.waiting.store(false, Ordering::Relaxed);
            self.round.fetch_add(1, Ordering::Relaxed);
            std::mem::take(&mut *waiters)
        };
        for wake in woken {
            wake.notify_one();
        }
    }

    /// Add `wake` to the waiters unless it is there for this round.
    fn register(&self, d: &mut Deferred, wake: &Arc<Wake>) {
        let mut waiters = self.waiters.lock();
        let round = self.round.load(Ordering::Relaxed);
        if d.round != round {
            d.round = round;
            waiters.push(Arc::clone(wake));
            self.waiting.store(true, Ordering::Relaxed);
        }
        drop(waiters);
        fence(Ordering::SeqCst);
    }

    fn stall(&self) {
        if !self.stalled.swap(true, Ordering::AcqRel) {
            self.stalls.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                wait = ?OUTBOX_STALL,
                "cluster: NATS took nothing from the full outbox; local publishes stay local until it moves"
            );
            // The other waiting publishers stop waiting now, not at their
            // own deadlines.
            self.wake_all();
        }
    }
}

impl Cluster {
    /// Try to give a waiting message its place in the outbox; `wake` is
    /// woken when it is worth looking again.
    pub fn place(&self, d: &mut Deferred, wake: &Arc<Wake>) -> Placed {
        if let Ok(permit) = self.outbox.try_reserve() {
            permit.send(d.outgoing());
            return Placed::Sent;
        }
        let now = Instant::now();
        let verdict = verdict(
            self.interest.is_connected(),
            self.pacing.stalled.load(Ordering::Relaxed),
            d.since,
            self.pacing.moved_at(),
            now,
        );
        match verdict {
            Verdict::Wait(at) => {
                self.pacing.register(d, wake);
                // Room freed before the registration woke no one: look
                // again.
                if let Ok(permit) = self.outbox.try_reserve() {
                    permit.send(d.outgoing());
                    return Placed::Sent;
                }
                Placed::Wait(at)
            }
            Verdict::Stalled | Verdict::Drop => {
                if verdict == Verdict::Stalled {
                    self.pacing.stall();
                }
                self.stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
                Placed::Dropped
            }
        }
    }

    /// [`Cluster::place`] for a publisher with no connection to pause (a
    /// will): wait here, under the same rules.
    pub async fn place_waiting(&self, mut d: Box<Deferred>) {
        let wake = Arc::new(Wake::new());
        loop {
            match self.place(&mut d, &wake) {
                Placed::Sent | Placed::Dropped => return,
                Placed::Wait(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    let _ = tokio::time::timeout_at(at, wake.notified()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_outbox_on_a_healthy_link_makes_the_publisher_wait() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_millis(10);
        assert_eq!(
            verdict(true, false, t0, t0, now),
            Verdict::Wait(t0 + OUTBOX_STALL)
        );
    }

    #[test]
    fn nats_down_or_a_stalled_outbox_keeps_the_message_local_at_once() {
        let t0 = Instant::now();
        assert_eq!(verdict(false, false, t0, t0, t0), Verdict::Drop);
        assert_eq!(verdict(true, true, t0, t0, t0), Verdict::Drop);
    }

    #[test]
    fn the_stall_counts_from_the_later_of_the_wait_and_the_last_move() {
        let t0 = Instant::now();
        let moved = t0 + Duration::from_secs(1);
        // The outbox moved after the wait began: the deadline moves too.
        assert_eq!(
            verdict(true, false, t0, moved, t0 + OUTBOX_STALL),
            Verdict::Wait(moved + OUTBOX_STALL)
        );
        // An outbox idle for long and full a moment ago is not stalled: the
        // wait itself starts the clock.
        let since = t0 + Duration::from_secs(60);
        assert_eq!(
            verdict(true, false, since, t0, since),
            Verdict::Wait(since + OUTBOX_STALL)
        );
        // Nothing moved for the whole bound: stalled.
        assert_eq!(
            verdict(true, false, t0, t0, t0 + OUTBOX_STALL),
            Verdict::Stalled
        );
    }

    #[test]
    fn a_wake_up_registers_once_per_round() {
        let pacing = Pacing::default();
        let msg = Arc::new(Message {
            topic: Arc::from("t"),
            payload: bytes::Bytes::new(),
            qos: warden_policy::QoS::AtLeastOnce,
            retain: false,
            properties: warden_codec::Properties::default(),
            expires_at: None,
            origin: Arc::from("c"),
            ack_gate: None,
        });
        let mut d = Deferred::new(&msg, 1);
        let wake = Arc::new(Wake::new());
        pacing.register(&mut d, &wake);
        pacing.register(&mut d, &wake);
        assert_eq!(pacing.waiters.lock().len(), 1);
        pacing.moved();
        assert!(pacing.waiters.lock().is_empty());
        // Woken: the next wait registers again.
        pacing.register(&mut d, &wake);
        assert_eq!(pacing.waiters.lock().len(), 1);
    }
}
