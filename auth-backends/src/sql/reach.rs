//! A network store's first connection, made by itself before the pool's:
//! the pool retries a refused connection until its acquire timeout and
//! then reports only that it timed out, so an operator would never read
//! "connection refused" and the address it was refused at.

use std::future::Future;
use std::time::Duration;

use crate::error::StoreError;

/// Connect once to `addr` (host:port, for the message) within `timeout`,
/// then close the connection. A server that answers with an error (bad
/// credentials, no such database) keeps `answered`'s classification; one
/// that cannot be reached is `Unavailable` naming the address and the cause.
pub(crate) async fn reach<C, F>(
    backend: &'static str,
    addr: &str,
    timeout: Duration,
    connect: F,
    answered: fn(sqlx::Error) -> StoreError,
) -> Result<(), StoreError>
where
    C: sqlx::Connection,
    F: Future<Output = Result<C, sqlx::Error>>,
{
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(conn)) => {
            // Only the answer mattered; a failed goodbye changes nothing.
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(err @ (sqlx::Error::Database(_) | sqlx::Error::Configuration(_)))) => {
            Err(answered(err))
        }
        Ok(Err(err)) => Err(StoreError::Unavailable {
            backend,
            message: format!("cannot connect to {addr}: {}", cause(&err)),
            source: Some(Box::new(err)),
        }),
        Err(_) => Err(StoreError::Unavailable {
            backend,
            message: format!(
                "no answer from {addr} within {} (store.timeout)",
                humantime::format_duration(timeout)
            ),
            source: None,
        }),
    }
}

/// The innermost cause, e.g. "Connection refused (os error 111)" rather
/// than sqlx's "error communicating with database: ...".
fn cause(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// `host:port`, or the socket path, for messages.
pub(crate) fn address(host: &str, port: u16, socket: Option<&std::path::Path>) -> String {
    match socket {
        Some(path) => path.display().to_string(),
        None if host.contains(':') => format!("[{host}]:{port}"),
        None => format!("{host}:{port}"),
    }
}
