//! The QoS 1/2 messages a session has sent and the client has not finished
//! acknowledging, by packet identifier.
//!
//! Every delivery at QoS 1 or 2 is inserted once and removed once, so this
//! is on the hot path of every acknowledged message. It is a table indexed
//! by the low bits of the packet identifier, and identifiers are handed out
//! only where their slot is free: a lookup, an insertion and a removal are
//! one index each, with no hashing, no tree and no allocation once the
//! table has grown to the session's window. (A `BTreeMap` did a search of
//! its nodes for each, and an allocation now and then: about a seventh of
//! the broker's instructions per message in a QoS 1 fan-in profile.)
//!
//! The table holds at most half its slots, so a free slot is found in two
//! looks on average. Identifiers restored from the session store were
//! handed out by an earlier table and may share low bits: the table grows
//! until they do not (at worst to 65,536 slots, for identifiers chosen to
//! collide).

use super::state::Outgoing;

/// The smallest table made (slots).
const MIN_SLOTS: usize = 8;

#[derive(Debug)]
struct Slot {
    id: u16,
    /// When it was sent, relative to the others: retransmission on resume
    /// goes in this order (MQTT 4.6). Compared by age from the table's
    /// counter, so the counter may wrap; only a message left unacknowledged
    /// while four billion others went through would be resent out of
    /// order.
    order: u32,
    out: Outgoing,
}

/// See the module docs. 24 bytes: every session holds one.
#[derive(Debug, Default)]
pub struct Inflight {
    slots: Box<[Option<Slot>]>,
    /// At most 65,535 (identifier 0 is never used).
    len: u16,
    /// The last identifier handed out.
    last_id: u16,
    /// The next send order.
    next_order: u32,
}

impl Inflight {
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.slots = Box::default();
        self.len = 0;
    }

    fn index(&self, id: u16) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        Some(usize::from(id) & (self.slots.len() - 1))
    }

    pub fn contains_key(&self, id: &u16) -> bool {
        self.get(id).is_some()
    }

    pub fn get(&self, id: &u16) -> Option<&Outgoing> {
        let i = self.index(*id)?;
        match &self.slots[i] {
            Some(s) if s.id == *id => Some(&s.out),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, id: &u16) -> Option<&mut Outgoing> {
        let i = self.index(*id)?;
        match &mut self.slots[i] {
            Some(s) if s.id == *id => Some(&mut s.out),
            _ => None,
        }
    }

    pub fn remove(&mut self, id: &u16) -> Option<Outgoing> {
        let i = self.index(*id)?;
        if !matches!(&self.slots[i], Some(s) if s.id == *id) {
            return None;
        }
        self.len -= 1;
        self.slots[i].take().map(|s| s.out)
    }

    /// A packet identifier not in flight whose slot is free, the next
    /// after the last one handed out where possible; `None` when all
    /// 65,535 are in flight. Insert it before asking for another.
    pub fn free_id(&mut self) -> Option<u16> {
        if self.len == u16::MAX {
            return None;
        }
        self.reserve_one();
        let mut id = self.last_id;
        loop {
            id = id.wrapping_add(1);
            if id == 0 {
                continue;
            }
            let i = usize::from(id) & (self.slots.len() - 1);
            if self.slots[i].is_none() {
                self.last_id = id;
                return Some(id);
            }
        }
    }

    /// Put `out` in flight as `id` (from [`Inflight::free_id`], or restored
    /// from the session store), replacing what had that identifier.
    pub fn insert(&mut self, id: u16, out: Outgoing) {
        if self.remove(&id).is_none() {
            self.reserve_one();
        }
        let order = self.next_order;
        self.next_order = order.wrapping_add(1);
        let slot = Slot { id, order, out };
        loop {
            let i = usize::from(id) & (self.slots.len() - 1);
            match &self.slots[i] {
                None => {
                    self.slots[i] = Some(slot);
                    self.len += 1;
                    return;
                }
                // Another identifier with the same low bits (restored
                // ones): more bits.
                Some(_) => self.grow(),
            }
        }
    }

    /// Room for one more while keeping half the slots free.
    fn reserve_one(&mut self) {
        if self.slots.is_empty() {
            self.slots = (0..MIN_SLOTS).map(|_| None).collect();
        }
        while (self.len() + 1) * 2 > self.slots.len() && self.slots.len() < 1 << 16 {
            self.grow();
        }
    }

    /// Twice the slots. Identifiers in distinct slots stay distinct with
    /// one more bit, so moving them never collides.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).clamp(MIN_SLOTS, 1 << 16);
        let old = std::mem::replace(&mut self.slots, (0..size).map(|_| None).collect());
        for s in old.into_vec().into_iter().flatten() {
            let i = usize::from(s.id) & (size - 1);
            self.slots[i] = Some(s);
        }
    }

    /// The identifiers in flight, in the order they were sent.
    pub fn ids_in_order(&self) -> Vec<u16> {
        let now = self.next_order;
        // Oldest first: the largest age.
        let mut all: Vec<(u32, u16)> = self
            .slots
            .iter()
            .flatten()
            .map(|s| (now.wrapping_sub(s.order), s.id))
            .collect();
        all.sort_unstable_by_key(|&(age, _)| std::cmp::Reverse(age));
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// Every message in flight, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &Outgoing)> {
        self.slots.iter().flatten().map(|s| (s.id, &s.out))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use proptest::prelude::*;
    use warden_policy::QoS;

    use super::*;
    use crate::session::message::{Delivery, Message};
    use crate::session::state::Phase;

    fn out(seq: u64) -> Outgoing {
        let msg = Message {
            topic: Arc::from("t"),
            payload: bytes::Bytes::new(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
            origin: Arc::from("c"),
            ack_gate: None,
        };
        Outgoing {
            delivery: Delivery {
                msg: Arc::new(msg),
                qos: QoS::AtLeastOnce,
                retain: false,
                sub_ids: Vec::new(),
                epoch: 0,
                seq,
            },
            phase: Phase::AwaitAck,
        }
    }

    #[test]
    fn identifiers_are_unique_nonzero_and_the_table_stays_small() {
        let mut f = Inflight::default();
        // A window of 64 going round the identifier space several times,
        // one message stuck the whole time.
        let stuck = f.free_id().unwrap();
        f.insert(stuck, out(0));
        let mut live = std::collections::VecDeque::new();
        for n in 1..300_000u64 {
            let id = f.free_id().unwrap();
            assert_ne!(id, 0);
            assert!(!f.contains_key(&id));
            f.insert(id, out(n));
            live.push_back(id);
            if live.len() == 64 {
                let gone = live.pop_front().unwrap();
                assert_eq!(f.remove(&gone).map(|o| o.delivery.seq), Some(n - 63));
            }
        }
        assert_eq!(f.get(&stuck).map(|o| o.delivery.seq), Some(0));
        assert_eq!(f.len(), 64);
        assert!(f.slots.len() <= 256, "grew to {} slots", f.slots.len());
    }

    #[test]
    fn all_identifiers_can_be_in_flight() {
        let mut f = Inflight::default();
        for n in 0..u64::from(u16::MAX) {
            let id = f.free_id().expect("a free identifier");
            f.insert(id, out(n));
        }
        assert_eq!(f.len(), 65_535);
        assert_eq!(f.free_id(), None);
    }

    #[test]
    fn restored_identifiers_that_share_low_bits_grow_the_table() {
        let mut f = Inflight::default();
        for (n, id) in [1u16, 9, 17, 1025, 33_793].into_iter().enumerate() {
            f.insert(id, out(n as u64));
        }
        for (n, id) in [1u16, 9, 17, 1025, 33_793].into_iter().enumerate() {
            assert_eq!(f.get(&id).map(|o| o.delivery.seq), Some(n as u64));
        }
        assert_eq!(f.ids_in_order(), vec![1, 9, 17, 1025, 33_793]);
    }

    #[test]
    fn send_order_survives_the_counter_wrapping() {
        let mut f = Inflight {
            next_order: u32::MAX - 2,
            ..Inflight::default()
        };
        let ids: Vec<u16> = (0..6)
            .map(|n| {
                let id = f.free_id().unwrap();
                f.insert(id, out(n));
                id
            })
            .collect();
        assert_eq!(f.ids_in_order(), ids);
    }

    proptest! {
        /// The table answers as an ordered map would, and lists its
        /// identifiers in the order they went in.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec((0u8..4, 1u16..200), 1..400)) {
            let mut f = Inflight::default();
            let mut model: BTreeMap<u16, u64> = BTreeMap::new();
            let mut order: Vec<u16> = Vec::new();
            for (n, (op, id)) in ops.into_iter().enumerate() {
                let n = n as u64;
                match op {
                    0 => {
                        f.insert(id, out(n));
                        model.insert(id, n);
                        order.retain(|&x| x != id);
                        order.push(id);
                    }
                    1 => {
                        let got = f.remove(&id).map(|o| o.delivery.seq);
                        prop_assert_eq!(got, model.remove(&id));
                        order.retain(|&x| x != id);
                    }
                    2 => {
                        if let Some(fresh) = f.free_id() {
                            prop_assert!(!model.contains_key(&fresh));
                            f.insert(fresh, out(n));
                            model.insert(fresh, n);
                            order.retain(|&x| x != fresh);
                            order.push(fresh);
                        }
                    }
                    _ => {
                        prop_assert_eq!(f.get(&id).map(|o| o.delivery.seq), model.get(&id).copied());
                    }
                }
                prop_assert_eq!(f.len(), model.len());
            }
            prop_assert_eq!(f.ids_in_order(), order);
        }
    }
}
