//! One run's result (one JSON line, optionally a Markdown row) and the
//! measurements behind it: own CPU time (getrusage), the broker's CPU time
//! and RSS from /proc, latency percentiles.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

/// The result of one scenario run. Fields that do not apply stay `None`
/// and are left out of the JSON.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub broker: String,
    pub transport: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    /// Messages delivered to subscribers (or connections made).
    pub msgs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
    pub secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connects_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_us_per_msg: Option<f64>,
    pub client_cpu_s: f64,
    /// Published × subscribers − delivered (messages), or failed connects.
    pub drops: u64,
    /// Messages per second asked of the publisher (latency runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_kb_per_conn: Option<f64>,
    /// Persistent sessions created (offline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u64>,
    /// The broker's RSS in KiB at the end of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_kb: Option<u64>,
    /// The broker's peak RSS in KiB since it started (VmHWM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_peak_kb: Option<u64>,
    /// Restart: seconds from process start to the broker's ready line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_s: Option<f64>,
    /// Restart: seconds from process start to CONNACK of a resumed session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connack_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_present: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.digits$}"))
}

impl Report {
    /// Fills the percentile fields from unsorted microsecond samples.
    pub fn set_percentiles(&mut self, samples: &mut [u64]) {
        samples.sort_unstable();
        self.p50_us = percentile(samples, 0.50);
        self.p99_us = percentile(samples, 0.99);
        self.p999_us = percentile(samples, 0.999);
    }

    pub const MARKDOWN_HEADER: &'static str = "| scenario | broker | transport | qos | msgs | msg/s | connects/s | broker µs/msg | client CPU s | drops | p50 µs | p99 µs | p99.9 µs | RSS KB/conn |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

    pub fn markdown_row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.broker,
            self.transport,
            self.qos.map_or_else(|| "–".to_string(), |q| q.to_string()),
            self.msgs,
            opt(self.msg_per_s, 0),
            opt(self.connects_per_s, 0),
            opt(self.broker_cpu_us_per_msg, 2),
            self.client_cpu_s,
            self.drops,
            opt(self.p50_us, 0),
            opt(self.p99_us, 0),
            opt(self.p999_us, 0),
            opt(self.rss_kb_per_conn, 2),
        )
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).map(|v| *v as f64)
}

/// This process's user + system CPU time.
pub fn own_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given,
    // which points to a properly sized and aligned local.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (utime + stime) of process `pid`, from /proc/<pid>/stat.
pub fn proc_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may contain spaces; fields are counted after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the fields start at 3 (state); utime is 14, stime is 15.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .context("short /proc stat")?
            .parse::<u64>()
            .context("bad /proc stat field")
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let total = field(14)? + field(15)?;
    Ok(Duration::from_micros(total * 1_000_000 / ticks))
}

/// Resident set size of process `pid` in KiB, from /proc/<pid>/status.
pub fn proc_rss_kb(pid: u32) -> Result<u64> {
    proc_status_kb(pid, "VmRSS:")
}

/// The peak resident set size of process `pid` in KiB (VmHWM).
pub fn proc_peak_rss_kb(pid: u32) -> Result<u64> {
    proc_status_kb(pid, "VmHWM:")
}

fn proc_status_kb(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .with_context(|| format!("no {key} in /proc status"))?
        .parse()
        .with_context(|| format!("bad {key}"))
}

/// CPU of this process and, if known, the broker, taken together.
#[derive(Clone, Copy, Debug)]
pub struct CpuMark {
    own: Duration,
    broker: Option<Duration>,
}

impl CpuMark {
    pub fn now(broker_pid: Option<u32>) -> CpuMark {
        CpuMark {
            own: own_cpu(),
            broker: broker_pid.and_then(|p| proc_cpu(p).ok()),
        }
    }

    /// Fills the CPU fields of `report` with the time spent since `self`;
    /// `units` is what the broker's CPU is divided by (messages, connects).
    pub fn finish(&self, broker_pid: Option<u32>, units: u64, report: &mut Report) {
        let end = CpuMark::now(broker_pid);
        report.client_cpu_s = end.own.saturating_sub(self.own).as_secs_f64();
        if let (Some(a), Some(b)) = (self.broker, end.broker) {
            let spent = b.saturating_sub(a);
            report.broker_cpu_s = Some(spent.as_secs_f64());
            if units > 0 {
                report.broker_cpu_us_per_msg = Some(spent.as_secs_f64() * 1e6 / units as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), Some(500.0));
        assert_eq!(percentile(&v, 0.99), Some(990.0));
        assert_eq!(percentile(&v, 0.999), Some(999.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.999), Some(7.0));
    }

    #[test]
    fn own_process_figures_are_readable() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(own_cpu() > Duration::ZERO);
        assert!(proc_cpu(pid).is_ok());
        assert!(proc_rss_kb(pid).unwrap_or(0) > 0);
    }

    #[test]
    fn markdown_row_has_one_cell_per_header_column() {
        let r = Report {
            scenario: "fanin".into(),
            qos: Some(1),
            msg_per_s: Some(1234.7),
            ..Report::default()
        };
        let cols = Report::MARKDOWN_HEADER
            .lines()
            .next()
            .map(|l| l.matches('|').count());
        assert_eq!(Some(r.markdown_row().matches('|').count()), cols);
        assert!(r.markdown_row().contains("| 1235 |"));
    }
}
