//! Bounded, generation-tagged TTL caches: verified certificates and tokens by credential digest,
//! decisions by a keyed digest of the Cedar query. A snapshot swap bumps the generation, which
//! makes every older entry a miss without a global lock or a sweep.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use siphasher::sip128::{Hasher128, SipHasher24};

use crate::identity::cert::VerifiedCert;
use crate::identity::token::VerifiedToken;
use crate::mapping::Query;
use crate::metrics::Metrics;
use crate::policy::Decision;

/// SHA-256 of a raw credential: a collision-resistant key, so a cached result can never be
/// reached with a different credential.
pub type Digest = [u8; 32];

/// A keyed 128-bit digest of a Cedar query. SipHash-2-4 is a PRF: without the per-process
/// key, a caller cannot craft two queries with the same digest, and accidental collisions
/// need ~2^64 distinct queries. A decision entry costs a few hundred bytes instead of the ~2 KB
/// the whole query (context strings included) took as the key.
pub type QueryDigest = u128;

/// The three hot-path caches.
#[derive(Debug)]
pub struct Caches {
    /// Verified client certificates.
    pub certs: TtlCache<Digest, Arc<VerifiedCert>>,
    /// Verified bearer tokens.
    pub tokens: TtlCache<Digest, Arc<VerifiedToken>>,
    /// Policy decisions, by [`Caches::query_digest`].
    pub decisions: TtlCache<QueryDigest, Arc<Decision>>,
    /// The secret key of [`Caches::query_digest`].
    query_key: (u64, u64),
}

impl Caches {
    /// Caches holding at most `capacity` entries each, for at most `ttl_seconds`.
    pub fn new(capacity: usize, ttl_seconds: i64, metrics: Metrics) -> Self {
        Self {
            certs: TtlCache::new("certificate", capacity, ttl_seconds, metrics.clone()),
            tokens: TtlCache::new("token", capacity, ttl_seconds, metrics.clone()),
            decisions: TtlCache::new("decision", capacity, ttl_seconds, metrics),
            query_key: random_key(),
        }
    }

    /// The decision-cache key of `query`. `Query`'s derived `Hash` is an unambiguous encoding
    /// (strings end in 0xFF, which UTF-8 never contains; sequences and options are prefixed).
    pub fn query_digest(&self, query: &Query) -> QueryDigest {
        let mut hasher = SipHasher24::new_with_keys(self.query_key.0, self.query_key.1);
        query.hash(&mut hasher);
        hasher.finish128().as_u128()
    }
}

/// 128 bits from the operating system's CSPRNG. Should it ever fail, a key from the standard
/// library's randomly seeded hasher (itself seeded from the OS) keeps digests unpredictable.
fn random_key() -> (u64, u64) {
    let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
    if aws_lc_rs::rand::fill(&mut a)
        .and(aws_lc_rs::rand::fill(&mut b))
        .is_err()
    {
        let state = std::collections::hash_map::RandomState::new();
        let half = |i: u64| {
            let mut h = std::hash::BuildHasher::build_hasher(&state);
            h.write_u64(i);
            h.finish()
        };
        return (half(0), half(1));
    }
    (u64::from_ne_bytes(a), u64::from_ne_bytes(b))
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
    /// Set while one thread makes room, so others skip caching instead of sweeping too.
    sweeping: AtomicBool,
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
            sweeping: AtomicBool::new(false),
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

    /// Stores `value` until the earlier of `valid_until` and the TTL. A full cache first makes
    /// room (see [`Self::make_room`]); while another thread does, the value is simply not
    /// cached. The map holds at most `capacity` entries plus one per concurrent inserter.
    pub fn insert(&self, key: K, value: V, generation: u64, now: i64, valid_until: i64) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity && !self.make_room(generation, now) {
            return;
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

    /// Drops stale and expired entries; if more than three quarters of the capacity is still
    /// held, also evenly spaced live entries (in the map's randomly seeded hash order, so this
    /// is random eviction) down to that. A flood of distinct keys costs a sweep every
    /// `capacity / 4` inserts, shard by shard, never a pause that empties the whole cache.
    /// Returns false when another thread is already sweeping.
    fn make_room(&self, generation: u64, now: i64) -> bool {
        if self.sweeping.swap(true, Ordering::Acquire) {
            return false;
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
        self.metrics.cache_evicted(self.name, evicted);
        true
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
        c.insert(100, 100, 1, 100, 1000);
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

    fn query() -> Query {
        use crate::identity::AccessMode;
        use crate::mapping::Resource;
        use crate::mapping::context::{ContextFacts, RequestFacts};
        Query {
            principal: "orders".into(),
            action: "read".into(),
            resource: Resource {
                type_name: "Order".into(),
                id: "1".into(),
                attrs: Vec::new(),
            },
            context: ContextFacts {
                access_mode: AccessMode::AppOnly,
                user: None,
                certificate: None,
                token: None,
                request: RequestFacts {
                    method: "GET".into(),
                    path: "/orders/1".into(),
                    host: "shop".into(),
                    source_ip: None,
                },
            },
        }
    }

    #[test]
    fn query_digests_are_keyed_and_distinguish_queries() {
        let a = Caches::new(1, 1, Metrics);
        let b = Caches::new(1, 1, Metrics);
        let q = query();
        let mut other = q.clone();
        other.principal.push('x');
        assert_eq!(a.query_digest(&q), a.query_digest(&q.clone()));
        assert_ne!(a.query_digest(&q), a.query_digest(&other));
        assert_ne!(a.query_digest(&q), b.query_digest(&q), "a per-process key");
    }

    #[test]
    fn zero_capacity_disables() {
        let c = cache(0);
        c.insert(1, 1, 1, 0, 10);
        assert!(c.is_empty());
    }
}
