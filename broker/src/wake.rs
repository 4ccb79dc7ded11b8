//! A connection's wake-up: deliveries, acknowledgements the session store
//! made durable, takeovers, kicks and shutdown set it; the connection's
//! packet loop waits for it.
//!
//! It has one waiter, so a flag and an [`AtomicWaker`] do what a
//! `tokio::sync::Notify` did, without a waiter list or a lock: a wake-up is
//! a store and a swap, and the packet loop polls it in place, so a waiting
//! connection's task holds no state for it (most connections wait most of
//! the time, and the task's size is memory per connection).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Wake {
    pending: AtomicBool,
    /// The keep alive ran out (`session/keepalive.rs`).
    expired: AtomicBool,
    /// Keep alive, when watched: the timeout in ms (0: not watched) and
    /// when the client was last heard from (the watcher's clock). Here
    /// rather than in a timer of the connection's own (see keepalive.rs).
    timeout_ms: AtomicU32,
    last_seen_ms: AtomicU64,
    waker: AtomicWaker,
}

impl Wake {
    pub fn new() -> Wake {
        Wake::default()
    }

    /// Wake the waiting connection, or, when it is not waiting, make its
    /// next wait return at once (one permit, as `Notify::notify_one`).
    pub fn notify_one(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Start keep-alive watching (`KeepAlive::watch`).
    pub(crate) fn watch(&self, now_ms: u64, timeout_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
        // At least 1: 0 means not watched. MQTT's longest (65,535 s × 1.5)
        // fits.
        let t = u32::try_from(timeout_ms).unwrap_or(u32::MAX).max(1);
        self.timeout_ms.store(t, Ordering::Relaxed);
    }

    /// The client was heard from at `now_ms` (the watcher's clock).
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Stop keep-alive watching (the connection ended).
    pub fn unwatch(&self) {
        self.timeout_ms.store(0, Ordering::Relaxed);
    }

    /// (last heard from, timeout) while watched.
    pub(crate) fn watched(&self) -> Option<(u64, u64)> {
        let t = self.timeout_ms.load(Ordering::Relaxed);
        (t != 0).then(|| (self.last_seen_ms.load(Ordering::Relaxed), u64::from(t)))
    }

    /// The keep alive ran out: say so and wake the connection.
    pub(crate) fn expire(&self) {
        self.expired.store(true, Ordering::Release);
        self.notify_one();
    }

    /// Whether the keep alive ran out.
    pub fn is_expired(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }

    /// Ready once woken since the last Ready, which takes the permit.
    pub fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A wake-up between the first look and the registration found no
        // waker to wake: look again.
        if self.pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Wait for [`Wake::notify_one`]. Cancel safe: a permit is only taken
    /// by the poll that returns Ready.
    pub async fn notified(&self) {
        poll_fn(|cx| self.poll_notified(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wake_up_before_the_wait_is_kept_once() {
        let wake = Wake::new();
        wake.notify_one();
        wake.notify_one();
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("the permit");
        let again = tokio::time::timeout(Duration::from_millis(50), wake.notified()).await;
        assert!(again.is_err(), "two wake-ups before a wait are one permit");
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_from_another_thread() {
        let wake = Arc::new(Wake::new());
        let waiter = tokio::spawn({
            let wake = Arc::clone(&wake);
            async move { wake.notified().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let from = Arc::clone(&wake);
        std::thread::spawn(move || from.notify_one())
            .join()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
