//! Listening sockets: plain TCP or TLS (rustls, optional mutual TLS), each
//! optionally carrying MQTT in WebSocket frames (ws, wss: `ws.rs`). The
//! peer's certificate identity is taken out of the TLS session here and
//! nowhere else, and handed on as [`PeerInfo`]; above the listener, an
//! [`MqttStream`] is a byte stream whatever the transport.
//!
//! The accept loop (in `server.rs`) calls [`Listener::accept`], which only
//! accepts, and runs [`Handshaker::handshake`] in the connection's own task
//! so that a slow handshake never holds up the next accept.
//!
//! A config reload ([`Listener::reload`]) swaps a running listener's
//! settings and TLS acceptors (certificates, keys and CA bundles read from
//! disk again); handshakes that start afterwards use the new ones, and
//! connections already up keep the session they negotiated.

pub mod cert_reload;
mod chains;
mod crl;
mod handshake_log;
mod peer;
mod sni;
mod tcp;
mod tls;
mod ws;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{ListenerConfig, ListenerKind, Transport, WsSettings};

pub use crl::{stamp as crl_stamp, RevokedSet};
pub(crate) use peer::serial_hex;
pub use peer::{cert_info, subject_string, PeerInfo};
pub use ws::WsStream;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerError {
    #[error("listener {listener}: cannot bind {addr}: {source}")]
    Bind {
        listener: Arc<str>,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("listener {listener}: TLS setup failed: {message}")]
    TlsSetup { listener: Arc<str>, message: String },
    #[error("TLS handshake with {peer} failed: {source}")]
    Handshake { peer: SocketAddr, source: io::Error },
    #[error("client certificate from {peer} unusable: {message}")]
    PeerCert { peer: SocketAddr, message: String },
    #[error("WebSocket {message} (peer {peer})")]
    WebSocket { peer: SocketAddr, message: String },
}

impl ListenerError {
    /// What went wrong with one client, without the peer (logged beside).
    fn reason(&self) -> String {
        match self {
            ListenerError::Handshake { source, .. } => format!("TLS: {source}"),
            ListenerError::PeerCert { message, .. } => format!("client certificate: {message}"),
            ListenerError::WebSocket { message, .. } => format!("WebSocket {message}"),
            other => other.to_string(),
        }
    }
}

/// A bound listener. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    handshaker: Handshaker,
    /// The settings it runs with; its name, bind address and transport
    /// never change.
    config: ArcSwap<ListenerConfig>,
    /// One reload at a time: a CRL change noticed while a SIGHUP reload
    /// runs must not put the previous settings back.
    reloading: parking_lot::Mutex<()>,
}

/// The per-connection half of a listener: clone it into the connection's
/// task and call [`Handshaker::handshake`] there.
#[derive(Clone, Debug)]
pub struct Handshaker {
    name: Arc<str>,
    /// Shared with the listener, which swaps in new acceptors on reload.
    tls: Option<Arc<ArcSwap<tls::TlsAcceptors>>>,
    /// The WebSocket upgrade of ws and wss listeners; swapped on reload.
    ws: Option<Arc<ArcSwap<WsSettings>>>,
    failures: Arc<handshake_log::FailureLog>,
}

/// What [`Listener::reload`] applied.
#[derive(Debug)]
pub struct Reloaded {
    /// The settings the listener runs with now.
    pub config: Arc<ListenerConfig>,
    /// Why the certificate, key or CA files could not be used; the listener
    /// then keeps its previous TLS settings.
    pub tls_error: Option<ListenerError>,
    /// The client CA bundle changed, so the remembered client chains were
    /// dropped.
    pub ca_changed: bool,
}

impl Listener {
    /// Loads the certificates (for TLS) and binds the socket. Certificate
    /// problems are reported before the port is taken.
    pub async fn bind(cfg: &ListenerConfig) -> Result<Listener, ListenerError> {
        let tls = match &cfg.transport {
            Transport::Tcp => None,
            Transport::Tls(settings) => Some(Arc::new(ArcSwap::from_pointee(
                tls::TlsAcceptors::build(&cfg.name, settings)?,
            ))),
        };
        let ws = cfg
            .websocket
            .as_ref()
            .map(|w| Arc::new(ArcSwap::from_pointee(w.clone())));
        let (tcp, local_addr) = tcp::bind(&cfg.name, cfg.bind).await?;
        Ok(Listener {
            tcp,
            local_addr,
            handshaker: Handshaker {
                name: cfg.name.clone(),
                tls,
                ws,
                failures: Arc::default(),
            },
            config: ArcSwap::from_pointee(cfg.clone()),
            reloading: parking_lot::Mutex::new(()),
        })
    }

    /// The settings new connections are admitted under.
    pub fn config(&self) -> Arc<ListenerConfig> {
        self.config.load_full()
    }

    /// Apply reloaded settings. Name, bind address and transport stay as
    /// bound (the caller keeps them; see `Config::plan_reload`). A TLS
    /// listener reads its certificate, key and CA files again, even under
    /// unchanged paths, so a certificate rotated in place takes effect; if
    /// they cannot be used, its previous TLS settings stay and the rest of
    /// `cfg` still applies. Blocking file reads: call off the runtime.
    pub fn reload(&self, cfg: ListenerConfig) -> Reloaded {
        let _one = self.reloading.lock();
        self.apply(cfg)
    }

    /// Read the TLS files again under the settings it runs with (a CRL
    /// file changed). Blocking file reads: call off the runtime.
    pub fn reread_files(&self) -> Reloaded {
        let _one = self.reloading.lock();
        self.apply((*self.config()).clone())
    }

    fn apply(&self, mut cfg: ListenerConfig) -> Reloaded {
        let running = self.config();
        cfg.name = running.name.clone();
        cfg.bind = running.bind;
        let mut tls_error = None;
        let mut ca_changed = false;
        match (&self.handshaker.tls, &cfg.transport) {
            (Some(current), Transport::Tls(settings)) => {
                match current.load().rebuild(&cfg.name, settings) {
                    Ok((next, changed)) => {
                        current.store(Arc::new(next));
                        ca_changed = changed;
                    }
                    Err(err) => {
                        tls_error = Some(err);
                        cfg.transport = running.transport.clone();
                    }
                }
            }
            (None, Transport::Tcp) => {}
            // A changed transport needs a new socket: keep the running one.
            _ => cfg.transport = running.transport.clone(),
        }
        match (&self.handshaker.ws, &cfg.websocket) {
            (Some(current), Some(settings)) => current.store(Arc::new(settings.clone())),
            (None, None) => {}
            _ => cfg.websocket.clone_from(&running.websocket),
        }
        let config = Arc::new(cfg);
        self.config.store(config.clone());
        Reloaded {
            config,
            tls_error,
            ca_changed,
        }
    }

    /// Read the TLS files again under the running settings (they changed
    /// on disk); as on a config reload, a failure keeps the previous ones.
    /// `None` for a listener without TLS, else whether the client CA
    /// bundle changed. Blocking file reads: call off the runtime.
    pub fn reload_tls(&self) -> Option<Result<bool, ListenerError>> {
        let cfg = self.config();
        let settings = cfg.tls()?;
        let current = self.handshaker.tls.as_ref()?;
        let rebuilt = current.load().rebuild(&cfg.name, settings);
        Some(rebuilt.map(|(next, ca_changed)| {
            current.store(Arc::new(next));
            ca_changed
        }))
    }

    pub fn name(&self) -> &Arc<str> {
        &self.handshaker.name
    }

    /// The certificates this listener's CRLs revoke now; `None` for a
    /// listener without TLS.
    pub fn revoked(&self) -> Option<Arc<RevokedSet>> {
        let tls = self.handshaker.tls.as_ref()?;
        Some(Arc::clone(tls.load().revoked()))
    }

    /// The bound address; with port 0 in the config, the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn kind(&self) -> ListenerKind {
        match (&self.handshaker.tls, &self.handshaker.ws) {
            (Some(_), None) => ListenerKind::Tls,
            (None, None) => ListenerKind::Tcp,
            (Some(_), Some(_)) => ListenerKind::Wss,
            (None, Some(_)) => ListenerKind::Ws,
        }
    }

    /// Waits for the next TCP connection (TCP_NODELAY set). No TLS yet.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        tcp::accept(&self.tcp).await
    }

    /// A handle that can run handshakes in other tasks.
    pub fn handshaker(&self) -> Handshaker {
        self.handshaker.clone()
    }

    /// Same as [`Handshaker::handshake`] on this listener's handshaker.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> Result<(MqttStream, PeerInfo), ListenerError> {
        self.handshaker.handshake(tcp, addr).await
    }
}

impl Handshaker {
    pub fn listener_name(&self) -> &Arc<str> {
        &self.name
    }

    /// Logs a failed [`Handshaker::handshake`] at INFO, rate-limited.
    pub fn report_failure(&self, peer: SocketAddr, err: &ListenerError) {
        self.failures.record(&self.name, peer, err);
    }

    /// Runs the TLS handshake (nothing for plain TCP), extracts the
    /// verified client certificate, and on ws and wss listeners runs the
    /// WebSocket upgrade. The caller bounds it with the listener's connect
    /// timeout.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> Result<(MqttStream, PeerInfo), ListenerError> {
        let Some(swap) = &self.tls else {
            let peer = PeerInfo {
                addr,
                listener: self.name.clone(),
                tls: false,
                cert: None,
                ocsp: None,
            };
            let stream = match &self.ws {
                Some(ws) => {
                    let settings = ws.load_full();
                    MqttStream::Ws(Box::new(ws::accept(tcp, addr, &settings).await?))
                }
                None => MqttStream::Plain(tcp),
            };
            return Ok((stream, peer));
        };
        // The acceptors current when the handshake starts serve all of it.
        let acceptors = swap.load_full();
        let stream = acceptors.accept(tcp, addr).await?;
        let chain = stream.get_ref().1.peer_certificates();
        let cert = match chain {
            Some([leaf, ..]) => {
                let info = acceptors.cert_info(leaf.as_ref());
                Some(Arc::new(info.map_err(|message| {
                    ListenerError::PeerCert {
                        peer: addr,
                        message,
                    }
                })?))
            }
            _ => None,
        };
        let ocsp = match chain {
            Some(chain @ [_, ..]) => acceptors.ocsp_subject(chain).map(Arc::new),
            _ => None,
        };
        let peer = PeerInfo {
            addr,
            listener: self.name.clone(),
            tls: true,
            cert,
            ocsp,
        };
        let stream = match &self.ws {
            Some(ws) => {
                let settings = ws.load_full();
                MqttStream::Wss(Box::new(ws::accept(stream, addr, &settings).await?))
            }
            None => MqttStream::Tls(Box::new(stream)),
        };
        Ok((stream, peer))
    }
}

type TlsTcp = tokio_rustls::server::TlsStream<TcpStream>;

/// A client connection after any TLS handshake and WebSocket upgrade.
#[derive(Debug)]
pub enum MqttStream {
    Plain(TcpStream),
    Tls(Box<TlsTcp>),
    Ws(Box<WsStream<TcpStream>>),
    Wss(Box<WsStream<TlsTcp>>),
}

impl MqttStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, MqttStream::Tls(_) | MqttStream::Wss(_))
    }
}

/// Evaluates `$call` with `$s` pinned to whichever stream `$self` holds.
macro_rules! each {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            MqttStream::Plain(s) => {
                let $s = Pin::new(s);
                $call
            }
            MqttStream::Tls(s) => {
                let $s = Pin::new(s.as_mut());
                $call
            }
            MqttStream::Ws(s) => {
                let $s = Pin::new(s.as_mut());
                $call
            }
            MqttStream::Wss(s) => {
                let $s = Pin::new(s.as_mut());
                $call
            }
        }
    };
}

impl crate::session::connection::Transport for MqttStream {
    fn plain_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            MqttStream::Plain(s) => Some(s.as_raw_fd()),
            _ => None,
        }
    }
}

impl AsyncRead for MqttStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for MqttStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MqttStream::Plain(s) => s.is_write_vectored(),
            MqttStream::Tls(s) => s.is_write_vectored(),
            MqttStream::Ws(s) => s.is_write_vectored(),
            MqttStream::Wss(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod reload_tests;
#[cfg(test)]
mod tests;
