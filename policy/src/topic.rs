//! Topic algebra: validation of topic names and filters, matching, and the
//! `covers`/`overlaps` relations used by subscribe decisions.
//!
//! The `$` rule (MQTT 3.1.1 §4.7.2) lives here: a filter whose first level is
//! `+` or `#` never matches a topic whose first level starts with `$`.

use serde::{Deserialize, Serialize};

use crate::error::TopicError;

const MAX_LEN: usize = 65_535;

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullChar);
    }
    Ok(())
}

/// Validates a topic name (as in PUBLISH). Does not allocate.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_LEN {
        return Err(TopicError::TooLong);
    }
    // One pass for both checks: this runs on every publish and delivery.
    for b in topic.bytes() {
        match b {
            0 => return Err(TopicError::NullChar),
            b'+' | b'#' => return Err(TopicError::WildcardInTopic),
            _ => {}
        }
    }
    Ok(())
}

/// Validates a topic filter (as in SUBSCRIBE). Does not allocate.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(TopicError::MisplacedMultiLevel);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevel);
        }
    }
    Ok(())
}

fn is_dollar(level: &str) -> bool {
    level.starts_with('$')
}

/// Does `filter` match `topic`? Both are assumed valid. Does not allocate.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    let mut first = true;
    loop {
        match (f.next(), t.next()) {
            (Some("#"), Some(tl)) => return !(first && is_dollar(tl)),
            // "a/#" matches "a": '#' also matches the parent level.
            (Some("#"), None) => return true,
            (Some("+"), Some(tl)) => {
                if first && is_dollar(tl) {
                    return false;
                }
            }
            (Some(fl), Some(tl)) => {
                if fl != tl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// True when `rest` (the remaining levels of a filter) is exactly `#`.
fn rest_is_hash(mut rest: std::str::Split<'_, char>) -> bool {
    matches!((rest.next(), rest.next()), (Some("#"), None))
}

/// Does `outer` match every topic that `inner` can match? Both assumed valid.
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    let mut first = true;
    // True while the inner levels consumed so far can only form the empty
    // string, which is not a valid topic.
    let mut empty_prefix = true;
    loop {
        match (o.next(), i.next()) {
            (Some("#"), Some(l)) => return !(first && is_dollar(l)),
            (Some("#"), None) | (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some("+"), Some("#")) => {
                // "a/#" also matches "a", which "a/+/#" does not; but when the
                // parent would be the empty topic ("#", "/#") it is no topic,
                // so "+/#" covers "#" and "/+/#" covers "/#".
                return empty_prefix && rest_is_hash(o);
            }
            (Some("+"), Some(l)) => {
                if first && is_dollar(l) {
                    return false;
                }
                empty_prefix = first && l.is_empty();
            }
            (Some(ol), Some(il)) => {
                if ol != il {
                    return false;
                }
                empty_prefix = first && il.is_empty();
            }
        }
        first = false;
    }
}

/// Is there a topic matched by both filters? Both assumed valid.
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let mut x = a.split('/');
    let mut y = b.split('/');
    let mut first = true;
    // True while the common prefix can only be the empty string, which is
    // not a topic: "/#" and "+" share only "", so they do not overlap.
    let mut empty_prefix = false;
    loop {
        match (x.next(), y.next()) {
            (Some("#"), Some(l)) | (Some(l), Some("#")) => return !(first && is_dollar(l)),
            // One filter ended; "a" and "a/#" share the topic "a".
            (None, Some("#")) | (Some("#"), None) => return !empty_prefix,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some("+"), Some(l)) | (Some(l), Some("+")) => {
                if first && is_dollar(l) {
                    return false;
                }
                empty_prefix = first && l.is_empty();
            }
            (Some(l), Some(m)) => {
                if l != m {
                    return false;
                }
                empty_prefix = first && l.is_empty();
            }
        }
        first = false;
    }
}

/// A valid topic name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Topic(String);

impl Topic {
    pub fn parse(s: &str) -> Result<Topic, TopicError> {
        validate_topic(s)?;
        Ok(Topic(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid topic filter (may contain `+` and `#`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicFilter(String);

impl TopicFilter {
    pub fn parse(s: &str) -> Result<TopicFilter, TopicError> {
        validate_filter(s)?;
        Ok(TopicFilter(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does this filter match `topic`? `topic` is assumed to be a valid topic name.
    pub fn matches(&self, topic: &str) -> bool {
        topic_matches(&self.0, topic)
    }

    /// Does this filter match every topic that `other` can match?
    pub fn covers(&self, other: &TopicFilter) -> bool {
        filter_covers(&self.0, &other.0)
    }

    /// Is there at least one topic that both filters match?
    pub fn overlaps(&self, other: &TopicFilter) -> bool {
        filters_overlap(&self.0, &other.0)
    }
}

/// A SUBSCRIBE filter, with the `$share/<group>/` prefix split off.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionFilter {
    pub share_group: Option<String>,
    pub filter: TopicFilter,
}

impl SubscriptionFilter {
    /// Parses `a/+` or `$share/group/a/+`.
    pub fn parse(s: &str) -> Result<SubscriptionFilter, TopicError> {
        let Some(rest) = s.strip_prefix("$share/") else {
            return Ok(SubscriptionFilter {
                share_group: None,
                filter: TopicFilter::parse(s)?,
            });
        };
        let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidShare)?;
        if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
            return Err(TopicError::InvalidShare);
        }
        check_common(s)?;
        Ok(SubscriptionFilter {
            share_group: Some(group.to_owned()),
            filter: TopicFilter::parse(filter)?,
        })
    }
}

macro_rules! string_conversions {
    ($ty:ident) => {
        impl TryFrom<String> for $ty {
            type Error = TopicError;
            fn try_from(s: String) -> Result<Self, TopicError> {
                $ty::parse(&s)
            }
        }
        impl From<$ty> for String {
            fn from(t: $ty) -> String {
                t.0
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = TopicError;
            fn from_str(s: &str) -> Result<Self, TopicError> {
                $ty::parse(s)
            }
        }
    };
}
string_conversions!(Topic);
string_conversions!(TopicFilter);

#[cfg(test)]
#[path = "topic_tests.rs"]
mod tests;
