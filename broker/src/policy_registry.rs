//! Keeps every session's compiled policy fresh.
//!
//! Each session holds its compiled policy: built at CONNECT, replaced here
//! when the store's policy version moves. On a change every session is
//! recompiled from the store (one user lookup and one rules query per
//! distinct username; principals that compile alike share one policy through
//! the login cache), queued messages are re-checked, subscriptions the new
//! policy no longer allows are removed, and sessions of removed or disabled
//! users are disconnected. Revoking a right therefore reaches live
//! subscriptions within one poll interval, or at once with a push feed. On
//! a cluster node a change applied here is announced to the other nodes,
//! and their announcements wake this loop (`cluster`), so a node whose
//! store is polled follows the first node that noticed.
//!
//! After each change it logs the admin changes the CLI recorded since the
//! last one it logged (who, from which host, what), starting with those
//! recorded after the broker started.
//!
//! Every poll also confirms (or fails) the version for the login cache's
//! gate. When the store cannot answer, sessions keep the policy they have and
//! new logins are refused (`login_cache/gate.rs`, `auth`); the outage and
//! the recovery are each logged once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use warden_auth::{ChangeFeed, ChangeQuery, PrincipalKey, StoreError, UserRecord};
use warden_policy::{PolicyVersion, QoS, RuleSet};

use crate::broker::Broker;
use crate::session::lifecycle;
use crate::session::state::{OwnerKey, Session, SubKey};
use crate::shutdown::Shutdown;

/// Follow the store's policy version and apply changes until shutdown.
///
/// A store with a push feed (PostgreSQL LISTEN/NOTIFY, Redis pub/sub) wakes
/// this loop as soon as a write commits; the version is still polled every
/// `poll_interval` as a safety net, because a notification sent while the
/// feed was reconnecting is lost. Stores without push are polled.
pub async fn run(broker: Arc<Broker>, mut shutdown: Shutdown) {
    let mut feed = broker.store.changes();
    let mut healthy = true;
    let mut seen = ChangeQuery {
        after: 0,
        since_ms: unix_ms_now(),
    };
    loop {
        // Read on every round: a config reload may have changed it.
        let interval = broker.config().policy.poll_interval;
        let wait = match &feed {
            ChangeFeed::Poll(every) => (*every).min(interval),
            _ => interval,
        };
        let feed_closed = tokio::select! {
            pushed = next_push(&mut feed) => pushed.is_none(),
            _ = tokio::time::sleep(wait) => false,
            _ = announced(&broker) => false,
            _ = shutdown.recv() => return,
        };
        if feed_closed {
            tracing::debug!("change feed closed; polling instead");
            // No bound of the store's own: `poll_interval` alone decides,
            // as it stands after any reload.
            feed = ChangeFeed::Poll(std::time::Duration::MAX);
        }
        if check_version(&broker, &mut healthy).await {
            log_admin_changes(&broker, &mut seen).await;
        }
    }
}

fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Log the admin changes recorded since the last ones logged. A record is
/// written after the change it describes, with its own version bump, so
/// it is found at the latest on the change after that one's.
async fn log_admin_changes(broker: &Arc<Broker>, seen: &mut ChangeQuery) {
    match broker.store.admin_changes(*seen).await {
        Ok(changes) => {
            for change in changes {
                tracing::info!(
                    id = change.id,
                    by = %change.user,
                    host = %change.host,
                    at_ms = change.at_ms,
                    "admin change: {}",
                    change.what
                );
                broker.audit.admin_change(&change);
                seen.after = seen.after.max(change.id);
            }
        }
        // The version has moved on already; the next change retries.
        Err(err) => tracing::debug!(error = %err, "cannot read the admin changes"),
    }
}

/// Another node of the cluster applied a policy version; never resolves
/// on a single node.
async fn announced(broker: &Broker) {
    match broker.cluster() {
        Some(cluster) => cluster.policy_announced().await,
        None => std::future::pending().await,
    }
}

/// The next pushed version; never resolves for a polled store.
async fn next_push(feed: &mut ChangeFeed) -> Option<PolicyVersion> {
    match feed {
        ChangeFeed::Push(rx) => rx.recv().await,
        _ => std::future::pending().await,
    }
}

/// True when a new policy version was applied.
async fn check_version(broker: &Arc<Broker>, healthy: &mut bool) -> bool {
    let asked_at = Instant::now();
    match broker.store.policy_version().await {
        Ok(version) => {
            broker.logins.confirm(version, asked_at);
            if !*healthy {
                tracing::info!(store = broker.store.backend(), "store reachable again");
                *healthy = true;
            }
            if version.0 != broker.policy_version() {
                tracing::info!(version = version.0, "policy changed; recompiling sessions");
                let started = Instant::now();
                if refresh_all(broker, version).await.is_ok() {
                    broker.set_policy_version(version.0);
                    let stats = &broker.stats;
                    stats
                        .recompilations
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    stats
                        .revocation_delay
                        .observe(started.elapsed().as_secs_f64());
                    let sessions = broker.sessions.lock().len();
                    broker.audit.policy_change(version.0, sessions);
                    if let Some(cluster) = broker.cluster() {
                        cluster.announce_policy(version.0);
                    }
                    return true;
                }
            }
        }
        Err(err) => {
            broker.logins.fail(Instant::now());
            if *healthy {
                tracing::warn!(store = broker.store.backend(), error = %err, "store unavailable; new logins are refused, connected clients keep their policy");
                *healthy = false;
            }
        }
    }
    false
}

/// Why a refresh did not complete; the version is then not recorded, so
/// the next poll tries again.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} session(s) could not be recompiled")]
    Compile(usize),
}

/// Recompile every session. A store failure part way stops the refresh
/// (sessions keep what they have, as in an outage); a session whose policy
/// cannot be compiled is disconnected, not left on its old rights.
pub async fn refresh_all(broker: &Arc<Broker>, version: PolicyVersion) -> Result<(), RefreshError> {
    // Before the snapshot: a login attaching after it sees the new target
    // and refreshes itself (`session::connect`).
    broker.set_policy_target(version.0);
    let sessions: Vec<Arc<Session>> = broker.sessions.lock().values().cloned().collect();
    // A session's owner never changes, so grouping by it cannot go stale.
    let mut by_user: HashMap<OwnerKey, Vec<Arc<Session>>> = HashMap::new();
    for s in sessions {
        by_user.entry(s.owner.clone()).or_default().push(s);
    }
    let mut failed = 0;
    for (owner, group) in by_user {
        failed += refresh_group(broker, owner.username(), &group, version).await?;
    }
    if failed > 0 {
        return Err(RefreshError::Compile(failed));
    }
    Ok(())
}

/// Bring one session up to the registry's current target (a login that
/// raced a refresh). A store failure leaves it as it is, like every other
/// session, until the next change.
pub async fn refresh_session(broker: &Arc<Broker>, session: &Arc<Session>) {
    let version = PolicyVersion(broker.policy_target());
    let group = [Arc::clone(session)];
    if let Err(err) = refresh_group(broker, session.owner.username(), &group, version).await {
        tracing::debug!(client_id = %session.client_id, error = %err, "could not refresh a new session's policy");
    }
}

/// Recompile the sessions of one user (or of anonymous clients), or
/// disconnect them: the user was removed or disabled, or is pinned to
/// another certificate than a session's. A JWT session of a user the store
/// does not know stays when `require_store_user` is off, with its token's
/// roles. Returns how many could not be recompiled.
async fn refresh_group(
    broker: &Arc<Broker>,
    username: Option<&str>,
    group: &[Arc<Session>],
    version: PolicyVersion,
) -> Result<usize, StoreError> {
    let store = &*broker.store;
    let user: Option<UserRecord> = match username {
        Some(name) => broker.logins.user(store, name, version).await?,
        None => None,
    };
    let mut failed = 0;
    for session in group {
        let (fingerprint, token) = {
            let st = session.state.lock();
            let fp = st.principal.cert.as_ref().map(|c| c.fingerprint.clone());
            (fp, st.token.clone())
        };
        let name = username.unwrap_or_default();
        let (roles, superuser) = match (&user, username, &token) {
            (Some(u), _, _) if !u.enabled => {
                tracing::info!(username = %name, client_id = %session.client_id, "user disabled; disconnecting");
                lifecycle::revoke(broker, session);
                continue;
            }
            (Some(u), _, _) if !crate::auth::pin_holds(u, fingerprint.as_deref()) => {
                tracing::info!(username = %name, client_id = %session.client_id, "user pinned to another certificate; disconnecting");
                lifecycle::revoke(broker, session);
                continue;
            }
            (Some(u), _, None) => (u.roles.clone(), u.superuser),
            (Some(u), _, Some(t)) => (crate::auth::merge_roles(&u.roles, &t.roles), u.superuser),
            (None, None, _) => (Vec::new(), false),
            (None, Some(_), Some(t)) if !t.require_store_user => (t.roles.clone(), false),
            (None, Some(_), _) => {
                tracing::info!(username = %name, client_id = %session.client_id, "user removed; disconnecting");
                lifecycle::revoke(broker, session);
                continue;
            }
        };
        let key = PrincipalKey {
            username: username.map(str::to_owned),
            roles: roles.clone(),
        };
        let rules = broker.logins.rules(store, &key, version).await?;
        if !recompile(
            broker,
            session,
            &roles,
            superuser,
            &rules,
            token.as_deref(),
            version,
        ) {
            failed += 1;
        }
    }
    Ok(failed)
}

/// Compile the session's policy for the principal it holds and install it,
/// in one step under the session lock (a reconnect of the same owner with
/// another certificate cannot slip between the two). Then drop the
/// subscriptions the new policy no longer allows. False: it could not be
/// compiled, and the session was failed closed.
fn recompile(
    broker: &Broker,
    session: &Arc<Session>,
    roles: &[String],
    superuser: bool,
    rules: &RuleSet,
    token: Option<&crate::auth::TokenGrant>,
    version: PolicyVersion,
) -> bool {
    let token_rules = token.map_or(&[][..], |t| t.rules.as_slice());
    let policy = {
        let mut st = session.state.lock();
        if st.ended {
            return true;
        }
        let mut principal = st.principal.clone();
        principal.roles = roles.to_vec();
        principal.superuser = superuser;
        match crate::session::connect::compile_rules(
            broker,
            &principal,
            rules,
            token_rules,
            version,
        ) {
            Ok(policy) => {
                // `authorize_each`: the service is also asked per topic.
                let policy = crate::auth::each::wrap(
                    broker.http.load_full().as_ref(),
                    token,
                    &principal,
                    policy,
                );
                st.install_policy(
                    &broker.authz,
                    &broker.persist,
                    principal,
                    Arc::clone(&policy),
                );
                policy
            }
            Err(err) => {
                drop(st);
                tracing::error!(client_id = %session.client_id, error = %err, "recompile failed; the session is disconnected, not left on its old rights");
                lifecycle::policy_failed(session);
                return false;
            }
        }
    };
    let key = SubKey(Arc::clone(session));
    let subs = broker.router.read().subscriptions_of(&key);
    for (filter, group, opts) in subs {
        let qos = QoS::from_u8(opts.qos).unwrap_or(QoS::AtMostOnce);
        if !broker
            .authz
            .subscription_still_allowed(&*policy, &filter, qos)
        {
            tracing::info!(client_id = %session.client_id, %filter, "subscription no longer allowed; removed");
            broker
                .router
                .write()
                .unsubscribe(&filter, group.as_deref(), &key);
        }
    }
    true
}
