//! Property tests: the trie and the retained store agree with a naive
//! filter-against-topic reference on random filters and topics.

use std::collections::HashMap;

use proptest::prelude::*;

use super::{RetainedStore, SubOptions, SubscriptionTrie};

/// MQTT §4.7 matching, written level by level with no shortcuts.
fn reference_matches(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && matches!(f.first(), Some(&"+") | Some(&"#")) {
        return false;
    }
    let mut i = 0;
    loop {
        match (f.get(i), t.get(i)) {
            (Some(&"#"), _) => return true,
            (Some(&"+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
        i += 1;
    }
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("$s".to_string()),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|v| v.join("/"))
        .prop_filter("a topic is never empty", |t| !t.is_empty())
}

fn filter() -> impl Strategy<Value = String> {
    let flevel = prop_oneof![3 => level(), 2 => Just("+".to_string())];
    (prop::collection::vec(flevel, 0..5), any::<bool>()).prop_map(|(mut v, hash)| {
        if hash || v.is_empty() {
            v.push("#".to_string());
        }
        v.join("/")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn trie_agrees_with_reference(
        subs in prop::collection::vec((filter(), 0u8..4), 1..12),
        topics in prop::collection::vec(topic(), 1..6),
        removals in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut trie = SubscriptionTrie::new();
        let mut live: Vec<(String, u8)> = Vec::new();
        for (f, k) in &subs {
            trie.subscribe(f, None, *k, SubOptions::default());
            if !live.contains(&(f.clone(), *k)) {
                live.push((f.clone(), *k));
            }
        }
        for ix in &removals {
            if live.is_empty() { break; }
            let (f, k) = live.remove(ix.index(live.len()));
            prop_assert!(trie.unsubscribe(&f, None, &k));
        }
        prop_assert_eq!(trie.len(), live.len());
        for t in &topics {
            let mut got: Vec<u8> = Vec::new();
            trie.matches(t, |k, _, _| got.push(*k));
            got.sort_unstable();
            let mut want: Vec<u8> = live.iter()
                .filter(|(f, _)| reference_matches(f, t))
                .map(|(_, k)| *k)
                .collect();
            want.sort_unstable();
            prop_assert_eq!(&got, &want, "topic {:?} subs {:?}", t, live);

            let mut merged = Vec::new();
            trie.matches_merged(t, None, &mut merged);
            let mut keys: Vec<u8> = merged.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            want.dedup();
            prop_assert_eq!(keys, want);
        }
        for (f, k) in &live {
            trie.unsubscribe(f, None, k);
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn merged_agrees_with_reference(
        subs in prop::collection::vec(
            (filter(), 0u8..4, 0u8..3, any::<bool>(), prop::option::of(1u32..4)),
            1..12,
        ),
        topics in prop::collection::vec(topic(), 1..6),
        publisher in prop::option::of(0u8..4),
    ) {
        let mut trie = SubscriptionTrie::new();
        // (filter, key) -> options; a later subscribe replaces.
        let mut live: HashMap<(String, u8), SubOptions> = HashMap::new();
        for (f, k, qos, no_local, id) in &subs {
            let opts = SubOptions {
                qos: *qos,
                no_local: *no_local,
                subscription_id: *id,
                ..SubOptions::default()
            };
            trie.subscribe(f, None, *k, opts);
            live.insert((f.clone(), *k), opts);
        }
        for t in &topics {
            let mut want: HashMap<u8, (u8, Vec<u32>)> = HashMap::new();
            for ((f, k), o) in &live {
                if !reference_matches(f, t) || (o.no_local && publisher == Some(*k)) {
                    continue;
                }
                let e = want.entry(*k).or_insert((0, Vec::new()));
                e.0 = e.0.max(o.qos);
                e.1.extend(o.subscription_id);
            }
            let mut out = Vec::new();
            trie.matches_merged(t, publisher.as_ref(), &mut out);
            prop_assert_eq!(out.len(), want.len(), "topic {:?}", t);
            for (k, m) in out {
                let Some((qos, mut ids)) = want.remove(&k) else {
                    return Err(TestCaseError::fail(format!("unexpected key {k}")));
                };
                ids.sort_unstable();
                ids.dedup();
                let mut got_ids = m.subscription_ids.clone();
                got_ids.sort_unstable();
                prop_assert_eq!(m.qos, qos);
                prop_assert_eq!(got_ids, ids);
                prop_assert!(!m.shared);
            }
        }
    }

    #[test]
    fn shared_groups_agree_with_reference(
        subs in prop::collection::vec(
            (filter(), prop::option::of(prop_oneof![Just("g"), Just("h")]), 0u8..4),
            1..12,
        ),
        topics in prop::collection::vec(topic(), 1..6),
    ) {
        let mut trie = SubscriptionTrie::new();
        let mut groups: HashMap<(String, Option<&str>), Vec<u8>> = HashMap::new();
        for (f, g, k) in &subs {
            trie.subscribe(f, *g, *k, SubOptions::default());
            let members = groups.entry((f.clone(), *g)).or_default();
            if !members.contains(k) {
                members.push(*k);
            }
        }
        for t in &topics {
            // Per matching group: how many deliveries, and to whom.
            let mut got: HashMap<Option<String>, Vec<u8>> = HashMap::new();
            trie.matches(t, |k, _, g| got.entry(g.map(String::from)).or_default().push(*k));
            for g in ["g", "h"] {
                let matching: Vec<&Vec<u8>> = groups.iter()
                    .filter(|((f, gr), _)| *gr == Some(g) && reference_matches(f, t))
                    .map(|(_, m)| m)
                    .collect();
                let delivered = got.remove(&Some(g.to_string())).unwrap_or_default();
                // One delivery per matching (filter, group), to a member of it.
                prop_assert_eq!(delivered.len(), matching.len());
                for k in &delivered {
                    prop_assert!(matching.iter().any(|m| m.contains(k)));
                }
            }
            let mut direct = got.remove(&None).unwrap_or_default();
            direct.sort_unstable();
            let mut want: Vec<u8> = groups.iter()
                .filter(|((f, gr), _)| gr.is_none() && reference_matches(f, t))
                .flat_map(|(_, m)| m.iter().copied())
                .collect();
            want.sort_unstable();
            prop_assert_eq!(direct, want);
        }
        for (f, g, k) in &subs {
            trie.unsubscribe(f, *g, k);
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn retained_agrees_with_reference(
        topics in prop::collection::vec(topic(), 0..12),
        filters in prop::collection::vec(filter(), 1..6),
    ) {
        let mut store = RetainedStore::new();
        let mut model: HashMap<String, usize> = HashMap::new();
        for (i, t) in topics.iter().enumerate() {
            store.set(t, i);
            model.insert(t.clone(), i);
        }
        prop_assert_eq!(store.len(), model.len());
        for f in &filters {
            let mut out = Vec::new();
            store.matching(f, &mut out);
            let mut got: Vec<(String, usize)> =
                out.into_iter().map(|(t, m)| (t.to_string(), m)).collect();
            got.sort();
            let mut want: Vec<(String, usize)> = model.iter()
                .filter(|(t, _)| reference_matches(f, t))
                .map(|(t, m)| (t.clone(), *m))
                .collect();
            want.sort();
            prop_assert_eq!(got, want, "filter {:?}", f);
        }
        for t in model.keys() {
            prop_assert!(store.remove(t));
        }
        prop_assert!(store.is_empty());
        prop_assert!(store.root_is_bare());
    }
}
