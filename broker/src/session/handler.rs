//! The packet loop of one admitted connection: one wait over inbound
//! bytes, outbound bytes the socket has not taken yet, the session's
//! wake-up (new deliveries, takeover, revocation, shutdown, keep alive) and
//! the loop's timer (write stall, congestion poll, token expiry); then the
//! ending: DISCONNECT reason, will, and session expiry.
//!
//! No branch waits on the socket's write side alone, so a client that stops
//! reading still meets keep alive, kicks, policy changes and shutdown, and
//! is disconnected when nothing it was sent has moved for
//! `limits.write_stall`.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use warden_codec::{Disconnect, Packet, Properties, ProtocolVersion, ReasonCode};

use crate::authorize::DecisionMemo;
use crate::broker::Broker;
use crate::config::Config;
use crate::persist::Ticket;
use crate::session::connect::{Accepted, Will};
use crate::session::connection::{Connection, ConnectionError};
use crate::session::state::{ConnId, Kick, Session, SubKey};
use crate::session::will;
use crate::shutdown::Shutdown;
use crate::wake::Wake;

/// How often a paused publisher re-checks its congested subscribers.
const PAUSE_POLL: Duration = Duration::from_millis(1);

/// Output queued for the socket beyond which no more deliveries are moved
/// off the session queue (they wait there, bounded and counted).
pub(crate) const WRITE_CAP: usize = 128 * 1024;

/// Output beyond which the client's own packets are not read either: its
/// acknowledgements and PINGRESPs would only pile up behind what it does
/// not read.
const READ_PAUSE_AT: usize = 2 * WRITE_CAP;

/// How long the goodbye (DISCONNECT and close) may wait on the socket.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How a connection ended; decides the DISCONNECT we send and the will.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// DISCONNECT from the client with this reason code (any but 0x04):
    /// no will.
    Normal(u8),
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
    /// The session's policy could not be recompiled after a change.
    PolicyFailed,
    /// The client certificate was revoked (a CRL changed).
    CertRevoked,
    /// The client took nothing we sent for `limits.write_stall`.
    WriteStall,
    /// The login's token expired, and no AUTH brought a fresh one.
    TokenExpired,
    /// An operator disconnected the client.
    Kicked,
    Shutdown,
}

impl End {
    /// The v5 DISCONNECT reason we send, if any.
    fn reason(self) -> Option<u8> {
        match self {
            End::Normal(_) | End::NormalWithWill | End::Lost => None,
            End::Violation(code) => Some(code),
            End::KeepAliveTimeout => Some(ReasonCode::KEEP_ALIVE_TIMEOUT.value()),
            End::TakenOver => Some(ReasonCode::SESSION_TAKEN_OVER.value()),
            End::Revoked | End::Kicked => Some(ReasonCode::ADMINISTRATIVE_ACTION.value()),
            End::PolicyFailed => Some(ReasonCode::UNSPECIFIED_ERROR.value()),
            End::CertRevoked => Some(ReasonCode::NOT_AUTHORIZED.value()),
            End::TokenExpired => Some(ReasonCode::MAXIMUM_CONNECT_TIME.value()),
            // Nothing reaches a client that does not read.
            End::WriteStall => None,
            End::Shutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN.value()),
        }
    }

    /// After our DISCONNECT with an error reason the client's input is read
    /// and dropped for a while, so that it reads the reason (`linger.rs`).
    /// Not on shutdown, which must not wait on clients.
    fn lingers(self) -> bool {
        self != End::Shutdown && self.reason().is_some_and(|r| r >= 0x80)
    }

    /// The will is published on every end except a normal DISCONNECT, a
    /// server shutdown and a revocation (the user no longer exists, or may
    /// no longer act).
    fn fires_will(self) -> bool {
        !matches!(
            self,
            End::Normal(_) | End::Shutdown | End::Revoked | End::CertRevoked
        )
    }

    /// The disconnect line's `reason`, and the reason code that goes with
    /// it: the client's DISCONNECT code, or the one a v5 client is sent.
    fn label(self) -> (&'static str, Option<u8>) {
        let reason = match self {
            End::Normal(_) | End::NormalWithWill => "client_disconnect",
            End::Lost => "socket_closed",
            End::Violation(_) => "protocol_error",
            End::KeepAliveTimeout => "keepalive_timeout",
            End::TakenOver => "taken_over",
            End::Revoked => "revoked",
            End::PolicyFailed => "policy_failed",
            End::CertRevoked => "cert_revoked",
            End::WriteStall => "write_stall",
            End::TokenExpired => "token_expired",
            End::Kicked => "admin_kick",
            End::Shutdown => "shutdown",
        };
        let code = match self {
            End::Normal(code) => Some(code),
            End::NormalWithWill => Some(ReasonCode::DISCONNECT_WITH_WILL.value()),
            other => other.reason(),
        };
        (reason, code)
    }
}

/// A reason code as the specification writes it: `0x8e`.
struct Hex(u8);

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:02x}", self.0)
    }
}

/// One admitted connection.
pub struct Handler<S> {
    pub(crate) broker: Arc<Broker>,
    /// The configuration this connection was admitted under (a reload
    /// applies to new connections).
    pub(crate) config: Arc<Config>,
    pub(crate) conn: Connection<S>,
    /// The session, also this connection's key in the router.
    pub(crate) session: SubKey,
    pub(crate) conn_id: ConnId,
    pub(crate) wake: Arc<Wake>,
    pub(crate) version: ProtocolVersion,
    pub(crate) topic_alias_max: u16,
    /// Outbound topic aliases (v5): how many the client allows us (0: none);
    /// the table is in `rare`, made at the first delivery (`topic_alias.rs`).
    pub(crate) alias_out_max: u16,
    /// The last `publish` decision, reused while the client publishes the
    /// same topic under the same policy.
    pub(crate) publish_memo: DecisionMemo,
    /// What most connections never need, made at first use: one pointer in
    /// every connection's task (whose size is bounded, `server::tests`)
    /// instead of eight fields.
    pub(crate) rare: Option<Box<Rare>>,
    shutdown: Shutdown,
}

impl<S> Drop for Handler<S> {
    /// However the task ends (a panic, a runtime dropping it): no publisher
    /// may write to the socket once it is closed (`direct.rs`).
    fn drop(&mut self) {
        let mut st = self.session.state.lock();
        if let Some(att) = st.attached.as_mut().filter(|a| a.id == self.conn_id) {
            att.output = crate::session::direct::Output::HANDLER;
        }
        drop(st);
        // What a publisher left for a socket that is going away.
        self.broker.leftovers.take(self.conn_id);
    }
}

/// The parts of a [`Handler`] that few connections use, each made when
/// first needed.
#[derive(Default)]
pub(crate) struct Rare {
    pub(crate) will: Option<Box<Will>>,
    /// Inbound topic aliases (v5), made at the first alias.
    #[allow(clippy::box_collection)]
    pub(crate) aliases: Option<Box<HashMap<u16, String>>>,
    pub(crate) aliases_out: Option<Box<crate::session::topic_alias::TopicAliases>>,
    /// Subscribers our last publishes found congested: while any is, we stop
    /// reading from this client (TCP back-pressure), but keep sending to it.
    pub(crate) congested: Vec<Arc<Session>>,
    /// A publish waiting for room in the cluster's outbox, with its
    /// acknowledgement: while there is one, we stop reading from this
    /// client too (`paced.rs`).
    pub(crate) paced: Option<Box<crate::session::paced::Paced>>,
    /// Acknowledgements waiting for the session store.
    pub(crate) held: Option<Box<crate::session::held_acks::HeldAcks>>,
    /// A JWT login: when its token expires (the session ends then), and
    /// whether the client may bring a new one with AUTH (method `jwt`).
    pub(crate) token_deadline: Option<(Instant, bool)>,
    /// `limits.publish_rate`: this client's token bucket, made at its first
    /// PUBLISH when the limit is on.
    pub(crate) publish_bucket: Option<Box<crate::defence::rate::Bucket>>,
    /// Denied publishes not yet logged: made at the first denial (the
    /// allowed path never touches it).
    pub(crate) denied: Option<Box<crate::authorize::DeniedLog>>,
}

impl<S: crate::session::connection::Transport> Handler<S> {
    pub fn new(
        broker: Arc<Broker>,
        conn: Connection<S>,
        accepted: Accepted,
        shutdown: Shutdown,
    ) -> Handler<S> {
        // The client id and username are the session's (only the owner
        // attaches), not copies: the Handler lives as long as the
        // connection. Keep alive is watched from here on
        // (`keepalive.rs`): the wake-up holds its state.
        if let Some(timeout) = accepted.keepalive_timeout {
            broker.keepalive.watch(&accepted.wake, timeout);
        }
        let token_deadline = accepted
            .token
            .as_ref()
            .map(|t| (Instant::now() + t.remaining(), t.via_method));
        let will = accepted.will.map(Box::new);
        let rare = (will.is_some() || token_deadline.is_some()).then(|| {
            Box::new(Rare {
                will,
                token_deadline,
                ..Rare::default()
            })
        });
        Handler {
            config: broker.config(),
            broker,
            conn,
            session: SubKey(accepted.session),
            conn_id: accepted.conn_id,
            wake: accepted.wake,
            version: accepted.version,
            topic_alias_max: accepted.topic_alias_max,
            alias_out_max: accepted.topic_alias_out,
            publish_memo: DecisionMemo::default(),
            rare,
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
        // Keep alive no longer applies (a lingering connection reads on).
        self.wake.unwatch();
        if self.rare.as_mut().and_then(|r| r.paced.take()).is_some() {
            // It waited for the cluster's outbox and got no PUBACK: the
            // client publishes it again if it must.
            if let Some(c) = self.broker.cluster() {
                c.stats
                    .not_forwarded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        tracing::debug!(client_id = %self.session.client_id, ?end, "connection ended");
        let (end, linger) = Box::pin(self.finish(end)).await;
        if let Some(denied) = self.rare.as_mut().and_then(|r| r.denied.as_deref_mut()) {
            denied.finish(&self.session.client_id, self.session.owner.username());
        }
        let (reason, code) = end.label();
        tracing::info!(
            client_id = &*self.session.client_id,
            username = self.session.owner.username(),
            conn = self.conn_id,
            reason,
            code = code.map(|c| tracing::field::display(Hex(c))),
            "client disconnected"
        );
        self.broker.audit.disconnected(
            &self.session.client_id,
            self.session.owner.username(),
            reason,
        );
        if linger {
            // Last: the session is released, the will settled and the end
            // logged already.
            Box::pin(self.linger()).await;
        }
    }

    async fn run_loop(&mut self) -> End {
        // Only what must outlive the wait below is a local here: each is
        // held by every idle connection's task (`server::tests`).
        // Since when the client has taken none of the output waiting for it.
        let mut stalled_since: Option<Instant> = None;
        // The loop's one timer, for the rare deadlines (the congestion
        // poll, the write stall, a token's expiry; keep alive is the
        // broker's, `keepalive.rs`). Boxed and made only when one is due:
        // an idle connection's task holds a pointer, not a timer entry.
        // Armed at the earliest deadline wanted and left alone while a later
        // one is wanted (it fires early and the loop looks again), so a busy
        // loop does not re-register it at every turn.
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        loop {
            // The shutdown wakes the loop through `wake` (no future of
            // its own waits here: it would be held by every idle task).
            if self.shutdown.triggered() {
                return End::Shutdown;
            }
            if self.wake.is_expired() {
                return End::KeepAliveTimeout;
            }
            if let Err(end) = self.place_paced() {
                return end;
            }
            let reading = self.conn.pending_bytes() < READ_PAUSE_AT;
            if reading {
                let id = self.session.id;
                if let Err(end) = crate::session::direct::turn(id, || self.handle_buffered()) {
                    return end;
                }
            }
            if let Err(end) = self.release_acks() {
                return end;
            }
            if let Err(end) = self.drain_outbound() {
                return end;
            }
            let before = self.conn.written();
            if self.conn.wants_write() && matches!(self.conn.try_write(), Some(Err(_))) {
                return End::Lost;
            }
            if self.conn.written() != before {
                // All of it went out: publishers may write to the socket
                // until this task has output again (`direct.rs`).
                self.arm_if_idle();
            }
            stalled_since = match (self.conn.wants_write(), stalled_since) {
                (false, _) => None,
                (true, Some(t)) if self.conn.written() == before => Some(t),
                (true, _) => Some(Instant::now()),
            };
            // The session store is behind: stop reading publishes too.
            let storage_busy = self.broker.persist.is_congested();
            // A publish waiting for room in the cluster's outbox: the same.
            let paused = self.congested() || !reading || storage_busy || self.paced().is_some();
            let polling = self.congested() || storage_busy;
            if let Some(held) = self.rare.as_mut().and_then(|r| r.held.as_deref_mut()) {
                // Woken through the session's own wake-up when the store
                // catches up (no extra future in the loop).
                if let Some(t) = held.wake_at(self.broker.persist.durable()) {
                    self.broker.persist.notify_when_durable(t, &self.wake);
                }
            }
            let token_at = self.token_deadline().map(|t| t.0);
            // A paced publish is woken by the cluster's publishing task when
            // the outbox moves; the timer only for its stall deadline.
            let paced_until = self.paced().and_then(|p| p.until);
            if polling || stalled_since.is_some() || token_at.is_some() || paced_until.is_some() {
                let now = Instant::now();
                let want = [
                    polling.then(|| now + PAUSE_POLL),
                    stalled_since.map(|t| t + self.config.limits.write_stall),
                    token_at,
                    paced_until,
                ]
                .into_iter()
                .flatten()
                .min();
                if let Some(at) = want {
                    match timer.as_mut() {
                        Some(t) if t.deadline() <= at => {}
                        Some(t) => t.as_mut().reset(at),
                        None => timer = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                }
            }
            let before = self.conn.written();
            let io = !paused || self.conn.wants_write();
            // One future over the three sources (the socket, the wake-up,
            // the timer), each polled at every turn: smaller than a
            // `select!` of three futures, and none starves another.
            let (res, fired) = poll_fn(|cx| {
                let res = if io {
                    self.conn.poll_io(cx, !paused)
                } else {
                    Poll::Pending
                };
                // A wake-up asks for one more turn of this loop, which the
                // socket's or the timer's readiness gives as well.
                let woken = self.wake.poll_notified(cx).is_ready();
                let fired = poll_timer(&mut timer, cx).is_ready();
                match res {
                    Poll::Ready(res) => Poll::Ready((Some(res), fired)),
                    Poll::Pending if woken || fired => Poll::Ready((None, fired)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match res {
                Some(Err(ConnectionError::Codec(err))) => {
                    return End::Violation(err.reason_code().value())
                }
                Some(Err(_)) => return End::Lost,
                Some(Ok(_)) | None => {}
            }
            if fired {
                // Dropped once it went off; made again if still wanted.
                timer = None;
                let now = Instant::now();
                let token_at = self.token_deadline().map(|t| t.0);
                if token_at.is_some_and(|t| t <= now) {
                    tracing::info!(client_id = %self.session.client_id, "token expired; disconnecting");
                    return End::TokenExpired;
                }
                if stalled_since.is_some_and(|t| t + self.config.limits.write_stall <= now)
                    && self.conn.written() == before
                {
                    return self.write_stalled();
                }
                if polling {
                    // Polling (1 ms) is enough here: it runs only while a
                    // subscriber is behind, and needs no wake-up plumbing
                    // between sessions that could deadlock two clients
                    // publishing to each other.
                    if let Some(rare) = self.rare.as_mut() {
                        rare.congested.retain(|s| s.is_congested());
                    }
                }
            }
            if self.conn.written() != before {
                stalled_since = None;
            }
            if self.congested() || self.paced().is_some() {
                // The client's packets wait in the socket because other
                // clients (or NATS) are behind: that is not a keep alive
                // timeout. (A
                // pause because this client does not read what it is sent
                // does not reset it.)
                self.wake.touch(self.broker.keepalive.now_ms());
            }
        }
    }

    /// Write this session's record (when it is stored).
    pub(crate) fn write_record(&self) -> Ticket {
        crate::session::durable::write_record(&self.broker, &self.session, self.will())
    }

    /// The client took nothing for `write_stall`: count it, say so, end it.
    fn write_stalled(&mut self) -> End {
        let total = self
            .broker
            .write_stalls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let queued = self.session.state.lock().queue.len();
        tracing::warn!(
            client_id = %self.session.client_id,
            pending_bytes = self.conn.pending_bytes(),
            queued,
            stall = ?self.config.limits.write_stall,
            total,
            "client stopped reading; disconnected"
        );
        End::WriteStall
    }

    /// Handle every whole packet already read (none while paused for a
    /// congested subscriber); any packet counts for the keep alive.
    fn handle_buffered(&mut self) -> Result<(), End> {
        let mut heard = false;
        let result = loop {
            if self.congested() || self.paced().is_some() {
                break Ok(());
            }
            match self.conn.try_decode() {
                Ok(Some(packet)) => {
                    heard = true;
                    if let Err(end) = self.handle(packet) {
                        break Err(end);
                    }
                }
                Ok(None) => break Ok(()),
                Err(err) => {
                    tracing::debug!(client_id = %self.session.client_id, error = %err, "bad packet");
                    break Err(End::Violation(err.reason_code().value()));
                }
            }
        };
        if heard {
            // A store, harmless when keep alive is off (0).
            self.wake.touch(self.broker.keepalive.now_ms());
        }
        result
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
            Packet::Auth(a) if self.token_deadline().is_some_and(|t| t.1) => self.on_reauth(&a),
            Packet::Disconnect(d) => Err(self.on_disconnect(&d)),
            // A second CONNECT, AUTH without an authentication method, or a
            // server-to-client packet: protocol errors.
            _ => Err(End::Violation(ReasonCode::PROTOCOL_ERROR.value())),
        }
    }

    /// Whether a subscriber our publishes found congested still holds this
    /// client's reading back.
    pub(crate) fn congested(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| !r.congested.is_empty())
    }

    /// The publish waiting for room in the cluster's outbox, if any.
    pub(crate) fn paced(&self) -> Option<&crate::session::paced::Paced> {
        self.rare.as_ref().and_then(|r| r.paced.as_deref())
    }

    /// The client's will, if it set one.
    pub(crate) fn will(&self) -> Option<&Will> {
        self.rare.as_ref().and_then(|r| r.will.as_deref())
    }

    /// A JWT login's token expiry, and whether AUTH may renew it.
    pub(crate) fn token_deadline(&self) -> Option<&(Instant, bool)> {
        self.rare.as_ref().and_then(|r| r.token_deadline.as_ref())
    }

    /// The rarely used parts, made now if they were not yet.
    pub(crate) fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
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
            End::Normal(d.reason)
        }
    }

    /// Say goodbye, release the session, publish the will, schedule expiry.
    /// Returns how the connection ended after all (a takeover may have
    /// come first) and whether to linger, reading the client's input, so it
    /// sees the error DISCONNECT it was sent.
    async fn finish(&mut self, end: End) -> (End, bool) {
        let mut end = end;
        // The goodbye is this task's to write.
        self.disarm();
        let linger = self.goodbye(end).await;
        let released = crate::session::lifecycle::detach(&self.session, self.conn_id);
        if released.is_none() && !matches!(end, End::Shutdown | End::Revoked | End::CertRevoked) {
            // Someone else is attached now (a takeover), or the session
            // was discarded for another principal.
            end = End::TakenOver;
        }
        if let Some((expiry, _)) = released {
            if !expiry.is_zero() {
                // The will is still to come only if it waits out a delay.
                let pending = end.fires_will() && self.will().is_some_and(|w| !w.delay.is_zero());
                let will = if pending { self.will() } else { None };
                crate::session::durable::write_record(&self.broker, &self.session, will);
            }
        }
        if let Some(w) = self.rare.as_mut().and_then(|r| r.will.take()) {
            if matches!(end, End::Revoked | End::CertRevoked) {
                tracing::info!(client_id = %self.session.client_id, topic = %w.topic, "will dropped: the user or its certificate was revoked");
            } else if end.fires_will() {
                will::fire(&self.broker, &self.session, *w, released);
            }
        }
        if let Some((expiry, generation)) = released {
            will::schedule_expiry(&self.broker, &self.session, expiry, generation);
        }
        (end, linger)
    }

    /// The DISCONNECT (v5) and the close, bounded: a peer that stopped
    /// reading cannot hold the task. True when the connection should then
    /// linger (an error DISCONNECT went out).
    async fn goodbye(&mut self, end: End) -> bool {
        if end == End::WriteStall {
            self.conn.discard_output();
        }
        let packet = match end.reason() {
            Some(reason) if self.version.is_v5() => Some(Packet::Disconnect(Disconnect {
                reason,
                properties: Properties::default(),
            })),
            _ => None,
        };
        let close = async {
            match &packet {
                Some(p) => self.conn.send_and_close(p).await,
                None => self.conn.close().await,
            }
        };
        if tokio::time::timeout(CLOSE_WAIT, close).await.is_err() {
            tracing::debug!(client_id = %self.session.client_id, "peer did not take the goodbye; dropped");
            return false;
        }
        packet.is_some() && end.lingers()
    }

    /// Read and drop the client's input for a bounded while (`linger.rs`).
    async fn linger(&mut self) {
        let Some(_permit) = crate::session::linger::permit() else {
            return;
        };
        let discard = self
            .conn
            .discard_input(crate::session::linger::LINGER_BYTES);
        tokio::select! {
            _ = tokio::time::timeout(crate::session::linger::LINGER, discard) => {}
            _ = self.shutdown.recv() => {}
        }
    }

    /// After CONNACK on a resumed session: retransmit what was in flight
    /// (PUBLISH with DUP, or PUBREL) and re-check queued messages against
    /// the freshly compiled policy.
    fn resume(&mut self) -> Result<(), End> {
        let mut st = self.session.state.lock();
        if !st.is_attached_to(self.conn_id) {
            return Err(End::TakenOver);
        }
        if st.dropped > 0 {
            tracing::warn!(client_id = %self.session.client_id, dropped = st.dropped, "messages were dropped from this session's full queue");
            st.dropped = 0;
        }
        // The queue and the messages in flight were checked against this
        // login's policy when it attached (`install_policy`).
        let sent = crate::session::outbound::retransmit(
            &mut self.conn,
            &mut st,
            &self.broker.authz,
            &self.broker.persist,
            self.version,
        );
        drop(st);
        // The record was written before CONNACK (`connect::accept`).
        sent.map_err(|_| End::Violation(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR.value()))
    }

    /// Why we no longer own the session (called with the state locked).
    pub(crate) fn lost_ownership(&self, kicked: Option<(ConnId, Kick)>) -> End {
        match kicked {
            Some((id, Kick::NotAuthorized)) if id == self.conn_id => End::Revoked,
            Some((id, Kick::PolicyFailed)) if id == self.conn_id => End::PolicyFailed,
            Some((id, Kick::CertRevoked)) if id == self.conn_id => End::CertRevoked,
            Some((id, Kick::Administrative)) if id == self.conn_id => End::Kicked,
            _ => End::TakenOver,
        }
    }
}

/// Poll the loop's timer, if one is set.
fn poll_timer(timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> Poll<()> {
    match timer.as_mut() {
        Some(t) => t.as_mut().poll(cx),
        None => Poll::Pending,
    }
}
