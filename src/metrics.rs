//! Typed metric handles with domain verbs; the only place metric names are spelled.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::cache::Lookup;

/// Handle for recording Tollgate's metrics (a zero-sized facade over the `metrics` recorder).
#[derive(Debug, Clone, Default)]
pub struct Metrics;

impl Metrics {
    /// One decision and its latency; `reason` is the deny's reason code, `None` for an allow.
    pub fn decision(&self, reason: Option<&'static str>, elapsed: Duration) {
        let (decision, reason) = match reason {
            None => ("allow", "allowed"),
            Some(code) => ("deny", code),
        };
        counter!("tollgate_decisions_total", "decision" => decision, "reason" => reason)
            .increment(1);
        histogram!("tollgate_check_duration_seconds").record(elapsed.as_secs_f64());
    }

    /// A cache lookup, and the entries a miss's insert dropped to make room.
    pub fn cache_used(&self, cache: &'static str, lookup: Lookup) {
        let result = if lookup.hit { "hit" } else { "miss" };
        counter!("tollgate_cache_lookups_total", "cache" => cache, "result" => result).increment(1);
        if lookup.evicted > 0 {
            counter!("tollgate_cache_evictions_total", "cache" => cache)
                .increment(lookup.evicted as u64);
        }
    }

    /// An audit record was dropped because the writer fell behind.
    pub fn audit_dropped(&self) {
        counter!("tollgate_audit_dropped_total").increment(1);
    }

    /// A reload built and swapped in a new snapshot.
    pub fn reload_succeeded(&self, generation: u64, policies: usize, build: Duration) {
        counter!("tollgate_reloads_total", "result" => "ok").increment(1);
        histogram!("tollgate_reload_build_seconds").record(build.as_secs_f64());
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

/// How often [`upkeep`] drains the recorder.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Drains recorded histogram samples into the exporter's bounded summaries every
/// [`UPKEEP_INTERVAL`] until `shutdown`. The exporter otherwise keeps every sample until
/// `/metrics` is scraped: ~10 bytes a request, unbounded without a scraper (or without an admin
/// listener at all).
pub async fn upkeep(
    handle: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = &mut shutdown => return,
        }
    }
}
