//! Coalescing: the batch that reaches the engine means the same as the ops
//! submitted, and is shorter.

use super::*;
use crate::persist::coalesce::coalesce;

#[test]
fn put_then_remove_of_a_delivery_cancels_out() {
    let ops = vec![
        put_delivery("c", 1, delivery("t", None)),
        Op::SetInflight {
            client_id: "c".into(),
            seq: 1,
            packet_id: 1,
            phase: Phase::AwaitAck,
        },
        put_delivery("c", 2, delivery("t", None)),
        remove_delivery("c", 1),
        // A late inflight change for the cancelled message is dropped too.
        Op::SetInflight {
            client_id: "c".into(),
            seq: 1,
            packet_id: 1,
            phase: Phase::AwaitAck,
        },
    ];
    assert_eq!(
        coalesce(ops),
        vec![put_delivery("c", 2, delivery("t", None))]
    );
}

#[test]
fn set_inflight_merges_into_the_put_and_a_removal_of_an_older_one_stays() {
    let ops = vec![
        put_delivery("c", 5, delivery("t", None)),
        Op::SetInflight {
            client_id: "c".into(),
            seq: 5,
            packet_id: 9,
            phase: Phase::AwaitRec,
        },
        Op::SetInflight {
            client_id: "c".into(),
            seq: 5,
            packet_id: 9,
            phase: Phase::AwaitComp,
        },
        remove_delivery("c", 4),
    ];
    assert_eq!(
        coalesce(ops),
        vec![
            put_delivery("c", 5, delivery("t", Some((9, Phase::AwaitComp)))),
            remove_delivery("c", 4),
        ]
    );
}

#[test]
fn later_puts_replace_earlier_and_remove_session_drops_the_clients_earlier_ops() {
    let ops = vec![
        Op::PutSession(session("a", None, 60)),
        Op::PutSession(session("b", None, 60)),
        put_delivery("a", 1, delivery("t", None)),
        Op::PutSession(session("b", Some(5), 60)),
        Op::PutRetained(message("r", b"1", None)),
        Op::PutRetained(message("r", b"2", None)),
        Op::RemoveSession {
            client_id: "a".into(),
        },
        Op::PutSession(session("a", None, 30)),
        Op::RemoveRetained { topic: "s".into() },
    ];
    assert_eq!(
        coalesce(ops),
        vec![
            Op::PutSession(session("b", Some(5), 60)),
            Op::PutRetained(message("r", b"2", None)),
            Op::RemoveSession {
                client_id: "a".into()
            },
            Op::PutSession(session("a", None, 30)),
            Op::RemoveRetained { topic: "s".into() },
        ]
    );
}
