use proptest::prelude::*;
use warden_policy::TopicFilter;

use super::*;

fn subjects() -> Subjects {
    Subjects::new("c1")
}

/// NATS matching, written from the protocol description: `*` matches one
/// token, `>` (last) one or more.
fn nats_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// What the NATS server and async-nats accept as a subject.
fn valid_subject(s: &str) -> bool {
    !s.is_empty() && !s.contains([' ', '\t', '\r', '\n']) && s.split('.').all(|t| !t.is_empty())
}

/// A literal token never reads as a wildcard.
fn literal_subject(s: &str) -> bool {
    valid_subject(s) && s.split('.').all(|t| !t.contains(['*', '>']))
}

#[test]
fn plain_topics_read_naturally() {
    let s = subjects();
    assert_eq!(s.topic("a/b/c"), "warden.c1.t.a.b.c");
    assert_eq!(s.topic("$SYS/broker"), "warden.c1.d.$SYS.broker");
    assert_eq!(s.topic("/a//"), "warden.c1.t.%.a.%.%");
    assert_eq!(
        s.topic("v1.2/x y/*/>/%"),
        "warden.c1.t.v1%2E2.x%20y.%2A.%3E.%25"
    );
    assert_eq!(s.topic("caf\u{e9}/\t"), "warden.c1.t.caf\u{e9}.%09");
    assert_eq!(s.policy(), "warden.c1.policy");
}

#[test]
fn filters_become_one_or_two_subjects() {
    let s = subjects();
    assert_eq!(s.filter("#"), ["warden.c1.t.>"]);
    assert_eq!(s.filter("a/#"), ["warden.c1.t.a", "warden.c1.t.a.>"]);
    assert_eq!(s.filter("+/b/+"), ["warden.c1.t.*.b.*"]);
    assert_eq!(
        s.filter("$SYS/#"),
        ["warden.c1.d.$SYS", "warden.c1.d.$SYS.>"]
    );
    assert_eq!(s.filter("+/#"), ["warden.c1.t.*", "warden.c1.t.*.>"]);
    assert_eq!(s.filter("/+"), ["warden.c1.t.%.*"]);
}

#[test]
fn dollar_topics_are_out_of_reach_of_leading_wildcards() {
    let s = subjects();
    for filter in ["#", "+", "+/#", "+/x"] {
        for topic in ["$SYS", "$SYS/x", "$dev/x"] {
            let t = s.topic(topic);
            assert!(
                !s.filter(filter).iter().any(|f| nats_matches(f, &t)),
                "{filter} must not match {topic}"
            );
        }
    }
    assert!(s
        .filter("$dev/+")
        .iter()
        .any(|f| nats_matches(f, &s.topic("$dev/x"))));
}

#[test]
fn foreign_and_malformed_subjects_are_no_topic() {
    let s = subjects();
    for subject in [
        "warden.c2.t.a",
        "warden.c1.policy",
        "warden.c1.x.a",
        "warden.c1.t.a%2",
        "warden.c1.t.a%2e",
        "warden.c1.t.%41",
        "warden.c1.t.a..b",
        "warden.c1.t.$a",
        "warden.c1.d.a",
        "warden.c1.t.a*",
    ] {
        assert_eq!(s.topic_of(subject), None, "{subject}");
    }
}

/// Levels built from the characters that matter to either protocol.
fn level() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('b'),
            Just('.'),
            Just('*'),
            Just('>'),
            Just('%'),
            Just(' '),
            Just('\t'),
            Just('\r'),
            Just('\u{7f}'),
            Just('$'),
            Just('\u{e9}'),
            Just('\u{2028}'),
            Just('2'),
            Just('E'),
        ],
        0..4,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn topic() -> impl Strategy<Value = String> {
    proptest::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/"))
}

/// Topics and filters over a small alphabet, so that matches are common.
fn small_topic() -> impl Strategy<Value = String> {
    let level = prop_oneof![Just(""), Just("a"), Just("b"), Just("$x"), Just("a.b")];
    proptest::collection::vec(level, 1..4).prop_map(|l| l.join("/"))
}

fn small_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        Just(""),
        Just("a"),
        Just("b"),
        Just("$x"),
        Just("a.b"),
        Just("+")
    ];
    (proptest::collection::vec(level, 0..4), any::<bool>()).prop_filter_map(
        "a filter has a level",
        |(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                if levels.is_empty() {
                    f.push('#');
                } else {
                    f.push_str("/#");
                }
            }
            (!f.is_empty() || !levels.is_empty()).then_some(f)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_topic_round_trips(t in topic()) {
        let s = subjects();
        let subject = s.topic(&t);
        prop_assert!(literal_subject(&subject), "{subject:?}");
        prop_assert_eq!(s.topic_of(&subject), Some(t.clone()));
        // The retained copy's subject: in the stream's subjects, and back.
        let retained = s.retained(&t);
        prop_assert!(literal_subject(&retained), "{retained:?}");
        prop_assert!(nats_matches(&s.retained_all(), &retained));
        prop_assert!(s.topic_of(&retained).is_none());
        prop_assert_eq!(s.topic_of_retained(&retained), Some(t));
    }

    #[test]
    fn a_filter_matches_exactly_what_mqtt_matches(f in small_filter(), t in small_topic()) {
        let Ok(parsed) = TopicFilter::parse(&f) else {
            return Ok(());
        };
        let s = subjects();
        let subject = s.topic(&t);
        let patterns = s.filter(&f);
        for p in &patterns {
            prop_assert!(valid_subject(p), "{p:?}");
        }
        let by_nats = patterns.iter().filter(|p| nats_matches(p, &subject)).count();
        prop_assert!(by_nats <= 1, "one filter, one copy: {f} {t}");
        prop_assert_eq!(parsed.matches(&t), by_nats == 1, "filter {:?} topic {:?}", f, t);
    }

    #[test]
    fn distinct_topics_have_distinct_subjects(a in topic(), b in topic()) {
        let s = subjects();
        prop_assert_eq!(a == b, s.topic(&a) == s.topic(&b));
    }
}
