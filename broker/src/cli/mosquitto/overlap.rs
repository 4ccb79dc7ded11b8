//! Can two topic filters match a common topic? The importers ask this to
//! find where Mosquitto's first-match order and Warden's deny-overrides
//! could disagree: only where an allow and a deny overlap.
//!
//! A level that holds a placeholder whose value is not known at import
//! time (`%c`, or `%u` for an unknown user) is written as `+`: it stands
//! for any one level, which may claim an overlap that no real client id
//! produces, never miss one. `$` topics follow MQTT: a first-level `+` or
//! `#` does not match them.

/// True when some topic matches both filters `a` and `b`.
pub fn overlaps(a: &str, b: &str) -> bool {
    let la: Vec<&str> = a.split('/').collect();
    let lb: Vec<&str> = b.split('/').collect();
    let dollar = |l: &str| l.starts_with('$');
    let wild = |l: &str| l == "+" || l == "#";
    // A `$` topic is matched only by a filter naming that first level.
    if let (Some(fa), Some(fb)) = (la.first(), lb.first()) {
        if (dollar(fa) && wild(fb)) || (dollar(fb) && wild(fa)) {
            return false;
        }
    }
    let mut i = 0;
    loop {
        match (la.get(i), lb.get(i)) {
            (Some(&"#"), _) | (_, Some(&"#")) => return true,
            (None, None) => return true,
            // `a` also matches `a/#` (the parent level).
            (None, Some(_)) => return lb.get(i) == Some(&"#"),
            (Some(_), None) => return la.get(i) == Some(&"#"),
            (Some(x), Some(y)) => {
                if *x != "+" && *y != "+" && x != y {
                    return false;
                }
            }
        }
        i += 1;
    }
}

/// True when the filter has a wildcard level.
pub fn has_wildcard(filter: &str) -> bool {
    filter.split('/').any(|l| l == "+" || l == "#")
}

/// `filter` with every level containing `marker` replaced by `+`.
pub fn widen(filter: &str, marker: &str) -> String {
    filter
        .split('/')
        .map(|l| if l.contains(marker) { "+" } else { l })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_table() {
        for (a, b, want) in [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "+/b", true),
            ("a/#", "a", true),
            ("a", "a/#", true),
            ("a/#", "b/#", false),
            ("#", "x/y/z", true),
            ("a/+/c", "a/b", false),
            ("a/+", "a/b/c", false),
            ("+/+", "a/b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/broker/uptime", true),
            ("$SYS/#", "#", false),
            ("", "", true),
            ("a//b", "a/+/b", true),
        ] {
            assert_eq!(overlaps(a, b), want, "{a} vs {b}");
            assert_eq!(overlaps(b, a), want, "{b} vs {a}");
        }
    }

    #[test]
    fn widen_levels_with_unknown_values() {
        assert_eq!(widen("dev/%c/x", "%c"), "dev/+/x");
        assert_eq!(widen("dev/id-%c/x", "%c"), "dev/+/x");
        assert_eq!(widen("a/b", "%c"), "a/b");
        assert!(has_wildcard("a/+"));
        assert!(!has_wildcard("a/b+"));
    }
}
