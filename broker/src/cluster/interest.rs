//! This node's interest in NATS subjects, reference-counted by the router.
//!
//! The router's trie reports each filter's first subscription and last
//! unsubscription ([`InterestSink`]), under its write lock, so the reports
//! arrive here in the order they happened. Each gets a ticket number and goes
//! down a channel to the link task, which subscribes to or unsubscribes
//! from the filter's subjects (a queue subscription for a shared group) and
//! hands the batch to the interest task (`remote_interest.rs`). That one
//! confirms the tickets once the NATS server has answered a request sent
//! after the subscriptions (the server handles a connection's protocol
//! lines in order, so by then they are in place) and every other node has
//! acknowledged the announcement of the change.
//!
//! A SUBACK waits for the highest ticket issued when its subscriptions
//! were added ([`Interest::pending`]): a subscriber then receives every
//! message another node publishes after the SUBACK (docs/cluster.md says
//! where that can fail). While NATS is
//! unreachable nothing waits, so local clients are served as before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::router::InterestSink;
use crate::wake::Wake;

/// One change of interest, as the link task receives it.
#[derive(Debug)]
pub struct Change {
    pub ticket: u64,
    pub filter: Arc<str>,
    /// A shared group of the filter (a NATS queue group); None: the
    /// filter's direct subscriptions.
    pub group: Option<Arc<str>>,
    /// True: the first subscription (or member); false: the last went.
    pub present: bool,
}

/// The interest reports and their confirmation.
#[derive(Debug)]
pub struct Interest {
    changes: mpsc::UnboundedSender<Change>,
    issued: AtomicU64,
    confirmed: AtomicU64,
    /// SUBACKs waiting for a ticket: (ticket, their connection's wake-up).
    waiters: Mutex<Vec<(u64, Arc<Wake>)>>,
    /// Whether the NATS connection is up; while it is not, nothing waits.
    connected: AtomicBool,
}

impl Interest {
    pub fn new() -> (Arc<Interest>, mpsc::UnboundedReceiver<Change>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let interest = Interest {
            changes: tx,
            issued: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
            connected: AtomicBool::new(false),
        };
        (Arc::new(interest), rx)
    }

    /// The ticket an acknowledgement sent now must wait for; 0 when none.
    pub fn pending(&self) -> u64 {
        if !self.connected.load(Ordering::Acquire) {
            return 0;
        }
        let issued = self.issued.load(Ordering::Acquire);
        if issued <= self.confirmed.load(Ordering::Acquire) {
            0
        } else {
            issued
        }
    }

    pub fn is_confirmed(&self, ticket: u64) -> bool {
        ticket <= self.confirmed.load(Ordering::Acquire)
    }

    /// Wake `wake` once `ticket` is confirmed (at once if it is).
    pub fn notify_when_confirmed(&self, ticket: u64, wake: &Arc<Wake>) {
        let mut waiters = self.waiters.lock();
        // Checked under the lock `confirm` takes after raising the mark:
        // either we see the new mark or it sees our entry.
        if self.is_confirmed(ticket) {
            wake.notify_one();
            return;
        }
        waiters.push((ticket, Arc::clone(wake)));
    }

    /// Every ticket up to `ticket` is confirmed.
    pub fn confirm(&self, ticket: u64) {
        self.confirmed.fetch_max(ticket, Ordering::AcqRel);
        let mut waiters = self.waiters.lock();
        waiters.retain(|(t, wake)| {
            if *t <= ticket {
                wake.notify_one();
                false
            } else {
                true
            }
        });
    }

    /// The connection went down or came up. Going down releases every
    /// waiting acknowledgement: the subscriptions are local until NATS is
    /// back, and async-nats subscribes again when it reconnects.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
        if !up {
            self.confirm(self.issued.load(Ordering::Acquire));
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

impl InterestSink for Interest {
    fn changed(&self, filter: &str, group: Option<&str>, present: bool) {
        let ticket = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        // The link task ends only at shutdown; then nobody needs the report.
        let _ = self.changes.send(Change {
            ticket,
            filter: Arc::from(filter),
            group: group.map(Arc::from),
            present,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_wait_for_the_last_ticket_while_connected() {
        let (interest, mut rx) = Interest::new();
        interest.changed("a/#", None, true);
        // Not connected: nothing waits.
        assert_eq!(interest.pending(), 0);
        interest.set_connected(true);
        interest.changed("b", None, true);
        assert_eq!(interest.pending(), 2);
        let wake = Arc::new(Wake::new());
        interest.notify_when_confirmed(2, &wake);
        assert_eq!(interest.waiters.lock().len(), 1);
        interest.confirm(2);
        assert!(interest.waiters.lock().is_empty());
        assert_eq!(interest.pending(), 0);
        let got: Vec<(u64, String, bool)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| (c.ticket, c.filter.to_string(), c.present))
            .collect();
        assert_eq!(got, [(1, "a/#".into(), true), (2, "b".into(), true)]);
    }

    #[test]
    fn an_outage_releases_the_waiters() {
        let (interest, _rx) = Interest::new();
        interest.set_connected(true);
        interest.changed("a", None, true);
        let wake = Arc::new(Wake::new());
        interest.notify_when_confirmed(interest.pending(), &wake);
        interest.set_connected(false);
        assert!(interest.waiters.lock().is_empty());
        assert!(interest.is_confirmed(1));
    }
}
