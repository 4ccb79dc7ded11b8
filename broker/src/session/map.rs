//! The broker's sessions by client id.
//!
//! A set of the sessions themselves, looked up through each one's own
//! client id: an entry is one pointer, where a map with the id as its key
//! held a second pointer to the same string (24 bytes an entry instead of
//! 8, and there is one entry per connection; `docs/benchmarks.md`).

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::session::state::Session;

/// Sessions, each under its [`Session::client_id`].
#[derive(Default)]
pub struct SessionMap(HashSet<ByClientId>);

/// A session as a set entry: equal, hashed and looked up by its client id.
struct ByClientId(Arc<Session>);

impl Borrow<str> for ByClientId {
    fn borrow(&self) -> &str {
        &self.0.client_id
    }
}

impl PartialEq for ByClientId {
    fn eq(&self, other: &Self) -> bool {
        self.0.client_id == other.0.client_id
    }
}

impl Eq for ByClientId {}

impl Hash for ByClientId {
    // As `str` hashes: `Borrow<str>` requires it.
    fn hash<H: Hasher>(&self, state: &mut H) {
        (*self.0.client_id).hash(state);
    }
}

impl SessionMap {
    pub fn get(&self, client_id: &str) -> Option<&Arc<Session>> {
        self.0.get(client_id).map(|e| &e.0)
    }

    pub fn contains_key(&self, client_id: &str) -> bool {
        self.get(client_id).is_some()
    }

    /// Put `session` under its client id (`client_id`, the same string),
    /// returning the one it replaces.
    pub fn insert(&mut self, client_id: Arc<str>, session: Arc<Session>) -> Option<Arc<Session>> {
        debug_assert_eq!(*client_id, *session.client_id);
        self.0.replace(ByClientId(session)).map(|e| e.0)
    }

    pub fn remove(&mut self, client_id: &str) -> Option<Arc<Session>> {
        self.0.take(client_id).map(|e| e.0)
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.0.iter().map(|e| &e.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<ByClientId>(),
            std::mem::size_of::<usize>()
        );
    }
}
