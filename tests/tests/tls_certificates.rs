//! Server certificates of a running broker: chosen by SNI, reloaded when the
//! files change (and on SIGHUP) without dropping connections, ALPN answered,
//! and failed handshakes logged at INFO, rate-limited.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use warden_e2e::*;

/// Listeners: `sni` (default server.pem, plus a.pem for a.test and
/// *.b.test), `rot` (rotated by file change, polled every 200 ms) and
/// `hup` (rotated by SIGHUP only: polled hourly).
fn start() -> TestBroker {
    TestBroker::start(BrokerOptions {
        server_certs: vec![
            ("a", vec!["a.test"]),
            ("b", vec!["*.b.test"]),
            ("rot", vec!["127.0.0.1"]),
            ("rot-next", vec!["127.0.0.1"]),
            ("hup", vec!["127.0.0.1"]),
            ("hup-next", vec!["127.0.0.1"]),
        ],
        extra_listeners: "  - name: sni
    kind: tls
    bind: \"127.0.0.1:0\"
    cert: @DIR@/server.pem
    key: @DIR@/server.key
    certificates:
      - { cert: @DIR@/a.pem, key: @DIR@/a.key }
      - { cert: @DIR@/b.pem, key: @DIR@/b.key, hostnames: [\"*.b.test\"] }
    alpn: [x-custom, mqtt]
  - name: rot
    kind: tls
    bind: \"127.0.0.1:0\"
    cert: @DIR@/rot.pem
    key: @DIR@/rot.key
    cert_poll_interval: 200ms
  - name: hup
    kind: wss
    bind: \"127.0.0.1:0\"
    cert: @DIR@/hup.pem
    key: @DIR@/hup.key
    cert_poll_interval: 1h
"
        .to_owned(),
        extra_listener_count: 3,
        ..Default::default()
    })
}

/// Handshakes with `name` (SNI; an IP address sends none) offering `alpn`;
/// the server's leaf certificate and the negotiated protocol.
async fn handshake(
    broker: &TestBroker,
    addr: SocketAddr,
    name: &str,
    alpn: &[&str],
) -> (CertificateDer<'static>, Option<Vec<u8>>) {
    let mut config = Arc::unwrap_or_clone(raw::tls_config(broker.ca_pem(), None));
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let server_name = ServerName::try_from(name.to_owned()).expect("name");
    let tls = tokio::time::timeout(WAIT, connector.connect(server_name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake verifies against the test CA");
    let conn = tls.get_ref().1;
    let leaf = conn.peer_certificates().expect("server certificate")[0].clone();
    (leaf.into_owned(), conn.alpn_protocol().map(<[u8]>::to_vec))
}

fn der_of(path: &Path) -> CertificateDer<'static> {
    let pem = std::fs::read(path).expect("read cert");
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .expect("one certificate")
        .expect("PEM");
    der
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_is_answered() {
    let broker = start();
    let d = broker.dir.path();
    let addr = broker.addr("sni");
    let (leaf, alpn) = handshake(&broker, addr, "a.test", &["mqtt"]).await;
    assert_eq!(leaf, der_of(&d.join("a.pem")), "a.test gets a.pem");
    assert_eq!(alpn.as_deref(), Some(&b"mqtt"[..]));
    let (leaf, alpn) = handshake(&broker, addr, "x.b.test", &["mqtt", "x-custom"]).await;
    assert_eq!(leaf, der_of(&d.join("b.pem")), "*.b.test gets b.pem");
    assert_eq!(
        alpn.as_deref(),
        Some(&b"x-custom"[..]),
        "the server's order"
    );
    let (leaf, alpn) = handshake(&broker, addr, "127.0.0.1", &["h2"]).await;
    assert_eq!(leaf, der_of(&d.join("server.pem")), "no SNI: the default");
    assert_eq!(alpn, None, "no common protocol: served without ALPN");
    let (_, alpn) = handshake(&broker, broker.tls_addr(), "localhost", &["mqtt"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"mqtt"[..]), "the default list");
    // wss listeners answer ALPN too.
    let (_, alpn) = handshake(&broker, broker.addr("hup"), "127.0.0.1", &["mqtt"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"mqtt"[..]));
}

/// Replaces `stem`.pem/.key with `next`.pem/.key by renames (key first).
fn rotate(dir: &Path, stem: &str, next: &str) {
    for ext in ["key", "pem"] {
        let tmp = dir.join(format!("{stem}.{ext}.new"));
        std::fs::copy(dir.join(format!("{next}.{ext}")), &tmp).expect("copy");
        std::fs::rename(&tmp, dir.join(format!("{stem}.{ext}"))).expect("rename");
    }
}

#[tokio::test]
async fn certificates_reload_on_file_change_and_on_sighup_without_dropping_clients() {
    let broker = start();
    broker.add_user("alice", "pw", &[]).await;
    let d = broker.dir.path().to_path_buf();
    let rot = broker.addr("rot");
    let first = der_of(&d.join("rot.pem"));
    assert_eq!(handshake(&broker, rot, "127.0.0.1", &[]).await.0, first);
    let mut live = RawClient::tls(rot, broker.ca_pem(), None)
        .await
        .expect("tls");
    let (_, code, _) = live
        .connect(&Connect::new(Version::V5, &client_id("live")).login("alice", "pw"))
        .await
        .expect("CONNACK");
    assert_eq!(code, 0);

    rotate(&d, "rot", "rot-next");
    let next = der_of(&d.join("rot-next.pem"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if handshake(&broker, rot, "127.0.0.1", &[]).await.0 == next {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a new handshake still gets the old certificate 5 s after the change:\n{}",
            broker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(broker.log().contains("certificate files changed: reloaded"));
    // The connection made before the change is still up.
    live.send(&wire::encode_pingreq()).await.expect("ping");
    assert!(matches!(live.recv(WAIT).await, Ok(Incoming::PingResp)));

    // Polled hourly: only SIGHUP makes this listener read its files.
    let hup = broker.addr("hup");
    let old = der_of(&d.join("hup.pem"));
    rotate(&d, "hup", "hup-next");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handshake(&broker, hup, "127.0.0.1", &[]).await.0, old);
    broker.signal("HUP");
    assert!(
        broker.wait_log("config reloaded", WAIT).await,
        "{}",
        broker.log()
    );
    assert_eq!(
        handshake(&broker, hup, "127.0.0.1", &[]).await.0,
        der_of(&d.join("hup-next.pem"))
    );
    live.send(&wire::encode_pingreq()).await.expect("ping");
    assert!(matches!(live.recv(WAIT).await, Ok(Incoming::PingResp)));
}

#[tokio::test]
async fn failed_handshakes_are_logged_at_info_and_rate_limited() {
    let broker = start();
    let addr = broker.addr("sni");
    for _ in 0..25 {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let _ = tcp.shutdown().await;
    }
    assert!(
        broker.wait_log("handshake failed: TLS", WAIT).await,
        "{}",
        broker.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = broker.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("handshake failed") && l.contains("listener=sni"))
        .collect();
    assert!(lines[0].contains("INFO"), "{}", lines[0]);
    assert!(lines[0].contains("peer=127.0.0.1:"), "{}", lines[0]);
    assert_eq!(
        lines.len(),
        10,
        "at most 10 per 10 s:\n{}",
        lines.join("\n")
    );
}
