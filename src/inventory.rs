//! Per-identity summaries of decisions: what the live `/identities` endpoint keeps for one
//! sidecar and what `tollgate report` reduces a fleet's audit records to. Both feed the same
//! [`Observation`]s into the same [`Summary`], and summaries merge, so ten nodes' summaries
//! merged equal one report over all their records.
//!
//! Memory grows with identities × (action, resource type) pairs, never with records: per
//! identity, the users acted for, issuers and pairs are bounded sets, and the timeline is at
//! most [`MAX_BUCKETS`] buckets whose width doubles as the window grows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Calls and denials per timeline bucket, as `(bucket index, calls, denials)` sorted by index
/// (`time / bucket_ms`): aligned to the epoch, so two series rebin to a common width exactly.
/// Records mostly arrive in time order, so the newest bucket is kept inline (`open`), next to
/// the identity's counters, and the rest in a sorted vector: a record in the current bucket
/// touches no memory of its own, and a rebin is one pass.
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub struct Series {
    /// The newest bucket; every `closed` index is below its index.
    open: Option<Bucket>,
    closed: Vec<Bucket>,
}

/// `(bucket index, calls, denials)`.
type Bucket = (u64, u64, u64);

impl Series {
    /// Adds counts to bucket `index`: `false` when they went into the newest bucket, so that
    /// the span is surely unchanged. A caller checking the span after every record needs to
    /// read it only when this is `true`: reading it means reading the oldest bucket,
    /// elsewhere in memory, and with thousands of identities that was a cache miss on every
    /// record.
    pub fn add(&mut self, index: u64, calls: u64, denials: u64) -> bool {
        match &mut self.open {
            Some(open) if open.0 == index => {
                open.1 += calls;
                open.2 += denials;
                return false;
            }
            Some(open) if open.0 < index => {
                self.closed.push(*open);
                *open = (index, calls, denials);
            }
            Some(_) => add_sorted(&mut self.closed, (index, calls, denials)),
            None => match self.closed.last() {
                Some(last) if last.0 >= index => {
                    add_sorted(&mut self.closed, (index, calls, denials));
                }
                _ => self.open = Some((index, calls, denials)),
            },
        }
        true
    }

    /// Asks for the older buckets a record in a new bucket reads: the oldest (for the span),
    /// and the last, next to where the newest goes when it closes.
    fn prefetch(&self) {
        if let (Some(first), Some(last)) = (self.closed.first(), self.closed.last()) {
            fetch(first);
            fetch(last);
        }
    }

    /// Adds every bucket of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (index, calls, denials) in other.buckets() {
            self.add(index, calls, denials);
        }
    }

    /// Merges buckets `factor` at a time, in place.
    fn rebin(&mut self, factor: u64) {
        self.closed.extend(self.open.take());
        let mut out: usize = 0;
        for i in 0..self.closed.len() {
            let Some(&(index, calls, denials)) = self.closed.get(i) else {
                break;
            };
            let index = index / factor;
            match out.checked_sub(1).and_then(|o| self.closed.get_mut(o)) {
                Some(prev) if prev.0 == index => {
                    prev.1 += calls;
                    prev.2 += denials;
                }
                _ => {
                    if let Some(slot) = self.closed.get_mut(out) {
                        *slot = (index, calls, denials);
                    }
                    out += 1;
                }
            }
        }
        self.closed.truncate(out);
        self.open = self.closed.pop();
    }

    /// Last bucket index minus the first.
    pub fn span(&self) -> u64 {
        let first = self.closed.first().or(self.open.as_ref());
        let last = self.open.as_ref().or(self.closed.last());
        match (first, last) {
            (Some(first), Some(last)) => last.0 - first.0,
            _ => 0,
        }
    }

    /// The buckets, in order.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.closed.iter().copied().chain(self.open)
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }

    /// No bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Adds `bucket` to the sorted `buckets` (summing into one of the same index).
fn add_sorted(buckets: &mut Vec<Bucket>, bucket: Bucket) {
    match buckets.binary_search_by_key(&bucket.0, |b| b.0) {
        Ok(at) => {
            if let Some(b) = buckets.get_mut(at) {
                b.1 += bucket.1;
                b.2 += bucket.2;
            }
        }
        Err(at) => buckets.insert(at, bucket),
    }
}

/// Equal when the buckets are, however they are split between `closed` and `open`.
impl PartialEq for Series {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.buckets().eq(other.buckets())
    }
}

impl Eq for Series {}

/// Written as one sorted list of `[index, calls, denials]`.
impl Serialize for Series {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.buckets())
    }
}

impl<'de> Deserialize<'de> for Series {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let buckets = Vec::<Bucket>::deserialize(deserializer)?;
        let mut series = Self::default();
        // Through `add`: a file's buckets, in any order or repeated, become a sorted series.
        for (index, calls, denials) in buckets {
            series.add(index, calls, denials);
        }
        Ok(series)
    }
}

/// Identities by principal; foldhash, as one lookup per record is the reduction's hot spot.
pub type Identities = hashbrown::HashMap<String, IdentitySummary, foldhash::fast::RandomState>;

use serde::{Deserialize, Serialize};

/// A principal and its hash in the identity table, worked out once for both fetching its
/// summary ahead ([`Summary::prefetch`]) and reducing into it.
#[derive(Debug, Clone, Copy)]
pub struct Located<'p> {
    principal: &'p str,
    hash: u64,
    /// The table's [`Summary::table_mark`].
    table: u64,
}

/// Hashed by a table's hasher to tell tables apart (any constant would do).
const TABLE_MARK: u64 = 0x0074_6162_6c65;

/// Asks for the cache line holding `value`, without waiting for it.
#[inline(always)]
fn fetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    safe_arch::prefetch_t0(value);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Distinct users remembered per identity; past this, `users_saturated` says "at least".
pub const MAX_USERS: usize = 1024;
/// Distinct (action, resource type) pairs remembered per identity.
pub const MAX_PAIRS: usize = 1024;
/// Distinct credential issuers remembered per identity.
pub const MAX_ISSUERS: usize = 16;
/// Timeline buckets per summary; when a new record falls outside, the width doubles.
pub const MAX_BUCKETS: usize = 240;
/// The narrowest timeline bucket: one minute.
pub const MIN_BUCKET_MS: u64 = 60_000;

/// One decision, as a summary needs it (borrowed from an audit record or a live event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Observation<'a> {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// The Cedar principal; `None` when the caller was never verified.
    pub principal: Option<&'a str>,
    /// Identified by a workload identity (certificate, SPIFFE ID), not a token alone.
    pub workload: bool,
    /// The workload's trust domain.
    pub trust_domain: Option<&'a str>,
    /// The call was delegated (made for a user).
    pub delegated: bool,
    /// The user acted for (or its pseudonym).
    pub user: Option<&'a str>,
    /// Allowed.
    pub allowed: bool,
    /// Reason code (`allowed` for allows).
    pub reason: &'a str,
    /// The Cedar action, once mapped.
    pub action: Option<&'a str>,
    /// The resource's entity type, once mapped.
    pub resource_type: Option<&'a str>,
    /// The token's issuer.
    pub issuer: Option<&'a str>,
    /// The nearest expiry of the credentials presented, Unix milliseconds.
    pub expires_ms: Option<i64>,
    /// The client certificate's expiry (its whole path's), Unix milliseconds, when one was
    /// verified here (live observations only: records do not tell the two apart).
    pub certificate_expires_ms: Option<i64>,
    /// The latest expiry of the credentials presented, Unix milliseconds (live only).
    pub longest_expires_ms: Option<i64>,
    /// The longest lifetime a presented credential was issued with (`exp` − `iat`, `notAfter`
    /// − `notBefore`), milliseconds, where the credential says when it was issued (live only).
    pub longest_lifetime_ms: Option<i64>,
}

/// What kind of caller an identity is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A certificate or SPIFFE ID named it.
    #[serde(rename = "workload")]
    Workload,
    /// A token alone named it.
    #[default]
    #[serde(rename = "client")]
    Client,
    /// An app that made calls for users (the review's word for a client or workload that did).
    #[serde(rename = "delegated app")]
    DelegatedApp,
}

impl Kind {
    /// As written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "workload",
            Self::Client => "client",
            Self::DelegatedApp => "delegated app",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The hash of the last value added to a bounded set, so a caller that repeats itself (one
/// issuer, one user) costs no walk through the set's keys. A cache, not part of the value:
/// every two compare equal.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastAdded(Option<u64>);

/// One spelling of each `action resource-type` pair for every identity's `used` map. With 5,000
/// identities, a key per identity and pair is a heap string apart from everything else the
/// record touches, and finding a pair compared against several of them: a cache miss each.
/// Shared, the few spellings an estate has stay in cache. A cache, not part of the value:
/// every two compare equal.
#[derive(Debug, Clone, Default)]
pub struct PairNames {
    /// Where a record's pair is spelled for the lookup.
    scratch: String,
    known: Spellings,
}

/// The shared spellings. Those no identity's map holds any more (their identities evicted)
/// are let go whenever the set has doubled since it was last pruned, so it holds at most
/// about twice the spellings in use: what the maps hold bounds it, as before it existed.
#[derive(Debug, Clone, Default)]
struct Spellings {
    names: HashSet<Arc<str>, foldhash::fast::RandomState>,
    prune_at: usize,
}

/// Spellings kept before the first pruning.
const FIRST_PRUNE: usize = 64;

impl Spellings {
    /// The shared spelling of `key`, made and kept on first sight.
    fn share(&mut self, key: &str) -> Arc<str> {
        if let Some(name) = self.names.get(key) {
            return name.clone();
        }
        if self.names.len() >= self.prune_at.max(FIRST_PRUNE) {
            self.names.retain(|name| Arc::strong_count(name) > 1);
            self.prune_at = self.names.len().saturating_mul(2);
            // A burst that has gone leaves no large table behind to scan at every prune.
            self.names.shrink_to(self.prune_at.max(FIRST_PRUNE));
        }
        let name: Arc<str> = Arc::from(key);
        self.names.insert(name.clone());
        name
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.names.len()
    }
}

impl PartialEq for PairNames {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PairNames {}

impl PartialEq for LastAdded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LastAdded {}

/// What one identity did.
///
/// With thousands of identities, a record's summary is mostly out of cache, and each cache
/// line of it a record touches is a miss. So the layout is fixed (`repr(C)` keeps the order
/// written): the counters, the timeline's newest bucket and the pairs first, together; the
/// sets a record rarely touches (denials, users, issuers) last. Of the orders tried, this one
/// missed least in a cache simulation (`expiry_ms` and the last-added hashes before the
/// timeline missed 5% more).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[repr(C)]
pub struct IdentitySummary {
    /// What kind of caller.
    pub kind: Kind,
    /// SPIFFE trust domain, for workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// Decisions.
    pub calls: u64,
    /// First and last decision, Unix milliseconds.
    pub first_seen_ms: u64,
    /// See `first_seen_ms`.
    pub last_seen_ms: u64,
    /// App-only decisions.
    pub app_only: u64,
    /// Delegated decisions.
    pub delegated: u64,
    /// Calls and denials over time, in the summary's `bucket_ms`.
    #[serde(default, skip_serializing_if = "Series::is_empty")]
    pub series: Series,
    /// Per `action resource-type`: what was asked for. The keys' text is shared between
    /// identities (see [`PairNames`]).
    #[serde(default, skip_serializing_if = "Pairs::is_empty")]
    pub used: Pairs,
    /// When the credentials it presented last expire, Unix milliseconds (the nearest, when it
    /// presented several in that millisecond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_ms: Option<i64>,
    /// The millisecond of the decision `expiry_ms` came from: a call without an expiry moves
    /// `last_seen_ms`, not this. Written out so that merged summaries keep the latest
    /// credentials' expiry as one read would; a summary saved without it uses `last_seen_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_seen_ms: Option<u64>,
    #[serde(skip)]
    last_issuer: LastAdded,
    #[serde(skip)]
    last_user: LastAdded,
    /// Denials, by reason code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub denials: BTreeMap<String, u64>,
    /// Users acted for (identifiers or pseudonyms), at most [`MAX_USERS`].
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub users: BTreeSet<String>,
    /// More users than `users` holds were seen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub users_saturated: bool,
    /// Token issuers seen.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub issuers: BTreeSet<String>,
    /// More pairs than `used` holds were seen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub used_saturated: bool,
}

/// Pairs held in the summary itself; an identity with more holds them all on the heap.
const INLINE_PAIRS: usize = 3;

/// What one identity asked for, per `action resource-type` pair, sorted by pair. Most
/// identities use a few pairs, and those sit in the identity's summary itself: counting a
/// record's pair reads the summary and the pairs' shared spellings (few, so in cache), where
/// a tree's node, elsewhere in memory, cost two cache misses a record with thousands of
/// identities. Inserting shifts the pairs after it: at most [`MAX_PAIRS`] per identity, once
/// each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(smallvec::SmallVec<[(Arc<str>, Usage); INLINE_PAIRS]>);

impl Pairs {
    /// Where `pair` is, or would be inserted. Most identities hold a few pairs, most of
    /// different lengths: those are looked through for an equal one first, and only one of
    /// the same length has its text compared (a binary search's comparisons were each a call
    /// to `memcmp`, and a mispredicted branch in it). The pairs are sorted and each held once,
    /// so the one found is where the binary search would find it.
    fn find(&self, pair: &str) -> Result<usize, usize> {
        if self.0.len() <= INLINE_PAIRS
            && let Some(at) = self.0.iter().position(|(key, _)| **key == *pair)
        {
            return Ok(at);
        }
        self.0.binary_search_by(|(key, _)| (**key).cmp(pair))
    }

    /// The usage of `pair`.
    pub fn get(&self, pair: &str) -> Option<&Usage> {
        let at = self.find(pair).ok()?;
        self.0.get(at).map(|(_, usage)| usage)
    }

    /// Adds `usage` to `pair`'s. A pair new here is added, spelled by `name`, only while
    /// fewer than `max` are held; `false` when it was left out.
    fn add(
        &mut self,
        pair: &str,
        usage: Usage,
        max: usize,
        name: impl FnOnce() -> Arc<str>,
    ) -> bool {
        match self.find(pair) {
            Ok(at) => {
                if let Some((_, ours)) = self.0.get_mut(at) {
                    ours.add(usage);
                }
                true
            }
            Err(at) if self.0.len() < max => {
                self.0.insert(at, (name(), usage));
                true
            }
            Err(_) => false,
        }
    }

    /// Adds `other`'s pairs, in one pass over both. A pair new here is added only while fewer
    /// than `max` are held, in pair order (as adding them one by one would); `false` when one
    /// was left out.
    fn merge(&mut self, other: &Self, max: usize) -> bool {
        let mut merged = smallvec::SmallVec::with_capacity(self.0.len().max(other.0.len()));
        let mut held = self.0.len();
        let mut complete = true;
        let mut ours = std::mem::take(&mut self.0).into_iter().peekable();
        for (pair, theirs) in &other.0 {
            while let Some(before) = ours.next_if(|(key, _)| key < pair) {
                merged.push(before);
            }
            match ours.next_if(|(key, _)| key == pair) {
                Some((key, mut usage)) => {
                    usage.add(*theirs);
                    merged.push((key, usage));
                }
                None if held < max => {
                    held += 1;
                    merged.push((pair.clone(), *theirs));
                }
                None => complete = false,
            }
        }
        merged.extend(ours);
        self.0 = merged;
        complete
    }

    /// Whether `pair` was asked for.
    pub fn contains_key(&self, pair: &str) -> bool {
        self.find(pair).is_ok()
    }

    /// The pairs and their usage, sorted by pair.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Usage)> {
        self.into_iter()
    }

    /// The pairs, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(key, _)| key)
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Pairs {
    type Item = (&'a Arc<str>, &'a Usage);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Arc<str>, Usage)>,
        fn(&'a (Arc<str>, Usage)) -> (&'a Arc<str>, &'a Usage),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(key, usage)| (key, usage))
    }
}

/// Written as a map from pair to usage.
impl Serialize for Pairs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a map: sorted, and a pair written twice keeps its last usage.
        let map = BTreeMap::<Arc<str>, Usage>::deserialize(deserializer)?;
        Ok(Self(map.into_iter().collect()))
    }
}

/// Calls of one (action, resource type) by one identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Decisions.
    pub calls: u64,
    /// Allowed decisions.
    pub allowed: u64,
    /// Last decision, Unix milliseconds.
    pub last_ms: u64,
}

impl Usage {
    /// Adds `other`'s decisions to these.
    fn add(&mut self, other: Self) {
        self.calls += other.calls;
        self.allowed += other.allowed;
        self.last_ms = self.last_ms.max(other.last_ms);
    }
}

/// A reduction of decisions: per identity, per policy, over time. Mergeable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Records reduced.
    pub records: u64,
    /// Lines that were not records (corrupt, truncated, another format).
    pub corrupt: u64,
    /// Earliest and latest record, Unix milliseconds (0 when none).
    pub first_ms: u64,
    /// See `first_ms`.
    pub last_ms: u64,
    /// Per Cedar principal.
    pub identities: Identities,
    /// Decisions by callers never verified, by reason code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unverified: BTreeMap<String, u64>,
    /// Calls and denials of callers never verified, over time.
    #[serde(default, skip_serializing_if = "Series::is_empty")]
    pub unverified_series: Series,
    /// Decisions each policy determined.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub policies: HashMap<String, u64, foldhash::fast::RandomState>,
    /// Width of the timeline buckets, milliseconds: [`MIN_BUCKET_MS`] times a power of two.
    #[serde(default = "min_bucket")]
    pub bucket_ms: u64,
    /// Pair spellings, so a known pair costs no allocation and its lookup no cache miss.
    #[serde(skip)]
    pair_names: PairNames,
}

fn min_bucket() -> u64 {
    MIN_BUCKET_MS
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            records: 0,
            corrupt: 0,
            first_ms: 0,
            last_ms: 0,
            identities: Identities::default(),
            unverified: BTreeMap::new(),
            unverified_series: Series::default(),
            policies: HashMap::default(),
            bucket_ms: MIN_BUCKET_MS,
            pair_names: PairNames::default(),
        }
    }
}

impl IdentitySummary {
    /// Asks for the cache lines a record's reduction reads (see [`Summary::prefetch`]).
    fn prefetch(&self) {
        fetch(&self.kind);
        fetch(&self.delegated);
        fetch(&self.series);
        fetch(&self.used);
        fetch(&self.expiry_ms);
        fetch(&self.last_user);
    }

    /// Reduces `n` decisions alike, `o`: whether its timeline's span may have grown (see
    /// [`Series::add`]).
    fn observe(
        &mut self,
        o: &Observation<'_>,
        n: u64,
        bucket_ms: u64,
        names: &mut PairNames,
    ) -> bool {
        let denied = if o.allowed { 0 } else { n };
        let new_bucket = self.series.add(o.time_ms / bucket_ms, n, denied);
        if self.calls == 0 {
            self.first_seen_ms = o.time_ms;
        }
        if let Some(at) = o.expires_ms {
            self.keep_expiry(at, o.time_ms);
        }
        self.first_seen_ms = self.first_seen_ms.min(o.time_ms);
        self.last_seen_ms = self.last_seen_ms.max(o.time_ms);
        self.calls += n;
        if o.workload {
            self.kind = Kind::Workload;
        }
        if let (None, Some(domain)) = (&self.trust_domain, o.trust_domain) {
            self.trust_domain = Some(domain.to_owned());
        }
        if !o.allowed {
            match self.denials.get_mut(o.reason) {
                Some(count) => *count += n,
                None => {
                    self.denials.insert(o.reason.to_owned(), n);
                }
            }
        }
        if o.delegated {
            self.delegated += n;
        } else {
            self.app_only += n;
        }
        if let Some(user) = o.user {
            self.add_user(user);
        }
        if let Some(issuer) = o.issuer {
            self.add_issuer(issuer);
        }
        if let (Some(action), Some(resource_type)) = (o.action, o.resource_type) {
            let key = spell_pair(&mut names.scratch, action, resource_type);
            let usage = Usage {
                calls: n,
                allowed: n - denied,
                last_ms: o.time_ms,
            };
            if !self
                .used
                .add(key, usage, MAX_PAIRS, || names.known.share(key))
            {
                self.used_saturated = true;
            }
        }
        new_bucket
    }

    /// Counts `user` among the users acted for, within the bound.
    fn add_user(&mut self, user: &str) {
        add_bounded(
            &mut self.users,
            &mut self.last_user,
            user,
            MAX_USERS,
            &mut self.users_saturated,
        );
    }

    /// Counts `issuer` among the token issuers seen, within the bound.
    fn add_issuer(&mut self, issuer: &str) {
        add_bounded(
            &mut self.issuers,
            &mut self.last_issuer,
            issuer,
            MAX_ISSUERS,
            &mut false,
        );
    }

    /// The millisecond `expiry_ms` came from; for a summary saved without it, its last-seen.
    fn expiry_seen(&self) -> u64 {
        self.expiry_seen_ms.unwrap_or(self.last_seen_ms)
    }

    /// Keeps `at`, the expiry of credentials presented at `time_ms`, if they are the latest
    /// presented; within one millisecond, whose decisions the audit writer may take in another
    /// order (see `audit::Groups`), the nearest expiry.
    fn keep_expiry(&mut self, at: i64, time_ms: u64) {
        let kept_at = self.expiry_seen();
        let (expiry, seen) = match self.expiry_ms {
            Some(kept) if time_ms == kept_at => (kept.min(at), kept_at),
            Some(kept) if time_ms < kept_at => (kept, kept_at),
            _ => (at, time_ms),
        };
        (self.expiry_ms, self.expiry_seen_ms) = (Some(expiry), Some(seen));
    }

    /// Adds `other`'s decisions to this one.
    pub fn merge(&mut self, other: &Self) {
        if self.calls == 0 {
            *self = other.clone();
            return;
        }
        if other.calls == 0 {
            return;
        }
        if other.kind == Kind::Workload {
            self.kind = Kind::Workload;
        }
        if self.trust_domain.is_none() {
            self.trust_domain = other.trust_domain.clone();
        }
        if let Some(theirs) = other.expiry_ms {
            self.keep_expiry(theirs, other.expiry_seen());
        }
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.calls += other.calls;
        for (reason, n) in &other.denials {
            *self.denials.entry(reason.clone()).or_default() += n;
        }
        self.app_only += other.app_only;
        self.delegated += other.delegated;
        self.users_saturated |= other.users_saturated;
        for user in &other.users {
            self.add_user(user);
        }
        for issuer in &other.issuers {
            self.add_issuer(issuer);
        }
        self.used_saturated |= other.used_saturated;
        if !self.used.merge(&other.used, MAX_PAIRS) {
            self.used_saturated = true;
        }
        self.series.merge(&other.series);
    }

    /// Denials of every reason.
    pub fn denied(&self) -> u64 {
        self.denials.values().sum()
    }
}

/// The key of one (action, resource type) pair in [`IdentitySummary::used`].
pub fn pair(action: &str, resource_type: &str) -> String {
    let mut key = String::with_capacity(action.len() + 1 + resource_type.len());
    spell_pair(&mut key, action, resource_type);
    key
}

/// [`pair`], spelled into a reused buffer: for lookups on every record or request, which must
/// not allocate.
pub fn spell_pair<'b>(buffer: &'b mut String, action: &str, resource_type: &str) -> &'b str {
    buffer.clear();
    buffer.push_str(action);
    buffer.push(' ');
    buffer.push_str(resource_type);
    buffer
}

/// Adds `value` to `set` unless it holds `max` already (then `saturated`). `last` skips the
/// lookup when `value` is the one added last (a 64-bit hash match: a collision would at worst
/// leave one value out of a count of distinct values).
fn add_bounded(
    set: &mut BTreeSet<String>,
    last: &mut LastAdded,
    value: &str,
    max: usize,
    saturated: &mut bool,
) {
    use std::hash::BuildHasher;
    let hash = foldhash::fast::FixedState::default().hash_one(value);
    if last.0 == Some(hash) {
        return;
    }
    if set.contains(value) {
        last.0 = Some(hash);
        return;
    }
    if set.len() < max {
        set.insert(value.to_owned());
        last.0 = Some(hash);
    } else {
        *saturated = true;
    }
}

impl Summary {
    /// Reduces one decision.
    pub fn observe(&mut self, o: &Observation<'_>, policies: &[&str]) {
        self.observe_each(o, policies.iter().copied());
    }

    /// Starts fetching into cache the slot in the table of `principal`'s summary, and the
    /// summary's counters, timeline and pairs: with thousands of identities those are mostly
    /// out of cache, and a record waited for each in turn. Called a few records before the
    /// record is reduced (with [`Self::observe_located`]), the wait overlaps with reading
    /// those. Only a hint: it changes nothing, and a wrong guess costs a useless fetch.
    pub fn prefetch<'p>(&self, principal: &'p str) -> Located<'p> {
        use std::hash::BuildHasher;
        let located = Located {
            principal,
            hash: self.identities.hasher().hash_one(principal),
            table: self.table_mark(),
        };
        if let Some((key, summary)) = self.slot_of(located) {
            fetch(key);
            summary.prefetch();
        }
        located
    }

    /// Starts fetching the text of each key of `located`, the first of their pairs when
    /// those are not held in the summary itself, and the ends of their timelines: where those
    /// are is read from the slot, which [`Self::prefetch`] asked for.
    pub fn prefetch_keys<'p>(&self, located: impl IntoIterator<Item = Located<'p>>) {
        for at in located {
            if let Some((key, summary)) = self.slot_of(at) {
                if let Some(first) = key.as_bytes().first() {
                    fetch(first);
                }
                if let Some(pair) = summary.used.0.get(INLINE_PAIRS) {
                    fetch(pair);
                }
                summary.series.prefetch();
            }
        }
    }

    /// What tells this summary's table from another's: each hashes with a seed of its own,
    /// so a hash worked out for one is no use in another.
    fn table_mark(&self) -> u64 {
        use std::hash::BuildHasher;
        self.identities.hasher().hash_one(TABLE_MARK)
    }

    /// The first entry `at`'s hash leads to, its key not compared: comparing would wait for
    /// the key's text, which is what is being fetched.
    fn slot_of(&self, at: Located<'_>) -> Option<(&String, &IdentitySummary)> {
        self.identities.raw_entry().from_hash(at.hash, |_| true)
    }

    /// [`Self::observe`], the determining policies read as they are counted (a record's
    /// are not collected first).
    pub fn observe_each<'p>(
        &mut self,
        o: &Observation<'_>,
        policies: impl IntoIterator<Item = &'p str>,
    ) {
        self.observe_located(o, None, policies);
    }

    /// [`Self::observe_each`], the identity found by the hash [`Self::prefetch`] worked out
    /// for it, rather than by hashing it again: when `located` is of `o`'s principal (the
    /// same text, not an equal one elsewhere) and was made by this summary.
    pub fn observe_located<'p>(
        &mut self,
        o: &Observation<'_>,
        located: Option<Located<'_>>,
        policies: impl IntoIterator<Item = &'p str>,
    ) {
        self.observe_counted(o, 1, located, policies);
    }

    /// Reduces `n` decisions alike, `o` (each made at `o.time_ms`, with the same
    /// `policies`): the same summary as reducing `o` `n` times, for the work of one.
    pub fn observe_repeated(&mut self, o: &Observation<'_>, n: u64, policies: &[&str]) {
        self.observe_counted(o, n, None, policies.iter().copied());
    }

    fn observe_counted<'p>(
        &mut self,
        o: &Observation<'_>,
        n: u64,
        located: Option<Located<'_>>,
        policies: impl IntoIterator<Item = &'p str>,
    ) {
        if n == 0 {
            return;
        }
        self.records += n;
        if self.first_ms == 0 || o.time_ms < self.first_ms {
            self.first_ms = o.time_ms;
        }
        self.last_ms = self.last_ms.max(o.time_ms);
        let bucket = self.bucket_ms;
        // Only the very text `o` names, located in this summary: any other is hashed afresh.
        let located = located
            .filter(|at| {
                o.principal.is_some_and(|p| std::ptr::eq(p, at.principal))
                    && at.table == self.table_mark()
            })
            .map(|at| (at.principal, at.hash))
            .or_else(|| {
                o.principal.map(|principal| {
                    use std::hash::BuildHasher;
                    (principal, self.identities.hasher().hash_one(principal))
                })
            });
        let grown = match located {
            Some((principal, hash)) => {
                let summary = match self
                    .identities
                    .raw_entry_mut()
                    .from_key_hashed_nocheck(hash, principal)
                {
                    hashbrown::hash_map::RawEntryMut::Occupied(entry) => entry.into_mut(),
                    hashbrown::hash_map::RawEntryMut::Vacant(entry) => {
                        entry
                            .insert_hashed_nocheck(hash, principal.to_owned(), Default::default())
                            .1
                    }
                };
                let new_bucket = summary.observe(o, n, bucket, &mut self.pair_names);
                new_bucket.then_some(&summary.series)
            }
            None => {
                *self.unverified.entry(o.reason.to_owned()).or_default() += n;
                let denied = if o.allowed { 0 } else { n };
                let new_bucket = self.unverified_series.add(o.time_ms / bucket, n, denied);
                new_bucket.then_some(&self.unverified_series)
            }
        };
        let wide = grown.is_some_and(|s| s.span() >= MAX_BUCKETS as u64);
        self.count_policies(policies, n);
        if wide {
            self.fit();
        }
    }

    /// Counts `n` decisions determined by each of `policies`.
    pub fn count_policies<'p>(&mut self, policies: impl IntoIterator<Item = &'p str>, n: u64) {
        for policy in policies {
            match self.policies.get_mut(policy) {
                Some(count) => *count += n,
                None => {
                    self.policies.insert(policy.to_owned(), n);
                }
            }
        }
    }

    /// Doubles the bucket width until every series fits [`MAX_BUCKETS`].
    fn fit(&mut self) {
        while self.bucket_ms < u64::MAX / 2
            && self
                .identities
                .values()
                .map(|s| &s.series)
                .chain([&self.unverified_series])
                .any(|s| s.span() >= MAX_BUCKETS as u64)
        {
            self.rebin(self.bucket_ms.saturating_mul(2));
        }
    }

    /// Re-buckets every series to `bucket_ms` (a multiple of the current width).
    pub fn rebin(&mut self, bucket_ms: u64) {
        let factor = (bucket_ms / self.bucket_ms).max(1);
        if factor == 1 {
            return;
        }
        for series in self
            .identities
            .values_mut()
            .map(|s| &mut s.series)
            .chain([&mut self.unverified_series])
        {
            series.rebin(factor);
        }
        self.bucket_ms = bucket_ms;
    }

    /// Adds `other` to this summary.
    pub fn merge(&mut self, other: &Self) {
        let width = self.bucket_ms.max(other.bucket_ms);
        self.rebin(width);
        let rebinned;
        let other = if other.bucket_ms < width {
            let mut copy = other.clone();
            copy.rebin(width);
            rebinned = copy;
            &rebinned
        } else {
            other
        };
        self.records += other.records;
        self.corrupt += other.corrupt;
        if other.first_ms != 0 && (self.first_ms == 0 || other.first_ms < self.first_ms) {
            self.first_ms = other.first_ms;
        }
        self.last_ms = self.last_ms.max(other.last_ms);
        for (principal, theirs) in &other.identities {
            self.identities
                .entry(principal.clone())
                .or_default()
                .merge(theirs);
        }
        for (reason, n) in &other.unverified {
            *self.unverified.entry(reason.clone()).or_default() += n;
        }
        self.unverified_series.merge(&other.unverified_series);
        for (policy, n) in &other.policies {
            *self.policies.entry(policy.clone()).or_default() += n;
        }
        self.fit();
    }
}

/// The live inventory of one sidecar, bounded to `max` identities: a new identity past the
/// bound replaces the one seen longest ago, and the eviction is counted.
#[derive(Debug)]
pub struct Inventory {
    summary: Summary,
    max: usize,
    evicted: u64,
}

impl Inventory {
    /// An empty inventory of at most `max` identities.
    pub fn new(max: usize) -> Self {
        Self {
            summary: Summary::default(),
            max: max.max(1),
            evicted: 0,
        }
    }

    /// Adds one decision.
    pub fn observe(&mut self, o: &Observation<'_>, policies: &[&str]) {
        self.observe_repeated(o, 1, policies);
    }

    /// Adds `n` decisions alike (see [`Summary::observe_repeated`]).
    pub fn observe_repeated(&mut self, o: &Observation<'_>, n: u64, policies: &[&str]) {
        if n == 0 {
            return;
        }
        if let Some(principal) = o.principal
            && !self.summary.identities.contains_key(principal)
            && self.summary.identities.len() >= self.max
        {
            self.evict_oldest();
        }
        self.summary.observe_repeated(o, n, policies);
    }

    /// Drops the identity seen longest ago; of those seen last in the same millisecond, the
    /// first by name, so what is kept does not depend on the table's (random) order.
    fn evict_oldest(&mut self) {
        let oldest = self
            .summary
            .identities
            .iter()
            .min_by(|(a, x), (b, y)| x.last_seen_ms.cmp(&y.last_seen_ms).then_with(|| a.cmp(b)))
            .map(|(p, _)| p.clone());
        if let Some(principal) = oldest {
            self.summary.identities.remove(&principal);
            self.evicted += 1;
        }
    }

    /// What it holds.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Identities dropped to stay within the bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// What each identity was seen to use: per Cedar principal, the `action resource-type` pairs
/// it was allowed at least once. Sorted, so a reviewed baseline diffs cleanly in a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// Format marker and version.
    pub tollgate_baseline: u32,
    /// The records it was made from, Unix milliseconds.
    pub first_ms: u64,
    /// See `first_ms`.
    pub last_ms: u64,
    /// Per principal, the pairs used.
    pub identities: BTreeMap<String, BTreeSet<String>>,
}

impl Baseline {
    /// The baseline of `summary`.
    pub fn of(summary: &Summary) -> Self {
        Self {
            tollgate_baseline: 1,
            first_ms: summary.first_ms,
            last_ms: summary.last_ms,
            identities: summary
                .identities
                .iter()
                .map(|(principal, s)| {
                    let used = s
                        .used
                        .iter()
                        .filter(|(_, u)| u.allowed > 0)
                        .map(|(pair, _)| pair.to_string())
                        .collect();
                    (principal.clone(), used)
                })
                .filter(|(_, used): &(String, BTreeSet<String>)| !used.is_empty())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(
        time_ms: u64,
        principal: &'a str,
        action: &'a str,
        allowed: bool,
    ) -> Observation<'a> {
        Observation {
            time_ms,
            principal: Some(principal),
            workload: true,
            allowed,
            reason: if allowed { "allowed" } else { "policy_denied" },
            action: Some(action),
            resource_type: Some("Order"),
            ..Default::default()
        }
    }

    /// A principal located ahead is used only for the very text it was located from: one
    /// located for another identity (a caller's mistake) does not send the record there, and
    /// one located from an equal text elsewhere is hashed afresh and lands alike.
    #[test]
    fn a_record_goes_to_its_own_identity_whatever_was_located() {
        let (a, b) = (String::from("spiffe://x/a"), String::from("spiffe://x/b"));
        let mut summary = Summary::default();
        let wrong = summary.prefetch(&a);
        summary.observe_located(&call(1, &b, "read", true), Some(wrong), []);
        // An equal text elsewhere is hashed afresh, and lands alike.
        let copy = a.clone();
        let equal = summary.prefetch(&copy);
        summary.observe_located(&call(2, &a, "read", true), Some(equal), []);
        let right = summary.prefetch(&a);
        summary.observe_located(&call(3, &a, "read", true), Some(right), []);
        let calls: Vec<(&str, u64)> = {
            let mut calls: Vec<_> = summary
                .identities
                .iter()
                .map(|(p, s)| (p.as_str(), s.calls))
                .collect();
            calls.sort();
            calls
        };
        assert_eq!(calls, [("spiffe://x/a", 2), ("spiffe://x/b", 1)]);
    }

    /// Review finding: each summary's table hashes with its own seed, and a principal
    /// located in another summary was looked up in this one by that summary's hash: it
    /// missed the identity held, and a second entry was made for the same principal.
    #[test]
    fn a_principal_located_in_another_summary_is_hashed_afresh() {
        let p = String::from("spiffe://x/a");
        let (other, mut summary) = (Summary::default(), Summary::default());
        summary.observe(&call(1, &p, "read", true), &[]);
        let located = other.prefetch(&p);
        summary.observe_located(&call(2, &p, "read", true), Some(located), []);
        assert_eq!(summary.identities.len(), 1);
        assert_eq!(summary.identities[p.as_str()].calls, 2);
    }

    #[test]
    fn merged_halves_equal_the_whole() {
        let calls: Vec<_> = (0..2_000u64)
            .map(|i| {
                let who = ["a", "b", "c"][(i % 3) as usize];
                let action = ["read", "write"][(i % 2) as usize];
                (i * 7_919 % 50_000_000, who, action, i % 5 != 0)
            })
            .collect();
        let mut whole = Summary::default();
        let (mut first, mut second) = (Summary::default(), Summary::default());
        for (i, (t, who, action, ok)) in calls.iter().enumerate() {
            let o = call(*t, who, action, *ok);
            whole.observe(&o, &["p1"]);
            if i % 2 == 0 { &mut first } else { &mut second }.observe(&o, &["p1"]);
        }
        first.merge(&second);
        assert_eq!(first.policies, whole.policies);
        assert_eq!(first.records, whole.records);
        assert!(
            whole
                .identities
                .values()
                .all(|s| s.series.len() <= MAX_BUCKETS)
        );
        // Timelines may settle on different widths; at the coarser one they agree.
        let width = first.bucket_ms.max(whole.bucket_ms);
        first.rebin(width);
        whole.rebin(width);
        assert_eq!(first.identities, whole.identities);
    }

    /// Whatever order records come in, for an identity and for unverified callers alike, no
    /// timeline spans [`MAX_BUCKETS`] buckets once a record is reduced: the span is read
    /// only when `Series::add` says it may have changed, so this holds only if it says so
    /// whenever it does (newest bucket, older bucket, a bucket before every other).
    #[test]
    fn no_timeline_outgrows_the_bound_after_any_record() {
        let mut summary = Summary::default();
        let start = 1_700_000_000_000;
        let step = MIN_BUCKET_MS * 7;
        // Newest first, then forward again from the oldest, each time twice, so that counts
        // land in the newest bucket, in older ones and in new buckets on either side.
        let times = (0..300u64)
            .rev()
            .chain(0..300)
            .flat_map(|i| [start + i * step, start + i * step]);
        for (n, time_ms) in times.enumerate() {
            for principal in [Some("spiffe://x/a"), None] {
                let o = Observation {
                    principal,
                    ..call(time_ms, "", "orders:read", n % 3 != 0)
                };
                summary.observe(&o, &[]);
                let widest = summary
                    .identities
                    .values()
                    .map(|s| s.series.span())
                    .chain([summary.unverified_series.span()])
                    .max();
                assert!(
                    widest < Some(MAX_BUCKETS as u64),
                    "record {n} ({principal:?}): a span of {widest:?} buckets"
                );
            }
        }
        assert!(summary.bucket_ms > MIN_BUCKET_MS, "the width never grew");
    }

    /// The span can change only when counts go elsewhere than the newest bucket, so only then
    /// is it read.
    #[test]
    fn a_series_says_when_its_span_may_have_changed() {
        let mut series = Series::default();
        let added: Vec<bool> = [
            (5, 1),
            (5, 1),
            (7, 1),
            (7, 1),
            (3, 1),
            (3, 1),
            (7, 1),
            (6, 1),
        ]
        .into_iter()
        .map(|(index, calls)| series.add(index, calls, 0))
        .collect();
        // A repeat of an older bucket is summed in place but still says "added" (the span
        // is unchanged then, and reading it once more costs nothing wrong).
        assert_eq!(added, [true, false, true, false, true, true, false, true]);
        assert_eq!(series.span(), 4);
    }

    #[test]
    fn a_series_stays_sorted_whatever_order_buckets_arrive_in() {
        let mut series = Series::default();
        for (index, calls) in [(5, 1), (5, 1), (7, 1), (3, 1), (7, 1), (6, 1), (1, 1)] {
            series.add(index, calls, 0);
        }
        let expected = [(1, 1, 0), (3, 1, 0), (5, 2, 0), (6, 1, 0), (7, 2, 0)];
        assert!(series.buckets().eq(expected));
        assert_eq!((series.len(), series.span()), (5, 6));
        // Written as one list; read back equal, though split differently inside.
        let json = serde_json::to_string(&series).unwrap();
        assert_eq!(json, "[[1,1,0],[3,1,0],[5,2,0],[6,1,0],[7,2,0]]");
        let back: Series = serde_json::from_str(&json).unwrap();
        assert_eq!(back, series);
        series.rebin(4);
        assert!(series.buckets().eq([(0, 2, 0), (1, 5, 0)]));
        series.add(1, 1, 1);
        assert!(series.buckets().eq([(0, 2, 0), (1, 6, 1)]));
    }

    #[test]
    fn a_repeated_issuer_or_user_is_counted_once() {
        let mut summary = Summary::default();
        for (user, issuer) in [("u1", "i1"), ("u1", "i1"), ("u2", "i1"), ("u1", "i2")] {
            let o = Observation {
                user: Some(user),
                issuer: Some(issuer),
                delegated: true,
                ..call(1, "a", "read", true)
            };
            summary.observe(&o, &[]);
        }
        let a = &summary.identities["a"];
        assert_eq!(a.users.iter().collect::<Vec<_>>(), ["u1", "u2"]);
        assert_eq!(a.issuers.iter().collect::<Vec<_>>(), ["i1", "i2"]);
        assert_eq!(a.kind, Kind::Workload);
    }

    /// Review finding: the expiry shown was the earliest of the whole window (long past, with
    /// short-lived credentials), not that of the credentials in use.
    #[test]
    fn the_expiry_is_that_of_the_latest_credentials() {
        let mut summary = Summary::default();
        for (time_ms, expires_ms) in [(5_000, 9_000), (1_000, 2_000)] {
            let o = Observation {
                expires_ms: Some(expires_ms),
                ..call(time_ms, "a", "read", true)
            };
            summary.observe(&o, &[]);
        }
        assert_eq!(summary.identities["a"].expiry_ms, Some(9_000));
    }

    /// Review finding: the nearest expiry was kept against the identity's last-seen
    /// millisecond, which a call without credentials' expiry (app-only, no token) moves too:
    /// a token refreshed in that millisecond then left the old one's expiry, observed or merged.
    #[test]
    fn a_call_without_an_expiry_does_not_hold_back_the_next_credentials() {
        let token = |time_ms, expires_ms| Observation {
            expires_ms: Some(expires_ms),
            ..call(time_ms, "a", "read", true)
        };
        let mut summary = Summary::default();
        summary.observe(&token(1, 9_000), &[]);
        summary.observe(&call(2, "a", "list", true), &[]);
        summary.observe(&token(2, 12_000), &[]);
        assert_eq!(summary.identities["a"].expiry_ms, Some(12_000));
        let mut earlier = Summary::default();
        earlier.observe(&token(1, 9_000), &[]);
        earlier.observe(&call(2, "a", "list", true), &[]);
        let mut later = Summary::default();
        later.observe(&token(2, 12_000), &[]);
        let mut merged = earlier.clone();
        merged.merge(&later);
        assert_eq!(merged.identities["a"].expiry_ms, Some(12_000));
        let mut merged = later.clone();
        merged.merge(&earlier);
        assert_eq!(merged.identities["a"].expiry_ms, Some(12_000));
        // Saved (`--save-summary`) and read back (`report merge`): the same.
        let saved = |s: &Summary| -> Summary {
            serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap()
        };
        let mut merged = saved(&earlier);
        merged.merge(&saved(&later));
        assert_eq!(merged.identities["a"].expiry_ms, Some(12_000));
    }

    /// Two credentials in one millisecond (two replicas, one rotated): the nearest expiry,
    /// whichever the writer took first, observed or merged.
    #[test]
    fn credentials_of_one_millisecond_give_the_nearest_expiry_in_any_order() {
        let at = |expires_ms| Observation {
            expires_ms: Some(expires_ms),
            ..call(5_000, "a", "read", true)
        };
        for order in [[9_000, 7_000], [7_000, 9_000]] {
            let mut summary = Summary::default();
            order.into_iter().for_each(|e| summary.observe(&at(e), &[]));
            assert_eq!(summary.identities["a"].expiry_ms, Some(7_000), "{order:?}");
            let [first, second] = order.map(|e| {
                let mut one = Summary::default();
                one.observe(&at(e), &[]);
                one
            });
            let mut merged = first;
            merged.merge(&second);
            assert_eq!(merged.identities["a"].expiry_ms, Some(7_000), "{order:?}");
        }
    }

    #[test]
    fn the_live_inventory_stays_bounded() {
        let mut inventory = Inventory::new(2);
        for (t, who) in [(1, "a"), (2, "b"), (3, "a"), (4, "c")] {
            inventory.observe(&call(t, who, "read", true), &[]);
        }
        let mut held: Vec<_> = inventory.summary().identities.keys().cloned().collect();
        held.sort();
        assert_eq!(held, ["a", "c"]);
        assert_eq!(inventory.evicted(), 1);
    }

    /// The pairs an identity used, as a plain sorted map would count them.
    fn model_of(calls: &[(u64, usize, bool)], names: &[String]) -> BTreeMap<String, Usage> {
        let mut model: BTreeMap<String, Usage> = BTreeMap::new();
        for &(time_ms, name, allowed) in calls {
            let usage = model.entry(pair(&names[name], "Order")).or_default();
            usage.calls += 1;
            usage.allowed += u64::from(allowed);
            usage.last_ms = usage.last_ms.max(time_ms);
        }
        model
    }

    proptest::proptest! {
        /// Held in the summary or spilled to the heap past [`INLINE_PAIRS`], the pairs count
        /// as a sorted map does, in its order, and are written and read back as one.
        #[test]
        fn pairs_count_as_a_sorted_map_does(
            calls in proptest::collection::vec((0..1_000_000u64, 0..8usize, proptest::bool::ANY), 0..200),
        ) {
            let names: Vec<String> = (0..8).map(|i| format!("action-{}", (i * 5) % 8)).collect();
            let mut summary = Summary::default();
            for &(time_ms, name, allowed) in &calls {
                summary.observe(&call(time_ms, "a", &names[name], allowed), &[]);
            }
            let model = model_of(&calls, &names);
            let used = summary
                .identities
                .get("a")
                .map(|a| a.used.clone())
                .unwrap_or_default();
            let seen: Vec<(String, Usage)> =
                used.iter().map(|(k, u)| (k.to_string(), *u)).collect();
            let expected: Vec<(String, Usage)> = model.clone().into_iter().collect();
            proptest::prop_assert_eq!(seen, expected);
            for (key, usage) in &model {
                proptest::prop_assert_eq!(used.get(key), Some(usage));
            }
            proptest::prop_assert!(!used.contains_key("never Order"));
            let json = serde_json::to_string(&used).unwrap();
            proptest::prop_assert_eq!(&json, &serde_json::to_string(&model).unwrap());
            let back: Pairs = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(back, used);
        }
    }

    /// Review finding: reducing no decisions still made the identity, a timeline bucket, its
    /// users and pairs, and could evict another identity.
    #[test]
    fn no_decisions_change_nothing() {
        let mut inventory = Inventory::new(1);
        inventory.observe(&call(1, "a", "read", true), &[]);
        let before = inventory.summary.clone();
        let mut o = call(2, "b", "write", false);
        o.user = Some("alice");
        inventory.observe_repeated(&o, 0, &["p1"]);
        assert_eq!(inventory.summary, before);
        assert_eq!(inventory.evicted, 0);
    }

    proptest::proptest! {
        /// Reducing a run of alike decisions at once leaves the same inventory as reducing
        /// each: across identities evicted, callers never verified, denials, users, issuers,
        /// expiries, policies, and timelines whose buckets widen.
        #[test]
        fn a_run_reduced_at_once_is_reduced_as_each_of_its_decisions(
            runs in proptest::collection::vec(
                (0..4usize, 0..4usize, 0..3usize, proptest::bool::ANY, proptest::bool::ANY, 1..40u64),
                1..60,
            ),
        ) {
            let (mut each, mut at_once) = (Inventory::new(2), Inventory::new(2));
            let mut time_ms = 1_790_000_000_000u64;
            for (step, who, action, allowed, delegated, n) in runs {
                // The same millisecond, the next, a minute on, or hours on (wider buckets).
                time_ms += [0, 1, 60_000, 5 * 3_600_000][step];
                let mut o = call(time_ms, ["a", "b", "c", ""][who], ["read", "write", "list"][action], allowed);
                if who == 3 {
                    o.principal = None;
                    o.reason = "token_signature";
                }
                o.delegated = delegated;
                o.user = delegated.then_some("alice");
                o.issuer = Some("https://issuer");
                o.expires_ms = Some(i64::try_from(time_ms).unwrap_or(i64::MAX) + 60_000);
                let policies: &[&str] = if allowed { &["p1", "p2"] } else { &[] };
                for _ in 0..n {
                    each.observe(&o, policies);
                }
                at_once.observe_repeated(&o, n, policies);
                proptest::prop_assert_eq!(&each.summary, &at_once.summary);
                proptest::prop_assert_eq!(each.evicted, at_once.evicted);
            }
        }
    }

    #[test]
    fn pairs_past_the_bound_are_not_held_and_the_summary_says_so() {
        let mut summary = Summary::default();
        let actions: Vec<String> = (0..MAX_PAIRS + 5).map(|i| format!("a{i:05}")).collect();
        for (t, action) in actions.iter().enumerate() {
            summary.observe(&call(t as u64, "a", action, true), &[]);
        }
        // A pair held before the bound is still counted after it.
        summary.observe(&call(9_999, "a", &actions[0], false), &[]);
        let a = &summary.identities["a"];
        assert_eq!(a.used.len(), MAX_PAIRS);
        assert!(a.used_saturated);
        assert!(!a.used.contains_key(&pair(&actions[MAX_PAIRS], "Order")));
        let first = a.used.get(&pair(&actions[0], "Order")).copied();
        assert_eq!(
            first,
            Some(Usage {
                calls: 2,
                allowed: 1,
                last_ms: 9_999
            })
        );
        // Merged into a summary of other pairs, the bound holds too.
        let mut other = Summary::default();
        other.observe(&call(1, "a", "zzz", true), &[]);
        other.merge(&summary);
        let merged = &other.identities["a"];
        assert_eq!(merged.used.len(), MAX_PAIRS);
        assert!(merged.used.contains_key("zzz Order") && merged.used_saturated);
    }

    /// A summary of `who` that used `actions`, each once, allowed, at `time_ms`.
    fn used_each(who: &str, actions: &[String], time_ms: u64) -> Summary {
        let mut summary = Summary::default();
        for action in actions {
            summary.observe(&call(time_ms, who, action, true), &[]);
        }
        summary
    }

    /// Review findings: merging pairs held on the heap (past [`INLINE_PAIRS`]) that both sides
    /// share was untested, and so was the bound reached by a merge alone.
    #[test]
    fn merged_pairs_add_up_and_stay_within_the_bound() {
        let names = |range: std::ops::Range<usize>| -> Vec<String> {
            range.map(|i| format!("a{i:04}")).collect()
        };
        // Overlapping: 300 shared, 900 in all.
        let mut left = used_each("a", &names(0..600), 5);
        let right = used_each("a", &names(300..900), 9);
        left.merge(&right);
        let mut whole = used_each("a", &names(0..600), 5);
        for action in names(300..900) {
            whole.observe(&call(9, "a", &action, true), &[]);
        }
        let (merged, expected) = (&left.identities["a"], &whole.identities["a"]);
        assert_eq!(merged.used, expected.used);
        assert_eq!(merged.used.len(), 900);
        assert!(!merged.used_saturated);
        let shared = merged.used.get("a0450 Order").copied();
        assert_eq!(
            shared,
            Some(Usage {
                calls: 2,
                allowed: 2,
                last_ms: 9
            })
        );
        // Disjoint, 1,200 in all: the other's first pairs in pair order fill the bound.
        let mut left = used_each("a", &names(0..600), 5);
        left.merge(&used_each("a", &names(600..1_200), 9));
        let merged = &left.identities["a"];
        assert!(merged.used_saturated);
        let held: Vec<String> = merged.used.keys().map(|k| k.to_string()).collect();
        let expected: Vec<String> = names(0..MAX_PAIRS)
            .iter()
            .map(|a| pair(a, "Order"))
            .collect();
        assert_eq!(held, expected);
    }

    /// Review finding: pairs read back were only ever given in order.
    #[test]
    fn pairs_read_in_any_order_are_held_sorted_and_a_repeated_one_keeps_its_last() {
        let json = r#"{"b X":{"calls":1,"allowed":1,"last_ms":1},"a X":{"calls":2,"allowed":0,"last_ms":2},"a X":{"calls":3,"allowed":3,"last_ms":3}}"#;
        let pairs: Pairs = serde_json::from_str(json).unwrap();
        let read: Vec<(&str, u64)> = pairs.iter().map(|(k, u)| (&**k, u.calls)).collect();
        assert_eq!(read, [("a X", 3), ("b X", 1)]);
        assert!(pairs.get("b X").is_some() && pairs.get("c X").is_none());
    }

    #[test]
    fn pair_spellings_go_with_the_identities_that_used_them() {
        // Review finding: the shared spellings were kept after every identity naming them was
        // evicted, so a long-running inventory held every pair it had ever seen (up to
        // 65,536 of them, any length a PEP chose).
        let mut inventory = Inventory::new(4);
        for i in 0..2_000u64 {
            let (who, action) = (format!("app-{i}"), format!("action-{i}"));
            inventory.observe(&call(i, &who, &action, true), &[]);
        }
        let live = inventory.summary().identities.len();
        let kept = inventory.summary.pair_names.known.len();
        assert!(
            kept <= 2 * live + 64,
            "{kept} spellings kept for {live} identities"
        );
    }
}
