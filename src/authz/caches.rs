//! The pipeline's caches: verified credentials (owned by `identity`) and decisions, keyed by a
//! keyed digest of the Cedar query, with a per-thread memo in front keyed by the query's exact
//! encoding.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use siphasher::sip128::{Hasher128, SipHasher24};

use crate::cache::{Lookup, TtlCache};
use crate::identity::IdentityCaches;
use crate::mapping::Query;
use crate::memo::{self, Memo};
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
    /// This cache set's tag in the per-thread decision memo; `None` when caching is off.
    memo_owner: Option<u64>,
}

thread_local! {
    /// Decisions this thread made or fetched, each its own copy, by exact query encoding.
    static DECISIONS: RefCell<Memo<Arc<Decision>>> = const { RefCell::new(Memo::new()) };
    /// The query encoding being looked up, kept between queries (up to `KEPT_CAPACITY`).
    static ENCODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The encoding buffer keeps its capacity between queries, up to this many bytes.
const KEPT_CAPACITY: usize = 16 * 1024;

impl Caches {
    /// Caches holding at most `capacity` entries each, for at most `ttl_seconds`.
    pub fn new(capacity: usize, ttl_seconds: i64) -> Self {
        Self {
            identity: IdentityCaches::new(capacity, ttl_seconds),
            decisions: TtlCache::new(capacity, ttl_seconds),
            query_key: random_key(),
            decision_metrics: CacheMetrics::new("decision"),
            memo_owner: (capacity > 0 && ttl_seconds > 0).then(memo::next_owner),
        }
    }

    /// Caches that hold nothing: every request is decided from scratch (`tollgate check`).
    pub fn disabled() -> Self {
        Self::new(0, 0)
    }

    /// The decision for `query` under snapshot `generation` at `now` (seconds): this thread's
    /// memo, else the shared cache, else `decide`'s (cached until the TTL; an error caches
    /// nothing). A memo hit is counted as a cache hit.
    pub fn decision<E>(
        &self,
        query: &Query,
        generation: u64,
        now: i64,
        decide: impl FnOnce() -> Result<Decision, E>,
    ) -> Result<(Arc<Decision>, Lookup), E> {
        with_encoding(query, |encoded| {
            if let Some(owner) = self.memo_owner
                && let Some(hit) = memo::look(&DECISIONS, owner, generation, now, encoded)
            {
                return Ok((hit, Lookup::HIT));
            }
            let (decision, lookup, expires_at) = self.decisions.get_or_try_insert_until(
                self.digest(encoded),
                generation,
                now,
                || decide().map(|d| (Arc::new(d), i64::MAX)),
            )?;
            if let Some(owner) = self.memo_owner {
                memo::keep(&DECISIONS, owner, generation, expires_at, encoded, || {
                    Arc::new(Decision::clone(&decision))
                });
            }
            Ok((decision, lookup))
        })
    }

    /// The decision-cache key of `query`. `Query`'s derived `Hash` is an unambiguous encoding
    /// (strings end in 0xFF, which UTF-8 never contains; sequences and options are prefixed),
    /// gathered first and digested in one call: SipHash fed field by field pays its buffering
    /// on each of the query's few dozen short writes.
    pub fn query_digest(&self, query: &Query) -> QueryDigest {
        with_encoding(query, |encoded| self.digest(encoded))
    }

    fn digest(&self, encoded: &[u8]) -> QueryDigest {
        let mut hasher = SipHasher24::new_with_keys(self.query_key.0, self.query_key.1);
        hasher.write(encoded);
        hasher.finish128().as_u128()
    }
}

/// Runs `f` on `query`'s encoding, gathered in this thread's buffer: taken out while `f` runs
/// (so a nested query, or one at thread exit once the buffer is torn down, simply gathers in a
/// new one) and put back after, unless it grew past `KEPT_CAPACITY`.
fn with_encoding<T>(query: &Query, f: impl FnOnce(&[u8]) -> T) -> T {
    let mut buffer = ENCODED
        .try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut kept| std::mem::take(&mut *kept))
        })
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    buffer.clear();
    query.hash(&mut Gather(&mut buffer));
    let result = f(&buffer);
    if buffer.capacity() <= KEPT_CAPACITY {
        let _ = ENCODED.try_with(|cell| {
            if let Ok(mut kept) = cell.try_borrow_mut() {
                *kept = buffer;
            }
        });
    }
    result
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

    fn allow(id: &str) -> Decision {
        Decision {
            allowed: true,
            determining: vec![id.into()],
            errors: Vec::new(),
        }
    }

    /// Decides `query` through `caches`, returning the policy id decided and whether Cedar ran.
    fn decided(
        caches: &Caches,
        query: &Query,
        generation: u64,
        now: i64,
        id: &str,
    ) -> (String, bool) {
        let mut ran = false;
        let (decision, _) = caches
            .decision(query, generation, now, || {
                ran = true;
                Ok::<_, ()>(allow(id))
            })
            .unwrap();
        (decision.determining.join(","), ran)
    }

    #[test]
    fn a_repeated_query_is_answered_without_deciding_until_its_entry_expires() {
        let caches = Caches::new(16, 10);
        let q = query();
        assert_eq!(decided(&caches, &q, 1, 100, "p1"), ("p1".into(), true));
        assert_eq!(
            decided(&caches, &q, 1, 105, "p2"),
            ("p1".into(), false),
            "memo hit"
        );
        // The memo keeps nothing past the shared entry's expiry (stored at 100, TTL 10).
        assert_eq!(decided(&caches, &q, 1, 110, "p3"), ("p3".into(), true));
        // A new snapshot generation decides again.
        assert_eq!(decided(&caches, &q, 2, 111, "p4"), ("p4".into(), true));
        let mut other = q.clone();
        other.resource.id.push('2');
        assert_eq!(
            decided(&caches, &other, 2, 111, "p5"),
            ("p5".into(), true),
            "another query"
        );
        assert_eq!(decided(&caches, &q, 2, 111, "p6"), ("p4".into(), false));
    }

    #[test]
    fn memoised_decisions_are_not_shared_between_cache_sets_or_kept_when_caching_is_off() {
        let q = query();
        let (a, b) = (Caches::new(16, 10), Caches::new(16, 10));
        assert_eq!(decided(&a, &q, 1, 100, "a"), ("a".into(), true));
        assert_eq!(
            decided(&b, &q, 1, 100, "b"),
            ("b".into(), true),
            "another server's"
        );
        let off = Caches::disabled();
        assert_eq!(decided(&off, &q, 1, 100, "c"), ("c".into(), true));
        assert_eq!(
            decided(&off, &q, 1, 100, "d"),
            ("d".into(), true),
            "nothing kept"
        );
        let failed = a.decision(&q, 3, 100, || Err::<Decision, _>("bad"));
        assert_eq!(failed.err(), Some("bad"));
        assert_eq!(
            decided(&a, &q, 3, 100, "e"),
            ("e".into(), true),
            "an error caches nothing"
        );
    }

    #[test]
    fn a_query_digested_while_another_is_decided_gets_its_own_buffer() {
        let caches = Caches::new(16, 10);
        let q = query();
        let expected = caches.query_digest(&q);
        let mut nested = None;
        caches
            .decision(&q, 1, 100, || {
                nested = Some(caches.query_digest(&q));
                Ok::<_, ()>(allow("p"))
            })
            .unwrap();
        assert_eq!(nested, Some(expected));
        assert_eq!(caches.query_digest(&q), expected, "the buffer came back");
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
