//! Connection scenarios: `connect` (full handshakes up to CONNACK with a
//! bounded number in flight; rate and CONNACK latency) and `idle` (hold
//! many connections open; the broker's RSS growth per connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use warden_codec::{Disconnect, Packet, Properties};

use crate::net::{self, BoxStream, Login, Target};
use crate::report::{proc_rss_kb, CpuMark, Report};

/// Makes the login of connection `i`.
pub type LoginFn = Arc<dyn Fn(usize) -> Login + Send + Sync>;

/// Runs `total` connects with `concurrency` workers, starting none after
/// `until`; `keep` holds the streams open instead of disconnecting. Returns
/// CONNACK latencies (µs), failures (with the first error) and the kept
/// streams.
async fn connect_many(
    target: &Target,
    range: std::ops::Range<usize>,
    concurrency: usize,
    login: LoginFn,
    keep: bool,
    until: Option<Instant>,
) -> (Vec<u64>, usize, Option<String>, Vec<BoxStream>) {
    let (first, total) = (range.start, range.end);
    let next = Arc::new(AtomicUsize::new(first));
    let kept = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, kept, login, target) =
            (next.clone(), kept.clone(), login.clone(), target.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0usize;
            let mut first_err = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || until.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let t0 = Instant::now();
                match net::connect(&target, i, &login(i)).await {
                    Ok((mut stream, _)) => {
                        lat.push(t0.elapsed().as_micros() as u64);
                        if keep {
                            kept.lock().await.push(stream);
                        } else {
                            disconnect(&mut stream).await;
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        first_err.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (lat, failed, first_err)
        }));
    }
    let (mut lat, mut failed, mut first_err) = (Vec::new(), 0, None);
    for w in workers {
        if let Ok((l, f, e)) = w.await {
            lat.extend(l);
            failed += f;
            first_err = first_err.or(e);
        }
    }
    let kept = std::mem::take(&mut *kept.lock().await);
    (lat, failed, first_err, kept)
}

pub async fn disconnect(stream: &mut BoxStream) {
    let bye = Packet::Disconnect(Disconnect {
        reason: 0,
        properties: Properties::default(),
    });
    if net::send(stream, &bye).await.is_ok() {
        stream.shutdown().await.ok();
    }
}

/// `connect`: `total` full handshakes, `concurrency` in flight; with
/// `secs`, none started after that long (a run of a fixed length).
pub async fn connect_scenario(
    target: &Target,
    total: usize,
    concurrency: usize,
    login: LoginFn,
    broker_pid: Option<u32>,
    secs: Option<f64>,
) -> Result<Report> {
    let cpu = CpuMark::now(broker_pid);
    let t0 = Instant::now();
    let until = secs.map(|s| t0 + Duration::from_secs_f64(s));
    let (mut lat, failed, err, _) =
        connect_many(target, 0..total, concurrency, login, false, until).await;
    let secs = t0.elapsed().as_secs_f64();
    let mut report = Report {
        scenario: "connect".into(),
        msgs: lat.len() as u64,
        secs,
        connects_per_s: Some(lat.len() as f64 / secs),
        drops: failed as u64,
        note: err,
        ..Report::default()
    };
    cpu.finish(broker_pid, lat.len() as u64, &mut report);
    report.set_percentiles(&mut lat);
    Ok(report)
}

/// `idle`: opens `total` connections, holds them, and reports the broker's
/// RSS growth per connection opened after the warm-up wave.
pub async fn idle_scenario(
    target: &Target,
    total: usize,
    concurrency: usize,
    login: LoginFn,
    broker_pid: Option<u32>,
    hold: Duration,
) -> Result<Report> {
    let Some(pid) = broker_pid else {
        bail!("idle needs --broker-pid to read the broker's RSS");
    };
    // A first wave of `concurrency` connections warms the broker's
    // allocator (per-thread arenas, handshake buffers) before the baseline.
    let warm = concurrency.min(total / 10);
    let (_, _, _, warm_kept) =
        connect_many(target, 0..warm, concurrency, login.clone(), true, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proc_rss_kb(pid)?;
    let cpu = CpuMark::now(broker_pid);
    let t0 = Instant::now();
    let (mut lat, failed, err, kept) =
        connect_many(target, warm..total, concurrency, login, true, None).await;
    let secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let after = proc_rss_kb(pid)?;
    // Count only connections the broker still holds open after the pause.
    let open = kept.len();
    let mut report = Report {
        scenario: "idle".into(),
        msgs: open as u64,
        secs,
        connects_per_s: Some(lat.len() as f64 / secs),
        drops: failed as u64,
        note: err,
        // Signed: memory freed by earlier runs and reused shows as a negative delta.
        rss_kb_per_conn: (open > 0).then(|| (after as f64 - before as f64) / open as f64),
        ..Report::default()
    };
    cpu.finish(broker_pid, lat.len() as u64, &mut report);
    report.set_percentiles(&mut lat);
    drop((kept, warm_kept));
    Ok(report)
}
