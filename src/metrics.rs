//! Typed metric handles with domain verbs; the only place metric names are spelled.
//!
//! What every request records ([`DecisionMetrics`], [`CacheMetrics`]) is registered once, when
//! the pipeline is built, and kept as handles: a request then costs an atomic add per metric,
//! not a registry lookup by name and labels. Those per-request counts are [`Striped`]: each
//! thread adds to its own cache line, and the sums reach the exporter when [`publish`] runs
//! (before every `/metrics` render, and at every upkeep); the request duration is a
//! [`DurationHistogram`] striped the same way, rendered by [`render_histograms`]. So the
//! workers never write a line the other reads on the request path. Build them after the
//! recorder is installed (as `serve` does); before that the counters publish nowhere.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use metrics::{Counter, counter, gauge, histogram};

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
        register(registry(), &striped);
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

/// Handles whose sums are read where the exporter is (a scrape, an upkeep), held weakly so a
/// dropped one leaves.
type Registry<T> = Mutex<Vec<Weak<T>>>;

/// Adds `item` to `all`, dropping the entries whose handles are gone.
fn register<T>(all: &Registry<T>, item: &Arc<T>) {
    if let Ok(mut all) = all.lock() {
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(item));
    }
}

/// The handles of `all` still alive (none when its lock is poisoned).
fn live<T>(all: &Registry<T>) -> Vec<Arc<T>> {
    all.lock()
        .map(|all| all.iter().filter_map(Weak::upgrade).collect())
        .unwrap_or_default()
}

fn registry() -> &'static Registry<Striped> {
    static ALL: Registry<Striped> = Mutex::new(Vec::new());
    &ALL
}

/// Sets every exported counter behind a [`Striped`] to its current sum. Counters only grow, and
/// the exporter keeps the larger value, so publishing from two places at once is harmless.
pub fn publish() {
    for striped in live(registry()) {
        striped.exported.absolute(striped.sum());
    }
}

/// Upper bounds of the request-duration buckets, in nanoseconds: from a Check the verdict memo
/// answers (about a microsecond) through a cold one (a signature, Cedar: about 100 µs) to one
/// that met the deadline.
const DURATION_BOUNDS_NS: [u64; 17] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// The buckets, the last one over every bound (`+Inf`).
const DURATION_BUCKETS: usize = DURATION_BOUNDS_NS.len() + 1;

/// One thread's counts of a [`DurationHistogram`], on lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct DurationStripe {
    counts: [AtomicU64; DURATION_BUCKETS],
    sum_ns: AtomicU64,
}

/// A Prometheus histogram of durations kept in per-thread stripes, as [`Striped`] counters are.
/// The exporter's own histograms record every sample into one shared block (and a shared
/// generation count) that every worker writes on every request; these add to the recording
/// thread's own lines, and [`render_histograms`] sums them when `/metrics` is scraped. Being a
/// histogram, not a summary, a fleet's series can be added up and its quantiles computed.
#[derive(Debug)]
pub struct DurationHistogram {
    name: &'static str,
    help: &'static str,
    stripes: Box<[DurationStripe]>,
}

impl DurationHistogram {
    /// A histogram exported as `name` (with `help`), registered with [`render_histograms`].
    pub fn new(name: &'static str, help: &'static str) -> Arc<Self> {
        let histogram = Arc::new(Self {
            name,
            help,
            stripes: (0..STRIPES).map(|_| DurationStripe::default()).collect(),
        });
        register(histograms(), &histogram);
        histogram
    }

    /// One duration, in this thread's stripe.
    pub fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = DURATION_BOUNDS_NS.partition_point(|&bound| bound < nanos);
        if let Some(stripe) = self.stripes.get(stripe())
            && let Some(count) = stripe.counts.get(bucket)
        {
            count.fetch_add(1, Ordering::Relaxed);
            stripe.sum_ns.fetch_add(nanos, Ordering::Relaxed);
        }
    }
}

fn histograms() -> &'static Registry<DurationHistogram> {
    static ALL: Registry<DurationHistogram> = Mutex::new(Vec::new());
    &ALL
}

/// Appends every live [`DurationHistogram`] to `out` in Prometheus' text format (histograms
/// of one name, as tests that build several authorizers make, are added together).
pub fn render_histograms(out: &mut String) {
    use std::fmt::Write;
    let live = live(histograms());
    let mut names: Vec<(&str, &str)> = live.iter().map(|h| (h.name, h.help)).collect();
    names.sort_unstable();
    names.dedup_by_key(|(name, _)| *name);
    for (name, help) in names {
        let mut counts = [0u64; DURATION_BUCKETS];
        let mut sum_ns = 0u64;
        let stripes = live
            .iter()
            .filter(|h| h.name == name)
            .flat_map(|h| &h.stripes);
        for stripe in stripes {
            for (total, count) in counts.iter_mut().zip(&stripe.counts) {
                *total = total.wrapping_add(count.load(Ordering::Relaxed));
            }
            sum_ns = sum_ns.wrapping_add(stripe.sum_ns.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (count, bound) in counts
            .iter()
            .zip(DURATION_BOUNDS_NS.iter().map(Some).chain([None]))
        {
            cumulative = cumulative.wrapping_add(*count);
            match bound {
                Some(&ns) => {
                    let seconds = ns as f64 / 1e9;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{seconds}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {}", sum_ns as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

use crate::cache::Lookup;

/// `tollgate_decisions_total{decision,reason}` and `tollgate_check_duration_seconds`.
#[derive(Debug, Clone)]
pub struct DecisionMetrics {
    allowed: Arc<Striped>,
    /// One per reason code, in the order given to [`DecisionMetrics::new`].
    denied: Box<[Arc<Striped>]>,
    duration: Arc<DurationHistogram>,
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
            duration: DurationHistogram::new(
                "tollgate_check_duration_seconds",
                "Time to decide a request, from its arrival at the decision core to its verdict",
            ),
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
        self.duration.record(elapsed);
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
    fn a_duration_histogram_renders_cumulative_buckets_from_every_thread() {
        let histogram = DurationHistogram::new("test_duration_seconds", "For the test.");
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    histogram.record(Duration::from_nanos(800));
                    histogram.record(Duration::from_micros(30));
                    histogram.record(Duration::from_secs(5));
                });
            }
        });
        let mut text = String::new();
        render_histograms(&mut text);
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        };
        assert!(
            text.contains("# TYPE test_duration_seconds histogram\n"),
            "{text}"
        );
        assert_eq!(value(r#"test_duration_seconds_bucket{le="0.000001"}"#), 3.0);
        assert_eq!(value(r#"test_duration_seconds_bucket{le="0.000025"}"#), 3.0);
        assert_eq!(value(r#"test_duration_seconds_bucket{le="0.00005"}"#), 6.0);
        assert_eq!(value(r#"test_duration_seconds_bucket{le="1"}"#), 6.0);
        assert_eq!(value(r#"test_duration_seconds_bucket{le="+Inf"}"#), 9.0);
        assert_eq!(value("test_duration_seconds_count"), 9.0);
        let sum = value("test_duration_seconds_sum");
        assert!((sum - 3.0 * (800e-9 + 30e-6 + 5.0)).abs() < 1e-9, "{sum}");
        drop(histogram);
        let mut after = String::new();
        render_histograms(&mut after);
        assert!(!after.contains("test_duration_seconds"), "{after}");
    }

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
