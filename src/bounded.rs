//! A map with a hard bound that forgets the least recently used entries.
//!
//! Every in-memory table keyed by something a caller controls (a token id, a
//! client address, an OAuth client) is one of these, so no flood of made-up
//! keys can grow memory without bound, and a full table drops its stalest
//! entries one at a time instead of everything at once.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

pub struct BoundedMap<K: Hash + Eq, V> {
    entries: Mutex<LruCache<K, V>>,
}

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self { entries: Mutex::new(LruCache::new(capacity)) }
    }

    /// The table itself, for a read-modify-write under one lock. A panic
    /// while it was held leaves plain data behind; keep using it.
    pub fn lock(&self) -> MutexGuard<'_, LruCache<K, V>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get_cloned(&self, key: &K) -> Option<V>
    where
        V: Clone,
    {
        self.lock().get(key).cloned()
    }

    /// Inserts or replaces; past the bound the least recently used entry goes.
    pub fn put(&self, key: K, value: V) {
        self.lock().put(key, value);
    }

    pub fn remove(&self, key: &K) -> Option<V> {
        self.lock().pop(key)
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.lock().cap().get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_keys_keeps_the_bound_and_the_recently_used_entries() {
        let map = BoundedMap::new(100);
        map.put("kept".to_owned(), 0);
        for i in 0..10_000 {
            map.put(format!("flood-{i}"), i);
            // The holder keeps using its entry while the flood goes on.
            assert_eq!(map.lock().get("kept"), Some(&0));
        }
        assert_eq!(map.len(), 100);
        assert_eq!(map.get_cloned(&"flood-9999".to_owned()), Some(9999));
        assert_eq!(map.get_cloned(&"flood-0".to_owned()), None, "the stalest entries went first");
    }
}
