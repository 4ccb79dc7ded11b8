//! The audit log: one JSON object per line, to a file and/or stdout, for
//! what an operator must be able to reconstruct later: failed logins, every
//! deny (who, client id, peer, action, topic, the deciding rule), policy
//! changes picked up from the store, revocations and kicks, bans, and
//! optionally a sample of allows.
//!
//! Lines are rate limited (a token bucket of `audit.rate` lines per second)
//! so a deny storm cannot fill the disk; what was suppressed is counted and
//! written as one `suppressed` line when lines flow again or at the next
//! tick. The file is rotated at `audit.max_size` (`file` → `file.1` …) and
//! reopened on SIGHUP, for an external logrotate. No password or token is
//! ever a field of any event: the events below are the whole vocabulary.
//!
//! The last denies are also kept in memory (bounded) for the admin API and
//! the status page, whatever the rate limit did to the log.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use crate::auth::extension::{Event as SinkEvent, EventSink};
use crate::config::AuditConfig;

/// How many recent denies the API can show.
pub const RECENT_DENIES: usize = 200;

/// One deny, as the audit log and the admin API show it.
#[derive(Clone, Debug, Serialize)]
pub struct DenyRecord {
    /// Unix milliseconds.
    pub ts: u64,
    pub username: Option<String>,
    pub client_id: String,
    pub peer: Option<String>,
    pub action: &'static str,
    pub topic: String,
    /// The rule that decided; None when no rule matched (deny by default)
    /// or the broker itself refused (`$SYS/`).
    pub rule: Option<u64>,
    pub reason: String,
}

/// A line of the audit log.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event<'a> {
    Deny(&'a DenyRecord),
    Allow {
        username: Option<&'a str>,
        client_id: &'a str,
        action: &'static str,
        topic: &'a str,
        rule: Option<u64>,
    },
    AuthFailure {
        peer: String,
        client_id: &'a str,
        username: Option<&'a str>,
        reason: &'a str,
    },
    PolicyChange {
        version: u64,
        sessions: usize,
    },
    AdminChange {
        id: u64,
        at_ms: i64,
        user: &'a str,
        host: &'a str,
        what: &'a str,
    },
    Revocation {
        client_id: &'a str,
        username: Option<&'a str>,
    },
    Kick {
        client_id: &'a str,
        username: Option<&'a str>,
        by: &'a str,
    },
    Ban {
        subject: &'a str,
        kind: &'a str,
        seconds: u64,
        reason: &'a str,
    },
    Suppressed {
        count: u64,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    ts: u64,
    #[serde(flatten)]
    event: Event<'a>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The open file and its size, for rotation.
struct FileSink {
    path: PathBuf,
    file: File,
    size: u64,
}

impl FileSink {
    fn open(path: &Path) -> io::Result<FileSink> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(FileSink {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    /// `file.{keep-1}` → `file.{keep}` … `file` → `file.1`, then a new `file`.
    fn rotate(&mut self, keep: u32) -> io::Result<()> {
        let name = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for i in (1..keep).rev() {
                let from = name(i);
                if from.exists() {
                    std::fs::rename(&from, name(i + 1))?;
                }
            }
            std::fs::rename(&self.path, name(1))?;
        }
        *self = FileSink::open(&self.path)?;
        Ok(())
    }
}

/// Where lines go and how fast.
struct Sink {
    config: AuditConfig,
    file: Option<FileSink>,
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
}

impl Sink {
    fn take_token(&mut self) -> bool {
        let rate = f64::from(self.config.rate);
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn write_line(&mut self, line: &[u8]) {
        if self.config.stdout {
            let mut out = io::stdout().lock();
            let _ = out.write_all(line);
            let _ = out.flush();
        }
        let max = self.config.max_size;
        let keep = self.config.keep;
        if let Some(f) = &mut self.file {
            if f.size > 0 && f.size + line.len() as u64 > max {
                if let Err(err) = f.rotate(keep) {
                    tracing::warn!(path = %f.path.display(), error = %err, "audit log rotation failed");
                }
            }
            match f.file.write_all(line) {
                Ok(()) => f.size += line.len() as u64,
                Err(err) => {
                    tracing::warn!(path = %f.path.display(), error = %err, "audit log write failed")
                }
            }
        }
    }

    fn emit(&mut self, event: Event<'_>) {
        if self.file.is_none() && !self.config.stdout {
            return;
        }
        if !self.take_token() {
            self.suppressed += 1;
            return;
        }
        self.flush_suppressed_inner();
        self.write_event(event);
    }

    fn write_event(&mut self, event: Event<'_>) {
        let line = Line {
            ts: now_ms(),
            event,
        };
        if let Ok(mut text) = serde_json::to_vec(&line) {
            text.push(b'\n');
            self.write_line(&text);
        }
    }

    fn flush_suppressed_inner(&mut self) {
        if self.suppressed > 0 {
            let count = std::mem::take(&mut self.suppressed);
            // Not rate limited itself: it is at most one line per tick.
            self.write_event(Event::Suppressed { count });
        }
    }
}

/// The broker's audit log; cheap to call when it is off.
pub struct Audit {
    sink: Mutex<Sink>,
    /// One allow in this many is logged; 0: none.
    allow_sample: AtomicU32,
    allow_seen: AtomicU64,
    recent: Mutex<VecDeque<DenyRecord>>,
    /// Lines suppressed by the rate limit, in all (for metrics).
    suppressed_total: AtomicU64,
    /// Event sinks (the extension API) handed every event recorded here,
    /// and connects and disconnects: the webhook. Not rate limited: a
    /// sink bounds itself.
    sinks: arc_swap::ArcSwap<Vec<Arc<dyn EventSink>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").finish_non_exhaustive()
    }
}

impl Default for Audit {
    fn default() -> Self {
        Audit::new(AuditConfig::default())
    }
}

impl Audit {
    /// An audit log with `config`, its file not yet opened ([`Audit::open`]).
    pub fn new(config: AuditConfig) -> Audit {
        let rate = f64::from(config.rate);
        Audit {
            allow_sample: AtomicU32::new(config.allow_sample),
            allow_seen: AtomicU64::new(0),
            sink: Mutex::new(Sink {
                config,
                file: None,
                tokens: rate,
                refilled: Instant::now(),
                suppressed: 0,
            }),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_DENIES)),
            suppressed_total: AtomicU64::new(0),
            sinks: arc_swap::ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Hand every event from now on to `sink` as well.
    pub fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks.rcu(|old| {
            let mut next = (**old).clone();
            next.push(Arc::clone(&sink));
            next
        });
    }

    /// To the sinks, if any (one atomic load when there are none).
    fn forward(&self, event: &SinkEvent<'_>) {
        let sinks = self.sinks.load();
        for sink in sinks.iter() {
            sink.event(event);
        }
    }

    /// A client logged in (for the sinks only: the process log has it).
    pub fn connected(&self, event: &SinkEvent<'_>) {
        self.forward(event);
    }

    /// A connection ended (for the sinks only).
    pub fn disconnected(&self, client_id: &str, username: Option<&str>, reason: &str) {
        self.forward(&SinkEvent::Disconnected {
            client_id,
            username,
            reason,
        });
    }

    /// Apply `config` and (re)open its file: at start and on SIGHUP.
    pub fn open(&self, config: &AuditConfig) -> io::Result<()> {
        let file = match &config.file {
            Some(path) => Some(FileSink::open(path)?),
            None => None,
        };
        let mut sink = self.sink.lock();
        sink.config = config.clone();
        sink.file = file;
        self.allow_sample
            .store(config.allow_sample, Ordering::Relaxed);
        Ok(())
    }

    fn emit(&self, event: Event<'_>) {
        let mut sink = self.sink.lock();
        let before = sink.suppressed;
        sink.emit(event);
        if sink.suppressed > before {
            self.suppressed_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Write the count of suppressed lines now, if any (called every tick).
    pub fn flush_suppressed(&self) {
        let mut sink = self.sink.lock();
        if sink.suppressed > 0 && sink.take_token() {
            sink.flush_suppressed_inner();
        }
    }

    /// Lines the rate limit has suppressed since start.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total.load(Ordering::Relaxed)
    }

    /// A decision point denied something.
    pub fn deny(&self, record: DenyRecord) {
        self.emit(Event::Deny(&record));
        self.forward(&SinkEvent::Denied(&record));
        let mut recent = self.recent.lock();
        if recent.len() == RECENT_DENIES {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// The last `limit` denies, newest first.
    pub fn recent_denies(&self, limit: usize) -> Vec<DenyRecord> {
        self.recent
            .lock()
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Whether allows are sampled at all: one relaxed load, so the allow
    /// path pays nothing more when sampling is off.
    #[inline]
    pub fn samples_allows(&self) -> bool {
        self.allow_sample.load(Ordering::Relaxed) != 0
    }

    /// An allow; logged once in `allow_sample`.
    pub fn allow(
        &self,
        username: Option<&str>,
        client_id: &str,
        action: &'static str,
        topic: &str,
        rule: Option<u64>,
    ) {
        let every = u64::from(self.allow_sample.load(Ordering::Relaxed));
        if every == 0
            || !self
                .allow_seen
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every)
        {
            return;
        }
        self.emit(Event::Allow {
            username,
            client_id,
            action,
            topic,
            rule,
        });
    }

    /// A login failed authentication. `reason` is a fixed word, never
    /// anything the client sent as a secret.
    pub fn auth_failure(
        &self,
        peer: SocketAddr,
        client_id: &str,
        username: Option<&str>,
        reason: &str,
    ) {
        self.emit(Event::AuthFailure {
            peer: peer.to_string(),
            client_id,
            username,
            reason,
        });
        self.forward(&SinkEvent::LoginRefused {
            peer,
            client_id,
            username,
            reason,
        });
    }

    /// A new policy version from the store was applied to the sessions.
    pub fn policy_change(&self, version: u64, sessions: usize) {
        self.emit(Event::PolicyChange { version, sessions });
        self.forward(&SinkEvent::PolicyChanged { version, sessions });
    }

    /// An admin change the CLI recorded in the store, as the broker picked it up.
    pub fn admin_change(&self, change: &warden_auth::AdminChange) {
        self.emit(Event::AdminChange {
            id: change.id,
            at_ms: change.at_ms,
            user: &change.user,
            host: &change.host,
            what: &change.what,
        });
        self.forward(&SinkEvent::AdminChange(change));
    }

    /// A session's user was removed or disabled: it was ended or kicked.
    pub fn revocation(&self, client_id: &str, username: Option<&str>) {
        self.emit(Event::Revocation {
            client_id,
            username,
        });
        self.forward(&SinkEvent::Revoked {
            client_id,
            username,
        });
    }

    /// An operator disconnected a client (`by` says through what).
    pub fn kick(&self, client_id: &str, username: Option<&str>, by: &str) {
        self.emit(Event::Kick {
            client_id,
            username,
            by,
        });
        self.forward(&SinkEvent::Kicked {
            client_id,
            username,
            by,
        });
    }

    /// A temporary ban: `kind` is what `subject` is ("ip", "username"),
    /// `reason` a fixed word (e.g. "failed_logins").
    pub fn ban(&self, kind: &str, subject: &str, duration: Duration, reason: &str) {
        self.emit(Event::Ban {
            subject,
            kind,
            seconds: duration.as_secs(),
            reason,
        });
        self.forward(&SinkEvent::Banned {
            kind,
            subject,
            seconds: duration.as_secs(),
            reason,
        });
    }
}

/// Unix milliseconds now, for records made outside this module.
pub fn timestamp_ms() -> u64 {
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, rate: u32, max_size: u64) -> AuditConfig {
        AuditConfig {
            file: Some(dir.join("audit.log")),
            stdout: false,
            rate,
            max_size,
            keep: 2,
            allow_sample: 0,
        }
    }

    fn deny(i: usize) -> DenyRecord {
        DenyRecord {
            ts: 0,
            username: Some("u".into()),
            client_id: format!("c{i}"),
            peer: None,
            action: "publish",
            topic: "t".into(),
            rule: Some(3),
            reason: "no_matching_allow".into(),
        }
    }

    #[test]
    fn a_storm_is_cut_to_the_rate_and_the_rest_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 10, 1 << 20);
        let audit = Audit::new(cfg.clone());
        audit.open(&cfg).unwrap();
        for i in 0..1000 {
            audit.deny(deny(i));
        }
        std::thread::sleep(Duration::from_millis(250));
        audit.flush_suppressed();
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let denies = lines.iter().filter(|l| l["event"] == "deny").count();
        assert!((10..=12).contains(&denies), "{denies} deny lines");
        let suppressed: u64 = lines
            .iter()
            .filter(|l| l["event"] == "suppressed")
            .map(|l| l["count"].as_u64().unwrap())
            .sum();
        assert_eq!(denies as u64 + suppressed, 1000);
        assert_eq!(audit.suppressed_total(), suppressed);
        assert_eq!(audit.recent_denies(5).len(), 5);
        assert_eq!(audit.recent_denies(5)[0].client_id, "c999");
    }

    #[test]
    fn every_event_is_one_json_line_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 100, 1 << 20);
        let audit = Audit::new(cfg.clone());
        audit.open(&cfg).unwrap();
        let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        audit.auth_failure(peer, "c1", Some("u"), "bad_credentials");
        audit.policy_change(7, 3);
        audit.revocation("c1", Some("u"));
        audit.kick("c1", Some("u"), "admin api");
        audit.ban("ip", "192.0.2.1", Duration::from_secs(60), "failed_logins");
        audit.allow(Some("u"), "c1", "publish", "t", Some(1));
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        let events: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(v["ts"].as_u64().unwrap() > 0);
                v["event"].as_str().unwrap().to_owned()
            })
            .collect();
        // No allow: sampling is off in this config.
        assert_eq!(
            events,
            ["auth_failure", "policy_change", "revocation", "kick", "ban"]
        );
        assert!(text.contains(r#""seconds":60"#), "{text}");
    }

    #[test]
    fn allows_are_sampled() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1000, 1 << 20);
        cfg.allow_sample = 10;
        let audit = Audit::new(cfg.clone());
        audit.open(&cfg).unwrap();
        assert!(audit.samples_allows());
        for _ in 0..100 {
            audit.allow(None, "c", "publish", "t", None);
        }
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert_eq!(text.lines().count(), 10);
    }

    #[test]
    fn the_file_rotates_at_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 10_000, 1000);
        let audit = Audit::new(cfg.clone());
        audit.open(&cfg).unwrap();
        for i in 0..100 {
            audit.deny(deny(i));
        }
        let size = |n: &str| std::fs::metadata(dir.path().join(n)).map(|m| m.len());
        assert!(size("audit.log").unwrap() <= 1000);
        assert!(size("audit.log.1").unwrap() <= 1000);
        assert!(size("audit.log.2").is_ok());
        assert!(size("audit.log.3").is_err(), "keeps two");
    }
}
