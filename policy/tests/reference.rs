//! Property test: the compiled (trie) policy agrees with a naive reference
//! evaluator, written here from the documented semantics, on random rule
//! sets, principals and requests. Coverage is checked by brute force over a
//! small topic universe instead of by a `covers` algorithm.

use std::sync::OnceLock;

use proptest::prelude::*;
use warden_policy::{
    AclEngine, Action, ActionKind, ActionSet, CertInfo, Decision, DenyReason, Effect, PolicyEngine,
    PolicyVersion, Principal, QoS, Rule, RuleId, RuleSet, RuleSpec, Subject,
};

/// Levels used by generated topics; "z" never appears in rules.
const TOPIC_LEVELS: [&str; 5] = ["a", "b", "$s", "", "z"];
const MAX_FILTER_DEPTH: usize = 3;

fn universe() -> &'static Vec<String> {
    static U: OnceLock<Vec<String>> = OnceLock::new();
    U.get_or_init(|| {
        let mut out: Vec<String> = TOPIC_LEVELS.iter().map(|s| s.to_string()).collect();
        let mut last = out.clone();
        for _ in 1..=MAX_FILTER_DEPTH {
            let next: Vec<String> = last
                .iter()
                .flat_map(|t| TOPIC_LEVELS.iter().map(move |l| format!("{t}/{l}")))
                .collect();
            out.extend(next.iter().cloned());
            last = next;
        }
        out.retain(|t| !t.is_empty());
        out
    })
}

fn naive_match(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if t[0].starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    fn go(f: &[&str], t: &[&str]) -> bool {
        match (f.first(), t.first()) {
            (Some(&"#"), _) => true,
            (None, None) => true,
            (Some(&"+"), Some(_)) => go(&f[1..], &t[1..]),
            (Some(a), Some(b)) => a == b && go(&f[1..], &t[1..]),
            _ => false,
        }
    }
    go(&f, &t)
}

/// F covers G when no topic of the universe is matched by G and not by F.
fn naive_covers(f: &Pat, g: &str) -> bool {
    universe()
        .iter()
        .filter(|t| naive_match(g, t))
        .all(|t| f.matches(t))
}

fn naive_glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| naive_glob(&p[1..], &s[i..])),
        Some(c) => s.first() == Some(c) && naive_glob(&p[1..], &s[1..]),
    }
}

#[derive(Clone, Debug)]
enum Pat {
    Filter(String),
    Any,
    /// Client-id glob; substituted characters are escaped as `Err(char)`.
    Glob(Vec<Result<char, char>>),
}

impl Pat {
    fn matches(&self, topic: &str) -> bool {
        match self {
            Pat::Filter(f) => naive_match(f, topic),
            Pat::Any => true,
            Pat::Glob(_) => false,
        }
    }
}

fn glob_match(g: &[Result<char, char>], s: &[char]) -> bool {
    match g.first() {
        None => s.is_empty(),
        Some(Ok('*')) => (0..=s.len()).any(|i| glob_match(&g[1..], &s[i..])),
        Some(Ok(c)) | Some(Err(c)) => s.first() == Some(c) && glob_match(&g[1..], &s[1..]),
    }
}

fn value<'a>(name: &str, p: &'a Principal, san: Option<&'a str>) -> Option<&'a str> {
    match name {
        "username" => p.username.as_deref(),
        "clientid" => Some(&p.client_id),
        "cert.cn" => p.cert.as_ref().and_then(|c| c.cn.as_deref()),
        _ => san,
    }
}

/// Substitutes naively; on an unusable value returns the widened deny pattern.
fn substitute(rule: &Rule, p: &Principal, san: Option<&str>) -> Result<Pat, Pat> {
    let connect = rule.actions.contains(ActionKind::Connect);
    let mut out = String::new();
    let mut glob: Vec<Result<char, char>> = Vec::new();
    let mut rest = rule.pattern.as_str();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').unwrap_or(after.len());
            let v = value(&after[..end], p, san);
            rest = after.get(end + 1..).unwrap_or("");
            let bad = match v {
                None | Some("") => true,
                Some(v) if connect => v.contains('\0'),
                Some(v) => {
                    v.contains(['+', '#', '/', '\0']) || (out.is_empty() && v.starts_with('$'))
                }
            };
            if bad {
                if connect {
                    glob.push(Ok('*'));
                    return Err(Pat::Glob(glob));
                }
                return Err(match out.rfind('/') {
                    Some(i) => Pat::Filter(format!("{}#", &out[..=i])),
                    None => Pat::Any,
                });
            }
            let v = v.unwrap_or_default();
            out.push_str(v);
            glob.extend(v.chars().map(Err));
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            glob.push(Ok(c));
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(if connect {
        Pat::Glob(glob)
    } else {
        Pat::Filter(out)
    })
}

fn applies(rule: &Rule, p: &Principal) -> bool {
    match &rule.subject {
        Subject::Everyone => true,
        Subject::User(u) => p.username.as_deref() == Some(u.as_str()),
        Subject::Role(r) => p.roles.contains(r),
    }
}

fn entries(rules: &[Rule], p: &Principal) -> Vec<(Rule, Pat)> {
    let mut out = Vec::new();
    for r in rules.iter().filter(|r| applies(r, p)) {
        let sans: Vec<Option<&str>> = match p.cert.as_ref() {
            Some(c) if r.pattern.contains("${cert.san}") && !c.sans.is_empty() => {
                c.sans.iter().map(|s| Some(s.as_str())).collect()
            }
            _ => vec![None],
        };
        for san in sans {
            match substitute(r, p, san) {
                Ok(pat) => out.push((r.clone(), pat)),
                Err(widened) if r.effect == Effect::Deny => out.push((r.clone(), widened)),
                Err(_) => {}
            }
        }
    }
    out
}

fn rank(r: &Rule) -> (u8, std::cmp::Reverse<RuleId>) {
    (r.max_qos.map_or(3, |q| q as u8), std::cmp::Reverse(r.id))
}

fn reference(rules: &[Rule], p: &Principal, action: &Action<'_>) -> Decision {
    let deny = |reason, rule| Decision::Deny { reason, rule };
    let (kind, target, qos, retain) = match *action {
        Action::Connect => (ActionKind::Connect, &*p.client_id, QoS::AtMostOnce, false),
        Action::Publish { topic, qos, retain } => (ActionKind::Publish, topic, qos, retain),
        Action::Receive { topic, qos, retain } => (ActionKind::Receive, topic, qos, retain),
        Action::Subscribe { filter, qos } => (ActionKind::Subscribe, filter, qos, false),
        _ => unreachable!("no other actions"),
    };
    // The generators only produce one kind of invalid topic: the empty one.
    if kind != ActionKind::Connect && target.is_empty() {
        return deny(DenyReason::InvalidTopic, None);
    }
    if p.superuser {
        return Decision::Allow { qos, rule: None };
    }
    let es: Vec<(Rule, Pat)> = entries(rules, p)
        .into_iter()
        .filter(|(r, _)| r.actions.contains(kind))
        .collect();
    let hit = |pat: &Pat| match (kind, pat) {
        (ActionKind::Connect, Pat::Glob(g)) => glob_match(g, &target.chars().collect::<Vec<_>>()),
        (ActionKind::Subscribe, pat) => naive_covers(pat, target),
        (_, pat) => pat.matches(target),
    };
    let matched: Vec<&Rule> = es
        .iter()
        .filter(|(_, pat)| hit(pat))
        .map(|(r, _)| r)
        .collect();
    let denies = matched
        .iter()
        .filter(|r| r.effect == Effect::Deny)
        .filter(|r| match kind {
            ActionKind::Subscribe => r.retain.is_none(),
            _ => !matches!(r.retain, Some(x) if x != retain),
        });
    if let Some(r) = denies.min_by_key(|r| r.id) {
        return deny(DenyReason::DeniedByRule, Some(r.id));
    }
    let allows: Vec<&&Rule> = matched
        .iter()
        .filter(|r| r.effect == Effect::Allow)
        .collect();
    if kind == ActionKind::Connect {
        return match allows.iter().min_by_key(|r| r.id) {
            Some(r) => Decision::Allow {
                qos,
                rule: Some(r.id),
            },
            None if es.is_empty()
                && !rules
                    .iter()
                    .any(|r| applies(r, p) && r.actions.contains(kind)) =>
            {
                Decision::Allow { qos, rule: None }
            }
            None => deny(DenyReason::ClientIdNotAllowed, None),
        };
    }
    let qos_ok = |r: &Rule| kind != ActionKind::Publish || !matches!(r.max_qos, Some(m) if qos > m);
    let retain_ok =
        |r: &Rule| kind == ActionKind::Subscribe || !(retain && r.retain == Some(false));
    let good = allows
        .iter()
        .filter(|r| qos_ok(r) && retain_ok(r))
        .max_by_key(|r| rank(r));
    if let Some(r) = good {
        let granted = r.max_qos.map_or(qos, |m| qos.min(m));
        return Decision::Allow {
            qos: granted,
            rule: Some(r.id),
        };
    }
    if let Some(r) = allows.iter().filter(|r| !qos_ok(r)).min_by_key(|r| r.id) {
        return deny(DenyReason::QosAboveMax, Some(r.id));
    }
    if let Some(r) = allows.iter().filter(|r| !retain_ok(r)).min_by_key(|r| r.id) {
        return deny(DenyReason::RetainNotAllowed, Some(r.id));
    }
    deny(DenyReason::NoMatchingAllow, None)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn filter_pattern(placeholders: bool) -> impl Strategy<Value = String> {
    let mut levels = vec!["a", "b", "$s", "", "+"];
    if placeholders {
        levels.extend([
            "${username}",
            "${clientid}",
            "x${username}",
            "${cert.cn}",
            "${cert.san}",
        ]);
    }
    (
        prop::collection::vec(prop::sample::select(levels), 1..=MAX_FILTER_DEPTH),
        any::<bool>(),
    )
        .prop_map(|(mut ls, hash)| {
            if hash {
                if let Some(last) = ls.last_mut() {
                    *last = "#";
                }
            }
            let joined = ls.join("/");
            if joined.is_empty() {
                "a".to_owned()
            } else {
                joined
            }
        })
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(TOPIC_LEVELS.to_vec()),
        1..=MAX_FILTER_DEPTH + 1,
    )
    .prop_map(|ls| ls.join("/"))
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let subject = prop::sample::select(vec!["everyone", "user:a", "user:b", "role:r1", "role:r2"]);
    let topic_rule = (
        any::<bool>(),
        subject.clone(),
        prop::sample::subsequence(
            vec![
                ActionKind::Publish,
                ActionKind::Subscribe,
                ActionKind::Receive,
            ],
            1..=3,
        ),
        filter_pattern(true),
        prop::option::of(qos()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(is_allow, subject, actions, pattern, max_qos, retain)| RuleSpec {
                effect: if is_allow {
                    Effect::Allow
                } else {
                    Effect::Deny
                },
                subject: subject.parse().unwrap_or(Subject::Everyone),
                actions: ActionSet::of(&actions),
                pattern,
                max_qos: if is_allow { max_qos } else { None },
                retain,
            },
        );
    let connect_pat =
        prop::sample::select(vec!["*", "a*", "${username}-*", "*b", "${clientid}", "a"]);
    let connect_rule =
        (any::<bool>(), subject, connect_pat).prop_map(|(is_allow, subject, pattern)| RuleSpec {
            effect: if is_allow {
                Effect::Allow
            } else {
                Effect::Deny
            },
            subject: subject.parse().unwrap_or(Subject::Everyone),
            actions: ActionSet::of(&[ActionKind::Connect]),
            pattern: pattern.to_owned(),
            max_qos: None,
            retain: None,
        });
    prop_oneof![4 => topic_rule, 1 => connect_rule]
}

fn principal() -> impl Strategy<Value = Principal> {
    let name = prop::option::of(prop::sample::select(vec![
        "a", "b", "a/b", "+", "$s", "", "*",
    ]));
    let cid = prop::sample::select(vec!["a", "b", "a-1", "#", "b*"]);
    let cert = prop::option::of((
        prop::option::of(prop::sample::select(vec!["a", "b", "a#"])),
        prop::sample::subsequence(vec!["a", "b", "c/d"], 0..=3),
    ));
    let roles = prop::sample::subsequence(vec!["r1", "r2"], 0..=2);
    (name, cid, cert, roles, prop::bool::weighted(0.05)).prop_map(|(name, cid, cert, roles, su)| {
        Principal {
            username: name.map(Into::into),
            client_id: cid.into(),
            cert: cert.map(|(cn, sans)| {
                std::sync::Arc::new(CertInfo {
                    cn: cn.map(str::to_owned),
                    sans: sans.into_iter().map(str::to_owned).collect(),
                    ..CertInfo::default()
                })
            }),
            roles: roles.into_iter().map(str::to_owned).collect(),
            superuser: su,
            ..Principal::default()
        }
    })
}

#[derive(Clone, Debug)]
enum Req {
    Connect,
    Publish(String, QoS, bool),
    Receive(String, QoS, bool),
    Subscribe(String, QoS),
}

fn request() -> impl Strategy<Value = Req> {
    prop_oneof![
        1 => Just(Req::Connect),
        3 => (topic(), qos(), any::<bool>()).prop_map(|(t, q, r)| Req::Publish(t, q, r)),
        3 => (topic(), qos(), any::<bool>()).prop_map(|(t, q, r)| Req::Receive(t, q, r)),
        3 => (filter_pattern(false), qos()).prop_map(|(f, q)| Req::Subscribe(f, q)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn compiled_policy_agrees_with_reference(
        specs in prop::collection::vec(rule_spec(), 0..8),
        p in principal(),
        reqs in prop::collection::vec(request(), 1..4),
    ) {
        let rules: Vec<Rule> = specs.into_iter().enumerate().map(|(i, s)| s.with_id(RuleId(i as u64 + 1))).collect();
        let compiled = AclEngine::default()
            .compile(&p, &RuleSet(rules.clone()), PolicyVersion(1))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for req in &reqs {
            let action = match req {
                Req::Connect => Action::Connect,
                Req::Publish(t, qos, retain) => Action::Publish { topic: t, qos: *qos, retain: *retain },
                Req::Receive(t, qos, retain) => Action::Receive { topic: t, qos: *qos, retain: *retain },
                Req::Subscribe(f, qos) => Action::Subscribe { filter: f, qos: *qos },
            };
            let got = compiled.decide(&action);
            prop_assert_eq!(got, reference(&rules, &p, &action), "action {:?}", action);
            prop_assert_eq!(compiled.explain(&action).decision, got);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn topic_algebra_agrees_with_brute_force(f in filter_pattern(false), g in filter_pattern(false), t in topic()) {
        prop_assert_eq!(warden_policy::topic_matches(&f, &t), naive_match(&f, &t));
        let both = universe().iter().any(|u| naive_match(&f, u) && naive_match(&g, u));
        prop_assert_eq!(warden_policy::filters_overlap(&f, &g), both, "{} overlaps {}", f, g);
        let covers = naive_covers(&Pat::Filter(f.clone()), &g);
        prop_assert_eq!(warden_policy::filter_covers(&f, &g), covers, "{} covers {}", f, g);
    }
}

#[test]
fn naive_glob_sanity() {
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    assert!(naive_glob(&chars("a*"), &chars("abc")));
    assert!(!naive_glob(&chars("a*c"), &chars("ab")));
}
