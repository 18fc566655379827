//! A map with hard bounds, in entries **and** in bytes, that forgets the
//! least recently used entries.
//!
//! Every in-memory table keyed by something a caller controls (a token id, a
//! client address, an OAuth client, a user agent, a log filter) is one of
//! these, so no flood of made-up keys can grow memory without bound: a key
//! heavier than the table's `key_bytes` is refused before it is stored, and
//! a full table drops its stalest entries one at a time instead of
//! everything at once. Keys are weighed by [`Weigh`]; a value counts its
//! inline size (values are built by keygate, never sized by a caller).

use std::borrow::Borrow;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

/// The bytes a key holds, inline and on the heap.
pub trait Weigh {
    fn weight(&self) -> usize;
}

macro_rules! inline_weight {
    ($($t:ty),*) => { $(impl Weigh for $t { fn weight(&self) -> usize { std::mem::size_of::<Self>() } })* };
}
inline_weight!(u8, u16, u32, u64, i32, i64, usize, bool, IpAddr, [u8; 32]);

impl Weigh for String {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>() + self.capacity()
    }
}

impl<T: Weigh> Weigh for Option<T> {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>() + self.as_ref().map_or(0, |t| t.weight().saturating_sub(std::mem::size_of::<T>()))
    }
}

impl<A: Weigh, B: Weigh> Weigh for (A, B) {
    fn weight(&self) -> usize {
        self.0.weight() + self.1.weight()
    }
}

/// A table's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub entries: usize,
    /// Keys and values together, as [`Weigh`] and `size_of` count them.
    pub bytes: usize,
    /// The heaviest key stored; heavier ones are refused.
    pub key_bytes: usize,
}

impl Bounds {
    /// `entries` keys of at most `key_bytes` each: the byte bound is what
    /// that many of the heaviest keys and their values take.
    pub fn of<K, V>(entries: usize, key_bytes: usize) -> Self {
        let entry = key_bytes + std::mem::size_of::<V>();
        Self { entries, bytes: entries.saturating_mul(entry), key_bytes }
    }
}

pub struct BoundedMap<K: Hash + Eq, V> {
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K: Hash + Eq, V> {
    lru: LruCache<K, V>,
    bytes: usize,
    bounds: Bounds,
}

/// The key was heavier than the table takes: nothing was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTooLarge;

impl<K: Hash + Eq + Weigh, V> BoundedMap<K, V> {
    /// At most `capacity` entries of keys up to 256 bytes: for tables keyed by
    /// fixed-size or already-parsed values (addresses, ids).
    pub fn new(capacity: usize) -> Self {
        Self::with_bounds(Bounds::of::<K, V>(capacity, 256))
    }

    pub fn with_bounds(bounds: Bounds) -> Self {
        let lru = LruCache::new(NonZeroUsize::new(bounds.entries).unwrap_or(NonZeroUsize::MIN));
        Self { inner: Mutex::new(Inner { lru, bytes: 0, bounds }) }
    }

    /// The table itself, for a read-modify-write under one lock. A panic
    /// while it was held leaves plain data behind; keep using it.
    pub fn lock(&self) -> Table<'_, K, V> {
        Table(self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub fn get_cloned(&self, key: &K) -> Option<V>
    where
        V: Clone,
    {
        self.lock().get(key).cloned()
    }

    /// Inserts or replaces; past a bound the least recently used entries go.
    pub fn put(&self, key: K, value: V) -> Result<(), KeyTooLarge> {
        self.lock().put(key, value).map(drop)
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

    /// The bytes the entries take now, as the bound counts them.
    pub fn bytes(&self) -> usize {
        self.lock().0.bytes
    }

    pub fn bounds(&self) -> Bounds {
        self.lock().0.bounds
    }
}

/// The locked table.
pub struct Table<'a, K: Hash + Eq, V>(MutexGuard<'a, Inner<K, V>>);

fn weight_of<K: Weigh, V>(key: &K) -> usize {
    key.weight() + std::mem::size_of::<V>()
}

impl<K: Hash + Eq + Weigh, V> Table<'_, K, V> {
    pub fn get<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.0.lru.get(key)
    }

    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.0.lru.get_mut(key)
    }

    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.lru.contains(key)
    }

    /// Inserts or replaces `key`; returns the entries pushed out to stay
    /// within the bounds (the replaced value is not among them).
    pub fn put(&mut self, key: K, value: V) -> Result<Vec<(K, V)>, KeyTooLarge> {
        let weight = weight_of::<K, V>(&key);
        if key.weight() > self.0.bounds.key_bytes {
            return Err(KeyTooLarge);
        }
        let inner = &mut *self.0;
        let existed = inner.lru.contains(&key);
        let mut pushed_out = Vec::new();
        inner.bytes += weight;
        // `push` hands back the replaced pair, or the entry evicted for room.
        if let Some((old_key, old_value)) = inner.lru.push(key, value) {
            inner.bytes -= weight_of::<K, V>(&old_key);
            if !existed {
                pushed_out.push((old_key, old_value));
            }
        }
        while inner.lru.len() > inner.bounds.entries || inner.bytes > inner.bounds.bytes {
            let Some((key, value)) = inner.lru.pop_lru() else { break };
            inner.bytes -= weight_of::<K, V>(&key);
            pushed_out.push((key, value));
        }
        Ok(pushed_out)
    }

    /// The entry for `key`, made with `make` if absent; `None` when the key
    /// is too heavy to store.
    pub fn get_or_insert_mut(&mut self, key: K, make: impl FnOnce() -> V) -> Option<&mut V>
    where
        K: Clone,
    {
        if !self.0.lru.contains(&key) {
            self.put(key.clone(), make()).ok()?;
        }
        self.0.lru.get_mut(&key)
    }

    pub fn pop<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let (key, value) = self.0.lru.pop_entry(key)?;
        self.0.bytes -= weight_of::<K, V>(&key);
        Some(value)
    }

    pub fn clear(&mut self) {
        self.0.lru.clear();
        self.0.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.0.lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.lru.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.lru.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.0.lru.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_keys_keeps_the_bound_and_the_recently_used_entries() {
        let map = BoundedMap::new(100);
        map.put("kept".to_owned(), 0).unwrap();
        for i in 0..10_000 {
            map.put(format!("flood-{i}"), i).unwrap();
            // The holder keeps using its entry while the flood goes on.
            assert_eq!(map.lock().get(&"kept".to_owned()), Some(&0));
        }
        assert_eq!(map.len(), 100);
        assert_eq!(map.get_cloned(&"flood-9999".to_owned()), Some(9999));
        assert_eq!(map.get_cloned(&"flood-0".to_owned()), None, "the stalest entries went first");
    }

    #[test]
    fn a_flood_of_long_keys_is_bounded_in_bytes_and_impossible_keys_are_refused() {
        let bounds = Bounds { entries: 1_000_000, bytes: 64 * 1024, key_bytes: 4096 };
        let map: BoundedMap<String, u64> = BoundedMap::with_bounds(bounds);
        for i in 0..5_000 {
            // 2 KiB keys: a million of them would be 2 GiB.
            map.put(format!("{i:0>2000}"), i).unwrap();
            assert!(map.bytes() <= bounds.bytes, "{} bytes", map.bytes());
        }
        assert!(map.len() < 40, "{} entries of 2 KiB in 64 KiB", map.len());
        assert_eq!(map.put("x".repeat(240_000), 1), Err(KeyTooLarge));
        assert!(map.lock().iter().all(|(k, _)| k.len() == 2000), "the heavy key was never stored");
        let before = map.bytes();
        map.remove(&format!("{:0>2000}", 4_999));
        assert_eq!(map.bytes(), before - weight_of::<String, u64>(&format!("{:0>2000}", 4_999)));
        map.clear();
        assert_eq!((map.len(), map.bytes()), (0, 0));
    }

    #[test]
    fn replacing_a_value_keeps_the_count_exact() {
        let map: BoundedMap<String, u32> = BoundedMap::new(10);
        map.put("a".into(), 1).unwrap();
        let once = map.bytes();
        map.put("a".into(), 2).unwrap();
        assert_eq!(map.bytes(), once);
        assert_eq!(map.lock().get_or_insert_mut("b".into(), || 3).copied(), Some(3));
        assert_eq!(map.lock().pop("a"), Some(2));
        assert_eq!(map.bytes(), weight_of::<String, u32>(&"b".to_owned()));
    }
}
