//! Turns a principal's rules into compiled entries: subject filtering,
//! placeholder substitution, `${cert.san}` expansion, and the fail-closed
//! treatment of deny rules whose placeholders cannot be substituted.

use serde::Serialize;

use crate::client_id::{ClientIdPattern, Piece};
use crate::error::PolicyError;
use crate::placeholder::{self, Placeholder, Segment, Unusable, ValueProblem};
use crate::principal::Principal;
use crate::qos::QoS;
use crate::rule::{ActionKind, ActionSet, Effect, Rule, RuleId, RuleSet, Subject};

/// What a rule's pattern became for this principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Matcher {
    /// A topic filter (publish/subscribe/receive rules).
    Filter(String),
    /// Every topic, `$` topics included: a deny rule whose placeholder sits in
    /// the first level and could not be substituted.
    AnyTopic,
    ClientId(ClientIdPattern),
}

/// One matchable entry. A `${cert.san}` rule yields one entry per usable SAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: RuleId,
    pub effect: Effect,
    pub actions: ActionSet,
    pub max_qos: Option<QoS>,
    pub retain: Option<bool>,
    pub matcher: Matcher,
}

impl Entry {
    pub(crate) fn pattern_text(&self) -> &str {
        match &self.matcher {
            Matcher::Filter(f) => f,
            Matcher::AnyTopic => "<any topic>",
            Matcher::ClientId(p) => p.as_str(),
        }
    }
}

/// A placeholder problem found while compiling. An allow rule (or one SAN
/// expansion of it) is disabled; a deny rule is widened to `widened_to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompileWarning {
    pub rule: RuleId,
    pub effect: Effect,
    pub placeholder: Placeholder,
    pub problem: ValueProblem,
    /// For deny rules: the pattern the rule was widened to (fail closed).
    pub widened_to: Option<String>,
}

impl std::fmt::Display for CompileWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rule {}: {} unusable ({})",
            self.rule,
            self.placeholder.name(),
            self.problem
        )?;
        match &self.widened_to {
            Some(w) => write!(f, "; deny rule widened to {w}"),
            None => write!(f, "; allow rule matches nothing"),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub entries: Vec<Entry>,
    pub warnings: Vec<CompileWarning>,
    /// True when any connect rule applies to the principal.
    pub has_connect_rules: bool,
}

pub(crate) fn applies_to(subject: &Subject, p: &Principal) -> bool {
    match subject {
        Subject::Everyone => true,
        Subject::User(name) => p.username.as_deref() == Some(name.as_str()),
        Subject::Role(role) => p.roles.iter().any(|r| r == role),
    }
}

pub(crate) fn compile(p: &Principal, rules: &RuleSet) -> Result<Compiled, PolicyError> {
    let mut out = Compiled::default();
    for rule in &rules.0 {
        // Only this client's rules are validated: a broken rule for someone
        // else must not lock this client out.
        if !applies_to(&rule.subject, p) {
            continue;
        }
        rule.validate()?;
        let segments = placeholder::parse(&rule.pattern)?;
        let is_connect = rule.actions.contains(ActionKind::Connect);
        out.has_connect_rules |= is_connect;
        let sans: Vec<Option<&str>> =
            if placeholder::has_placeholder(&segments, Placeholder::CertSan) {
                match p.cert.as_ref().map(|c| c.sans.as_slice()) {
                    Some(list) if !list.is_empty() => {
                        list.iter().map(|s| Some(s.as_str())).collect()
                    }
                    _ => vec![None],
                }
            } else {
                vec![None]
            };
        for san in sans {
            let result = if is_connect {
                connect_matcher(&segments, p, san)
            } else {
                placeholder::substitute_filter(&segments, p, san)
                    .map(Matcher::Filter)
                    .map_err(|u| {
                        let widened = match u.prefix.rfind('/') {
                            Some(slash) => Matcher::Filter(format!("{}#", &u.prefix[..=slash])),
                            None => Matcher::AnyTopic,
                        };
                        (u, widened)
                    })
            };
            match result {
                Ok(matcher) => out.entries.push(entry(rule, matcher)),
                Err((unusable, widened)) => unusable_rule(rule, unusable, widened, &mut out),
            }
        }
    }
    Ok(out)
}

fn entry(rule: &Rule, matcher: Matcher) -> Entry {
    Entry {
        id: rule.id,
        effect: rule.effect,
        actions: rule.actions,
        max_qos: rule.max_qos,
        retain: rule.retain,
        matcher,
    }
}

/// Allow rules are disabled; deny rules keep the literal levels before the
/// unusable placeholder and match everything below them (fail closed).
fn unusable_rule(rule: &Rule, u: Unusable, widened: Matcher, out: &mut Compiled) {
    let widened = match rule.effect {
        Effect::Allow => None,
        Effect::Deny => Some(widened),
    };
    let mut warning = CompileWarning {
        rule: rule.id,
        effect: rule.effect,
        placeholder: u.placeholder,
        problem: u.problem,
        widened_to: None,
    };
    if let Some(matcher) = widened {
        let e = entry(rule, matcher);
        warning.widened_to = Some(e.pattern_text().to_owned());
        out.entries.push(e);
    }
    out.warnings.push(warning);
}

/// On failure also returns the widened pattern for a deny rule: the pattern
/// up to the unusable placeholder, then `*`.
fn connect_matcher(
    segments: &[Segment<'_>],
    p: &Principal,
    san: Option<&str>,
) -> Result<Matcher, (Unusable, Matcher)> {
    let mut pieces = Vec::new();
    for seg in segments {
        match seg {
            Segment::Lit(l) => pieces.push(Piece::Pattern(l)),
            Segment::Ph(ph) => {
                let problem = match placeholder::value(*ph, p, san) {
                    None => ValueProblem::Missing,
                    Some("") => ValueProblem::Empty,
                    Some(v) if v.contains('\0') => ValueProblem::ForbiddenChar,
                    Some(v) => {
                        pieces.push(Piece::Literal(v));
                        continue;
                    }
                };
                pieces.push(Piece::Star);
                let widened = Matcher::ClientId(ClientIdPattern::build(&pieces));
                let unusable = Unusable {
                    placeholder: *ph,
                    problem,
                    prefix: String::new(),
                };
                return Err((unusable, widened));
            }
        }
    }
    Ok(Matcher::ClientId(ClientIdPattern::build(&pieces)))
}

/// Which parts of a principal a compiled policy depends on beyond its
/// username, roles and superuser flag (those select the rules and always
/// count). Two principals that agree on those and on every part marked here
/// compile to the same policy, so the broker can share one compiled policy
/// between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrincipalDependencies {
    /// A connect rule or a `${clientid}` placeholder applies.
    pub client_id: bool,
    /// A `${cert.*}` placeholder applies.
    pub cert: bool,
}

/// What of `p` its compiled policy from `rules` depends on (see
/// [`PrincipalDependencies`]). A pattern that does not parse counts as
/// depending on everything: compiling it fails anyway, and a cache must never
/// merge two principals on a guess.
pub fn principal_dependencies(p: &Principal, rules: &RuleSet) -> PrincipalDependencies {
    let mut deps = PrincipalDependencies::default();
    for rule in rules.0.iter().filter(|r| applies_to(&r.subject, p)) {
        deps.client_id |= rule.actions.contains(ActionKind::Connect);
        match placeholder::parse(&rule.pattern) {
            Ok(segments) => {
                deps.client_id |= placeholder::has_placeholder(&segments, Placeholder::ClientId);
                deps.cert |= placeholder::has_cert_placeholder(&segments);
            }
            Err(_) => {
                deps.client_id = true;
                deps.cert = true;
            }
        }
    }
    deps
}
