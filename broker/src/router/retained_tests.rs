//! Unit tests for the retained-message store.

use super::*;

fn topics(s: &RetainedStore<u32>, filter: &str) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    s.matching(filter, &mut out);
    let mut v: Vec<_> = out.into_iter().map(|(t, m)| (t.to_string(), m)).collect();
    v.sort();
    v
}

fn store(entries: &[&str]) -> RetainedStore<u32> {
    let mut s = RetainedStore::new();
    for (i, t) in entries.iter().enumerate() {
        s.set(t, i as u32);
    }
    s
}

#[test]
fn set_replace_remove() {
    let mut s = RetainedStore::new();
    assert!(s.is_empty());
    s.set("a/b", 1);
    s.set("a/b", 2);
    assert_eq!(s.len(), 1);
    assert_eq!(topics(&s, "a/b"), vec![("a/b".to_string(), 2)]);
    s.set("a", 3);
    assert_eq!(s.len(), 2);
    assert!(s.remove("a/b"));
    assert!(!s.remove("a/b"));
    assert!(!s.remove("a/b/c"));
    assert_eq!(topics(&s, "a/#"), vec![("a".to_string(), 3)]);
    assert!(s.remove("a"));
    assert!(s.is_empty());
    assert!(s.root.children.is_empty(), "nodes pruned");
}

#[test]
fn pruning_keeps_other_branches() {
    let mut s = store(&["a/b/c", "a/b/d", "a"]);
    assert!(s.remove("a/b/c"));
    assert_eq!(
        topics(&s, "#"),
        vec![("a".to_string(), 2), ("a/b/d".to_string(), 1)]
    );
    assert!(s.remove("a/b/d"));
    assert_eq!(s.root.children.get("a").map(|n| n.children.len()), Some(0));
}

#[test]
fn matching_with_wildcards() {
    let s = store(&[
        "sport",
        "sport/tennis",
        "sport/tennis/p1",
        "sport//x",
        "/a",
        "b",
    ]);
    let names = |f: &str| {
        topics(&s, f)
            .into_iter()
            .map(|(t, _)| t)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("sport/#"),
        vec!["sport", "sport//x", "sport/tennis", "sport/tennis/p1"]
    );
    assert_eq!(names("sport/+"), vec!["sport/tennis"]);
    assert_eq!(names("sport/+/x"), vec!["sport//x"]);
    assert_eq!(names("sport/+/+"), vec!["sport//x", "sport/tennis/p1"]);
    assert_eq!(names("+"), vec!["b", "sport"]);
    assert_eq!(names("+/a"), vec!["/a"]);
    assert_eq!(names("+/#").len(), 6);
    assert_eq!(names("sport/tennis"), vec!["sport/tennis"]);
    assert!(names("sport/tennis/p2").is_empty());
    assert!(names("nothing/#").is_empty());
}

#[test]
fn dollar_topics_not_matched_by_leading_wildcards() {
    let s = store(&["$SYS/uptime", "$SYS", "x/$y", "x"]);
    let names = |f: &str| {
        topics(&s, f)
            .into_iter()
            .map(|(t, _)| t)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("#"), vec!["x", "x/$y"]);
    assert_eq!(names("+"), vec!["x"]);
    assert_eq!(names("+/uptime"), Vec::<String>::new());
    assert_eq!(names("$SYS/#"), vec!["$SYS", "$SYS/uptime"]);
    assert_eq!(names("$SYS/+"), vec!["$SYS/uptime"]);
    assert_eq!(names("x/+"), vec!["x/$y"]);
}

#[test]
fn deep_topics_do_not_overflow() {
    let deep: String = vec!["a"; 40_000].join("/");
    let mut s = RetainedStore::new();
    s.set(&deep, 1u32);
    s.set("a", 2);
    assert_eq!(topics(&s, "#").len(), 2);
    assert!(s.remove(&deep));
    s.set(&deep, 3);
}

#[test]
fn remove_where_takes_matching_messages_anywhere_and_prunes() {
    let mut s = RetainedStore::new();
    s.set("a/b", 1u32);
    s.set("a/b/c", 2);
    s.set("$SYS/x", 3);
    s.set("z", 4);
    let mut gone = s.remove_where(|m| m % 2 == 1);
    gone.sort();
    assert_eq!(gone, vec![Arc::from("$SYS/x"), Arc::from("a/b")]);
    assert_eq!(s.len(), 2);
    let left: Vec<String> = topics(&s, "#").into_iter().map(|(t, _)| t).collect();
    assert_eq!(left, vec!["a/b/c", "z"]);
    s.remove_where(|_| true);
    assert!(s.is_empty());
    assert!(s.root_is_bare());
}

#[test]
fn get_and_all_see_every_topic_dollar_ones_included() {
    let mut s = RetainedStore::new();
    s.set("a/b", 1u32);
    s.set("$dev/x", 2);
    s.set("a", 3);
    assert_eq!(s.get("a/b"), Some(&1));
    assert_eq!(s.get("a/c"), None);
    assert_eq!(s.get("$dev/x"), Some(&2));
    let mut all = Vec::new();
    s.all(&mut all);
    let mut names: Vec<String> = all.into_iter().map(|(t, _)| t.to_string()).collect();
    names.sort();
    assert_eq!(names, ["$dev/x", "a", "a/b"]);
}
