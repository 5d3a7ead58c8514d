//! The pipeline's caches: verified credentials (owned by `identity`) and decisions, keyed by a
//! keyed digest of the Cedar query, with a per-thread memo in front keyed by the query's exact
//! encoding; and in front of the whole pipeline, two per-thread memos keyed by the request's
//! exact decision inputs, one of verdicts and one of refusals, so a repeated caller costs one
//! lookup and a flood of refused requests cannot push the callers out.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use siphasher::sip128::{Hasher128, SipHasher24};

use crate::cache::{Lookup, TtlCache};
use crate::identity::IdentityCaches;
use crate::mapping::Query;
use crate::mapping::authzen::Evaluation;
use crate::mapping::path::MAX_PATH_BYTES;
use crate::memo::{self, Memo};
use crate::metrics::CacheMetrics;
use crate::policy::Decision;
use crate::request::CheckInput;
use crate::verdict::{DecisionId, Verdict};

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

/// What a decision is cached by: a routed request's Cedar query, an AuthZEN PEP's permission
/// to ask, or an AuthZEN evaluation. The variant is hashed first, so kinds never share a key.
#[derive(Debug, Clone, Copy, Hash)]
pub enum DecisionKey<'a> {
    /// A query mapped from a request by the routes.
    Query(&'a Query),
    /// May this PEP ask about this resource (`authzen.pep_action`): the encoding of the rest of
    /// the query (principal, action, the PEP's context), made once per call by [`encoding`],
    /// and the resource.
    Gate {
        /// [`encoding`] of the query's principal, action and context.
        fixed: &'a [u8],
        /// The resource asked about.
        resource: &'a crate::mapping::Resource,
    },
    /// An AuthZEN evaluation.
    Evaluation(&'a Evaluation),
}

impl DecisionKey<'_> {
    /// AuthZEN keys come in batches of distinct resources (up to a thousand a call): they get
    /// the larger memo, so a repeated batch is answered from it and never thrashes the small
    /// one that routed requests hit.
    fn batched(self) -> bool {
        !matches!(self, Self::Query(_))
    }
}

/// Slots in the per-thread memo of AuthZEN decisions: a batch of 100 evaluations is 200 keys
/// (each with its PEP permission), which 2,048 slots in sets of four hold with few collisions.
const BATCH_SLOTS: usize = 2048;

thread_local! {
    /// Decisions this thread made or fetched, each its own copy, by exact query encoding.
    static DECISIONS: RefCell<Memo<Arc<Decision>>> = const { RefCell::new(Memo::new()) };
    /// The same for AuthZEN's keys ([`DecisionKey::batched`]).
    static BATCHED: RefCell<Memo<Arc<Decision>, BATCH_SLOTS>> = const { RefCell::new(Memo::new()) };
    /// Verdicts this thread gave, by the exact decision inputs of the request.
    static VERDICTS: RefCell<Memo<Remembered>> = const { RefCell::new(Memo::new()) };
    /// Refusals kept for reuse (no credential, a refused certificate, a replayed refused
    /// token), apart from the verdicts: a probe of any number of paths takes slots here alone,
    /// never those of the callers this thread serves.
    static REFUSALS: RefCell<Memo<Remembered>> = const { RefCell::new(Memo::new()) };
    /// The key being looked up, kept between requests (up to `KEPT_CAPACITY`).
    static ENCODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A verdict kept for reuse, and the cache hits a reuse stands for.
#[derive(Debug, Clone)]
struct Remembered {
    verdict: Verdict,
    reuse: Reuse,
}

/// What makes a fresh verdict reusable for a request with the same decision inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Unix seconds until which it may be reused: the earliest expiry of the credentials, the
    /// cache entries and the decision it came from.
    pub until: i64,
    /// A certificate was verified (a reuse counts as a certificate-cache hit).
    pub certificate: bool,
    /// A token was verified (a reuse counts as a token-cache hit).
    pub token: bool,
    /// A token was refused, finally (a reuse counts as a refused-token-cache hit).
    pub refused_token: bool,
    /// The certificate was refused, finally (a reuse counts in no cache's lookups: the fresh
    /// refusal looked up no decision, so a hit would have no miss to weigh against).
    pub refused_certificate: bool,
    /// Refused for want of any credential: a function of the request and the snapshot alone,
    /// reused for as long as the snapshot lasts, and counted in no cache's lookups.
    pub unauthenticated: bool,
}

impl Reuse {
    /// A refusal: kept in the refusals' own memo, where a flood of them cannot push out the
    /// verdicts of the callers a worker serves.
    fn is_refusal(&self) -> bool {
        self.refused_token || self.refused_certificate || self.unauthenticated
    }
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
    /// nothing), and until when it may be used. A memo hit is counted as a cache hit.
    pub fn decision<E>(
        &self,
        query: DecisionKey<'_>,
        generation: u64,
        now: i64,
        decide: impl FnOnce() -> Result<Decision, E>,
    ) -> Result<(Arc<Decision>, Lookup, i64), E> {
        let batched = query.batched();
        let look = |encoded: &[u8]| {
            if batched {
                memo::look(&BATCHED, self.memo_owner?, generation, now, encoded)
            } else {
                memo::look(&DECISIONS, self.memo_owner?, generation, now, encoded)
            }
        };
        with_buffer(
            |buffer| query.hash(&mut Gather(buffer)),
            |encoded| {
                if let Some((hit, until)) = look(encoded) {
                    return Ok((hit, Lookup::HIT, until));
                }
                let (decision, lookup, expires_at) = self.decisions.get_or_try_insert_until(
                    self.digest(encoded),
                    generation,
                    now,
                    || decide().map(|d| (Arc::new(d), i64::MAX)),
                )?;
                let Some(owner) = self.memo_owner else {
                    return Ok((decision, lookup, expires_at));
                };
                // This thread's own copy, kept and handed out: the verdicts made from it count
                // references on memory no other worker writes.
                let own = Arc::new(decision.detached());
                let span = (now, expires_at);
                let copy = || Arc::clone(&own);
                if batched {
                    memo::keep(&BATCHED, owner, generation, span, encoded, copy);
                } else {
                    memo::keep(&DECISIONS, owner, generation, span, encoded, copy);
                }
                Ok((own, lookup, expires_at))
            },
        )
    }

    /// The verdict for `input` under snapshot `generation` at `now` (seconds): one this thread
    /// gave a request with exactly the same decision inputs (with a new decision id, and
    /// counted as hits of the caches it stands for), else `decide`'s, kept when it says how long
    /// it may be reused.
    pub fn verdict(
        &self,
        input: &CheckInput,
        generation: u64,
        now: i64,
        decide: impl FnOnce() -> (Verdict, Option<Reuse>),
    ) -> Verdict {
        self.verdict_keyed(|key| decision_inputs(input, key), generation, now, decide)
    }

    /// [`Self::verdict`] for decision inputs that `key` writes, for a front door that can say
    /// what decides a request before it builds a [`CheckInput`] (and then builds one only when
    /// `decide` runs). `key` must start with [`FRONT_DOOR_KEY`], so that it shares no
    /// encoding with [`decision_inputs`], and must determine the `CheckInput` it stands for.
    pub fn verdict_keyed(
        &self,
        key: impl FnOnce(&mut Vec<u8>),
        generation: u64,
        now: i64,
        decide: impl FnOnce() -> (Verdict, Option<Reuse>),
    ) -> Verdict {
        let Some(owner) = self.memo_owner else {
            return decide().0;
        };
        with_buffer(key, |key| {
            let kept = memo::look(&VERDICTS, owner, generation, now, key)
                .or_else(|| memo::look(&REFUSALS, owner, generation, now, key));
            if let Some((kept, _)) = kept {
                return self.reused(kept);
            }
            let (verdict, reuse) = decide();
            // A verdict without `Reuse` is not kept.
            if let Some(reuse) = reuse {
                let span = (now, reuse.until);
                let kept = || Remembered {
                    verdict: verdict.clone(),
                    reuse,
                };
                if reuse.is_refusal() {
                    memo::keep(&REFUSALS, owner, generation, span, key, kept);
                } else {
                    memo::keep(&VERDICTS, owner, generation, span, key, kept);
                }
            }
            verdict
        })
    }

    /// A remembered verdict given again: a new decision id, counted as hits of the caches it
    /// stands for.
    fn reused(&self, kept: Remembered) -> Verdict {
        let reuse = kept.reuse;
        self.identity
            .reused(reuse.certificate, reuse.token, reuse.refused_token);
        // A refusal looked up no decision.
        if !reuse.is_refusal() {
            self.decision_metrics.used(Lookup::HIT);
        }
        Verdict {
            decision_id: DecisionId::next(),
            ..kept.verdict
        }
    }

    /// `make`'s value for the key `key` writes, from this thread's `memos` when it made one for
    /// the same key under the same `generation` that is still good at `now`; else made now,
    /// and kept until the time `make` gives with it. The `bool` says whether it was
    /// remembered. Nothing is kept when the caches are off, or for an error.
    pub fn remembered<V: Clone, E, const N: usize>(
        &self,
        memos: &'static memo::Memos<V, N>,
        key: impl FnOnce(&mut Vec<u8>),
        generation: u64,
        now: i64,
        make: impl FnOnce() -> Result<(V, i64), E>,
    ) -> Result<(V, bool), E> {
        let Some(owner) = self.memo_owner else {
            return make().map(|(value, _)| (value, false));
        };
        with_buffer(key, |key| {
            if let Some((value, _)) = memo::look(memos, owner, generation, now, key) {
                return Ok((value, true));
            }
            let (value, until) = make()?;
            memo::keep(memos, owner, generation, (now, until), key, || {
                value.clone()
            });
            Ok((value, false))
        })
    }

    /// The decision-cache key of `query`. `Query`'s derived `Hash` is an unambiguous encoding
    /// (strings end in 0xFF, which UTF-8 never contains; sequences and options are prefixed),
    /// gathered first and digested in one call: SipHash fed field by field pays its buffering
    /// on each of the query's few dozen short writes.
    pub fn query_digest(&self, query: &Query) -> QueryDigest {
        with_buffer(
            |buffer| query.hash(&mut Gather(buffer)),
            |encoded| self.digest(encoded),
        )
    }

    fn digest(&self, encoded: &[u8]) -> QueryDigest {
        let mut hasher = SipHasher24::new_with_keys(self.query_key.0, self.query_key.1);
        hasher.write(encoded);
        hasher.finish128().as_u128()
    }
}

/// Everything in `input` the pipeline reads, each field length-prefixed so that no two inputs
/// share an encoding: identity's (the certificate, Envoy's principal, the `authorization` and
/// `x-forwarded-client-cert` headers) and mapping's (method, host, source address, and the path
/// up to its query or fragment, which mapping drops, with whether the whole target is over
/// mapping's limit). Other headers (request ids, tracing) decide nothing and are left out, so a
/// caller repeating a call through Envoy still finds its verdict. `CheckInput` is taken apart
/// field by field: a field added to it does not compile here until it is placed.
pub(crate) fn decision_inputs(input: &CheckInput, out: &mut Vec<u8>) {
    let CheckInput {
        method,
        path,
        host,
        headers: _,
        source_ip,
        certificate,
        principal,
    } = input;
    DecisionInputs {
        certificate,
        principal,
        authorization: input.header("authorization"),
        xfcc: input.header("x-forwarded-client-cert"),
        method,
        path,
        host,
        source_ip: *source_ip,
    }
    .write(out);
}

/// Everything the pipeline reads of a request, borrowed from wherever a front door has it.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInputs<'a> {
    /// Envoy's `source.certificate`.
    pub certificate: &'a str,
    /// Envoy's `source.principal`.
    pub principal: &'a str,
    /// The `authorization` header, repeats joined.
    pub authorization: Option<&'a str>,
    /// The `x-forwarded-client-cert` header, repeats joined.
    pub xfcc: Option<&'a str>,
    /// The request line and source address (see [`request_line_inputs`]).
    pub method: &'a str,
    /// See `method`.
    pub path: &'a str,
    /// See `method`.
    pub host: &'a str,
    /// See `method`.
    pub source_ip: Option<std::net::IpAddr>,
}

impl DecisionInputs<'_> {
    /// Writes them as [`decision_inputs`] keys a [`CheckInput`].
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut field = |bytes: &[u8]| key_field(out, bytes);
        field(self.certificate.as_bytes());
        field(self.principal.as_bytes());
        for header in [self.authorization, self.xfcc] {
            match header {
                // Absent and empty differ: a marker no value has.
                None => field(&[]),
                Some(value) => {
                    field(&[1]);
                    field(value.as_bytes());
                }
            }
        }
        request_line_inputs(self.method, self.path, self.host, self.source_ip, out);
    }
}

/// The first bytes of every key a front door writes for [`Caches::verdict_keyed`]:
/// [`decision_inputs`] starts with a length, which is never `u64::MAX`.
pub const FRONT_DOOR_KEY: [u8; 8] = u64::MAX.to_le_bytes();

/// Writes `bytes` length-prefixed, so that no two sequences of fields share an encoding.
pub fn key_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The part of the decision inputs that mapping reads (see [`decision_inputs`]), for every
/// key of a request: method, the path up to its query or fragment with whether the whole
/// target is over mapping's limit, host, source address.
pub fn request_line_inputs(
    method: &str,
    path: &str,
    host: &str,
    source_ip: Option<std::net::IpAddr>,
    out: &mut Vec<u8>,
) {
    key_field(out, method.as_bytes());
    let route_part = path.split(['?', '#']).next().unwrap_or_default();
    key_field(out, route_part.as_bytes());
    key_field(out, &[u8::from(path.len() > MAX_PATH_BYTES)]);
    key_field(out, host.as_bytes());
    match source_ip {
        None => key_field(out, &[]),
        Some(std::net::IpAddr::V4(ip)) => key_field(out, &ip.octets()),
        Some(std::net::IpAddr::V6(ip)) => key_field(out, &ip.octets()),
    }
}

/// Runs `f` on what `fill` writes into this thread's buffer: taken out while `f` runs (so a
/// nested use, or one at thread exit once the buffer is torn down, simply fills a new one) and
/// put back after, unless it grew past `KEPT_CAPACITY`.
fn with_buffer<T>(fill: impl FnOnce(&mut Vec<u8>), f: impl FnOnce(&[u8]) -> T) -> T {
    let mut buffer = ENCODED
        .try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut kept| std::mem::take(&mut *kept))
        })
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    buffer.clear();
    fill(&mut buffer);
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

/// The exact bytes `value` hashes as: a part of a cache key encoded once, for keys that share
/// it ([`DecisionKey::Gate`]).
pub fn encoding(value: &impl Hash) -> Vec<u8> {
    let mut out = Vec::new();
    value.hash(&mut Gather(&mut out));
    out
}

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
            determining: Arc::new([id.into()]),
            errors: Arc::new([]),
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
        let (decision, _, _) = caches
            .decision(DecisionKey::Query(query), generation, now, || {
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
        let failed = a.decision(DecisionKey::Query(&q), 3, 100, || Err::<Decision, _>("bad"));
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
            .decision(DecisionKey::Query(&q), 1, 100, || {
                nested = Some(caches.query_digest(&q));
                Ok::<_, ()>(allow("p"))
            })
            .unwrap();
        assert_eq!(nested, Some(expected));
        assert_eq!(caches.query_digest(&q), expected, "the buffer came back");
    }

    fn request() -> CheckInput {
        let mut input = CheckInput {
            method: "GET".into(),
            path: "/orders/1".into(),
            host: "shop".into(),
            source_ip: Some("10.0.0.1".parse().unwrap()),
            certificate: "-----BEGIN%20CERTIFICATE-----".into(),
            principal: "spiffe://td/envoy-view".into(),
            ..CheckInput::default()
        };
        input.insert_header("authorization", "Bearer abc");
        input.insert_header("x-request-id", "1");
        input
    }

    /// Gives `input` a verdict through `caches`: whether the pipeline ran, and the verdict's id.
    fn answered(
        caches: &Caches,
        input: &CheckInput,
        now: i64,
        reuse: Option<Reuse>,
    ) -> (bool, DecisionId) {
        let mut ran = false;
        let verdict = caches.verdict(input, 1, now, || {
            ran = true;
            (Verdict::allow("app".into(), Vec::new(), Vec::new()), reuse)
        });
        (ran, verdict.decision_id)
    }

    const REUSE: Reuse = Reuse {
        until: 200,
        certificate: true,
        token: true,
        refused_token: false,
        refused_certificate: false,
        unauthenticated: false,
    };

    #[test]
    fn a_verdict_is_reused_only_for_the_same_decision_inputs_and_with_a_new_id() {
        let caches = Caches::new(16, 300);
        let base = request();
        let (ran, first) = answered(&caches, &base, 100, Some(REUSE));
        assert!(ran);
        let (ran, again) = answered(&caches, &base, 100, Some(REUSE));
        assert!(!ran, "the same inputs: remembered");
        assert_ne!(first, again, "every verdict has its own id");
        let mut other_header = base.clone();
        other_header
            .headers
            .insert("x-request-id".into(), "2".into());
        assert!(
            !answered(&caches, &other_header, 100, Some(REUSE)).0,
            "a header nothing reads"
        );
        let mut query = base.clone();
        query.path.push_str("?page=2#top");
        assert!(
            !answered(&caches, &query, 100, Some(REUSE)).0,
            "a query mapping drops"
        );
        // ...unless it takes the target over mapping's limit, which refuses it.
        query.path.push_str(&"x".repeat(MAX_PATH_BYTES));
        assert!(
            answered(&caches, &query, 100, None).0,
            "over the limit: decided afresh"
        );
        type Change = Box<dyn Fn(&mut CheckInput)>;
        let changes: Vec<(&str, Change)> = vec![
            ("method", Box::new(|i| i.method = "POST".into())),
            ("path", Box::new(|i| i.path = "/orders/2".into())),
            ("host", Box::new(|i| i.host = "admin".into())),
            (
                "source",
                Box::new(|i| i.source_ip = Some("10.0.0.2".parse().unwrap())),
            ),
            ("no source", Box::new(|i| i.source_ip = None)),
            ("certificate", Box::new(|i| i.certificate.push('x'))),
            ("principal", Box::new(|i| i.principal.clear())),
            ("token", Box::new(|i| i.insert_header("authorization", "x"))),
            (
                "no token",
                Box::new(|i| {
                    i.headers.remove("authorization");
                }),
            ),
            (
                "empty token",
                Box::new(|i| {
                    i.headers.insert("authorization".into(), String::new());
                }),
            ),
            (
                "xfcc",
                Box::new(|i| i.insert_header("x-forwarded-client-cert", "By=a")),
            ),
            (
                "field boundary",
                Box::new(|i| {
                    i.method = "GET/orders".into();
                    i.path = "/1".into();
                }),
            ),
        ];
        for (what, change) in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert!(
                answered(&caches, &changed, 100, None).0,
                "{what}: decided afresh"
            );
        }
    }

    #[test]
    fn a_verdict_is_reused_until_it_may_not_be_and_only_when_it_may() {
        let caches = Caches::new(16, 300);
        let input = request();
        assert!(answered(&caches, &input, 100, None).0);
        assert!(
            answered(&caches, &input, 100, Some(REUSE)).0,
            "not reusable: not kept"
        );
        assert!(!answered(&caches, &input, 199, Some(REUSE)).0);
        assert!(
            answered(&caches, &input, 200, Some(REUSE)).0,
            "until 200, not at 200"
        );
        let mut later = input.clone();
        later.path.push('2');
        assert!(answered(&caches, &later, 180, Some(REUSE)).0);
        assert!(
            answered(&caches, &later, 150, Some(REUSE)).0,
            "kept at 180: not good at 150, should the clock step back"
        );
        let mut ran = false;
        caches.verdict(&input, 2, 150, || {
            ran = true;
            (
                Verdict::deny(crate::verdict::ReasonCode::PolicyDenied, "no"),
                None,
            )
        });
        assert!(ran, "another snapshot generation decides afresh");
        let off = Caches::disabled();
        assert!(answered(&off, &input, 100, Some(REUSE)).0);
        assert!(
            answered(&off, &input, 100, Some(REUSE)).0,
            "caching off: nothing kept"
        );
        let other = Caches::new(16, 300);
        assert!(
            answered(&other, &input, 100, Some(REUSE)).0,
            "another server's memory"
        );
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
