//! Revoked client certificates and the connections that hold them.
//!
//! Each TLS listener's CRLs are read into a [`RevokedSet`] whenever its TLS
//! settings are rebuilt. [`watch`] polls the CRL files (every
//! [`POLL_EVERY`]) and rebuilds a listener whose files changed; whichever way
//! a listener got a new set (the poll or a SIGHUP config reload), the watch
//! publishes it in [`Revocations`] and then disconnects every connection of
//! that listener whose certificate is on it (v5 DISCONNECT 0x87, will
//! dropped). Other connections are untouched.
//!
//! A login that verified its chain against the old lists while a new one
//! was being published checks [`Revocations`] itself once it is attached
//! (`session::connect`): the set is published before the connections are
//! scanned, so either the scan sees the new session or the session sees the
//! new set.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use warden_policy::CertInfo;

use crate::broker::Broker;
use crate::listener::{crl_stamp, Listener, RevokedSet};
use crate::session::state::{ConnId, Kick, Session};
use crate::shutdown::Shutdown;

/// How often the CRL files are looked at (metadata only). With the scan
/// that follows a change, a revoked client is gone well within a second.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// The revoked certificates of every listener, as last published.
#[derive(Debug, Default)]
pub struct Revocations {
    by_listener: RwLock<HashMap<Arc<str>, Arc<RevokedSet>>>,
}

impl Revocations {
    /// Whether `cert`, presented on `listener`, is on that listener's lists.
    pub fn is_revoked(&self, listener: &str, cert: &CertInfo) -> bool {
        self.by_listener
            .read()
            .get(listener)
            .is_some_and(|set| !set.is_empty() && set.contains(cert))
    }

    /// Publish a listener's set; false when it is the one already published.
    fn publish(&self, listener: &Arc<str>, set: Arc<RevokedSet>) -> bool {
        let mut map = self.by_listener.write();
        match map.get(listener) {
            Some(current) if Arc::ptr_eq(current, &set) => false,
            _ => {
                map.insert(Arc::clone(listener), set);
                true
            }
        }
    }
}

type Stamp = Vec<Option<(SystemTime, u64)>>;

/// Poll the CRL files of `listeners` until shutdown; see the module docs.
pub async fn watch(broker: Arc<Broker>, listeners: Vec<Arc<Listener>>, mut shutdown: Shutdown) {
    let mut stamps: HashMap<Arc<str>, Stamp> = HashMap::new();
    for listener in &listeners {
        if let Some(set) = listener.revoked() {
            broker.revoked.publish(listener.name(), set);
        }
        stamps.insert(Arc::clone(listener.name()), crl_stamp(&crl_files(listener)));
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = shutdown.recv() => return,
        }
        for listener in &listeners {
            let files = crl_files(listener);
            if files.is_empty() {
                continue;
            }
            let now = crl_stamp(&files);
            if stamps.get(listener.name()) != Some(&now) {
                stamps.insert(Arc::clone(listener.name()), now);
                reread(listener).await;
            }
        }
        for listener in &listeners {
            let Some(set) = listener.revoked() else {
                continue;
            };
            if broker.revoked.publish(listener.name(), Arc::clone(&set)) {
                let kicked = disconnect_revoked(&broker, listener.name(), &set);
                tracing::info!(
                    listener = %listener.name(),
                    revoked = set.len(),
                    disconnected = kicked,
                    "certificate revocation lists applied"
                );
            }
        }
    }
}

fn crl_files(listener: &Listener) -> Vec<PathBuf> {
    listener
        .config()
        .tls()
        .map(|t| t.crls.clone())
        .unwrap_or_default()
}

/// Rebuild the listener's TLS settings from its files (off the runtime).
async fn reread(listener: &Arc<Listener>) {
    let l = Arc::clone(listener);
    let done = tokio::task::spawn_blocking(move || l.reread_files()).await;
    match done {
        Ok(done) => match done.tls_error {
            Some(err) => {
                tracing::error!(listener = %listener.name(), "CRL changed but cannot be used; the previous lists stay: {err}")
            }
            None => tracing::info!(listener = %listener.name(), "CRL file changed; reloaded"),
        },
        Err(err) => tracing::error!(listener = %listener.name(), error = %err, "CRL reload failed"),
    }
}

/// Kick every connection of `listener` whose certificate is in `set`;
/// returns how many.
pub fn disconnect_revoked(broker: &Broker, listener: &str, set: &RevokedSet) -> usize {
    if set.is_empty() {
        return 0;
    }
    let sessions: Vec<Arc<Session>> = broker.sessions.lock().values().cloned().collect();
    let mut kicked = 0;
    for session in sessions {
        let mut st = session.state.lock();
        let revoked = *st.principal.listener == *listener
            && st.principal.cert.as_ref().is_some_and(|c| set.contains(c));
        if !revoked {
            continue;
        }
        if let Some((id, wake)) = st.attached.as_ref().map(|a| (a.id, Arc::clone(&a.wake))) {
            if let Some(cert) = &st.principal.cert {
                tracing::info!(client_id = %session.client_id, cert_subject = %cert.subject, serial = %cert.serial, "client certificate revoked; disconnecting");
            }
            st.kicked = Some((id, Kick::CertRevoked));
            wake.notify_one();
            kicked += 1;
        }
    }
    kicked
}

/// After a login attached: if its certificate was revoked meanwhile, kick
/// it like the scan would have. True when it was.
pub fn kick_if_revoked(broker: &Broker, session: &Session, conn: ConnId) -> bool {
    let mut st = session.state.lock();
    let revoked = st
        .principal
        .cert
        .as_ref()
        .is_some_and(|c| broker.revoked.is_revoked(&st.principal.listener, c));
    if revoked && st.is_attached_to(conn) {
        if let Some(wake) = st.attached.as_ref().map(|a| Arc::clone(&a.wake)) {
            st.kicked = Some((conn, Kick::CertRevoked));
            wake.notify_one();
        }
    }
    revoked
}
