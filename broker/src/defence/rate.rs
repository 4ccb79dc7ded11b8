//! A token bucket: `rate` events per second on average, and as many again
//! in a burst. Used for new connections per source address and for
//! PUBLISH packets per client.

use std::time::Instant;

/// See the module docs. Starts full.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Take one token if there is one.
    pub fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again at `now` (nothing to remember).
    pub fn is_full(&self, rate: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * f64::from(rate) >= f64::from(rate)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(5, t0);
        for _ in 0..5 {
            assert!(b.take(5, t0));
        }
        assert!(!b.take(5, t0), "burst spent");
        assert!(!b.take(5, t0 + Duration::from_millis(100)));
        assert!(
            b.take(5, t0 + Duration::from_millis(300)),
            "refilled at 5/s"
        );
        assert!(!b.is_full(5, t0 + Duration::from_millis(300)));
        assert!(b.is_full(5, t0 + Duration::from_secs(2)));
    }
}
