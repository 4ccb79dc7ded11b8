//! A trie over topic levels holding compiled rule entries, so a decision
//! visits only the branches a topic can reach instead of scanning every rule.
//!
//! Walks use recursion over a copyable level iterator and call back for each
//! hit, so matching never allocates.

/// Index of an entry in the compiled policy's entry list.
pub(crate) type EntryIdx = u32;

#[derive(Debug, Default)]
struct Node {
    /// Hashes of the exact-level children, sorted, parallel to `lits`: a
    /// binary search over contiguous integers, then one string comparison.
    keys: Vec<u64>,
    lits: Vec<(Box<str>, u32)>,
    plus: Option<u32>,
    /// Entries whose filter ends in `#` here.
    hash: Vec<EntryIdx>,
    /// Entries whose filter ends exactly here.
    end: Vec<EntryIdx>,
}

#[derive(Debug)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
    /// Entries that match every topic, `$` topics included.
    any: Vec<EntryIdx>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::default()],
            any: Vec::new(),
        }
    }
}

/// The order of literal children: by level hash, then bytes.
pub(crate) fn level_order(a: &str, b: &str) -> std::cmp::Ordering {
    level_hash(a)
        .cmp(&level_hash(b))
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;

fn mix(h: u64, b: u8) -> u64 {
    (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// Not collision resistant, and need not be: the keys are rule levels chosen
/// by the operator, and a collision costs one extra string comparison.
pub(crate) fn level_hash(level: &str) -> u64 {
    level.bytes().fold(SEED, mix)
}

/// Splits a topic or filter into levels, hashing each level in the same pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Levels<'a> {
    rest: Option<&'a str>,
}

impl<'a> Levels<'a> {
    pub(crate) fn new(s: &'a str) -> Levels<'a> {
        Levels { rest: Some(s) }
    }
}

impl<'a> Iterator for Levels<'a> {
    type Item = (&'a str, u64);

    fn next(&mut self) -> Option<(&'a str, u64)> {
        let s = self.rest?;
        let mut h = SEED;
        for (i, b) in s.bytes().enumerate() {
            if b == b'/' {
                // '/' is ASCII, so both slices fall on char boundaries.
                self.rest = s.get(i + 1..);
                return s.get(..i).map(|level| (level, h));
            }
            h = mix(h, b);
        }
        self.rest = None;
        Some((s, h))
    }
}

fn dollar(level: &str) -> bool {
    level.starts_with('$')
}

impl Trie {
    pub(crate) fn insert_any(&mut self, entry: EntryIdx) {
        self.any.push(entry);
    }

    /// Inserts a valid filter.
    pub(crate) fn insert(&mut self, filter: &str, entry: EntryIdx) {
        let mut node = 0usize;
        for level in filter.split('/') {
            if level == "#" {
                self.nodes[node].hash.push(entry);
                return;
            }
            node = self.child(node, level);
        }
        self.nodes[node].end.push(entry);
    }

    fn child(&mut self, node: usize, level: &str) -> usize {
        let next = self.nodes.len() as u32;
        if level == "+" {
            if let Some(c) = self.nodes[node].plus {
                return c as usize;
            }
            self.nodes[node].plus = Some(next);
        } else {
            let n = &mut self.nodes[node];
            match n.lits.binary_search_by(|(l, _)| level_order(l, level)) {
                Ok(i) => return n.lits[i].1 as usize,
                Err(i) => {
                    n.lits.insert(i, (level.into(), next));
                    n.keys.insert(i, level_hash(level));
                }
            }
        }
        self.nodes.push(Node::default());
        next as usize
    }

    fn lit(&self, node: &Node, level: &str, hash: u64) -> Option<usize> {
        let start = node.keys.partition_point(|k| *k < hash);
        let same = node
            .keys
            .get(start..)?
            .iter()
            .take_while(|k| **k == hash)
            .count();
        node.lits
            .get(start..start + same)?
            .iter()
            .find(|(l, _)| **l == *level)
            .map(|(_, c)| *c as usize)
    }

    /// Calls `hit` for every entry whose filter matches the valid topic `topic`.
    pub(crate) fn for_each_match(&self, topic: &str, hit: &mut impl FnMut(EntryIdx)) {
        self.any.iter().for_each(|e| hit(*e));
        self.match_from(0, Levels::new(topic), true, hit);
    }

    fn match_from(
        &self,
        node: usize,
        mut levels: Levels<'_>,
        first: bool,
        hit: &mut impl FnMut(EntryIdx),
    ) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let Some((level, hash)) = levels.next() else {
            // "a/#" also matches "a".
            n.end.iter().chain(&n.hash).for_each(|e| hit(*e));
            return;
        };
        let wild_ok = !(first && dollar(level));
        if wild_ok {
            n.hash.iter().for_each(|e| hit(*e));
            if let Some(c) = n.plus {
                self.match_from(c as usize, levels, false, hit);
            }
        }
        if let Some(c) = self.lit(n, level, hash) {
            self.match_from(c, levels, false, hit);
        }
    }

    /// Calls `hit` for every entry whose filter covers the valid filter `filter`.
    pub(crate) fn for_each_covering(&self, filter: &str, hit: &mut impl FnMut(EntryIdx)) {
        self.any.iter().for_each(|e| hit(*e));
        self.cover_from(0, Levels::new(filter), true, true, hit);
    }

    /// `empty_prefix`: the filter levels consumed so far can only form the
    /// empty string, which is not a topic (see `topic::filter_covers`).
    fn cover_from(
        &self,
        node: usize,
        mut levels: Levels<'_>,
        first: bool,
        empty_prefix: bool,
        hit: &mut impl FnMut(EntryIdx),
    ) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let next = levels.next();
        let level = next.map(|(l, _)| l);
        if !(first && level.is_some_and(|l| l != "+" && l != "#" && dollar(l))) {
            n.hash.iter().for_each(|e| hit(*e));
        }
        match level {
            None => n.end.iter().for_each(|e| hit(*e)),
            Some("#") => {
                // "+/#" covers "#" because the empty topic does not exist;
                // deeper, "a/#" matches "a" and "a/+/#" does not.
                if empty_prefix {
                    if let Some(c) = n.plus.and_then(|c| self.nodes.get(c as usize)) {
                        c.hash.iter().for_each(|e| hit(*e));
                    }
                }
            }
            Some("+") => {
                if let Some(c) = n.plus {
                    self.cover_from(c as usize, levels, false, false, hit);
                }
            }
            Some(l) => {
                if let Some(c) = n.plus.filter(|_| !(first && dollar(l))) {
                    self.cover_from(c as usize, levels, false, first && l.is_empty(), hit);
                }
                let hash = next.map_or(0, |(_, h)| h);
                if let Some(c) = self.lit(n, l, hash) {
                    self.cover_from(c, levels, false, first && l.is_empty(), hit);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(trie: &Trie, topic: &str) -> Vec<EntryIdx> {
        let mut out = Vec::new();
        trie.for_each_match(topic, &mut |e| out.push(e));
        out.sort_unstable();
        out
    }

    #[test]
    fn levels_split_and_hash() {
        let got: Vec<&str> = Levels::new("a//b/").map(|(l, _)| l).collect();
        assert_eq!(got, vec!["a", "", "b", ""]);
        let hashes: Vec<u64> = Levels::new("x/x").map(|(_, h)| h).collect();
        assert_eq!(hashes, vec![level_hash("x"), level_hash("x")]);
    }

    #[test]
    fn many_literal_siblings_are_found() {
        let mut trie = Trie::default();
        for i in 0..2_000u32 {
            trie.insert(&format!("fleet/{i}/#"), i);
        }
        trie.insert("fleet/+/x", 9_999);
        assert_eq!(matches(&trie, "fleet/1234/y"), vec![1234]);
        assert_eq!(matches(&trie, "fleet/7/x"), vec![7, 9_999]);
        assert_eq!(matches(&trie, "fleet/2000/y"), Vec::<EntryIdx>::new());
    }

    #[test]
    fn any_entries_match_dollar_topics() {
        let mut trie = Trie::default();
        trie.insert("#", 1);
        trie.insert_any(2);
        assert_eq!(matches(&trie, "$SYS/x"), vec![2]);
        assert_eq!(matches(&trie, "a"), vec![1, 2]);
    }
}
