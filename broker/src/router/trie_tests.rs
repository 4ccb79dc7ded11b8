//! Unit tests for the subscription trie.

use super::*;

fn o(qos: u8) -> SubOptions {
    SubOptions {
        qos,
        ..SubOptions::default()
    }
}

/// Keys of the non-shared subscriptions matching `topic`, one per filter hit.
fn hits(t: &SubscriptionTrie<&'static str>, topic: &str) -> Vec<&'static str> {
    let mut v = Vec::new();
    t.matches(topic, |k, _, _| v.push(*k));
    v.sort_unstable();
    v
}

fn matches_one(filter: &str, topic: &str) -> bool {
    let mut t = SubscriptionTrie::new();
    t.subscribe(filter, None, "k", o(0));
    !hits(&t, topic).is_empty()
}

#[test]
fn matching_table() {
    let table: &[(&str, &str, bool)] = &[
        ("sport/tennis/player1", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        ("sport/tennis/#", "sport/tennis", true),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("sport/+/player1", "sport/tennis/player2", false),
        ("sport/+/player1", "sport//player1", true),
        ("+", "sport", true),
        ("+", "sport/tennis", false),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+/#", "a", true),
        ("+/#", "a/b/c", true),
        ("/#", "/a", true),
        ("/#", "/", true),
        ("/#", "a", false),
        ("+/+", "/", true),
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/+/b", "a//b", true),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
        // `$` topics and leading wildcards.
        ("#", "$SYS/broker", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/+/Clients", "$SYS/monitor/Clients", true),
        ("a/$x", "a/$x", true),
        ("a/+", "a/$x", true),
        ("a/#", "a/$x/y", true),
    ];
    for (filter, topic, want) in table {
        assert_eq!(
            matches_one(filter, topic),
            *want,
            "filter {filter:?} topic {topic:?}"
        );
    }
}

#[test]
fn subscribe_replace_unsubscribe() {
    let mut t = SubscriptionTrie::new();
    assert!(!t.subscribe("a/+", None, "c1", o(0)));
    assert!(t.subscribe("a/+", None, "c1", o(2)));
    assert_eq!(t.len(), 1);
    let mut qos = Vec::new();
    t.matches("a/b", |_, o, _| qos.push(o.qos));
    assert_eq!(qos, vec![2]);
    assert!(!t.subscribe("a/+", Some("g"), "c1", o(1)));
    assert_eq!(t.len(), 2);
    assert!(!t.unsubscribe("a/+", None, &"c2"));
    assert!(!t.unsubscribe("a/b", None, &"c1"));
    assert!(t.unsubscribe("a/+", None, &"c1"));
    assert!(!t.unsubscribe("a/+", None, &"c1"));
    assert_eq!(t.len(), 1);
    assert!(t.unsubscribe("a/+", Some("g"), &"c1"));
    assert!(t.is_empty());
    assert_eq!(t.node_count(), 1, "all nodes pruned");
    assert!(t.subscriptions_of(&"c1").is_empty());
}

#[test]
fn pruning_keeps_shared_prefixes() {
    let mut t = SubscriptionTrie::new();
    t.subscribe("a/b/c", None, "k", o(0));
    t.subscribe("a/#", None, "k", o(0));
    t.subscribe("a/+/c/d", None, "k", o(0));
    t.subscribe("#", None, "k", o(0));
    assert!(t.unsubscribe("a/b/c", None, &"k"));
    assert_eq!(hits(&t, "a/b/c"), vec!["k", "k"]);
    assert_eq!(hits(&t, "a/x/c/d"), vec!["k", "k", "k"]);
    assert!(t.unsubscribe("a/+/c/d", None, &"k"));
    assert_eq!(t.node_count(), 2, "root and a");
    assert!(t.unsubscribe("a/#", None, &"k"));
    assert_eq!(t.node_count(), 1);
    assert_eq!(hits(&t, "a"), vec!["k"]);
    assert!(t.unsubscribe("#", None, &"k"));
    assert!(t.is_empty());
    assert_eq!(t.node_count(), 1);
}

#[test]
fn remove_all_and_subscriptions_of() {
    let mut t = SubscriptionTrie::new();
    t.subscribe("a/#", None, "c1", o(1));
    t.subscribe("b/+", Some("g"), "c1", o(2));
    t.subscribe("c", None, "c1", o(0));
    t.subscribe("a/#", None, "c2", o(0));
    assert_eq!(t.len(), 4);
    assert_eq!(
        t.subscriptions_of(&"c1"),
        vec![
            ("a/#".to_string(), None, o(1)),
            ("b/+".to_string(), Some("g".to_string()), o(2)),
            ("c".to_string(), None, o(0)),
        ]
    );
    t.remove_all(&"c1");
    assert_eq!(t.len(), 1);
    assert!(t.subscriptions_of(&"c1").is_empty());
    assert_eq!(hits(&t, "a/x"), vec!["c2"]);
    assert!(hits(&t, "c").is_empty());
    t.remove_all(&"c2");
    assert!(t.is_empty());
    assert_eq!(t.node_count(), 1);
    t.remove_all(&"nobody");
}

#[test]
fn shared_round_robin_fairness() {
    let mut t = SubscriptionTrie::new();
    for k in ["m1", "m2", "m3"] {
        t.subscribe("s/+", Some("g"), k, o(1));
    }
    let mut counts = std::collections::HashMap::new();
    for _ in 0..9 {
        let mut got = Vec::new();
        t.matches("s/x", |k, _, g| got.push((*k, g.map(String::from))));
        assert_eq!(got.len(), 1, "one member per group per message");
        if let Some((k, g)) = got.pop() {
            assert_eq!(g.as_deref(), Some("g"));
            *counts.entry(k).or_insert(0) += 1;
        }
    }
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&c| c == 3), "{counts:?}");
}

#[test]
fn shared_and_non_shared_on_same_filter_both_delivered() {
    let mut t = SubscriptionTrie::new();
    t.subscribe("s/#", Some("g1"), "a", o(1));
    t.subscribe("s/#", Some("g2"), "b", o(1));
    t.subscribe("s/#", None, "a", o(0));
    t.subscribe("s/#", None, "c", o(2));
    let mut got = Vec::new();
    t.matches("s/t", |k, o, g| got.push((*k, o.qos, g.map(String::from))));
    got.sort();
    assert_eq!(
        got,
        vec![
            ("a", 0, None),
            ("a", 1, Some("g1".to_string())),
            ("b", 1, Some("g2".to_string())),
            ("c", 2, None),
        ]
    );
}

#[test]
fn same_group_name_on_different_filters_are_separate_groups() {
    let mut t = SubscriptionTrie::new();
    t.subscribe("x/+", Some("g"), "a", o(0));
    t.subscribe("x/y", Some("g"), "b", o(0));
    let mut got = Vec::new();
    t.matches("x/y", |k, _, _| got.push(*k));
    got.sort_unstable();
    assert_eq!(got, vec!["a", "b"]);
}

#[test]
fn merged_matches_max_qos_and_all_ids() {
    let mut t = SubscriptionTrie::new();
    let with_id = |qos, id| SubOptions {
        qos,
        subscription_id: Some(id),
        ..SubOptions::default()
    };
    t.subscribe("a/+", None, "c1", with_id(0, 7));
    t.subscribe("a/#", None, "c1", with_id(2, 9));
    t.subscribe("a/b", None, "c1", o(1));
    t.subscribe("a/b", None, "c2", o(1));
    t.subscribe("a/b", Some("g"), "c1", o(0));
    let mut out = Vec::new();
    t.matches_merged("a/b", None, &mut out);
    out.sort_by(|x, y| (x.0, x.1.shared).cmp(&(y.0, y.1.shared)));
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].0, "c1");
    assert_eq!(out[0].1.qos, 2);
    assert!(!out[0].1.shared);
    let mut ids = out[0].1.subscription_ids.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![7, 9]);
    assert_eq!((out[1].0, out[1].1.shared), ("c1", true));
    assert_eq!((out[2].0, out[2].1.qos), ("c2", 1));
}

#[test]
fn merged_no_local_skips_only_the_publishers_own_no_local_subs() {
    let mut t = SubscriptionTrie::new();
    let nl = SubOptions {
        qos: 2,
        no_local: true,
        subscription_id: Some(1),
        ..SubOptions::default()
    };
    t.subscribe("a/#", None, "pub", nl);
    t.subscribe("a/b", None, "other", nl);
    let mut out = Vec::new();
    t.matches_merged("a/b", Some(&"pub"), &mut out);
    assert_eq!(
        out.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        vec!["other"]
    );
    t.subscribe("a/+", None, "pub", o(0));
    out.clear();
    t.matches_merged("a/b", Some(&"pub"), &mut out);
    out.sort_by_key(|(k, _)| *k);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[1].0, out[1].1.qos, out[1].1.subscription_ids.len()),
        ("pub", 0, 0)
    );
}

#[test]
fn merged_with_availability_chooses_again() {
    let mut t = SubscriptionTrie::new();
    for k in ["m1", "m2", "m3"] {
        t.subscribe("q", Some("g"), k, o(1));
    }
    for _ in 0..6 {
        let mut out = Vec::new();
        t.matches_merged_with("q", None, |k| *k == "m2", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "m2");
    }
    let mut out = Vec::new();
    t.matches_merged_with("q", None, |_| false, &mut out);
    assert!(out.is_empty());
}

#[test]
fn very_deep_filters_and_topics_do_not_overflow() {
    let deep: String = vec!["a"; 40_000].join("/");
    let mut t = SubscriptionTrie::new();
    t.subscribe(&deep, None, "k", o(0));
    let plus_deep: String = vec!["+"; 40_000].join("/");
    t.subscribe(&plus_deep, None, "k", o(0));
    assert_eq!(hits(&t, &deep), vec!["k", "k"]);
    assert!(t.unsubscribe(&deep, None, &"k"));
    t.subscribe(&deep, None, "k", o(0));
    // The trie is dropped with both deep chains still in it.
}

#[test]
fn trie_and_store_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SubscriptionTrie<std::sync::Arc<str>>>();
    assert_send_sync::<crate::router::RetainedStore<std::sync::Arc<[u8]>>>();
}

#[test]
fn merged_over_many_overlapping_filters() {
    // More matching filters than the lookup merge handles: the index merge.
    let mut t = SubscriptionTrie::new();
    let filters = [
        "#", "a/#", "a/b/#", "a/b/c/#", "a/b/c/d", "+/b/c/d", "a/+/c/d", "a/b/+/d", "a/b/c/+",
        "+/+/c/d", "+/+/+/d", "+/+/+/+", "+/#", "+/+/#",
    ];
    for (i, f) in filters.iter().enumerate() {
        let id = u32::try_from(i).unwrap_or(0) + 1;
        let opts = SubOptions {
            qos: u8::try_from(i % 3).unwrap_or(0),
            subscription_id: Some(id),
            ..SubOptions::default()
        };
        t.subscribe(f, None, "both", opts);
        t.subscribe(f, None, if i % 2 == 0 { "even" } else { "odd" }, o(0));
    }
    let mut out = Vec::new();
    t.matches_merged("a/b/c/d", None, &mut out);
    out.sort_by_key(|(k, _)| *k);
    let keys: Vec<_> = out.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec!["both", "even", "odd"]);
    assert_eq!(out[0].1.qos, 2);
    assert_eq!(out[0].1.subscription_ids.len(), filters.len());
}

/// Records what an [`InterestSink`] hears.
#[derive(Debug, Default)]
struct Recorder(parking_lot::Mutex<Vec<(String, Option<String>, bool)>>);

impl InterestSink for Recorder {
    fn changed(&self, filter: &str, group: Option<&str>, present: bool) {
        self.0
            .lock()
            .push((filter.to_owned(), group.map(str::to_owned), present));
    }
}

#[test]
fn interest_is_reported_once_per_distinct_filter_and_group() {
    let rec = Arc::new(Recorder::default());
    let mut t = SubscriptionTrie::new();
    t.set_interest_sink(Arc::clone(&rec) as Arc<dyn InterestSink>);
    t.subscribe("a/#", None, "k1", o(0));
    t.subscribe("a/#", None, "k2", o(1));
    // Replacing a subscription is no news; a second member of a group
    // is not either.
    t.subscribe("a/#", None, "k1", o(2));
    t.subscribe("a/#", Some("g"), "k3", o(0));
    t.subscribe("a/#", Some("g"), "k4", o(0));
    t.subscribe("a", None, "k1", o(0));
    t.unsubscribe("a/#", None, &"k1");
    t.unsubscribe("a/#", None, &"k2");
    t.unsubscribe("a/#", None, &"nobody");
    t.unsubscribe("a/#", Some("g"), &"k3");
    t.unsubscribe("a/#", Some("g"), &"k4");
    t.remove_all(&"k1");
    let heard = rec.0.lock().clone();
    let g = Some("g".to_owned());
    assert_eq!(
        heard,
        [
            ("a/#".to_owned(), None, true),
            ("a/#".to_owned(), g.clone(), true),
            ("a".to_owned(), None, true),
            ("a/#".to_owned(), None, false),
            ("a/#".to_owned(), g, false),
            ("a".to_owned(), None, false),
        ]
    );
}

#[test]
fn a_group_is_offered_only_its_own_message() {
    let mut t = SubscriptionTrie::new();
    t.subscribe("a/#", Some("g"), "k1", o(0));
    t.subscribe("a/#", Some("g"), "k2", o(0));
    t.subscribe("a/+", Some("g"), "k3", o(0));
    t.subscribe("a/#", None, "d", o(0));
    let mut got = Vec::new();
    for _ in 0..4 {
        assert!(t.deliver_to_group("a/#", "g", |k, _| {
            got.push(*k);
            true
        }));
    }
    got.sort();
    assert_eq!(got, ["k1", "k1", "k2", "k2"]);
    assert!(!t.deliver_to_group("a/#", "h", |_, _| true));
    assert!(!t.deliver_to_group("b", "g", |_, _| true));
    assert!(!t.deliver_to_group("a/#", "g", |_, _| false));
    assert!(t.has_match("a/x"));
    assert!(!t.has_match("b"));
}
