//! Bounded, generation-tagged TTL caches: verified certificates and tokens by credential digest,
//! decisions by the full Cedar query. A snapshot swap bumps the generation, which makes every
//! older entry a miss without a global lock or a sweep.

use std::hash::Hash;
use std::sync::Arc;

use dashmap::DashMap;

use crate::identity::cert::VerifiedCert;
use crate::identity::token::VerifiedToken;
use crate::mapping::Query;
use crate::metrics::Metrics;
use crate::policy::Decision;

/// SHA-256 of a raw credential: a collision-resistant key, so a cached result can never be
/// reached with a different credential.
pub type Digest = [u8; 32];

/// The three hot-path caches.
#[derive(Debug)]
pub struct Caches {
    /// Verified client certificates.
    pub certs: TtlCache<Digest, Arc<VerifiedCert>>,
    /// Verified bearer tokens.
    pub tokens: TtlCache<Digest, Arc<VerifiedToken>>,
    /// Policy decisions.
    pub decisions: TtlCache<Query, Arc<Decision>>,
}

impl Caches {
    /// Caches holding at most `capacity` entries each, for at most `ttl_seconds`.
    pub fn new(capacity: usize, ttl_seconds: i64, metrics: Metrics) -> Self {
        Self {
            certs: TtlCache::new("certificate", capacity, ttl_seconds, metrics.clone()),
            tokens: TtlCache::new("token", capacity, ttl_seconds, metrics.clone()),
            decisions: TtlCache::new("decision", capacity, ttl_seconds, metrics),
        }
    }
}

/// A concurrent map whose entries carry the snapshot generation and an expiry.
#[derive(Debug)]
pub struct TtlCache<K: Eq + Hash, V> {
    name: &'static str,
    /// foldhash instead of SipHash: a decision key is a whole query (hundreds of bytes) hashed
    /// on every request, and foldhash's per-process random seed still keeps adversarial
    /// collisions impractical. Equality is always checked on the full key.
    map: DashMap<K, Entry<V>, foldhash::fast::RandomState>,
    capacity: usize,
    ttl_seconds: i64,
    metrics: Metrics,
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
    pub fn new(name: &'static str, capacity: usize, ttl_seconds: i64, metrics: Metrics) -> Self {
        Self {
            name,
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            capacity,
            ttl_seconds,
            metrics,
        }
    }

    /// The value for `key` if it was stored under `generation` and has not expired at `now`.
    pub fn get<Q>(&self, key: &Q, generation: u64, now: i64) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hit = self
            .map
            .get(key)
            .filter(|e| e.generation == generation && e.expires_at > now)
            .map(|e| e.value.clone());
        self.metrics.cache_lookup(self.name, hit.is_some());
        hit
    }

    /// Stores `value` until the earlier of `valid_until` and the TTL. When full, drops stale
    /// and expired entries, and if that frees nothing, starts over: the bound always holds and
    /// a flood of distinct keys costs only recomputation.
    pub fn insert(&self, key: K, value: V, generation: u64, now: i64, valid_until: i64) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map
                .retain(|_, e| e.generation == generation && e.expires_at > now);
            if self.map.len() >= self.capacity {
                self.map.clear();
                self.metrics.cache_flushed(self.name);
            }
        }
        let expires_at = valid_until.min(now.saturating_add(self.ttl_seconds));
        self.map.insert(
            key,
            Entry {
                value,
                generation,
                expires_at,
            },
        );
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
        TtlCache::new("test", capacity, 60, Metrics)
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
        let c = cache(64);
        for k in 0..10_000 {
            c.insert(k, k, 1, 100, 1000);
            assert!(c.len() <= 64);
        }
        assert_eq!(c.get(&9_999, 1, 100), Some(9_999));
    }

    #[test]
    fn zero_capacity_disables() {
        let c = cache(0);
        c.insert(1, 1, 1, 0, 10);
        assert!(c.is_empty());
    }
}
