//! Who owns each session of the cluster: one record per client id in a
//! JetStream key-value bucket, `warden-<cluster>-sessions`, changed only by
//! compare-and-swap on its revision (docs/cluster.md, "Sessions across
//! nodes").
//!
//! - A session that outlives its connection (clean start 0, or a session
//!   expiry) is registered before its CONNACK: a client id nobody owns is
//!   created with epoch 1; one this node owns is written again (a new
//!   revision: whatever raced with it sees the change); one another node
//!   owns is asked for (`handover.rs`). That node, if the single-node rules
//!   let the newcomer, rewrites the record itself (this node, epoch + 1)
//!   and lets go of the session in one step, so the record and the state
//!   never part. A connect that loses a compare-and-swap reads the record
//!   again and asks its new owner, as a later connect would: two connects
//!   at once end with one connection, the other kicked (0x8E). When NATS or
//!   the bucket cannot answer, such a session is refused (v5 0x88, v3
//!   0x03): two nodes could otherwise each believe they own it.
//! - A clean session (clean start and no expiry) has no record; a record
//!   naming another node makes that node let go of the client id (a
//!   takeover still kicks the old connection) and delete the record.
//!   Without NATS a clean session is served locally.
//! - Every connection also announces its client id on
//!   `warden.<cluster>.claim` with a stamp (`clock.rs`): a node that holds
//!   a clean session of that id kicks it (0x8E) unless its own connection
//!   is the newer, and the single-node rules let the newcomer take over.
//! - A session that ends on its node (expiry, expiry 0 at disconnect,
//!   discarded, its user removed) deletes its record, only if the record is
//!   still this node's at the revision it read: the bucket holds one record
//!   per session that outlives its connection, not one per client id ever
//!   seen.
//! - On each (re)connection to NATS, and once the stored sessions are back
//!   at start, this node reads the record of every session it holds that
//!   outlives its connection and drops those another node owns now, or
//!   whose record it wrote and another node deleted since: it yields, it
//!   never asks the other node for anything.
//! - Everything that changes who holds a client id on this node takes the
//!   client id's lock (`gate.rs`) first.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use warden_policy::{CompiledPolicy, Principal};

use super::clock::{self, ClaimClock};
use super::gate::{Gate, Gates};
use super::handover::{self, Answer, Request};
use super::Cluster;
use crate::broker::Broker;
use crate::session::lifecycle::{self, HandOff, TakeoverRule};
use crate::session::state::{Moved, OwnerKey};

/// How long a connect waits at most for the bucket (each read or write).
const KV_WAIT: Duration = Duration::from_secs(2);

/// How long a will waits at most for NATS to learn who owns its session.
const WILL_WAIT: Duration = Duration::from_secs(5);

/// How soon a bucket that could not be set up is tried again.
const BUCKET_RETRY: Duration = Duration::from_secs(2);

/// The longest wait between two attempts to set the bucket up.
const BUCKET_RETRY_MAX: Duration = Duration::from_secs(60);

/// Rounds of read, compare-and-swap (or ask the owner) before a connect is
/// told to come back later. Two connects at once settle in two; each round
/// is bounded by [`KV_WAIT`] and the takeover request's wait.
const CAS_TRIES: usize = 6;

/// How long a takeover request or a claim waits for a connect of the same
/// client id under way on this node (less than the asking node waits for
/// its answer).
const GATE_WAIT: Duration = Duration::from_secs(2);

/// A client id's record in the bucket (JSON: an operator can read it with
/// `nats kv get`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The node that owns the client id.
    pub node: String,
    /// Bumped by every change of owner; never goes back while the record
    /// exists (a deleted record starts again at 1).
    pub epoch: u64,
    /// The username that owns the session (None: anonymous), for the
    /// single-node rules when the owner cannot be asked.
    pub user: Option<String>,
    /// The session outlives its connection (false: written for a clean
    /// session that took the client id from a node that did not answer,
    /// so that node yields when it is back).
    pub persistent: bool,
}

/// Why a connect cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// NATS or the bucket cannot answer (CONNACK 0x88 / 0x03).
    #[error("the cluster cannot register the session (NATS or its bucket unreachable)")]
    Unavailable,
    /// The single-node rules refuse this principal (CONNACK 0x85 / 0x02).
    #[error("client id in use by another user's session on node {0}")]
    OwnedByAnother(String),
}

/// A connect as the cluster sees it.
pub struct Claim<'a> {
    pub principal: &'a Principal,
    pub policy: &'a Arc<dyn CompiledPolicy>,
    /// The session outlives the connection (session expiry > 0).
    pub persistent: bool,
    pub clean_start: bool,
}

/// A connect the cluster let through: hold it until the session is
/// attached (the client id's lock), and stamp the connection with `stamp`.
#[derive(Debug)]
pub struct Admitted {
    _gate: Gate,
    pub stamp: u64,
}

/// This node's side of session ownership. Held by the [`Cluster`].
#[derive(Debug)]
pub struct Ownership {
    node_id: Arc<str>,
    bucket: String,
    client: Mutex<Option<async_nats::Client>>,
    kv: Mutex<Option<kv::Store>>,
    /// The connection came up (again), or the stored sessions are back:
    /// set up the bucket and yield what another node owns now.
    check: Notify,
    /// Failed attempts to set the bucket up in a row (logged at the first;
    /// the retries space out).
    failures: AtomicU32,
    /// One lock per client id being changed here.
    gates: Arc<Gates>,
    /// Stamps of this node's claims.
    clock: ClaimClock,
    /// The client ids whose record this node wrote or confirmed, and has
    /// not given up: their record goes when their session ends here.
    registered: Mutex<HashSet<Arc<str>>>,
    /// Sessions that ended while the bucket could not be written: their
    /// records are deleted at the next connection.
    orphans: Mutex<HashSet<Arc<str>>>,
    /// The broker, for the tasks a session's end starts.
    broker: OnceLock<Weak<Broker>>,
    /// Records deleted because their session ended here.
    pub deleted: AtomicU64,
}

impl Ownership {
    pub(super) fn new(node_id: Arc<str>, cluster: &str) -> Ownership {
        Ownership {
            node_id,
            bucket: bucket_name(cluster),
            client: Mutex::new(None),
            kv: Mutex::new(None),
            check: Notify::new(),
            failures: AtomicU32::new(0),
            gates: Arc::default(),
            clock: ClaimClock::default(),
            registered: Mutex::default(),
            orphans: Mutex::default(),
            broker: OnceLock::new(),
            deleted: AtomicU64::new(0),
        }
    }

    /// NATS came up (again): look at the bucket and at what this node holds.
    pub fn on_connected(&self) {
        self.check.notify_one();
    }

    /// The stored sessions are back (start-up): see which are still ours.
    pub fn sessions_restored(&self) {
        self.check.notify_one();
    }

    /// A stored session of `client_id` ended while this node was down
    /// (expired, its user removed): its record, if it names this node, is
    /// deleted at the check that follows the restore.
    pub fn ended_while_down(&self, client_id: &str) {
        self.orphans.lock().insert(Arc::from(client_id));
    }

    /// The bucket, when NATS is connected and it is set up.
    fn kv(&self) -> Option<kv::Store> {
        let connected = self
            .client
            .lock()
            .as_ref()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected);
        if !connected {
            return None;
        }
        self.kv.lock().clone()
    }

    fn nats(&self) -> Option<async_nats::Client> {
        self.client.lock().clone()
    }

    /// Everything the cluster does before a login attaches to its session.
    /// The returned [`Admitted`] holds the client id's lock: keep it until
    /// the session is attached.
    pub async fn before_attach(
        &self,
        broker: &Arc<Broker>,
        cluster: &Cluster,
        claim: Claim<'_>,
    ) -> Result<Admitted, Refusal> {
        let client_id = &*claim.principal.client_id;
        let stamp = self.clock.stamp(crate::persist::now_ms());
        let gate = self.gates.lock(client_id).await;
        let admitted = Admitted { _gate: gate, stamp };
        let newcomer = OwnerKey::of(claim.principal);
        // A local session the single-node rules refuse this principal: the
        // attach refuses it, and nothing here may change first.
        if local_refusal(broker, client_id, &newcomer) {
            return Ok(admitted);
        }
        let result = if claim.persistent {
            self.register(broker, cluster, &claim).await
        } else {
            self.clean(broker, cluster, &claim).await
        };
        result?;
        self.announce(cluster, &claim, stamp);
        Ok(admitted)
    }

    /// A session that outlives its connection: registered, or refused.
    async fn register(
        &self,
        broker: &Arc<Broker>,
        cluster: &Cluster,
        claim: &Claim<'_>,
    ) -> Result<(), Refusal> {
        let client_id = &*claim.principal.client_id;
        let key = key_of(client_id);
        let kv = self.kv().ok_or(Refusal::Unavailable)?;
        let user = claim.principal.username.as_deref().map(str::to_owned);
        for _ in 0..CAS_TRIES {
            let (revision, current) = read(&kv, &key).await?;
            let Some(current) = current else {
                let mine = self.record(1, user.clone(), true);
                if write(&kv, &key, &mine, revision).await? {
                    self.registered.lock().insert(Arc::from(client_id));
                    return Ok(());
                }
                continue;
            };
            if current.node == *self.node_id {
                // Written again even when unchanged: a connect elsewhere
                // that read the old revision must not succeed after this.
                let mine = self.record(current.epoch, user.clone(), true);
                if write(&kv, &key, &mine, revision).await? {
                    self.registered.lock().insert(Arc::from(client_id));
                    return Ok(());
                }
                continue;
            }
            // Another node owns it: it rewrites the record for this node
            // and lets go of the session in one step (or says to look
            // again: the record moved on).
            let answer = self
                .ask(cluster, &current, client_id, claim, !claim.clean_start)
                .await;
            let state = match answer {
                Answer::Refused => return Err(Refusal::OwnedByAnother(current.node)),
                Answer::Moved => continue,
                Answer::Unavailable => return Err(Refusal::Unavailable),
                Answer::State(state) => Some(state),
                Answer::NoSession | Answer::Discarded => None,
                Answer::Silent => {
                    // The owner is dead or cut off: its state is out of
                    // reach, and the record is this node's to rewrite.
                    if refused_by_record(broker, &current, &OwnerKey::of(claim.principal)) {
                        return Err(Refusal::OwnedByAnother(current.node));
                    }
                    let mine = self.record(current.epoch + 1, user.clone(), true);
                    if !write(&kv, &key, &mine, revision).await? {
                        continue;
                    }
                    tracing::warn!(
                        client_id,
                        node = %current.node,
                        epoch = mine.epoch,
                        "session taken over from a node that did not answer; its queued messages stay there"
                    );
                    None
                }
            };
            self.took_over(broker, cluster, claim, &current, state)
                .await;
            return Ok(());
        }
        tracing::warn!(
            client_id,
            tries = CAS_TRIES,
            "session record kept changing; connect refused"
        );
        Err(Refusal::Unavailable)
    }

    /// The record names this node now: build what was handed over.
    async fn took_over(
        &self,
        broker: &Arc<Broker>,
        cluster: &Cluster,
        claim: &Claim<'_>,
        from: &Record,
        state: Option<Box<handover::Handover>>,
    ) {
        let client_id = &*claim.principal.client_id;
        self.registered.lock().insert(Arc::from(client_id));
        // Whatever this node still held of an older epoch is stale.
        lifecycle::hand_off(broker, client_id, None, false, Moved::Lost, false);
        let present = state.is_some();
        if let Some(state) = state {
            handover::install(broker, *state, claim.principal, claim.policy);
            // Its subscriptions are this node's interest now: the CONNACK
            // waits, as a SUBACK does, until the other nodes know of it,
            // or a message published right after it could go nowhere.
            interest_known(cluster).await;
        }
        tracing::info!(
            client_id,
            from = %from.node,
            epoch = from.epoch + 1,
            session_present = present,
            "session taken over from another node"
        );
    }

    fn record(&self, epoch: u64, user: Option<String>, persistent: bool) -> Record {
        Record {
            node: self.node_id.to_string(),
            epoch,
            user,
            persistent,
        }
    }

    /// A clean session: served whatever NATS does; a record naming another
    /// node makes that node let go of the client id first (and delete the
    /// record); one naming this node is deleted (the attach ends its
    /// session).
    async fn clean(
        &self,
        broker: &Broker,
        cluster: &Cluster,
        claim: &Claim<'_>,
    ) -> Result<(), Refusal> {
        let client_id = &*claim.principal.client_id;
        let Some(kv) = self.kv() else {
            return Ok(());
        };
        let key = key_of(client_id);
        for _ in 0..CAS_TRIES {
            let Ok((revision, Some(current))) = read(&kv, &key).await else {
                return Ok(());
            };
            if current.node == *self.node_id {
                match delete(&kv, &key, revision).await {
                    Ok(true) => {
                        self.deleted.fetch_add(1, Ordering::Relaxed);
                        self.registered.lock().remove(client_id);
                        return Ok(());
                    }
                    Ok(false) => continue,
                    // Best effort: a clean session does not depend on NATS.
                    Err(_) => return Ok(()),
                }
            }
            match self.ask(cluster, &current, client_id, claim, false).await {
                Answer::Refused => return Err(Refusal::OwnedByAnother(current.node)),
                Answer::Moved => continue,
                Answer::Unavailable | Answer::NoSession | Answer::Discarded | Answer::State(_) => {
                    return Ok(())
                }
                Answer::Silent => {
                    let newcomer = OwnerKey::of(claim.principal);
                    if refused_by_record(broker, &current, &newcomer) {
                        return Err(Refusal::OwnedByAnother(current.node));
                    }
                    // The record names this node now, so that the silent
                    // one yields when it is back; it goes when this
                    // session ends.
                    let user = claim.principal.username.as_deref().map(str::to_owned);
                    let mine = self.record(current.epoch + 1, user, false);
                    if let Ok(true) = write(&kv, &key, &mine, revision).await {
                        self.registered.lock().insert(Arc::from(client_id));
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Ask the owner named by `current` to let go of the client id.
    async fn ask(
        &self,
        cluster: &Cluster,
        current: &Record,
        client_id: &str,
        claim: &Claim<'_>,
        want_state: bool,
    ) -> Answer {
        let Some(client) = self.nats() else {
            return Answer::Silent;
        };
        let request = Request {
            client_id: client_id.to_owned(),
            username: claim.principal.username.as_deref().map(str::to_owned),
            want_state,
            node: self.node_id.to_string(),
            persistent: claim.persistent,
        };
        handover::ask(&client, handover_subject(cluster, &current.node), &request).await
    }

    /// Tell every node this client id connected here (fire and forget).
    fn announce(&self, cluster: &Cluster, claim: &Claim<'_>, stamp: u64) {
        let Some(client) = self.nats() else {
            return;
        };
        if client.connection_state() != async_nats::connection::State::Connected {
            return;
        }
        let announce = handover::Announce {
            client_id: claim.principal.client_id.to_string(),
            username: claim.principal.username.as_deref().map(str::to_owned),
            node: self.node_id.to_string(),
            stamp,
            persistent: claim.persistent,
        };
        let Ok(payload) = crate::persist::record::encode(&announce) else {
            return;
        };
        let subject = claim_subject(cluster);
        tokio::spawn(async move {
            let _ = client.publish(subject, payload.into()).await;
        });
    }

    /// The owner's side of a takeover request: under the client id's lock,
    /// the record is rewritten for the asking node (deleted for a clean
    /// session) at the revision read, then the session here lets go.
    async fn let_go(&self, broker: &Arc<Broker>, request: &Request) -> Answer {
        let client_id = request.client_id.as_str();
        // A connect of this client id under way here is attached first:
        // its connection is the one handed over.
        let Some(_gate) = self.gates.lock_within(client_id, GATE_WAIT).await else {
            return Answer::Moved;
        };
        let Some(kv) = self.kv() else {
            return Answer::Unavailable;
        };
        let key = key_of(client_id);
        let (revision, current) = match read(&kv, &key).await {
            Ok((revision, Some(r))) if r.node == *self.node_id => (revision, r),
            Ok(_) => return Answer::Moved,
            Err(_) => return Answer::Unavailable,
        };
        let newcomer = handover::owner_key(request.username.as_deref());
        let takeover = broker.config().sessions.takeover;
        let refused = match broker.sessions.lock().get(client_id) {
            Some(s) => {
                lifecycle::takeover_rule(takeover, &s.owner, &newcomer) == TakeoverRule::Refuse
            }
            None => refused_by_record(broker, &current, &newcomer),
        };
        if refused {
            tracing::info!(client_id, node = %request.node, username = %newcomer, "client id belongs to another user's session here; takeover from another node refused");
            return Answer::Refused;
        }
        let written = if request.persistent {
            let theirs = Record {
                node: request.node.clone(),
                epoch: current.epoch + 1,
                user: request.username.clone(),
                persistent: true,
            };
            write(&kv, &key, &theirs, revision).await
        } else {
            delete(&kv, &key, revision).await
        };
        match written {
            Ok(true) => {}
            Ok(false) => return Answer::Moved,
            Err(_) => return Answer::Unavailable,
        }
        if !request.persistent {
            self.deleted.fetch_add(1, Ordering::Relaxed);
        }
        self.registered.lock().remove(client_id);
        handover::let_go(broker, request)
    }

    /// Whether the record of `client_id` names `node` (true when the
    /// bucket cannot say).
    async fn names(&self, client_id: &str, node: &str) -> bool {
        let Some(kv) = self.kv() else {
            return true;
        };
        match read(&kv, &key_of(client_id)).await {
            Ok((_, Some(record))) => record.node == node,
            Ok((_, None)) => false,
            Err(_) => true,
        }
    }

    /// Whether this node may publish the will of the session `client_id`
    /// (one that outlives its connection): the record names this node, or
    /// there is none. When NATS cannot say, this node was the last to know
    /// it owned the session and publishes (docs/cluster.md).
    pub async fn may_fire_will(&self, client_id: &str) -> bool {
        let deadline = tokio::time::Instant::now() + WILL_WAIT;
        let kv = loop {
            if let Some(kv) = self.kv() {
                break kv;
            }
            if tokio::time::Instant::now() >= deadline {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match read(&kv, &key_of(client_id)).await {
            Ok((_, Some(record))) => record.node == *self.node_id,
            Ok((_, None)) | Err(_) => true,
        }
    }
}

/// Wait until the interest this node has now is confirmed (NATS has its
/// subscriptions, the other nodes acknowledged), as long as a SUBACK would.
async fn interest_known(cluster: &Cluster) {
    let ticket = cluster.interest_ticket();
    if ticket == 0 {
        return;
    }
    let wake = Arc::new(crate::wake::Wake::new());
    cluster.interest.notify_when_confirmed(ticket, &wake);
    let wait = super::remote_interest::ACK_WAIT + Duration::from_secs(1);
    let _ = tokio::time::timeout(wait, async {
        while !cluster.interest.is_confirmed(ticket) {
            wake.notified().await;
        }
    })
    .await;
}

/// A session of `client_id` ended on this node (expiry, expiry 0 at
/// disconnect, its user removed): its record goes, if this node wrote it
/// and it is still this node's.
pub fn session_ended(cluster: &Arc<Cluster>, client_id: &Arc<str>) {
    let own = &cluster.sessions;
    if !own.registered.lock().contains(client_id) {
        return;
    }
    let Some(broker) = own.broker.get().and_then(Weak::upgrade) else {
        return;
    };
    let cluster = Arc::clone(cluster);
    let client_id = Arc::clone(client_id);
    tokio::spawn(async move { release(&broker, &cluster, client_id).await });
}

/// Delete the record of `client_id` if no session of it is here and the
/// record is this node's, at the revision read (a node that took it over
/// meanwhile keeps it).
async fn release(broker: &Broker, cluster: &Cluster, client_id: Arc<str>) {
    let own = &cluster.sessions;
    let _gate = own.gates.lock(&client_id).await;
    if broker.sessions.lock().contains_key(&client_id) {
        // A newer session of the same client id here: the record is its.
        return;
    }
    if !own.registered.lock().remove(&client_id) {
        return;
    }
    let key = key_of(&client_id);
    let Some(kv) = own.kv() else {
        own.orphans.lock().insert(client_id);
        return;
    };
    let revision = match read(&kv, &key).await {
        Ok((revision, Some(r))) if r.node == *own.node_id => revision,
        Ok((_, r)) => {
            tracing::debug!(client_id = &*client_id, record = ?r, "cluster: session ended; its record is not this node's");
            return;
        }
        Err(_) => {
            own.orphans.lock().insert(client_id);
            return;
        }
    };
    match delete(&kv, &key, revision).await {
        Ok(true) => {
            own.deleted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                client_id = &*client_id,
                "cluster: session ended; its record deleted"
            );
        }
        Ok(false) => {
            tracing::debug!(
                client_id = &*client_id,
                "cluster: session ended; its record changed meanwhile"
            );
        }
        Err(_) => {
            own.orphans.lock().insert(client_id);
        }
    }
}

/// Any node: another node announced a connection of its client id. A clean
/// session of that id here is taken over, unless its connection is the
/// newer one (and if the single-node rules let the newcomer); a session
/// that outlives its connection is dropped if the ownership record names
/// another node now. A connect of that id under way here is judged once it
/// attached.
pub fn on_announce(broker: &Arc<Broker>, cluster: &Arc<Cluster>, msg: &async_nats::Message) {
    let Ok(a) = crate::persist::record::decode::<handover::Announce>(&msg.payload) else {
        return;
    };
    if *a.node == *cluster.node_id {
        return;
    }
    let own = &cluster.sessions;
    own.clock.observe(a.stamp);
    if !broker.sessions.lock().contains_key(a.client_id.as_str())
        && !own.gates.is_busy(&a.client_id)
    {
        return;
    }
    let broker = Arc::clone(broker);
    let cluster = Arc::clone(cluster);
    tokio::spawn(async move {
        let own = &cluster.sessions;
        // Judged once a connect under way here attached (or, if it takes
        // too long, as things are).
        let _gate = own.gates.lock_within(&a.client_id, GATE_WAIT).await;
        let (persistent, stamp) = match broker.sessions.lock().get(a.client_id.as_str()) {
            None => return,
            Some(s) => {
                let st = s.state.lock();
                (
                    !st.expiry.is_zero(),
                    st.attached.as_ref().map(|c| c.since_ms),
                )
            }
        };
        if persistent {
            if !own.may_fire_will(&a.client_id).await {
                if let HandOff::Gone(_) =
                    lifecycle::hand_off(&broker, &a.client_id, None, false, Moved::Lost, false)
                {
                    own.registered.lock().remove(a.client_id.as_str());
                    tracing::info!(client_id = %a.client_id, node = %a.node, "session owned by another node now; dropped here");
                }
            }
            return;
        }
        // A session that outlives its connection wins over a clean one
        // while it holds the record (this clean connect may have taken it
        // over since: then it stays); between two clean ones the later
        // stamp does.
        let stays = if a.persistent {
            !own.names(&a.client_id, &a.node).await
        } else {
            stamp.is_some_and(|s| clock::newer((s, &cluster.node_id), (a.stamp, &a.node)))
        };
        if stays {
            tracing::info!(client_id = %a.client_id, node = %a.node, "a connection on another node at the same time; this newer one stays");
            return;
        }
        let newcomer = handover::owner_key(a.username.as_deref());
        let gone = lifecycle::hand_off(
            &broker,
            &a.client_id,
            Some(&newcomer),
            false,
            Moved::HandedOver,
            true,
        );
        match gone {
            HandOff::Gone(_) => {
                tracing::info!(client_id = %a.client_id, node = %a.node, "connection taken over by a connection on another node")
            }
            HandOff::Refused => {
                tracing::info!(client_id = %a.client_id, node = %a.node, username = %newcomer, "another user connected with this client id on another node; this connection stays")
            }
            HandOff::NoSession => {}
        }
    });
}

/// The single-node rules refuse `newcomer` the session of the record's
/// user (when its node cannot be asked, the record still says whose it is).
fn refused_by_record(broker: &Broker, current: &Record, newcomer: &OwnerKey) -> bool {
    let owner = current
        .user
        .as_deref()
        .map_or(OwnerKey::Anonymous, |u| OwnerKey::User(Arc::from(u)));
    let takeover = broker.config().sessions.takeover;
    lifecycle::takeover_rule(takeover, &owner, newcomer) == TakeoverRule::Refuse
}

/// The local session of `client_id`, if any, refuses `newcomer` by the
/// single-node rules.
fn local_refusal(broker: &Broker, client_id: &str, newcomer: &OwnerKey) -> bool {
    let takeover = broker.config().sessions.takeover;
    broker.sessions.lock().get(client_id).is_some_and(|s| {
        lifecycle::takeover_rule(takeover, &s.owner, newcomer) == TakeoverRule::Refuse
    })
}

/// The record of `key` and its revision (0: none; a deleted one's
/// revision otherwise), or Unavailable. Read from the stream's leader, not
/// with a direct get: on a NATS cluster a direct get may be answered by a
/// replica a write behind, and a node would act on an owner that changed
/// (the compare-and-swap keeps the writes right, not the decisions taken
/// on a read alone, such as yielding a session).
async fn read(kv: &kv::Store, key: &str) -> Result<(u64, Option<Record>), Refusal> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let subject = format!("{}{key}", kv.prefix);
    let last = kv.stream.get_last_raw_message_by_subject(&subject);
    let msg = match tokio::time::timeout(KV_WAIT, last).await {
        Ok(Ok(msg)) => msg,
        Ok(Err(err)) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {
            return Ok((0, None));
        }
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "cluster: session record unreadable");
            return Err(Refusal::Unavailable);
        }
        Err(_) => return Err(Refusal::Unavailable),
    };
    // A KV delete or purge (an operator's `nats kv del`) leaves a marker.
    let removed = msg
        .headers
        .get("KV-Operation")
        .is_some_and(|op| op.as_str() != "PUT");
    let record = if removed {
        None
    } else {
        serde_json::from_slice(&msg.payload).ok()
    };
    Ok((msg.sequence, record))
}

/// Write `record` if the key is still at `revision`: true when written,
/// false when another node changed it first.
async fn write(kv: &kv::Store, key: &str, record: &Record, revision: u64) -> Result<bool, Refusal> {
    let value = serde_json::to_vec(record).map_err(|_| Refusal::Unavailable)?;
    match tokio::time::timeout(KV_WAIT, kv.update(key, value.into(), revision)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(err)) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "cluster: session record not written");
            Err(Refusal::Unavailable)
        }
        Err(_) => Err(Refusal::Unavailable),
    }
}

/// Remove the record of `key` if it is still at `revision`: true when it
/// was. A purge of the key's subject up to `revision` (inclusive): the
/// bucket keeps one message per key, so this removes the record if and
/// only if nobody wrote it since, and leaves no delete marker behind (a
/// KV delete would leave one per client id ever seen).
async fn delete(kv: &kv::Store, key: &str, revision: u64) -> Result<bool, Refusal> {
    let purge = kv
        .stream
        .purge()
        .filter(format!("{}{key}", kv.prefix))
        .sequence(revision + 1);
    match tokio::time::timeout(KV_WAIT, std::future::IntoFuture::into_future(purge)).await {
        Ok(Ok(done)) => Ok(done.purged > 0),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "cluster: session record not deleted");
            Err(Refusal::Unavailable)
        }
        Err(_) => Err(Refusal::Unavailable),
    }
}

/// The bucket of a cluster's session records.
pub fn bucket_name(cluster: &str) -> String {
    format!("warden-{cluster}-sessions")
}

/// Where a node answers takeover requests.
pub fn handover_subject(cluster: &Cluster, node: &str) -> String {
    format!("warden.{}.session.{node}", cluster.subjects.cluster())
}

/// Where every connection's client id is announced.
pub fn claim_subject(cluster: &Cluster) -> String {
    format!("warden.{}.claim", cluster.subjects.cluster())
}

/// A client id as a bucket key. Keys may hold `[-/_=.A-Za-z0-9]`; a client
/// id may be any UTF-8, so letters, digits, `-` and `_` are kept and every
/// other byte is written `=XX` (upper-case hex): reversible and without
/// collisions. An id whose key would be longer than [`MAX_KEY`] is named by
/// its SHA-256 instead (`=H` and 64 hex digits, which no escape starts with).
pub fn key_of(client_id: &str) -> String {
    let mut key = String::with_capacity(client_id.len());
    for b in client_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            key.push(char::from(b));
        } else {
            key.push_str(&format!("={b:02X}"));
        }
    }
    if key.is_empty() || key.len() > MAX_KEY {
        use sha2::Digest;
        return format!(
            "=H{}",
            hex::encode(sha2::Sha256::digest(client_id.as_bytes()))
        );
    }
    key
}

/// The longest key written as is: well inside a NATS subject's limits.
const MAX_KEY: usize = 512;

/// The ownership task: set up the bucket, answer other nodes' takeover
/// requests and claims, and yield what another node owns now after every
/// (re)connection.
pub(super) async fn run(broker: Arc<Broker>, cluster: Arc<Cluster>, client: async_nats::Client) {
    let own = &cluster.sessions;
    *own.client.lock() = Some(client.clone());
    let _ = own.broker.set(Arc::downgrade(&broker));
    let mut requests = match client
        .subscribe(handover_subject(&cluster, &cluster.node_id))
        .await
    {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cluster: cannot answer takeover requests");
            return;
        }
    };
    let mut claims = match client.subscribe(claim_subject(&cluster)).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cluster: cannot follow claims");
            return;
        }
    };
    let checking = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        tokio::select! {
            _ = own.check.notified() => {
                let (broker, cluster, client, checking) =
                    (Arc::clone(&broker), Arc::clone(&cluster), client.clone(), Arc::clone(&checking));
                // Off this loop: requests are answered meanwhile.
                tokio::spawn(async move {
                    let _one_at_a_time = checking.lock().await;
                    check(&broker, &cluster, &client).await;
                });
            }
            msg = requests.next() => {
                let Some(msg) = msg else { return };
                // Off this loop: an answer may wait for a connect under way.
                let (broker, cluster, client) =
                    (Arc::clone(&broker), Arc::clone(&cluster), client.clone());
                tokio::spawn(async move { answer(&broker, &cluster, &client, msg).await });
            }
            msg = claims.next() => {
                let Some(msg) = msg else { return };
                on_announce(&broker, &cluster, &msg);
            }
        }
    }
}

/// Answer a takeover request (`let_go`).
async fn answer(
    broker: &Arc<Broker>,
    cluster: &Cluster,
    client: &async_nats::Client,
    msg: async_nats::Message,
) {
    let Some(reply) = msg.reply else { return };
    let request: Request = match crate::persist::record::decode(&msg.payload) {
        Ok(r) => r,
        Err(err) => {
            tracing::debug!(error = %err, "cluster: unreadable takeover request");
            return;
        }
    };
    let answer = cluster.sessions.let_go(broker, &request).await;
    handover::reply(client, reply, answer, &request.client_id).await;
}

/// Set up the bucket if it is not yet, then drop the sessions another node
/// owns now, register those nobody does, and delete the records of the
/// sessions that ended while NATS was away.
async fn check(broker: &Arc<Broker>, cluster: &Arc<Cluster>, client: &async_nats::Client) {
    let own = &cluster.sessions;
    if own.kv.lock().is_none() {
        match open_bucket(client, &own.bucket).await {
            Ok(kv) => {
                own.failures.store(0, Ordering::Relaxed);
                tracing::info!(bucket = %own.bucket, "cluster: session ownership bucket ready");
                *own.kv.lock() = Some(kv);
            }
            Err(err) => {
                let failures = own.failures.fetch_add(1, Ordering::Relaxed);
                if failures == 0 {
                    tracing::error!(bucket = %own.bucket, error = %err, "cluster: no session ownership bucket (is JetStream enabled?); sessions that outlive their connection are refused until there is");
                }
                // JetStream may still be starting: try again shortly.
                let cluster = Arc::clone(cluster);
                tokio::spawn(async move {
                    let wait = BUCKET_RETRY * 2u32.pow(failures.min(5));
                    tokio::time::sleep(wait.min(BUCKET_RETRY_MAX)).await;
                    cluster.sessions.check.notify_one();
                });
                return;
            }
        }
    }
    let Some(kv) = own.kv() else { return };
    let orphans: Vec<Arc<str>> = own.orphans.lock().drain().collect();
    if !orphans.is_empty() {
        tracing::debug!(
            sessions = orphans.len(),
            "cluster: deleting the records of sessions that ended while NATS was away"
        );
    }
    for client_id in orphans {
        own.registered.lock().insert(Arc::clone(&client_id));
        release(broker, cluster, client_id).await;
    }
    let held: Vec<(Arc<str>, Option<String>)> = broker
        .sessions
        .lock()
        .values()
        .filter(|s| {
            let st = s.state.lock();
            !st.ended && !st.expiry.is_zero()
        })
        .map(|s| {
            (
                Arc::clone(&s.client_id),
                s.owner.username().map(str::to_owned),
            )
        })
        .collect();
    let mut yielded = 0usize;
    for (client_id, user) in held {
        let Some(_gate) = own.gates.lock_within(&client_id, GATE_WAIT).await else {
            // A connect or takeover of it under way settles it.
            continue;
        };
        if !broker.sessions.lock().contains_key(&client_id) {
            continue;
        }
        let key = key_of(&client_id);
        let Ok((revision, current)) = read(&kv, &key).await else {
            return;
        };
        let mine = own.registered.lock().contains(&client_id);
        let owner = match current {
            Some(r) if r.node == *own.node_id => {
                own.registered.lock().insert(client_id);
                continue;
            }
            Some(r) => r.node,
            // This node wrote it and another deleted it since: another
            // node took the session over while this one could not hear,
            // and it ended there.
            None if mine => "(none: ended on another node)".to_owned(),
            None => {
                // Made before this node joined the cluster, or restored at
                // start: it is this node's.
                let record = own.record(1, user, true);
                if let Ok(true) = write(&kv, &key, &record, revision).await {
                    own.registered.lock().insert(client_id);
                }
                continue;
            }
        };
        own.registered.lock().remove(&client_id);
        let gone = lifecycle::hand_off(broker, &client_id, None, false, Moved::Lost, false);
        if matches!(gone, HandOff::Gone(_)) {
            yielded += 1;
            tracing::info!(client_id = &*client_id, owner = %owner, "session owned by another node now; dropped here");
        }
    }
    if yielded > 0 {
        tracing::info!(
            sessions = yielded,
            "cluster: yielded sessions other nodes own now"
        );
    }
}

/// The bucket, made by the first node that needs it: the stream a KV
/// bucket is (async-nats's `create_key_value` reads account details that
/// nats-server before 2.10 does not send, so the stream is made directly,
/// with the settings async-nats gives a bucket).
async fn open_bucket(client: &async_nats::Client, bucket: &str) -> Result<kv::Store, String> {
    use async_nats::jetstream::stream;
    let js = async_nats::jetstream::new(client.clone());
    if let Ok(kv) = js.get_key_value(bucket).await {
        return Ok(kv);
    }
    let config = |replicas| stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("Warden: the node that owns each client id".to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    // Three copies on a NATS cluster; a single server takes only one.
    if js.create_stream(config(3)).await.is_err() {
        js.create_stream(config(1))
            .await
            .map_err(|e| e.to_string())?;
    }
    js.get_key_value(bucket).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_and_distinct() {
        let ids = [
            "a",
            "a.b",
            "a=2Eb",
            "a b",
            "é",
            "",
            "-_x9",
            &"x".repeat(600),
        ];
        let keys: Vec<String> = ids.iter().map(|i| key_of(i)).collect();
        for k in &keys {
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{k}"
            );
            assert!(!k.is_empty() && k.len() <= MAX_KEY.max(66));
        }
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len(), "{keys:?}");
        assert_eq!(key_of("a.b"), "a=2Eb");
        assert_eq!(key_of("a=2Eb"), "a=3D2Eb");
    }

    #[test]
    fn records_read_back() {
        let r = Record {
            node: "n1".into(),
            epoch: 7,
            user: Some("alice".into()),
            persistent: true,
        };
        let bytes = serde_json::to_vec(&r).expect("encode");
        assert_eq!(serde_json::from_slice::<Record>(&bytes).expect("decode"), r);
    }
}
