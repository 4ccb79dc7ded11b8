//! Each engine stores and hands back every record type, and removes what it
//! is told to; the same checks run against every engine.

use std::path::Path;

use super::*;
use crate::config::PersistenceMode;
use crate::persist::record::{decode, encode, FORMAT_VERSION};
use crate::persist::{FjallStore, Loaded, LoadedSession, PersistError, SessionStore, SqliteStore};

fn fjall(dir: &Path) -> FjallStore {
    FjallStore::open(dir, PersistenceMode::Periodic).expect("open fjall")
}

fn sqlite(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, PersistenceMode::Periodic).expect("open sqlite")
}

/// Writes one of everything, reopens, and compares.
fn round_trip_every_record_type<S: SessionStore>(open: impl Fn(&Path) -> S) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut retained = message("status/\u{1F600}", b"on", Some(u64::MAX));
    retained.retain = true;
    {
        let store = open(dir.path());
        store
            .apply(&[
                Op::PutSession(Box::new(session("c\u{1}é", Some(1_000), u32::MAX))),
                put_delivery("c\u{1}é", 1, delivery("a", Some((7, Phase::AwaitComp)))),
                put_delivery("c\u{1}é", 2, delivery("b", None)),
                put_delivery("c\u{1}é", 3, delivery("c", None)),
                Op::PutRetained(Box::new(retained.clone())),
            ])
            .expect("apply");
        store
            .apply(&[
                Op::SetInflight {
                    client_id: "c\u{1}é".into(),
                    seq: 2,
                    packet_id: 8,
                    phase: Phase::AwaitRec,
                },
                remove_delivery("c\u{1}é", 3),
            ])
            .expect("apply");
        store.sync().expect("sync");
    }
    let loaded = open(dir.path()).load().expect("load");
    let expected = Loaded {
        sessions: vec![LoadedSession {
            session: session("c\u{1}é", Some(1_000), u32::MAX),
            deliveries: vec![
                (1, delivery("a", Some((7, Phase::AwaitComp)))),
                (2, delivery("b", Some((8, Phase::AwaitRec)))),
            ],
        }],
        retained: vec![retained],
        expired: Vec::new(),
    };
    assert_eq!(loaded, expected);
}

/// RemoveSession takes the record and every delivery of that client, and
/// nothing of a client whose id it is a prefix of.
fn remove_session_removes_its_deliveries<S: SessionStore>(open: impl Fn(&Path) -> S) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .apply(&[
            Op::PutSession(Box::new(session("ab", None, 60))),
            Op::PutSession(Box::new(session("abc", None, 60))),
            put_delivery("ab", 1, delivery("x", Some((1, Phase::AwaitAck)))),
            put_delivery("ab", 2, delivery("x", None)),
            put_delivery("abc", 1, delivery("y", None)),
            Op::PutRetained(Box::new(message("keep", b"1", None))),
            Op::PutRetained(Box::new(message("drop", b"1", None))),
        ])
        .expect("apply");
    store
        .apply(&[
            Op::RemoveSession {
                client_id: "ab".into(),
            },
            Op::RemoveRetained {
                topic: "drop".into(),
            },
        ])
        .expect("apply");
    // Re-created in the same batch as its removal: only the new state stays.
    store
        .apply(&[
            put_delivery("abc", 2, delivery("y2", None)),
            Op::RemoveSession {
                client_id: "abc".into(),
            },
            Op::PutSession(Box::new(session("abc", None, 30))),
            put_delivery("abc", 1, delivery("z", None)),
        ])
        .expect("apply");
    let loaded = store.load().expect("load");
    assert_eq!(
        loaded.sessions,
        vec![LoadedSession {
            session: session("abc", None, 30),
            deliveries: vec![(1, delivery("z", None))],
        }]
    );
    assert_eq!(loaded.retained, vec![message("keep", b"1", None)]);
}

#[test]
fn fjall_round_trips_every_record_type() {
    round_trip_every_record_type(fjall);
}

#[test]
fn fjall_remove_session_removes_its_deliveries() {
    remove_session_removes_its_deliveries(fjall);
}

#[test]
fn sqlite_round_trips_every_record_type() {
    round_trip_every_record_type(sqlite);
}

#[test]
fn sqlite_remove_session_removes_its_deliveries() {
    remove_session_removes_its_deliveries(sqlite);
}

#[test]
fn records_carry_a_format_version_and_other_versions_are_refused() {
    let bytes = encode(&session("c", None, 1)).expect("encode");
    assert_eq!(bytes[0], FORMAT_VERSION);
    let back: StoredSession = decode(&bytes).expect("decode");
    assert_eq!(back, session("c", None, 1));
    let mut other = bytes.clone();
    other[0] = FORMAT_VERSION + 1;
    assert!(matches!(
        decode::<StoredSession>(&other),
        Err(PersistError::UnknownFormat(v)) if v == FORMAT_VERSION + 1
    ));
    assert!(matches!(
        decode::<StoredSession>(&bytes[..bytes.len() / 2]),
        Err(PersistError::Corrupt(_))
    ));
}
