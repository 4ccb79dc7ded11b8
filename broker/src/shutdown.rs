//! Graceful shutdown, after mini-redis: the server flips a watch flag to
//! tell every task to stop; each task holds a clone of an mpsc sender so the
//! server can wait until every task has finished (the receiver yields `None`
//! once all senders are dropped).
//!
//! A watch rather than a broadcast: a task that subscribes after the flag
//! was raised (a connection accepted in the same instant) still sees it.

use tokio::sync::{mpsc, watch};

/// Listens for the server's shutdown signal. A clone is one more task the
/// server waits for.
#[derive(Clone, Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: watch::Receiver<bool>,
    /// Held, never used: when every clone is dropped the server knows all
    /// connection tasks have finished.
    _done: mpsc::Sender<()>,
}

impl Shutdown {
    pub fn new(notify: watch::Receiver<bool>, done: mpsc::Sender<()>) -> Shutdown {
        // Subscribed after the flag was raised: no change would ever show.
        let is_shutdown = *notify.borrow();
        Shutdown {
            is_shutdown,
            notify,
            _done: done,
        }
    }

    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Whether the signal came, without waiting: one atomic load (the
    /// flag only ever goes up, so any change is the signal). For a task
    /// that is woken some other way when it comes (a connection's packet
    /// loop: `session::lifecycle::wake_all`), and keeps no waiting future.
    pub fn triggered(&mut self) -> bool {
        if !self.is_shutdown {
            self.is_shutdown = self.notify.has_changed().unwrap_or(true);
        }
        self.is_shutdown
    }

    /// Wait for the shutdown signal. Cancel safe.
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        // The flag raised, or the sender gone: both mean shut down.
        let _ = self.notify.wait_for(|stop| *stop).await;
        self.is_shutdown = true;
    }
}

/// A cloneable handle that hands out [`Shutdown`]s; accept loops keep one
/// to give each new connection task its own.
#[derive(Clone, Debug)]
pub struct Handle {
    notify: watch::Sender<bool>,
    done_tx: mpsc::Sender<()>,
}

impl Handle {
    pub fn subscribe(&self) -> Shutdown {
        Shutdown::new(self.notify.subscribe(), self.done_tx.clone())
    }
}

/// The server's side: signal shutdown and wait for the tasks to finish.
#[derive(Debug)]
pub struct ShutdownController {
    handle: Handle,
    done_rx: mpsc::Receiver<()>,
}

impl Default for ShutdownController {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownController {
    pub fn new() -> ShutdownController {
        let (notify, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        ShutdownController {
            handle: Handle { notify, done_tx },
            done_rx,
        }
    }

    /// A listener for one task.
    pub fn subscribe(&self) -> Shutdown {
        self.handle.subscribe()
    }

    pub fn clone_handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Signal every task and wait until all of them (and every handle) are
    /// gone.
    pub async fn shutdown(self) {
        self.begin();
        self.finished().await;
    }

    /// Signal every task to stop. Handles cloned into accept loops keep the
    /// sender alive until those loops end, so the flag is what tells them.
    pub fn begin(&self) {
        self.handle.notify.send_replace(true);
    }

    /// Wait until every task (and every handle) is gone. Bound it with a
    /// timeout: a task stuck in a socket write never finishes.
    pub async fn finished(self) {
        let ShutdownController {
            handle,
            mut done_rx,
        } = self;
        drop(handle);
        let _ = done_rx.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_task_that_subscribes_after_the_signal_still_stops() {
        let controller = ShutdownController::new();
        let handle = controller.clone_handle();
        controller.begin();
        let mut late = handle.subscribe();
        drop(handle);
        tokio::time::timeout(Duration::from_secs(1), late.recv())
            .await
            .expect("a late subscriber sees the shutdown");
        assert!(late.is_shutdown());
        drop(late);
        tokio::time::timeout(Duration::from_secs(1), controller.finished())
            .await
            .expect("finished once every task is gone");
    }
}
