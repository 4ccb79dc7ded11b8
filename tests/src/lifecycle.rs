//! Helpers for the lifecycle tests (reload on SIGHUP, graceful stop): edit a
//! running broker's config file, rotate its server certificate in place, see
//! which certificate a new TLS handshake gets, and run the broker without
//! `RUST_LOG` so that its config's `log.level` decides.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::certs::TestPki;
use crate::raw::tls_config;
use crate::TestBroker;

/// Rewrites the broker's config file: `edit` gets the text and returns the
/// new one. Writes in place, as an operator's editor would.
pub fn edit_config(broker: &TestBroker, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&broker.config).expect("read config");
    std::fs::write(&broker.config, edit(text)).expect("write config");
}

/// A server certificate from a new CA, written over the broker's
/// `server.pem` and `server.key` (same paths, new contents).
pub struct Rotated {
    /// The CA a client needs to trust the new certificate.
    pub ca_pem: String,
    /// DER of the new server certificate.
    pub cert_der: Vec<u8>,
}

/// Makes a new CA and server certificate and overwrites the broker's server
/// certificate and key files with them.
pub fn rotate_server_cert(broker: &TestBroker) -> Rotated {
    let fresh = broker.dir.path().join("rotated");
    std::fs::create_dir_all(&fresh).expect("mkdir rotated");
    let pki = TestPki::new(&fresh);
    std::fs::write(&broker.pki.server.cert, &pki.server.cert_pem).expect("overwrite server.pem");
    std::fs::write(&broker.pki.server.key, &pki.server.key_pem).expect("overwrite server.key");
    Rotated {
        ca_pem: pki.ca_pem.clone(),
        cert_der: first_cert_der(&pki.server.cert_pem),
    }
}

/// DER of the first certificate in a PEM text.
pub fn first_cert_der(pem: &str) -> Vec<u8> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .expect("a certificate in the PEM")
        .expect("certificate PEM")
        .to_vec()
}

/// The leaf certificate (DER) that a new TLS handshake with `addr` gets,
/// trusting `ca_pem`; Err when the handshake fails.
pub async fn server_cert_der(addr: SocketAddr, ca_pem: &str) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(tls_config(ca_pem, None));
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| leaf.to_vec())
        .ok_or_else(|| "no server certificate".to_owned())
}

/// Makes every broker this test process starts run without `RUST_LOG`
/// (the harness always sets it, and it wins over `log.level`): points
/// `WARDEN_BIN` at a wrapper script that unsets it. Call before the first
/// broker or CLI command of the process, and only in a test binary of its
/// own (the binary path is fixed at first use).
pub fn without_rust_log(dir: &Path) {
    let real = real_warden_bin();
    let script = dir.join("warden-no-rust-log.sh");
    let text = format!(
        "#!/bin/sh\nunset RUST_LOG\nexec '{}' \"$@\"\n",
        real.display()
    );
    std::fs::write(&script, text).expect("write wrapper");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
    }
    std::env::set_var("WARDEN_BIN", &script);
}

/// The binary `cli::warden_bin` would find, without fixing its choice.
fn real_warden_bin() -> PathBuf {
    let bin = crate::cli::locate_warden_bin();
    assert!(
        bin.exists(),
        "build the broker first: {} is missing",
        bin.display()
    );
    bin
}
