//! One lock per chart version, so two pushes of the same version into an
//! immutable repository through this process run one after the other: the
//! second checks for the version only once the first has been answered.
//! Replicas do not share these locks (docs/SECURITY.md says what that
//! leaves open).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// Locks by key; a key's entry lives only while someone holds or awaits it.
#[derive(Debug, Default)]
pub struct Locks {
    slots: Mutex<HashMap<String, Slot>>,
}

/// A held lock, released when dropped.
#[derive(Debug)]
pub struct Held<'a> {
    locks: &'a Locks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Locks {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for and takes the lock on `key`.
    pub async fn lock(&self, key: String) -> Held<'_> {
        let slot = self.slots().entry(key.clone()).or_default().clone();
        let guard = slot.lock_owned().await;
        Held {
            locks: self,
            key,
            guard: Some(guard),
        }
    }

    /// How many keys have an entry (tests check they are removed).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots().len()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut slots = self.locks.slots();
        // Only the map's own reference left: nobody holds or awaits it.
        if slots
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_holder_per_key_and_entries_are_removed() {
        let locks = Arc::new(Locks::default());
        let first = locks.lock("a".into()).await;
        let other = locks.lock("b".into()).await;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _held = l2.lock("a".into()).await;
            let _ = tx.send(());
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "a second holder got the lock");
        drop(first);
        waiter.await.unwrap();
        assert!(rx.try_recv().is_ok());
        drop(other);
        assert_eq!(locks.len(), 0);
    }
}
