//! A trie over topic levels holding compiled rule entries, so a decision
//! visits only the branches a topic can reach instead of scanning every rule.
//!
//! Walks use recursion over `str::split` iterators and call back for each
//! hit, so matching never allocates.

/// Index of an entry in the compiled policy's entry list.
pub(crate) type EntryIdx = u32;

#[derive(Debug, Default)]
struct Node {
    /// Exact-level children, sorted by (length, bytes) for binary search:
    /// comparing lengths first settles most probes without a memcmp.
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

pub(crate) fn level_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
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
            let lits = &mut self.nodes[node].lits;
            match lits.binary_search_by(|(l, _)| level_order(l, level)) {
                Ok(i) => return lits[i].1 as usize,
                Err(i) => lits.insert(i, (level.into(), next)),
            }
        }
        self.nodes.push(Node::default());
        next as usize
    }

    fn lit(&self, node: &Node, level: &str) -> Option<usize> {
        node.lits
            .binary_search_by(|(l, _)| level_order(l, level))
            .ok()
            .and_then(|i| node.lits.get(i))
            .map(|(_, c)| *c as usize)
    }

    /// Calls `hit` for every entry whose filter matches the valid topic `topic`.
    pub(crate) fn for_each_match(&self, topic: &str, hit: &mut impl FnMut(EntryIdx)) {
        self.any.iter().for_each(|e| hit(*e));
        self.match_from(0, topic.split('/'), true, hit);
    }

    fn match_from(
        &self,
        node: usize,
        mut levels: std::str::Split<'_, char>,
        first: bool,
        hit: &mut impl FnMut(EntryIdx),
    ) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let Some(level) = levels.next() else {
            // "a/#" also matches "a".
            n.end.iter().chain(&n.hash).for_each(|e| hit(*e));
            return;
        };
        let wild_ok = !(first && dollar(level));
        if wild_ok {
            n.hash.iter().for_each(|e| hit(*e));
            if let Some(c) = n.plus {
                self.match_from(c as usize, levels.clone(), false, hit);
            }
        }
        if let Some(c) = self.lit(n, level) {
            self.match_from(c, levels, false, hit);
        }
    }

    /// Calls `hit` for every entry whose filter covers the valid filter `filter`.
    pub(crate) fn for_each_covering(&self, filter: &str, hit: &mut impl FnMut(EntryIdx)) {
        self.any.iter().for_each(|e| hit(*e));
        self.cover_from(0, filter.split('/'), true, true, hit);
    }

    /// `empty_prefix`: the filter levels consumed so far can only form the
    /// empty string, which is not a topic (see `topic::filter_covers`).
    fn cover_from(
        &self,
        node: usize,
        mut levels: std::str::Split<'_, char>,
        first: bool,
        empty_prefix: bool,
        hit: &mut impl FnMut(EntryIdx),
    ) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let level = levels.next();
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
                    self.cover_from(
                        c as usize,
                        levels.clone(),
                        false,
                        first && l.is_empty(),
                        hit,
                    );
                }
                if let Some(c) = self.lit(n, l) {
                    self.cover_from(c, levels, false, first && l.is_empty(), hit);
                }
            }
        }
    }
}
