//! The accept loops: one per listener, a connection limit per listener,
//! backoff on accept errors, and one task per connection in which the TLS
//! handshake and CONNECT run under the listener's connect timeout (a slow
//! or silent client never holds up the accept loop).
//!
//! Errors on one connection stay in its task; they never reach a listener.
//!
//! A connection task's future keeps the size of its largest state for as
//! long as the connection lives, so the admission (handshake, CONNECT,
//! authentication: several kilobytes of state machine) is boxed and freed at
//! CONNACK, and what stays is the packet loop alone.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warden_auth::Store;

use crate::broker::Broker;
use crate::config::{Config, ListenerConfig, ListenerKind};
use crate::listener::{Handshaker, Listener, ListenerError, MqttStream};
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
}

/// Bind every listener, start the policy registry, and serve until
/// `signal` completes; then stop every connection and wait for them.
pub async fn run(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    signal: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let broker = Arc::new(Broker::new(Arc::clone(&config), store));
    match broker.store.policy_version().await {
        Ok(v) => broker.set_policy_version(v.0),
        Err(err) => {
            tracing::warn!(error = %err, "store unavailable at start; logins will be refused until it answers")
        }
    }
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for cfg in &config.listeners {
        let listener = Listener::bind(cfg)
            .await
            .map_err(|source| ServeError::Listener {
                name: cfg.name.to_string(),
                source,
            })?;
        if listener.kind() == ListenerKind::Tcp {
            tracing::warn!(listener = %cfg.name, "plain TCP listener: credentials and messages travel unencrypted");
        }
        tracing::info!("listening on {} ({})", listener.local_addr(), cfg.name);
        listeners.push((Arc::new(listener), Arc::new(cfg.clone())));
    }
    let controller = ShutdownController::new();
    tokio::spawn(crate::policy_registry::run(
        Arc::clone(&broker),
        controller.subscribe(),
    ));
    for (listener, cfg) in listeners {
        tokio::spawn(accept_loop(
            Arc::clone(&broker),
            listener,
            cfg,
            controller.subscribe(),
            controller.clone_handle(),
        ));
    }
    signal.await;
    tracing::info!("shutting down");
    controller.shutdown().await;
    Ok(())
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: Arc<Listener>,
    cfg: Arc<ListenerConfig>,
    mut shutdown: Shutdown,
    tasks: crate::shutdown::Handle,
) {
    let limit = Arc::new(Semaphore::new(cfg.max_connections.get()));
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
                tracing::warn!(listener = %cfg.name, error = %err, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::warn!(listener = %cfg.name, peer = %addr, "connection limit reached; closing");
            drop(tcp);
            continue;
        };
        let admission = Box::pin(admit(
            Arc::clone(&broker),
            listener.handshaker(),
            Arc::clone(&cfg),
            tcp,
            addr,
            tasks.subscribe(),
        ));
        tokio::spawn(connection(permit, admission));
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
    let admitted = tokio::time::timeout(cfg.connect_timeout, async {
        let (stream, peer) = match handshaker.handshake(tcp, addr).await {
            Ok(pair) => pair,
            Err(err) => {
                tracing::debug!(peer = %addr, error = %err, "TLS handshake failed");
                return None;
            }
        };
        crate::session::admit(broker, stream, &peer, &cfg, shutdown).await
    })
    .await;
    admitted.unwrap_or_else(|_| {
        tracing::debug!(peer = %addr, "no CONNECT within the connect timeout; closed");
        None
    })
}

/// One connection's task: the boxed admission, then the packet loop. The
/// permit is released when the connection ends.
async fn connection<F>(_permit: OwnedSemaphorePermit, admission: Pin<Box<F>>)
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
        // would be far past the bound (it was 5.8 KB).
        let size = task_size(admit);
        assert!(size <= 1024, "connection task future is {size} bytes");
    }
}
