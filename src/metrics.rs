//! Typed metric handles with domain verbs; the only place metric names are spelled.
//!
//! What every request records ([`DecisionMetrics`], [`CacheMetrics`]) is registered once, when
//! the pipeline is built, and kept as handles: a request then costs an atomic add per metric,
//! not a registry lookup by name and labels. Build them after the recorder is installed (as
//! `serve` does); before that they record nowhere.

use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};

use crate::cache::Lookup;

/// `tollgate_decisions_total{decision,reason}` and `tollgate_check_duration_seconds`.
#[derive(Debug, Clone)]
pub struct DecisionMetrics {
    allowed: Counter,
    /// One per reason code, in the order given to [`DecisionMetrics::new`].
    denied: Box<[Counter]>,
    duration: Histogram,
}

impl DecisionMetrics {
    /// Registers the allow counter and one deny counter per reason code in `reasons`.
    pub fn new(reasons: &[&'static str]) -> Self {
        Self {
            allowed: counter!("tollgate_decisions_total", "decision" => "allow", "reason" => "allowed"),
            denied: reasons
                .iter()
                .map(|&reason| counter!("tollgate_decisions_total", "decision" => "deny", "reason" => reason))
                .collect(),
            duration: histogram!("tollgate_check_duration_seconds"),
        }
    }

    /// One decision and its latency; `denied` is the deny's reason (its index in the list
    /// given to `new`), `None` for an allow.
    pub fn record(&self, denied: Option<usize>, elapsed: Duration) {
        match denied {
            None => self.allowed.increment(1),
            Some(i) => {
                if let Some(counter) = self.denied.get(i) {
                    counter.increment(1);
                }
            }
        }
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// `tollgate_cache_lookups_total{cache,result}` and `tollgate_cache_evictions_total{cache}`
/// for one cache.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    hit: Counter,
    miss: Counter,
    evicted: Counter,
}

impl CacheMetrics {
    /// Registers the counters of the cache named `cache`.
    pub fn new(cache: &'static str) -> Self {
        Self {
            hit: counter!("tollgate_cache_lookups_total", "cache" => cache, "result" => "hit"),
            miss: counter!("tollgate_cache_lookups_total", "cache" => cache, "result" => "miss"),
            evicted: counter!("tollgate_cache_evictions_total", "cache" => cache),
        }
    }

    /// A lookup, and the entries a miss's insert dropped to make room.
    pub fn used(&self, lookup: Lookup) {
        if lookup.hit {
            self.hit.increment(1);
        } else {
            self.miss.increment(1);
        }
        if lookup.evicted > 0 {
            self.evicted.increment(lookup.evicted as u64);
        }
    }
}

/// Handle for recording Tollgate's other metrics (a zero-sized facade over the `metrics`
/// recorder): ones recorded rarely, by name.
#[derive(Debug, Clone, Default)]
pub struct Metrics;

impl Metrics {
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
