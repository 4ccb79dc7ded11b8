//! `auth.http` with `authorize_each`: the service is asked about every
//! publish, subscribe and delivery topic (`POST {url}/authorize`), for
//! services that will not hand their rules out.
//!
//! The broker's decision points are synchronous (a publish is decided in
//! the connection's packet loop, a delivery under the subscriber's session
//! lock), so the service's answers live in a bounded cache keyed by
//! principal, client id, action and topic, for the TTL each answer names.
//! A cache hit is a hash and a few string comparisons: no request, no
//! await. On a miss:
//!
//! - **publish and subscribe** wait for the answer in place
//!   (`block_in_place`: the connection's own task waits, the worker thread
//!   hands its other tasks on), at most the service's `timeout`. A client
//!   cannot be told "maybe" for its own packet. A subscribe to a topic
//!   without wildcards also fetches the `receive` answer for that topic, so
//!   its deliveries are decided from the cache.
//! - **receive** is decided under the subscriber's lock, where waiting on
//!   the network would stall every publisher to it: a delivery whose
//!   answer is not cached is not delivered (fail closed) and the answer is
//!   fetched in the background for the next one.
//! - An answer that has run through three quarters of its TTL and is still
//!   used is fetched again in the background, so a steady stream does not
//!   hit a miss when it expires.
//!
//! The service's answer is combined with the locally compiled rules (the
//! store's and the service's own `/rules`): a local deny rule, QoS or
//! retain limit still applies; otherwise the service decides. Anything but
//! an explicit `"allow"` (down, slow, a breaker open, an error status,
//! malformed JSON) is a deny, and is not cached.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use parking_lot::Mutex;
use warden_policy::{
    Action, CompileWarning, CompiledPolicy, Decision, DenyReason, Explanation, PolicyVersion,
    Principal,
};

use super::http::{AuthorizeBody, HttpAuth, HttpPrincipal};
use super::jwt::TokenGrant;

/// Background fetches in flight at once; beyond, a miss is only denied
/// (the requests would queue for the service's slots anyway).
const MAX_PENDING: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Publish,
    Subscribe,
    Receive,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Publish => "publish",
            Kind::Subscribe => "subscribe",
            Kind::Receive => "receive",
        }
    }
}

/// One answer of the service. The cache is keyed by a keyed hash of what
/// it answers for; the entry repeats it, so a hash collision is a miss,
/// never another principal's or topic's answer.
#[derive(Debug)]
struct Answer {
    username: Arc<str>,
    client_id: Arc<str>,
    kind: Kind,
    topic: Box<str>,
    allow: bool,
    ttl: Duration,
    /// Used after this, it is fetched again in the background.
    refresh_at: Instant,
}

impl Answer {
    fn answers(&self, username: &str, client_id: &str, kind: Kind, topic: &str) -> bool {
        self.kind == kind
            && *self.topic == *topic
            && *self.client_id == *client_id
            && *self.username == *username
    }
}

struct UntilTtl;

impl Expiry<u64, Arc<Answer>> for UntilTtl {
    fn expire_after_create(
        &self,
        _: &u64,
        answer: &Arc<Answer>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(answer.ttl)
    }
}

/// The decision cache and the background fetches under way.
pub struct Decisions {
    cache: Cache<u64, Arc<Answer>>,
    /// Random per process: a client cannot aim topics at one slot.
    hasher: std::hash::RandomState,
    pending: Mutex<HashSet<u64>>,
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions")
            .field("cached", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Decisions {
    pub fn new(capacity: u64) -> Decisions {
        Decisions {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilTtl)
                .support_invalidation_closures()
                .build(),
            hasher: std::hash::RandomState::new(),
            pending: Mutex::new(HashSet::new()),
        }
    }

    fn key(&self, username: &str, client_id: &str, kind: Kind, topic: &str) -> u64 {
        self.hasher.hash_one((username, client_id, kind, topic))
    }

    /// Drop the answers for `username` (everyone's when None).
    pub fn forget(&self, username: Option<&str>) {
        match username {
            None => self.cache.invalidate_all(),
            Some(name) => {
                let name: Arc<str> = Arc::from(name);
                // Only fails without support_invalidation_closures, which
                // `new` sets; then everything goes, which is also correct.
                if self
                    .cache
                    .invalidate_entries_if(move |_, a| a.username == name)
                    .is_err()
                {
                    self.cache.invalidate_all();
                }
            }
        }
    }

    /// How many answers are kept (approximately; for the metrics).
    pub fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A principal's compiled rules with the service asked per topic; see the
/// module docs.
#[derive(Debug)]
pub struct ServicePolicy {
    inner: Arc<dyn CompiledPolicy>,
    http: Arc<HttpAuth>,
    username: Arc<str>,
    client_id: Arc<str>,
    principal: Arc<HttpPrincipal>,
}

/// `policy`, asking the service per topic when `token` is a grant of the
/// service for which `authorize_each` holds; else `policy` itself.
pub fn wrap(
    http: Option<&Arc<HttpAuth>>,
    token: Option<&TokenGrant>,
    principal: &Principal,
    policy: Arc<dyn CompiledPolicy>,
) -> Arc<dyn CompiledPolicy> {
    let (Some(http), Some(token)) = (http, token) else {
        return policy;
    };
    let Some(grant) = token.http.as_ref().filter(|g| g.authorize_each) else {
        return policy;
    };
    Arc::new(ServicePolicy {
        inner: policy,
        http: Arc::clone(http),
        username: Arc::from(token.username.as_str()),
        client_id: Arc::clone(&principal.client_id),
        principal: Arc::new(HttpPrincipal {
            username: token.username.clone(),
            roles: grant.roles.clone(),
            attributes: grant.attributes.clone(),
            authorize_each: true,
        }),
    })
}

/// Whether waiting here for the network is possible: on a worker of the
/// multi-threaded runtime (or a thread of its blocking pool).
fn can_wait() -> Option<tokio::runtime::Handle> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    (handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread).then_some(handle)
}

impl ServicePolicy {
    /// The cached answer, if any; starts a background refresh when it is
    /// getting old.
    fn cached(&self, kind: Kind, topic: &str) -> Option<bool> {
        let decisions = &self.http.decisions;
        let key = decisions.key(&self.username, &self.client_id, kind, topic);
        let hit = decisions
            .cache
            .get(&key)
            .filter(|a| a.answers(&self.username, &self.client_id, kind, topic))?;
        self.http
            .counts
            .decision_cache_hits
            .fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= hit.refresh_at {
            self.fetch_in_background(kind, topic);
        }
        Some(hit.allow)
    }

    /// Ask the service and remember the answer for its TTL. None: no
    /// usable answer (nothing is remembered).
    async fn fetch(
        http: &HttpAuth,
        principal: &HttpPrincipal,
        client_id: &Arc<str>,
        kind: Kind,
        topic: &str,
    ) -> Option<bool> {
        let body = AuthorizeBody {
            username: &principal.username,
            client_id,
            roles: &principal.roles,
            attributes: &principal.attributes,
            action: kind.as_str(),
            topic,
        };
        let (allow, ttl) = match http.authorize(&body).await {
            Ok(answer) => answer,
            Err(failure) => {
                if matches!(failure, super::http::Failure::Malformed(_)) {
                    tracing::warn!(error = %failure, action = kind.as_str(), topic, "auth service: malformed /authorize answer; denied");
                }
                return None;
            }
        };
        if !ttl.is_zero() {
            let decisions = &http.decisions;
            let username: Arc<str> = Arc::from(principal.username.as_str());
            let key = decisions.key(&username, client_id, kind, topic);
            decisions.cache.insert(
                key,
                Arc::new(Answer {
                    username,
                    client_id: Arc::clone(client_id),
                    kind,
                    topic: topic.into(),
                    allow,
                    ttl,
                    refresh_at: Instant::now() + ttl.mul_f64(0.75),
                }),
            );
        }
        Some(allow)
    }

    /// Fetch an answer off this thread, once per key at a time.
    fn fetch_in_background(&self, kind: Kind, topic: &str) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let decisions = &self.http.decisions;
        let key = decisions.key(&self.username, &self.client_id, kind, topic);
        {
            let mut pending = decisions.pending.lock();
            if pending.len() >= MAX_PENDING || !pending.insert(key) {
                return;
            }
        }
        let http = Arc::clone(&self.http);
        let principal = Arc::clone(&self.principal);
        let client_id = Arc::clone(&self.client_id);
        let topic = topic.to_owned();
        handle.spawn(async move {
            Self::fetch(&http, &principal, &client_id, kind, &topic).await;
            http.decisions.pending.lock().remove(&key);
        });
    }

    /// The service's answer for a publish or subscribe: cached, else asked
    /// while this task waits. `also_receive`: fetch the receive answer for
    /// the same topic in the same wait.
    fn asked(&self, kind: Kind, topic: &str, also_receive: bool) -> Option<bool> {
        if let Some(allow) = self.cached(kind, topic) {
            if also_receive && self.cached(Kind::Receive, topic).is_none() {
                self.fetch_in_background(Kind::Receive, topic);
            }
            return Some(allow);
        }
        let Some(handle) = can_wait() else {
            self.fetch_in_background(kind, topic);
            return None;
        };
        let http = &*self.http;
        let principal = &*self.principal;
        let client_id = &self.client_id;
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let this = Self::fetch(http, principal, client_id, kind, topic);
                if also_receive {
                    let receive = Self::fetch(http, principal, client_id, Kind::Receive, topic);
                    tokio::join!(this, receive).0
                } else {
                    this.await
                }
            })
        })
    }
}

fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

impl CompiledPolicy for ServicePolicy {
    fn decide(&self, action: &Action<'_>) -> Decision {
        let local = self.inner.decide(action);
        let (kind, topic, qos) = match *action {
            Action::Connect => return local,
            Action::Publish { topic, qos, .. } => (Kind::Publish, topic, qos),
            Action::Subscribe { filter, qos } => (Kind::Subscribe, filter, qos),
            Action::Receive { topic, qos, .. } => (Kind::Receive, topic, qos),
            // An action the service is not asked about: the local rules.
            _ => return local,
        };
        // A local deny rule, or a QoS or retain limit, stands whatever the
        // service says; only "no local rule allows it" is the service's to
        // decide.
        let open = match local {
            Decision::Allow { .. } => true,
            Decision::Deny { reason, .. } => reason == DenyReason::NoMatchingAllow,
            _ => false,
        };
        if !open {
            return local;
        }
        let answer = match kind {
            Kind::Receive => {
                let hit = self.cached(kind, topic);
                if hit.is_none() {
                    self.fetch_in_background(kind, topic);
                }
                hit
            }
            Kind::Subscribe => self.asked(kind, topic, !has_wildcard(topic)),
            Kind::Publish => self.asked(kind, topic, false),
        };
        match answer {
            Some(true) if local.is_allow() => local,
            Some(true) => Decision::Allow { qos, rule: None },
            Some(false) => Decision::Deny {
                reason: DenyReason::DeniedByService,
                rule: None,
            },
            None => {
                self.http
                    .counts
                    .decision_unknown
                    .fetch_add(1, Ordering::Relaxed);
                Decision::Deny {
                    reason: DenyReason::ServiceUnavailable,
                    rule: None,
                }
            }
        }
    }

    /// The local rules only: the service's per-topic answers are not
    /// explained.
    fn explain(&self, action: &Action<'_>) -> Explanation {
        self.inner.explain(action)
    }

    fn version(&self) -> PolicyVersion {
        self.inner.version()
    }

    fn warnings(&self) -> &[CompileWarning] {
        self.inner.warnings()
    }

    /// Answers expire with their TTL: a connection's memo must not keep
    /// them for the life of the policy.
    fn memoizable(&self) -> bool {
        false
    }
}
