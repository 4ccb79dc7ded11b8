//! Durability scenarios: `offline` fills persistent sessions while they are
//! offline (sessions created in waves, then QoS 1 messages queued to them),
//! and `resume` times a broker's restart from the outside: from process
//! start to its "ready" log line, to CONNACK, to the first queued message.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use warden_codec::{encode, Packet, Properties, PubResp, Publish};

use crate::conns::{self, LoginFn};
use crate::net::{self, BoxStream, Login, Target, VERSION};
use crate::report::{proc_rss_kb, CpuMark, Report};

/// PUBLISHes per write of the queueing publisher.
const BATCH: usize = 64;

/// What `offline` builds: `sessions` persistent sessions, each subscribed
/// (QoS 1) to `{topic}/{i}`, then `per_session` messages queued to each.
pub struct OfflinePlan {
    pub sessions: usize,
    pub per_session: usize,
    pub topic: String,
    pub payload: usize,
    pub window: usize,
    pub concurrency: usize,
    /// Login of session `i` (clean session 0).
    pub session_login: LoginFn,
    /// Login of the (clean) publisher.
    pub publisher: Login,
}

/// Creates the sessions with `concurrency` connections at a time (connect,
/// subscribe, disconnect), so that they never need to be open at once.
/// Returns (created, first error).
async fn create_sessions(target: &Target, plan: &OfflinePlan) -> (usize, Option<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..plan.concurrency.max(1) {
        let (next, target, login) = (next.clone(), target.clone(), plan.session_login.clone());
        let (total, topic) = (plan.sessions, plan.topic.clone());
        workers.push(tokio::spawn(async move {
            let (mut made, mut first_err) = (0usize, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                match one_session(&target, i, &login(i), &format!("{topic}/{i}")).await {
                    Ok(()) => made += 1,
                    Err(e) => {
                        first_err.get_or_insert_with(|| format!("session {i}: {e:#}"));
                    }
                }
            }
            (made, first_err)
        }));
    }
    let (mut made, mut first_err) = (0, None);
    for w in workers {
        if let Ok((m, e)) = w.await {
            made += m;
            first_err = first_err.or(e);
        }
    }
    (made, first_err)
}

async fn one_session(target: &Target, n: usize, login: &Login, filter: &str) -> Result<()> {
    let (mut stream, mut buf) = net::connect(target, n, login).await?;
    net::subscribe(&mut stream, &mut buf, filter, 1).await?;
    conns::disconnect(&mut stream).await;
    Ok(())
}

/// Publishes `per_session` QoS 1 messages to every session's topic (round
/// robin over the topics), `window` unacknowledged at most, and waits up to
/// 30 s for the last PUBACK. Returns (sent, acked).
async fn queue_messages(target: &Target, plan: &OfflinePlan) -> Result<(u64, u64)> {
    let (stream, _) = net::connect(target, plan.sessions, &plan.publisher).await?;
    let (rd, mut wr) = tokio::io::split(stream);
    let window = plan.window.clamp(1, 60_000);
    let credit = Arc::new(Semaphore::new(window));
    let counters = Arc::new(crate::pubsub::PubCounters::default());
    let reader = tokio::spawn(crate::pubsub::ack_reader(
        rd,
        credit.clone(),
        counters.clone(),
    ));
    let acked = &counters.acked;
    let payload = Bytes::from(vec![0x5a; plan.payload]);
    let total = plan.sessions.max(1) * plan.per_session;
    let mut out = BytesMut::with_capacity(BATCH * (plan.payload + 64));
    let (mut in_batch, mut pid) = (0usize, 0u16);
    for k in 0..total {
        if credit.available_permits() == 0 && !out.is_empty() {
            wr.write_all(&out).await?;
            out.clear();
            in_batch = 0;
        }
        credit.acquire().await?.forget();
        pid = pid.checked_add(1).unwrap_or(1);
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: 1,
            retain: false,
            topic: format!("{}/{}", plan.topic, k % plan.sessions.max(1)),
            packet_id: Some(pid),
            properties: Properties::default(),
            payload: payload.clone(),
        });
        encode(&publish, VERSION, &mut out)?;
        in_batch += 1;
        if in_batch >= BATCH {
            wr.write_all(&out).await?;
            out.clear();
            in_batch = 0;
        }
    }
    wr.write_all(&out).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::Relaxed) < total as u64 && Instant::now() < deadline {
        if reader.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reader.abort();
    let mut stream = wr;
    let bye = net::encode_disconnect()?;
    stream.write_all(&bye).await.ok();
    stream.shutdown().await.ok();
    Ok((total as u64, acked.load(Ordering::Relaxed)))
}

/// `offline`: creates the sessions, queues the messages, and reports the
/// queueing rate (msg/s of PUBACKed messages), the session creation rate
/// (connects/s) and the broker's RSS afterwards.
pub async fn offline_scenario(
    target: &Target,
    plan: OfflinePlan,
    broker_pid: Option<u32>,
) -> Result<Report> {
    let t0 = Instant::now();
    let (made, err) = create_sessions(target, &plan).await;
    let create_secs = t0.elapsed().as_secs_f64().max(1e-3);
    let cpu = CpuMark::now(broker_pid);
    let t1 = Instant::now();
    let (sent, acked) = queue_messages(target, &plan).await?;
    let secs = t1.elapsed().as_secs_f64().max(1e-3);
    let mut report = Report {
        scenario: "offline".into(),
        qos: Some(1),
        msgs: acked,
        published: Some(sent),
        secs,
        msg_per_s: Some(acked as f64 / secs),
        connects_per_s: Some(made as f64 / create_secs),
        sessions: Some(made as u64),
        drops: (plan.sessions - made) as u64 + sent.saturating_sub(acked),
        note: err,
        ..Report::default()
    };
    cpu.finish(broker_pid, acked, &mut report);
    // Let the broker finish what it does after the last PUBACK.
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.rss_kb = broker_pid.and_then(|p| proc_rss_kb(p).ok());
    Ok(report)
}

/// How `resume` times a restart.
pub struct ResumePlan {
    pub login: Login,
    /// When the broker process was started (ns since the Unix epoch);
    /// `None` counts from this tool's start.
    pub since_ns: Option<u128>,
    /// A log the broker writes "ready" into, and the line to wait for.
    pub ready_log: Option<(PathBuf, String)>,
    pub timeout: Duration,
}

fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Seconds from `since` (epoch ns) to now.
fn secs_since(since: u128) -> f64 {
    epoch_ns().saturating_sub(since) as f64 / 1e9
}

async fn wait_ready_line(path: &PathBuf, pattern: &str, until: Instant) -> Result<()> {
    while Instant::now() < until {
        if let Ok(text) = tokio::fs::read_to_string(path).await {
            if text.contains(pattern) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("{pattern:?} did not appear in {}", path.display())
}

/// Connects (retrying while the broker is not listening yet) until CONNACK.
async fn connect_retrying(
    target: &Target,
    login: &Login,
    until: Instant,
) -> Result<(BoxStream, BytesMut, bool)> {
    loop {
        match net::connect_session(target, 0, login).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= until => return Err(e.context("broker never answered")),
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Reads until the first PUBLISH, acknowledges it, and returns true; false
/// when nothing arrived by `until`.
async fn first_message(stream: &mut BoxStream, buf: &mut BytesMut, until: Instant) -> Result<bool> {
    let wait = until.saturating_duration_since(Instant::now());
    let got = tokio::time::timeout(wait, async {
        loop {
            match net::read_packet(stream, buf).await? {
                Packet::Publish(p) => return Ok::<_, anyhow::Error>(p.packet_id),
                _ => continue,
            }
        }
    })
    .await;
    match got {
        Err(_) => Ok(false),
        Ok(Err(e)) => Err(e),
        Ok(Ok(packet_id)) => {
            if let Some(packet_id) = packet_id {
                let ack = Packet::PubAck(PubResp {
                    packet_id,
                    reason: 0,
                    properties: Properties::default(),
                });
                net::send(stream, &ack).await?;
            }
            Ok(true)
        }
    }
}

/// `resume`: seconds from the broker's start to its ready line (`ready_s`),
/// to CONNACK of a persistent session (`connack_s`) and to its first queued
/// message (`secs`), plus the broker's RSS then.
pub async fn resume_scenario(
    target: &Target,
    plan: ResumePlan,
    broker_pid: Option<u32>,
) -> Result<Report> {
    let since = plan.since_ns.unwrap_or_else(epoch_ns);
    let until = Instant::now() + plan.timeout;
    let mut report = Report {
        scenario: "restart".into(),
        qos: Some(1),
        ..Report::default()
    };
    if let Some((path, pattern)) = &plan.ready_log {
        wait_ready_line(path, pattern, until).await?;
        report.ready_s = Some(secs_since(since));
    }
    let (mut stream, mut buf, present) = connect_retrying(target, &plan.login, until)
        .await
        .context("resuming the session")?;
    report.connack_s = Some(secs_since(since));
    report
        .ready_s
        .get_or_insert(report.connack_s.unwrap_or(0.0));
    report.session_present = Some(present);
    if first_message(&mut stream, &mut buf, until).await? {
        report.msgs = 1;
        report.secs = secs_since(since);
    } else {
        report.drops = 1;
        report.note = Some(format!("no queued message within {:?}", plan.timeout));
    }
    conns::disconnect(&mut stream).await;
    report.rss_kb = broker_pid.and_then(|p| proc_rss_kb(p).ok());
    Ok(report)
}
