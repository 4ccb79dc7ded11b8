//! One asynchronous lock per client id, on this node: a connect holds its
//! client id's from its first look at the ownership record until its
//! session is attached, and whatever else changes who holds that client id
//! here (another node's takeover request, a claim, the record's deletion
//! when a session ends) takes it too. Between a connect's record write and
//! its attach the session is in no map yet: without the lock, a takeover
//! request answered in that window would find nothing to hand over and the
//! connection would attach afterwards, unseen (docs/cluster.md, "Sessions
//! across nodes").
//!
//! Locks live only while someone holds or waits for them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

/// The locks of the client ids someone holds or waits for.
#[derive(Debug, Default)]
pub struct Gates {
    held: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held lock; released (and forgotten when nobody waits) on drop.
#[derive(Debug)]
pub struct Gate {
    gates: Arc<Gates>,
    key: Arc<str>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Gates {
    /// Wait for `key`'s lock.
    pub async fn lock(self: &Arc<Self>, key: &str) -> Gate {
        let (mut gate, lock) = self.unlocked(key);
        // Declared after `gate`: dropped before it if this is cancelled,
        // so that the entry goes with the last waiter.
        let waiting = lock.lock_owned();
        gate.guard = Some(waiting.await);
        gate
    }

    /// Wait for `key`'s lock at most `wait`; None when it stays held.
    pub async fn lock_within(self: &Arc<Self>, key: &str, wait: Duration) -> Option<Gate> {
        let (mut gate, lock) = self.unlocked(key);
        let waiting = tokio::time::timeout(wait, lock.lock_owned());
        gate.guard = Some(waiting.await.ok()?);
        Some(gate)
    }

    /// A gate of `key` not yet held, and the lock to take.
    fn unlocked(self: &Arc<Self>, key: &str) -> (Gate, Arc<tokio::sync::Mutex<()>>) {
        let (key, lock) = self.entry(key);
        let gate = Gate {
            gates: Arc::clone(self),
            key,
            guard: None,
        };
        (gate, lock)
    }

    /// Someone holds or waits for `key`'s lock.
    pub fn is_busy(&self, key: &str) -> bool {
        self.held.lock().contains_key(key)
    }

    /// How many client ids have a lock now (for tests).
    pub fn len(&self) -> usize {
        self.held.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry(&self, key: &str) -> (Arc<str>, Arc<tokio::sync::Mutex<()>>) {
        let mut held = self.held.lock();
        if let Some((k, lock)) = held.get_key_value(key) {
            return (Arc::clone(k), Arc::clone(lock));
        }
        let key: Arc<str> = Arc::from(key);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        held.insert(Arc::clone(&key), Arc::clone(&lock));
        (key, lock)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // Released first, then forgotten if this was its last user (the
        // map's own reference is the other one).
        drop(self.guard.take());
        let mut held = self.gates.held.lock();
        if held
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_nothing_left_behind() {
        let gates = Arc::new(Gates::default());
        let a = gates.lock("a").await;
        assert!(gates.is_busy("a"));
        // Another key is independent.
        let b = gates.lock("b").await;
        drop(b);
        assert!(!gates.is_busy("b"));
        // The same key waits.
        assert!(gates
            .lock_within("a", Duration::from_millis(20))
            .await
            .is_none());
        assert!(gates.is_busy("a"), "a timed-out waiter leaves the holder's");
        let waiter = {
            let gates = Arc::clone(&gates);
            tokio::spawn(async move { gates.lock("a").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(a);
        let again = waiter.await.expect("the waiter gets it");
        assert!(gates.is_busy("a"));
        drop(again);
        assert!(gates.is_empty());
    }
}
