//! The accept loops: one per listener, a connection limit per listener,
//! backoff on accept errors, and one task per connection in which the TLS
//! handshake and CONNECT run under the listener's connect timeout (a slow
//! or silent client never holds up the accept loop).
//!
//! Errors on one connection stay in its task; they never reach a listener.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use warden_auth::Store;

use crate::broker::Broker;
use crate::config::{Config, ListenerConfig, ListenerKind};
use crate::listener::{Listener, ListenerError};
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
        listeners.push((Arc::new(listener), cfg.clone()));
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
    cfg: ListenerConfig,
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
        let broker = Arc::clone(&broker);
        let handshaker = listener.handshaker();
        let cfg = cfg.clone();
        let conn_shutdown = tasks.subscribe();
        tokio::spawn(async move {
            let _permit = permit;
            let admitted = tokio::time::timeout(cfg.connect_timeout, async {
                let (stream, peer) = match handshaker.handshake(tcp, addr).await {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::debug!(peer = %addr, error = %err, "TLS handshake failed");
                        return None;
                    }
                };
                crate::session::admit(&broker, stream, &peer, &cfg).await
            })
            .await;
            match admitted {
                Ok(Some((conn, accepted))) => {
                    crate::session::serve(broker, conn, accepted, conn_shutdown).await;
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::debug!(peer = %addr, "no CONNECT within the connect timeout; closed")
                }
            }
        });
    }
}
