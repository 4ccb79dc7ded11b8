//! MQTT topics and filters as NATS subjects, and back.
//!
//! A topic `a/b` travels on `warden.<cluster>.t.a.b`; a topic whose first
//! level starts with `$` travels under `warden.<cluster>.d.` instead, so no
//! subject made from a filter with a leading `+` or `#` (which MQTT §4.7.2
//! keeps away from `$`-topics) can match it. Each MQTT level is one NATS
//! token:
//!
//! - an empty level is the token `%` (NATS has no empty tokens);
//! - in a level, `.`, `*`, `>`, `%`, space, DEL and the ASCII control
//!   characters are written `%XX` (the byte in upper-case hex): NATS splits
//!   on `.`, reads `*` and `>` as wildcards and whitespace as the end of the
//!   subject. Everything else, including non-ASCII UTF-8, is kept as it is.
//!
//! `%` never stands alone in an escaped level, so the mapping is injective
//! and [`Subjects::topic_of`] reverses it. In a filter `+` becomes `*`, and
//! `a/#` becomes two subjects, `…a` and `…a.>`, because MQTT's `#` also
//! matches the parent level and NATS's `>` needs at least one token. A
//! filter's subjects match exactly the subjects of the topics the filter
//! matches (`subject_tests.rs` checks it against the policy crate's matcher).
//!
//! No legal MQTT topic is refused here. The NATS server limits the length
//! of a protocol line (4 KiB by default); [`MAX_SUBJECT`] is what the node
//! sends, and a longer topic is delivered on its own node only.

/// The longest subject a node publishes or subscribes to: nats-server's
/// default `max_control_line` is 4096 bytes, and the line also holds the
/// verb, a subscription id or reply and the sizes.
pub const MAX_SUBJECT: usize = 3968;

/// The subject layout of one cluster.
#[derive(Clone, Debug)]
pub struct Subjects {
    /// `warden.<cluster>.`
    prefix: String,
    cluster: String,
}

/// Where a subject lives below the cluster's prefix.
const TOPICS: &str = "t.";
const DOLLAR: &str = "d.";
/// Retained messages: `r.` then the topic's subject below the prefix.
const RETAINED: &str = "r.";

impl Subjects {
    /// `cluster` is one subject token (checked by the config).
    pub fn new(cluster: &str) -> Subjects {
        Subjects {
            prefix: format!("warden.{cluster}."),
            cluster: cluster.to_owned(),
        }
    }

    /// The length of a topic subject's fixed start (`warden.<c>.t.`).
    pub fn topic_prefix_len(&self) -> usize {
        self.prefix.len() + TOPICS.len()
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// `warden.<cluster>.`: what every subject of the cluster starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where nodes announce a policy change.
    pub fn policy(&self) -> String {
        format!("{}policy", self.prefix)
    }

    /// A subject nobody subscribes to: a request on it comes back at once
    /// with the server's "no responders", which tells the node that the
    /// server has read everything it sent before (`link.rs`).
    pub fn sync(&self, node_id: &str) -> String {
        format!("{}sync.{node_id}", self.prefix)
    }

    /// Where `node` announces its interest changes (`*`: every node).
    pub fn interest(&self, node: &str) -> String {
        format!("{}interest.{node}", self.prefix)
    }

    /// Where a node joining (or resynchronising) says hello.
    pub fn interest_hello(&self) -> String {
        format!("{}interest-hello", self.prefix)
    }

    /// Where the answers to `node`'s hello go.
    pub fn interest_snapshot(&self, node: &str) -> String {
        format!("{}interest-snap.{node}", self.prefix)
    }

    /// Where the acknowledgements of `node`'s announcements go.
    pub fn interest_ack(&self, node: &str) -> String {
        format!("{}interest-ack.{node}", self.prefix)
    }

    /// Where the receiving nodes report their progress to one sender
    /// instance (`flow.rs`).
    pub fn flow(&self, instance: u64) -> String {
        format!("{}flow.{instance:016x}", self.prefix)
    }

    /// The NATS queue group of the shared group with this queue id
    /// (`router::queue_id`).
    pub fn queue_name(&self, queue: u64) -> String {
        format!("warden-{}-{queue:016x}", self.cluster)
    }

    /// The JetStream stream of retained messages.
    pub fn retained_stream(&self) -> String {
        format!("warden-{}-retained", self.cluster)
    }

    /// Every retained message's subject (the stream's subjects).
    pub fn retained_all(&self) -> String {
        format!("{}{RETAINED}>", self.prefix)
    }

    /// The stream subject of the retained message of `topic`: the topic's
    /// subject with `r.` after the prefix (`warden.c.r.t.a.b`).
    pub fn retained(&self, topic: &str) -> String {
        let live = self.topic(topic);
        let mut out = String::with_capacity(live.len() + RETAINED.len());
        out.push_str(&self.prefix);
        out.push_str(RETAINED);
        out.push_str(live.get(self.prefix.len()..).unwrap_or_default());
        out
    }

    /// The topic of a retained message's stream subject.
    pub fn topic_of_retained(&self, subject: &str) -> Option<String> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(RETAINED)?;
        let mut live = String::with_capacity(self.prefix.len() + rest.len());
        live.push_str(&self.prefix);
        live.push_str(rest);
        self.topic_of(&live)
    }

    /// The subject a message on `topic` is published on.
    pub fn topic(&self, topic: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 2 + topic.len() + 8);
        out.push_str(&self.prefix);
        out.push_str(if topic.starts_with('$') {
            DOLLAR
        } else {
            TOPICS
        });
        for (i, level) in topic.split('/').enumerate() {
            if i > 0 {
                out.push('.');
            }
            push_level(&mut out, level);
        }
        out
    }

    /// The subjects a node subscribes to for `filter` (one, or two for a
    /// filter ending in `#` that has a parent level).
    pub fn filter(&self, filter: &str) -> Vec<String> {
        let mut out = String::with_capacity(self.prefix.len() + 2 + filter.len() + 8);
        out.push_str(&self.prefix);
        let dollar = filter.starts_with('$');
        out.push_str(if dollar { DOLLAR } else { TOPICS });
        if filter == "#" {
            out.push('>');
            return vec![out];
        }
        let (path, hash) = match filter.strip_suffix("/#") {
            Some(path) => (path, true),
            None => (filter, false),
        };
        for (i, level) in path.split('/').enumerate() {
            if i > 0 {
                out.push('.');
            }
            if level == "+" {
                out.push('*');
            } else {
                push_level(&mut out, level);
            }
        }
        if hash {
            let parent = out.clone();
            out.push_str(".>");
            vec![parent, out]
        } else {
            vec![out]
        }
    }

    /// The topic a subject of this cluster carries; None for a subject that
    /// is not a topic subject of this cluster or is not well formed.
    pub fn topic_of(&self, subject: &str) -> Option<String> {
        let rest = subject.strip_prefix(&self.prefix)?;
        let (dollar, tokens) = match rest.strip_prefix(TOPICS) {
            Some(t) => (false, t),
            None => (true, rest.strip_prefix(DOLLAR)?),
        };
        let mut topic = String::with_capacity(tokens.len());
        for (i, token) in tokens.split('.').enumerate() {
            if i > 0 {
                topic.push('/');
            }
            unescape_level(token, &mut topic)?;
        }
        // The subtree must agree with the topic, or a `$`-topic could be
        // delivered to `#` subscribers of another node.
        (topic.starts_with('$') == dollar).then_some(topic)
    }
}

/// Whether `c` cannot travel in a NATS token as it is.
fn needs_escape(c: char) -> bool {
    matches!(c, '.' | '*' | '>' | '%' | ' ' | '\u{7f}') || c.is_ascii_control()
}

fn push_level(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push('%');
        return;
    }
    for c in level.chars() {
        if needs_escape(c) {
            // ASCII only: one byte.
            let b = c as u32;
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        } else {
            out.push(c);
        }
    }
}

fn hex_digit(n: u32) -> char {
    char::from_digit(n, 16).map_or('0', |c| c.to_ascii_uppercase())
}

/// Append the MQTT level of one token; None if the token is not one
/// [`push_level`] writes.
fn unescape_level(token: &str, out: &mut String) -> Option<()> {
    if token == "%" {
        return Some(());
    }
    if token.is_empty() {
        return None;
    }
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            if needs_escape(c) {
                return None;
            }
            out.push(c);
            continue;
        }
        let hi = upper_hex(chars.next()?)?;
        let lo = upper_hex(chars.next()?)?;
        let c = char::from_u32(hi << 4 | lo)?;
        // Only what push_level escapes: one subject per topic.
        if !needs_escape(c) {
            return None;
        }
        out.push(c);
    }
    Some(())
}

/// A hex digit as push_level writes it (upper case).
fn upper_hex(c: char) -> Option<u32> {
    if c.is_ascii_lowercase() {
        return None;
    }
    c.to_digit(16)
}

#[cfg(test)]
#[path = "subject_tests.rs"]
mod tests;
