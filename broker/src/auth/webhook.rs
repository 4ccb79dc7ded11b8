//! `auth.webhook`: the event sink over HTTP(S).
//!
//! Every event the audit log records (logins refused, denies, kicks,
//! revocations, bans, policy and admin changes) and every connect and
//! disconnect is turned into a small JSON object and pushed onto a bounded
//! queue: one short lock, no I/O, no await, so a deny on the message path
//! costs what a queue push costs. A task sends the queue in batches (`POST
//! {url}`, body `{"events": [...], "dropped": N}`) when `batch_size` events
//! wait or `interval` has passed.
//!
//! When the receiver is down or slow, the batch goes back to the front of
//! the queue and the task waits (doubling, up to 30 s) before trying
//! again; the queue keeps the newest `queue` events and drops the oldest,
//! counting them (`warden_auth_webhook_events_total{outcome="dropped"}`).
//! The outage and the recovery are logged once each. Delivery is best
//! effort: a batch the receiver took but did not acknowledge in time is
//! sent again (a receiver should tolerate duplicates), and what a full
//! queue dropped is lost (counted, and reported in the next batch's
//! `dropped`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::extension::{Event, EventSink};
use super::http::HttpSetupError;
use crate::broker::Broker;
use crate::config::WebhookConfig;
use crate::shutdown::Shutdown;

/// The longest wait between two tries while the receiver fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the sink did, for the metrics.
#[derive(Debug, Default)]
pub struct WebhookCounts {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub failed_batches: AtomicU64,
}

/// The queue, its sender's client, and the counters; see the module docs.
pub struct Webhook {
    config: WebhookConfig,
    client: reqwest::Client,
    queue: Mutex<VecDeque<Value>>,
    /// Woken when a batch is full.
    full: Notify,
    /// The outage was logged (the recovery must be).
    down: AtomicBool,
    pub counts: WebhookCounts,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    crate::observe::audit::timestamp_ms()
}

/// An event as the receiver gets it: `event` names it, `ts` is Unix ms.
fn to_json(event: &Event<'_>) -> Value {
    let mut v = match event {
        Event::Connected {
            client_id,
            username,
            peer,
            listener,
            protocol,
            auth,
        } => json!({
            "event": "connected", "client_id": client_id, "username": username,
            "peer": peer.to_string(), "listener": listener, "protocol": protocol,
            "auth": auth,
        }),
        Event::Disconnected {
            client_id,
            username,
            reason,
        } => json!({
            "event": "disconnected", "client_id": client_id, "username": username,
            "reason": reason,
        }),
        Event::Denied(r) => json!({
            "event": "denied", "client_id": r.client_id, "username": r.username,
            "peer": r.peer, "action": r.action, "topic": r.topic, "rule": r.rule,
            "reason": r.reason,
        }),
        Event::LoginRefused {
            peer,
            client_id,
            username,
            reason,
        } => json!({
            "event": "login_refused", "peer": peer.to_string(), "client_id": client_id,
            "username": username, "reason": reason,
        }),
        Event::Kicked {
            client_id,
            username,
            by,
        } => json!({
            "event": "kicked", "client_id": client_id, "username": username, "by": by,
        }),
        Event::Revoked {
            client_id,
            username,
        } => json!({ "event": "revoked", "client_id": client_id, "username": username }),
        Event::Banned {
            kind,
            subject,
            seconds,
            reason,
        } => json!({
            "event": "banned", "kind": kind, "subject": subject, "seconds": seconds,
            "reason": reason,
        }),
        Event::PolicyChanged { version, sessions } => json!({
            "event": "policy_changed", "version": version, "sessions": sessions,
        }),
        Event::AdminChange(c) => json!({
            "event": "admin_change", "id": c.id, "at_ms": c.at_ms, "user": c.user,
            "host": c.host, "what": c.what,
        }),
    };
    v["ts"] = now_ms().into();
    v
}

impl EventSink for Webhook {
    fn event(&self, event: &Event<'_>) {
        let value = to_json(event);
        let waiting = {
            let mut queue = self.queue.lock();
            if queue.len() >= self.config.queue.get() {
                queue.pop_front();
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
            queue.push_back(value);
            queue.len()
        };
        if waiting >= self.config.batch_size.get() {
            self.full.notify_one();
        }
    }
}

impl Webhook {
    /// Reads the CA file. Blocking: at start only.
    pub fn build(config: &WebhookConfig) -> Result<Webhook, HttpSetupError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(1)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                HttpSetupError::Webhook(format!("cannot read {}: {e}", ca.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                HttpSetupError::Webhook(format!("{}: not a PEM CA bundle: {e}", ca.display()))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| HttpSetupError::Webhook(e.to_string()))?;
        Ok(Webhook {
            config: config.clone(),
            client,
            queue: Mutex::new(VecDeque::new()),
            full: Notify::new(),
            down: AtomicBool::new(false),
            counts: WebhookCounts::default(),
        })
    }

    /// Events waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.lock().len()
    }

    fn take_batch(&self) -> Vec<Value> {
        let mut queue = self.queue.lock();
        let n = queue.len().min(self.config.batch_size.get());
        queue.drain(..n).collect()
    }

    /// A batch that was not taken goes back to the front; the queue's
    /// bound drops the oldest.
    fn put_back(&self, batch: Vec<Value>) {
        let mut queue = self.queue.lock();
        for v in batch.into_iter().rev() {
            queue.push_front(v);
        }
        while queue.len() > self.config.queue.get() {
            queue.pop_front();
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn send(&self, batch: &[Value]) -> Result<(), String> {
        let body = json!({
            "events": batch,
            "dropped": self.counts.dropped.load(Ordering::Relaxed),
        });
        let mut request = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status().as_u16()));
        }
        Ok(())
    }

    /// Send whole batches while there are; Err: the receiver failed (what
    /// was not taken is back in the queue).
    async fn flush(&self, whole_only: bool) -> Result<(), ()> {
        loop {
            if whole_only && self.queued() < self.config.batch_size.get() {
                return Ok(());
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                return Ok(());
            }
            match self.send(&batch).await {
                Ok(()) => {
                    self.counts
                        .sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    if self.down.swap(false, Ordering::Relaxed) {
                        tracing::info!(url = %self.config.url, "event webhook reachable again");
                    }
                }
                Err(error) => {
                    self.counts.failed_batches.fetch_add(1, Ordering::Relaxed);
                    if !self.down.swap(true, Ordering::Relaxed) {
                        tracing::warn!(url = %self.config.url, %error, "event webhook unreachable; events are queued (bounded: the oldest are dropped)");
                    }
                    self.put_back(batch);
                    return Err(());
                }
            }
        }
    }
}

/// Build the webhook `auth.webhook` asks for, hand it every event, and
/// start its sender. At start only (changes need a restart).
pub fn start(
    broker: &Broker,
    config: &crate::config::Config,
    shutdown: Shutdown,
) -> Result<(), HttpSetupError> {
    let Some(wc) = &config.auth.webhook else {
        return Ok(());
    };
    let hook = Arc::new(Webhook::build(wc)?);
    broker
        .audit
        .add_sink(Arc::clone(&hook) as Arc<dyn EventSink>);
    broker.webhook.store(Some(Arc::clone(&hook)));
    tracing::info!(url = %wc.url, "event webhook configured");
    tokio::spawn(run(hook, shutdown));
    Ok(())
}

/// Send batches until shutdown, then what is left, once.
async fn run(hook: Arc<Webhook>, mut shutdown: Shutdown) {
    let interval = hook.config.interval;
    let mut backoff: Option<Duration> = None;
    loop {
        let wait = backoff.unwrap_or(interval);
        let full = backoff.is_none();
        let timed_out = tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = hook.full.notified(), if full => false,
            _ = shutdown.recv() => {
                let _ = hook.flush(false).await;
                return;
            }
        };
        // A full batch goes at once; a partial one when the interval ran.
        match hook.flush(!timed_out).await {
            Ok(()) => backoff = None,
            Err(()) => {
                backoff = Some(backoff.map_or(interval, |b| b * 2).min(MAX_BACKOFF));
            }
        }
    }
}
