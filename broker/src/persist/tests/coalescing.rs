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
        Op::PutSession(Box::new(session("a", None, 60))),
        Op::PutSession(Box::new(session("b", None, 60))),
        put_delivery("a", 1, delivery("t", None)),
        Op::PutSession(Box::new(session("b", Some(5), 60))),
        Op::PutRetained(Box::new(message("r", b"1", None))),
        Op::PutRetained(Box::new(message("r", b"2", None))),
        Op::RemoveSession {
            client_id: "a".into(),
        },
        Op::PutSession(Box::new(session("a", None, 30))),
        Op::RemoveRetained { topic: "s".into() },
    ];
    assert_eq!(
        coalesce(ops),
        vec![
            Op::PutSession(Box::new(session("b", Some(5), 60))),
            Op::PutRetained(Box::new(message("r", b"2", None))),
            Op::RemoveSession {
                client_id: "a".into()
            },
            Op::PutSession(Box::new(session("a", None, 30))),
            Op::RemoveRetained { topic: "s".into() },
        ]
    );
}

mod model {
    //! Property: a coalesced batch leaves a store in the same state as the
    //! ops applied one by one, from a store that already holds data.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Model {
        sessions: BTreeMap<String, u32>,
        deliveries: BTreeMap<(String, u64), Option<(u16, Phase)>>,
        retained: BTreeMap<String, Vec<u8>>,
    }

    impl Model {
        /// What the engines do with each op (SQLite's statements).
        fn apply(&mut self, op: &Op) {
            match op {
                Op::PutSession(s) => {
                    self.sessions.insert(s.client_id.clone(), s.expiry_secs);
                }
                Op::RemoveSession { client_id } => {
                    self.sessions.remove(&**client_id);
                    self.deliveries.retain(|(c, _), _| **c != **client_id);
                }
                Op::PutDelivery {
                    client_id,
                    seq,
                    delivery,
                    ..
                } => {
                    self.deliveries
                        .insert((client_id.to_string(), *seq), delivery.inflight);
                }
                Op::SetInflight {
                    client_id,
                    seq,
                    packet_id,
                    phase,
                } => {
                    if let Some(d) = self.deliveries.get_mut(&(client_id.to_string(), *seq)) {
                        *d = Some((*packet_id, *phase));
                    }
                }
                Op::RemoveDelivery { client_id, seq } => {
                    self.deliveries.remove(&(client_id.to_string(), *seq));
                }
                Op::PutRetained(m) => {
                    self.retained
                        .insert(m.topic.to_string(), m.payload.to_vec());
                }
                Op::RemoveRetained { topic } => {
                    self.retained.remove(topic);
                }
            }
        }
    }

    const CLIENTS: [&str; 3] = ["a", "b", "ab"];

    fn arb_op() -> impl Strategy<Value = (u8, usize, u64, u16)> {
        (0u8..7, 0..CLIENTS.len(), 0u64..6, 1u16..4)
    }

    /// Builds ops; new deliveries take fresh seqs (100+), as the broker
    /// never reuses a seq while a session lives.
    fn to_ops(raw: &[(u8, usize, u64, u16)]) -> Vec<Op> {
        let mut fresh = 130;
        raw.iter()
            .map(|&(kind, c, seq, x)| {
                let client_id: std::sync::Arc<str> = CLIENTS[c].into();
                // 0..3: seeded deliveries; 3..6: the last three fresh ones.
                let seq = if seq >= 3 {
                    fresh - 10 * (seq - 3)
                } else {
                    seq
                };
                match kind {
                    0 => Op::PutSession(Box::new(session(&client_id, None, u32::from(x)))),
                    1 => Op::RemoveSession { client_id },
                    2 => {
                        fresh += 10;
                        put_delivery(&client_id, fresh, delivery("t", None))
                    }
                    3 => Op::SetInflight {
                        client_id,
                        seq,
                        packet_id: x,
                        phase: Phase::AwaitRec,
                    },
                    4 => remove_delivery(&client_id, seq),
                    5 => Op::PutRetained(Box::new(message(CLIENTS[c], &[x as u8], None))),
                    _ => Op::RemoveRetained {
                        topic: CLIENTS[c].into(),
                    },
                }
            })
            .collect()
    }

    fn seeded() -> Model {
        let mut m = Model::default();
        for c in CLIENTS {
            m.apply(&Op::PutSession(Box::new(session(c, None, 1))));
            m.apply(&Op::PutRetained(Box::new(message(c, b"0", None))));
            for seq in 0..3 {
                m.apply(&put_delivery(c, seq, delivery("t", None)));
            }
        }
        m
    }

    proptest! {
        #[test]
        fn coalesced_batch_means_the_same(raw in proptest::collection::vec(arb_op(), 0..40)) {
            let ops = to_ops(&raw);
            let mut one_by_one = seeded();
            for op in &ops {
                one_by_one.apply(op);
            }
            let coalesced = coalesce(ops.clone());
            prop_assert!(coalesced.len() <= ops.len());
            let mut batched = seeded();
            for op in &coalesced {
                batched.apply(op);
            }
            prop_assert_eq!(one_by_one, batched);
        }
    }
}
