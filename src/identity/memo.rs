//! The per-thread memos of verified certificates, verified tokens and final token refusals, in
//! front of the shared, SHA-256-keyed credential caches (see [`crate::memo`]).

use std::cell::RefCell;
use std::sync::Arc;

use super::Workload;
use super::token::{TokenError, VerifiedToken};
pub(super) use crate::memo::next_owner;
use crate::memo::{Memo, keep, look};

thread_local! {
    static CERTS: RefCell<Memo<Workload>> = const { RefCell::new(Memo::new()) };
    static TOKENS: RefCell<Memo<Arc<VerifiedToken>>> = const { RefCell::new(Memo::new()) };
    static REFUSED: RefCell<Memo<TokenError>> = const { RefCell::new(Memo::new()) };
}

/// The workload verified earlier on this thread from exactly `raw` and until when it may be
/// used, if still good.
pub(super) fn cert(owner: u64, generation: u64, now: i64, raw: &str) -> Option<(Workload, i64)> {
    look(&CERTS, owner, generation, now, raw.as_bytes())
}

/// Remembers the workload verified from `raw`, from `span.0` (now) until `span.1`.
pub(super) fn keep_cert(owner: u64, generation: u64, span: (i64, i64), raw: &str, w: &Workload) {
    keep(&CERTS, owner, generation, span, raw.as_bytes(), || {
        w.clone()
    });
}

/// The token verified earlier on this thread from exactly `raw` and until when it may be used,
/// if still good.
pub(super) fn token(
    owner: u64,
    generation: u64,
    now: i64,
    raw: &str,
) -> Option<(Arc<VerifiedToken>, i64)> {
    look(&TOKENS, owner, generation, now, raw.as_bytes())
}

/// Remembers the token verified from `raw`, from `span.0` (now) until `span.1`, as this
/// thread's own copy.
pub(super) fn keep_token(
    owner: u64,
    generation: u64,
    span: (i64, i64),
    raw: &str,
    t: &VerifiedToken,
) {
    keep(&TOKENS, owner, generation, span, raw.as_bytes(), || {
        Arc::new(t.clone())
    });
}

/// The final refusal of exactly `raw` remembered earlier on this thread and until when it
/// holds, if still good.
pub(super) fn refusal(
    owner: u64,
    generation: u64,
    now: i64,
    raw: &str,
) -> Option<(TokenError, i64)> {
    look(&REFUSED, owner, generation, now, raw.as_bytes())
}

/// Remembers the final refusal of `raw` (its message already cut to size), from `span.0` (now)
/// until `span.1`.
pub(super) fn keep_refusal(
    owner: u64,
    generation: u64,
    span: (i64, i64),
    raw: &str,
    refusal: &TokenError,
) {
    keep(&REFUSED, owner, generation, span, raw.as_bytes(), || {
        refusal.clone()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    issuer: None,
                    not_after: None,
                    not_before: None,
                };
                assert_eq!(cert(1, 1, 0, "x"), None);
                keep_cert(1, 1, (0, 100), "x", &w);
                assert!(token(1, 1, 0, "x").is_none());
                assert!(refusal(1, 1, 0, "x").is_none());
                keep_refusal(1, 1, (0, 100), "x", &TokenError::Signature);
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
