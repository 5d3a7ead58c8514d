//! A small per-thread memo in front of the shared credential caches, for the callers a worker
//! sees again and again (a sidecar serves a handful of peers).
//!
//! The shared caches are keyed by SHA-256 of the raw credential, which a repeated caller pays
//! for on every request (about a kilobyte of certificate and token), followed by a lookup
//! under a shard lock and a clone of a shared `Arc`: atomic writes to cache lines that both
//! workers touch. Here the key is the raw credential itself, compared byte for byte, so no
//! digest is needed and no two credentials can share an entry; the value is this thread's own
//! copy, so a hit writes nothing another thread reads.
//!
//! Entries carry what the shared cache's do: the owning cache set (tests run many servers in
//! one process), the snapshot generation, and the expiry. A memo is a fixed number of slots,
//! direct-mapped by a fast hash of the credential: bounded by construction; a collision only
//! replaces a slot, and the shared cache still answers.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Workload;
use super::token::{TokenError, VerifiedToken};

/// Slots per thread for each kind of credential.
const SLOTS: usize = 64;

/// The largest credential a slot keeps. A memo slot holds the raw credential, so without a cap
/// a caller could park megabytes per slot (a refused oversized token, or a valid certificate
/// padded with text the PEM parser skips); larger ones take the shared, digest-keyed path.
/// Real certificates and tokens are a few kilobytes.
pub(super) const MAX_KEPT: usize = 16 * 1024;

/// The owner tag of one [`super::IdentityCaches`], so one server's memo entries are never
/// another's.
pub(super) fn next_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Slot<V> {
    owner: u64,
    generation: u64,
    expires_at: i64,
    raw: Box<str>,
    value: V,
}

struct Memo<V> {
    slots: Vec<Option<Slot<V>>>,
}

impl<V: Clone> Memo<V> {
    const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    fn index(raw: &str) -> usize {
        // Fixed seed: the slot an attacker can aim at only costs a fall-back to the shared
        // cache, and the stored credential is compared in full.
        let hash = foldhash::fast::FixedState::default().hash_one(raw);
        usize::try_from(hash % SLOTS as u64).unwrap_or(0)
    }

    fn get(&self, owner: u64, generation: u64, now: i64, raw: &str) -> Option<V> {
        if raw.len() > MAX_KEPT {
            return None;
        }
        let slot = self.slots.get(Self::index(raw))?.as_ref()?;
        (slot.owner == owner
            && slot.generation == generation
            && slot.expires_at > now
            && *slot.raw == *raw)
            .then(|| slot.value.clone())
    }

    fn put(&mut self, owner: u64, generation: u64, expires_at: i64, raw: &str, value: V) {
        if raw.len() > MAX_KEPT {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        if let Some(slot) = self.slots.get_mut(Self::index(raw)) {
            *slot = Some(Slot {
                owner,
                generation,
                expires_at,
                raw: raw.into(),
                value,
            });
        }
    }
}

thread_local! {
    static CERTS: RefCell<Memo<Workload>> = const { RefCell::new(Memo::new()) };
    static TOKENS: RefCell<Memo<Arc<VerifiedToken>>> = const { RefCell::new(Memo::new()) };
    static REFUSED: RefCell<Memo<TokenError>> = const { RefCell::new(Memo::new()) };
}

type Memos<V> = std::thread::LocalKey<RefCell<Memo<V>>>;

/// `memos`'s value for exactly `raw`, if still good; a miss when this thread's memo is in use
/// further up the stack or already torn down.
fn look<V: Clone>(
    memos: &'static Memos<V>,
    owner: u64,
    generation: u64,
    now: i64,
    raw: &str,
) -> Option<V> {
    memos
        .try_with(|m| m.try_borrow().ok()?.get(owner, generation, now, raw))
        .ok()
        .flatten()
}

/// Keeps `value` for `raw` until `expires_at` in `memos`; a thread whose memo is in use or
/// already torn down simply does not remember.
fn keep<V: Clone>(
    memos: &'static Memos<V>,
    owner: u64,
    generation: u64,
    expires_at: i64,
    raw: &str,
    value: impl FnOnce() -> V,
) {
    let _ = memos.try_with(|m| {
        if let Ok(mut memo) = m.try_borrow_mut() {
            memo.put(owner, generation, expires_at, raw, value());
        }
    });
}

/// The workload verified earlier on this thread from exactly `raw`, if still good.
pub(super) fn cert(owner: u64, generation: u64, now: i64, raw: &str) -> Option<Workload> {
    look(&CERTS, owner, generation, now, raw)
}

/// Remembers the workload verified from `raw` until `expires_at`.
pub(super) fn keep_cert(owner: u64, generation: u64, expires_at: i64, raw: &str, w: &Workload) {
    keep(&CERTS, owner, generation, expires_at, raw, || w.clone());
}

/// The token verified earlier on this thread from exactly `raw`, if still good.
pub(super) fn token(
    owner: u64,
    generation: u64,
    now: i64,
    raw: &str,
) -> Option<Arc<VerifiedToken>> {
    look(&TOKENS, owner, generation, now, raw)
}

/// Remembers the token verified from `raw` until `expires_at`, as this thread's own copy.
pub(super) fn keep_token(
    owner: u64,
    generation: u64,
    expires_at: i64,
    raw: &str,
    t: &VerifiedToken,
) {
    keep(&TOKENS, owner, generation, expires_at, raw, || {
        Arc::new(t.clone())
    });
}

/// The final refusal of exactly `raw` remembered earlier on this thread, if still good.
pub(super) fn refusal(owner: u64, generation: u64, now: i64, raw: &str) -> Option<TokenError> {
    look(&REFUSED, owner, generation, now, raw)
}

/// Remembers the final refusal of `raw` (its message already cut to size) until `expires_at`.
pub(super) fn keep_refusal(
    owner: u64,
    generation: u64,
    expires_at: i64,
    raw: &str,
    refusal: &TokenError,
) {
    keep(&REFUSED, owner, generation, expires_at, raw, || {
        refusal.clone()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_needs_the_same_owner_generation_bytes_and_an_unexpired_entry() {
        let mut memo: Memo<u32> = Memo::new();
        assert_eq!(memo.get(1, 1, 0, "abc"), None, "empty");
        memo.put(1, 1, 100, "abc", 7);
        assert_eq!(memo.get(1, 1, 99, "abc"), Some(7));
        assert_eq!(memo.get(2, 1, 99, "abc"), None, "another server's");
        assert_eq!(memo.get(1, 2, 99, "abc"), None, "an older snapshot's");
        assert_eq!(memo.get(1, 1, 100, "abc"), None, "expired");
        assert_eq!(memo.get(1, 1, 99, "abd"), None, "other bytes");
    }

    /// Review finding: the refusal memo kept a refused token whatever its size (a token over
    /// the size limit is refused, finally), so 64 slots of megabyte tokens stayed in memory.
    #[test]
    fn a_credential_too_large_to_keep_is_not_kept() {
        let mut memo: Memo<u32> = Memo::new();
        let big = "a".repeat(1 << 20);
        memo.put(1, 1, 100, &big, 7);
        assert_eq!(memo.get(1, 1, 0, &big), None);
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

    #[test]
    fn the_newest_entry_wins_its_slot_and_the_slots_stay_fixed() {
        let mut memo: Memo<usize> = Memo::new();
        for i in 0..10_000 {
            let raw = format!("credential {i}");
            memo.put(1, 1, 100, &raw, i);
            assert_eq!(memo.get(1, 1, 0, &raw), Some(i), "just kept");
        }
        assert_eq!(memo.slots.len(), SLOTS);
        // Every slot holds the last credential that mapped to it, and nothing older.
        for slot in memo.slots.iter().flatten() {
            let newer = (slot.value + 1..10_000).any(|j| {
                Memo::<usize>::index(&format!("credential {j}")) == Memo::<usize>::index(&slot.raw)
            });
            assert!(!newer, "{} was displaced by a newer credential", slot.raw);
        }
    }

    /// Review finding: `LocalKey::with` panics once the thread's memo is torn down, and a
    /// thread-local destructor elsewhere (a tracing span, a pooled client) may still decide.
    #[test]
    fn a_memo_torn_down_is_a_miss_not_a_panic() {
        struct Late;
        impl Drop for Late {
            fn drop(&mut self) {
                let w = Workload {
                    name: super::super::cert::WorkloadName::Dns("late".into()),
                    thumbprint: None,
                    serial: None,
                };
                assert_eq!(cert(1, 1, 0, "x"), None);
                keep_cert(1, 1, 100, "x", &w);
                assert!(token(1, 1, 0, "x").is_none());
                assert!(refusal(1, 1, 0, "x").is_none());
                keep_refusal(1, 1, 100, "x", &TokenError::Signature);
            }
        }
        thread_local! {
            static LATE: RefCell<Option<Late>> = const { RefCell::new(None) };
        }
        let ended = std::thread::spawn(|| {
            // Destructors run in reverse order of first use: LATE's after the memo's.
            LATE.with(|late| *late.borrow_mut() = Some(Late));
            assert_eq!(cert(1, 1, 0, "x"), None);
            assert!(token(1, 1, 0, "x").is_none());
            assert!(refusal(1, 1, 0, "x").is_none());
        })
        .join();
        assert!(ended.is_ok());
    }
}
