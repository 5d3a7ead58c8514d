//! Typed metric handles with domain verbs; the only place metric names are spelled.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::verdict::Verdict;

/// Handle for recording Tollgate's metrics (a zero-sized facade over the `metrics` recorder).
#[derive(Debug, Clone, Default)]
pub struct Metrics;

impl Metrics {
    /// One decision and its latency.
    pub fn decision(&self, verdict: &Verdict, elapsed: Duration) {
        let (decision, reason) = match verdict.reason() {
            None => ("allow", "allowed"),
            Some(code) => ("deny", code.as_str()),
        };
        counter!("tollgate_decisions_total", "decision" => decision, "reason" => reason)
            .increment(1);
        histogram!("tollgate_check_duration_seconds").record(elapsed.as_secs_f64());
    }

    /// A cache lookup.
    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        counter!("tollgate_cache_lookups_total", "cache" => cache, "result" => result).increment(1);
    }

    /// A cache hit its bound and was emptied.
    pub fn cache_flushed(&self, cache: &'static str) {
        counter!("tollgate_cache_flushes_total", "cache" => cache).increment(1);
    }

    /// An audit record was dropped because the writer fell behind.
    pub fn audit_dropped(&self) {
        counter!("tollgate_audit_dropped_total").increment(1);
    }

    /// A reload built and swapped in a new snapshot.
    pub fn reload_succeeded(&self, generation: u64, policies: usize) {
        counter!("tollgate_reloads_total", "result" => "ok").increment(1);
        self.snapshot_loaded(generation, policies);
    }

    /// A reload failed; the previous snapshot stays in force.
    pub fn reload_failed(&self) {
        counter!("tollgate_reloads_total", "result" => "failed").increment(1);
    }

    /// A snapshot became current.
    pub fn snapshot_loaded(&self, generation: u64, policies: usize) {
        gauge!("tollgate_snapshot_generation").set(generation as f64);
        gauge!("tollgate_policies").set(policies as f64);
    }
}
