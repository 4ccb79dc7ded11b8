//! The TCP half shared by every listener: bind and accept.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::ListenerError;

pub(super) async fn bind(
    name: &Arc<str>,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ListenerError> {
    let bind_err = |source| ListenerError::Bind {
        listener: name.clone(),
        addr,
        source,
    };
    let tcp = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = tcp.local_addr().map_err(bind_err)?;
    Ok((tcp, local))
}

pub(super) async fn accept(tcp: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, addr) = tcp.accept().await?;
    // MQTT sends many small packets (acks, pings) that must not wait for
    // Nagle's algorithm.
    stream.set_nodelay(true)?;
    Ok((stream, addr))
}
