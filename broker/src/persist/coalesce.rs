//! Shrinks a batch of [`Op`]s to what must reach the engine. At high message
//! rates most deliveries are acknowledged before the writer gets to them, so
//! a `PutDelivery` and its `RemoveDelivery` in the same batch cancel out and
//! the engine never sees the message. Order between the surviving ops is
//! kept, so the result means the same as the input applied in order.

/// The coalescer's maps: a fast non-cryptographic hash (keys are client ids
/// and topics the broker already accepted; this runs once per op).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use std::sync::Arc;

use super::{Op, Phase};

/// What an earlier op in the batch did to one delivery key.
enum Slot {
    /// `out[i]` holds the latest op for the key.
    At(usize),
    /// Put and removed within this batch: nothing to write, later ops on
    /// the key are dropped too.
    Cancelled,
}

#[derive(Default)]
struct Coalescer {
    out: Vec<Option<Op>>,
    deliveries: HashMap<(Arc<str>, u64), Slot>,
    sessions: HashMap<String, usize>,
    retained: HashMap<String, usize>,
    /// Indices in `out` of each client's ops, for RemoveSession.
    by_client: HashMap<Arc<str>, Vec<usize>>,
}

/// Coalesces `ops` (in submit order) into an equivalent, shorter batch:
/// put+remove of a delivery cancel; `SetInflight` after `PutDelivery` merges
/// into it; a later `PutSession`/`PutRetained` replaces an earlier one;
/// `RemoveSession` drops that client's earlier ops.
#[cfg(test)]
pub fn coalesce(ops: Vec<Op>) -> Vec<Op> {
    let mut ops = ops;
    coalesce_from(&mut ops)
}

/// [`coalesce`], draining `ops` so its buffer can be used again (the
/// writer swaps it back in as the submit queue: no regrowth per batch).
pub fn coalesce_from(ops: &mut Vec<Op>) -> Vec<Op> {
    let mut c = Coalescer {
        out: Vec::with_capacity(ops.len()),
        ..Coalescer::default()
    };
    for op in ops.drain(..) {
        match op {
            Op::PutSession(s) => {
                if let Some(i) = c.sessions.insert(s.client_id.clone(), c.out.len()) {
                    c.out[i] = None;
                }
                let id = Arc::from(s.client_id.as_str());
                c.push_for(&id, Op::PutSession(s));
            }
            Op::RemoveSession { client_id } => c.remove_session(client_id),
            Op::PutDelivery { .. } => c.put_delivery(op),
            Op::SetInflight {
                client_id,
                seq,
                packet_id,
                phase,
            } => c.set_inflight(client_id, seq, packet_id, phase),
            Op::RemoveDelivery { client_id, seq } => c.remove_delivery(client_id, seq),
            Op::PutRetained(ref m) => {
                let topic = m.topic.to_string();
                c.replace_retained(topic, op);
            }
            Op::RemoveRetained { ref topic } => {
                let topic = topic.clone();
                c.replace_retained(topic, op);
            }
        }
    }
    c.out.into_iter().flatten().collect()
}

impl Coalescer {
    fn push_for(&mut self, client_id: &Arc<str>, op: Op) {
        match self.by_client.get_mut(&**client_id) {
            Some(list) => list.push(self.out.len()),
            None => {
                self.by_client
                    .insert(Arc::clone(client_id), vec![self.out.len()]);
            }
        }
        self.out.push(Some(op));
    }

    fn remove_session(&mut self, client_id: Arc<str>) {
        for i in self.by_client.remove(&*client_id).unwrap_or_default() {
            match self.out[i].take() {
                Some(Op::PutDelivery { client_id, seq, .. })
                | Some(Op::SetInflight { client_id, seq, .. })
                | Some(Op::RemoveDelivery { client_id, seq }) => {
                    self.deliveries.remove(&(client_id, seq));
                }
                _ => {}
            }
        }
        self.sessions.remove(&*client_id);
        self.push_for(&Arc::clone(&client_id), Op::RemoveSession { client_id });
    }

    fn put_delivery(&mut self, op: Op) {
        if let Op::PutDelivery { client_id, seq, .. } = &op {
            let client_id = Arc::clone(client_id);
            self.deliveries
                .insert((Arc::clone(&client_id), *seq), Slot::At(self.out.len()));
            self.push_for(&client_id, op);
        }
    }

    fn set_inflight(&mut self, client_id: Arc<str>, seq: u64, packet_id: u16, phase: Phase) {
        let key = (client_id, seq);
        match self.deliveries.get(&key) {
            Some(Slot::Cancelled) => {}
            Some(Slot::At(i)) => match &mut self.out[*i] {
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
                // Removed already: an inflight state for a gone message
                // would only leave an orphan behind.
                _ => {}
            },
            None => {
                let (client_id, seq) = key;
                self.deliveries
                    .insert((Arc::clone(&client_id), seq), Slot::At(self.out.len()));
                let op = Op::SetInflight {
                    client_id: Arc::clone(&client_id),
                    seq,
                    packet_id,
                    phase,
                };
                self.push_for(&client_id, op);
            }
        }
    }

    fn remove_delivery(&mut self, client_id: Arc<str>, seq: u64) {
        let key = (client_id, seq);
        match self.deliveries.get(&key) {
            Some(Slot::Cancelled) => return,
            Some(Slot::At(i)) => {
                let i = *i;
                match self.out[i].take() {
                    Some(Op::PutDelivery { .. }) => {
                        self.deliveries.insert(key, Slot::Cancelled);
                        return;
                    }
                    again @ Some(Op::RemoveDelivery { .. }) => {
                        self.out[i] = again;
                        return;
                    }
                    // A SetInflight on a message written earlier: the
                    // removal below replaces it.
                    _ => {}
                }
            }
            None => {}
        }
        let (client_id, seq) = key;
        self.deliveries
            .insert((Arc::clone(&client_id), seq), Slot::At(self.out.len()));
        self.push_for(
            &Arc::clone(&client_id),
            Op::RemoveDelivery { client_id, seq },
        );
    }

    fn replace_retained(&mut self, topic: String, op: Op) {
        if let Some(i) = self.retained.insert(topic, self.out.len()) {
            self.out[i] = None;
        }
        self.out.push(Some(op));
    }
}
