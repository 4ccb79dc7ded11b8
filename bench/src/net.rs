//! Connecting to a broker: TCP or TLS (optionally with a client
//! certificate), the CONNECT/CONNACK exchange and SUBSCRIBE/SUBACK, all with
//! warden-codec on a plain byte stream.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use warden_codec::{
    decode, encode, Connect, Packet, Properties, ProtocolVersion, Subscribe, SubscribeFilter,
};

/// Packets larger than this from the broker are a protocol failure here.
pub const MAX_PACKET: u32 = 1 << 20;
/// All traffic is MQTT 3.1.1: every broker compared speaks it.
pub const VERSION: ProtocolVersion = ProtocolVersion::V311;

/// A byte stream to the broker, TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
pub type BoxStream = Box<dyn Stream>;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Some` for TLS.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Local addresses to bind, round robin (empty: let the kernel choose).
    pub sources: Vec<IpAddr>,
    /// `Some(path)`: MQTT over WebSocket (ws, or wss with TLS) at this path.
    pub ws_path: Option<String>,
}

/// Builds a TLS client without session resumption, so that every connect
/// is a full handshake.
pub fn tls_connector(ca: &str, client_cert: Option<(&str, &str)>) -> Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(ca).with_context(|| format!("reading CA {ca}"))?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let cert_pem = std::fs::read(cert).with_context(|| format!("reading {cert}"))?;
            let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let key_pem = std::fs::read(key).with_context(|| format!("reading {key}"))?;
            let key = rustls_pemfile::private_key(&mut key_pem.as_slice())?
                .ok_or_else(|| anyhow!("no private key in {key}"))?;
            builder.with_client_auth_cert(certs, key)?
        }
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Target {
    /// Opens the transport (TCP connect, then the TLS handshake if any).
    /// `n` picks the source address round robin.
    pub async fn open(&self, n: usize) -> Result<BoxStream> {
        let tcp = match self.sources.get(n % self.sources.len().max(1)) {
            None => TcpStream::connect(self.addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(*ip, 0))?;
                socket.connect(self.addr).await?
            }
        };
        tcp.set_nodelay(true)?;
        let stream: BoxStream = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
        };
        match &self.ws_path {
            None => Ok(stream),
            Some(path) => {
                let authority = self.addr.to_string();
                crate::ws::upgrade(stream, self.tls.is_some(), &authority, path).await
            }
        }
    }
}

/// Credentials of one connection.
#[derive(Clone, Debug)]
pub struct Login {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// CONNECT keep-alive in seconds; 0 (none) unless a broker refuses it.
    pub keep_alive: u16,
    /// Clean session; `false` asks for a persistent session (MQTT 3.1.1
    /// clean session 0: kept by the broker after the connection ends).
    pub clean: bool,
}

/// Sends `packet` and flushes.
pub async fn send(stream: &mut BoxStream, packet: &Packet) -> Result<()> {
    let mut buf = BytesMut::new();
    encode(packet, VERSION, &mut buf)?;
    stream.write_all(&buf).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads until one whole packet is decoded; bytes after it stay in `buf`.
pub async fn read_packet(stream: &mut BoxStream, buf: &mut BytesMut) -> Result<Packet> {
    loop {
        if let Some(packet) = decode(buf, Some(VERSION), MAX_PACKET)? {
            return Ok(packet);
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("connection closed by the broker");
        }
    }
}

/// Opens a connection and completes CONNECT/CONNACK. Returns the stream and
/// any bytes read past the CONNACK.
pub async fn connect(target: &Target, n: usize, login: &Login) -> Result<(BoxStream, BytesMut)> {
    let (stream, buf, _) = connect_session(target, n, login).await?;
    Ok((stream, buf))
}

/// As [`connect`], also returning the CONNACK's session-present flag.
pub async fn connect_session(
    target: &Target,
    n: usize,
    login: &Login,
) -> Result<(BoxStream, BytesMut, bool)> {
    let mut stream = target.open(n).await?;
    let connect = Packet::Connect(Connect {
        protocol: VERSION,
        clean_start: login.clean,
        keep_alive: login.keep_alive,
        client_id: login.client_id.clone(),
        will: None,
        username: login.username.clone(),
        password: login.password.clone().map(Bytes::from),
        properties: Properties::default(),
    });
    send(&mut stream, &connect).await?;
    let mut buf = BytesMut::with_capacity(4096);
    match read_packet(&mut stream, &mut buf).await? {
        Packet::ConnAck(ack) if ack.code == 0 => Ok((stream, buf, ack.session_present)),
        Packet::ConnAck(ack) => bail!("CONNACK refused {}: code {}", login.client_id, ack.code),
        other => bail!("expected CONNACK, got packet type {}", other.packet_type()),
    }
}

/// Subscribes to `filter` and waits for a SUBACK that grants it.
pub async fn subscribe(
    stream: &mut BoxStream,
    buf: &mut BytesMut,
    filter: &str,
    qos: u8,
) -> Result<()> {
    let sub = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter {
            filter: filter.to_string(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }],
        properties: Properties::default(),
    });
    send(stream, &sub).await?;
    match read_packet(stream, buf).await? {
        Packet::SubAck(ack) if ack.codes.iter().all(|c| *c < 0x80) => Ok(()),
        Packet::SubAck(ack) => bail!("SUBACK refused {filter}: {:?}", ack.codes),
        other => bail!("expected SUBACK, got packet type {}", other.packet_type()),
    }
}

/// An encoded DISCONNECT (normal).
pub fn encode_disconnect() -> Result<BytesMut> {
    let mut buf = BytesMut::new();
    let bye = Packet::Disconnect(warden_codec::Disconnect {
        reason: 0,
        properties: Properties::default(),
    });
    encode(&bye, VERSION, &mut buf)?;
    Ok(buf)
}
