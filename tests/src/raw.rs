//! A raw MQTT client over TLS or TCP: sends exactly the bytes a test asks for
//! (well-formed packets from `wire`, or hand-made malformed ones) and reads the
//! broker's replies one packet at a time, so tests can assert exact reason
//! codes, packet ids, flags and the moment the broker closes the connection.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::certs::CertFiles;
use crate::wire::{self, Connect, Incoming, Props, Publish, Sub, Version};
use crate::wire_decode;

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How a read from the broker ended when it did not give a packet.
#[derive(Debug)]
pub enum RawError {
    Timeout,
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// The TLS layer failed, e.g. an alert from the server during the handshake.
    Tls(rustls::Error),
    Io(io::Error),
    Malformed(wire::Malformed),
}

impl From<io::Error> for RawError {
    fn from(e: io::Error) -> Self {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return RawError::Tls(tls.clone());
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => RawError::Closed,
            _ => RawError::Io(e),
        }
    }
}

/// How a connection ended: the packets read before the end, and the end.
#[derive(Debug)]
pub struct Ending {
    pub packets: Vec<Incoming>,
    pub end: RawError,
}

impl Ending {
    /// The reason code of a DISCONNECT sent before the close, if any.
    pub fn disconnect_code(&self) -> Option<u8> {
        self.packets.iter().find_map(|p| match p {
            Incoming::Disconnect { code, .. } => Some(*code),
            _ => None,
        })
    }
}

pub struct RawClient {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    stash: VecDeque<Incoming>,
    pub version: Version,
    /// Acknowledge QoS 1/2 PUBLISHes as `next_publish` reads them.
    pub auto_ack: bool,
    next_id: u16,
    /// When `Some`, every byte read from the broker is appended here (for
    /// decoding the same bytes with another decoder).
    pub transcript: Option<Vec<u8>>,
}

/// The rustls client configuration trusting `ca_pem`, optionally with a client
/// certificate.
pub fn tls_config(ca_pem: &str, client: Option<&CertFiles>) -> Arc<rustls::ClientConfig> {
    tls_config_versions(ca_pem, client, rustls::DEFAULT_VERSIONS)
}

/// As `tls_config`, restricted to the given TLS versions.
pub fn tls_config_versions(
    ca_pem: &str,
    client: Option<&CertFiles>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let certs: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut files.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client cert PEM");
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut files.key_pem.as_bytes())
                    .expect("client key PEM")
                    .expect("a client key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
    };
    Arc::new(config)
}

impl RawClient {
    fn with_stream(stream: Box<dyn Stream>) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(4096),
            stash: VecDeque::new(),
            version: Version::V311,
            auto_ack: true,
            next_id: 0,
            transcript: None,
        }
    }

    /// Over any byte stream (e.g. a WebSocket adapter, `ws::WsIo`).
    pub fn from_stream(stream: Box<dyn Stream>) -> Self {
        Self::with_stream(stream)
    }

    /// Plain TCP.
    pub async fn tcp(addr: SocketAddr) -> io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Self::with_stream(Box::new(tcp)))
    }

    /// TLS trusting `ca_pem`, with an optional client certificate. A handshake
    /// refused by the server is `RawError::Tls` (here, or with TLS 1.3 client
    /// auth on the first read, since the client finishes first).
    pub async fn tls(
        addr: SocketAddr,
        ca_pem: &str,
        client: Option<&CertFiles>,
    ) -> Result<Self, RawError> {
        Self::tls_with(addr, tls_config(ca_pem, client)).await
    }

    /// TLS with a given client configuration.
    pub async fn tls_with(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<Self, RawError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let tls = timeout(Duration::from_secs(5), connector.connect(name, tcp))
            .await
            .map_err(|_| RawError::Timeout)??;
        Ok(Self::with_stream(Box::new(tls)))
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), RawError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads the next packet (kept ones first), waiting at most `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Result<Incoming, RawError> {
        if let Some(p) = self.stash.pop_front() {
            return Ok(p);
        }
        self.read_packet(wait).await
    }

    /// Reads the next packet from the connection, ignoring kept ones.
    async fn read_packet(&mut self, wait: Duration) -> Result<Incoming, RawError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((first, body)) =
                wire_decode::split_frame(&mut self.buf).map_err(RawError::Malformed)?
            {
                return wire_decode::decode(first, body, self.version).map_err(RawError::Malformed);
            }
            let before = self.buf.len();
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| RawError::Timeout)??;
            if let Some(t) = self.transcript.as_mut() {
                t.extend_from_slice(self.buf.get(before..).unwrap_or_default());
            }
            if read == 0 {
                return Err(RawError::Closed);
            }
        }
    }

    /// The first packet matching `want`, from those kept earlier or read now
    /// (at most `wait`); the others are kept, in order, for later reads.
    pub async fn wait_for(
        &mut self,
        wait: Duration,
        want: impl Fn(&Incoming) -> bool,
    ) -> Result<Incoming, RawError> {
        if let Some(p) = self
            .stash
            .iter()
            .position(&want)
            .and_then(|i| self.stash.remove(i))
        {
            return Ok(p);
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = self.read_packet(left).await?;
            if want(&p) {
                return Ok(p);
            }
            self.stash.push_back(p);
        }
    }

    /// Sends CONNECT and returns the CONNACK (session present, code, props).
    pub async fn connect(&mut self, c: &Connect) -> Result<(bool, u8, Props), RawError> {
        self.version = c.version;
        self.send(&wire::encode_connect(c)).await?;
        match self.recv(Duration::from_secs(5)).await? {
            Incoming::ConnAck {
                session_present,
                code,
                props,
            } => Ok((session_present, code, props)),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn publish(&mut self, p: &Publish) -> Result<(), RawError> {
        self.send(&wire::encode_publish(p, self.version)).await
    }

    /// Publishes and completes the sender's side of the QoS flow; returns the
    /// PUBACK (QoS 1) or PUBREC (QoS 2) reason code, 0 for QoS 0. A packet id
    /// of 0 is replaced by a fresh one.
    pub async fn publish_acked(&mut self, mut p: Publish) -> u8 {
        if p.qos == 0 {
            self.publish(&p).await.expect("send PUBLISH");
            return 0;
        }
        if p.packet_id == 0 {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            p.packet_id = self.next_id;
        }
        self.publish(&p).await.expect("send PUBLISH");
        let id = p.packet_id;
        if p.qos == 1 {
            return match self
                .expect(
                    "PUBACK",
                    |i| matches!(i, Incoming::PubAck { packet_id, .. } if *packet_id == id),
                )
                .await
            {
                Incoming::PubAck { code, .. } => code,
                other => panic!("expected PUBACK, got {other:?}"),
            };
        }
        let code = match self
            .expect(
                "PUBREC",
                |i| matches!(i, Incoming::PubRec { packet_id, .. } if *packet_id == id),
            )
            .await
        {
            Incoming::PubRec { code, .. } => code,
            other => panic!("expected PUBREC, got {other:?}"),
        };
        if code < 0x80 {
            self.send(&wire::encode_ack(0x62, id))
                .await
                .expect("PUBREL");
            self.expect(
                "PUBCOMP",
                |i| matches!(i, Incoming::PubComp { packet_id, .. } if *packet_id == id),
            )
            .await;
        }
        code
    }

    /// Subscribes and returns the SUBACK reason codes, one per filter.
    pub async fn subscribe_with(&mut self, packet_id: u16, subs: &[Sub], props: &Props) -> Vec<u8> {
        let bytes = wire::encode_subscribe(packet_id, subs, props, self.version);
        self.send(&bytes).await.expect("send SUBSCRIBE");
        let wait = Duration::from_secs(5);
        match self
            .wait_for(wait, |p| matches!(p, Incoming::SubAck { .. }))
            .await
        {
            Ok(Incoming::SubAck {
                packet_id: id,
                codes,
            }) => {
                assert_eq!(id, packet_id, "SUBACK packet id");
                codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> u8 {
        let codes = self
            .subscribe_with(1, &[Sub::new(filter, qos)], &Props::default())
            .await;
        assert_eq!(codes.len(), 1, "one SUBACK code per filter");
        codes[0]
    }

    /// Waits for an acknowledgement packet (PUBACK/PUBREC/PUBCOMP/UNSUBACK…).
    pub async fn expect(&mut self, what: &str, want: impl Fn(&Incoming) -> bool) -> Incoming {
        match self.wait_for(Duration::from_secs(5), want).await {
            Ok(p) => p,
            Err(e) => panic!("waiting for {what}: {e:?}"),
        }
    }

    /// The next PUBLISH within `wait`, or None. With `auto_ack`, QoS 1 is
    /// acknowledged with PUBACK and QoS 2 with PUBREC, then PUBREL → PUBCOMP.
    pub async fn next_publish(&mut self, wait: Duration) -> Option<Publish> {
        let got = self
            .wait_for(wait, |p| matches!(p, Incoming::Publish(_)))
            .await;
        let p = match got {
            Ok(Incoming::Publish(p)) => p,
            Ok(_) | Err(RawError::Timeout) => return None,
            Err(e) => panic!("reading PUBLISH: {e:?}"),
        };
        if self.auto_ack {
            self.ack(&p).await;
        }
        Some(p)
    }

    /// Acknowledges a received PUBLISH as the receiving side of its QoS flow.
    pub async fn ack(&mut self, p: &Publish) {
        match p.qos {
            1 => self
                .send(&wire::encode_ack(0x40, p.packet_id))
                .await
                .expect("PUBACK"),
            2 => {
                self.send(&wire::encode_ack(0x50, p.packet_id))
                    .await
                    .expect("PUBREC");
                let id = p.packet_id;
                self.expect(
                    "PUBREL",
                    |i| matches!(i, Incoming::PubRel { packet_id, .. } if *packet_id == id),
                )
                .await;
                self.send(&wire::encode_ack(0x70, id))
                    .await
                    .expect("PUBCOMP");
            }
            _ => {}
        }
    }

    /// Asserts that no PUBLISH arrives within `wait`.
    pub async fn expect_no_publish(&mut self, wait: Duration, why: &str) {
        if let Some(p) = self.next_publish(wait).await {
            panic!("{why}: unexpected PUBLISH {p:?}");
        }
    }

    /// Reads until the broker ends the connection; panics if it is still open
    /// after `wait`.
    pub async fn ending(&mut self, wait: Duration) -> Ending {
        let deadline = Instant::now() + wait;
        let mut packets = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Ok(p) => packets.push(p),
                Err(RawError::Timeout) => {
                    panic!("connection still open after {wait:?}; read {packets:?}")
                }
                Err(end) => return Ending { packets, end },
            }
        }
    }

    /// Sends a normal DISCONNECT (0x00).
    pub async fn disconnect(&mut self) {
        let bytes = wire::encode_disconnect(self.version, 0);
        let _ = self.send(&bytes).await;
        let _ = self.stream.shutdown().await;
    }
}
