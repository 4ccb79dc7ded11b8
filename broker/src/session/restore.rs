//! Start-up: persistent sessions and retained messages back from the
//! session store, before any listener accepts a connection.
//!
//! A restored session is offline, owned by the principal that created it,
//! with its subscriptions in the router, its queued and in-flight messages,
//! its inbound QoS 2 state, and its expiry counting the downtime. Its policy
//! is compiled from the store as it is *now* (principals that compile alike
//! share one policy through the login cache), so a rule removed while the
//! broker was down already holds: messages it denies are dropped here and
//! again when the owner resumes. A user removed or disabled meanwhile loses
//! the session. When the policy store cannot answer, the session is kept but
//! accepts nothing until its owner logs in again (fail closed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_codec::ProtocolVersion;
use warden_policy::{CompiledPolicy, PolicyEngine, PolicyVersion, Principal, QoS, RuleSet};

use crate::broker::Broker;
use crate::persist::{Loaded, LoadedSession, Op, StoredSession};
use crate::session::connect::Will;
use crate::session::durable::{self, message_from, options_from, will_from};
use crate::session::message::Delivery;
use crate::session::state::{OwnerKey, Session, SessionState, SubKey};
use crate::session::will;

/// Put everything loaded back into the broker.
pub async fn restore(broker: &Arc<Broker>, loaded: Loaded) {
    let started = Instant::now();
    let retained = loaded.retained.len();
    {
        let mut store = broker.retained.write();
        for m in loaded.retained {
            let msg = Arc::new(message_from(m));
            store.set(&Arc::clone(&msg.topic), msg);
        }
    }
    for client_id in &loaded.expired {
        ended_while_down(broker, client_id);
    }
    let mut restored = 0usize;
    let mut messages = 0usize;
    let mut users = Users::default();
    let mut owed = Vec::new();
    for ls in loaded.sessions {
        let n = ls.deliveries.len();
        match restore_session(broker, ls, &mut users).await {
            Restored::Yes => {
                restored += 1;
                messages += n;
            }
            Restored::WillOwed(session, will) => owed.push((session, will)),
            Restored::No => {}
        }
    }
    if let Some(cluster) = broker.cluster() {
        // Those another node took over while this one was down go now.
        cluster.sessions.sessions_restored();
    }
    // After every session is back, so their subscribers receive them.
    let wills = owed.len();
    for (session, will) in owed {
        will::publish_expired(broker, &session, *will).await;
    }
    if wills > 0 {
        tracing::info!(
            wills,
            "published the wills of sessions that expired while the broker was down"
        );
    }
    if restored + retained > 0 {
        tracing::info!(
            sessions = restored,
            queued = messages,
            retained,
            took = ?started.elapsed(),
            "restored persistent sessions and retained messages"
        );
    }
}

/// What the store said about each owner, asked once per owner.
#[derive(Default)]
struct Users {
    version: Option<Result<PolicyVersion, ()>>,
    known: HashMap<Option<String>, Option<(Vec<String>, bool)>>,
}

/// The owner's roles and superuser flag now; None: removed or disabled.
/// Err: the store could not answer.
async fn owner_now(
    broker: &Broker,
    users: &mut Users,
    owner: &Option<String>,
) -> Result<(PolicyVersion, Option<(Vec<String>, bool)>), ()> {
    let version = match users.version {
        Some(v) => v?,
        None => {
            let v = broker.logins.version(&*broker.store).await.map_err(|_| ());
            users.version = Some(v);
            v?
        }
    };
    if let Some(known) = users.known.get(owner) {
        return Ok((version, known.clone()));
    }
    let now = match owner {
        None => Some((Vec::new(), false)),
        Some(name) => match broker.logins.user(&*broker.store, name, version).await {
            Ok(Some(u)) if u.enabled => Some((u.roles, u.superuser)),
            Ok(_) => None,
            Err(_) => return Err(()),
        },
    };
    users.known.insert(owner.clone(), now.clone());
    Ok((version, now))
}

/// On a cluster node, a stored session that ended while the node was down
/// gives up its ownership record once NATS answers.
fn ended_while_down(broker: &Broker, client_id: &str) {
    if let Some(cluster) = broker.cluster() {
        cluster.sessions.ended_while_down(client_id);
    }
}

/// What became of one stored session.
enum Restored {
    Yes,
    No,
    /// It expired while the broker was down with its will unpublished: the
    /// will is published (checked against its owner) once every session is
    /// back, then the session is removed.
    WillOwed(Arc<Session>, Box<Will>),
}

async fn restore_session(broker: &Arc<Broker>, ls: LoadedSession, users: &mut Users) -> Restored {
    let stored = ls.session;
    let client_id = stored.client_id.clone();
    let mut principal = Principal {
        username: stored.owner.as_deref().map(Arc::from),
        client_id: Arc::from(client_id.as_str()),
        ..Principal::default()
    };
    let compiled = match owner_now(broker, users, &stored.owner).await {
        Ok((_, None)) => {
            tracing::info!(%client_id, owner = ?stored.owner, "stored session dropped: its user was removed or disabled");
            ended_while_down(broker, &client_id);
            broker.persist.submit(Op::RemoveSession {
                client_id: client_id.into(),
            });
            return Restored::No;
        }
        Ok((version, Some((roles, superuser)))) => {
            principal.roles = roles;
            principal.superuser = superuser;
            crate::session::connect::compile(broker, &principal, version)
                .await
                .ok()
        }
        Err(()) => None,
    };
    let (policy, failed) = match compiled {
        Some(p) => (p, false),
        None => match deny_all(broker, &principal) {
            Some(p) => (p, true),
            None => return Restored::No,
        },
    };
    let Some(remaining) = remaining_expiry(&stored) else {
        ended_while_down(broker, &client_id);
        broker.persist.submit(Op::RemoveSession {
            client_id: client_id.into(),
        });
        if let Some(w) = stored.will.clone() {
            // Not in the map or the router: it exists only to publish its
            // will under its owner's policy.
            let session = build(broker, &stored, Vec::new(), principal, policy, failed);
            return Restored::WillOwed(session, Box::new(will_from(w)));
        }
        return Restored::No;
    };
    let session = build(broker, &stored, ls.deliveries, principal, policy, failed);
    let mut dropped_subs = false;
    {
        let mut router = broker.router.write();
        let key = SubKey(Arc::clone(&session));
        for sub in &stored.subscriptions {
            let opts = options_from(sub);
            let qos = QoS::from_u8(opts.qos).unwrap_or(QoS::AtMostOnce);
            let policy = Arc::clone(&session.state.lock().policy);
            if !failed
                && !broker
                    .authz
                    .subscription_still_allowed(&*policy, &sub.filter, qos)
            {
                tracing::info!(%client_id, filter = %sub.filter, "stored subscription no longer allowed; removed");
                dropped_subs = true;
                continue;
            }
            router.subscribe(&sub.filter, sub.share_group.as_deref(), key.clone(), opts);
        }
    }
    broker
        .sessions
        .lock()
        .insert(Arc::from(client_id.as_str()), Arc::clone(&session));
    let generation = session.state.lock().generation;
    if let Some(w) = stored.will.clone() {
        let mut w = will_from(w);
        w.delay = w.delay.saturating_sub(downtime(&stored));
        will::fire(broker, &session, w, Some((remaining, generation)));
    }
    if dropped_subs {
        // The record as it is now, without what is no longer allowed.
        let will = stored.will.clone().map(will_from);
        durable::write_record(broker, &session, will.as_ref());
    }
    will::schedule_expiry(broker, &session, remaining, generation);
    Restored::Yes
}

/// A policy that allows nothing, for a session whose rules cannot be
/// compiled now. None only if the engine cannot compile an empty rule set.
fn deny_all(broker: &Broker, principal: &Principal) -> Option<Arc<dyn CompiledPolicy>> {
    let nobody = Principal {
        superuser: false,
        ..principal.clone()
    };
    PolicyEngine::compile(
        &broker.engine,
        &nobody,
        &RuleSet::default(),
        PolicyVersion(0),
    )
    .map_err(|err| tracing::error!(error = %err, "cannot compile an empty policy"))
    .ok()
}

/// How long the broker was down for this session (zero if it was online).
fn downtime(stored: &StoredSession) -> Duration {
    stored.disconnected_at_ms.map_or(Duration::ZERO, |at| {
        Duration::from_millis(durable::now_ms().saturating_sub(at))
    })
}

/// What is left of the session's expiry, downtime counted; None if spent.
fn remaining_expiry(stored: &StoredSession) -> Option<Duration> {
    let expiry = Duration::from_secs(u64::from(stored.expiry_secs));
    let left = expiry.checked_sub(downtime(stored))?;
    (!left.is_zero()).then_some(left)
}

pub(crate) fn protocol(level: u8) -> ProtocolVersion {
    match level {
        3 => ProtocolVersion::V31,
        5 => ProtocolVersion::V5,
        _ => ProtocolVersion::V311,
    }
}

fn build(
    broker: &Broker,
    stored: &StoredSession,
    deliveries: Vec<(u64, crate::persist::StoredDelivery)>,
    principal: Principal,
    policy: Arc<dyn CompiledPolicy>,
    failed: bool,
) -> Arc<Session> {
    let config = broker.config();
    let limits = &config.limits;
    let owner = OwnerKey::of(&principal);
    let client_id: Arc<str> = Arc::from(stored.client_id.as_str());
    let mut st = SessionState::offline(
        Arc::clone(&client_id),
        principal,
        policy,
        limits.max_queued_messages,
        usize::from(limits.receive_maximum.get()),
        Duration::from_secs(u64::from(stored.expiry_secs)),
        protocol(stored.protocol),
    );
    st.stored = true;
    st.offline_since_ms = Some(stored.disconnected_at_ms.unwrap_or_else(durable::now_ms));
    st.policy_failed = failed;
    st.incoming_qos2 = stored.incoming_qos2.iter().copied().collect();
    for (seq, sd) in deliveries {
        st.next_seq = st.next_seq.max(seq);
        let mut d = Delivery {
            msg: Arc::new(message_from(sd.msg)),
            qos: QoS::from_u8(sd.qos).unwrap_or(QoS::AtMostOnce),
            retain: sd.retain,
            sub_ids: sd.sub_ids,
            epoch: 0,
            seq,
        };
        if !failed && !st.authorize_delivery(&broker.authz, &mut d) {
            st.forget_delivery(&broker.persist, &d);
            continue;
        }
        durable::place_restored(&mut st, d, sd.inflight);
    }
    Arc::new(Session::new(broker.next_session_id(), client_id, owner, st))
}
