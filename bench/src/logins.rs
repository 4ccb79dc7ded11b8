//! `logins`: a login storm. `--conns` clients start at the same moment,
//! each opening its connection (TCP, TLS) and logging in; reported are the
//! seconds until the last CONNACK, the CONNACK latency percentiles, the
//! failures, and the broker's peak RSS (VmHWM) and CPU.
//!
//! Credentials are user `PREFIX0` … cycling over `--users` with
//! `--password` (one user: the fleet of one account after a restart), or
//! one `username secret` pair per line of `--credentials` (distinct device
//! secrets), connection i taking line i.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::sync::Barrier;

use crate::net::{self, Login, Target};
use crate::report::{proc_peak_rss_kb, CpuMark, Report};

/// Reads `username secret` lines.
pub fn read_credentials(path: &str) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(u), Some(p)) => Ok((u.to_owned(), p.to_owned())),
                _ => anyhow::bail!("{path}: expected `username secret`: {l}"),
            }
        })
        .collect()
}

pub async fn logins_scenario(
    target: &Target,
    total: usize,
    login: crate::conns::LoginFn,
    broker_pid: Option<u32>,
) -> Result<Report> {
    let cpu = CpuMark::now(broker_pid);
    // Every client waits here, so that all of them start together.
    let start = Arc::new(Barrier::new(total + 1));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let (target, start, login) = (target.clone(), Arc::clone(&start), login(i));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let t0 = Instant::now();
            let res = net::connect(&target, i, &login).await;
            (t0.elapsed().as_micros() as u64, res)
        }));
    }
    start.wait().await;
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(total);
    let mut held = Vec::with_capacity(total);
    let (mut failed, mut first_err) = (0usize, None);
    for t in tasks {
        match t.await {
            Ok((us, Ok((stream, _)))) => {
                lat.push(us);
                held.push(stream);
            }
            Ok((_, Err(e))) => {
                failed += 1;
                first_err.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                failed += 1;
                first_err.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut report = Report {
        scenario: "logins".into(),
        msgs: lat.len() as u64,
        secs,
        connects_per_s: Some(lat.len() as f64 / secs),
        drops: failed as u64,
        note: first_err,
        rss_peak_kb: broker_pid.and_then(|pid| proc_peak_rss_kb(pid).ok()),
        ..Report::default()
    };
    cpu.finish(broker_pid, lat.len() as u64, &mut report);
    report.set_percentiles(&mut lat);
    for mut stream in held {
        crate::conns::disconnect(&mut stream).await;
    }
    Ok(report)
}

/// The login of connection `i` from `--credentials` lines.
pub fn from_credentials(
    creds: Arc<Vec<(String, String)>>,
    prefix: String,
    keep_alive: u16,
) -> crate::conns::LoginFn {
    Arc::new(move |i: usize| {
        let (user, secret) = &creds[i % creds.len()];
        Login {
            client_id: format!("{prefix}-l-{i}"),
            username: Some(user.clone()),
            password: Some(secret.clone()),
            keep_alive,
            clean: true,
        }
    })
}
