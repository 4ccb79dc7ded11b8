//! The lifecycle's invariants under concurrent attach, detach, expiry,
//! revocation and takeover, on a real broker state (SQLite policy store in a
//! temp dir, no network): threads race on a few colliding client ids while
//! the map is checked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use warden_auth::sqlite::SqliteStore;
use warden_codec::{Connect, ProtocolVersion};
use warden_policy::{PolicyEngine, PolicyVersion, Principal, RuleSet};

use super::*;
use crate::config::Config;
use crate::persist::Persister;
use crate::wake::Wake;

async fn broker(takeover: Takeover) -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("w.db"), Duration::from_secs(5))
        .await
        .expect("open sqlite");
    let mut config = Config::embedded_default();
    config.sessions.takeover = takeover;
    let broker = Broker::new(Arc::new(config), Arc::new(store), Persister::disabled());
    (dir, Arc::new(broker))
}

fn request<'a>(broker: &Broker, connect: &'a Connect, user: &str, conn: u64) -> AttachRequest<'a> {
    let principal = Principal {
        username: Some(user.into()),
        client_id: connect.client_id.as_str().into(),
        ..Principal::default()
    };
    let policy = PolicyEngine::compile(
        &broker.engine,
        &principal,
        &RuleSet::default(),
        PolicyVersion(0),
    )
    .expect("empty policy");
    AttachRequest {
        connect,
        principal,
        policy,
        attachment: Attachment {
            id: conn,
            wake: Arc::new(Wake::new()),
            protocol: ProtocolVersion::V5,
            since_ms: 0,
            output: crate::session::direct::Output::HANDLER,
        },
        expiry: Duration::from_secs(60),
        token: None,
    }
}

fn connect(client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start,
        keep_alive: 0,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: warden_codec::Properties::default(),
    }
}

/// Every session in the map is live, keyed by its own client id, held by
/// the principal that owns it; every ended session is out of the router.
fn check(broker: &Broker, seen: &parking_lot::Mutex<Vec<Arc<Session>>>) {
    let sessions = broker.sessions.lock();
    let router = broker.router.read();
    for s in sessions.values() {
        let id = &s.client_id;
        let st = s.state.lock();
        assert!(!st.ended, "an ended session is in the map: {id}");
        assert_eq!(
            OwnerKey::of(&st.principal),
            s.owner,
            "session {id} is held by another principal"
        );
    }
    for s in seen.lock().iter() {
        if s.state.lock().attached.is_some() {
            // A live connection never drops out of the map (and so out of
            // every refresh and kick).
            let held = sessions.get(&s.client_id);
            assert!(
                held.is_some_and(|h| Arc::ptr_eq(h, s)),
                "an attached session is not in the map: {}",
                s.client_id
            );
        }
        if s.state.lock().ended {
            assert!(
                router.subscriptions_of(&SubKey(Arc::clone(s))).is_empty(),
                "an ended session still has subscriptions"
            );
        }
    }
}

/// A small deterministic generator (xorshift), one per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn churn(broker: &Broker, seed: u64, seen: &parking_lot::Mutex<Vec<Arc<Session>>>) {
    let users = ["alice", "bob", "carol"];
    let ids = ["dev-1", "dev-2", "dev-3"];
    let mut rng = Rng(seed);
    let mut expiries: Vec<(Arc<Session>, u64)> = Vec::new();
    for step in 0..3_000u64 {
        let id = ids[rng.below(3) as usize];
        let user = users[rng.below(3) as usize];
        let c = connect(id, rng.below(2) == 0);
        let conn = seed * 1_000_000 + step;
        match attach(broker, request(broker, &c, user, conn)) {
            Ok((session, present)) => {
                assert_eq!(session.owner, OwnerKey::User(Arc::from(user)));
                if broker.config().sessions.takeover == Takeover::Any {
                    // A different owner never inherits anything.
                    assert!(!present || session.owner == OwnerKey::User(Arc::from(user)));
                }
                let opts = crate::router::SubOptions::default();
                {
                    let mut router = broker.router.write();
                    let st = session.state.lock();
                    if st.is_attached_to(conn) {
                        drop(st);
                        router.subscribe("t/#", None, SubKey(Arc::clone(&session)), opts);
                    }
                }
                seen.lock().push(Arc::clone(&session));
                if rng.below(4) == 0 {
                    // Stay connected; a later login takes it over.
                    continue;
                }
                let generation = {
                    let mut st = session.state.lock();
                    if st.is_attached_to(conn) {
                        st.attached = None;
                        Some(st.generation)
                    } else {
                        None
                    }
                };
                if let Some(g) = generation {
                    // An expiry (or a zero-expiry end) for this generation,
                    // which may fire long after others attached again.
                    expiries.push((Arc::clone(&session), g));
                }
                match rng.below(4) {
                    0 if !expiries.is_empty() => {
                        let i = rng.below(expiries.len() as u64) as usize;
                        let (s, g) = expiries.swap_remove(i);
                        end_if_current(broker, &s, g);
                    }
                    1 => revoke(broker, &session),
                    _ => {}
                }
            }
            Err(OwnedByAnother) => {
                assert_eq!(broker.config().sessions.takeover, Takeover::SameUser);
            }
        }
    }
}

async fn race(takeover: Takeover) {
    let (_dir, broker) = broker(takeover).await;
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let (broker, seen, done) = (Arc::clone(&broker), Arc::clone(&seen), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                check(&broker, &seen);
            }
        })
    };
    let workers: Vec<_> = (1..=4u64)
        .map(|seed| {
            let (broker, seen) = (Arc::clone(&broker), Arc::clone(&seen));
            std::thread::spawn(move || churn(&broker, seed * 0x9E37_79B9, &seen))
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    done.store(true, Ordering::Relaxed);
    checker.join().expect("checker");
    check(&broker, &seen);
}

#[tokio::test]
async fn sessions_keep_one_owner_under_racing_logins_same_user() {
    race(Takeover::SameUser).await;
}

#[tokio::test]
async fn sessions_keep_one_owner_under_racing_logins_any() {
    race(Takeover::Any).await;
}

#[tokio::test]
async fn a_failed_recompile_closes_the_session_and_refuses_messages() {
    let (_dir, broker) = broker(Takeover::SameUser).await;
    let c = connect("dev", false);
    let (session, _) = attach(&broker, request(&broker, &c, "alice", 7)).expect("attach");
    policy_failed(&session);
    let st = session.state.lock();
    assert_eq!(st.kicked, Some((7, Kick::PolicyFailed)));
    assert!(st.policy_failed);
}
