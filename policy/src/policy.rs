//! `AclPolicy`, the compiled per-client policy, and its `decide`.

use std::sync::Arc;

use crate::action::Action;
use crate::compile::{CompileWarning, Compiled, Entry, Matcher};
use crate::decision::{Decision, DenyReason};
use crate::engine::{CompiledPolicy, PolicyVersion};
use crate::explain::{self, Explanation};
use crate::qos::QoS;
use crate::rule::{ActionKind, Effect, RuleId};
use crate::topic::{validate_filter, validate_topic};
use crate::trie::{EntryIdx, Trie};

/// The compiled policy of one client.
#[derive(Debug)]
pub struct AclPolicy {
    pub(crate) entries: Vec<Entry>,
    pub(crate) warnings: Vec<CompileWarning>,
    has_connect_rules: bool,
    connect: Vec<EntryIdx>,
    publish: Trie,
    subscribe: Trie,
    receive: Trie,
    pub(crate) client_id: Arc<str>,
    pub(crate) bypass: bool,
    version: PolicyVersion,
}

impl AclPolicy {
    pub(crate) fn new(
        c: Compiled,
        client_id: Arc<str>,
        bypass: bool,
        version: PolicyVersion,
    ) -> AclPolicy {
        let mut p = AclPolicy {
            entries: Vec::new(),
            warnings: c.warnings,
            has_connect_rules: c.has_connect_rules,
            connect: Vec::new(),
            publish: Trie::default(),
            subscribe: Trie::default(),
            receive: Trie::default(),
            client_id,
            bypass,
            version,
        };
        // Inserting in level order appends each new child at the end of its
        // parent's sorted list, so building stays O(n log n) for 10,000 rules.
        let mut order: Vec<usize> = (0..c.entries.len()).collect();
        order.sort_by(|a, b| insertion_order(&c.entries[*a], &c.entries[*b]));
        for i in order {
            let Some(entry) = c.entries.get(i) else {
                continue;
            };
            let idx = i as EntryIdx;
            for kind in entry.actions.iter() {
                let trie = match kind {
                    ActionKind::Connect => {
                        p.connect.push(idx);
                        continue;
                    }
                    ActionKind::Publish => &mut p.publish,
                    ActionKind::Subscribe => &mut p.subscribe,
                    ActionKind::Receive => &mut p.receive,
                };
                match &entry.matcher {
                    Matcher::Filter(f) => trie.insert(f, idx),
                    Matcher::AnyTopic => trie.insert_any(idx),
                    Matcher::ClientId(_) => {}
                }
            }
        }
        p.entries = c.entries;
        p
    }

    fn entry(&self, idx: EntryIdx) -> Option<&Entry> {
        self.entries.get(idx as usize)
    }

    fn decide_connect(&self) -> Decision {
        if self.bypass || !self.has_connect_rules {
            return Decision::Allow {
                qos: QoS::AtMostOnce,
                rule: None,
            };
        }
        let mut deny: Option<RuleId> = None;
        let mut allow: Option<RuleId> = None;
        for e in self.connect.iter().filter_map(|i| self.entry(*i)) {
            let Matcher::ClientId(pat) = &e.matcher else {
                continue;
            };
            if pat.matches(&self.client_id) {
                let slot = if e.effect == Effect::Deny {
                    &mut deny
                } else {
                    &mut allow
                };
                *slot = Some(slot.map_or(e.id, |r| r.min(e.id)));
            }
        }
        match (deny, allow) {
            (Some(rule), _) => Decision::Deny {
                reason: DenyReason::DeniedByRule,
                rule: Some(rule),
            },
            (None, Some(rule)) => Decision::Allow {
                qos: QoS::AtMostOnce,
                rule: Some(rule),
            },
            (None, None) => Decision::Deny {
                reason: DenyReason::ClientIdNotAllowed,
                rule: None,
            },
        }
    }

    fn decide_message(&self, topic: &str, qos: QoS, retain: bool, publish: bool) -> Decision {
        if validate_topic(topic).is_err() {
            return Decision::Deny {
                reason: DenyReason::InvalidTopic,
                rule: None,
            };
        }
        if self.bypass {
            return Decision::Allow { qos, rule: None };
        }
        let trie = if publish {
            &self.publish
        } else {
            &self.receive
        };
        let mut acc = MessageAcc::default();
        trie.for_each_match(topic, &mut |idx| {
            if let Some(e) = self.entry(idx) {
                acc.add(e, qos, retain, publish);
            }
        });
        acc.decision(qos)
    }

    fn decide_subscribe(&self, filter: &str, qos: QoS) -> Decision {
        if validate_filter(filter).is_err() {
            return Decision::Deny {
                reason: DenyReason::InvalidTopic,
                rule: None,
            };
        }
        if self.bypass {
            return Decision::Allow { qos, rule: None };
        }
        let mut deny: Option<RuleId> = None;
        let mut allow: Option<Grant> = None;
        self.subscribe.for_each_covering(filter, &mut |idx| {
            let Some(e) = self.entry(idx) else { return };
            match e.effect {
                // A deny limited to retained/non-retained messages is enforced at receive.
                Effect::Deny if e.retain.is_none() => {
                    deny = Some(deny.map_or(e.id, |r| r.min(e.id)))
                }
                Effect::Deny => {}
                Effect::Allow => Grant::offer(&mut allow, e),
            }
        });
        match (deny, allow) {
            (Some(rule), _) => Decision::Deny {
                reason: DenyReason::DeniedByRule,
                rule: Some(rule),
            },
            (None, Some(g)) => Decision::Allow {
                qos: g.grant(qos),
                rule: Some(g.rule),
            },
            (None, None) => Decision::Deny {
                reason: DenyReason::NoMatchingAllow,
                rule: None,
            },
        }
    }
}

fn insertion_order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    match (&a.matcher, &b.matcher) {
        (Matcher::Filter(x), Matcher::Filter(y)) => {
            x.split('/').map(LevelKey).cmp(y.split('/').map(LevelKey))
        }
        _ => std::cmp::Ordering::Equal,
    }
}

/// Orders levels as the trie's literal lists do.
#[derive(PartialEq, Eq)]
struct LevelKey<'a>(&'a str);

impl Ord for LevelKey<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        crate::trie::level_order(self.0, other.0)
    }
}

impl PartialOrd for LevelKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The most generous allow seen so far: highest `max_qos` (none = no cap), then lowest id.
#[derive(Clone, Copy, Debug)]
struct Grant {
    cap: Option<QoS>,
    rule: RuleId,
}

impl Grant {
    fn rank(cap: Option<QoS>) -> u8 {
        cap.map_or(3, QoS::as_u8)
    }

    fn offer(slot: &mut Option<Grant>, e: &Entry) {
        let better = match slot {
            None => true,
            Some(g) => {
                let (new, old) = (Grant::rank(e.max_qos), Grant::rank(g.cap));
                new > old || (new == old && e.id < g.rule)
            }
        };
        if better {
            *slot = Some(Grant {
                cap: e.max_qos,
                rule: e.id,
            });
        }
    }

    fn grant(self, requested: QoS) -> QoS {
        self.cap.map_or(requested, |cap| requested.min(cap))
    }
}

fn lowest(slot: &mut Option<RuleId>, id: RuleId) {
    *slot = Some(slot.map_or(id, |r| r.min(id)));
}

#[derive(Debug, Default)]
struct MessageAcc {
    deny: Option<RuleId>,
    allow: Option<Grant>,
    qos_fail: Option<RuleId>,
    retain_fail: Option<RuleId>,
}

impl MessageAcc {
    fn add(&mut self, e: &Entry, qos: QoS, retain: bool, publish: bool) {
        if e.effect == Effect::Deny {
            if !matches!(e.retain, Some(r) if r != retain) {
                lowest(&mut self.deny, e.id);
            }
            return;
        }
        let retain_ok = !(retain && e.retain == Some(false));
        // Publish above max_qos is refused; receive is delivered at the lower QoS.
        let qos_ok = !publish || !matches!(e.max_qos, Some(m) if qos > m);
        match (qos_ok, retain_ok) {
            (true, true) => Grant::offer(&mut self.allow, e),
            (false, _) => lowest(&mut self.qos_fail, e.id),
            (true, false) => lowest(&mut self.retain_fail, e.id),
        }
    }

    fn decision(&self, qos: QoS) -> Decision {
        let deny = |reason, rule| Decision::Deny { reason, rule };
        if let Some(rule) = self.deny {
            return deny(DenyReason::DeniedByRule, Some(rule));
        }
        if let Some(g) = self.allow {
            return Decision::Allow {
                qos: g.grant(qos),
                rule: Some(g.rule),
            };
        }
        if let Some(rule) = self.qos_fail {
            return deny(DenyReason::QosAboveMax, Some(rule));
        }
        if let Some(rule) = self.retain_fail {
            return deny(DenyReason::RetainNotAllowed, Some(rule));
        }
        deny(DenyReason::NoMatchingAllow, None)
    }
}

impl CompiledPolicy for AclPolicy {
    fn decide(&self, action: &Action<'_>) -> Decision {
        match *action {
            Action::Connect => self.decide_connect(),
            Action::Publish { topic, qos, retain } => self.decide_message(topic, qos, retain, true),
            Action::Receive { topic, qos, retain } => {
                self.decide_message(topic, qos, retain, false)
            }
            Action::Subscribe { filter, qos } => self.decide_subscribe(filter, qos),
        }
    }

    fn explain(&self, action: &Action<'_>) -> Explanation {
        explain::explain(self, action, self.decide(action))
    }

    fn version(&self) -> PolicyVersion {
        self.version
    }

    fn warnings(&self) -> &[CompileWarning] {
        &self.warnings
    }
}
