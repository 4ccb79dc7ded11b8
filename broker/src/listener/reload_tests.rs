//! Reloading a running listener: certificates read again under the same
//! paths, remembered client chains kept only under the same CA bundle, and
//! unusable files leaving the previous TLS settings in place.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::tls::TlsAcceptors;
use super::*;
use crate::certs;
use crate::config::{ClientAuth, TlsSettings};

fn settings(dir: &Path, client_auth: ClientAuth) -> TlsSettings {
    TlsSettings {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_auth,
        username_from: None,
        crls: Vec::new(),
        ocsp: None,
        dev_certs: false,
        certificates: Vec::new(),
        alpn: vec!["mqtt".to_owned()],
        cert_poll_interval: std::time::Duration::from_secs(5),
    }
}

/// A directory with a development CA and server certificate.
fn dev_pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    certs::ensure_dev_certs(dir.path()).expect("dev certs");
    dir
}

fn same_chains(a: &TlsAcceptors, b: &TlsAcceptors) -> bool {
    match (a.chains(), b.chains()) {
        (Some(x), Some(y)) => std::ptr::eq(x, y),
        _ => false,
    }
}

#[test]
fn remembered_chains_survive_a_reload_under_the_same_ca_only() {
    let pki = dev_pki();
    let ca = pki.path().join("ca.pem");
    let s = settings(pki.path(), ClientAuth::Required { ca: ca.clone() });
    let name: Arc<str> = Arc::from("mtls");
    let first = TlsAcceptors::build(&name, &s).expect("build");

    let (same, changed) = first.rebuild(&name, &s).expect("rebuild");
    assert!(!changed, "the CA bundle did not change");
    assert!(same_chains(&first, &same), "chains kept under the same CA");

    let other = dev_pki();
    std::fs::copy(other.path().join("ca.pem"), &ca).expect("replace the CA bundle");
    let (next, changed) = same.rebuild(&name, &s).expect("rebuild");
    assert!(changed, "a new CA bundle is noticed");
    assert!(!same_chains(&same, &next), "chains dropped under a new CA");
    assert_eq!(next.chains().map(|c| c.len()), Some(0));
}

#[tokio::test]
async fn unusable_files_keep_the_previous_tls_settings_and_the_rest_applies() {
    let pki = dev_pki();
    let cfg = ListenerConfig::new(
        "tls",
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Transport::Tls(settings(pki.path(), ClientAuth::None)),
    );
    let listener = Listener::bind(&cfg).await.expect("bind");

    let elsewhere = dev_pki();
    let mut moved = cfg.clone();
    moved.transport = Transport::Tls(settings(elsewhere.path(), ClientAuth::None));
    moved.connect_timeout = Duration::from_secs(3);
    std::fs::write(elsewhere.path().join("server.key"), "not a key").expect("write");
    let done = listener.reload(moved);
    assert!(
        matches!(done.tls_error, Some(ListenerError::Pem { .. })),
        "{:?}",
        done.tls_error
    );
    assert_eq!(
        done.config.transport, cfg.transport,
        "old TLS settings kept"
    );
    assert_eq!(done.config.connect_timeout, Duration::from_secs(3));
    assert_eq!(listener.config().connect_timeout, Duration::from_secs(3));

    let mut fine = cfg.clone();
    fine.transport = Transport::Tls(settings(elsewhere.path(), ClientAuth::None));
    std::fs::copy(
        pki.path().join("server.key"),
        elsewhere.path().join("server.key"),
    )
    .expect("copy key");
    std::fs::copy(
        pki.path().join("server.pem"),
        elsewhere.path().join("server.pem"),
    )
    .expect("copy cert");
    let done = listener.reload(fine.clone());
    assert!(done.tls_error.is_none(), "{:?}", done.tls_error);
    assert_eq!(listener.config().transport, fine.transport);
}
