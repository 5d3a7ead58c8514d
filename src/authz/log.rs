//! The decision log line. Evidence for every decision is the audit record's job; the log is for
//! operators, so allows go to `debug` and denies to `info` at most once a second per reason
//! code, each line saying how many denies of that reason it stands for. A flood of forged or
//! unauthenticated requests therefore costs a counter increment, not a line each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::Stripes;
use crate::verdict::{DecisionId, Outcome, ReasonCode, Verdict};

/// Per reason code: the second of the last `info` line, and the denies since.
#[derive(Debug)]
pub struct DecisionLog {
    epoch: Instant,
    slots: Box<[Slot]>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Seconds since `epoch` of the last `info` line, plus one (0: never).
    last: AtomicU64,
    /// Denies not written at `info` since that line; striped, because a flood of denials
    /// counts here on every request from every worker.
    quiet: Stripes,
}

impl Default for DecisionLog {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            slots: ReasonCode::ALL.iter().map(|_| Slot::default()).collect(),
        }
    }
}

impl DecisionLog {
    /// Writes the line for one decision: `debug` always, `info` for the first deny of its
    /// reason in a second.
    pub fn write(&self, id: DecisionId, verdict: &Verdict, elapsed: Duration) {
        let principal = verdict.principal.as_deref().unwrap_or("");
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        match &verdict.outcome {
            Outcome::Allow => tracing::debug!(
                decision.id = %id,
                principal.id = principal,
                policy.ids = ?verdict.determining,
                elapsed_us = micros,
                "request allowed"
            ),
            Outcome::Deny(denial) => match self.admit(denial.reason, self.epoch.elapsed()) {
                Some(also) => tracing::info!(
                    decision.id = %id,
                    principal.id = principal,
                    reason = denial.reason.as_str(),
                    detail = %denial.message,
                    policy.ids = ?verdict.determining,
                    elapsed_us = micros,
                    denies_since_last = also,
                    "request denied"
                ),
                None => tracing::debug!(
                    decision.id = %id,
                    principal.id = principal,
                    reason = denial.reason.as_str(),
                    detail = %denial.message,
                    policy.ids = ?verdict.determining,
                    elapsed_us = micros,
                    "request denied"
                ),
            },
        }
    }

    /// Whether a deny for `reason` at `at` (since the epoch) gets an `info` line, and if so how
    /// many denies of that reason went unwritten since the last one.
    fn admit(&self, reason: ReasonCode, at: Duration) -> Option<u64> {
        let slot = self.slots.get(reason.index())?;
        let second = at.as_secs().saturating_add(1);
        let last = slot.last.load(Ordering::Relaxed);
        if last < second
            && slot
                .last
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(slot.quiet.take());
        }
        slot.quiet.add(1);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_info_line_a_second_per_reason_counting_the_rest() {
        let log = DecisionLog::default();
        let at = Duration::from_millis;
        assert_eq!(log.admit(ReasonCode::TokenSignature, at(10)), Some(0));
        for ms in 11..1_000 {
            assert_eq!(log.admit(ReasonCode::TokenSignature, at(ms)), None);
        }
        // Another reason has its own second.
        assert_eq!(log.admit(ReasonCode::NoRoute, at(500)), Some(0));
        // The next second's first line says how many it stands for.
        assert_eq!(log.admit(ReasonCode::TokenSignature, at(1_000)), Some(989));
        assert_eq!(log.admit(ReasonCode::TokenSignature, at(1_001)), None);
        assert_eq!(log.admit(ReasonCode::TokenSignature, at(5_000)), Some(1));
    }

    #[test]
    fn every_reason_has_a_slot() {
        let log = DecisionLog::default();
        for (i, reason) in ReasonCode::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
            assert!(log.admit(*reason, Duration::ZERO).is_some());
        }
    }
}
