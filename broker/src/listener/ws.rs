//! MQTT over WebSocket (ws and wss listeners): the HTTP upgrade, checked
//! against the listener's path, allowed origins and the MQTT subprotocols,
//! and [`WsStream`], which carries the MQTT byte stream in binary frames so
//! that nothing above the listener knows the transport.
//!
//! MQTT packets are a byte stream here as on TCP: a packet may span frames
//! and a frame may hold several packets (MQTT 5.0 §6.0), so frames are
//! concatenated and the connection's decoder does the rest. Each write of
//! the connection (one batch of packets) goes out as one binary frame; its
//! bytes are staged in a buffer that tungstenite hands back as soon as it
//! has framed them, so a steady stream of writes allocates nothing.
//! Pings are answered and a close is echoed by tungstenite while reading.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::ListenerError;
use crate::config::WsSettings;

/// The subprotocols MQTT defines, in the order we prefer them when a client
/// offers both (MQTT 3.1.1 and 5.0 use `mqtt`, 3.1 used `mqttv3.1`).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// The read buffer tungstenite keeps per connection: small, because most
/// connections are idle and MQTT messages are mostly small.
const READ_BUFFER: usize = 8 * 1024;

/// Why an upgrade request is refused, and the HTTP status it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    WrongPath(String),
    OriginNotAllowed(Option<String>),
    NoMqttSubprotocol(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::WrongPath(_) => StatusCode::NOT_FOUND,
            Refusal::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Refusal::NoMqttSubprotocol(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// For the log and the response body; what the client sent is quoted
    /// (escaped) and cut short.
    fn message(&self) -> String {
        match self {
            Refusal::WrongPath(p) => format!("no WebSocket endpoint at {:?}", clip(p)),
            Refusal::OriginNotAllowed(Some(o)) => format!("origin {:?} not allowed", clip(o)),
            Refusal::OriginNotAllowed(None) => {
                "no Origin header, and origins are restricted".into()
            }
            Refusal::NoMqttSubprotocol(offered) => format!(
                "subprotocols {:?} offered, none of mqtt, mqttv3.1",
                clip(offered)
            ),
        }
    }
}

/// At most 100 characters of client-supplied text.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(100) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// What the upgrade answers: the subprotocol to confirm (none when the
/// client offered none), or why it is refused.
pub(super) fn check(
    settings: &WsSettings,
    path: &str,
    origin: Option<&str>,
    offered: &[&str],
) -> Result<Option<&'static str>, Refusal> {
    if path != settings.path {
        return Err(Refusal::WrongPath(path.to_owned()));
    }
    if !settings.allowed_origins.is_empty() {
        let allowed = origin.is_some_and(|o| {
            let o = o.trim().trim_end_matches('/');
            settings
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o))
        });
        if !allowed {
            return Err(Refusal::OriginNotAllowed(origin.map(str::to_owned)));
        }
    }
    if offered.is_empty() {
        // The spec wants "mqtt", but tools without subprotocols are common
        // and lose nothing by being served.
        return Ok(None);
    }
    // The client's order decides among the ones we speak.
    offered
        .iter()
        .find_map(|o| SUBPROTOCOLS.iter().find(|s| s.eq_ignore_ascii_case(o)))
        .map(|s| Some(*s))
        .ok_or_else(|| Refusal::NoMqttSubprotocol(offered.join(", ")))
}

/// Runs the HTTP upgrade on `stream` (TCP, or TLS already handshaken).
// The callback's signature, with its large error (an HTTP response), is
// tungstenite's.
#[allow(clippy::result_large_err)]
pub(super) async fn accept<S>(
    stream: S,
    peer: SocketAddr,
    settings: &WsSettings,
) -> Result<WsStream<S>, ListenerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut refusal = None;
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let headers = req.headers();
        let origin = headers
            .get(header::ORIGIN)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let offered: Vec<&str> = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        match check(settings, req.uri().path(), origin.as_deref(), &offered) {
            Ok(chosen) => {
                if let Some(p) = chosen {
                    resp.headers_mut()
                        .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
                }
                Ok(resp)
            }
            Err(why) => {
                let mut err = ErrorResponse::new(Some(why.message()));
                *err.status_mut() = why.status();
                refusal = Some(why);
                Err(err)
            }
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(settings.max_message_size))
        .max_frame_size(Some(settings.max_message_size));
    let result =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await;
    match result {
        Ok(ws) => Ok(WsStream::new(ws)),
        Err(err) => Err(ListenerError::WebSocket {
            peer,
            message: match refusal {
                Some(why) => format!("upgrade refused: {}", why.message()),
                None => format!("upgrade failed: {err}"),
            },
        }),
    }
}

/// An MQTT byte stream over a WebSocket connection.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary frame.
    chunk: Bytes,
    /// The peer closed (or the connection is gone): reads give EOF.
    eof: bool,
    /// Staging for outgoing frames; tungstenite copies a frame into its
    /// own buffer when it is sent and drops our handle, so `reserve` finds
    /// the allocation unshared again and reuses it.
    out: BytesMut,
}

impl<S> std::fmt::Debug for WsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("buffered", &self.chunk.len())
            .field("eof", &self.eof)
            .finish()
    }
}

impl<S> WsStream<S> {
    fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            chunk: Bytes::new(),
            eof: false,
            out: BytesMut::new(),
        }
    }
}

fn io_error(err: WsError) -> io::Error {
    match err {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
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
                Some(Ok(Message::Binary(data))) => this.chunk = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame: MQTT over WebSocket uses binary frames only",
                    )))
                }
                // tungstenite queued the echo; the next poll sends it and
                // then reports the end.
                Some(Ok(Message::Close(_))) => {}
                // Pongs are queued by tungstenite and sent on the next poll.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    this.eof = true;
                }
                Some(Err(err)) => return Poll::Ready(Err(io_error(err))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        this.out.reserve(buf.len());
        this.out.extend_from_slice(buf);
        let frame = this.out.split().freeze();
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(frame))
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(err) => Poll::Ready(Err(io_error(err))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> WsSettings {
        WsSettings {
            path: "/mqtt".to_owned(),
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            max_message_size: 1 << 20,
        }
    }

    #[test]
    fn client_text_in_messages_is_cut_short() {
        let long = "é".repeat(500);
        assert_eq!(clip(&long).chars().count(), 100);
        assert_eq!(clip("short"), "short");
        let msg = Refusal::OriginNotAllowed(Some(long)).message();
        assert!(msg.len() < 300, "{msg}");
    }

    #[test]
    fn the_path_must_match() {
        let s = settings(&[]);
        assert_eq!(check(&s, "/mqtt", None, &["mqtt"]), Ok(Some("mqtt")));
        assert_eq!(
            check(&s, "/other", None, &["mqtt"]),
            Err(Refusal::WrongPath("/other".into()))
        );
    }

    #[test]
    fn subprotocols_follow_the_clients_order() {
        let s = settings(&[]);
        assert_eq!(check(&s, "/mqtt", None, &[]), Ok(None));
        assert_eq!(
            check(&s, "/mqtt", None, &["x", "mqttv3.1", "mqtt"]),
            Ok(Some("mqttv3.1"))
        );
        assert_eq!(check(&s, "/mqtt", None, &["MQTT"]), Ok(Some("mqtt")));
        assert!(matches!(
            check(&s, "/mqtt", None, &["chat"]),
            Err(Refusal::NoMqttSubprotocol(_))
        ));
    }

    #[test]
    fn origins_are_checked_only_when_listed() {
        let open = settings(&[]);
        assert!(check(&open, "/mqtt", Some("https://evil.example"), &[]).is_ok());
        let s = settings(&["https://app.example.com"]);
        assert!(check(&s, "/mqtt", Some("https://APP.example.com"), &[]).is_ok());
        assert_eq!(
            check(&s, "/mqtt", Some("https://evil.example"), &[]),
            Err(Refusal::OriginNotAllowed(Some(
                "https://evil.example".into()
            )))
        );
        assert_eq!(
            check(&s, "/mqtt", None, &[]),
            Err(Refusal::OriginNotAllowed(None))
        );
        assert_eq!(
            Refusal::OriginNotAllowed(None).status(),
            StatusCode::FORBIDDEN
        );
    }
}
