//! Connection admission at accept, before any TLS work: the broker-wide
//! connection limit, connections per source address, and new connections
//! per second per source address (`limits.max_connections`,
//! `max_connections_per_ip`, `connection_rate_per_ip`). A connection over a
//! limit is closed at once: reading its CONNECT to answer with a reason
//! code would cost the TLS handshake the limit is there to save. Only the
//! newcomer is refused; connections already up are untouched.
//!
//! Addresses are keyed as the bans key them (`bans::ip_key`: IPv6 per /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::bans::ip_key;
use super::rate::Bucket;
use crate::config::GuardLimits;

/// Addresses whose rate is remembered; beyond it, full buckets are dropped.
const MAX_RATE_ENTRIES: usize = 100_000;

/// Which limit refused a connection (the metrics' label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
    Rate,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
            Refused::Rate => "connection_rate_per_ip",
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Connections {
    /// Open connections, in all (also the shutdown's report).
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    rates: Mutex<HashMap<IpAddr, Bucket>>,
}

/// One admitted connection's share of the counts; given back on drop.
#[derive(Debug)]
pub struct Admitted<'a> {
    conns: &'a Connections,
    ip: Option<IpAddr>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.conns.release(self.ip);
    }
}

impl Admitted<'_> {
    /// Keep the counts until [`Connections::release`] is called with the
    /// returned key (the holder outlives this borrow).
    pub fn keep(self) -> Option<IpAddr> {
        let ip = self.ip;
        std::mem::forget(self);
        ip
    }
}

impl Connections {
    /// Open connections, in all.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Admit a connection from `ip` under `limits`, or say which limit
    /// refuses it.
    pub fn admit(
        &self,
        limits: &GuardLimits,
        ip: IpAddr,
        now: Instant,
    ) -> Result<Admitted<'_>, Refused> {
        let key = ip_key(ip);
        if let Some(rate) = limits.connection_rate_per_ip {
            let mut rates = self.rates.lock();
            if rates.len() >= MAX_RATE_ENTRIES && !rates.contains_key(&key) {
                rates.retain(|_, b| !b.is_full(rate.get(), now));
            }
            let bucket = rates
                .entry(key)
                .or_insert_with(|| Bucket::full(rate.get(), now));
            if !bucket.take(rate.get(), now) {
                return Err(Refused::Rate);
            }
        }
        let max = limits.max_connections.map_or(usize::MAX, |m| m.get());
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Refused::Total)?;
        let mut admitted = Admitted {
            conns: self,
            ip: None,
        };
        // Counted per address only while a per-address limit is set: a
        // reload that sets one counts the connections that come after it.
        if let Some(per_ip) = limits.max_connections_per_ip {
            let mut map = self.per_ip.lock();
            let n = map.entry(key).or_insert(0);
            if *n >= per_ip.get() {
                return Err(Refused::PerIp);
            }
            *n += 1;
            admitted.ip = Some(key);
        }
        Ok(admitted)
    }

    /// Give back what [`Admitted::keep`] kept.
    pub fn release(&self, ip: Option<IpAddr>) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = ip {
            let mut map = self.per_ip.lock();
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroUsize};
    use std::time::Duration;

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn limits() -> GuardLimits {
        GuardLimits {
            max_connections: NonZeroUsize::new(3),
            max_connections_per_ip: NonZeroUsize::new(2),
            ..GuardLimits::default()
        }
    }

    #[test]
    fn per_address_and_total_limits() {
        let c = Connections::default();
        let l = limits();
        let now = Instant::now();
        let a1 = c.admit(&l, A, now).expect("a1");
        let a2 = c.admit(&l, A, now).expect("a2");
        assert_eq!(c.admit(&l, A, now).unwrap_err(), Refused::PerIp);
        let b1 = c.admit(&l, B, now).expect("b1");
        assert_eq!(c.admit(&l, B, now).unwrap_err(), Refused::Total);
        assert_eq!(c.open(), 3);
        drop(a1);
        let a3 = c.admit(&l, A, now).expect("a slot came back");
        drop((a2, a3, b1));
        assert_eq!(c.open(), 0);
        assert!(c.per_ip.lock().is_empty());
    }

    #[test]
    fn kept_counts_are_released_by_key() {
        let c = Connections::default();
        let l = limits();
        let now = Instant::now();
        let key = c.admit(&l, A, now).expect("a").keep();
        assert_eq!(c.open(), 1);
        c.release(key);
        assert_eq!(c.open(), 0);
        assert!(c.per_ip.lock().is_empty());
    }

    #[test]
    fn the_rate_per_address() {
        let c = Connections::default();
        let l = GuardLimits {
            connection_rate_per_ip: NonZeroU32::new(2),
            ..GuardLimits::default()
        };
        let now = Instant::now();
        let _a = c.admit(&l, A, now).expect("1");
        let _b = c.admit(&l, A, now).expect("2");
        assert_eq!(c.admit(&l, A, now).unwrap_err(), Refused::Rate);
        let _c = c.admit(&l, B, now).expect("another address");
        let _d = c
            .admit(&l, A, now + Duration::from_millis(600))
            .expect("refilled");
    }
}
