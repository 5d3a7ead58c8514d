//! The pipeline's caches: verified credentials (owned by `identity`) and decisions, keyed by a
//! keyed digest of the Cedar query.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use siphasher::sip128::{Hasher128, SipHasher24};

use crate::cache::TtlCache;
use crate::identity::IdentityCaches;
use crate::mapping::Query;
use crate::metrics::CacheMetrics;
use crate::policy::Decision;

/// A keyed 128-bit digest of a Cedar query. SipHash-2-4 is a PRF: without the per-process
/// key, a caller cannot craft two queries with the same digest, and accidental collisions
/// need ~2^64 distinct queries. A decision entry costs a few hundred bytes instead of the ~2 KB
/// the whole query (context strings included) took as the key.
pub type QueryDigest = u128;

/// The three hot-path caches.
#[derive(Debug)]
pub struct Caches {
    /// Verified client certificates and bearer tokens.
    pub identity: IdentityCaches,
    /// Policy decisions, by [`Caches::query_digest`].
    pub decisions: TtlCache<QueryDigest, Arc<Decision>>,
    /// The secret key of [`Caches::query_digest`].
    query_key: (u64, u64),
    /// The decision cache's lookups.
    pub decision_metrics: CacheMetrics,
}

impl Caches {
    /// Caches holding at most `capacity` entries each, for at most `ttl_seconds`.
    pub fn new(capacity: usize, ttl_seconds: i64) -> Self {
        Self {
            identity: IdentityCaches::new(capacity, ttl_seconds),
            decisions: TtlCache::new(capacity, ttl_seconds),
            query_key: random_key(),
            decision_metrics: CacheMetrics::new("decision"),
        }
    }

    /// Caches that hold nothing: every request is decided from scratch (`tollgate check`).
    pub fn disabled() -> Self {
        Self::new(0, 0)
    }

    /// The decision-cache key of `query`. `Query`'s derived `Hash` is an unambiguous encoding
    /// (strings end in 0xFF, which UTF-8 never contains; sequences and options are prefixed).
    /// The encoding is gathered into a per-thread buffer and digested in one call: SipHash
    /// fed field by field pays its buffering on each of the query's few dozen short writes.
    pub fn query_digest(&self, query: &Query) -> QueryDigest {
        /// The buffer keeps its capacity between queries, up to this many bytes.
        const KEPT_CAPACITY: usize = 16 * 1024;
        thread_local! {
            static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let digest = |bytes: &[u8]| {
            let mut hasher = SipHasher24::new_with_keys(self.query_key.0, self.query_key.1);
            hasher.write(bytes);
            hasher.finish128().as_u128()
        };
        let own = || {
            let mut own = Vec::new();
            query.hash(&mut Gather(&mut own));
            digest(&own)
        };
        // Without the buffer (in use further up this thread, or already torn down at thread
        // exit), a buffer of its own.
        ENCODED
            .try_with(|cell| {
                let Ok(mut buffer) = cell.try_borrow_mut() else {
                    return own();
                };
                buffer.clear();
                query.hash(&mut Gather(&mut buffer));
                let key = digest(&buffer);
                if buffer.capacity() > KEPT_CAPACITY {
                    *buffer = Vec::new();
                }
                key
            })
            .unwrap_or_else(|_| own())
    }
}

/// A `Hasher` that only gathers the bytes it is fed.
struct Gather<'a>(&'a mut Vec<u8>);

impl Hasher for Gather<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn finish(&self) -> u64 {
        0
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Review finding: the digest's per-thread buffer was reached with `LocalKey::with`, which
    /// panics once the thread's storage is torn down.
    #[test]
    fn a_digest_after_the_buffer_is_torn_down_is_still_the_digest() {
        struct Late(std::sync::Arc<Caches>, u128);
        impl Drop for Late {
            fn drop(&mut self) {
                assert_eq!(self.0.query_digest(&query()), self.1);
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
        }
        let caches = std::sync::Arc::new(Caches::new(1, 1));
        let expected = caches.query_digest(&query());
        let ended = std::thread::spawn(move || {
            // Destructors run in reverse order of first use: LATE's after the buffer's.
            LATE.with(|late| *late.borrow_mut() = Some(Late(caches.clone(), expected)));
            assert_eq!(caches.query_digest(&query()), expected);
        })
        .join();
        assert!(ended.is_ok());
    }

    #[test]
    fn query_digests_are_keyed_and_distinguish_queries() {
        let a = Caches::new(1, 1);
        let b = Caches::new(1, 1);
        let q = query();
        let mut other = q.clone();
        other.principal.push('x');
        assert_eq!(a.query_digest(&q), a.query_digest(&q.clone()));
        assert_ne!(a.query_digest(&q), a.query_digest(&other));
        assert_ne!(a.query_digest(&q), b.query_digest(&q), "a per-process key");
        // Where one field ends and the next begins is part of the encoding.
        let mut moved = q.clone();
        moved.principal = "orde".into();
        moved.action = "rsread".into();
        assert_ne!(a.query_digest(&q), a.query_digest(&moved));
    }
}
