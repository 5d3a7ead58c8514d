//! Typed metric handles with domain verbs; the only place metric names are spelled.
//!
//! What every request records ([`DecisionMetrics`], [`CacheMetrics`]) is registered once, when
//! the pipeline is built, and kept as handles: a request then costs an atomic add per metric,
//! not a registry lookup by name and labels. Those per-request counts are [`Striped`]: each
//! thread adds to its own cache line, and the sums reach the exporter when [`publish`] runs
//! (before every `/metrics` render, and at every upkeep), so the workers never write a line the
//! other reads on the request path. Build them after the recorder is installed (as `serve`
//! does); before that they record nowhere.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use metrics::{Counter, Histogram, counter, gauge, histogram};

/// Stripes per counter: more than the worker threads a sidecar runs, so each usually has its
/// own.
pub const STRIPES: usize = 16;

/// This thread's stripe, `0..STRIPES`: threads take them in turn as they first ask, so a
/// runtime's few workers each get their own.
pub fn stripe() -> usize {
    thread_local! {
        static MINE: usize = {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
        };
    }
    MINE.try_with(|i| *i).unwrap_or(0)
}

/// A count kept in per-thread stripes: each thread adds on its own cache line, and readers sum.
#[derive(Debug, Default)]
pub struct Stripes([Stripe; STRIPES]);

/// One stripe, alone on its cache line (128 bytes: adjacent-line prefetch pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl Stripes {
    /// Adds `n` in this thread's stripe.
    pub fn add(&self, n: u64) {
        if let Some(stripe) = self.0.get(stripe()) {
            stripe.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The total so far.
    pub fn sum(&self) -> u64 {
        self.0
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// The total so far, leaving zero behind (adds made meanwhile are kept for the next take).
    pub fn take(&self) -> u64 {
        self.0
            .iter()
            .map(|s| s.0.swap(0, Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// A counter kept in [`Stripes`] and published to the exporter's counter as their sum.
#[derive(Debug)]
pub struct Striped {
    stripes: Stripes,
    exported: Counter,
}

impl Striped {
    /// A striped counter publishing to `exported`, registered with [`publish`].
    pub fn new(exported: Counter) -> Arc<Self> {
        let striped = Arc::new(Self {
            stripes: Stripes::default(),
            exported,
        });
        if let Ok(mut all) = registry().lock() {
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&striped));
        }
        striped
    }

    /// Adds `n` in this thread's stripe.
    pub fn add(&self, n: u64) {
        self.stripes.add(n);
    }

    /// The total so far.
    pub fn sum(&self) -> u64 {
        self.stripes.sum()
    }
}

fn registry() -> &'static Mutex<Vec<Weak<Striped>>> {
    static ALL: Mutex<Vec<Weak<Striped>>> = Mutex::new(Vec::new());
    &ALL
}

/// Sets every exported counter behind a [`Striped`] to its current sum. Counters only grow, and
/// the exporter keeps the larger value, so publishing from two places at once is harmless.
pub fn publish() {
    let live: Vec<Arc<Striped>> = match registry().lock() {
        Ok(all) => all.iter().filter_map(Weak::upgrade).collect(),
        Err(_) => return,
    };
    for striped in live {
        striped.exported.absolute(striped.sum());
    }
}

use crate::cache::Lookup;

/// `tollgate_decisions_total{decision,reason}` and `tollgate_check_duration_seconds`.
#[derive(Debug, Clone)]
pub struct DecisionMetrics {
    allowed: Arc<Striped>,
    /// One per reason code, in the order given to [`DecisionMetrics::new`].
    denied: Box<[Arc<Striped>]>,
    duration: Histogram,
}

impl DecisionMetrics {
    /// Registers the allow counter and one deny counter per reason code in `reasons`.
    pub fn new(reasons: &[&'static str]) -> Self {
        Self {
            allowed: Striped::new(
                counter!("tollgate_decisions_total", "decision" => "allow", "reason" => "allowed"),
            ),
            denied: reasons
                .iter()
                .map(|&reason| {
                    Striped::new(counter!(
                        "tollgate_decisions_total", "decision" => "deny", "reason" => reason
                    ))
                })
                .collect(),
            duration: histogram!("tollgate_check_duration_seconds"),
        }
    }

    /// One decision and its latency; `denied` is the deny's reason (its index in the list
    /// given to `new`), `None` for an allow.
    pub fn record(&self, denied: Option<usize>, elapsed: Duration) {
        match denied {
            None => self.allowed.add(1),
            Some(i) => {
                if let Some(counter) = self.denied.get(i) {
                    counter.add(1);
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
    hit: Arc<Striped>,
    miss: Arc<Striped>,
    evicted: Counter,
}

impl CacheMetrics {
    /// Registers the counters of the cache named `cache`.
    pub fn new(cache: &'static str) -> Self {
        Self {
            hit: Striped::new(
                counter!("tollgate_cache_lookups_total", "cache" => cache, "result" => "hit"),
            ),
            miss: Striped::new(
                counter!("tollgate_cache_lookups_total", "cache" => cache, "result" => "miss"),
            ),
            evicted: counter!("tollgate_cache_evictions_total", "cache" => cache),
        }
    }

    /// A lookup, and the entries a miss's insert dropped to make room.
    pub fn used(&self, lookup: Lookup) {
        if lookup.hit {
            self.hit.add(1);
        } else {
            self.miss.add(1);
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
    /// A compromise signal of `kind` fired (`tollgate_signals_total{kind}`; four kinds).
    pub fn signal(&self, kind: &'static str) {
        counter!("tollgate_signals_total", "kind" => kind).increment(1);
    }

    /// Registers `tollgate_signals_total{kind}` at zero.
    pub fn signal_kind_registered(&self, kind: &'static str) {
        counter!("tollgate_signals_total", "kind" => kind).increment(0);
    }

    /// Identities the signals' tracker evicted so far (`tollgate_signals_evicted_total`).
    pub fn signals_evicted(&self, total: u64) {
        counter!("tollgate_signals_evicted_total").absolute(total);
    }

    /// A batch of audit records could not be written to a sink.
    pub fn audit_write_failed(&self) {
        counter!("tollgate_audit_write_errors_total").increment(1);
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

    /// A fetch of an issuer's key set ended: `result` is `changed`, `unchanged`, or why it
    /// failed; `keys` is the size of the set in force after it.
    pub fn jwks_fetched(&self, issuer: &str, result: &'static str, keys: usize) {
        counter!("tollgate_jwks_fetches_total", "issuer" => issuer.to_owned(), "result" => result)
            .increment(1);
        gauge!("tollgate_jwks_keys", "issuer" => issuer.to_owned()).set(keys as f64);
    }

    /// A fetch of a token status list ended: `result` is `changed`, `unchanged`, `invalid`,
    /// or why it failed.
    pub fn status_list_fetched(&self, issuer: &str, result: &'static str) {
        counter!(
            "tollgate_status_list_fetches_total",
            "issuer" => issuer.to_owned(),
            "result" => result
        )
        .increment(1);
    }

    /// Seconds since an issuer's key set was last fetched successfully (set when scraped).
    pub fn jwks_age(&self, issuer: &str, seconds: f64) {
        gauge!("tollgate_jwks_age_seconds", "issuer" => issuer.to_owned()).set(seconds);
    }

    /// A snapshot became current.
    pub fn snapshot_loaded(&self, generation: u64, policies: usize) {
        gauge!("tollgate_snapshot_generation").set(generation as f64);
        gauge!("tollgate_policies").set(policies as f64);
    }
}

/// How often [`upkeep`] drains the recorder.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Publishes the striped counters and drains recorded histogram samples into the exporter's bounded summaries every
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
            _ = tick.tick() => {
                publish();
                handle.run_upkeep();
            }
            () = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_striped_counter_sums_every_threads_adds() {
        let striped = Striped::new(Counter::noop());
        std::thread::scope(|s| {
            for _ in 0..(STRIPES + 3) {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        striped.add(1);
                    }
                });
            }
        });
        striped.add(5);
        assert_eq!(striped.sum(), (STRIPES as u64 + 3) * 1_000 + 5);
        publish();
        let stripes = Stripes::default();
        stripes.add(2);
        std::thread::scope(|s| {
            s.spawn(|| stripes.add(3));
        });
        assert_eq!(stripes.take(), 5);
        assert_eq!(stripes.take(), 0, "taken");
    }

    #[test]
    fn dropped_counters_leave_the_registry() {
        for _ in 0..100 {
            drop(Striped::new(Counter::noop()));
        }
        let _kept = Striped::new(Counter::noop());
        let live = registry().lock().map(|all| all.len()).unwrap_or(usize::MAX);
        // Other tests' counters may be alive at the same time, but not a hundred dead ones.
        assert!(live < 100, "{live}");
    }
}
