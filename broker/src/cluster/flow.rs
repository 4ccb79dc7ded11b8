//! Receiver-driven flow control over core NATS (docs/cluster.md, "Flow
//! control").
//!
//! Core NATS has no back-pressure: a receiving node whose link task falls
//! behind loses what overflows async-nats' buffer (65,536 messages per
//! subscription) or the server's pending limit. So each receiving node
//! tells each sender how far it got, and a sender does not run further
//! ahead of any live receiver than [`WINDOW`]:
//!
//! - The receiving node's link task ([`Progress`]) notes the highest
//!   sequence number it routed per sender instance (direct subscriptions
//!   only) and, every [`NOTE_EVERY`] messages from that sender or
//!   [`NOTE_DELAY`] after the first unreported one, publishes a [`Note`]
//!   (its node id, that seq) on `warden.<cluster>.flow.<instance>`, the
//!   sender instance's own subject.
//! - The sending node's publishing task ([`Window`]) keeps, per remote
//!   node, the last seq it sent that the node wants through a direct
//!   subscription and the node's acknowledged seq, and takes nothing from
//!   the outbox while some node is more than [`WINDOW`] behind. The outbox
//!   fills, and the publishers are paused by the existing pacing
//!   (`pacing.rs`).
//! - A node that is behind and reports no progress for [`TIMEOUT`] (dead,
//!   cut off, hung) is not waited for (counted, logged once) until it
//!   reports progress again. [`TIMEOUT`] is shorter than the outbox's own
//!   stall bound (`pacing::OUTBOX_STALL`), so a hung receiver never makes
//!   the outbox count as stalled. A node that leaves the interest table
//!   is forgotten here too.
//!
//! The distance is measured in the sender's sequence numbers, which count
//! every message it sends: a node that wants a fraction of the traffic
//! gets a proportionally smaller window in messages (conservative). The
//! note covers everything before it only roughly (a message can wait in
//! one subscription's buffer while a later one is routed from another, and
//! a publisher's paced message keeps an older seq): the window is a bound
//! on the backlog, not an acknowledgement of each message. Copies through
//! shared-group queue subscriptions are left out: NATS picks one node per
//! message, so the sender cannot know whom to count.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// How far (in the sender's sequence numbers) a sender may run ahead of a
/// receiving node: well below async-nats' 65,536 messages per
/// subscription.
pub const WINDOW: u64 = 16 * 1024;
/// What all the senders into one node may have in flight together: the
/// window shrinks below [`WINDOW`] past 3 other nodes, so that every other
/// node sending at once still fits async-nats' buffer.
pub const SHARED: u64 = 48 * 1024;
/// The smallest window (with many nodes), above [`NOTE_EVERY`].
pub const MIN_WINDOW: u64 = 2 * 1024;

/// The window with `others` other nodes in the cluster (each may send
/// into the same receiving node).
pub fn window_for(others: usize) -> u64 {
    let others = u64::try_from(others.max(1)).unwrap_or(u64::MAX);
    (SHARED / others).clamp(MIN_WINDOW, WINDOW)
}
/// A receiving node reports progress after this many messages of a sender.
pub const NOTE_EVERY: u32 = 1024;
/// ...or this long after the first message it has not reported.
pub const NOTE_DELAY: Duration = Duration::from_millis(5);
/// A node behind by more than the window that reports no progress for this
/// long is not waited for until it does.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// "Node `node` routed the addressee's messages up to `seq`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub node: String,
    pub seq: u64,
}

/// A payload that is not a [`Note`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed flow note")]
pub struct NoteError;

impl Note {
    /// The seq (u64, big endian), then the node id.
    pub fn encode(node: &str, seq: u64) -> Bytes {
        let mut out = BytesMut::with_capacity(8 + node.len());
        out.put_u64(seq);
        out.put_slice(node.as_bytes());
        out.freeze()
    }

    pub fn decode(mut buf: Bytes) -> Result<Note, NoteError> {
        if buf.remaining() < 8 {
            return Err(NoteError);
        }
        let seq = buf.get_u64();
        let node = std::str::from_utf8(&buf).map_err(|_| NoteError)?;
        if node.is_empty() {
            return Err(NoteError);
        }
        Ok(Note {
            node: node.to_owned(),
            seq,
        })
    }
}

/// The receiving side: what the link task routed and has not reported.
#[derive(Debug, Default)]
pub struct Progress {
    /// Per sender instance: the highest seq routed, and how many messages
    /// since the last note.
    pending: HashMap<u64, (u64, u32)>,
    /// When the oldest unreported message was routed.
    since: Option<Instant>,
}

impl Progress {
    /// A message `seq` of `instance` was routed (or dropped as a copy):
    /// true if that sender is due a note now.
    pub fn routed(&mut self, instance: u64, seq: u64, now: Instant) -> bool {
        let entry = self.pending.entry(instance).or_insert((0, 0));
        entry.0 = entry.0.max(seq);
        entry.1 += 1;
        self.since.get_or_insert(now);
        entry.1 >= NOTE_EVERY
    }

    /// The note due to `instance` now (its counter starts again).
    pub fn take_one(&mut self, instance: u64) -> Option<u64> {
        let entry = self.pending.get_mut(&instance)?;
        entry.1 = 0;
        Some(entry.0)
    }

    /// When the unreported progress must be reported at the latest.
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|t| t + NOTE_DELAY)
    }

    /// Every sender's progress, to report now; nothing is left pending.
    pub fn take_all(&mut self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.since = None;
        self.pending
            .drain()
            .map(|(instance, (seq, _))| (instance, seq))
    }
}

/// One receiving node, as the sender sees it.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// The last seq sent that this node wants.
    sent: u64,
    /// The highest seq it reported routed.
    acked: u64,
    /// When it last reported progress, or when it fell behind (the later).
    progress: Instant,
    /// Behind and silent for [`TIMEOUT`]: not waited for until it reports
    /// progress again.
    given_up: bool,
}

impl Peer {
    fn behind(&self, window: u64) -> bool {
        self.sent.saturating_sub(self.acked) > window
    }
}

/// What [`Window::check`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No live node is more than the window behind: take from the outbox.
    Go,
    /// Wait for a note, or until this instant (a node's timeout).
    Wait(Instant),
}

/// The sending side, owned by the publishing task.
#[derive(Debug)]
pub struct Window {
    peers: HashMap<Arc<str>, Peer>,
    /// The current window ([`window_for`]).
    limit: u64,
}

impl Default for Window {
    fn default() -> Window {
        Window {
            peers: HashMap::new(),
            limit: WINDOW,
        }
    }
}

impl Window {
    /// Size the window for `others` other nodes.
    pub fn set_others(&mut self, others: usize) {
        self.limit = window_for(others);
    }

    /// Message `seq` went to NATS, and `node` wants it.
    pub fn sent(&mut self, node: &Arc<str>, seq: u64, now: Instant) {
        match self.peers.get_mut(node) {
            Some(p) => {
                if !p.behind(self.limit) {
                    // The silence that counts starts when it falls behind.
                    p.progress = now;
                }
                p.sent = p.sent.max(seq);
            }
            None => {
                self.peers.insert(
                    Arc::clone(node),
                    Peer {
                        sent: seq,
                        // Nothing before its first message is owed.
                        acked: seq.saturating_sub(1),
                        progress: now,
                        given_up: false,
                    },
                );
            }
        }
    }

    /// `node` reported its progress: true if it had been given up (it is
    /// waited for again).
    pub fn acked(&mut self, node: &str, seq: u64, now: Instant) -> bool {
        let Some(p) = self.peers.get_mut(node) else {
            return false;
        };
        if seq <= p.acked {
            return false;
        }
        p.acked = seq;
        p.progress = now;
        std::mem::take(&mut p.given_up)
    }

    /// Whether to take from the outbox; the nodes given up at this check
    /// are passed to `timed_out`.
    pub fn check(&mut self, now: Instant, mut timed_out: impl FnMut(&str)) -> Check {
        let mut wait: Option<Instant> = None;
        for (node, p) in &mut self.peers {
            if p.given_up || !p.behind(self.limit) {
                continue;
            }
            let at = p.progress + TIMEOUT;
            if now >= at {
                p.given_up = true;
                timed_out(node);
            } else {
                wait = Some(wait.map_or(at, |w| w.min(at)));
            }
        }
        match wait {
            Some(at) => Check::Wait(at),
            None => Check::Go,
        }
    }

    /// Keep only the nodes `keep` says are still there.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.peers.retain(|node, _| keep(node));
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_garbage_is_refused() {
        let bytes = Note::encode("n2", 77);
        assert_eq!(
            Note::decode(bytes.clone()),
            Ok(Note {
                node: "n2".into(),
                seq: 77
            })
        );
        for cut in 0..9 {
            assert!(Note::decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = BytesMut::new();
        bad.put_u64(1);
        bad.put_slice(&[0xff, 0xfe]);
        assert!(Note::decode(bad.freeze()).is_err());
    }

    #[test]
    fn the_receiver_reports_every_so_many_messages_or_after_a_delay() {
        let mut p = Progress::default();
        let t0 = Instant::now();
        assert_eq!(p.due(), None);
        for seq in 1..NOTE_EVERY as u64 {
            assert!(!p.routed(7, seq, t0));
        }
        assert_eq!(p.due(), Some(t0 + NOTE_DELAY));
        // Out of order (another subscription's buffer): the highest counts.
        assert!(p.routed(7, 5, t0));
        assert_eq!(p.take_one(7), Some(u64::from(NOTE_EVERY) - 1));
        assert!(!p.routed(7, 2000, t0));
        assert!(!p.routed(9, 3, t0));
        let mut all: Vec<(u64, u64)> = p.take_all().collect();
        all.sort_unstable();
        assert_eq!(all, vec![(7, 2000), (9, 3)]);
        assert_eq!(p.due(), None);
    }

    #[test]
    fn the_window_shares_the_receivers_buffer_among_the_senders() {
        assert_eq!(window_for(0), WINDOW);
        assert_eq!(window_for(1), WINDOW);
        assert_eq!(window_for(3), WINDOW);
        assert_eq!(window_for(4), 12 * 1024);
        assert_eq!(window_for(100), MIN_WINDOW);
        for others in 1..40 {
            let w = window_for(others);
            assert!(w * others as u64 <= SHARED || w == MIN_WINDOW);
        }
        let mut w = Window::default();
        w.set_others(6);
        let t0 = Instant::now();
        let n2: Arc<str> = Arc::from("n2");
        w.sent(&n2, 1, t0);
        w.sent(&n2, 2 + 8 * 1024, t0);
        assert_eq!(w.check(t0, |_| panic!()), Check::Wait(t0 + TIMEOUT));
    }

    #[test]
    fn the_sender_waits_for_a_node_more_than_the_window_behind() {
        let mut w = Window::default();
        let t0 = Instant::now();
        let n2: Arc<str> = Arc::from("n2");
        let n3: Arc<str> = Arc::from("n3");
        for seq in 100..100 + WINDOW {
            w.sent(&n2, seq, t0);
        }
        w.sent(&n3, 150, t0);
        // n2 owes exactly the window: go on.
        assert_eq!(w.check(t0, |_| panic!()), Check::Go);
        w.sent(&n2, 100 + WINDOW, t0);
        assert_eq!(w.check(t0, |_| panic!()), Check::Wait(t0 + TIMEOUT));
        // n2 reports progress: within the window again.
        let t1 = t0 + Duration::from_millis(5);
        assert!(!w.acked("n2", 200, t1));
        assert_eq!(w.check(t1, |_| panic!()), Check::Go);
        // A stale or unknown note changes nothing.
        assert!(!w.acked("n2", 150, t1));
        assert!(!w.acked("n9", 1, t1));
    }

    #[test]
    fn a_silent_node_is_given_up_and_waited_for_again_once_it_reports() {
        let mut w = Window::default();
        let t0 = Instant::now();
        let n2: Arc<str> = Arc::from("n2");
        w.sent(&n2, 1, t0);
        let t1 = t0 + Duration::from_secs(10);
        // Fell behind at t1: the silence counts from then, not from t0.
        w.sent(&n2, 2 + WINDOW, t1);
        assert_eq!(w.check(t1, |_| panic!()), Check::Wait(t1 + TIMEOUT));
        let mut gone = Vec::new();
        assert_eq!(
            w.check(t1 + TIMEOUT, |n| gone.push(n.to_owned())),
            Check::Go
        );
        assert_eq!(gone, vec!["n2".to_owned()]);
        // Given up: not waited for, not reported twice.
        w.sent(&n2, 3 * WINDOW, t1 + TIMEOUT);
        assert_eq!(w.check(t1 + 2 * TIMEOUT, |_| panic!()), Check::Go);
        // It reports progress: waited for again (still far behind).
        let t2 = t1 + 3 * TIMEOUT;
        assert!(w.acked("n2", 10, t2));
        assert_eq!(w.check(t2, |_| panic!()), Check::Wait(t2 + TIMEOUT));
        // It left the cluster: forgotten.
        w.retain(|n| n != "n2");
        assert!(w.is_empty());
        assert_eq!(w.check(t2, |_| panic!()), Check::Go);
    }
}
