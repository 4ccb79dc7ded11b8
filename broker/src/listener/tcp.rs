//! The TCP half shared by every listener: bind and accept.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::ListenerError;

/// Connections the kernel queues before the accept loop takes them. A fleet
/// reconnecting after a restart arrives in thousands at once; with the usual
/// 1024, the excess SYNs are dropped and retried a second or more later.
/// The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 8192;

pub(super) async fn bind(
    name: &Arc<str>,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ListenerError> {
    let bind_err = |source| ListenerError::Bind {
        listener: name.clone(),
        addr,
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    // As std's and tokio's own bind do: a restart can bind again at once
    // while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(bind_err)?;
    socket.bind(addr).map_err(bind_err)?;
    let tcp = socket.listen(BACKLOG).map_err(bind_err)?;
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
