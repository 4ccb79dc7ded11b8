//! The broker's shared state: sessions, subscriptions, retained messages,
//! the policy engine and the store, and the publish path that ties them
//! together (route → `receive` check per subscriber → subscriber's queue).
//!
//! Connection tasks hold an `Arc<Broker>`; nothing here is global.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use warden_auth::Store;
use warden_policy::{AclEngine, EngineOptions, QoS};

use crate::auth::{CredentialCache, Verifier};
use crate::authorize::Authorizer;
use crate::cluster::pacing::Deferred;
use crate::cluster::shared::Reserved;
use crate::config::Config;
use crate::login_cache::LoginCache;
use crate::persist::{Op, Persister, Ticket};
use crate::router::{RetainedStore, SubscriptionTrie};
use crate::session::message::Message;
use crate::session::state::{Offer, Session, SubKey};

/// What became of a routed message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Routed {
    /// Subscribers that accepted it.
    pub accepted: usize,
    /// The session store ticket the publisher's acknowledgement waits for
    /// (0: nothing was stored).
    pub ticket: Ticket,
}

/// What became of a local publish ([`Broker::publish_pending`]).
#[derive(Debug)]
pub struct Published {
    pub routed: Routed,
    /// The JetStream acknowledgement the publisher's PUBACK/PUBREC also
    /// waits for (`cluster.durable_qos`, QoS 1/2).
    pub pending: Option<Arc<crate::cluster::durable::PendingAck>>,
    /// The message when it waits for room in the cluster's outbox: the
    /// publisher holds it, unread, until it has its place
    /// (`cluster::pacing`).
    pub deferred: Option<Box<Deferred>>,
}

/// Everything the connection tasks share.
pub struct Broker {
    /// The live configuration: replaced on SIGHUP. A connection takes a
    /// snapshot at admission and keeps it for its lifetime.
    config: ArcSwap<Config>,
    pub store: Arc<dyn Store>,
    pub engine: AclEngine,
    pub authz: Authorizer,
    /// Logins verified recently, so reconnects skip argon2.
    pub credentials: CredentialCache,
    /// Password verifications: shared by concurrent logins, queued.
    pub verifier: Verifier,
    /// Bans and connection limits (`defence`).
    pub defence: crate::defence::Defence,
    /// Store answers and compiled policies per policy version, so reconnects
    /// skip the store and the compiler.
    pub logins: LoginCache,
    pub router: RwLock<SubscriptionTrie<SubKey>>,
    /// The session store: persistent sessions and retained messages on disk.
    pub persist: Persister,
    pub retained: RwLock<RetainedStore<Arc<Message>>>,
    /// Every session, online or persisted, by client id.
    pub sessions: Mutex<crate::session::map::SessionMap>,
    next_conn: AtomicU64,
    next_session: AtomicU64,
    /// The store's policy version the sessions were last compiled against.
    policy_version: AtomicU64,
    /// The version the policy registry is applying (set before it looks at
    /// the sessions): a login compiled against an older one re-checks itself.
    policy_target: AtomicU64,
    /// Connections closed because the client stopped reading.
    pub write_stalls: AtomicU64,
    /// Parts of write-through deliveries a socket did not take whole
    /// (`session/direct.rs`).
    pub leftovers: crate::session::direct::Leftovers,
    /// Every connection's keep alive, from one timer.
    pub keepalive: Arc<crate::session::keepalive::KeepAlive>,
    /// Revoked client certificates per listener (from its CRLs).
    pub revoked: crate::revocation::Revocations,
    /// OCSP answers about client certificates, kept until nextUpdate.
    pub ocsp: crate::ocsp::OcspChecker,
    /// The token verifier of `auth.jwt`; empty when JWT is off. Built at
    /// start and on a config reload.
    pub jwt: arc_swap::ArcSwapOption<crate::auth::JwtVerifier>,
    /// The HTTP auth service of `auth.http`; empty when off. Built at start.
    pub http: arc_swap::ArcSwapOption<crate::auth::HttpAuth>,
    /// The event webhook of `auth.webhook`; empty when off.
    pub webhook: arc_swap::ArcSwapOption<crate::auth::webhook::Webhook>,
    /// What metrics, `$SYS` and the admin API read (`observe`).
    pub stats: crate::observe::Stats,
    /// The audit log (also held by `authz`, which writes the denies).
    pub audit: Arc<crate::observe::Audit>,
    /// This node's cluster membership; empty on a single node.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Reused match buffer: the publish path must not allocate per message.
    static MATCHES: std::cell::RefCell<Vec<(SubKey, crate::router::MergedMatch)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Broker {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>, persist: Persister) -> Broker {
        let engine = AclEngine::new(EngineOptions {
            superuser_bypass: config.policy.superuser_bypass,
        });
        let stats = crate::observe::Stats::default();
        // Every store call is timed for the metrics.
        let store: Arc<dyn Store> = Arc::new(crate::observe::timed_store::TimedStore::new(
            store,
            Arc::clone(&stats.store),
        ));
        let audit = Arc::new(crate::observe::Audit::new(config.audit.clone()));
        let authz = Authorizer::new(config.policy.on_deny, Arc::clone(&audit));
        let verifier = Verifier::new(config.auth.verify.concurrency.get());
        Broker {
            config: ArcSwap::new(config),
            store,
            engine,
            authz,
            credentials: CredentialCache::default(),
            verifier,
            defence: crate::defence::Defence::default(),
            logins: LoginCache::default(),
            router: RwLock::new(SubscriptionTrie::new()),
            persist,
            retained: RwLock::new(RetainedStore::new()),
            sessions: Mutex::default(),
            next_conn: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            policy_version: AtomicU64::new(0),
            policy_target: AtomicU64::new(0),
            write_stalls: AtomicU64::new(0),
            leftovers: Default::default(),
            keepalive: Arc::new(crate::session::keepalive::KeepAlive::new()),
            revoked: crate::revocation::Revocations::default(),
            ocsp: crate::ocsp::OcspChecker::default(),
            jwt: arc_swap::ArcSwapOption::empty(),
            http: arc_swap::ArcSwapOption::empty(),
            webhook: arc_swap::ArcSwapOption::empty(),
            stats,
            audit,
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// This node's cluster, when it is one of a cluster.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// Set once, at start (`cluster::start`).
    pub(crate) fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Install a reloaded configuration; new connections see it.
    pub fn replace_config(&self, config: Arc<Config>) {
        self.config.store(config);
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn policy_version(&self) -> u64 {
        self.policy_version.load(Ordering::Acquire)
    }

    pub fn set_policy_version(&self, version: u64) {
        self.policy_version.store(version, Ordering::Release);
    }

    /// The version the registry applies or last applied.
    pub fn policy_target(&self) -> u64 {
        self.policy_target.load(Ordering::SeqCst)
    }

    /// Called by the registry before it snapshots the sessions. SeqCst pairs
    /// with the load in `session::connect`: a login either attached before
    /// the snapshot (and is refreshed with it) or sees the new target.
    pub fn set_policy_target(&self, version: u64) {
        self.policy_target.store(version, Ordering::SeqCst);
    }

    /// Route a message that already passed the publisher's `publish` check.
    /// Subscribers whose queue is filling up are added to `congested`, so
    /// the publisher can pause reading until they catch up (back-pressure
    /// instead of loss). The returned ticket is what the publisher's
    /// acknowledgement waits for: the message is in the session store for
    /// every persistent session (and as the retained message) once it is
    /// durable. On a cluster node, the message when it waits for room in
    /// the outbox (the caller holds it, `cluster::pacing`).
    pub fn publish(
        &self,
        msg: Arc<Message>,
        publisher: Option<&SubKey>,
        congested: &mut Vec<Arc<Session>>,
    ) -> (Routed, Option<Box<Deferred>>) {
        let p = self.publish_pending(msg, publisher, congested);
        (p.routed, p.deferred)
    }

    /// [`Broker::publish`], and the JetStream acknowledgement the
    /// publisher's PUBACK/PUBREC must also wait for (`cluster.durable_qos`,
    /// QoS 1/2 only).
    pub fn publish_pending(
        &self,
        msg: Arc<Message>,
        publisher: Option<&SubKey>,
        congested: &mut Vec<Arc<Session>>,
    ) -> Published {
        let ticket = if msg.retain {
            self.store_retained(&msg)
        } else {
            0
        };
        let Some(cluster) = self.cluster.get() else {
            return Published {
                routed: self.route(&msg, publisher, congested, ticket, |_| true),
                pending: None,
                deferred: None,
            };
        };
        // durable_qos: a QoS 1/2 message goes to other nodes through the
        // JetStream stream (one consumer per node), and its shared groups
        // are served on every node that has members (docs/cluster.md).
        if let Some(pending) = cluster.submit_durable(&msg) {
            let routed = self.route(&msg, publisher, congested, ticket, |_| true);
            return Published {
                routed,
                pending: Some(pending),
                deferred: None,
            };
        }
        // A slot in the outbox when another node wants the message (or a
        // wait for one when it is full). Shared groups that other nodes
        // also have members of are then served through NATS queue groups
        // (this node's own queue subscription included), the others here;
        // the message names those served here so that no other node
        // serves them again (cluster/shared.rs).
        let reserved = cluster.reserve(&msg);
        let goes = reserved.goes();
        let mut served = Vec::new();
        let routed = self.route(&msg, publisher, congested, ticket, |queue| {
            let here = !goes || cluster.serves_here(queue);
            if here && goes {
                served.push(queue);
            }
            here
        });
        let deferred = match reserved {
            Reserved::Local => None,
            Reserved::Slot(slot) => {
                slot.send(served);
                None
            }
            Reserved::Full(mut d) => {
                d.set_served(served);
                Some(d)
            }
        };
        Published {
            routed,
            pending: None,
            deferred,
        }
    }

    /// Route a message another node published (`cluster`), as it came on
    /// one of this node's direct NATS subscriptions: to the local direct
    /// subscribers only (shared groups get theirs through their NATS queue
    /// groups), each through its `receive` check.
    pub fn publish_remote(&self, msg: Arc<Message>) {
        // Nobody to slow down: the publisher is on another node; a slow
        // subscriber's own queue limits apply.
        let mut congested = Vec::new();
        self.route(&msg, None, &mut congested, 0, |_| false);
    }

    /// A message NATS gave this node's queue subscription of the shared
    /// group `group` on `filter`: to one of its local members (in rotation,
    /// passing over those that may not receive it). False if none took it.
    pub fn publish_remote_group(&self, msg: Arc<Message>, filter: &str, group: &str) -> bool {
        let mut congested = Vec::new();
        let mut routed = Routed::default();
        let router = self.router.read();
        router.deliver_to_group(filter, group, |key, m| {
            self.offer(&msg, key, m, &mut routed, &mut congested)
        })
    }

    /// [`Broker::publish_remote`] for a message read from the cluster's
    /// JetStream stream: the session store ticket its acknowledgement to
    /// JetStream waits for (0: nothing was stored).
    pub fn publish_remote_stored(&self, msg: Arc<Message>) -> Ticket {
        let mut congested = Vec::new();
        // Shared groups too: a durable message reaches every node's
        // consumer (docs/cluster.md).
        self.route(&msg, None, &mut congested, 0, |_| true).ticket
    }

    fn route(
        &self,
        msg: &Arc<Message>,
        publisher: Option<&SubKey>,
        congested: &mut Vec<Arc<Session>>,
        ticket: Ticket,
        serve: impl FnMut(u64) -> bool,
    ) -> Routed {
        MATCHES.with(|cell| {
            let mut matches = cell.borrow_mut();
            matches.clear();
            let mut routed = Routed {
                accepted: 0,
                ticket,
            };
            let router = self.router.read();
            // Shared groups deliver while the router walks (the member that
            // takes the message is the one that may receive it now); direct
            // subscribers are merged first and offered after the walk.
            router.matches_delivering_shared_if(
                &msg.topic,
                publisher,
                serve,
                |key, m| self.offer(msg, key, m, &mut routed, congested),
                &mut matches,
            );
            // Direct offers need no router: let subscribes proceed.
            drop(router);
            for (key, m) in matches.drain(..) {
                self.offer(msg, &key, &m, &mut routed, congested);
            }
            routed
        })
    }

    /// Offer a routed message to one subscriber; true if it was queued.
    fn offer(
        &self,
        msg: &Arc<Message>,
        key: &SubKey,
        m: &crate::router::MergedMatch,
        routed: &mut Routed,
        congested: &mut Vec<Arc<Session>>,
    ) -> bool {
        let sub_qos = QoS::from_u8(m.qos).unwrap_or(QoS::AtMostOnce);
        let qos = msg.qos.min(sub_qos);
        let retain = msg.retain && m.retain_as_published;
        let direct = crate::session::direct::WriteThrough {
            stats: &self.stats,
            leftovers: &self.leftovers,
        };
        match key.0.offer(
            &self.authz,
            &self.persist,
            msg,
            qos,
            retain,
            &m.subscription_ids,
            Some(&direct),
        ) {
            Offer::Refused => false,
            Offer::Queued {
                congested: busy,
                ticket,
                dropped,
            } => {
                if dropped {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                routed.accepted += 1;
                routed.ticket = routed.ticket.max(ticket);
                if busy && !congested.iter().any(|s| Arc::ptr_eq(s, &key.0)) {
                    congested.push(Arc::clone(&key.0));
                }
                true
            }
        }
    }

    /// Set, replace or clear (empty payload) the retained message of a
    /// topic, on disk too (submitted under the retained lock, so the store
    /// sees the changes of one topic in order), and on a cluster node in
    /// the cluster's retained stream.
    fn store_retained(&self, msg: &Arc<Message>) -> Ticket {
        let mut retained = self.retained.write();
        let cluster = self.cluster.get();
        if msg.payload.is_empty() {
            if let Some(c) = cluster {
                // Even with nothing here: another node may hold it.
                c.write_retained(msg);
            }
            if retained.remove(&msg.topic) {
                return self.persist.submit(Op::RemoveRetained {
                    topic: String::from(&*msg.topic),
                });
            }
        } else if self.config.load().limits.retain_available {
            if let Some(c) = cluster {
                c.write_retained(msg);
            }
            retained.set(&msg.topic, Arc::clone(msg));
            if self.persist.enabled() {
                return self.persist.submit(Op::PutRetained(Box::new(
                    crate::session::durable::stored_message(msg),
                )));
            }
        }
        0
    }

    /// Set (`Some`) or clear the cached retained message of `topic` as the
    /// cluster's retained stream says, on disk too, if `admit` (given what
    /// the cache holds, under the retained lock) agrees. True if applied.
    pub(crate) fn cache_retained(
        &self,
        topic: &str,
        msg: Option<Arc<Message>>,
        admit: impl FnOnce(Option<&Arc<Message>>) -> bool,
    ) -> bool {
        let mut retained = self.retained.write();
        if !admit(retained.get(topic)) {
            return false;
        }
        match msg {
            None => {
                if retained.remove(topic) {
                    self.persist.submit(Op::RemoveRetained {
                        topic: topic.to_owned(),
                    });
                }
            }
            Some(msg) => {
                if !self.config.load().limits.retain_available {
                    return false;
                }
                if self.persist.enabled() {
                    self.persist.submit(Op::PutRetained(Box::new(
                        crate::session::durable::stored_message(&msg),
                    )));
                }
                retained.set(topic, msg);
            }
        }
        true
    }

    /// Look up a session by client id.
    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(client_id).cloned()
    }
}
