//! One task per connection: CONNECT (`connect.rs`), then the packet loop
//! (`handler.rs`) with inbound messages (`inbound.rs`), subscriptions
//! (`subscribe.rs`) and outbound delivery (`outbound.rs`, with the
//! connection's topic aliases in `topic_alias.rs`); what outlives the
//! connection is the [`state::Session`], whose states and owner are kept by
//! `lifecycle.rs`, and what happens after it ends is `will.rs` (and, after an
//! error DISCONNECT, the bounded read-and-drop of `linger.rs`).

pub mod connect;
pub mod connection;
pub mod direct;
pub mod durable;
pub mod handler;
pub mod held_acks;
pub mod inbound;
pub mod inflight;
pub mod keepalive;
pub mod lifecycle;
pub mod linger;
pub mod map;
pub mod message;
pub mod outbound;
pub mod paced;
pub mod reauth;
pub mod restore;
pub mod state;
pub mod subscribe;
pub mod sweep;
pub mod topic_alias;
pub mod will;

use std::sync::Arc;

use crate::broker::Broker;
use crate::config::ListenerConfig;
use crate::listener::PeerInfo;
use crate::shutdown::Shutdown;
use connection::Connection;
use handler::Handler;

/// Read CONNECT on a connection whose TLS handshake (if any) is done, and
/// return its packet loop, ready to [`Handler::run`]. The caller bounds this
/// with the listener's connect timeout.
pub async fn admit<S: crate::session::connection::Transport>(
    broker: Arc<Broker>,
    stream: S,
    peer: &PeerInfo,
    listener: &ListenerConfig,
    shutdown: Shutdown,
) -> Option<Handler<S>> {
    let mut conn = Connection::new(stream, broker.config().limits.max_packet_size);
    let accepted = connect::accept(&broker, &mut conn, peer, listener).await?;
    Some(Handler::new(broker, conn, accepted, shutdown))
}
