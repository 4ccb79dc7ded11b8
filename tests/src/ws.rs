//! WebSocket clients for the ws and wss listeners: a raw one
//! (tokio-tungstenite) that sends exactly the frames a test asks for, and
//! [`WsIo`], which carries a byte stream in binary frames so that a
//! [`RawClient`] speaks MQTT over a WebSocket as it does over TCP.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
pub use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::raw::RawClient;

pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}

pub type WsConn = WebSocketStream<Box<dyn IoStream>>;

/// How to ask for the upgrade.
#[derive(Clone, Debug)]
pub struct Upgrade {
    pub path: String,
    /// The `Sec-WebSocket-Protocol` header, e.g. "mqtt" or "chat, mqttv3.1".
    pub protocols: Option<String>,
    pub origin: Option<String>,
    /// TLS (wss) with this client configuration; the name asked for is
    /// `server_name` when given, else 127.0.0.1.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub server_name: Option<String>,
}

impl Upgrade {
    /// `/mqtt` with subprotocol `mqtt`, no origin, plain.
    pub fn mqtt() -> Self {
        Self {
            path: "/mqtt".into(),
            protocols: Some("mqtt".into()),
            origin: None,
            tls: None,
            server_name: None,
        }
    }

    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

/// Connects and upgrades; the server's refusal (404, 403, 400) is
/// `Err(tungstenite::Error::Http(response))`.
pub async fn connect(
    addr: SocketAddr,
    up: &Upgrade,
) -> Result<(WsConn, Response), tungstenite::Error> {
    let scheme = if up.tls.is_some() { "wss" } else { "ws" };
    let mut request =
        format!("{scheme}://127.0.0.1:{}{}", addr.port(), up.path).into_client_request()?;
    let headers = request.headers_mut();
    if let Some(p) = &up.protocols {
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(p).expect("protocol header"),
        );
    }
    if let Some(o) = &up.origin {
        headers.insert("Origin", HeaderValue::from_str(o).expect("origin header"));
    }
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn IoStream> = match &up.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = match &up.server_name {
                Some(n) => ServerName::try_from(n.clone()).expect("server name"),
                None => ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
            };
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            Box::new(connector.connect(name, tcp).await?)
        }
    };
    tokio_tungstenite::client_async(request, stream).await
}

/// A [`RawClient`] over a WebSocket (each write one binary frame).
pub async fn raw(addr: SocketAddr, up: &Upgrade) -> Result<RawClient, tungstenite::Error> {
    let (ws, _) = connect(addr, up).await?;
    Ok(RawClient::from_stream(Box::new(WsIo::new(ws))))
}

/// The negotiated subprotocol of a handshake response.
pub fn protocol(resp: &Response) -> Option<String> {
    resp.headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A byte stream over binary frames.
pub struct WsIo {
    ws: WsConn,
    chunk: Bytes,
    eof: bool,
}

impl WsIo {
    pub fn new(ws: WsConn) -> Self {
        Self {
            ws,
            chunk: Bytes::new(),
            eof: false,
        }
    }
}

fn io_err(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::ErrorKind::BrokenPipe.into()
        }
        // A reset without a close frame: the broker dropped the connection.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => io::ErrorKind::ConnectionReset.into(),
        other => io::Error::other(other),
    }
}

impl AsyncRead for WsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(buf.remaining());
                buf.put_slice(&this.chunk[..n]);
                this.chunk.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => this.chunk = b,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::other("text frame from the broker")))
                }
                Some(Ok(_)) => {}
                None
                | Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_err)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_err)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_err)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_err(e))),
        }
    }
}
