//! The state of one MQTT session, which outlives its network connections.
//!
//! A [`Session`] is keyed by client id and shared: the router holds it (as a
//! [`SubKey`]) to push deliveries, the connection task that currently owns it
//! drains them, and the policy registry swaps its compiled policy. All of it
//! sits behind one short `parking_lot::Mutex`: no `.await` is ever held while
//! it is locked, and each critical section is a few pushes or pops.
//!
//! Two kinds of "owner", kept apart by name:
//! - the session's **owner** ([`OwnerKey`]) is the principal that created it.
//!   It never changes: another principal never resumes the session (see
//!   `lifecycle.rs` for what it gets instead).
//! - the **attachment** ([`Attachment`]) is the connection currently serving
//!   the session. A takeover replaces it and wakes the old connection, which
//!   then sees it is no longer attached and leaves without touching the
//!   state again. Each attachment bumps `generation`, and delayed work (will
//!   delay, expiry, removal) acts only on the generation it saw.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use warden_codec::ProtocolVersion;
use warden_policy::{CompiledPolicy, Principal, QoS};

use crate::authorize::{Authorizer, DecisionMemo, Who};
use crate::persist::{Persister, Ticket};
use crate::session::direct::{Output, WriteThrough};
use crate::session::inflight::Inflight;
use crate::session::message::{Delivery, Message};
use crate::wake::Wake;

/// Identifies one network connection (unique for the broker's lifetime).
pub type ConnId = u64;

/// Identifies one session object (unique for the broker's lifetime). The
/// router keys subscribers by it: a client id names different sessions over
/// time, and a discarded session's entries must never match its successor.
pub type SessionId = u64;

/// The principal a session belongs to: its username, or the anonymous class.
/// (A certificate-identified client has the username its certificate maps
/// to; without a mapping it logs in with a username like anyone else.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OwnerKey {
    User(Arc<str>),
    Anonymous,
}

impl OwnerKey {
    pub fn of(principal: &Principal) -> OwnerKey {
        match &principal.username {
            Some(name) => OwnerKey::User(Arc::clone(name)),
            None => OwnerKey::Anonymous,
        }
    }

    pub fn username(&self) -> Option<&str> {
        match self {
            OwnerKey::User(name) => Some(name),
            OwnerKey::Anonymous => None,
        }
    }

    /// The username, shared.
    pub fn username_arc(&self) -> Option<Arc<str>> {
        match self {
            OwnerKey::User(name) => Some(Arc::clone(name)),
            OwnerKey::Anonymous => None,
        }
    }
}

impl std::fmt::Display for OwnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnerKey::User(name) => f.write_str(name),
            OwnerKey::Anonymous => f.write_str("(anonymous)"),
        }
    }
}

/// Why the broker ends a connection from outside its task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kick {
    /// Another connection took the session over (v5 DISCONNECT 0x8E).
    TakenOver,
    /// The user was removed or disabled (v5 DISCONNECT 0x98, administrative
    /// action). Server shutdown is not a kick: it comes through `Shutdown`.
    NotAuthorized,
    /// The session's policy could not be recompiled after a change: it is
    /// not left on its old rights (v5 DISCONNECT 0x80).
    PolicyFailed,
    /// The connection's client certificate was revoked (v5 DISCONNECT
    /// 0x87); its will is dropped.
    CertRevoked,
    /// An operator disconnected the client (admin API; v5 DISCONNECT 0x98).
    /// The session and the will stay as for any other lost connection.
    Administrative,
}

/// Why a session left this node for another node of the cluster
/// (`cluster::ownership`); it decides the will of the connection that held
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moved {
    /// Handed over on request to the node the client connected to: a
    /// takeover, as on a single node (a will with a delay is cancelled,
    /// one without is published now, by this node, which still owned it).
    HandedOver,
    /// Another node owns it now (it took it over while this node was dead
    /// or cut off): this node no longer owns the will either.
    Lost,
}

/// The connection currently attached to a session.
#[derive(Debug)]
pub struct Attachment {
    pub id: ConnId,
    pub wake: Arc<Wake>,
    pub protocol: ProtocolVersion,
    /// When this connection logged in (unix ms), for the admin API. On a
    /// cluster node it is also the connection's claim stamp
    /// (`cluster::clock`: the login time, moved past any stamp the node has
    /// seen), which tells which of two connections of one client id on two
    /// nodes is newer; one field, since the session's size class counts.
    pub since_ms: u64,
    /// Who may write to this connection's socket (`direct.rs`); a new
    /// attachment starts with its task.
    pub output: Output,
}

/// Where an outbound QoS 1/2 message is in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitComp,
}

#[derive(Clone, Debug)]
pub struct Outgoing {
    pub delivery: Delivery,
    pub phase: Phase,
}

/// The mutable part of a session.
#[derive(Debug)]
pub struct SessionState {
    pub attached: Option<Attachment>,
    /// A connection told to leave, and why. Read by that connection.
    pub kicked: Option<(ConnId, Kick)>,
    /// The session is over (expired, discarded by a takeover, its user
    /// removed): nothing may attach to it, subscribe in it or queue to it.
    pub ended: bool,
    /// Its user was removed or disabled: its will is dropped.
    pub revoked: bool,
    /// It left this node for another node of the cluster (then `ended`).
    pub moved: Option<Moved>,
    /// The last policy change could not be compiled for it: it accepts no
    /// message until a policy is installed again (fail closed).
    pub policy_failed: bool,
    /// Its client id is the one the session store's ops carry (shared, not
    /// copied per op; the same allocation as [`Session::client_id`]).
    pub principal: Principal,
    pub policy: Arc<dyn CompiledPolicy>,
    /// Bumped whenever `policy` is replaced; each queued delivery records
    /// the epoch it was checked under, so sending re-checks a stale one.
    pub policy_epoch: u32,
    /// Messages waiting to be sent (not yet in flight).
    pub queue: VecDeque<Delivery>,
    pub max_queue: usize,
    /// Messages dropped because the queue was full (oldest first).
    pub dropped: u64,
    /// Outbound QoS 1/2 messages waiting for the client's acknowledgement.
    pub inflight: Inflight,
    /// How many QoS 1/2 messages may be in flight (the client's Receive
    /// Maximum, at most 65,535; two bytes keep the session in a smaller
    /// allocation, `server::tests`).
    pub send_quota: u16,
    /// The client's Maximum Packet Size (v5), if it set one.
    pub client_max_packet: Option<u32>,
    /// Inbound QoS 2 packet ids received and not yet released (PUBREL).
    /// A B-tree: empty, it is three words and no hasher state, and most
    /// sessions never hold one.
    pub incoming_qos2: BTreeSet<u16>,
    /// Session expiry after the connection ends. Zero: the session ends with it.
    pub expiry: Duration,
    /// Bumped at every attach; delayed work (will delay, expiry) checks it.
    pub generation: u64,
    /// When the owning connection last took messages off the queue.
    pub last_drain: Instant,
    /// The session has a record in the session store (it is persistent and
    /// persistence is on): its QoS 1/2 deliveries are written too.
    pub stored: bool,
    /// The last delivery `seq` handed out (see `Delivery::seq`).
    pub next_seq: u64,
    /// The protocol of the last connection (for the stored record).
    pub protocol: ProtocolVersion,
    /// Wall clock (unix ms) of the last disconnect while nobody is
    /// attached: the expiry counts from it, across restarts too.
    pub offline_since_ms: Option<u64>,
    /// The last `receive` decision, reused for the same topic and policy.
    pub receive_memo: DecisionMemo,
    /// Set while a JWT login holds the session: the token's roles and
    /// rules, which a policy refresh adds to the store's.
    pub token: Option<Arc<crate::auth::TokenGrant>>,
}

/// A Receive Maximum as the session keeps it (the protocol's is at most
/// 65,535; a larger configured one is the same).
pub fn quota(receive_max: usize) -> u16 {
    u16::try_from(receive_max).unwrap_or(u16::MAX)
}

/// How long a subscriber may take nothing off its queue before publishers
/// stop waiting for it.
pub const STALL_AFTER: Duration = Duration::from_secs(2);

/// What became of an offered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Not queued: denied by `receive`, or nobody to keep it.
    Refused,
    /// Queued; `congested` asks the publisher to pause reading; the
    /// publisher's acknowledgement waits until `ticket` is durable.
    /// `dropped`: the queue was full and lost its oldest message for it.
    Queued {
        congested: bool,
        ticket: Ticket,
        dropped: bool,
    },
}

impl SessionState {
    /// `client_id` is shared with the [`Session`]: it replaces the
    /// principal's copy, so both are one allocation.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client_id: Arc<str>,
        attachment: Attachment,
        mut principal: Principal,
        policy: Arc<dyn CompiledPolicy>,
        max_queue: usize,
        send_quota: usize,
        client_max_packet: Option<u32>,
        expiry: Duration,
    ) -> SessionState {
        let protocol = attachment.protocol;
        principal.client_id = client_id;
        SessionState {
            attached: Some(attachment),
            kicked: None,
            ended: false,
            revoked: false,
            moved: None,
            policy_failed: false,
            principal,
            policy,
            policy_epoch: 0,
            queue: VecDeque::new(),
            max_queue,
            dropped: 0,
            inflight: Inflight::default(),
            send_quota: quota(send_quota),
            client_max_packet,
            incoming_qos2: BTreeSet::new(),
            expiry,
            generation: 0,
            last_drain: Instant::now(),
            stored: false,
            next_seq: 0,
            protocol,
            offline_since_ms: None,
            receive_memo: DecisionMemo::default(),
            token: None,
        }
    }

    /// A session with nobody attached (restored from the session store).
    pub fn offline(
        client_id: Arc<str>,
        principal: Principal,
        policy: Arc<dyn CompiledPolicy>,
        max_queue: usize,
        send_quota: usize,
        expiry: Duration,
        protocol: ProtocolVersion,
    ) -> SessionState {
        let mut st = SessionState::new(
            client_id,
            Attachment {
                id: 0,
                wake: Arc::new(Wake::new()),
                protocol,
                since_ms: 0,
                output: Output::HANDLER,
            },
            principal,
            policy,
            max_queue,
            send_quota,
            None,
            expiry,
        );
        st.attached = None;
        st
    }

    /// Next free packet id for an outbound message; None when all 65535 are in use.
    pub fn alloc_packet_id(&mut self) -> Option<u16> {
        self.inflight.free_id()
    }

    /// Push onto the bounded queue. When it is full, the oldest QoS 0
    /// message goes first, else the oldest message (counted, so an operator
    /// can see a subscriber falling behind). With publishers paused by
    /// [`SessionState::is_congested`] this happens only to offline sessions
    /// and to subscribers that stopped reading.
    pub fn push(&mut self, persist: &Persister, mut delivery: Delivery) -> Ticket {
        if self.queue.len() >= self.max_queue {
            let victim = self
                .queue
                .iter()
                .position(|d| d.qos == QoS::AtMostOnce)
                .unwrap_or(0);
            if let Some(d) = self.queue.remove(victim) {
                self.forget_delivery(persist, &d);
            }
            self.dropped += 1;
        }
        let ticket = self.store_delivery(persist, &mut delivery);
        self.queue.push_back(delivery);
        ticket
    }

    /// Whether publishers should pause for this subscriber: it is online,
    /// half its queue is used, and it is still draining. A subscriber that
    /// has not taken anything for [`STALL_AFTER`] no longer holds publishers
    /// back; its own queue bound (and drop policy) applies instead.
    pub fn is_congested(&self) -> bool {
        self.attached.is_some()
            && self.queue.len() >= (self.max_queue / 2).max(1)
            && self.last_drain.elapsed() < STALL_AFTER
    }

    /// Install a newly compiled policy for `principal` (at login, or after a
    /// policy change) and apply it to everything the session holds, in one
    /// step under the session lock: queued messages and messages in flight
    /// that the new policy denies are dropped. A right revoked while a
    /// message waited must stop it.
    pub fn install_policy(
        &mut self,
        authz: &Authorizer,
        persist: &Persister,
        principal: Principal,
        policy: Arc<dyn CompiledPolicy>,
    ) {
        // The same client id (a session is keyed by it): the session's
        // allocation stays the one shared, not the newcomer's copy.
        let client_id = Arc::clone(&self.principal.client_id);
        self.principal = principal;
        self.principal.client_id = client_id;
        self.policy = policy;
        self.policy_failed = false;
        self.policy_epoch = self.policy_epoch.wrapping_add(1);
        self.receive_memo = DecisionMemo::default();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        while let Some(mut d) = self.queue.pop_front() {
            if self.authorize_delivery(authz, &mut d) {
                kept.push_back(d);
            } else {
                self.forget_delivery(persist, &d);
            }
        }
        self.queue = kept;
        // A PUBREL carries no message: the client already has it.
        let ids: Vec<u16> = self
            .inflight
            .iter()
            .filter(|(_, o)| o.phase != Phase::AwaitComp)
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            let Some(mut d) = self.inflight.get(&id).map(|o| o.delivery.clone()) else {
                continue;
            };
            if !self.authorize_delivery(authz, &mut d) {
                self.inflight.remove(&id);
                self.forget_delivery(persist, &d);
            } else if let Some(o) = self.inflight.get_mut(&id) {
                o.delivery = d;
            }
        }
    }

    /// The `receive` check for one delivery under the current policy: the
    /// one place a fresh, queued, retransmitted, retained or shared delivery
    /// is authorized. Lowers its QoS to what the policy grants and records
    /// the epoch it was checked under.
    pub fn authorize_delivery(&mut self, authz: &Authorizer, d: &mut Delivery) -> bool {
        let who = who(&self.principal);
        let granted = authz.receive(
            who,
            &self.policy,
            &mut self.receive_memo,
            &d.msg.topic,
            d.qos,
            d.retain,
        );
        match granted {
            Some(qos) => {
                d.qos = d.qos.min(qos);
                d.epoch = self.policy_epoch;
                true
            }
            None => false,
        }
    }

    pub fn is_attached_to(&self, conn: ConnId) -> bool {
        self.attached.as_ref().is_some_and(|o| o.id == conn)
    }
}

/// The principal as the audit line names it. A free function, not a
/// method, so it borrows only the principal while the memo is borrowed
/// mutably.
fn who(principal: &Principal) -> Who<'_> {
    Who {
        client_id: &principal.client_id,
        username: principal.username.as_deref(),
        peer: principal.peer,
    }
}

/// One session, shared between the router, its connection and the registry.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub client_id: Arc<str>,
    /// Fixed for the session's life.
    pub owner: OwnerKey,
    pub state: Mutex<SessionState>,
}

impl Session {
    pub fn new(
        id: SessionId,
        client_id: Arc<str>,
        owner: OwnerKey,
        state: SessionState,
    ) -> Session {
        Session {
            id,
            client_id,
            owner,
            state: Mutex::new(state),
        }
    }

    /// Offer a message to this subscriber: the `receive` check, then the
    /// queue, or straight to the socket when `direct` is given and the
    /// subscriber is idle (`direct.rs`).
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &self,
        authz: &Authorizer,
        persist: &Persister,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        sub_ids: &[u32],
        direct: Option<&WriteThrough<'_>>,
    ) -> Offer {
        let (wake, congested, ticket, dropped) = {
            let mut st = self.state.lock();
            let online = st.attached.is_some();
            // Offline: only a persistent session keeps messages, and only QoS 1/2.
            if st.ended
                || st.policy_failed
                || (!online && (st.expiry.is_zero() || qos == QoS::AtMostOnce))
            {
                return Offer::Refused;
            }
            let mut d = Delivery {
                msg: Arc::clone(msg),
                qos,
                retain,
                sub_ids: sub_ids.to_vec(),
                epoch: 0,
                seq: 0,
            };
            if !st.authorize_delivery(authz, &mut d) {
                return Offer::Refused;
            }
            let before = st.dropped;
            let ticket = st.push(persist, d);
            let written = direct.is_some_and(|d| {
                crate::session::direct::offer(&mut st, self.id, (authz, persist), d)
            });
            (
                // Written through: the task has nothing to do for it.
                st.attached
                    .as_ref()
                    .filter(|_| !written)
                    .map(|o| Arc::clone(&o.wake)),
                st.is_congested(),
                ticket,
                st.dropped != before,
            )
        };
        if let Some(wake) = wake {
            wake.notify_one();
        }
        Offer::Queued {
            congested,
            ticket,
            dropped,
        }
    }

    pub fn is_congested(&self) -> bool {
        self.state.lock().is_congested()
    }

    /// Whether the session is currently connected.
    pub fn is_online(&self) -> bool {
        self.state.lock().attached.is_some()
    }
}

/// The router's key for a subscriber: the session, compared by its
/// [`SessionId`] (never by client id: see there).
#[derive(Clone, Debug)]
pub struct SubKey(pub Arc<Session>);

impl PartialEq for SubKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for SubKey {}

/// The session itself: a connection keeps its session as its router key,
/// one pointer rather than two.
impl std::ops::Deref for SubKey {
    type Target = Arc<Session>;

    fn deref(&self) -> &Arc<Session> {
        &self.0
    }
}

impl Hash for SubKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}
