//! The accept loops: one per listener, a connection limit per listener,
//! backoff on accept errors, and one task per connection in which the TLS
//! handshake and CONNECT run under the listener's connect timeout (a slow
//! or silent client never holds up the accept loop). [`run`] also answers
//! the operator: a config reload, and the graceful stop within the grace.
//!
//! Errors on one connection stay in its task; they never reach a listener.
//!
//! A connection task's future keeps the size of its largest state for as
//! long as the connection lives, so the admission (handshake, CONNECT,
//! authentication: several kilobytes of state machine) is boxed and freed at
//! CONNACK, and what stays is the packet loop alone.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warden_auth::Store;

use crate::broker::Broker;
use crate::config::PersistenceMode;
use crate::config::{Config, ListenerConfig};
use crate::lifecycle::{reload, Event, Signals};
use crate::listener::{Handshaker, Listener, ListenerError, MqttStream};
use crate::persist::{Loaded, Persister};
use crate::session::handler::Handler;
use crate::shutdown::{Shutdown, ShutdownController};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("listener {name}: {source}")]
    Listener {
        name: String,
        #[source]
        source: ListenerError,
    },
    #[error("{0}")]
    Jwt(#[from] crate::auth::jwt::JwtSetupError),
    #[error(transparent)]
    Http(#[from] crate::auth::http::HttpSetupError),
    #[error("metrics listener {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log: {source}")]
    Audit {
        #[source]
        source: std::io::Error,
    },
    #[error("session store {dir}: {source}")]
    SessionStore {
        dir: String,
        #[source]
        source: crate::persist::PersistError,
    },
}

/// Bind every listener, start the policy registry, and serve: reload the
/// config on [`Event::Reload`], stop on [`Event::Stop`].
///
/// Stopping closes the listeners at once, tells every connection to end
/// (v5 clients get DISCONNECT 0x8B), waits for them, then runs `finish` (the
/// last step before exit, e.g. flushing the session store); the waiting and
/// `finish` together are bounded by the config's `shutdown_grace`, and a
/// second stop request ends the wait for connections early. Returns once the
/// grace is spent even if connection tasks remain (a client that stopped
/// reading can hold one in a socket write): the caller exits the process
/// without waiting for them.
pub async fn run(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    mut signals: Signals,
) -> Result<(), ServeError> {
    let (persist, loaded) = open_session_store(&config)?;
    let broker = Arc::new(Broker::new(Arc::clone(&config), store, persist));
    crate::auth::jwt::install(&broker, &config)?;
    let http_auth = crate::auth::http::install(&broker, &config)?;
    broker
        .audit
        .open(&config.audit)
        .map_err(|source| ServeError::Audit { source })?;
    match broker.store.policy_version().await {
        Ok(v) => broker.set_policy_version(v.0),
        Err(err) => {
            tracing::warn!(error = %err, "store unavailable at start; logins will be refused until it answers")
        }
    }
    let controller = ShutdownController::new();
    // Before the sessions are restored: their subscriptions are the first
    // interest the cluster hears of.
    if let Some(cluster) = &config.cluster {
        crate::cluster::start(&broker, cluster, controller.subscribe());
    }
    crate::session::restore::restore(&broker, loaded).await;
    if let Some(cluster) = broker.cluster() {
        // The cluster's retained messages replace what this node had.
        cluster.after_restore().await;
        cluster.sessions_restored();
    }
    let listeners = bind_all(&config).await?;
    tokio::spawn(crate::policy_registry::run(
        Arc::clone(&broker),
        controller.subscribe(),
    ));
    crate::auth::webhook::start(&broker, &config, controller.subscribe())?;
    if let Some(http) = http_auth {
        tokio::spawn(crate::auth::http::refresher(
            Arc::clone(&broker),
            http,
            controller.subscribe(),
        ));
    }
    tokio::spawn(crate::session::sweep::run(
        Arc::clone(&broker),
        controller.subscribe(),
    ));
    tokio::spawn(crate::session::keepalive::run(
        Arc::clone(&broker.keepalive),
        controller.subscribe(),
    ));
    tokio::spawn(crate::revocation::watch(
        Arc::clone(&broker),
        listeners.clone(),
        controller.subscribe(),
    ));
    broker
        .stats
        .flow
        .set_enabled(crate::observe::counting_wanted(&config));
    crate::observe::spawn_background(&broker, controller.subscribe());
    // After the MQTT listeners: `/ready` then means they are bound.
    if let Some(addr) = config.metrics.bind {
        let http = crate::observe::http::bind(addr)
            .await
            .map_err(|source| ServeError::Metrics { addr, source })?;
        let local = http.local_addr().unwrap_or(addr);
        tracing::info!("listening on {local} (metrics)");
        tokio::spawn(crate::observe::http::serve(
            http,
            Arc::clone(&broker),
            controller.subscribe(),
        ));
    }
    for listener in listeners.iter().filter(|l| l.kind().is_tls()) {
        tokio::spawn(crate::listener::cert_reload::watch(
            Arc::clone(listener),
            controller.subscribe(),
        ));
    }
    let accepting: Vec<JoinHandle<()>> = listeners
        .iter()
        .map(|listener| {
            tokio::spawn(accept_loop(
                Arc::clone(&broker),
                Arc::clone(listener),
                controller.subscribe(),
                controller.clone_handle(),
            ))
        })
        .collect();
    while signals.next().await == Event::Reload {
        reload::reload(&broker, &listeners).await;
    }
    let running = Running {
        grace: broker.config().shutdown_grace,
        listeners,
        accepting,
        controller,
        broker: Arc::clone(&broker),
    };
    let flush_broker = Arc::clone(&broker);
    let finish = async move {
        match flush_broker.persist.close().await {
            Ok(()) => {}
            Err(err) => tracing::error!(error = %err, "session store flush failed at shutdown"),
        }
    };
    running.stop(&mut signals, finish).await;
    Ok(())
}

/// The session store in `<data_dir>/state`, loaded; a disabled one for
/// `persistence.mode: none`.
fn open_session_store(config: &Config) -> Result<(Persister, Loaded), ServeError> {
    if config.persistence.mode == PersistenceMode::None {
        return Ok((Persister::disabled(), Loaded::default()));
    }
    let dir = config.data_dir.join("state");
    Persister::open(
        &dir,
        config.persistence.mode,
        config.persistence.fsync_interval,
    )
    .map_err(|source| ServeError::SessionStore {
        dir: dir.display().to_string(),
        source,
    })
}

/// What a stop takes down.
struct Running {
    grace: Duration,
    listeners: Vec<Arc<Listener>>,
    accepting: Vec<JoinHandle<()>>,
    controller: ShutdownController,
    /// Its connection counts tell how many are still open.
    broker: Arc<Broker>,
}

impl Running {
    /// Close the listeners, end the connections and run `finish`, within
    /// the grace.
    async fn stop(self, signals: &mut Signals, finish: impl Future<Output = ()>) {
        let grace = humantime::format_duration(self.grace);
        let open = self.broker.defence.conns.open();
        tracing::info!(connections = open, "shutting down (grace {grace})");
        let deadline = Instant::now() + self.grace;
        self.controller.begin();
        // Connections wait on their wake-up, not on the signal: after the
        // flag, so each one woken sees it (and one attaching later sees it
        // at its first turn).
        crate::session::lifecycle::wake_all(&self.broker);
        for task in self.accepting {
            let _ = task.await;
        }
        // The accept loops are gone: dropping the last handles closes the
        // sockets, so nothing is accepted while the connections end.
        drop(self.listeners);
        // Part of the grace is kept for the session store's flush, which
        // comes after the connections have written their sessions' state.
        let reserve = (self.grace / 4).min(Duration::from_secs(2));
        let ended = tokio::select! {
            ended = tokio::time::timeout_at(deadline - reserve, self.controller.finished()) => ended.is_ok(),
            () = second_stop(signals) => false,
        };
        let left = self.broker.defence.conns.open();
        if tokio::time::timeout_at(deadline, finish).await.is_err() {
            tracing::warn!(
                "shutdown: the final step (session store flush) did not finish within the grace"
            );
        }
        if ended {
            tracing::info!("stopped: every connection closed");
        } else {
            tracing::warn!("stopped: {left} connection(s) still open when the shutdown grace ({grace}) ran out or a second stop signal came");
        }
    }
}

/// Bind every listener, in config order.
async fn bind_all(config: &Config) -> Result<Vec<Arc<Listener>>, ServeError> {
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for cfg in &config.listeners {
        let listener = Listener::bind(cfg)
            .await
            .map_err(|source| ServeError::Listener {
                name: cfg.name.to_string(),
                source,
            })?;
        if !listener.kind().is_tls() {
            tracing::warn!(listener = %cfg.name, kind = listener.kind().as_str(), "unencrypted listener: credentials and messages travel in the clear");
        }
        tracing::info!("listening on {} ({})", listener.local_addr(), cfg.name);
        listeners.push(Arc::new(listener));
    }
    Ok(listeners)
}

/// Resolves at the next stop request; reload requests during shutdown are
/// ignored.
async fn second_stop(signals: &mut Signals) {
    loop {
        match signals.next().await {
            Event::Stop => {
                tracing::info!("second stop signal: not waiting for connections any longer");
                return;
            }
            Event::Reload => tracing::info!("config reload ignored: shutting down"),
        }
    }
}

/// One open connection, counted for its listener's `max_connections` and
/// in the broker's connection limits (`defence::conns`); released when the
/// connection task ends. Boxed: it lives in the connection task's future,
/// whose size is bounded (the test below).
struct Slot {
    _counted: Box<Counted>,
}

/// 32 bytes, one allocation of that class per connection: the listener's
/// count and the broker behind one shared pointer, not two.
struct Counted {
    listener: Arc<ListenerCount>,
    /// The address key counted per source address, if it was.
    ip: Option<IpAddr>,
}

/// A listener's open connections, and the broker whose limits count them
/// too.
struct ListenerCount {
    open: AtomicUsize,
    broker: Arc<Broker>,
}

impl Slot {
    /// A slot, unless the listener already has `max` connections or a
    /// broker-wide limit refuses the peer; the refusing limit's label.
    fn take(listener: &Arc<ListenerCount>, max: usize, peer: IpAddr) -> Result<Slot, &'static str> {
        let broker = &listener.broker;
        let config = broker.config();
        let admitted = broker
            .defence
            .conns
            .admit(&config.limits.guard, peer, std::time::Instant::now())
            .map_err(|refused| refused.label())?;
        listener
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| crate::defence::limit::LISTENER)?;
        Ok(Slot {
            _counted: Box::new(Counted {
                listener: Arc::clone(listener),
                ip: admitted.keep(),
            }),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.listener.open.fetch_sub(1, Ordering::AcqRel);
        self.listener.broker.defence.conns.release(self.ip);
    }
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: Arc<Listener>,
    mut shutdown: Shutdown,
    tasks: crate::shutdown::Handle,
) {
    let open = Arc::new(ListenerCount {
        open: AtomicUsize::new(0),
        broker: Arc::clone(&broker),
    });
    let mut refusals = RefusalLog::default();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            res = listener.accept() => res,
            _ = shutdown.recv() => return,
        };
        let (tcp, addr) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(10);
                pair
            }
            Err(err) => {
                // Usually out of file descriptors: wait, then try again.
                tracing::warn!(listener = %listener.name(), error = %err, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Taken per connection: a config reload may have changed it.
        let cfg = listener.config();
        let slot = match Slot::take(&open, cfg.max_connections.get(), addr.ip()) {
            Ok(slot) => slot,
            Err(limit) => {
                broker.defence.refused.inc(limit);
                refusals.note(&cfg.name, addr, limit);
                drop(tcp);
                continue;
            }
        };
        let admission = Box::pin(admit(
            Arc::clone(&broker),
            listener.handshaker(),
            cfg,
            tcp,
            addr,
            tasks.subscribe(),
        ));
        tokio::spawn(connection(slot, admission));
    }
}

/// Connections refused at accept are logged at most once a second per
/// listener (a flood must not become a log flood), with the count since.
#[derive(Default)]
struct RefusalLog {
    last: Option<std::time::Instant>,
    since: u64,
}

impl RefusalLog {
    fn note(&mut self, listener: &str, peer: SocketAddr, limit: &'static str) {
        self.since += 1;
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(listener, %peer, limit, refused = self.since, "connection limit reached; closing");
        self.last = Some(now);
        self.since = 0;
    }
}

/// The TLS handshake and CONNECT, under the listener's connect timeout.
async fn admit(
    broker: Arc<Broker>,
    handshaker: Handshaker,
    cfg: Arc<ListenerConfig>,
    tcp: TcpStream,
    addr: SocketAddr,
    shutdown: Shutdown,
) -> Option<Handler<MqttStream>> {
    let tls = cfg.transport != crate::config::Transport::Tcp;
    let stats = Arc::clone(&broker);
    // Kept to report a handshake that ran out of time (rate-limited, as
    // any other failed handshake).
    let reporter = handshaker.clone();
    let mut handshaken = !tls;
    let admitted = tokio::time::timeout(cfg.connect_timeout, async {
        let (stream, peer) = match handshaker.handshake(tcp, addr).await {
            Ok(pair) => pair,
            Err(err) => {
                handshaker.report_failure(addr, &err);
                stats
                    .stats
                    .handshake_failures
                    .inc(crate::observe::stats::handshake_reason(&err));
                return None;
            }
        };
        handshaken = true;
        crate::session::admit(broker, stream, &peer, &cfg, shutdown).await
    })
    .await;
    admitted.unwrap_or_else(|_| {
        if !handshaken {
            stats.stats.handshake_failures.inc("timeout");
            let source = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no handshake within the connect timeout",
            );
            reporter.report_failure(addr, &ListenerError::Handshake { peer: addr, source });
        }
        stats
            .defence
            .refused
            .inc(crate::defence::limit::CONNECT_TIMEOUT);
        tracing::debug!(peer = %addr, "no CONNECT within the connect timeout; closed");
        None
    })
}

/// One connection's task: the boxed admission, then the packet loop. The
/// slot is released when the connection ends.
async fn connection<F>(_slot: Slot, admission: Pin<Box<F>>)
where
    F: Future<Output = Option<Handler<MqttStream>>>,
{
    // let-else, not if-let: the if-let scrutinee would stay in the future
    // beside `handler` for the whole connection.
    let Some(mut handler) = admission.await else {
        return;
    };
    handler.run().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned_size<A, B, R>(_: fn(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// The size of a connection task's future, taken from the function
    /// types alone (nothing runs).
    fn task_size<F>(
        _: fn(Arc<Broker>, Handshaker, Arc<ListenerConfig>, TcpStream, SocketAddr, Shutdown) -> F,
    ) -> usize
    where
        F: Future<Output = Option<Handler<MqttStream>>>,
    {
        returned_size(connection::<F>)
    }

    #[test]
    fn a_connection_task_holds_little_more_than_its_packet_loop() {
        // The admission is several kilobytes; were it inline again, this
        // would be far past the bound (it was 5.8 KB). With tokio's task
        // header, scheduler, id and trailer (96 bytes, 128-byte aligned) a
        // future of at most 416 bytes is a 512-byte allocation; past it,
        // 640. (408 bytes now, 392 before the cluster's paced publish
        // deadline joined the loop: the Handler's rarely used fields in one box,
        // one pointer for the session and its router key, one future over
        // the socket, the wake-up and the timer instead of a `select!`;
        // 520 before, 704 before keep alive moved to one broker timer.)
        let size = task_size(admit);
        assert!(size <= 416, "connection task future is {size} bytes");
    }

    #[test]
    fn a_connection_slot_fits_a_32_byte_allocation() {
        // Boxed, one per connection: 40 bytes (a 48-byte allocation) when
        // it held the listener's count and the broker apart.
        let size = std::mem::size_of::<Counted>();
        assert!(size <= 32, "the slot is {size} bytes");
    }

    #[test]
    fn a_session_fits_a_448_byte_allocation() {
        // Behind an `Arc` (16 bytes of counts): one per connection. 432
        // bytes now (480 before the principal's strings were shared and
        // the send quota narrowed): a 448-byte allocation, past it 512.
        let size = std::mem::size_of::<crate::session::state::Session>();
        assert!(size <= 432, "Session is {size} bytes");
    }
}
