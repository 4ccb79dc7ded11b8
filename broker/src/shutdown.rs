//! Graceful shutdown, as mini-redis does it: the server holds a broadcast
//! sender and drops it (or sends) to tell every connection task to stop; each
//! task holds a clone of an mpsc sender so the server can wait until every task
//! has finished (the receiver yields `None` once all senders are dropped).

use tokio::sync::{broadcast, mpsc};

/// Listens for the server's shutdown signal.
#[derive(Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
    /// Held, never used: when every clone is dropped the server knows all
    /// connection tasks have finished.
    _done: mpsc::Sender<()>,
}

impl Shutdown {
    pub fn new(notify: broadcast::Receiver<()>, done: mpsc::Sender<()>) -> Shutdown {
        Shutdown {
            is_shutdown: false,
            notify,
            _done: done,
        }
    }

    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Wait for the shutdown signal. Cancel safe.
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        // Either a send or the sender being dropped means shut down.
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// A cloneable handle that hands out [`Shutdown`]s; accept loops keep one
/// to give each new connection task its own.
#[derive(Clone, Debug)]
pub struct Handle {
    notify: broadcast::Sender<()>,
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
        let (notify, _) = broadcast::channel(1);
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
    /// gone. Handles are cloned into accept loops, which end on the signal,
    /// so an explicit send is needed rather than dropping the sender.
    pub async fn shutdown(self) {
        let ShutdownController {
            handle,
            mut done_rx,
        } = self;
        let _ = handle.notify.send(());
        drop(handle);
        let _ = done_rx.recv().await;
    }
}
