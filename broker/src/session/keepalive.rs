//! Keep alive for every connection from one broker-wide timer wheel.
//!
//! A connection's packet loop used to wait on its own `Sleep` for its
//! keep-alive deadline and move it at every packet. That put a timer entry
//! (112 bytes) in every idle connection's task and a timer-wheel
//! registration and removal in every turn of a busy one. Here a connection
//! only stores when it last heard from its client (one relaxed store per
//! batch of packets, from a clock this module keeps) in its [`Wake`]; one
//! task visits each watched connection about once per keep-alive period and
//! wakes the ones whose client has been silent too long (MQTT §3.1.2.10:
//! one and a half times the keep alive). The disconnect comes at most two
//! ticks (200 ms) after the deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::shutdown::Shutdown;
use crate::wake::Wake;

/// The wheel's resolution.
pub const TICK: Duration = Duration::from_millis(100);
const TICK_MS: u64 = TICK.as_millis() as u64;

/// Slots in the wheel: a deadline further than this many ticks away is
/// visited once per turn (51.2 s) and put back.
const SLOTS: usize = 512;

/// Watched connections, by the tick their deadline falls in.
pub struct KeepAlive {
    start: Instant,
    /// Milliseconds since `start` at the last tick: what connections stamp
    /// their activity with (a load instead of a clock read).
    now_ms: AtomicU64,
    wheel: Mutex<Wheel>,
}

struct Wheel {
    slots: Vec<Vec<Weak<Wake>>>,
    /// The next tick to visit.
    next: u64,
    /// Reused while a slot is visited.
    spare: Vec<Weak<Wake>>,
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAlive").finish_non_exhaustive()
    }
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive::new()
    }
}

impl KeepAlive {
    pub fn new() -> KeepAlive {
        KeepAlive {
            start: Instant::now(),
            now_ms: AtomicU64::new(0),
            wheel: Mutex::new(Wheel {
                slots: (0..SLOTS).map(|_| Vec::new()).collect(),
                next: 0,
                spare: Vec::new(),
            }),
        }
    }

    /// The clock connections stamp their activity with (ms, coarse: it
    /// moves at each tick).
    pub fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// Watch a connection: its client must send something within `timeout`
    /// of its last packet, or its wake-up is set with the keep alive
    /// expired. Watching ends when the connection calls [`Wake::unwatch`]
    /// or drops its wake-up.
    pub fn watch(&self, wake: &Arc<Wake>, timeout: Duration) {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        wake.watch(now, timeout_ms);
        let due = due_tick(now, timeout_ms);
        let mut wheel = self.wheel.lock();
        // Never behind the hand: it would wait a whole turn.
        let at = due.max(wheel.next);
        wheel.slots[slot(at)].push(Arc::downgrade(wake));
    }

    /// Move the clock to `now` and visit every slot up to it.
    fn tick(&self, now: Instant) {
        let now_ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        self.now_ms.store(now_ms, Ordering::Relaxed);
        let current = now_ms / TICK_MS;
        let mut expired = Vec::new();
        {
            let mut guard = self.wheel.lock();
            let wheel = &mut *guard;
            // After a long stall (a suspended VM), one turn visits all.
            let first = wheel.next.max(current.saturating_sub(SLOTS as u64 - 1));
            for t in first..=current {
                let mut visit =
                    std::mem::replace(&mut wheel.slots[slot(t)], std::mem::take(&mut wheel.spare));
                for weak in visit.drain(..) {
                    let Some(wake) = weak.upgrade() else { continue };
                    let Some((last, timeout)) = wake.watched() else {
                        continue;
                    };
                    let due = due_tick(last, timeout);
                    if due <= current {
                        expired.push(wake);
                    } else {
                        // Not before the next tick, so this visit ends.
                        wheel.slots[slot(due.max(current + 1))].push(weak);
                    }
                }
                wheel.spare = visit;
            }
            wheel.next = current + 1;
        }
        // Woken outside the lock: a wake-up may run its task at once.
        for wake in expired {
            wake.expire();
        }
    }
}

/// The tick by whose end a client last heard of at `last_ms` has been
/// silent for `timeout_ms`: one tick more than the deadline, since the
/// stamp may be up to a tick old.
fn due_tick(last_ms: u64, timeout_ms: u64) -> u64 {
    last_ms.saturating_add(timeout_ms).saturating_add(TICK_MS) / TICK_MS + 1
}

fn slot(tick: u64) -> usize {
    (tick % SLOTS as u64) as usize
}

/// Tick until shutdown.
pub async fn run(keepalive: Arc<KeepAlive>, mut shutdown: Shutdown) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => keepalive.tick(Instant::now()),
            _ = shutdown.recv() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ka: &KeepAlive, ms: u64) -> Instant {
        ka.start + Duration::from_millis(ms)
    }

    #[test]
    fn a_silent_client_expires_after_its_timeout_and_not_before() {
        let ka = KeepAlive::new();
        let wake = Arc::new(Wake::new());
        ka.watch(&wake, Duration::from_millis(1500));
        for ms in (100..=1500).step_by(100) {
            ka.tick(at(&ka, ms));
            assert!(!wake.is_expired(), "expired early at {ms} ms");
        }
        ka.tick(at(&ka, 1700));
        ka.tick(at(&ka, 1800));
        assert!(wake.is_expired(), "not expired 300 ms after the deadline");
    }

    #[test]
    fn activity_moves_the_deadline() {
        let ka = KeepAlive::new();
        let wake = Arc::new(Wake::new());
        ka.watch(&wake, Duration::from_millis(1000));
        for ms in (100..=5000).step_by(100) {
            ka.tick(at(&ka, ms));
            wake.touch(ka.now_ms());
            assert!(!wake.is_expired(), "expired at {ms} ms despite activity");
        }
        for ms in (5100..=6300).step_by(100) {
            ka.tick(at(&ka, ms));
        }
        assert!(wake.is_expired());
    }

    #[test]
    fn long_timeouts_go_round_the_wheel() {
        let ka = KeepAlive::new();
        let wake = Arc::new(Wake::new());
        // Longer than one turn of the wheel (51.2 s).
        ka.watch(&wake, Duration::from_secs(90));
        for ms in (100..=90_000).step_by(100) {
            ka.tick(at(&ka, ms));
        }
        assert!(!wake.is_expired());
        ka.tick(at(&ka, 90_300));
        assert!(wake.is_expired());
    }

    #[test]
    fn a_late_tick_catches_up_and_unwatched_connections_are_dropped() {
        let ka = KeepAlive::new();
        let a = Arc::new(Wake::new());
        let b = Arc::new(Wake::new());
        ka.watch(&a, Duration::from_millis(500));
        ka.watch(&b, Duration::from_millis(500));
        b.unwatch();
        // One tick after ten seconds without any.
        ka.tick(at(&ka, 10_000));
        assert!(a.is_expired());
        assert!(!b.is_expired());
        let left: usize = ka.wheel.lock().slots.iter().map(Vec::len).sum();
        assert_eq!(left, 0, "expired and unwatched entries leave the wheel");
    }
}
