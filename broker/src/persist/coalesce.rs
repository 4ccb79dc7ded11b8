//! Shrinks a batch of [`Op`]s to what must reach the engine. At high message
//! rates most deliveries are acknowledged before the writer gets to them, so
//! a `PutDelivery` and its `RemoveDelivery` in the same batch cancel out and
//! the engine never sees the message. Order between the surviving ops is
//! kept, so the result means the same as the input applied in order.

use std::collections::HashMap;

use super::Op;

/// What an earlier op in the batch did to one delivery key.
enum Slot {
    /// `out[i]` holds the latest op for the key.
    At(usize),
    /// Put and removed within this batch: nothing to write, later ops on
    /// the key are dropped too.
    Cancelled,
}

/// Coalesces `ops` (in submit order) into an equivalent, shorter batch:
/// put+remove of a delivery cancel; `SetInflight` after `PutDelivery` merges
/// into it; a later `PutSession`/`PutRetained` replaces an earlier one;
/// `RemoveSession` drops that client's earlier ops.
pub fn coalesce(ops: Vec<Op>) -> Vec<Op> {
    let mut out: Vec<Option<Op>> = Vec::with_capacity(ops.len());
    let mut deliveries: HashMap<(String, u64), Slot> = HashMap::new();
    let mut sessions: HashMap<String, usize> = HashMap::new();
    let mut retained: HashMap<String, usize> = HashMap::new();
    // Indices in `out` of each client's ops, for RemoveSession.
    let mut by_client: HashMap<String, Vec<usize>> = HashMap::new();

    for op in ops {
        let at = out.len();
        match op {
            Op::PutSession(s) => {
                if let Some(i) = sessions.insert(s.client_id.clone(), at) {
                    out[i] = None;
                }
                by_client.entry(s.client_id.clone()).or_default().push(at);
                out.push(Some(Op::PutSession(s)));
            }
            Op::RemoveSession { client_id } => {
                for i in by_client.remove(&client_id).unwrap_or_default() {
                    match out[i].take() {
                        Some(Op::PutDelivery { client_id, seq, .. })
                        | Some(Op::SetInflight { client_id, seq, .. })
                        | Some(Op::RemoveDelivery { client_id, seq }) => {
                            deliveries.remove(&(client_id, seq));
                        }
                        _ => {}
                    }
                }
                sessions.remove(&client_id);
                by_client.entry(client_id.clone()).or_default().push(at);
                out.push(Some(Op::RemoveSession { client_id }));
            }
            Op::PutDelivery {
                client_id,
                seq,
                delivery,
            } => {
                deliveries.insert((client_id.clone(), seq), Slot::At(at));
                by_client.entry(client_id.clone()).or_default().push(at);
                out.push(Some(Op::PutDelivery {
                    client_id,
                    seq,
                    delivery,
                }));
            }
            Op::SetInflight {
                client_id,
                seq,
                packet_id,
                phase,
            } => {
                let key = (client_id, seq);
                match deliveries.get(&key) {
                    Some(Slot::Cancelled) => {}
                    Some(Slot::At(i)) => match &mut out[*i] {
                        Some(Op::PutDelivery { delivery, .. }) => {
                            delivery.inflight = Some((packet_id, phase));
                        }
                        Some(Op::SetInflight {
                            packet_id: p,
                            phase: ph,
                            ..
                        }) => {
                            *p = packet_id;
                            *ph = phase;
                        }
                        // Removed already: an inflight state for a gone
                        // message would only leave an orphan behind.
                        _ => {}
                    },
                    None => {
                        let (client_id, seq) = key;
                        deliveries.insert((client_id.clone(), seq), Slot::At(at));
                        by_client.entry(client_id.clone()).or_default().push(at);
                        out.push(Some(Op::SetInflight {
                            client_id,
                            seq,
                            packet_id,
                            phase,
                        }));
                    }
                }
            }
            Op::RemoveDelivery { client_id, seq } => {
                let key = (client_id, seq);
                let earlier = match deliveries.get(&key) {
                    Some(Slot::Cancelled) => continue,
                    Some(Slot::At(i)) => Some(*i),
                    None => None,
                };
                if let Some(i) = earlier {
                    match out[i].take() {
                        Some(Op::PutDelivery { .. }) => {
                            deliveries.insert(key, Slot::Cancelled);
                            continue;
                        }
                        Some(Op::RemoveDelivery { client_id, seq }) => {
                            out[i] = Some(Op::RemoveDelivery { client_id, seq });
                            continue;
                        }
                        _ => {}
                    }
                }
                let (client_id, seq) = key;
                deliveries.insert((client_id.clone(), seq), Slot::At(at));
                by_client.entry(client_id.clone()).or_default().push(at);
                out.push(Some(Op::RemoveDelivery { client_id, seq }));
            }
            Op::PutRetained(m) => {
                if let Some(i) = retained.insert(m.topic.clone(), at) {
                    out[i] = None;
                }
                out.push(Some(Op::PutRetained(m)));
            }
            Op::RemoveRetained { topic } => {
                if let Some(i) = retained.insert(topic.clone(), at) {
                    out[i] = None;
                }
                out.push(Some(Op::RemoveRetained { topic }));
            }
        }
    }
    out.into_iter().flatten().collect()
}
