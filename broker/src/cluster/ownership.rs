//! Who owns each session of the cluster: one record per client id in a
//! JetStream key-value bucket, `warden-<cluster>-sessions`, changed only by
//! compare-and-swap on its revision (docs/cluster.md, "Sessions across
//! nodes").
//!
//! - A session that outlives its connection (clean start 0, or a session
//!   expiry) is registered before its CONNACK: a client id nobody owns is
//!   created with epoch 1; one this node owns is used as it is; one another
//!   node owns is asked for (`handover.rs`) and then rewritten with this
//!   node and the epoch + 1. When NATS or the bucket cannot answer, such a
//!   session is refused (v5 0x88, v3 0x03): two nodes could otherwise each
//!   believe they own it.
//! - A clean session (clean start and no expiry) needs no record; when a
//!   record names another node, that node is asked to let go of the client
//!   id (a takeover still kicks the old connection) and the record is
//!   rewritten as this node's, not persistent. Without NATS a clean session
//!   is served locally.
//! - Every connection also announces its client id on
//!   `warden.<cluster>.claim`: a node that holds a clean session of that id
//!   kicks it (0x8E) if the single-node rules let the newcomer take over.
//! - On each (re)connection to NATS, and once the stored sessions are back
//!   at start, this node reads the record of every session it holds that
//!   outlives its connection and drops those another node owns now: it
//!   yields, it never asks the other node for anything.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use warden_policy::{CompiledPolicy, Principal};

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

/// Compare-and-swap attempts before a connect is told to come back later.
const CAS_TRIES: usize = 3;

/// A client id's record in the bucket (JSON: an operator can read it with
/// `nats kv get`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The node that owns the client id.
    pub node: String,
    /// Bumped by every change of owner; never goes back.
    pub epoch: u64,
    /// The username that owns the session (None: anonymous), for the
    /// single-node rules when the owner cannot be asked.
    pub user: Option<String>,
    /// The session outlives its connection.
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
    pub async fn before_attach(
        &self,
        broker: &Arc<Broker>,
        cluster: &Cluster,
        claim: Claim<'_>,
    ) -> Result<(), Refusal> {
        let client_id = &*claim.principal.client_id;
        let newcomer = OwnerKey::of(claim.principal);
        // A local session the single-node rules refuse this principal: the
        // attach refuses it, and nothing here may change first.
        if local_refusal(broker, client_id, &newcomer) {
            return Ok(());
        }
        let result = if claim.persistent {
            self.register(broker, cluster, &claim).await
        } else {
            self.clean(broker, cluster, &claim).await
        };
        if result.is_ok() {
            self.announce(cluster, client_id, claim.principal.username.as_deref());
        }
        result
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
        for _ in 0..CAS_TRIES {
            let (revision, current) = read(&kv, &key).await?;
            let mine = Record {
                node: self.node_id.to_string(),
                epoch: current.as_ref().map_or(1, |r| r.epoch + 1),
                user: claim.principal.username.as_deref().map(str::to_owned),
                persistent: true,
            };
            let Some(current) = current else {
                match write(&kv, &key, &mine, revision).await? {
                    true => return Ok(()),
                    false => continue,
                }
            };
            if current.node == *self.node_id {
                if current.persistent && current.user == mine.user {
                    return Ok(());
                }
                let mine = Record {
                    epoch: current.epoch,
                    ..mine
                };
                match write(&kv, &key, &mine, revision).await? {
                    true => return Ok(()),
                    false => continue,
                }
            }
            // Another node owns it: ask it for the session, then take the
            // record over. The state comes first: the record must not name
            // this node before the old owner has let go (it would yield).
            let answer = self
                .ask(cluster, &current, client_id, claim, !claim.clean_start)
                .await;
            let state = match answer {
                Answer::Refused => return Err(Refusal::OwnedByAnother(current.node)),
                Answer::State(state) => Some(state),
                Answer::NoSession | Answer::Discarded => None,
                Answer::Silent => {
                    // The owner is dead or cut off: its state is out of
                    // reach.
                    if refused_by_record(broker, &current, claim.principal) {
                        return Err(Refusal::OwnedByAnother(current.node));
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
            if !write(&kv, &key, &mine, revision).await? {
                // Someone else took it meanwhile: what we were handed is
                // lost, and the client is told to come back.
                tracing::warn!(
                    client_id,
                    "session record changed during a takeover; refused"
                );
                return Err(Refusal::Unavailable);
            }
            // Whatever this node still held of an older epoch is stale.
            lifecycle::hand_off(broker, client_id, None, false, Moved::Lost, false);
            let present = state.is_some();
            if let Some(state) = state {
                handover::install(broker, *state, claim.principal, claim.policy);
            }
            tracing::info!(
                client_id,
                from = %current.node,
                epoch = mine.epoch,
                session_present = present,
                "session taken over from another node"
            );
            return Ok(());
        }
        Err(Refusal::Unavailable)
    }

    /// A clean session: served whatever NATS does; a record naming another
    /// node makes that node let go of the client id first.
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
        let Ok((revision, Some(current))) = read(&kv, &key).await else {
            return Ok(());
        };
        if current.node != *self.node_id {
            let refused = match self.ask(cluster, &current, client_id, claim, false).await {
                Answer::Refused => true,
                Answer::Silent => refused_by_record(broker, &current, claim.principal),
                _ => false,
            };
            if refused {
                return Err(Refusal::OwnedByAnother(current.node));
            }
        }
        let mine = Record {
            node: self.node_id.to_string(),
            epoch: current.epoch + 1,
            user: claim.principal.username.as_deref().map(str::to_owned),
            persistent: false,
        };
        // Best effort: a clean session does not depend on NATS.
        let _ = write(&kv, &key, &mine, revision).await;
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
        };
        handover::ask(&client, handover_subject(cluster, &current.node), &request).await
    }

    /// Tell every node this client id connected here (fire and forget).
    fn announce(&self, cluster: &Cluster, client_id: &str, username: Option<&str>) {
        let Some(client) = self.nats() else {
            return;
        };
        if client.connection_state() != async_nats::connection::State::Connected {
            return;
        }
        let claim = handover::Announce {
            client_id: client_id.to_owned(),
            username: username.map(str::to_owned),
            node: self.node_id.to_string(),
        };
        let Ok(payload) = crate::persist::record::encode(&claim) else {
            return;
        };
        let subject = claim_subject(cluster);
        tokio::spawn(async move {
            let _ = client.publish(subject, payload.into()).await;
        });
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

/// The single-node rules refuse `principal` the session of the record's
/// user (when its node cannot be asked, the record still says whose it is).
fn refused_by_record(broker: &Broker, current: &Record, principal: &Principal) -> bool {
    let owner = current
        .user
        .as_deref()
        .map_or(OwnerKey::Anonymous, |u| OwnerKey::User(Arc::from(u)));
    let takeover = broker.config().sessions.takeover;
    lifecycle::takeover_rule(takeover, &owner, &OwnerKey::of(principal)) == TakeoverRule::Refuse
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
/// revision otherwise), or Unavailable.
async fn read(kv: &kv::Store, key: &str) -> Result<(u64, Option<Record>), Refusal> {
    let entry = match tokio::time::timeout(KV_WAIT, kv.entry(key)).await {
        Ok(Ok(entry)) => entry,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "cluster: session record unreadable");
            return Err(Refusal::Unavailable);
        }
        Err(_) => return Err(Refusal::Unavailable),
    };
    Ok(match entry {
        None => (0, None),
        Some(e) if e.operation != kv::Operation::Put => (e.revision, None),
        Some(e) => (e.revision, serde_json::from_slice(&e.value).ok()),
    })
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
                handover::answer(&broker, &client, msg).await;
            }
            msg = claims.next() => {
                let Some(msg) = msg else { return };
                handover::on_announce(&broker, &cluster, &msg);
            }
        }
    }
}

/// Set up the bucket if it is not yet, then drop the sessions another node
/// owns now and register those nobody does.
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
        let key = key_of(&client_id);
        let Ok((revision, current)) = read(&kv, &key).await else {
            return;
        };
        match current {
            Some(r) if r.node == *own.node_id => {}
            Some(r) => {
                let gone = lifecycle::hand_off(broker, &client_id, None, false, Moved::Lost, false);
                if matches!(gone, HandOff::Gone(_)) {
                    yielded += 1;
                    tracing::info!(client_id = &*client_id, owner = %r.node, epoch = r.epoch, "session owned by another node now; dropped here");
                }
            }
            None => {
                // Made before this node joined the cluster, or its record
                // was removed: it is this node's.
                let mine = Record {
                    node: own.node_id.to_string(),
                    epoch: 1,
                    user,
                    persistent: true,
                };
                let _ = write(&kv, &key, &mine, revision).await;
            }
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
