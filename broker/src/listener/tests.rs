//! Listener tests with real TLS handshakes on 127.0.0.1:0, tokio-rustls as
//! the client, and certificates from `certs`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::*;
use crate::certs;
use crate::config::{ClientAuth, TlsSettings, UsernameFrom};

struct Pki {
    dir: tempfile::TempDir,
    server_cert: PathBuf,
    server_key: PathBuf,
    ca: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let dev = certs::ensure_dev_certs(dir.path()).unwrap();
    Pki {
        server_cert: dev.server_cert,
        server_key: dev.server_key,
        ca: dev.ca_cert,
        dir,
    }
}

fn tls_listener(p: &Pki, client_auth: ClientAuth) -> ListenerConfig {
    ListenerConfig::new(
        "test",
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Transport::Tls(TlsSettings {
            cert: p.server_cert.clone(),
            key: p.server_key.clone(),
            client_auth,
            username_from: None,
            dev_certs: false,
        }),
    )
}

fn read_pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    tls::load_certs(path).unwrap()
}

/// A client trusting `ca`, presenting `identity` (cert, key) if given.
fn client(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
    tls12: bool,
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in read_pem_certs(ca) {
        roots.add(c).unwrap();
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let key_pem = fs::read(key).unwrap();
            let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .unwrap()
                .unwrap();
            builder
                .with_client_auth_cert(read_pem_certs(cert), key)
                .unwrap()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// Binds `cfg`, connects with `connector`, and returns the server's result
/// of accept + handshake, plus the client's stream if its side succeeded.
async fn run(
    cfg: &ListenerConfig,
    connector: TlsConnector,
) -> (
    Result<(MqttStream, PeerInfo), ListenerError>,
    Option<tokio_rustls::client::TlsStream<TcpStream>>,
) {
    let listener = Listener::bind(cfg).await.unwrap();
    let addr = listener.local_addr();
    let server = tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.unwrap();
        let hs = listener.handshaker();
        hs.handshake(tcp, peer).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = connector.connect(name, tcp).await.ok();
    if let Some(c) = client.as_mut() {
        // In TLS 1.3 the server judges the client certificate after the
        // client thinks it is done; a write/read round makes it final.
        let _ = c.write_all(b"x").await;
    }
    (server.await.unwrap(), client)
}

#[tokio::test]
async fn required_without_a_client_cert_fails() {
    let p = pki();
    let cfg = tls_listener(&p, ClientAuth::Required { ca: p.ca.clone() });
    let (server, _) = run(&cfg, client(&p.ca, None, &[], false)).await;
    assert!(
        matches!(server, Err(ListenerError::Handshake { .. })),
        "{server:?}"
    );
}

#[tokio::test]
async fn required_with_a_cert_from_another_ca_fails() {
    let p = pki();
    let other = pki();
    let (cert, key) = certs::issue_client_cert(other.dir.path(), "mallory").unwrap();
    let cfg = tls_listener(&p, ClientAuth::Required { ca: p.ca.clone() });
    let (server, _) = run(&cfg, client(&p.ca, Some((&cert, &key)), &[], false)).await;
    assert!(
        matches!(server, Err(ListenerError::Handshake { .. })),
        "{server:?}"
    );
}

#[tokio::test]
async fn required_with_a_valid_cert_gives_its_identity() {
    let p = pki();
    let (ca_pem, ca_key) = (
        fs::read_to_string(&p.ca).unwrap(),
        fs::read_to_string(p.dir.path().join("ca.key")).unwrap(),
    );
    let sans = [
        "alice.example",
        "alice@example.com",
        "spiffe://example/alice",
    ]
    .map(String::from);
    let (cert_pem, key_pem) = certs::sign_leaf(&ca_pem, &ca_key, "alice", &sans, true).unwrap();
    let cert = p.dir.path().join("alice.pem");
    let key = p.dir.path().join("alice.key");
    fs::write(&cert, &cert_pem).unwrap();
    fs::write(&key, &key_pem).unwrap();
    let cfg = tls_listener(&p, ClientAuth::Required { ca: p.ca.clone() });
    let (server, client) = run(&cfg, client(&p.ca, Some((&cert, &key)), &[], false)).await;
    let (mut stream, peer) = server.unwrap();
    assert!(stream.is_tls() && peer.tls);
    assert_eq!(&*peer.listener, "test");
    let info = peer.cert.clone().unwrap();
    assert_eq!(info.cn.as_deref(), Some("alice"));
    assert_eq!(info.subject, "CN=alice");
    assert_eq!(info.sans, sans.to_vec());
    let der = &read_pem_certs(&cert)[0];
    assert_eq!(info.fingerprint, hex::encode(Sha256::digest(der.as_ref())));
    assert_eq!(
        peer.mapped_username(UsernameFrom::Cn).as_deref(),
        Some("alice")
    );
    // The stream carries data both ways.
    let mut buf = [0u8; 1];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"x");
    stream.write_all(b"y").await.unwrap();
    stream.flush().await.unwrap();
    let mut client = client.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"y");
}

#[tokio::test]
async fn issued_client_cert_works_over_tls12() {
    let p = pki();
    let (cert, key) = certs::issue_client_cert(p.dir.path(), "bob").unwrap();
    let cfg = tls_listener(&p, ClientAuth::Optional { ca: p.ca.clone() });
    let (server, _) = run(&cfg, client(&p.ca, Some((&cert, &key)), &[], true)).await;
    let (_, peer) = server.unwrap();
    assert_eq!(peer.cert.and_then(|c| c.cn).as_deref(), Some("bob"));
}

#[tokio::test]
async fn optional_without_a_cert_is_anonymous_tls() {
    let p = pki();
    let cfg = tls_listener(&p, ClientAuth::Optional { ca: p.ca.clone() });
    let (server, _) = run(&cfg, client(&p.ca, None, &[], false)).await;
    let (_, peer) = server.unwrap();
    assert!(peer.tls);
    assert_eq!(peer.cert, None);
    assert_eq!(peer.mapped_username(UsernameFrom::Cn), None);
}

#[tokio::test]
async fn no_client_auth_ignores_identity() {
    let p = pki();
    let cfg = tls_listener(&p, ClientAuth::None);
    let (server, _) = run(&cfg, client(&p.ca, None, &[], true)).await;
    assert_eq!(server.unwrap().1.cert, None);
}

#[tokio::test]
async fn alpn_mqtt_is_answered_and_not_required() {
    let p = pki();
    let cfg = tls_listener(&p, ClientAuth::None);
    let (server, client_stream) = run(&cfg, client(&p.ca, None, &[b"mqtt"], false)).await;
    let (stream, _) = server.unwrap();
    let MqttStream::Tls(tls) = stream else {
        panic!("expected TLS")
    };
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"mqtt"[..]));
    assert_eq!(
        client_stream.unwrap().get_ref().1.alpn_protocol(),
        Some(&b"mqtt"[..])
    );
    let (server, _) = run(&cfg, client(&p.ca, None, &[b"x-other"], false)).await;
    let (stream, _) = server.unwrap();
    let MqttStream::Tls(tls) = stream else {
        panic!("expected TLS")
    };
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
}

#[tokio::test]
async fn plain_tcp_listener() {
    let cfg = ListenerConfig::new(
        "plain",
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Transport::Tcp,
    );
    let listener = Listener::bind(&cfg).await.unwrap();
    assert_eq!(listener.kind(), crate::config::ListenerKind::Tcp);
    assert_eq!(&**listener.name(), "plain");
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0);
    let mut c = TcpStream::connect(addr).await.unwrap();
    let (tcp, peer_addr) = listener.accept().await.unwrap();
    assert!(tcp.nodelay().unwrap());
    let (mut stream, peer) = listener.handshake(tcp, peer_addr).await.unwrap();
    assert!(!peer.tls && !stream.is_tls() && peer.cert.is_none());
    c.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi");
}

#[tokio::test]
async fn bind_reports_certificate_and_socket_problems() {
    let p = pki();
    let mut cfg = tls_listener(&p, ClientAuth::None);
    if let Transport::Tls(t) = &mut cfg.transport {
        t.cert = p.dir.path().join("missing.pem");
    }
    let err = Listener::bind(&cfg).await.unwrap_err();
    assert!(matches!(err, ListenerError::ReadFile { .. }), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let mut cfg = tls_listener(&p, ClientAuth::None);
    if let Transport::Tls(t) = &mut cfg.transport {
        t.key = p.server_cert.clone();
    }
    let err = Listener::bind(&cfg).await.unwrap_err();
    assert!(matches!(err, ListenerError::Pem { .. }), "{err}");

    let taken = Listener::bind(&tls_listener(&p, ClientAuth::None))
        .await
        .unwrap();
    let mut cfg = tls_listener(&p, ClientAuth::None);
    cfg.bind = taken.local_addr();
    let err = Listener::bind(&cfg).await.unwrap_err();
    assert!(matches!(err, ListenerError::Bind { .. }), "{err}");
}
