//! Deliveries held back from the engine for a moment. A message stored for
//! an online persistent subscriber is usually acknowledged within
//! milliseconds; held back for [`HOLD_FOR`], its removal usually arrives
//! first, and then neither reaches the engine. At high rates that is most
//! of the engine's work (one INSERT and one DELETE per message otherwise),
//! because a removal usually lands a batch or two after its put, out of
//! reach of [`super::coalesce::coalesce_from`].
//!
//! What must stay true:
//! - **Durable means written.** Held-back ops keep the tickets they were
//!   submitted with: the writer reports durable no further than the batch
//!   before the oldest group still held ([`HoldBack::durable`]), so no
//!   acknowledgement waiting on the store is released early. A publisher
//!   whose message every subscriber acknowledged meanwhile does not wait
//!   (`session::message::AckGate`).
//! - **Same meaning in order.** Every later op on a held key is folded into
//!   the held put ([`HoldBack::absorb`]): its removal cancels it, its
//!   in-flight state updates it, the end of its session drops it. A held put
//!   is therefore independent of everything written before it is, and
//!   writing it later means the same.
//! - **Bounded.** A group is written once [`HOLD_FOR`] has passed, or at
//!   once on a flush or the last batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{Equivalent, HashMap};

use super::writer::Ticket;
use super::Op;

/// How long a delivery may wait for its acknowledgement before it is
/// written: well above a loopback or LAN round trip under load, well below
/// anything an acknowledgement waiting on the store would notice.
pub const HOLD_FOR: Duration = Duration::from_millis(2);

/// A delivery's key, borrowed (looked up without allocating).
#[derive(Hash)]
struct KeyRef<'a>(&'a str, u64);

impl Equivalent<(Arc<str>, u64)> for KeyRef<'_> {
    fn equivalent(&self, key: &(Arc<str>, u64)) -> bool {
        self.0 == &*key.0 && self.1 == key.1
    }
}

/// The held puts of one batch.
struct Group {
    /// The last ticket before this batch: durable while the group is held.
    before: Ticket,
    until: Instant,
    ops: Vec<Option<Op>>,
    /// Ops not cancelled yet.
    live: usize,
}

#[derive(Default)]
pub struct HoldBack {
    groups: VecDeque<Group>,
    /// Number of `groups[0]`.
    first: u64,
    /// Where each held put is: (group number, index in its ops).
    index: HashMap<(Arc<str>, u64), (u64, usize)>,
}

impl HoldBack {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// When the oldest group must be written.
    pub fn due(&self) -> Option<Instant> {
        self.groups.front().map(|g| g.until)
    }

    /// The highest ticket that may be reported durable once everything not
    /// held back up to `last` is written.
    pub fn durable(&self, last: Ticket) -> Ticket {
        self.groups.front().map_or(last, |g| g.before)
    }

    fn group(&mut self, number: u64) -> Option<&mut Group> {
        let g = usize::try_from(number.checked_sub(self.first)?).ok()?;
        self.groups.get_mut(g)
    }

    fn slot(&mut self, (number, i): (u64, usize)) -> Option<&mut Option<Op>> {
        self.group(number)?.ops.get_mut(i)
    }

    fn cancel(&mut self, (number, i): (u64, usize)) {
        if let Some(g) = self.group(number) {
            if g.ops.get_mut(i).and_then(Option::take).is_some() {
                g.live -= 1;
            }
        }
    }

    /// Folds the ops of a new batch (in submit order) that touch held puts
    /// into them and returns the rest. Cheap when nothing is held.
    pub fn absorb(&mut self, ops: &mut Vec<Op>) {
        if self.index.is_empty() {
            return;
        }
        ops.retain_mut(|op| match op {
            Op::RemoveDelivery { client_id, seq } => {
                match self.index.remove(&KeyRef(client_id, *seq)) {
                    Some(at) => {
                        self.cancel(at);
                        false
                    }
                    None => true,
                }
            }
            Op::SetInflight {
                client_id,
                seq,
                packet_id,
                phase,
            } => {
                let Some(&at) = self.index.get(&KeyRef(client_id, *seq)) else {
                    return true;
                };
                if let Some(Some(Op::PutDelivery { delivery, .. })) = self.slot(at) {
                    delivery.inflight = Some((*packet_id, *phase));
                }
                false
            }
            Op::RemoveSession { client_id } => {
                let gone: Vec<(u64, usize)> = self
                    .index
                    .iter()
                    .filter(|(k, _)| k.0 == *client_id)
                    .map(|(_, &at)| at)
                    .collect();
                if !gone.is_empty() {
                    self.index.retain(|k, _| k.0 != *client_id);
                    for at in gone {
                        self.cancel(at);
                    }
                }
                true
            }
            _ => true,
        });
        self.drop_settled_groups();
    }

    /// Takes the puts worth holding back out of a coalesced `batch` whose
    /// tickets follow `before`.
    pub fn hold(&mut self, batch: &mut Vec<Op>, before: Ticket, now: Instant) {
        if !batch.iter().any(|op| {
            matches!(
                op,
                Op::PutDelivery {
                    ack_expected: true,
                    ..
                }
            )
        }) {
            return;
        }
        let number = self.first + self.groups.len() as u64;
        let mut group = Group {
            before,
            until: now + HOLD_FOR,
            ops: Vec::new(),
            live: 0,
        };
        let mut kept = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            match op {
                Op::PutDelivery {
                    ref client_id,
                    seq,
                    ack_expected: true,
                    ..
                } => {
                    self.index
                        .insert((Arc::clone(client_id), seq), (number, group.ops.len()));
                    group.ops.push(Some(op));
                    group.live += 1;
                }
                op => kept.push(op),
            }
        }
        *batch = kept;
        self.groups.push_back(group);
    }

    /// Appends to `out` the held puts that are due at `now` (all of them
    /// with `all`), oldest first.
    pub fn release(&mut self, now: Instant, all: bool, out: &mut Vec<Op>) {
        while let Some(g) = self.groups.front() {
            if !all && g.until > now {
                break;
            }
            let Some(g) = self.groups.pop_front() else {
                break;
            };
            self.first += 1;
            for op in g.ops.into_iter().flatten() {
                if let Op::PutDelivery { client_id, seq, .. } = &op {
                    self.index.remove(&KeyRef(client_id, *seq));
                }
                out.push(op);
            }
        }
        self.drop_settled_groups();
    }

    /// Groups whose puts were all cancelled hold nothing back.
    fn drop_settled_groups(&mut self) {
        while self.groups.front().is_some_and(|g| g.live == 0) {
            self.groups.pop_front();
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::tests::{delivery, put_delivery, put_online, remove_delivery};
    use crate::persist::Phase;

    fn online(client: &str, seq: u64) -> Op {
        put_online(client, seq, delivery("t", None))
    }

    #[test]
    fn only_puts_for_online_subscribers_are_held_and_durable_waits_for_them() {
        let mut h = HoldBack::default();
        let now = Instant::now();
        let mut batch = vec![online("a", 1), put_delivery("b", 1, delivery("t", None))];
        h.hold(&mut batch, 10, now);
        assert_eq!(batch, vec![put_delivery("b", 1, delivery("t", None))]);
        assert_eq!(h.durable(12), 10, "held back: not durable");
        let mut out = Vec::new();
        h.release(now, false, &mut out);
        assert!(out.is_empty(), "not due yet");
        h.release(now + HOLD_FOR, false, &mut out);
        assert_eq!(out, vec![online("a", 1)]);
        assert_eq!(h.durable(12), 12);
        assert!(h.is_empty());
    }

    #[test]
    fn later_ops_fold_into_held_puts() {
        let mut h = HoldBack::default();
        let now = Instant::now();
        let mut batch = vec![online("a", 1), online("a", 2), online("b", 1)];
        h.hold(&mut batch, 0, now);
        let mut next = vec![
            remove_delivery("a", 1),
            Op::SetInflight {
                client_id: "a".into(),
                seq: 2,
                packet_id: 9,
                phase: Phase::AwaitComp,
            },
            Op::RemoveSession {
                client_id: "b".into(),
            },
            remove_delivery("c", 1),
        ];
        h.absorb(&mut next);
        assert_eq!(
            next,
            vec![
                Op::RemoveSession {
                    client_id: "b".into()
                },
                remove_delivery("c", 1),
            ],
            "only ops on keys not held stay"
        );
        let mut out = Vec::new();
        h.release(now, true, &mut out);
        let Some(Op::PutDelivery { seq, delivery, .. }) = out.first() else {
            panic!("one put left: {out:?}");
        };
        assert_eq!(out.len(), 1);
        assert_eq!((*seq, delivery.inflight), (2, Some((9, Phase::AwaitComp))));
    }

    #[test]
    fn a_group_whose_puts_were_all_acknowledged_stops_holding_durable_back() {
        let mut h = HoldBack::default();
        let now = Instant::now();
        h.hold(&mut vec![online("a", 1)], 5, now);
        h.hold(&mut vec![online("a", 2)], 7, now);
        assert_eq!(h.durable(9), 5);
        h.absorb(&mut vec![remove_delivery("a", 1)]);
        assert_eq!(h.durable(9), 7, "the first group is settled");
        h.absorb(&mut vec![remove_delivery("a", 2)]);
        assert_eq!(h.durable(9), 9);
        assert!(h.is_empty());
    }
}
