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
//! bounded by construction. Two keys that hash to one set are both kept; a third replaces the
//! older, and the shared cache still answers it.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per thread in a memo, unless it says otherwise.
pub const SLOTS: usize = 64;

/// Slots per set. With one (direct-mapped), two callers whose keys hashed alike pushed each
/// other out on every turn and missed for as long as both called: six AuthZEN calls, one
/// miss in five.
pub const WAYS: usize = 2;

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
    value: V,
    /// When it was put, in this memo's own count: the set's older slot is replaced first.
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

    /// The set `raw` belongs in.
    fn index(raw: &[u8]) -> usize {
        // Fixed seed: the set an attacker can aim at only costs a fall-back to the shared
        // cache, and the stored key is compared in full.
        let hash = foldhash::fast::FixedState::default().hash_one(raw);
        usize::try_from(hash % (N / WAYS).max(1) as u64).unwrap_or(0)
    }

    /// The slots of `raw`'s set.
    fn ways(raw: &[u8]) -> std::ops::Range<usize> {
        let first = Self::index(raw) * WAYS;
        first.min(N)..(first + WAYS).min(N)
    }

    /// The value kept for exactly `raw` and until when it may be used, if still good.
    fn get(&self, owner: u64, generation: u64, now: i64, raw: &[u8]) -> Option<(V, i64)> {
        if raw.len() > MAX_KEPT {
            return None;
        }
        let slot = self
            .slots
            .get(Self::ways(raw))?
            .iter()
            .flatten()
            .find(|slot| {
                slot.owner == owner
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
        let Some(ways) = self.slots.get_mut(Self::ways(raw)) else {
            return;
        };
        // The slot holding this key already, else an empty one, else the older.
        let at = ways
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|slot| *slot.raw == *raw))
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
            .find(|raw| Memo::<u32>::index(raw) == Memo::<u32>::index(&first))
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
                    Memo::<usize>::index(format!("credential {j}").as_bytes())
                        == Memo::<usize>::index(&slot.raw)
                })
                .count();
            assert!(newer < WAYS, "{:?} outlived {newer} newer keys", slot.raw);
        }
    }
}
