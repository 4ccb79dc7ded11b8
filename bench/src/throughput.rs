//! Message scenarios (fanin, fanout, latency): connect the subscribers,
//! then the publishers, publish for a fixed time, wait for the deliveries to
//! drain, and count on both sides.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::conns;
use crate::net::{self, Login, Target};
use crate::pubsub::{self, PubCounters, PubMode, SubCounters, Template};
use crate::report::{CpuMark, Report};

/// One message scenario: who publishes where, who subscribes to what.
pub struct Plan {
    pub publishers: Vec<(Login, String)>,
    pub subscribers: Vec<(Login, String)>,
    pub qos: u8,
    pub payload: usize,
    pub window: usize,
    pub secs: f64,
    /// Per-publisher rate; `None` is as fast as possible.
    pub rate: Option<u32>,
    /// Record latency samples.
    pub stamp: bool,
    /// Ports the subscribers connect to, round robin (another node of a
    /// cluster); empty: the target's.
    pub sub_ports: Vec<u16>,
    /// Ports the publishers connect to, round robin; empty: the target's.
    pub pub_ports: Vec<u16>,
}

/// `target` on the `i`th of `ports` (round robin), or `target` itself.
fn on_port(target: &Target, ports: &[u16], i: usize) -> Target {
    let mut t = target.clone();
    if let Some(port) = ports.get(i % ports.len().max(1)) {
        t.addr.set_port(*port);
    }
    t
}

/// Connected subscribers, ready to read.
struct Subs {
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<u64>>>>,
    counters: Arc<SubCounters>,
    stop: watch::Sender<bool>,
}

async fn start_subscribers(target: &Target, plan: &Plan, base: Instant) -> Result<Subs> {
    let counters = Arc::new(SubCounters::default());
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (i, (login, filter)) in plan.subscribers.iter().enumerate() {
        let (mut stream, mut buf) = net::connect(&on_port(target, &plan.sub_ports, i), i, login)
            .await
            .with_context(|| format!("subscriber {}", login.client_id))?;
        net::subscribe(&mut stream, &mut buf, filter, plan.qos).await?;
        tasks.push(tokio::spawn(pubsub::subscriber(
            stream,
            buf,
            base,
            plan.stamp,
            counters.clone(),
            stop_rx.clone(),
        )));
    }
    Ok(Subs {
        tasks,
        counters,
        stop,
    })
}

/// Waits until every expected delivery arrived, or nothing arrived for
/// `quiet`.
async fn drain(counters: &SubCounters, expected: u64, quiet: Duration) {
    let mut last = counters.received.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while last < expected && since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = counters.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// Ends the persistent sessions of the run's subscribers (a clean
/// reconnect discards them): left behind, they would stay subscribed and
/// queue every later run's messages.
async fn end_persistent_sessions(target: &Target, plan: &Plan) {
    for (i, (login, _)) in plan.subscribers.iter().enumerate() {
        if login.clean {
            continue;
        }
        let clean = Login {
            clean: true,
            ..login.clone()
        };
        if let Ok((mut stream, _)) =
            net::connect(&on_port(target, &plan.sub_ports, i), i, &clean).await
        {
            conns::disconnect(&mut stream).await;
        }
    }
}

/// Runs `plan` and reports deliveries per second, from the start of
/// publishing to the last delivery.
pub async fn run(
    scenario: &str,
    target: &Target,
    plan: Plan,
    broker_pid: Option<u32>,
) -> Result<Report> {
    let base = Instant::now();
    let subs = start_subscribers(target, &plan, base).await?;
    // Let the broker settle the subscriptions before anything is published.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let pub_counters = Arc::new(PubCounters::default());
    let mode = PubMode {
        qos: plan.qos,
        window: plan.window,
        rate: plan.rate,
        stamp: plan.stamp.then_some(base),
    };
    let mut streams = Vec::new();
    for (i, (login, topic)) in plan.publishers.iter().enumerate() {
        let on = on_port(target, &plan.pub_ports, i);
        let (stream, _) = net::connect(&on, plan.subscribers.len() + i, login)
            .await
            .with_context(|| format!("publisher {}", login.client_id))?;
        streams.push((stream, Template::new(topic, plan.qos, plan.payload)?));
    }
    let cpu = CpuMark::now(broker_pid);
    let start = base.elapsed();
    let mut pubs = Vec::new();
    for (stream, tpl) in streams {
        pubs.push(tokio::spawn(pubsub::publisher(
            stream,
            tpl,
            mode.clone(),
            stop.clone(),
            pub_counters.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(plan.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for p in pubs {
        if let Err(e) = p.await.map_err(anyhow::Error::from).and_then(|r| r) {
            errors.push(format!("publisher: {e:#}"));
        }
    }
    let published = pub_counters.sent.load(Ordering::Relaxed);
    let expected = published * plan.subscribers.len() as u64;
    let quiet = Duration::from_secs(if plan.qos == 0 { 1 } else { 5 });
    drain(&subs.counters, expected, quiet).await;
    let mut report = Report {
        scenario: scenario.to_string(),
        qos: Some(plan.qos),
        published: Some(published),
        rate: plan.rate,
        ..Report::default()
    };
    let received = subs.counters.received.load(Ordering::Relaxed);
    cpu.finish(broker_pid, received, &mut report);
    let last = Duration::from_nanos(subs.counters.last_nanos.load(Ordering::Relaxed));
    let secs = last.saturating_sub(start).as_secs_f64().max(1e-3);
    let _ = subs.stop.send(true);
    let mut samples = Vec::new();
    for t in subs.tasks {
        match t.await.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(s) => samples.extend(s),
            Err(e) => errors.push(format!("subscriber: {e:#}")),
        }
    }
    end_persistent_sessions(target, &plan).await;
    report.msgs = received;
    report.secs = secs;
    report.msg_per_s = Some(received as f64 / secs);
    report.drops = expected.saturating_sub(received);
    if plan.stamp {
        report.set_percentiles(&mut samples);
    }
    if !errors.is_empty() {
        errors.dedup();
        report.note = Some(errors.join("; "));
    }
    Ok(report)
}
