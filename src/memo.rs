//! A small per-thread memo: a fixed number of slots in front of a shared, digest-keyed cache,
//! for the values a worker needs again and again (a sidecar serves a handful of peers, each
//! making the same few calls).
//!
//! A shared cache costs a repeated caller a digest of its key, a lookup under a shard lock and
//! a clone of a shared `Arc`: atomic writes to cache lines that every worker touches. Here the
//! key is the raw bytes themselves (a credential, a query's encoding), compared in full, so no
//! digest is needed and no two keys can share an entry; the value is this thread's own copy,
//! so a hit writes nothing another thread reads.
//!
//! Entries carry what the shared cache's do: the owning cache set (tests run many servers in
//! one process), the snapshot generation, and the expiry (never later than the shared entry's).
//! A memo is [`SLOTS`] slots in sets of [`WAYS`], the set chosen by a fast hash of the key:
//! bounded by construction. Keys that hash to one set are all kept up to [`WAYS`]; one more
//! replaces the oldest, and the shared cache still answers it.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per thread in a memo, unless it says otherwise.
pub const SLOTS: usize = 128;

/// Slots per set. Keys made in turn that outnumber their set's slots push one another out on
/// every turn and all miss for as long as they are made: with one slot a set, six AuthZEN
/// calls missed one time in five; with two (and 32 sets), three of the demo's 22 forward-auth
/// calls shared a set and one request in eight was decided afresh every time. With four ways
/// in 32 sets, 22 keys overflow a set about one time in sixty (1.6%; 24 keys 2.5%).
pub const WAYS: usize = 4;

/// The largest key a slot keeps. A slot holds its raw key, so without a cap a caller could park
/// megabytes per slot (a refused oversized token, or a valid certificate padded with text the
/// PEM parser skips); larger ones take the shared, digest-keyed path. Real certificates, tokens
/// and query encodings are a few kilobytes.
pub const MAX_KEPT: usize = 16 * 1024;

/// A fresh owner tag, one per set of shared caches, so one server's memo entries are never
/// another's.
pub fn next_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Slot<V> {
    owner: u64,
    generation: u64,
    /// When it was kept: it is not good before (a clock stepped back must not bring back an
    /// answer made later, when a not-yet-valid credential had become valid).
    kept_at: i64,
    expires_at: i64,
    raw: Box<[u8]>,
    /// `raw`'s hash: compared before the bytes, so the other ways of a set cost a compare of
    /// eight bytes, not of a credential's thousand.
    hash: u64,
    value: V,
    /// When it was put, in this memo's own count: the set's oldest slot is replaced first.
    stamp: u64,
}

/// One thread's `N` slots for one kind of value (declare it with `thread_local!`).
pub struct Memo<V, const N: usize = SLOTS> {
    slots: Vec<Option<Slot<V>>>,
    puts: u64,
}

impl<V: Clone, const N: usize> Default for Memo<V, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Clone, const N: usize> Memo<V, N> {
    /// An empty memo (its slots are allocated on first use).
    pub const fn new() -> Self {
        Self {
            slots: Vec::new(),
            puts: 0,
        }
    }

    /// `raw`'s hash, which chooses its set.
    fn hash(raw: &[u8]) -> u64 {
        // Fixed seed: the set an attacker can aim at only costs a fall-back to the shared
        // cache, and the stored key is compared in full.
        foldhash::fast::FixedState::default().hash_one(raw)
    }

    /// The set of the key hashed to `hash`.
    fn index(hash: u64) -> usize {
        usize::try_from(hash % (N / WAYS).max(1) as u64).unwrap_or(0)
    }

    /// The slots of the set of the key hashed to `hash`.
    fn ways(hash: u64) -> std::ops::Range<usize> {
        let first = Self::index(hash) * WAYS;
        first.min(N)..(first + WAYS).min(N)
    }

    /// The value kept for exactly `raw` and until when it may be used, if still good.
    fn get(&self, owner: u64, generation: u64, now: i64, raw: &[u8]) -> Option<(V, i64)> {
        if raw.len() > MAX_KEPT {
            return None;
        }
        let hash = Self::hash(raw);
        let slot = self
            .slots
            .get(Self::ways(hash))?
            .iter()
            .flatten()
            .find(|slot| {
                slot.hash == hash
                    && slot.owner == owner
                    && slot.generation == generation
                    && slot.kept_at <= now
                    && slot.expires_at > now
                    && *slot.raw == *raw
            })?;
        Some((slot.value.clone(), slot.expires_at))
    }

    fn put(&mut self, owner: u64, generation: u64, span: (i64, i64), raw: &[u8], value: V) {
        let (kept_at, expires_at) = span;
        // Too large to keep, or already over (it would only push out a live entry).
        if raw.len() > MAX_KEPT || expires_at <= kept_at {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(N, || None);
        }
        self.puts += 1;
        let stamp = self.puts;
        let hash = Self::hash(raw);
        let Some(ways) = self.slots.get_mut(Self::ways(hash)) else {
            return;
        };
        // The slot holding this key already, else an empty one, else the oldest.
        let at = ways
            .iter()
            .position(|slot| {
                slot.as_ref()
                    .is_some_and(|slot| slot.hash == hash && *slot.raw == *raw)
            })
            .or_else(|| ways.iter().position(Option::is_none))
            .or_else(|| {
                (0..ways.len())
                    .min_by_key(|&i| ways.get(i).and_then(|s| s.as_ref()).map(|s| s.stamp))
            });
        if let Some(slot) = at.and_then(|at| ways.get_mut(at)) {
            *slot = Some(Slot {
                owner,
                generation,
                kept_at,
                expires_at,
                raw: raw.into(),
                hash,
                value,
                stamp,
            });
        }
    }
}

/// A thread's memo of `V`s, as `thread_local!` declares it.
pub type Memos<V, const N: usize = SLOTS> = std::thread::LocalKey<RefCell<Memo<V, N>>>;

/// `memos`'s value for exactly `raw` and until when it may be used, if still good; a miss
/// when this thread's memo is in use further up the stack or already torn down.
pub fn look<V: Clone, const N: usize>(
    memos: &'static Memos<V, N>,
    owner: u64,
    generation: u64,
    now: i64,
    raw: &[u8],
) -> Option<(V, i64)> {
    memos
        .try_with(|m| m.try_borrow().ok()?.get(owner, generation, now, raw))
        .ok()
        .flatten()
}

/// Keeps `value` for `raw` in `memos`, good from `span.0` (now) until `span.1`; a thread whose
/// memo is in use or already torn down simply does not remember.
pub fn keep<V: Clone, const N: usize>(
    memos: &'static Memos<V, N>,
    owner: u64,
    generation: u64,
    span: (i64, i64),
    raw: &[u8],
    value: impl FnOnce() -> V,
) {
    let _ = memos.try_with(|m| {
        if let Ok(mut memo) = m.try_borrow_mut() {
            memo.put(owner, generation, span, raw, value());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_needs_the_same_owner_generation_bytes_and_an_unexpired_entry() {
        let mut memo: Memo<u32> = Memo::new();
        assert_eq!(memo.get(1, 1, 0, b"abc"), None, "empty");
        memo.put(1, 1, (10, 100), b"abc", 7);
        assert_eq!(memo.get(1, 1, 99, b"abc"), Some((7, 100)));
        assert_eq!(memo.get(2, 1, 99, b"abc"), None, "another server's");
        assert_eq!(memo.get(1, 2, 99, b"abc"), None, "an older snapshot's");
        assert_eq!(memo.get(1, 1, 100, b"abc"), None, "expired");
        assert_eq!(memo.get(1, 1, 99, b"abd"), None, "other bytes");
        assert_eq!(memo.get(1, 1, 9, b"abc"), None, "before it was kept");
        memo.put(1, 1, (100, 100), b"abd", 8);
        assert_eq!(memo.get(1, 1, 100, b"abc"), None);
        assert_eq!(
            memo.get(1, 1, 99, b"abc"),
            Some((7, 100)),
            "an entry already over is not kept"
        );
    }

    /// Review finding: the refusal memo kept a refused token whatever its size (a token over
    /// the size limit is refused, finally), so 64 slots of megabyte tokens stayed in memory.
    #[test]
    fn a_credential_too_large_to_keep_is_not_kept() {
        let mut memo: Memo<u32> = Memo::new();
        let big = "a".repeat(1 << 20);
        memo.put(1, 1, (0, 100), big.as_bytes(), 7);
        assert_eq!(memo.get(1, 1, 0, big.as_bytes()), None);
        assert!(
            memo.slots
                .iter()
                .flatten()
                .all(|slot| slot.raw.len() <= MAX_KEPT),
            "a slot holds {} bytes",
            memo.slots
                .iter()
                .flatten()
                .map(|s| s.raw.len())
                .max()
                .unwrap_or(0)
        );
    }

    /// Two keys that hash to one set.
    fn colliding_pair() -> (Vec<u8>, Vec<u8>) {
        let first = b"caller 0".to_vec();
        let second = (1..)
            .map(|i| format!("caller {i}").into_bytes())
            .find(|raw| {
                Memo::<u32>::index(Memo::<u32>::hash(raw))
                    == Memo::<u32>::index(Memo::<u32>::hash(&first))
            })
            .unwrap();
        (first, second)
    }

    /// Found profiling the AuthZEN door: its benchmark's six calls missed the memo one time in
    /// five, because two of them hashed to one slot and pushed each other out on every turn.
    /// Two callers whose keys collide must both be remembered.
    #[test]
    fn two_keys_that_share_a_slot_are_both_kept() {
        let (first, second) = colliding_pair();
        let mut memo: Memo<u32> = Memo::new();
        for _ in 0..3 {
            memo.put(1, 1, (0, 100), &first, 1);
            memo.put(1, 1, (0, 100), &second, 2);
            assert_eq!(memo.get(1, 1, 0, &first), Some((1, 100)));
            assert_eq!(memo.get(1, 1, 0, &second), Some((2, 100)));
        }
    }

    /// Review of the sets: a key put again goes back into its own slot, never beside a stale
    /// copy of itself; and the second way checks owner and generation as the first does.
    #[test]
    fn a_key_put_again_keeps_one_slot_and_the_second_way_is_checked_alike() {
        let (first, second) = colliding_pair();
        let mut memo: Memo<u32> = Memo::new();
        memo.put(1, 1, (0, 100), &first, 1);
        memo.put(1, 1, (0, 100), &second, 2);
        memo.put(1, 1, (0, 100), &second, 3);
        assert_eq!(memo.get(1, 1, 0, &first), Some((1, 100)));
        assert_eq!(memo.get(1, 1, 0, &second), Some((3, 100)));
        let copies = memo
            .slots
            .iter()
            .flatten()
            .filter(|s| *s.raw == *second)
            .count();
        assert_eq!(copies, 1);
        assert_eq!(memo.get(2, 1, 0, &second), None, "another server's");
        assert_eq!(memo.get(1, 2, 0, &second), None, "an older snapshot's");
        assert_eq!(memo.get(1, 1, 100, &second), None, "expired");
    }

    #[test]
    fn a_set_holds_its_newest_keys_and_the_slots_stay_fixed() {
        let mut memo: Memo<usize> = Memo::new();
        for i in 0..10_000 {
            let raw = format!("credential {i}");
            memo.put(1, 1, (0, 100), raw.as_bytes(), i);
            assert_eq!(
                memo.get(1, 1, 0, raw.as_bytes()),
                Some((i, 100)),
                "just kept"
            );
        }
        assert_eq!(memo.slots.len(), SLOTS);
        assert!(memo.slots.iter().all(Option::is_some), "every slot is used");
        // Every slot holds one of the last WAYS credentials that mapped to its set.
        for slot in memo.slots.iter().flatten() {
            let newer = (slot.value + 1..10_000)
                .filter(|j| {
                    let hash = Memo::<usize>::hash(format!("credential {j}").as_bytes());
                    Memo::<usize>::index(hash) == Memo::<usize>::index(slot.hash)
                })
                .count();
            assert!(newer < WAYS, "{:?} outlived {newer} newer keys", slot.raw);
        }
    }

    /// A sidecar's worker sees a few dozen distinct calls again and again (the demo's
    /// forward-auth mix is 22). With 32 sets of two, three of them shared a set and pushed
    /// one another out on every turn: about one request in eight was decided afresh, with
    /// its credentials verified, every time. Every one of 24 calls kept in turn is still
    /// there after a second turn, for keys of three shapes (a request line with a SPIFFE ID, a
    /// number, a token-like text); the old sizes lost one of the first shape's.
    #[test]
    fn a_few_dozen_calls_made_in_turn_all_stay_kept() {
        for shape in [
            "GET /orders/{i} spiffe://demo/app",
            "{i}",
            "token.{i}.signature",
        ] {
            let mut memo: Memo<usize> = Memo::new();
            let keys: Vec<String> = (0..24)
                .map(|i| shape.replace("{i}", &i.to_string()))
                .collect();
            for _ in 0..2 {
                for (i, key) in keys.iter().enumerate() {
                    if memo.get(1, 1, 0, key.as_bytes()).is_none() {
                        memo.put(1, 1, (0, 100), key.as_bytes(), i);
                    }
                }
            }
            let missed: Vec<&String> = keys
                .iter()
                .filter(|k| memo.get(1, 1, 0, k.as_bytes()).is_none())
                .collect();
            assert!(missed.is_empty(), "{shape}: {missed:?}");
        }
    }
}
