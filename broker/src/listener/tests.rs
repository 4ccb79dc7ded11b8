//! Listener tests with real TLS handshakes on 127.0.0.1:0, tokio-rustls as
//! the client, and certificates from `certs`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::chains::{CachingVerifier, VerifiedChains};
use super::tls::TlsAcceptors;
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
            crls: Vec::new(),
            ocsp: None,
            dev_certs: false,
            certificates: Vec::new(),
            alpn: vec!["mqtt".to_owned()],
            cert_poll_interval: std::time::Duration::from_secs(5),
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
    assert_eq!(peer.cert.and_then(|c| c.cn.clone()).as_deref(), Some("bob"));
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
async fn a_configured_alpn_list_is_answered_in_the_servers_order() {
    let p = pki();
    let mut cfg = tls_listener(&p, ClientAuth::None);
    if let Transport::Tls(t) = &mut cfg.transport {
        t.alpn = vec!["x-custom".to_owned(), "mqtt".to_owned()];
    }
    let offered: &[&[u8]] = &[b"mqtt", b"x-custom"];
    let (server, client_stream) = run(&cfg, client(&p.ca, None, offered, false)).await;
    assert!(server.is_ok());
    assert_eq!(
        client_stream.unwrap().get_ref().1.alpn_protocol(),
        Some(&b"x-custom"[..])
    );
    let (_, client_stream) = run(&cfg, client(&p.ca, None, &[b"mqtt"], false)).await;
    assert_eq!(
        client_stream.unwrap().get_ref().1.alpn_protocol(),
        Some(&b"mqtt"[..])
    );
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

// ---- Remembered client-certificate chains ---------------------------------
//
// A CA of the test's own (with an intermediate: the dev CA cannot sign one),
// leaves with chosen validity periods, and a server clock the test moves.

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The server's clock, in Unix seconds.
#[derive(Debug)]
struct Clock(AtomicU64);

impl Clock {
    fn set(&self, secs: u64) {
        self.0.store(secs, Ordering::SeqCst);
    }
}

impl TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(
            self.0.load(Ordering::SeqCst),
        )))
    }
}

/// A CA certificate with its key, able to sign more.
struct Issuer {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and key as a client presents them.
struct Identity {
    cert: CertificateDer<'static>,
    key: KeyPair,
}

fn params(cn: &str, valid_from: u64, valid_until: u64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = (UNIX_EPOCH + Duration::from_secs(valid_from)).into();
    p.not_after = (UNIX_EPOCH + Duration::from_secs(valid_until)).into();
    p
}

fn ca_params(cn: &str, valid_from: u64, valid_until: u64) -> CertificateParams {
    let mut p = params(cn, valid_from, valid_until);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn root(cn: &str) -> Issuer {
    let key = p256();
    let now = now_secs();
    let cert = ca_params(cn, now - 3600, now + 86_400)
        .self_signed(&key)
        .unwrap();
    Issuer { cert, key }
}

impl Issuer {
    fn intermediate(&self, cn: &str, valid_from: u64, valid_until: u64) -> Issuer {
        let key = p256();
        let cert = ca_params(cn, valid_from, valid_until)
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        Issuer { cert, key }
    }

    fn client(&self, cn: &str, valid_from: u64, valid_until: u64) -> Identity {
        let key = p256();
        let mut p = params(cn, valid_from, valid_until);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Identity {
            cert: cert.der().clone(),
            key,
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

/// Always presents one chain, signing with `key` (which need not match).
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesClientCert for Presents {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn presenting(
    server_ca: &Path,
    chain: Vec<CertificateDer<'static>>,
    key: &KeyPair,
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in read_pem_certs(server_ca) {
        roots.add(c).unwrap();
    }
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(Presents(Arc::new(CertifiedKey::new(
                chain, signer,
            )))));
    TlsConnector::from(Arc::new(config))
}

/// A listener requiring certificates from `trusted`, judged by `clock`.
struct MtlsServer {
    _pki: Pki,
    acceptors: Arc<TlsAcceptors>,
    clock: Arc<Clock>,
    server_ca: PathBuf,
}

fn mtls_server(trusted: &Issuer) -> MtlsServer {
    let p = pki();
    let ca = p.dir.path().join("client-ca.pem");
    fs::write(&ca, trusted.cert.pem()).unwrap();
    let settings = TlsSettings {
        cert: p.server_cert.clone(),
        key: p.server_key.clone(),
        client_auth: ClientAuth::Required { ca },
        username_from: Some(UsernameFrom::Cn),
        crls: Vec::new(),
        ocsp: None,
        dev_certs: false,
        certificates: Vec::new(),
        alpn: vec!["mqtt".to_owned()],
        cert_poll_interval: std::time::Duration::from_secs(5),
    };
    let clock = Arc::new(Clock(AtomicU64::new(now_secs())));
    let acceptors =
        TlsAcceptors::build_with_clock(&Arc::from("mtls"), &settings, clock.clone()).unwrap();
    MtlsServer {
        server_ca: p.ca.clone(),
        _pki: p,
        acceptors: Arc::new(acceptors),
        clock,
    }
}

impl MtlsServer {
    /// One handshake presenting `chain` signed with `key`; the server's result.
    async fn connect(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: &KeyPair,
    ) -> Result<PeerInfo, ListenerError> {
        let connector = presenting(&self.server_ca, chain, key);
        self.connect_with(&connector).await.0
    }

    /// One handshake by `connector`: the server's result, and how the
    /// client saw the handshake (full or resumed) if its side finished.
    async fn connect_with(
        &self,
        connector: &TlsConnector,
    ) -> (
        Result<PeerInfo, ListenerError>,
        Option<rustls::HandshakeKind>,
    ) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let hs = Handshaker {
            name: Arc::from("mtls"),
            tls: Some(Arc::new(ArcSwap::new(self.acceptors.clone()))),
            ws: None,
            failures: Arc::default(),
        };
        let server = tokio::spawn(async move {
            let (sock, peer) = tcp.accept().await.unwrap();
            hs.handshake(sock, peer).await.map(|(_, info)| info)
        });
        let sock = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut kind = None;
        if let Ok(mut c) = connector.connect(name, sock).await {
            kind = c.get_ref().1.handshake_kind();
            // TLS 1.3: the server judges the certificate after the client
            // is done; a write makes it final. Reading to the end takes in
            // whatever the server sent after the handshake (tickets).
            let _ = c.write_all(b"x").await;
            let _ = c.read_to_end(&mut Vec::new()).await;
        }
        (server.await.unwrap(), kind)
    }

    fn remembered(&self) -> usize {
        self.acceptors.chains().map_or(0, |c| c.len())
    }
}

fn refused(r: &Result<PeerInfo, ListenerError>) -> bool {
    matches!(r, Err(ListenerError::Handshake { .. }))
}

#[tokio::test]
async fn a_remembered_chain_gives_the_same_identity() {
    let ca = root("Test Root");
    let server = mtls_server(&ca);
    let now = now_secs();
    let alice = ca.client("alice", now - 60, now + 3600);
    let first = server
        .connect(vec![alice.cert.clone()], &alice.key)
        .await
        .unwrap();
    assert_eq!(server.remembered(), 1);
    let second = server
        .connect(vec![alice.cert.clone()], &alice.key)
        .await
        .unwrap();
    assert_eq!(server.remembered(), 1);
    assert_eq!(first.cert, second.cert);
    let info = second.cert.unwrap();
    assert_eq!(info.cn.as_deref(), Some("alice"));
    assert_eq!(
        info.fingerprint,
        hex::encode(Sha256::digest(alice.cert.as_ref()))
    );
}

#[tokio::test]
async fn a_remembered_certificate_is_refused_once_it_expires() {
    let ca = root("Test Root");
    let server = mtls_server(&ca);
    let now = now_secs();
    // Expires in a minute: well inside the cache's TTL.
    let alice = ca.client("alice", now - 60, now + 60);
    assert!(server
        .connect(vec![alice.cert.clone()], &alice.key)
        .await
        .is_ok());
    assert_eq!(server.remembered(), 1);
    server.clock.set(now + 120);
    let late = server.connect(vec![alice.cert.clone()], &alice.key).await;
    assert!(refused(&late), "{late:?}");
}

#[tokio::test]
async fn an_expired_intermediate_ends_a_remembered_chain() {
    let ca = root("Test Root");
    let server = mtls_server(&ca);
    let now = now_secs();
    let sub = ca.intermediate("Test Sub", now - 60, now + 60);
    let alice = sub.client("alice", now - 60, now + 3600);
    let chain = vec![alice.cert.clone(), sub.der()];
    assert!(server.connect(chain.clone(), &alice.key).await.is_ok());
    server.clock.set(now + 120);
    let late = server.connect(chain, &alice.key).await;
    assert!(refused(&late), "{late:?}");
}

#[tokio::test]
async fn expired_or_foreign_certificates_are_refused_after_a_good_one() {
    let ca = root("Test Root");
    let server = mtls_server(&ca);
    let now = now_secs();
    let alice = ca.client("alice", now - 60, now + 3600);
    assert!(server
        .connect(vec![alice.cert.clone()], &alice.key)
        .await
        .is_ok());

    let expired = ca.client("alice", now - 7200, now - 3600);
    let r = server
        .connect(vec![expired.cert.clone()], &expired.key)
        .await;
    assert!(refused(&r), "{r:?}");

    // Same subject, issued by a CA with the same name but another key.
    let impostor_ca = root("Test Root");
    let mallory = impostor_ca.client("alice", now - 60, now + 3600);
    let r = server
        .connect(vec![mallory.cert.clone()], &mallory.key)
        .await;
    assert!(refused(&r), "{r:?}");
    assert_eq!(server.remembered(), 1);
}

#[tokio::test]
async fn a_remembered_certificate_still_needs_its_key() {
    let ca = root("Test Root");
    let server = mtls_server(&ca);
    let now = now_secs();
    let alice = ca.client("alice", now - 60, now + 3600);
    assert!(server
        .connect(vec![alice.cert.clone()], &alice.key)
        .await
        .is_ok());
    // Alice's certificate, but not her key: CertificateVerify fails.
    let r = server.connect(vec![alice.cert.clone()], &p256()).await;
    assert!(refused(&r), "{r:?}");
}

#[tokio::test]
async fn a_changed_chain_is_verified_anew() {
    let ca = root("Test Root");
    let server = mtls_server(&ca);
    let now = now_secs();
    let sub = ca.intermediate("Test Sub", now - 60, now + 3600);
    let alice = sub.client("alice", now - 60, now + 3600);
    assert!(server
        .connect(vec![alice.cert.clone(), sub.der()], &alice.key)
        .await
        .is_ok());
    // The same leaf without the intermediate that links it to the root.
    let r = server.connect(vec![alice.cert.clone()], &alice.key).await;
    assert!(refused(&r), "{r:?}");
    // Or behind an intermediate of the same name that the root never signed.
    let forged = root("Test Root").intermediate("Test Sub", now - 60, now + 3600);
    let r = server
        .connect(vec![alice.cert.clone(), forged.der()], &alice.key)
        .await;
    assert!(refused(&r), "{r:?}");
}

#[tokio::test]
async fn a_client_certificate_listener_never_resumes_a_session() {
    let ca = root("Test Root");
    let server = mtls_server(&ca);
    let now = now_secs();
    let alice = ca.client("alice", now - 60, now + 3600);
    // One client config, so its session cache would offer what it got.
    let connector = presenting(&server.server_ca, vec![alice.cert.clone()], &alice.key);
    for _ in 0..2 {
        let (result, kind) = server.connect_with(&connector).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    }
}

/// Counts the chain verifications that reach webpki.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ClientCertVerifier>,
    calls: AtomicUsize,
}

impl ClientCertVerifier for Counting {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[test]
fn path_building_is_skipped_only_inside_ttl_and_capacity() {
    let ca = root("Test Root");
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let webpki = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let counting = Arc::new(Counting {
        inner: webpki,
        calls: AtomicUsize::new(0),
    });
    let chains = Arc::new(VerifiedChains::new(300, 2));
    let verifier = CachingVerifier::new(counting.clone(), chains.clone());
    let now = now_secs();
    let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
    let (a, b, c) = (
        ca.client("a", now - 60, now + 3600),
        ca.client("b", now - 60, now + 3600),
        ca.client("c", now - 60, now + 3600),
    );
    let calls = || counting.calls.load(Ordering::SeqCst);

    verifier.verify_client_cert(&a.cert, &[], at(now)).unwrap();
    verifier
        .verify_client_cert(&a.cert, &[], at(now + 299))
        .unwrap();
    assert_eq!(calls(), 1, "a second look within the TTL");
    verifier
        .verify_client_cert(&a.cert, &[], at(now + 300))
        .unwrap();
    assert_eq!(calls(), 2, "past the TTL: verified anew");

    // Capacity 2: a third chain pushes one out; the cache never grows past it.
    verifier
        .verify_client_cert(&b.cert, &[], at(now + 300))
        .unwrap();
    verifier
        .verify_client_cert(&c.cert, &[], at(now + 300))
        .unwrap();
    assert_eq!(chains.len(), 2);
    assert_eq!(calls(), 4);

    // A refused chain is never remembered.
    let stranger = root("Other").client("d", now - 60, now + 3600);
    assert!(verifier
        .verify_client_cert(&stranger.cert, &[], at(now + 300))
        .is_err());
    assert!(verifier
        .verify_client_cert(&stranger.cert, &[], at(now + 300))
        .is_err());
    assert_eq!(calls(), 6);
}
