//! A bounded, generation-tagged TTL cache. A snapshot swap bumps the generation, which makes
//! every older entry a miss without a global lock or a sweep. It knows nothing of what it
//! holds: callers choose the keys (digests of credentials or queries) and count the hits.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;

/// What [`TtlCache::get_or_try_insert`] did, for the caller's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// The value came from the cache.
    pub hit: bool,
    /// Entries dropped to make room for the new one.
    pub evicted: usize,
}

impl Lookup {
    /// Found in the cache.
    pub const HIT: Self = Self {
        hit: true,
        evicted: 0,
    };

    /// Not found; inserting the new value dropped `evicted` entries.
    pub fn miss(evicted: usize) -> Self {
        Self {
            hit: false,
            evicted,
        }
    }
}

/// A concurrent map whose entries carry the snapshot generation and an expiry.
#[derive(Debug)]
pub struct TtlCache<K: Eq + Hash, V> {
    /// foldhash: keys are digests already (uniformly distributed, not chosen by a client), so
    /// the map needs speed, not a keyed hash. Equality is always checked on the full key.
    map: DashMap<K, Entry<V>, foldhash::fast::RandomState>,
    capacity: usize,
    /// Set while one thread makes room, so others skip caching instead of sweeping too.
    sweeping: AtomicBool,
    ttl_seconds: i64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    generation: u64,
    expires_at: i64,
}

// === impl TtlCache ===

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// An empty cache; `capacity` 0 disables caching.
    pub fn new(capacity: usize, ttl_seconds: i64) -> Self {
        Self {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            capacity,
            sweeping: AtomicBool::new(false),
            ttl_seconds,
        }
    }

    /// The cached value for `key`, or `make`'s, cached until the earlier of the validity
    /// `make` returns and the TTL. An error is returned as is and caches nothing.
    pub fn get_or_try_insert<E>(
        &self,
        key: K,
        generation: u64,
        now: i64,
        make: impl FnOnce() -> Result<(V, i64), E>,
    ) -> Result<(V, Lookup), E> {
        self.get_or_try_insert_until(key, generation, now, make)
            .map(|(value, lookup, _)| (value, lookup))
    }

    /// [`Self::get_or_try_insert`], also saying until when the value may be used: the
    /// entry's expiry, so a copy kept elsewhere (a per-thread memo) lives no longer.
    pub fn get_or_try_insert_until<E>(
        &self,
        key: K,
        generation: u64,
        now: i64,
        make: impl FnOnce() -> Result<(V, i64), E>,
    ) -> Result<(V, Lookup, i64), E> {
        if let Some((hit, expires_at)) = self.get_until(&key, generation, now) {
            return Ok((hit, Lookup::HIT, expires_at));
        }
        let (value, valid_until) = make()?;
        let evicted = self.insert(key, value.clone(), generation, now, valid_until);
        Ok((value, Lookup::miss(evicted), self.expiry(now, valid_until)))
    }

    /// The value for `key` if it was stored under `generation` and has not expired at `now`.
    pub fn get<Q>(&self, key: &Q, generation: u64, now: i64) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_until(key, generation, now).map(|(value, _)| value)
    }

    /// When an entry stored at `now` for a value good until `valid_until` expires: the
    /// earlier of that and the TTL.
    pub fn expiry(&self, now: i64, valid_until: i64) -> i64 {
        valid_until.min(now.saturating_add(self.ttl_seconds))
    }

    /// [`Self::get`], with the entry's expiry.
    pub fn get_until<Q>(&self, key: &Q, generation: u64, now: i64) -> Option<(V, i64)>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map
            .get(key)
            .filter(|e| e.generation == generation && e.expires_at > now)
            .map(|e| (e.value.clone(), e.expires_at))
    }

    /// Stores `value` until the earlier of `valid_until` and the TTL. A full cache first makes
    /// room (see [`Self::make_room`]); while another thread does, the value is simply not
    /// cached. The map holds at most `capacity` entries plus one per concurrent inserter.
    /// Returns how many entries were dropped to make room.
    pub fn insert(&self, key: K, value: V, generation: u64, now: i64, valid_until: i64) -> usize {
        if self.capacity == 0 {
            return 0;
        }
        let mut evicted = 0;
        if self.map.len() >= self.capacity {
            match self.make_room(generation, now) {
                Some(dropped) => evicted = dropped,
                None => return 0,
            }
        }
        let expires_at = self.expiry(now, valid_until);
        self.map.insert(
            key,
            Entry {
                value,
                generation,
                expires_at,
            },
        );
        evicted
    }

    /// Drops stale and expired entries; if more than three quarters of the capacity is still
    /// held, also evenly spaced live entries (in the map's randomly seeded hash order, so this
    /// is random eviction) down to that. A flood of distinct keys costs a sweep every
    /// `capacity / 4` inserts, shard by shard, never a pause that empties the whole cache.
    /// Returns how many entries went, or `None` when another thread is already sweeping.
    fn make_room(&self, generation: u64, now: i64) -> Option<usize> {
        if self.sweeping.swap(true, Ordering::Acquire) {
            return None;
        }
        let before = self.map.len();
        self.map
            .retain(|_, e| e.generation == generation && e.expires_at > now);
        let target = (self.capacity - self.capacity / 4).saturating_sub(1);
        let held = self.map.len();
        if held > target {
            let mut excess = held - target;
            let stride = held.div_ceil(excess);
            let mut seen = 0usize;
            self.map.retain(|_, _| {
                seen += 1;
                let drop = excess > 0 && seen.is_multiple_of(stride);
                excess -= usize::from(drop);
                !drop
            });
        }
        let evicted = before.saturating_sub(self.map.len());
        self.sweeping.store(false, Ordering::Release);
        Some(evicted)
    }

    /// Entries currently held (including stale ones not yet dropped).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: usize) -> TtlCache<u32, u32> {
        TtlCache::new(capacity, 60)
    }

    #[test]
    fn respects_generation_and_expiry() {
        let c = cache(10);
        c.insert(1, 10, 1, 100, 130);
        assert_eq!(c.get(&1, 1, 100), Some(10));
        assert_eq!(c.get(&1, 2, 100), None, "new generation misses");
        assert_eq!(
            c.get(&1, 1, 130),
            None,
            "credential expiry bounds the entry"
        );
        c.insert(2, 20, 1, 100, i64::MAX);
        assert_eq!(c.get(&2, 1, 159), Some(20));
        assert_eq!(c.get(&2, 1, 160), None, "ttl bounds the entry");
    }

    #[test]
    fn stays_bounded_under_a_flood() {
        for capacity in [1, 2, 3, 64] {
            let c = cache(capacity);
            for k in 0..10_000 {
                c.insert(k, k, 1, 100, 1000);
                assert!(c.len() <= capacity, "capacity {capacity}");
            }
            assert_eq!(c.get(&9_999, 1, 100), Some(9_999), "the newest is held");
        }
    }

    #[test]
    fn a_full_cache_evicts_a_quarter_not_everything() {
        let c = cache(100);
        for k in 0..100 {
            c.insert(k, k, 1, 100, 1000);
        }
        assert_eq!(c.insert(100, 100, 1, 100, 1000), 25, "a quarter made room");
        assert_eq!(c.len(), 76, "75 survivors and the new entry");
        assert_eq!(c.get(&100, 1, 100), Some(100));
    }

    #[test]
    fn stale_entries_go_first() {
        let c = cache(100);
        for k in 0..50 {
            c.insert(k, k, 1, 100, 1000);
        }
        for k in 50..100 {
            c.insert(k, k, 2, 100, 1000);
        }
        c.insert(100, 100, 2, 100, 1000);
        assert_eq!(c.len(), 51, "only the old generation was dropped");
        assert!((50..=100).all(|k| c.get(&k, 2, 100).is_some()));
    }

    #[test]
    fn get_or_try_insert_computes_once_and_reports() {
        let c = cache(10);
        let made = c.get_or_try_insert(1, 1, 100, || Ok::<_, ()>((10, 1000)));
        assert_eq!(
            made,
            Ok((
                10,
                Lookup {
                    hit: false,
                    evicted: 0
                }
            ))
        );
        let again = c.get_or_try_insert(1, 1, 100, || Err(()));
        assert_eq!(
            again,
            Ok((
                10,
                Lookup {
                    hit: true,
                    evicted: 0
                }
            ))
        );
        assert_eq!(c.get_or_try_insert(2, 1, 100, || Err("bad")), Err("bad"));
        assert_eq!(c.get(&2, 1, 100), None, "an error caches nothing");
    }

    #[test]
    fn zero_capacity_disables() {
        let c = cache(0);
        c.insert(1, 1, 1, 0, 10);
        assert!(c.is_empty());
    }
}
