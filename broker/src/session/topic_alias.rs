//! Outbound topic aliases (MQTT 5 §3.3.2.3.4): the aliases the broker
//! assigns to the topics it sends one v5 client that allows them (Topic
//! Alias Maximum in its CONNECT). The first PUBLISH of a topic carries the
//! topic and its new alias; later ones carry the alias and an empty topic.
//! When every alias is taken, the least recently used one is given to the
//! new topic.
//!
//! The table belongs to one network connection, never to the session: the
//! client forgets its aliases when the connection ends, so a resumed session
//! starts with an empty table.
//!
//! Cheap once warm: a hit is one hash lookup and two index updates, a
//! replacement reuses the slot; topics are shared `Arc<str>`s, never copied.

use std::collections::HashMap;
use std::sync::Arc;

/// Marks the end of the recency list.
const NIL: u16 = u16::MAX;

/// One alias: slot `i` holds alias `i + 1`.
#[derive(Debug)]
struct Slot {
    topic: Arc<str>,
    /// Neighbours in the recency list (more and less recently used).
    newer: u16,
    older: u16,
}

/// What [`TopicAliases::lookup`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alias {
    /// The client knows this alias for the topic: send the alias alone.
    Known(u16),
    /// The topic has none yet; [`TopicAliases::assign`] gives it one.
    Unknown,
}

/// The aliases of one connection, at most `max` of them.
#[derive(Debug)]
pub struct TopicAliases {
    max: u16,
    by_topic: HashMap<Arc<str>, u16, foldhash::fast::RandomState>,
    slots: Vec<Slot>,
    /// Most and least recently used slots; `NIL` while empty.
    newest: u16,
    oldest: u16,
}

impl TopicAliases {
    /// A table of at most `max` aliases (1..=65534). Allocates nothing until
    /// the first alias.
    pub fn new(max: u16) -> TopicAliases {
        TopicAliases {
            max: max.min(NIL - 1),
            by_topic: HashMap::default(),
            slots: Vec::new(),
            newest: NIL,
            oldest: NIL,
        }
    }

    /// The alias the client already knows for `topic`; marks it used.
    pub fn lookup(&mut self, topic: &str) -> Alias {
        match self.by_topic.get(topic) {
            Some(&slot) => {
                self.touch(slot);
                Alias::Known(slot + 1)
            }
            None => Alias::Unknown,
        }
    }

    /// Give `topic` (not in the table) an alias: a free one, or the least
    /// recently used one, which then stops meaning its old topic.
    pub fn assign(&mut self, topic: &Arc<str>) -> u16 {
        let slot = if self.slots.len() < usize::from(self.max) {
            let slot = self.slots.len() as u16;
            self.slots.push(Slot {
                topic: Arc::clone(topic),
                newer: NIL,
                older: NIL,
            });
            self.push_newest(slot);
            slot
        } else {
            let slot = self.oldest;
            let old =
                std::mem::replace(&mut self.slots[usize::from(slot)].topic, Arc::clone(topic));
            self.by_topic.remove(&old);
            self.touch(slot);
            slot
        };
        self.by_topic.insert(Arc::clone(topic), slot);
        slot + 1
    }

    /// Make `slot` the most recently used.
    fn touch(&mut self, slot: u16) {
        if self.newest != slot {
            self.unlink(slot);
            self.push_newest(slot);
        }
    }

    fn unlink(&mut self, slot: u16) {
        let Slot { newer, older, .. } = self.slots[usize::from(slot)];
        match newer {
            NIL => self.newest = older,
            n => self.slots[usize::from(n)].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[usize::from(o)].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u16) {
        let old_newest = self.newest;
        let s = &mut self.slots[usize::from(slot)];
        s.newer = NIL;
        s.older = old_newest;
        match old_newest {
            NIL => self.oldest = slot,
            n => self.slots[usize::from(n)].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(t: &mut TopicAliases, topic: &str) -> (u16, bool) {
        match t.lookup(topic) {
            Alias::Known(a) => (a, true),
            Alias::Unknown => (t.assign(&Arc::from(topic)), false),
        }
    }

    #[test]
    fn first_use_assigns_then_the_alias_alone() {
        let mut t = TopicAliases::new(4);
        assert_eq!(send(&mut t, "a"), (1, false));
        assert_eq!(send(&mut t, "b"), (2, false));
        assert_eq!(send(&mut t, "a"), (1, true));
        assert_eq!(send(&mut t, "b"), (2, true));
    }

    #[test]
    fn a_full_table_replaces_the_least_recently_used() {
        let mut t = TopicAliases::new(2);
        assert_eq!(send(&mut t, "a"), (1, false));
        assert_eq!(send(&mut t, "b"), (2, false));
        assert_eq!(send(&mut t, "a"), (1, true));
        // b is the oldest now: c takes its alias.
        assert_eq!(send(&mut t, "c"), (2, false));
        assert_eq!(t.lookup("b"), Alias::Unknown);
        assert_eq!(send(&mut t, "a"), (1, true));
        // c is the oldest: b takes alias 2 back.
        assert_eq!(send(&mut t, "b"), (2, false));
        assert_eq!(send(&mut t, "c"), (1, false));
        assert_eq!(t.slots.len(), 2);
    }

    #[test]
    fn three_topics_cycling_through_two_aliases_never_hit() {
        let mut t = TopicAliases::new(2);
        for round in 0..10 {
            for topic in ["x", "y", "z"] {
                let (alias, known) = send(&mut t, topic);
                assert!(!known, "{topic} in round {round}");
                assert!((1..=2).contains(&alias));
            }
        }
        assert_eq!(t.by_topic.len(), 2);
    }

    #[test]
    fn one_alias_is_reused_for_every_new_topic() {
        let mut t = TopicAliases::new(1);
        assert_eq!(send(&mut t, "a"), (1, false));
        assert_eq!(send(&mut t, "a"), (1, true));
        assert_eq!(send(&mut t, "b"), (1, false));
        assert_eq!(t.lookup("a"), Alias::Unknown);
        assert_eq!(send(&mut t, "b"), (1, true));
    }

    #[test]
    fn matches_a_naive_lru_on_a_long_mixed_sequence() {
        let max = 5u16;
        let mut t = TopicAliases::new(max);
        // The reference: aliases in use order, oldest first.
        let mut naive: Vec<(String, u16)> = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let topic = format!("t/{}", (x >> 16) % 9);
            let want = match naive.iter().position(|(t, _)| *t == topic) {
                Some(i) => {
                    let e = naive.remove(i);
                    let a = e.1;
                    naive.push(e);
                    (a, true)
                }
                None => {
                    let alias = if naive.len() < usize::from(max) {
                        naive.len() as u16 + 1
                    } else {
                        naive.remove(0).1
                    };
                    naive.push((topic.clone(), alias));
                    (alias, false)
                }
            };
            assert_eq!(send(&mut t, &topic), want, "{topic}");
        }
    }
}
