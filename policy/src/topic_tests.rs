//! Unit tests for the topic algebra: validation, matching, covers, overlaps, `$share`.

use super::*;

#[test]
fn topic_validation() {
    assert_eq!(validate_topic(""), Err(TopicError::Empty));
    assert_eq!(validate_topic("a/\0"), Err(TopicError::NullChar));
    assert_eq!(validate_topic("a/+"), Err(TopicError::WildcardInTopic));
    assert_eq!(validate_topic("a/#"), Err(TopicError::WildcardInTopic));
    assert_eq!(
        validate_topic(&"a".repeat(65_536)),
        Err(TopicError::TooLong)
    );
    assert!(validate_topic(&"a".repeat(65_535)).is_ok());
    assert!(validate_topic("/").is_ok());
    assert!(validate_topic("a//b").is_ok());
    assert!(validate_topic("$SYS/x").is_ok());
    assert!(Topic::parse("a/b").is_ok());
}

#[test]
fn filter_validation() {
    for ok in ["#", "+", "a/#", "a/+/b", "+/+", "/#", "a//+", "$SYS/#"] {
        assert!(validate_filter(ok).is_ok(), "{ok}");
    }
    assert_eq!(
        validate_filter("a/#/b"),
        Err(TopicError::MisplacedMultiLevel)
    );
    assert_eq!(validate_filter("a#"), Err(TopicError::MisplacedMultiLevel));
    assert_eq!(
        validate_filter("a/b#"),
        Err(TopicError::MisplacedMultiLevel)
    );
    assert_eq!(validate_filter("a+"), Err(TopicError::MisplacedSingleLevel));
    assert_eq!(
        validate_filter("a/+b"),
        Err(TopicError::MisplacedSingleLevel)
    );
    assert_eq!(validate_filter(""), Err(TopicError::Empty));
    assert_eq!(validate_filter("a\0"), Err(TopicError::NullChar));
}

#[test]
fn matching() {
    let cases = [
        ("a/b", "a/b", true),
        ("a/b", "a/c", false),
        ("a/+", "a/b", true),
        ("a/+", "a/b/c", false),
        ("a/+", "a", false),
        ("a/+", "a/", true),
        ("a/#", "a", true),
        ("a/#", "a/b/c", true),
        ("a/#", "ab", false),
        ("#", "a/b", true),
        ("#", "/", true),
        ("+/+", "/", true),
        ("+", "/a", false),
        ("#", "$SYS/x", false),
        ("+/x", "$SYS/x", false),
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/+", "$SYS/x", true),
        ("a/+/#", "a/$x/y", true),
    ];
    for (f, t, want) in cases {
        assert_eq!(topic_matches(f, t), want, "{f} vs {t}");
    }
}

#[test]
fn covering() {
    let cases = [
        ("#", "a/b", true),
        ("#", "#", true),
        ("#", "$SYS/#", false),
        ("#", "+/x", true),
        ("a/#", "a", true),
        ("a/#", "a/#", true),
        ("a/#", "a/+/c", true),
        ("a/+", "a/#", false),
        ("a/+", "a/b", true),
        ("a/+", "a/+", true),
        ("a/b", "a/+", false),
        ("+/#", "#", true),
        ("/+/#", "/#", true),
        ("//+/#", "//#", false),
        ("+/+/#", "/#", true),
        ("a/+/#", "a/#", false),
        ("+", "$SYS", false),
        ("+/+", "+/b", true),
        ("a/b/c", "a/b", false),
        ("a/b", "a/b/c", false),
        ("$SYS/#", "$SYS/a", true),
    ];
    for (o, i, want) in cases {
        assert_eq!(filter_covers(o, i), want, "{o} covers {i}");
    }
    let outer = TopicFilter::parse("a/#").expect("valid");
    let inner = TopicFilter::parse("a/+/c").expect("valid");
    assert!(outer.covers(&inner));
    assert!(!inner.covers(&outer));
}

#[test]
fn overlapping() {
    let cases = [
        ("a/+", "+/b", true),
        ("a/#", "a", true),
        ("a", "a/#", true),
        ("a/b", "a/c", false),
        ("#", "$SYS/x", false),
        ("+/x", "$SYS/+", false),
        ("$SYS/#", "$SYS/+", true),
        ("a/+/c", "a/b", false),
        ("#", "+/+/+", true),
        ("/#", "+", false),
        ("/#", "/", true),
        ("+/#", "+", true),
    ];
    for (a, b, want) in cases {
        assert_eq!(filters_overlap(a, b), want, "{a} overlaps {b}");
        assert_eq!(filters_overlap(b, a), want, "{b} overlaps {a}");
    }
}

#[test]
fn shared_subscriptions() {
    let s = SubscriptionFilter::parse("$share/g/a/+").expect("valid");
    assert_eq!(s.share_group.as_deref(), Some("g"));
    assert_eq!(s.filter.as_str(), "a/+");
    let plain = SubscriptionFilter::parse("a/#").expect("valid");
    assert_eq!(plain.share_group, None);
    assert_eq!(
        SubscriptionFilter::parse("$share/g"),
        Err(TopicError::InvalidShare)
    );
    assert_eq!(
        SubscriptionFilter::parse("$share//a"),
        Err(TopicError::InvalidShare)
    );
    assert_eq!(
        SubscriptionFilter::parse("$share/g+/a"),
        Err(TopicError::InvalidShare)
    );
    assert_eq!(
        SubscriptionFilter::parse("$share/g/"),
        Err(TopicError::InvalidShare)
    );
    assert_eq!(
        SubscriptionFilter::parse("$share/g/a/#/b"),
        Err(TopicError::MisplacedMultiLevel)
    );
}

#[test]
fn serde_round_trip() {
    let f: TopicFilter = "a/+".parse().expect("valid");
    let json = serde_json::to_string(&f).expect("serialise");
    assert_eq!(json, "\"a/+\"");
    assert!(serde_json::from_str::<TopicFilter>("\"a/#/b\"").is_err());
    assert!(serde_json::from_str::<Topic>("\"a/+\"").is_err());
}
