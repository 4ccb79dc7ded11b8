//! The packet loop of one admitted connection: a `select!` over inbound
//! bytes, the session's wake-up (new deliveries, takeover, revocation),
//! keep alive and shutdown; then the ending: DISCONNECT reason, will, and
//! session expiry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use warden_codec::{Disconnect, Packet, Properties, ProtocolVersion, ReasonCode};

use crate::authorize::DecisionMemo;
use crate::broker::Broker;
use crate::config::Config;
use crate::session::connect::{Accepted, Will};
use crate::session::connection::{Connection, ConnectionError};
use crate::session::state::{ConnId, Kick, Session, SubKey};
use crate::session::will;
use crate::shutdown::Shutdown;

/// How often a paused publisher re-checks its congested subscribers.
const PAUSE_POLL: Duration = Duration::from_millis(1);

/// How a connection ended; decides the DISCONNECT we send and the will.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// DISCONNECT 0x00 from the client: no will.
    Normal,
    /// v5 DISCONNECT 0x04: close normally but publish the will.
    NormalWithWill,
    /// Socket closed or failed without DISCONNECT.
    Lost,
    /// We close for a protocol reason; v5 gets DISCONNECT with this code.
    Violation(u8),
    KeepAliveTimeout,
    TakenOver,
    /// The user was removed or disabled.
    Revoked,
    Shutdown,
}

impl End {
    /// The v5 DISCONNECT reason we send, if any.
    fn reason(self) -> Option<u8> {
        match self {
            End::Normal | End::NormalWithWill | End::Lost => None,
            End::Violation(code) => Some(code),
            End::KeepAliveTimeout => Some(ReasonCode::KEEP_ALIVE_TIMEOUT.value()),
            End::TakenOver => Some(ReasonCode::SESSION_TAKEN_OVER.value()),
            End::Revoked => Some(ReasonCode::ADMINISTRATIVE_ACTION.value()),
            End::Shutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN.value()),
        }
    }

    /// The will is published on every end except a normal DISCONNECT and a
    /// server shutdown.
    fn fires_will(self) -> bool {
        !matches!(self, End::Normal | End::Shutdown)
    }
}

/// One admitted connection.
pub struct Handler<S> {
    pub(crate) broker: Arc<Broker>,
    /// The configuration this connection was admitted under (a reload
    /// applies to new connections).
    pub(crate) config: Arc<Config>,
    pub(crate) conn: Connection<S>,
    pub(crate) session: Arc<Session>,
    pub(crate) key: SubKey,
    pub(crate) conn_id: ConnId,
    pub(crate) wake: Arc<Notify>,
    pub(crate) version: ProtocolVersion,
    pub(crate) keepalive: Option<Duration>,
    /// Boxed: few clients set one, and the Handler lives as long as the
    /// connection.
    pub(crate) will: Option<Box<Will>>,
    /// Inbound topic aliases (v5).
    pub(crate) aliases: HashMap<u16, String>,
    pub(crate) topic_alias_max: u16,
    pub(crate) client_id: Arc<str>,
    pub(crate) username: Option<String>,
    /// Reused between drains so sending does not allocate a Vec each time.
    pub(crate) out: Vec<crate::session::outbound::Outbound>,
    /// Subscribers our last publishes found congested: while any is, we stop
    /// reading from this client (TCP back-pressure), but keep sending to it.
    pub(crate) congested: Vec<Arc<Session>>,
    /// The last `publish` decision, reused while the client publishes the
    /// same topic under the same policy.
    pub(crate) publish_memo: DecisionMemo,
    shutdown: Shutdown,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Handler<S> {
    pub fn new(
        broker: Arc<Broker>,
        conn: Connection<S>,
        accepted: Accepted,
        shutdown: Shutdown,
    ) -> Handler<S> {
        let (client_id, username) = {
            let st = accepted.session.state.lock();
            (
                Arc::clone(&accepted.session.client_id),
                st.principal.username.clone(),
            )
        };
        Handler {
            config: broker.config(),
            broker,
            conn,
            key: SubKey(Arc::clone(&accepted.session)),
            session: accepted.session,
            conn_id: accepted.conn_id,
            wake: accepted.wake,
            version: accepted.version,
            keepalive: accepted.keepalive_timeout,
            will: accepted.will.map(Box::new),
            aliases: HashMap::new(),
            topic_alias_max: accepted.topic_alias_max,
            client_id,
            username,
            out: Vec::new(),
            congested: Vec::new(),
            publish_memo: DecisionMemo::default(),
            shutdown,
        }
    }

    /// Run until the connection ends, then clean up. Takes `&mut self` so
    /// that the caller's future holds the one copy of the Handler; the
    /// ending is boxed because it needs more state than the packet loop and
    /// runs once.
    pub async fn run(&mut self) {
        let end = match self.resume() {
            Ok(()) => self.run_loop().await,
            Err(end) => end,
        };
        tracing::debug!(client_id = %self.client_id, ?end, "connection ended");
        Box::pin(self.finish(end)).await;
    }

    async fn run_loop(&mut self) -> End {
        let mut deadline = self.keepalive.map(|d| Instant::now() + d);
        loop {
            while self.congested.is_empty() {
                match self.conn.try_decode() {
                    Ok(Some(packet)) => {
                        if let Some(d) = self.keepalive {
                            deadline = Some(Instant::now() + d);
                        }
                        if let Err(end) = self.handle(packet) {
                            return end;
                        }
                    }
                    Ok(None) => break,
                    Err(err) => {
                        tracing::debug!(client_id = %self.client_id, error = %err, "bad packet");
                        return End::Violation(err.reason_code().value());
                    }
                }
            }
            if let Err(end) = self.drain_outbound() {
                return end;
            }
            if self.conn.flush().await.is_err() {
                return End::Lost;
            }
            // One timer for both the keep alive and, while paused, the
            // congestion poll: each waiting future is held for as long as the
            // connection is idle.
            let paused = !self.congested.is_empty();
            let poll_at = paused.then(|| Instant::now() + PAUSE_POLL);
            let keepalive_first = match (deadline, poll_at) {
                (Some(d), Some(p)) => d <= p,
                (d, _) => d.is_some(),
            };
            let timer = async {
                match if keepalive_first { deadline } else { poll_at } {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                res = self.conn.fill(), if !paused => match res {
                    Ok(()) => {}
                    Err(ConnectionError::Codec(err)) => return End::Violation(err.reason_code().value()),
                    Err(_) => return End::Lost,
                },
                _ = self.wake.notified() => {}
                _ = timer => {
                    if keepalive_first {
                        return End::KeepAliveTimeout;
                    }
                    // Polling (1 ms) is enough here: it runs only while a
                    // subscriber is behind, and needs no wake-up plumbing
                    // between sessions that could deadlock two clients
                    // publishing to each other.
                    self.congested.retain(|s| s.is_congested());
                    // The client's packets wait in the socket because of us:
                    // that is not a keep alive timeout.
                    if let Some(d) = self.keepalive {
                        deadline = Some(Instant::now() + d);
                    }
                }
                _ = self.shutdown.recv() => return End::Shutdown,
            }
        }
    }

    /// Dispatch one inbound packet.
    fn handle(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(r) => self.on_puback(r.packet_id),
            Packet::PubRec(r) => self.on_pubrec(r.packet_id, r.reason),
            Packet::PubRel(r) => self.on_pubrel(r.packet_id),
            Packet::PubComp(r) => self.on_pubcomp(r.packet_id),
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => self.send(&Packet::PingResp),
            Packet::Disconnect(d) => Err(self.on_disconnect(&d)),
            // A second CONNECT, AUTH without an authentication method, or a
            // server-to-client packet: protocol errors.
            _ => Err(End::Violation(ReasonCode::PROTOCOL_ERROR.value())),
        }
    }

    /// Queue a packet for the next flush.
    pub(crate) fn send(&mut self, packet: &Packet) -> Result<(), End> {
        self.conn
            .queue(packet)
            .map_err(|_| End::Violation(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR.value()))
    }

    /// Client DISCONNECT: its reason and a possible new session expiry.
    fn on_disconnect(&mut self, d: &Disconnect) -> End {
        if let Some(secs) = d.properties.session_expiry_interval {
            let mut st = self.session.state.lock();
            if st.expiry.is_zero() && secs > 0 {
                // MQTT 5 §3.14.2.2.2: cannot turn a session that ends with the
                // connection into a persistent one at DISCONNECT.
                return End::Violation(ReasonCode::PROTOCOL_ERROR.value());
            }
            let cap = self.config.limits.max_session_expiry;
            st.expiry = Duration::from_secs(u64::from(secs)).min(cap);
        }
        if d.reason == ReasonCode::DISCONNECT_WITH_WILL.value() {
            End::NormalWithWill
        } else {
            End::Normal
        }
    }

    /// Say goodbye, release the session, publish the will, schedule expiry.
    async fn finish(&mut self, end: End) {
        let mut end = end;
        if let Some(reason) = end.reason() {
            if self.version.is_v5() {
                let packet = Packet::Disconnect(Disconnect {
                    reason,
                    properties: Properties::default(),
                });
                self.conn.send_and_close(&packet).await;
            } else {
                self.conn.close().await;
            }
        } else {
            self.conn.close().await;
        }
        let released = {
            let mut st = self.session.state.lock();
            if st.is_owned_by(self.conn_id) {
                st.owner = None;
                Some((st.expiry, st.generation))
            } else {
                None
            }
        };
        if released.is_none() && end != End::Shutdown {
            // Someone else owns the session now: a takeover.
            end = End::TakenOver;
        }
        if end.fires_will() {
            if let Some(w) = self.will.take() {
                let session_expiry = released.map(|(e, _)| e).unwrap_or_default();
                will::fire(
                    &self.broker,
                    &self.session,
                    *w,
                    session_expiry,
                    released.map(|(_, g)| g),
                );
            }
        }
        if let Some((expiry, generation)) = released {
            will::schedule_expiry(&self.broker, &self.session, expiry, generation);
        }
    }

    /// After CONNACK on a resumed session: retransmit what was in flight
    /// (PUBLISH with DUP, or PUBREL) and re-check queued messages against
    /// the freshly compiled policy.
    fn resume(&mut self) -> Result<(), End> {
        let packets = {
            let mut st = self.session.state.lock();
            if !st.is_owned_by(self.conn_id) {
                return Err(End::TakenOver);
            }
            if st.dropped > 0 {
                tracing::warn!(client_id = %self.client_id, dropped = st.dropped, "messages were dropped from this session's full queue");
                st.dropped = 0;
            }
            st.recheck_queue(&self.broker.authz);
            crate::session::outbound::retransmissions(&st, self.version)
        };
        for p in &packets {
            self.send(p)?;
        }
        Ok(())
    }

    /// Why we no longer own the session (called with the state locked).
    pub(crate) fn lost_ownership(&self, kicked: Option<(ConnId, Kick)>) -> End {
        match kicked {
            Some((id, Kick::NotAuthorized)) if id == self.conn_id => End::Revoked,
            _ => End::TakenOver,
        }
    }
}
