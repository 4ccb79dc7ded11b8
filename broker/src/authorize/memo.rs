//! Recent message decisions of one client, for one direction (its publishes,
//! or its deliveries).
//!
//! A fan-out decides one topic for many subscribers, a device publishes one
//! topic over and over, and a subscriber on a wildcard receives a handful of
//! topics in turn. Deciding a topic again under the same compiled policy then
//! costs a hash and a string comparison instead of a trie walk.
//!
//! Memory is paid only by clients that need it: the memo is one pointer
//! until the first decision, then holds one decision on the heap; the first
//! time a second topic is seen under the same policy it grows into a small
//! direct-mapped table. An idle client holds nothing (a session and a
//! connection each carry a memo, for the whole connection). A recompiled policy (revocation) is a different allocation, so
//! every remembered decision is dropped the moment the policy changes: the
//! memo can never answer with a decision of an older policy.

use std::hash::BuildHasher;
use std::sync::Arc;

use warden_policy::{Action, CompiledPolicy, Decision, QoS};

/// Table size: a power of two. Fan-in from 8 publishers into one subscriber
/// fits with room for collisions.
const SLOTS: usize = 32;

#[derive(Debug)]
struct Entry {
    topic: Arc<str>,
    qos: QoS,
    retain: bool,
    decision: Decision,
}

impl Entry {
    fn answers(&self, topic: &str, qos: QoS, retain: bool) -> bool {
        self.qos == qos && self.retain == retain && *self.topic == *topic
    }
}

#[derive(Debug)]
enum Held {
    One(Entry),
    Table(Box<[Option<Entry>; SLOTS]>),
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct DecisionMemo {
    held: Option<Box<(Arc<dyn CompiledPolicy>, Held)>>,
}

/// The two slots a topic may sit in (two choices: a handful of topics
/// rarely has three of them competing for the same pair, where one slot
/// each would collide often). The seed is fixed: a client that forces
/// collisions only makes its own decisions miss the memo (a trie walk, as
/// without it).
fn slots(topic: &str) -> [usize; 2] {
    let hash = foldhash::fast::FixedState::with_seed(0x5741_5244_454e).hash_one(topic);
    [
        (hash as usize) & (SLOTS - 1),
        ((hash >> 32) as usize) & (SLOTS - 1),
    ]
}

/// Put an entry in its first empty choice, else over its first choice.
fn place(table: &mut [Option<Entry>; SLOTS], entry: Entry) {
    let [first, second] = slots(&entry.topic);
    let at = if table[first].is_some() && table[second].is_none() {
        second
    } else {
        first
    };
    table[at] = Some(entry);
}

impl DecisionMemo {
    /// The policy's decision for `action` on `topic`, remembered.
    pub fn decide(
        &mut self,
        policy: &Arc<dyn CompiledPolicy>,
        topic: &Arc<str>,
        qos: QoS,
        retain: bool,
        action: Action<'_>,
    ) -> Decision {
        if let Some(held) = &self.held {
            let (held_policy, held) = &**held;
            if Arc::ptr_eq(held_policy, policy) {
                let hit = match held {
                    Held::One(e) => e.answers(topic, qos, retain).then_some(e),
                    Held::Table(t) => slots(topic)
                        .into_iter()
                        .filter_map(|i| t[i].as_ref())
                        .find(|e| e.answers(topic, qos, retain)),
                };
                if let Some(e) = hit {
                    return e.decision;
                }
            } else {
                self.held = None;
            }
        }
        let decision = policy.decide(&action);
        // Asked only on a miss: the hit path pays nothing for it.
        if policy.memoizable() {
            self.remember(policy, topic, qos, retain, decision);
        }
        decision
    }

    fn remember(
        &mut self,
        policy: &Arc<dyn CompiledPolicy>,
        topic: &Arc<str>,
        qos: QoS,
        retain: bool,
        decision: Decision,
    ) {
        let entry = Entry {
            topic: Arc::clone(topic),
            qos,
            retain,
            decision,
        };
        let Some(held) = self.held.as_deref_mut() else {
            self.held = Some(Box::new((Arc::clone(policy), Held::One(entry))));
            return;
        };
        // `decide` dropped a memo of another policy: this one is the same.
        if matches!(held.1, Held::One(_)) {
            let grown = Held::Table(Box::default());
            if let Held::One(first) = std::mem::replace(&mut held.1, grown) {
                if let Held::Table(table) = &mut held.1 {
                    place(table, first);
                }
            }
        }
        if let Held::Table(table) = &mut held.1 {
            place(table, entry);
        }
    }

    /// The memo's own copy of `topic`, when it remembers a decision on it:
    /// a client that publishes one topic again and again shares that copy
    /// with its messages instead of allocating one per message.
    pub fn shared_topic(&self, topic: &str) -> Option<Arc<str>> {
        let (_, held) = self.held.as_deref()?;
        let entry = match held {
            Held::One(e) => (*e.topic == *topic).then_some(e),
            Held::Table(t) => slots(topic)
                .into_iter()
                .filter_map(|i| t[i].as_ref())
                .find(|e| *e.topic == *topic),
        }?;
        Some(Arc::clone(&entry.topic))
    }

    /// Whether the memo has grown into its table (for tests).
    #[cfg(test)]
    fn is_table(&self) -> bool {
        matches!(self.held.as_deref(), Some((_, Held::Table(_))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use warden_policy::{CompileWarning, DenyReason, Explanation, PolicyVersion};

    use super::*;

    /// Allows topics that start with "ok/" and counts how often it is asked.
    #[derive(Debug, Default)]
    struct Counting {
        asked: AtomicUsize,
    }

    impl CompiledPolicy for Counting {
        fn decide(&self, action: &Action<'_>) -> Decision {
            self.asked.fetch_add(1, Ordering::Relaxed);
            match action {
                Action::Receive { topic, qos, .. } | Action::Publish { topic, qos, .. }
                    if topic.starts_with("ok/") =>
                {
                    Decision::Allow {
                        qos: *qos,
                        rule: None,
                    }
                }
                _ => Decision::Deny {
                    reason: DenyReason::NoMatchingAllow,
                    rule: None,
                },
            }
        }
        fn explain(&self, _action: &Action<'_>) -> Explanation {
            unreachable!("the memo never explains")
        }
        fn warnings(&self) -> &[CompileWarning] {
            &[]
        }
        fn version(&self) -> PolicyVersion {
            PolicyVersion(1)
        }
    }

    /// A [`Counting`] whose answers expire on their own.
    #[derive(Debug, Default)]
    struct Expiring(Counting);

    impl CompiledPolicy for Expiring {
        fn decide(&self, action: &Action<'_>) -> Decision {
            self.0.decide(action)
        }
        fn explain(&self, action: &Action<'_>) -> Explanation {
            self.0.explain(action)
        }
        fn warnings(&self) -> &[CompileWarning] {
            &[]
        }
        fn version(&self) -> PolicyVersion {
            PolicyVersion(1)
        }
        fn memoizable(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_policy_whose_answers_expire_is_asked_every_time() {
        let inner = Arc::new(Expiring::default());
        let policy: Arc<dyn CompiledPolicy> = inner.clone();
        let mut memo = DecisionMemo::default();
        for _ in 0..3 {
            assert!(ask(&mut memo, &policy, "ok/1"));
        }
        assert_eq!(inner.0.asked.load(Ordering::Relaxed), 3);
    }

    fn ask(memo: &mut DecisionMemo, policy: &Arc<dyn CompiledPolicy>, topic: &str) -> bool {
        let topic: Arc<str> = Arc::from(topic);
        let action = Action::Receive {
            topic: &topic,
            qos: QoS::AtLeastOnce,
            retain: false,
        };
        memo.decide(policy, &topic, QoS::AtLeastOnce, false, action)
            .is_allow()
    }

    fn asked(policy: &Arc<Counting>) -> usize {
        policy.asked.load(Ordering::Relaxed)
    }

    #[test]
    fn repeats_are_answered_from_the_memo() {
        let counting = Arc::new(Counting::default());
        let policy: Arc<dyn CompiledPolicy> = counting.clone();
        let mut memo = DecisionMemo::default();
        assert!(ask(&mut memo, &policy, "ok/a"));
        assert!(ask(&mut memo, &policy, "ok/a"));
        assert_eq!(asked(&counting), 1);
        assert!(!memo.is_table());
    }

    #[test]
    fn a_remembered_topic_is_shared_not_copied() {
        let policy: Arc<dyn CompiledPolicy> = Arc::new(Counting::default());
        let mut memo = DecisionMemo::default();
        assert!(memo.shared_topic("ok/a").is_none());
        let first: Arc<str> = Arc::from("ok/a");
        let action = Action::Publish {
            topic: &first,
            qos: QoS::AtLeastOnce,
            retain: false,
        };
        memo.decide(&policy, &first, QoS::AtLeastOnce, false, action);
        let shared = memo.shared_topic("ok/a").expect("remembered");
        assert!(Arc::ptr_eq(&shared, &first));
        assert!(memo.shared_topic("ok/b").is_none());
        for t in ["ok/b", "ok/c", "no/d"] {
            ask(&mut memo, &policy, t);
        }
        assert!(memo.is_table());
        assert_eq!(memo.shared_topic("ok/c").as_deref(), Some("ok/c"));
    }

    #[test]
    fn several_topics_grow_a_table_and_keep_their_answers() {
        let counting = Arc::new(Counting::default());
        let policy: Arc<dyn CompiledPolicy> = counting.clone();
        let mut memo = DecisionMemo::default();
        let topics: Vec<String> = (0..8)
            .map(|i| format!("{}/{i}/t", if i % 2 == 0 { "ok" } else { "no" }))
            .collect();
        for _ in 0..10 {
            for (i, t) in topics.iter().enumerate() {
                assert_eq!(ask(&mut memo, &policy, t), i % 2 == 0, "{t}");
            }
        }
        assert!(memo.is_table());
        // Every answer is right whatever collides; at most one pair of
        // topics may evict each other (each of the 9 repeat rounds).
        assert!(asked(&counting) <= 8 + 9 * 2, "asked {}", asked(&counting));
    }

    #[test]
    fn qos_and_retain_are_part_of_the_key() {
        let counting = Arc::new(Counting::default());
        let policy: Arc<dyn CompiledPolicy> = counting.clone();
        let mut memo = DecisionMemo::default();
        let topic: Arc<str> = Arc::from("ok/x");
        for (qos, retain) in [(QoS::AtMostOnce, false), (QoS::AtLeastOnce, true)] {
            let action = Action::Receive {
                topic: &topic,
                qos,
                retain,
            };
            let d = memo.decide(&policy, &topic, qos, retain, action);
            assert_eq!(d, Decision::Allow { qos, rule: None });
        }
        assert_eq!(asked(&counting), 2);
    }

    #[test]
    fn a_new_policy_forgets_every_decision() {
        let old = Arc::new(Counting::default());
        let old_policy: Arc<dyn CompiledPolicy> = old.clone();
        let mut memo = DecisionMemo::default();
        assert!(ask(&mut memo, &old_policy, "ok/a"));
        assert!(ask(&mut memo, &old_policy, "ok/b"));
        let new = Arc::new(Counting::default());
        let new_policy: Arc<dyn CompiledPolicy> = new.clone();
        assert!(ask(&mut memo, &new_policy, "ok/a"));
        assert!(ask(&mut memo, &new_policy, "ok/b"));
        assert_eq!(asked(&new), 2, "the new policy decided both topics itself");
        assert!(!memo.is_table() || asked(&new) == 2);
    }
}
