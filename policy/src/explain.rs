//! `explain`: the verdict plus, for every rule that applies to the client,
//! whether it matched the request and why not. Powers `warden check`.
//!
//! This walks the entries one by one with the plain topic functions, not the
//! trie; it allocates and is meant for people, not the message path.

use serde::Serialize;

use crate::action::Action;
use crate::compile::{CompileWarning, Entry, Matcher};
use crate::decision::Decision;
use crate::policy::AclPolicy;
use crate::qos::QoS;
use crate::rule::{Effect, RuleId};
use crate::topic::{filter_covers, filters_overlap, topic_matches};

/// How one rule related to the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuleOutcome {
    /// The rule matched and took part in the decision.
    Matched,
    /// The rule does not name this action.
    OtherAction,
    /// The topic, filter or client id is not matched by the rule's pattern.
    NoMatch,
    /// Subscribe: the rule's filter overlaps the requested filter without
    /// covering it (a deny is then enforced at receive; an allow is not enough).
    OnlyOverlaps,
    /// Publish: the QoS is above the rule's `max_qos`.
    QosAboveMax,
    /// The rule does not allow retained messages.
    RetainNotAllowed,
    /// A deny rule limited to `retain: r` and the message's flag is not `r`.
    RetainConditionNotMet,
    /// A placeholder could not be substituted; this allow rule matches nothing.
    Disabled(CompileWarning),
}

/// One rule in an explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    pub rule: RuleId,
    pub effect: Effect,
    /// The pattern after placeholder substitution.
    pub pattern: String,
    pub outcome: RuleOutcome,
    /// This rule is the one the decision names.
    pub decided: bool,
}

/// The verdict for one request and every applicable rule's part in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    /// The client is a superuser and the engine lets superusers bypass rules.
    pub superuser_bypass: bool,
    pub rules: Vec<RuleTrace>,
    pub warnings: Vec<CompileWarning>,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.decision)?;
        if self.superuser_bypass {
            writeln!(f, "  superuser: rules bypassed")?;
        }
        for t in &self.rules {
            let mark = if t.decided { "*" } else { " " };
            let effect = if t.effect == Effect::Allow {
                "allow"
            } else {
                "deny"
            };
            writeln!(
                f,
                " {mark} rule {} {effect} {}: {:?}",
                t.rule, t.pattern, t.outcome
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

pub(crate) fn explain(p: &AclPolicy, action: &Action<'_>, decision: Decision) -> Explanation {
    let mut rules: Vec<RuleTrace> = p
        .entries
        .iter()
        .map(|e| RuleTrace {
            rule: e.id,
            effect: e.effect,
            pattern: e.pattern_text().to_owned(),
            outcome: outcome(p, e, action),
            decided: false,
        })
        .collect();
    for w in p.warnings.iter().filter(|w| w.widened_to.is_none()) {
        rules.push(RuleTrace {
            rule: w.rule,
            effect: w.effect,
            pattern: String::new(),
            outcome: RuleOutcome::Disabled(w.clone()),
            decided: false,
        });
    }
    rules.sort_by_key(|t| t.rule);
    if let Some(id) = decision.rule() {
        for t in rules
            .iter_mut()
            .filter(|t| t.rule == id && t.outcome == RuleOutcome::Matched)
        {
            t.decided = true;
        }
        if !rules.iter().any(|t| t.decided) {
            // The decision named a rule that failed a condition (QoS or retain).
            if let Some(t) = rules.iter_mut().find(|t| t.rule == id) {
                t.decided = true;
            }
        }
    }
    Explanation {
        decision,
        superuser_bypass: p.bypass,
        rules,
        warnings: p.warnings.clone(),
    }
}

fn outcome(p: &AclPolicy, e: &Entry, action: &Action<'_>) -> RuleOutcome {
    if !e.actions.contains(action.kind()) {
        return RuleOutcome::OtherAction;
    }
    match (*action, &e.matcher) {
        (Action::Connect, Matcher::ClientId(pat)) => match pat.matches(&p.client_id) {
            true => RuleOutcome::Matched,
            false => RuleOutcome::NoMatch,
        },
        (Action::Publish { topic, qos, retain }, m) => message(e, m, topic, qos, retain, true),
        (Action::Receive { topic, qos, retain }, m) => message(e, m, topic, qos, retain, false),
        (Action::Subscribe { filter, .. }, m) => subscribe(e, m, filter),
        _ => RuleOutcome::NoMatch,
    }
}

fn message(
    e: &Entry,
    m: &Matcher,
    topic: &str,
    qos: QoS,
    retain: bool,
    publish: bool,
) -> RuleOutcome {
    let hit = match m {
        Matcher::Filter(f) => topic_matches(f, topic),
        Matcher::AnyTopic => true,
        Matcher::ClientId(_) => false,
    };
    if !hit {
        return RuleOutcome::NoMatch;
    }
    match e.effect {
        Effect::Deny if matches!(e.retain, Some(r) if r != retain) => {
            RuleOutcome::RetainConditionNotMet
        }
        Effect::Deny => RuleOutcome::Matched,
        Effect::Allow if publish && matches!(e.max_qos, Some(m) if qos > m) => {
            RuleOutcome::QosAboveMax
        }
        Effect::Allow if retain && e.retain == Some(false) => RuleOutcome::RetainNotAllowed,
        Effect::Allow => RuleOutcome::Matched,
    }
}

fn subscribe(e: &Entry, m: &Matcher, filter: &str) -> RuleOutcome {
    let (covers, overlaps) = match m {
        Matcher::Filter(f) => (filter_covers(f, filter), filters_overlap(f, filter)),
        Matcher::AnyTopic => (true, true),
        Matcher::ClientId(_) => (false, false),
    };
    match (covers, overlaps) {
        (true, _) if e.effect == Effect::Deny && e.retain.is_some() => RuleOutcome::OnlyOverlaps,
        (true, _) => RuleOutcome::Matched,
        (false, true) => RuleOutcome::OnlyOverlaps,
        (false, false) => RuleOutcome::NoMatch,
    }
}
