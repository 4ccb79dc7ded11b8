//! Failed-login throttling: temporary bans of a source address or a
//! username after too many failed logins (`auth.bans`).
//!
//! Each address and each username presented has a count of failed logins
//! (bad username or password only: a store outage or a busy broker is not
//! the client's failure) in a window that starts at its first failure. When
//! the count reaches the threshold within the window, the subject is banned
//! for `duration`: its logins are refused with CONNACK 0x8A / 0x05 before
//! any password is checked, so a brute force stops costing argon2 work. A
//! successful login clears its username's count, never its address's (one
//! valid account must not reset an attacker's address).
//!
//! IPv6 addresses are counted per /64: a single host usually holds a whole
//! /64, so per-address counting would be no limit at all. Both tables are
//! bounded; when full, entries whose window passed go first, then entries
//! that are not banned.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::BanConfig;

/// Subjects tracked per table.
const MAX_TRACKED: usize = 100_000;

/// What a ban is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BanKind {
    Ip,
    Username,
}

impl BanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BanKind::Ip => "ip",
            BanKind::Username => "username",
        }
    }

    pub fn parse(s: &str) -> Option<BanKind> {
        match s {
            "ip" => Some(BanKind::Ip),
            "username" | "user" => Some(BanKind::Username),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Tracker {
    failures: u32,
    window_start: Instant,
    banned_until: Option<Instant>,
}

impl Tracker {
    fn banned_at(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }

    fn live_at(&self, now: Instant, window: Duration) -> bool {
        self.banned_at(now) || now.duration_since(self.window_start) < window
    }
}

/// A ban that has just started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBan {
    pub kind: BanKind,
    pub subject: String,
    pub duration: Duration,
}

/// One active ban, as the admin API lists it.
#[derive(Clone, Debug, Serialize)]
pub struct BanInfo {
    pub kind: BanKind,
    pub subject: String,
    /// Seconds until the ban ends (rounded up).
    pub remaining_seconds: u64,
    /// Failed logins that led to it.
    pub failures: u32,
}

/// The key of an address: itself for IPv4 (and IPv4-mapped IPv6), its /64
/// for IPv6.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How an address key is written: `192.0.2.1`, `2001:db8::/64`.
pub fn ip_subject(key: IpAddr) -> String {
    match key {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// The address key an API path names (`192.0.2.1`, `2001:db8::/64` or any
/// address inside that /64).
pub fn parse_ip_subject(s: &str) -> Option<IpAddr> {
    let addr = s.strip_suffix("/64").unwrap_or(s);
    addr.parse::<IpAddr>().ok().map(ip_key)
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Bans {
    ips: Mutex<HashMap<IpAddr, Tracker>>,
    users: Mutex<HashMap<String, Tracker>>,
    /// Bans started, by kind (ip, username).
    started: [AtomicU64; 2],
}

fn slot(kind: BanKind) -> usize {
    match kind {
        BanKind::Ip => 0,
        BanKind::Username => 1,
    }
}

/// Count one failure of `key`; true when it starts a ban.
fn record<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, Tracker>,
    key: K,
    threshold: u32,
    cfg: &BanConfig,
    now: Instant,
) -> bool {
    if table.len() >= MAX_TRACKED && !table.contains_key(&key) {
        table.retain(|_, t| t.live_at(now, cfg.window));
        if table.len() >= MAX_TRACKED {
            table.retain(|_, t| t.banned_at(now));
        }
    }
    let t = table.entry(key).or_insert(Tracker {
        failures: 0,
        window_start: now,
        banned_until: None,
    });
    if t.banned_at(now) {
        // Refused before its password was checked: not counted again.
        return false;
    }
    if now.duration_since(t.window_start) >= cfg.window {
        t.failures = 0;
        t.window_start = now;
    }
    t.failures += 1;
    if t.failures >= threshold {
        t.banned_until = Some(now + cfg.duration);
        return true;
    }
    false
}

impl Bans {
    /// Whether a login from `ip` as `username` is banned now, and by what.
    pub fn banned(&self, ip: IpAddr, username: Option<&str>, now: Instant) -> Option<BanKind> {
        if self
            .ips
            .lock()
            .get(&ip_key(ip))
            .is_some_and(|t| t.banned_at(now))
        {
            return Some(BanKind::Ip);
        }
        let user = username?;
        self.users
            .lock()
            .get(user)
            .is_some_and(|t| t.banned_at(now))
            .then_some(BanKind::Username)
    }

    /// A login from `ip` as `username` failed with bad credentials: count
    /// it, and return the bans it started.
    pub fn failed(
        &self,
        cfg: &BanConfig,
        ip: IpAddr,
        username: Option<&str>,
        now: Instant,
    ) -> Vec<NewBan> {
        let mut started = Vec::new();
        if let Some(threshold) = cfg.failures_per_ip {
            let key = ip_key(ip);
            if record(&mut self.ips.lock(), key, threshold.get(), cfg, now) {
                started.push(NewBan {
                    kind: BanKind::Ip,
                    subject: ip_subject(key),
                    duration: cfg.duration,
                });
            }
        }
        if let (Some(threshold), Some(user)) = (cfg.failures_per_user, username) {
            let banned = record(
                &mut self.users.lock(),
                user.to_owned(),
                threshold.get(),
                cfg,
                now,
            );
            if banned {
                started.push(NewBan {
                    kind: BanKind::Username,
                    subject: user.to_owned(),
                    duration: cfg.duration,
                });
            }
        }
        for ban in &started {
            self.started[slot(ban.kind)].fetch_add(1, Ordering::Relaxed);
        }
        started
    }

    /// A login as `username` succeeded: its failures are forgiven.
    pub fn succeeded(&self, username: &str) {
        let mut users = self.users.lock();
        if users
            .get(username)
            .is_some_and(|t| t.banned_until.is_none())
        {
            users.remove(username);
        }
    }

    /// Every active ban, addresses first, each kind sorted by subject.
    pub fn list(&self, now: Instant) -> Vec<BanInfo> {
        let info = |kind, subject, t: &Tracker| {
            let left = t.banned_until.map_or(Duration::ZERO, |u| u - now);
            BanInfo {
                kind,
                subject,
                remaining_seconds: left.as_secs() + u64::from(left.subsec_nanos() > 0),
                failures: t.failures,
            }
        };
        let mut out: Vec<BanInfo> = self
            .ips
            .lock()
            .iter()
            .filter(|(_, t)| t.banned_at(now))
            .map(|(k, t)| info(BanKind::Ip, ip_subject(*k), t))
            .collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        let mut users: Vec<BanInfo> = self
            .users
            .lock()
            .iter()
            .filter(|(_, t)| t.banned_at(now))
            .map(|(k, t)| info(BanKind::Username, k.clone(), t))
            .collect();
        users.sort_by(|a, b| a.subject.cmp(&b.subject));
        out.extend(users);
        out
    }

    /// Active bans by kind: (ip, username).
    pub fn active(&self, now: Instant) -> (usize, usize) {
        let count = |n: usize, t: &Tracker| n + usize::from(t.banned_at(now));
        (
            self.ips.lock().values().fold(0, count),
            self.users.lock().values().fold(0, count),
        )
    }

    /// Bans started since the start, by kind.
    pub fn started(&self, kind: BanKind) -> u64 {
        self.started[slot(kind)].load(Ordering::Relaxed)
    }

    /// Lift a ban (and forget its failures); false if there was none.
    pub fn lift(&self, kind: BanKind, subject: &str, now: Instant) -> bool {
        match kind {
            BanKind::Ip => {
                let Some(key) = parse_ip_subject(subject) else {
                    return false;
                };
                let mut ips = self.ips.lock();
                let was = ips.get(&key).is_some_and(|t| t.banned_at(now));
                ips.remove(&key);
                was
            }
            BanKind::Username => {
                let mut users = self.users.lock();
                let was = users.get(subject).is_some_and(|t| t.banned_at(now));
                users.remove(subject);
                was
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn cfg(ip: u32, user: u32) -> BanConfig {
        BanConfig {
            failures_per_ip: NonZeroU32::new(ip),
            failures_per_user: NonZeroU32::new(user),
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_username_is_banned_at_the_threshold_and_released_after_the_duration() {
        let bans = Bans::default();
        let c = cfg(0, 3);
        let t0 = Instant::now();
        assert!(bans.failed(&c, A, Some("eve"), t0).is_empty());
        assert!(bans.failed(&c, B, Some("eve"), t0).is_empty());
        assert_eq!(bans.banned(A, Some("eve"), t0), None);
        let started = bans.failed(&c, A, Some("eve"), t0);
        assert_eq!(
            started,
            vec![NewBan {
                kind: BanKind::Username,
                subject: "eve".into(),
                duration: c.duration,
            }]
        );
        // From any address, and only that user.
        assert_eq!(bans.banned(B, Some("eve"), t0), Some(BanKind::Username));
        assert_eq!(bans.banned(B, Some("bob"), t0), None);
        assert_eq!(bans.active(t0), (0, 1));
        assert_eq!(bans.started(BanKind::Username), 1);
        let later = t0 + c.duration;
        assert_eq!(bans.banned(A, Some("eve"), later), None);
        assert_eq!(bans.active(later), (0, 0));
    }

    #[test]
    fn an_address_is_banned_for_every_username() {
        let bans = Bans::default();
        let c = cfg(2, 0);
        let t0 = Instant::now();
        bans.failed(&c, A, Some("u1"), t0);
        let started = bans.failed(&c, A, Some("u2"), t0);
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].subject, "192.0.2.1");
        assert_eq!(bans.banned(A, Some("anyone"), t0), Some(BanKind::Ip));
        assert_eq!(bans.banned(A, None, t0), Some(BanKind::Ip));
        assert_eq!(bans.banned(B, Some("anyone"), t0), None);
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let bans = Bans::default();
        let c = cfg(0, 2);
        let t0 = Instant::now();
        bans.failed(&c, A, Some("eve"), t0);
        assert!(bans.failed(&c, A, Some("eve"), t0 + c.window).is_empty());
        assert_eq!(bans.failed(&c, A, Some("eve"), t0 + c.window).len(), 1);
    }

    #[test]
    fn success_forgives_the_username_not_the_address() {
        let bans = Bans::default();
        let c = cfg(2, 2);
        let t0 = Instant::now();
        bans.failed(&c, A, Some("eve"), t0);
        bans.succeeded("eve");
        let started = bans.failed(&c, A, Some("eve"), t0);
        assert_eq!(started.len(), 1, "{started:?}");
        assert_eq!(started[0].kind, BanKind::Ip);
    }

    #[test]
    fn bans_are_listed_and_lifted() {
        let bans = Bans::default();
        let c = cfg(1, 1);
        let t0 = Instant::now();
        bans.failed(&c, A, Some("eve"), t0);
        let list = bans.list(t0);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].kind, BanKind::Ip);
        assert_eq!(list[0].remaining_seconds, 300);
        assert_eq!(list[1].subject, "eve");
        assert!(bans.lift(BanKind::Username, "eve", t0));
        assert!(!bans.lift(BanKind::Username, "eve", t0));
        assert!(bans.lift(BanKind::Ip, "192.0.2.1", t0));
        assert_eq!(bans.banned(A, Some("eve"), t0), None);
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_eq!(ip_subject(ip_key(a)), "2001:db8:1:2::/64");
        assert_eq!(parse_ip_subject("2001:db8:1:2::/64"), Some(ip_key(a)));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ip_key(mapped), A);
        let bans = Bans::default();
        let c = cfg(2, 0);
        let t0 = Instant::now();
        bans.failed(&c, a, None, t0);
        assert_eq!(bans.failed(&c, b, None, t0).len(), 1);
    }

    #[test]
    fn the_tables_stay_bounded() {
        let bans = Bans::default();
        let c = cfg(3, 0);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            bans.failed(&c, ip, None, t0);
        }
        assert!(bans.ips.lock().len() <= MAX_TRACKED);
    }
}
