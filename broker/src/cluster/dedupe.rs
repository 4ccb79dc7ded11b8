//! One copy per message per node. A node holds one NATS subscription per
//! distinct local filter, so a message matching two of them (`a/#` and
//! `a/b`) arrives twice; the node must route it once, or a subscriber
//! holding both filters would get it twice where a local publish gives one
//! merged delivery.
//!
//! Every message carries its sender's instance id and a sequence number.
//! Messages of one sender arrive in order per subscription but interleaved
//! across subscriptions, so each sender gets a sliding window of the last
//! [`WINDOW`] sequence numbers seen (the anti-replay window of IPsec): a
//! number inside the window is new exactly once; one older than the window
//! is taken for a copy and dropped (the cluster's delivery is at most once,
//! and the window is far wider than any skew between the subscriptions of
//! one connection).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sequence numbers remembered per sender.
pub const WINDOW: u64 = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;

/// A sender not heard from for this long is forgotten (a restarted node
/// comes back with a new instance id).
const IDLE: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Window {
    /// The highest sequence number seen.
    top: u64,
    /// Bit `n % WINDOW`: whether `n` was seen, for `n` in the window.
    seen: Box<[u64; WORDS]>,
    last: Instant,
}

impl Window {
    fn new(seq: u64, now: Instant) -> Window {
        let mut w = Window {
            top: seq,
            seen: Box::new([0; WORDS]),
            last: now,
        };
        w.mark(seq);
        w
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn mark(&mut self, seq: u64) {
        let (word, mask) = Self::bit(seq);
        if let Some(w) = self.seen.get_mut(word) {
            *w |= mask;
        }
    }

    fn is_marked(&self, seq: u64) -> bool {
        let (word, mask) = Self::bit(seq);
        self.seen.get(word).is_some_and(|w| w & mask != 0)
    }

    /// True the first time `seq` is offered.
    fn accept(&mut self, seq: u64) -> bool {
        if seq > self.top {
            // Forget the numbers that slide out of the window.
            if seq - self.top >= WINDOW {
                self.seen.fill(0);
            } else {
                for n in self.top + 1..seq {
                    let (word, mask) = Self::bit(n);
                    if let Some(w) = self.seen.get_mut(word) {
                        *w &= !mask;
                    }
                }
            }
            self.top = seq;
            self.mark(seq);
            return true;
        }
        if self.top - seq >= WINDOW || self.is_marked(seq) {
            return false;
        }
        self.mark(seq);
        true
    }
}

/// The windows of every sender heard from.
#[derive(Debug, Default)]
pub struct Dedupe {
    senders: HashMap<u64, Window>,
}

impl Dedupe {
    /// True the first time message `seq` of `instance` is offered.
    pub fn accept(&mut self, instance: u64, seq: u64, now: Instant) -> bool {
        if let Some(w) = self.senders.get_mut(&instance) {
            w.last = now;
            return w.accept(seq);
        }
        // A new sender: the moment to forget the ones gone quiet.
        self.senders
            .retain(|_, w| now.duration_since(w.last) < IDLE);
        self.senders.insert(instance, Window::new(seq, now));
        true
    }

    #[cfg(test)]
    fn senders(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_passes_once_in_any_order() {
        let now = Instant::now();
        let mut d = Dedupe::default();
        let order = [5u64, 3, 4, 5, 9, 3, 6, 7, 8, 9, 1, 2];
        let passed: Vec<u64> = order
            .iter()
            .copied()
            .filter(|s| d.accept(1, *s, now))
            .collect();
        assert_eq!(passed, [5, 3, 4, 9, 6, 7, 8, 1, 2]);
    }

    #[test]
    fn senders_are_apart_and_older_than_the_window_is_dropped() {
        let now = Instant::now();
        let mut d = Dedupe::default();
        assert!(d.accept(1, 10, now));
        assert!(d.accept(2, 10, now));
        assert!(d.accept(1, 10 + WINDOW, now));
        // 10 slid out: taken for a copy.
        assert!(!d.accept(1, 10, now));
        assert!(d.accept(1, 11 + WINDOW, now));
        assert!(d.accept(1, 12, now));
        // A jump past the window forgets everything before it.
        assert!(d.accept(1, 100 * WINDOW, now));
        assert!(d.accept(1, 100 * WINDOW - 1, now));
        assert!(!d.accept(1, 100 * WINDOW - 1, now));
    }

    #[test]
    fn quiet_senders_are_forgotten() {
        let start = Instant::now();
        let mut d = Dedupe::default();
        d.accept(1, 1, start);
        d.accept(2, 1, start + IDLE + Duration::from_secs(1));
        assert_eq!(d.senders(), 1);
    }
}
