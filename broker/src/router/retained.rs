//! Retained messages, stored in a tree of topic levels so that a subscribe
//! visits only the part of the tree its filter can match.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
struct RNode<M> {
    children: HashMap<Box<str>, RNode<M>>,
    value: Option<(Arc<str>, M)>,
}

impl<M> Default for RNode<M> {
    fn default() -> Self {
        RNode {
            children: HashMap::new(),
            value: None,
        }
    }
}

impl<M> Drop for RNode<M> {
    // Iterative: a topic may have thousands of levels.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut pending: Vec<RNode<M>> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut n) = pending.pop() {
            pending.extend(n.children.drain().map(|(_, c)| c));
        }
    }
}

/// Retained messages, one per topic, generic over the message type `M`.
#[derive(Debug)]
pub struct RetainedStore<M> {
    root: RNode<M>,
    count: usize,
}

impl<M: Clone> Default for RetainedStore<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Clone> RetainedStore<M> {
    pub fn new() -> Self {
        RetainedStore {
            root: RNode::default(),
            count: 0,
        }
    }

    /// Store `msg` as the retained message of `topic`, replacing any.
    pub fn set(&mut self, topic: &str, msg: M) {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        match &mut node.value {
            Some((_, m)) => *m = msg,
            None => {
                node.value = Some((Arc::from(topic), msg));
                self.count += 1;
            }
        }
    }

    /// Remove the retained message of `topic`; true if there was one.
    pub fn remove(&mut self, topic: &str) -> bool {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            match node.children.get_mut(level) {
                Some(c) => node = c,
                None => return false,
            }
        }
        if node.value.take().is_none() {
            return false;
        }
        self.count -= 1;
        if node.children.is_empty() {
            self.prune(topic);
        }
        true
    }

    /// The node of `topic` is empty: cut the branch below the deepest
    /// ancestor that holds something else.
    fn prune(&mut self, topic: &str) {
        let mut cut: Option<(usize, &str)> = None;
        let mut node = &self.root;
        for (depth, level) in topic.split('/').enumerate() {
            if depth == 0 || node.value.is_some() || node.children.len() > 1 {
                cut = Some((depth, level));
            }
            match node.children.get(level) {
                Some(c) => node = c,
                None => return,
            }
        }
        let Some((depth, level)) = cut else {
            return;
        };
        let mut node = &mut self.root;
        for l in topic.split('/').take(depth) {
            match node.children.get_mut(l) {
                Some(c) => node = c,
                None => return,
            }
        }
        node.children.remove(level);
    }

    /// Append every retained message whose topic `filter` matches, with its
    /// topic. A filter without wildcards is a direct walk.
    pub fn matching(&self, filter: &str, out: &mut Vec<(Arc<str>, M)>) {
        // (node, remaining filter levels, node is the root)
        let mut stack: Vec<(&RNode<M>, std::str::Split<'_, char>, bool)> =
            vec![(&self.root, filter.split('/'), true)];
        while let Some((mut node, mut levels, mut at_root)) = stack.pop() {
            loop {
                match levels.next() {
                    None => {
                        push_value(node, out);
                        break;
                    }
                    Some("#") => {
                        // `#` matches the parent level too (`a/#` matches `a`).
                        push_value(node, out);
                        collect_below(node, at_root, out);
                        break;
                    }
                    Some("+") => {
                        for (name, child) in &node.children {
                            if !(at_root && name.starts_with('$')) {
                                stack.push((child, levels.clone(), false));
                            }
                        }
                        break;
                    }
                    Some(level) => match node.children.get(level) {
                        Some(c) => {
                            node = c;
                            at_root = false;
                        }
                        None => break,
                    },
                }
            }
        }
    }

    /// The retained message of exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&M> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref().map(|(_, m)| m)
    }

    /// Append every retained message, `$`-topics included, with its topic.
    pub fn all(&self, out: &mut Vec<(Arc<str>, M)>) {
        let mut stack: Vec<&RNode<M>> = vec![&self.root];
        while let Some(n) = stack.pop() {
            push_value(n, out);
            stack.extend(n.children.values());
        }
    }

    /// Remove every message for which `expired` holds; their topics.
    pub fn remove_where(&mut self, mut expired: impl FnMut(&M) -> bool) -> Vec<Arc<str>> {
        let mut gone = Vec::new();
        let mut stack: Vec<&RNode<M>> = vec![&self.root];
        while let Some(n) = stack.pop() {
            if let Some((topic, m)) = &n.value {
                if expired(m) {
                    gone.push(Arc::clone(topic));
                }
            }
            stack.extend(n.children.values());
        }
        for topic in &gone {
            self.remove(topic);
        }
        gone
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    #[cfg(test)]
    pub(crate) fn root_is_bare(&self) -> bool {
        self.root.children.is_empty()
    }
}

fn push_value<M: Clone>(node: &RNode<M>, out: &mut Vec<(Arc<str>, M)>) {
    if let Some((t, m)) = &node.value {
        out.push((Arc::clone(t), m.clone()));
    }
}

/// Every value strictly below `node`; under the root, `$` topics are left
/// out because a leading `#` does not match them.
fn collect_below<M: Clone>(node: &RNode<M>, at_root: bool, out: &mut Vec<(Arc<str>, M)>) {
    let mut stack: Vec<&RNode<M>> = node
        .children
        .iter()
        .filter(|(name, _)| !(at_root && name.starts_with('$')))
        .map(|(_, c)| c)
        .collect();
    while let Some(n) = stack.pop() {
        push_value(n, out);
        stack.extend(n.children.values());
    }
}

#[cfg(test)]
#[path = "retained_tests.rs"]
mod tests;
