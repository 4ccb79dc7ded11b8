//! Certificate files watched for changes: every `cert_poll_interval` the
//! server certificates, keys and client CA bundle of a TLS or wss listener
//! are looked at (size, modification time, inode: a rename over the file,
//! as certbot and Kubernetes secret mounts do, is seen too), and a change
//! reloads them the way SIGHUP does. Handshakes that start afterwards use
//! the new files; connections already up are not touched.
//!
//! A half-written pair (the new certificate beside the old key) fails to
//! load and leaves the running certificates in place; the next write
//! changes the files again and is tried then.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Listener;
use crate::shutdown::Shutdown;

/// What is looked at of one file; `None` when it cannot be read.
type Stamp = Option<(u64, Option<SystemTime>, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0;
    Some((meta.len(), meta.modified().ok(), ino))
}

/// The stamps of the listener's files now, and how long to wait before the
/// next look; `None` for a listener without TLS.
fn look(listener: &Listener) -> Option<(Vec<Stamp>, Duration)> {
    let cfg = listener.config();
    let tls = cfg.tls()?;
    let stamps = tls.files().into_iter().map(stamp).collect();
    Some((stamps, tls.cert_poll_interval))
}

/// Watches one listener's files until shutdown.
pub async fn watch(listener: Arc<Listener>, mut shutdown: Shutdown) {
    let l = listener.clone();
    let Ok(Some((mut last, mut every))) = tokio::task::spawn_blocking(move || look(&l)).await
    else {
        return;
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.recv() => return,
        }
        let l = listener.clone();
        let Ok(Some((now, next))) = tokio::task::spawn_blocking(move || look(&l)).await else {
            return;
        };
        every = next;
        if now == last {
            continue;
        }
        // Taken before the files are read: a write during the reload is a
        // change at the next look.
        last = now;
        let l = listener.clone();
        let Ok(Some(done)) = tokio::task::spawn_blocking(move || l.reload_tls()).await else {
            continue;
        };
        let name = listener.name();
        match done {
            Ok(ca_changed) => tracing::info!(
                listener = %name,
                ca_changed,
                "certificate files changed: reloaded; new handshakes use them"
            ),
            Err(err) => tracing::error!(
                listener = %name,
                "certificate files changed but cannot be used; keeping the previous ones: {err}"
            ),
        }
    }
}
