//! Decision records: every decision becomes one OCSF API Activity record ([`ocsf`]) written
//! to the configured sinks ([`sink`]), and one observation in this sidecar's live inventory
//! (`/identities`). The request path only pushes an [`Event`] (a reference to the decision's
//! shared [`Evidence`] plus its id and time) onto its own thread's shard of a bounded queue
//! ([`Pending`]); when the shard is full the record is dropped and counted
//! (`tollgate_audit_dropped_total`, `/readyz`), never waited for. One thread, off the
//! runtime's workers, takes whole shards at a time, then serialises, writes and counts.

pub mod ocsf;
pub mod sink;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;

use crate::evidence::Evidence;
use crate::inventory::{Baseline, Inventory, Observation};
use crate::metrics::{Metrics, STRIPES, Striped};
use crate::signals::{Finding, SignalSettings, Signals};
use crate::verdict::DecisionId;
pub use ocsf::RecordOptions;
pub use sink::OtlpSettings;

/// Most records serialised before the sinks are written.
const BATCH: usize = 512;
/// How long the writer naps when the queue is empty.
const IDLE_NAP: Duration = Duration::from_millis(5);

/// Where and how decisions are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// A file, rotated by size.
    pub file: Option<FileSettings>,
    /// Standard output, for a log shipper.
    pub stdout: bool,
    /// An OpenTelemetry Collector.
    pub otlp: Option<OtlpSettings>,
    /// Records queued before new ones are dropped (and counted).
    pub queue: usize,
    /// Write user identifiers as pseudonyms.
    pub pseudonymise_users: bool,
    /// Identities the live inventory holds.
    pub identities_max: usize,
    /// The compromise signals' rules.
    pub signals: SignalSettings,
    /// The reviewed baseline (`tollgate report --baseline`) new access is judged against;
    /// read when the log starts.
    pub baseline: Option<PathBuf>,
}

/// The audit file and its rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    /// The file written.
    pub path: PathBuf,
    /// Size at which it is rotated, bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.log.1` …); disk use stays under `max_bytes × (keep + 1)`.
    pub keep: u32,
}

impl Default for FileSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("audit.log"),
            max_bytes: 100 << 20,
            keep: 5,
        }
    }
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            file: None,
            stdout: false,
            otlp: None,
            queue: 10_000,
            pseudonymise_users: false,
            identities_max: 10_000,
            signals: SignalSettings::default(),
            baseline: None,
        }
    }
}

impl AuditSettings {
    /// Names of the sinks, for the start-up log and `/readyz`.
    pub fn sinks(&self) -> Vec<String> {
        let mut sinks = Vec::new();
        if let Some(file) = &self.file {
            sinks.push(format!("file {}", file.path.display()));
        }
        if self.stdout {
            sinks.push("stdout".into());
        }
        if let Some(otlp) = &self.otlp {
            sinks.push(format!("otlp {}", otlp.endpoint));
        }
        sinks
    }
}

/// One decision as the sinks write it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Unix milliseconds.
    pub time_ms: u64,
    /// The decision's id.
    pub decision_id: DecisionId,
    /// Time spent deciding, microseconds.
    pub elapsed_us: u64,
    /// Who asked for what, and the outcome.
    pub evidence: &'a Evidence,
    /// The query string, values already replaced (see [`crate::evidence::redact_query`]).
    pub query: Option<&'a str>,
}

/// The sending side; cheap to clone. Disabled in one-shot tools.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: Option<Arc<Pending>>,
    shared: Arc<Shared>,
    /// What the signals enforce on the request path (nothing unless configured).
    enforcement: Arc<crate::enforce::Enforcement>,
}

/// Records waiting for the writer, in one shard per thread stripe
/// ([`crate::metrics::stripe`]): a worker pushes under its own shard's lock, which nobody else
/// takes but the writer, once per shard per round. A single queue shared by every worker and
/// the writer would move its head and tail cache lines between cores on every record.
#[derive(Debug)]
struct Pending {
    shards: [Shard; STRIPES],
    /// Records one shard holds before new ones are dropped.
    per_shard: usize,
}

/// One thread stripe's records, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Batch>);

/// Queued records, and the evidence they refer to: consecutive records of one cached decision
/// share one reference, so the writer releases (and the workers' next clone misses on) the
/// evidence's reference count once per run, not once per record.
#[derive(Debug, Default)]
struct Batch {
    entries: Vec<Entry>,
    evidence: Vec<Arc<Evidence>>,
}

/// One queued record: 64 bytes, written by a worker and read once by the writer.
#[derive(Debug)]
struct Entry {
    /// When the decision was made, as the request path already measured it: the writer turns
    /// it into wall time, so the request path reads no wall clock for its record.
    decided: crate::clock::Started,
    decision_id: DecisionId,
    elapsed_us: u64,
    query: Option<Box<str>>,
    /// Index into the batch's `evidence`.
    evidence: u32,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        // A panic while pushing leaves valid vectors: the records in them are still good.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Batch {
    fn clear(&mut self) {
        self.entries.clear();
        self.evidence.clear();
    }
}

impl Pending {
    /// Room for `queue` records in all, split between the shards (each holds at least one).
    fn new(queue: usize) -> Self {
        Self {
            shards: Default::default(),
            per_shard: queue.div_ceil(STRIPES).max(1),
        }
    }

    /// Pushes onto this thread's shard; false when the shard is full.
    fn push(&self, entry: Entry, evidence: Arc<Evidence>) -> bool {
        let Some(shard) = self.shards.get(crate::metrics::stripe() % STRIPES) else {
            return false;
        };
        let mut batch = shard.lock();
        if batch.entries.len() >= self.per_shard {
            return false;
        }
        let same = batch
            .evidence
            .last()
            .is_some_and(|e| Arc::ptr_eq(e, &evidence));
        if !same {
            batch.evidence.push(evidence);
        }
        let index = u32::try_from(batch.evidence.len() - 1).unwrap_or(u32::MAX);
        batch.entries.push(Entry {
            evidence: index,
            ..entry
        });
        true
    }

    /// Records waiting in the shards.
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().entries.len())
            .sum()
    }

    /// Swaps every shard's batch with an empty one of `into` (so neither side allocates in
    /// the steady state). True when a shard was at least half full: the writer should come
    /// back without a nap.
    fn take(&self, into: &mut [Batch; STRIPES]) -> bool {
        let mut busy = false;
        for (shard, taken) in self.shards.iter().zip(into.iter_mut()) {
            taken.clear();
            let mut batch = shard.lock();
            if batch.entries.is_empty() {
                continue;
            }
            busy |= batch.entries.len() >= self.per_shard.div_ceil(2);
            std::mem::swap(&mut *batch, taken);
        }
        busy
    }
}

/// The records of `batches` as events, in decision order (shards interleave; a file reads
/// best in order), stamped with wall time.
fn events(batches: &[Batch]) -> Vec<Event<'_>> {
    let (wall, now) = (unix_ms(SystemTime::now()), crate::clock::started());
    let mut events: Vec<(crate::clock::Started, Event<'_>)> = batches
        .iter()
        .flat_map(|batch| {
            batch.entries.iter().filter_map(|entry| {
                let evidence = batch.evidence.get(entry.evidence as usize)?;
                let ago = u64::try_from(now.duration_since(entry.decided).as_millis()).unwrap_or(0);
                let event = Event {
                    time_ms: wall.saturating_sub(ago),
                    decision_id: entry.decision_id,
                    elapsed_us: entry.elapsed_us,
                    evidence,
                    query: entry.query.as_deref(),
                };
                Some((entry.decided, event))
            })
        })
        .collect();
    events.sort_by_key(|(decided, _)| *decided);
    events.into_iter().map(|(_, event)| event).collect()
}

/// What the writer and the admin endpoints share.
#[derive(Debug)]
struct Shared {
    /// Counted where they happen, per thread; the metric sums them whenever it is read
    /// (`tollgate_audit_dropped_total`), so it moves even while the writer is stalled.
    dropped: Arc<Striped>,
    write_errors: AtomicU64,
    inventory: Mutex<Inventory>,
    signals: Mutex<Signals>,
    sinks: Vec<String>,
}

impl Shared {
    fn new(sinks: Vec<String>, identities: usize, signals: Signals) -> Arc<Self> {
        Arc::new(Self {
            signals: Mutex::new(signals),
            dropped: Striped::new(metrics::counter!("tollgate_audit_dropped_total")),
            write_errors: AtomicU64::new(0),
            inventory: Mutex::new(Inventory::new(identities)),
            sinks,
        })
    }
}

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled() -> Self {
        Self {
            queue: None,
            enforcement: Arc::default(),
            shared: Shared::new(
                Vec::new(),
                1,
                Signals::new(
                    SignalSettings {
                        enabled: false,
                        ..SignalSettings::default()
                    },
                    None,
                ),
            ),
        }
    }

    /// Opens the sinks and starts the writer (a blocking task: file writes never stall a
    /// runtime worker); it ends once every `AuditLog` clone is gone and the queue is drained.
    /// Must be called within the Tokio runtime (the OTLP exporter's connection lives on it).
    pub fn start(
        settings: &AuditSettings,
        metrics: Metrics,
    ) -> Result<(Self, JoinHandle<Result<(), String>>), String> {
        let file = match &settings.file {
            Some(f) => Some(
                sink::RotatingFile::open(&f.path, f.max_bytes, f.keep)
                    .map_err(|e| format!("{}: {e}", f.path.display()))?,
            ),
            None => None,
        };
        let otlp = match &settings.otlp {
            Some(o) => Some(
                sink::Otlp::start(o)
                    .map_err(|e| format!("OTLP exporter to {}: {e}", o.endpoint))?,
            ),
            None => None,
        };
        let baseline = match &settings.baseline {
            Some(path) => Some(read_baseline(path)?),
            None => None,
        };
        if settings.signals.deny_new_access && baseline.is_none() {
            return Err(
                "signals.new_access = \"deny\" makes the reviewed baseline an allow-list, \
                        and none is named: set `[signals] baseline` or pass `--baseline FILE`"
                    .into(),
            );
        }
        let signals = Signals::new(settings.signals.clone(), baseline);
        let enforcement = signals.enforcement();
        // Every kind's series exists from the start, so a dashboard shows 0, not "no data".
        for kind in crate::signals::SignalKind::ALL {
            metrics.signal_kind_registered(kind.as_str());
        }
        let shared = Shared::new(settings.sinks(), settings.identities_max, signals);
        let pending = Arc::new(Pending::new(settings.queue));
        let writer = Writer {
            pending: pending.clone(),
            file,
            stdout: settings.stdout,
            otlp,
            options: RecordOptions {
                pseudonymise_users: settings.pseudonymise_users,
            },
            shared: shared.clone(),
            metrics,
        };
        let handle = tokio::task::spawn_blocking(move || {
            writer.run();
            Ok(())
        });
        Ok((
            Self {
                queue: Some(pending),
                shared,
                enforcement,
            },
            handle,
        ))
    }

    /// True when decisions are recorded (a server; not a one-shot tool).
    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues the record of one decision; never blocks. A full queue drops the record
    /// (counted) rather than slow the request.
    pub fn record(
        &self,
        decision_id: DecisionId,
        evidence: Arc<Evidence>,
        target: Option<&str>,
        decided: crate::clock::Started,
        elapsed: Duration,
    ) -> Queued {
        let Some(queue) = &self.queue else {
            return Queued::Disabled;
        };
        let entry = Entry {
            decided,
            decision_id,
            elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            query: target
                .and_then(crate::evidence::redact_query)
                .map(String::into_boxed_str),
            evidence: 0,
        };
        if queue.push(entry, evidence) {
            Queued::Yes
        } else {
            self.shared.dropped.add(1);
            Queued::Dropped
        }
    }

    /// What the signals enforce on the request path.
    pub fn enforcement(&self) -> Arc<crate::enforce::Enforcement> {
        self.enforcement.clone()
    }

    /// What the admin endpoints show of this log; holding it does not keep the writer running.
    pub fn view(&self) -> AuditView {
        AuditView {
            shared: self.shared.clone(),
            queue: self.queue.as_ref().map_or_else(Weak::new, Arc::downgrade),
        }
    }

    /// Records dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.view().dropped()
    }
}

/// The audit log's counters and live inventory, for `/readyz` and `/identities`.
#[derive(Debug, Clone)]
pub struct AuditView {
    shared: Arc<Shared>,
    /// Weak: the writer ends when the last [`AuditLog`] goes.
    queue: Weak<Pending>,
}

impl AuditView {
    /// Records dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.sum()
    }

    /// Records queued and not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.queue.upgrade().map_or(0, |queue| queue.len())
    }

    /// Batches a sink failed to write, since start.
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// The sinks records go to.
    pub fn sinks(&self) -> &[String] {
        &self.shared.sinks
    }

    /// The recent compromise signals of `principal`, oldest first.
    pub fn signals(&self, principal: &str) -> Vec<Finding> {
        match self.shared.signals.lock() {
            Ok(signals) => signals.recent(principal),
            Err(poisoned) => poisoned.into_inner().recent(principal),
        }
    }

    /// The live inventory as `/identities` shows it: a row per identity, sorted by principal,
    /// copied under the writer's lock (so the writer waits for a copy, not for the rendering)
    /// without what the page does not show (the users themselves, the time series): a copy
    /// of the whole summary, made into a JSON tree, cost ~110 MiB at 10,000 identities.
    pub fn live_identities(&self) -> LiveInventory {
        let mut live = {
            let inventory = match self.shared.inventory.lock() {
                Ok(inventory) => inventory,
                Err(poisoned) => poisoned.into_inner(),
            };
            let summary = inventory.summary();
            LiveInventory {
                records: summary.records,
                identities: summary
                    .identities
                    .iter()
                    .map(|(principal, s)| LiveIdentity {
                        principal: principal.clone(),
                        kind: s.kind,
                        trust_domain: s.trust_domain.clone(),
                        first_seen_ms: s.first_seen_ms,
                        last_seen_ms: s.last_seen_ms,
                        calls: s.calls,
                        denials: s.denials.clone(),
                        app_only: s.app_only,
                        delegated: s.delegated,
                        users: s.users.len(),
                        users_saturated: s.users_saturated,
                        issuers: s.issuers.clone(),
                        expiry_ms: s.expiry_ms,
                        used: s.used.clone(),
                        signals: Vec::new(),
                    })
                    .collect(),
                unverified: summary.unverified.clone(),
                evicted: inventory.evicted(),
                dropped: 0,
            }
        };
        live.identities
            .sort_unstable_by(|a, b| a.principal.cmp(&b.principal));
        {
            let signals = match self.shared.signals.lock() {
                Ok(signals) => signals,
                Err(poisoned) => poisoned.into_inner(),
            };
            for identity in &mut live.identities {
                identity.signals = signals.recent(&identity.principal);
            }
        }
        live.dropped = self.dropped();
        live
    }
}

/// `/identities`: this sidecar's live inventory.
#[derive(Debug, serde::Serialize)]
pub struct LiveInventory {
    /// Decisions recorded since start.
    pub records: u64,
    /// One row per identity, by principal.
    pub identities: Vec<LiveIdentity>,
    /// Refused callers' decisions, by reason.
    pub unverified: std::collections::BTreeMap<String, u64>,
    /// Identities evicted to stay within `identities_max`.
    pub evicted: u64,
    /// Records dropped (queue full).
    pub dropped: u64,
}

/// One identity on `/identities`.
#[derive(Debug, serde::Serialize)]
pub struct LiveIdentity {
    /// The Cedar principal.
    pub principal: String,
    /// Workload, client or delegated app.
    pub kind: crate::inventory::Kind,
    /// Its trust domain, for a workload.
    pub trust_domain: Option<String>,
    /// First decision, Unix milliseconds.
    pub first_seen_ms: u64,
    /// Last decision, Unix milliseconds.
    pub last_seen_ms: u64,
    /// Decisions.
    pub calls: u64,
    /// Denials by reason.
    pub denials: std::collections::BTreeMap<String, u64>,
    /// App-only decisions.
    pub app_only: u64,
    /// Delegated decisions.
    pub delegated: u64,
    /// Users acted for (how many).
    pub users: usize,
    /// More users than the set keeps.
    pub users_saturated: bool,
    /// Token issuers seen.
    pub issuers: std::collections::BTreeSet<String>,
    /// Nearest credential expiry seen, Unix milliseconds.
    pub expiry_ms: Option<i64>,
    /// What it used, per `action resource-type`.
    pub used: crate::inventory::Pairs,
    /// Its recent compromise signals.
    pub signals: Vec<Finding>,
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Queued {
    /// On its way to the writer.
    Yes,
    /// Dropped: the writer is behind and the queue full.
    Dropped,
    /// Auditing is off.
    Disabled,
}

/// The writer: drains the queue in batches into the sinks and the inventory.
struct Writer {
    pending: Arc<Pending>,
    file: Option<sink::RotatingFile>,
    stdout: bool,
    otlp: Option<sink::Otlp>,
    options: RecordOptions,
    shared: Arc<Shared>,
    metrics: Metrics,
}

impl Writer {
    /// Takes every shard's records each round, and naps between rounds instead of waiting
    /// on the queue: a waiting writer would make every request's push wake a thread (a
    /// syscall on the request path), while a nap costs a record a few milliseconds of delay.
    /// Ends once every [`AuditLog`] is gone and the last records are written.
    fn run(mut self) {
        let mut buf = Vec::with_capacity(256 * 1024);
        let mut taken: [Batch; STRIPES] = Default::default();
        loop {
            // Read before taking: records pushed by the last sender are then taken below.
            let closed = Arc::strong_count(&self.pending) == 1;
            let busy = self.pending.take(&mut taken);
            for batch in events(&taken).chunks(BATCH) {
                buf.clear();
                self.write_batch(batch, &mut buf);
            }
            // Released here, on the writer, in runs.
            taken.iter_mut().for_each(Batch::clear);
            if closed {
                break;
            }
            if !busy {
                std::thread::sleep(IDLE_NAP);
            }
        }
        if let Some(otlp) = &self.otlp {
            otlp.shutdown();
        }
    }

    fn write_batch(&mut self, batch: &[Event], buf: &mut Vec<u8>) {
        // A busy caller repeating its calls makes decisions the inventory and the signals
        // cannot tell apart; each group of them is reduced once, with its count.
        let Groups { groups, of } = Groups::of(batch);
        let users: Vec<_> = groups
            .iter()
            .map(|&(first, _)| {
                batch
                    .get(first)
                    .and_then(|event| ocsf::user(event.evidence, self.options))
            })
            .collect();
        // With no sink the records feed the inventory and the signals alone: writing them out
        // would be work for nobody.
        let sinks = self.file.is_some() || self.stdout || self.otlp.is_some();
        for (event, group) in batch.iter().zip(&of).filter(|_| sinks) {
            let start = buf.len();
            let user = users.get(*group).and_then(Option::as_deref);
            ocsf::write_line(buf, event, user, self.options);
            if let Some(otlp) = &self.otlp
                && let Some(line) = buf.get(start..buf.len().saturating_sub(1))
                && let Ok(line) = std::str::from_utf8(line)
            {
                otlp.emit(
                    line,
                    event.evidence.allowed(),
                    event.evidence.reason,
                    UNIX_EPOCH + Duration::from_millis(event.time_ms),
                );
            }
        }
        // The inventory's lock is held for the counting alone, not the serialising: an
        // `/identities` request waits for one batch's counts at most.
        let mut inventory = match self.shared.inventory.lock() {
            Ok(inventory) => inventory,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut policies: Vec<&str> = Vec::new();
        for (&(first, count), user) in groups.iter().zip(&users) {
            let Some(event) = batch.get(first) else {
                continue;
            };
            policies.clear();
            policies.extend(event.evidence.determining.iter().map(String::as_str));
            inventory.observe_repeated(&observation(event, user.as_deref()), count, &policies);
        }
        drop(inventory);
        let mut findings = Vec::new();
        {
            let mut signals = match self.shared.signals.lock() {
                Ok(signals) => signals,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (&(first, count), user) in groups.iter().zip(&users) {
                let Some(event) = batch.get(first) else {
                    continue;
                };
                let o = observation(event, user.as_deref());
                signals.observe_repeated(&o, count, &mut findings);
            }
            self.metrics.signals_evicted(signals.evicted());
        }
        for finding in &findings {
            self.found(finding, buf);
        }
        if let Some(file) = &mut self.file
            && let Err(e) = file.write(buf)
        {
            self.failed("file", &e);
        }
        if self.stdout {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
                self.failed("stdout", &e);
            }
        }
    }

    /// Writes a finding among the records, counts it, and logs it.
    fn found(&self, finding: &Finding, buf: &mut Vec<u8>) {
        let start = buf.len();
        ocsf::write_finding(buf, finding);
        if let Some(otlp) = &self.otlp
            && let Some(line) = buf.get(start..buf.len().saturating_sub(1))
            && let Ok(line) = std::str::from_utf8(line)
        {
            otlp.emit_finding(
                line,
                finding.kind.as_str(),
                UNIX_EPOCH + Duration::from_millis(finding.time_ms),
            );
        }
        self.metrics.signal(finding.kind.as_str());
        tracing::warn!(
            signal = finding.kind.as_str(),
            principal.id = %finding.principal,
            detail = %finding.detail,
            "compromise signal"
        );
    }

    fn failed(&self, sink: &str, error: &std::io::Error) {
        self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.audit_write_failed();
        tracing::error!(sink, error = %error, "audit write failed; records lost");
    }
}

/// A batch's decisions as the inventory and the signals see them: decisions made in one
/// millisecond that make the same observation (one evidence, or evidence of the same caller,
/// call, outcome, user and determining policies) are one group, reduced once with its count.
///
/// A repeated caller's decisions share one evidence per worker thread, but the workers'
/// records interleave, and so do a caller's different calls (each connection at its own place
/// in a mix): runs of neighbours alone left a busy writer reducing nearly every decision by
/// itself. Groups keep the order of their first decisions, so what a first decision sets off
/// (a pair first seen, then first allowed; a user, an issuer) is set off as before, and
/// counts, spikes and sheds come out the same. What only the order inside one millisecond
/// decides may differ: which denial a burst names as its latest, how many near-expiry or
/// lifetime reports a caller alternating credentials within the millisecond gets (each
/// switch is one; gathered, there are fewer switches), and the order of the batch's findings.
struct Groups {
    /// Each group's first decision (its place in the batch) and how many it holds.
    groups: Vec<(usize, u64)>,
    /// Each decision's group.
    of: Vec<usize>,
}

impl Groups {
    /// Evidence remembered by address per millisecond, so that each is hashed once.
    const SEEN: usize = 32;

    fn of(batch: &[Event]) -> Self {
        let mut groups: Vec<(usize, u64)> = Vec::new();
        let mut of = Vec::with_capacity(batch.len());
        let mut seen: Vec<(*const Evidence, usize)> = Vec::new();
        // The millisecond's groups by their observation's hash: a candidate, whose content is
        // compared before a decision joins it.
        let mut by_hash: std::collections::HashMap<u64, usize, foldhash::fast::FixedState> =
            std::collections::HashMap::default();
        // Events come in the order they were decided, a millisecond at a time.
        let mut millisecond = None;
        for (at, event) in batch.iter().enumerate() {
            if millisecond != Some(event.time_ms) {
                millisecond = Some(event.time_ms);
                seen.clear();
                by_hash.clear();
            }
            let address = std::ptr::from_ref(event.evidence);
            let group = match seen.iter().find(|(a, _)| *a == address) {
                Some(&(_, group)) => Some(group),
                None => {
                    let hash = observation_hash(event.evidence);
                    let alike = by_hash.get(&hash).copied().filter(|&group| {
                        let first = groups.get(group).and_then(|&(first, _)| batch.get(first));
                        first.is_some_and(|f| same_observation(f.evidence, event.evidence))
                    });
                    if seen.len() < Self::SEEN {
                        seen.push((address, alike.unwrap_or(groups.len())));
                    }
                    if alike.is_none() {
                        // Another observation with the same hash keeps the hash's group.
                        by_hash.entry(hash).or_insert(groups.len());
                    }
                    alike
                }
            };
            // Every index here is one this loop pushed.
            match group.and_then(|group| Some((group, groups.get_mut(group)?))) {
                Some((group, (_, count))) => {
                    *count += 1;
                    of.push(group);
                }
                None => {
                    of.push(groups.len());
                    groups.push((at, 1));
                }
            }
        }
        Self { groups, of }
    }
}

/// What the inventory and the signals see of `e` at any one time: its observation (the raw
/// user in place of its pseudonym) and its determining policies. Two evidences alike are two
/// with equal keys; [`observation_hash`] hashes this same key, so alike means one hash.
fn alike_key(e: &Evidence) -> (Observation<'_>, &[String]) {
    let user = e.actor.as_ref().and_then(|a| a.user.as_deref());
    (observation_of(e, 0, user), &e.determining)
}

/// A hash of [`alike_key`].
fn observation_hash(e: &Evidence) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(alike_key(e))
}

/// Whether `a` and `b` make the same observation with the same determining policies.
fn same_observation(a: &Evidence, b: &Evidence) -> bool {
    alike_key(a) == alike_key(b)
}

/// What the inventory needs of one event.
pub fn observation<'a>(event: &'a Event, user: Option<&'a str>) -> Observation<'a> {
    observation_of(event.evidence, event.time_ms, user)
}

/// [`observation`] of evidence `e` at `time_ms`.
fn observation_of<'a>(e: &'a Evidence, time_ms: u64, user: Option<&'a str>) -> Observation<'a> {
    let actor = e.actor.as_deref();
    let workload = actor.and_then(|a| a.workload.as_ref());
    let token = actor.and_then(|a| a.token.as_ref());
    Observation {
        time_ms,
        principal: actor.map(|a| a.principal.as_str()),
        workload: workload.is_some(),
        trust_domain: workload
            .map(|w| w.trust_domain.as_str())
            .filter(|d| !d.is_empty()),
        delegated: actor.is_some_and(|a| a.mode == crate::identity::AccessMode::Delegated),
        user,
        allowed: e.allowed(),
        reason: e.reason,
        action: e.target.as_ref().map(|t| &*t.action),
        resource_type: e.target.as_ref().map(|t| &*t.resource_type),
        issuer: token.map(|t| t.issuer.as_str()),
        expires_ms: actor
            .and_then(crate::evidence::Actor::credentials_expire)
            .map(|s| s.saturating_mul(1000)),
        certificate_expires_ms: workload
            .and_then(|w| w.not_after)
            .map(|s| s.saturating_mul(1000)),
        longest_expires_ms: workload
            .and_then(|w| w.not_after)
            .max(token.map(|t| t.expires_at))
            .map(|s| s.saturating_mul(1000)),
        longest_lifetime_ms: workload
            .and_then(|w| Some(w.not_after?.saturating_sub(w.not_before?)))
            .max(token.and_then(|t| Some(t.expires_at.saturating_sub(t.issued_at?))))
            .map(|s| s.saturating_mul(1000)),
    }
}

/// A reviewed baseline, as `tollgate report --baseline` writes it.
fn read_baseline(path: &std::path::Path) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let baseline: Baseline = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}: not a baseline written by `tollgate report --baseline`: {e}",
            path.display(),
            e.line()
        )
    })?;
    if baseline.tollgate_baseline != 1 {
        return Err(format!(
            "{}: baseline version {} is not one this Tollgate reads (1)",
            path.display(),
            baseline.tollgate_baseline
        ));
    }
    Ok(baseline)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence() -> Arc<Evidence> {
        Arc::new(Evidence {
            reason: "no_route",
            status: 403,
            message: "no route".into(),
            principal: None,
            determining: vec![],
            errors: vec![],
            actor: None,
            target: None,
            request: crate::evidence::RequestLine::default(),
            snapshot: Arc::default(),
        })
    }

    /// Review finding: with users pseudonymised, Cedar's error messages (which name the user
    /// entity) still carried the identifier.
    #[test]
    fn pseudonymised_records_name_no_user_anywhere() {
        use crate::evidence::Actor;
        let evidence = Evidence {
            errors: vec![r#"error in `p`: entity `User::"alice@corp"` has no attribute"#.into()],
            actor: Some(Arc::new(Actor {
                principal: "spiffe://x/app".into(),
                workload: None,
                token: None,
                mode: crate::identity::AccessMode::Delegated,
                user: Some("alice@corp".into()),
            })),
            ..(*evidence()).clone()
        };
        let event = Event {
            time_ms: 1,
            decision_id: DecisionId::next(),
            elapsed_us: 1,
            evidence: &evidence,
            query: None,
        };
        let options = RecordOptions {
            pseudonymise_users: true,
        };
        let mut line = Vec::new();
        let user = ocsf::user(event.evidence, options);
        ocsf::write_line(&mut line, &event, user.as_deref(), options);
        let line = String::from_utf8(line).unwrap();
        assert!(!line.contains("alice"), "{line}");
    }

    #[test]
    fn queued_records_share_runs_of_evidence_and_come_out_in_decision_order() {
        let pending = Pending::new(1000);
        let (cached, fresh) = (evidence(), evidence());
        let t0 = crate::clock::started();
        let entry = |ms: u64, id: DecisionId| Entry {
            decided: t0 + Duration::from_millis(ms),
            decision_id: id,
            elapsed_us: ms,
            query: None,
            evidence: 0,
        };
        let ids: Vec<DecisionId> = (0..5).map(|_| DecisionId::next()).collect();
        for (ms, e) in [(0, &cached), (2, &cached), (3, &fresh), (4, &cached)] {
            assert!(pending.push(entry(ms, ids[ms as usize]), e.clone()));
        }
        // Another thread's shard, decided in between.
        std::thread::scope(|s| {
            s.spawn(|| assert!(pending.push(entry(1, ids[1]), cached.clone())));
        });
        let mut taken: [Batch; STRIPES] = Default::default();
        pending.take(&mut taken);
        let held: usize = taken.iter().map(|b| b.evidence.len()).sum();
        // Five records in at most four runs (three if both threads drew one shard).
        assert!(
            (3..=4).contains(&held),
            "a run of one evidence is held once: {held}"
        );
        let events = events(&taken);
        let order: Vec<u64> = events.iter().map(|e| e.elapsed_us).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        for event in &events {
            assert_eq!(event.decision_id, ids[event.elapsed_us as usize]);
            let expected = if event.elapsed_us == 3 {
                &fresh
            } else {
                &cached
            };
            assert!(std::ptr::eq(event.evidence, &**expected));
        }
        taken.iter_mut().for_each(Batch::clear);
        assert_eq!(
            Arc::strong_count(&cached),
            1,
            "the writer released every reference"
        );
    }

    /// The evidence of a delegated call by one app for `user`.
    fn acting_for(user: &str) -> Evidence {
        Evidence {
            actor: Some(Arc::new(crate::evidence::Actor {
                principal: "spiffe://x/app".into(),
                workload: None,
                token: None,
                mode: crate::identity::AccessMode::Delegated,
                user: Some(user.into()),
            })),
            ..(*evidence()).clone()
        }
    }

    /// A decision with `evidence` made at `time_ms`.
    fn at(time_ms: u64, evidence: &Evidence) -> Event<'_> {
        Event {
            time_ms,
            decision_id: DecisionId::next(),
            elapsed_us: 0,
            evidence,
            query: None,
        }
    }

    /// Groups for the inventory and the signals: in one millisecond, two workers' copies of
    /// one caller's evidence gather into one group even with other decisions between them;
    /// another outcome, another user, other determining policies or another millisecond make
    /// a group of their own. Groups keep the order of their first decisions.
    #[test]
    fn groups_hold_the_decisions_the_inventory_cannot_tell_apart() {
        let (a, a_copy) = (acting_for("alice"), acting_for("alice"));
        let bob = acting_for("bob");
        let allowed = Evidence {
            reason: "allowed",
            status: 200,
            determining: vec!["p1".into()],
            ..acting_for("alice")
        };
        let other_policy = Evidence {
            determining: vec!["p2".into()],
            ..allowed.clone()
        };
        let batch = [
            at(1, &a),
            at(1, &a_copy),
            at(1, &a),
            at(1, &a_copy),
            at(1, &bob),
            at(1, &a),
            at(2, &a),
            at(2, &allowed),
            at(2, &other_policy),
            at(2, &other_policy),
            at(2, &a_copy),
            at(2, &a),
        ];
        let Groups { groups, of } = Groups::of(&batch);
        assert_eq!(groups, [(0, 5), (4, 1), (6, 3), (7, 1), (8, 2)]);
        assert_eq!(of, [0, 0, 0, 0, 1, 0, 2, 3, 4, 4, 2, 2]);
    }

    /// A millisecond of many different callers: more than [`Groups::SEEN`] evidences, each
    /// found by its observation's hash once its address is no longer remembered; a copy with
    /// the same content joins its group, another content never does.
    #[test]
    fn a_crowded_millisecond_gathers_every_caller_once() {
        let users: Vec<Evidence> = (0..Groups::SEEN + 8)
            .map(|i| acting_for(&format!("user-{i}")))
            .collect();
        let copies: Vec<Evidence> = users.iter().map(Evidence::clone).collect();
        let batch: Vec<Event> = users
            .iter()
            .chain(&copies)
            .chain(users.iter().rev())
            .map(|e| at(1, e))
            .collect();
        let Groups { groups, of } = Groups::of(&batch);
        let n = users.len();
        let expected: Vec<(usize, u64)> = (0..n).map(|i| (i, 3)).collect();
        assert_eq!(groups, expected);
        let expected: Vec<usize> = (0..n).chain(0..n).chain((0..n).rev()).collect();
        assert_eq!(of, expected);
    }

    /// A writer with no sink, feeding `shared`'s inventory and signals.
    fn feeding(shared: &Arc<Shared>) -> Writer {
        Writer {
            pending: Arc::new(Pending::new(16)),
            file: None,
            stdout: false,
            otlp: None,
            options: RecordOptions::default(),
            shared: Arc::clone(shared),
            metrics: Metrics,
        }
    }

    /// Evidence of every kind the inventory and the signals tell apart, across two callers,
    /// app-only and delegated calls (for one of two users, with a token expiring at one of two
    /// times), an
    /// allow and two denials, and two actions; each content twice, at two addresses (two
    /// workers' copies).
    fn palette() -> Vec<Evidence> {
        let mut palette = Vec::new();
        for principal in ["spiffe://x/a", "spiffe://x/b"] {
            for user in [None, Some("alice"), Some("bob")] {
                for (reason, status) in [("allowed", 200), ("no_route", 403), ("denied", 403)] {
                    for action in ["read", "write"] {
                        let evidence = Evidence {
                            reason,
                            status,
                            determining: if status == 200 {
                                vec!["p1".into()]
                            } else {
                                vec![]
                            },
                            actor: Some(Arc::new(crate::evidence::Actor {
                                principal: principal.into(),
                                workload: None,
                                // A delegated call's token; two tokens of one caller, with
                                // different expiries, by action.
                                token: user.map(|_| crate::evidence::TokenEvidence {
                                    issuer: "https://issuer".into(),
                                    client_id: None,
                                    jti: None,
                                    expires_at: 1_790_003_600 + i64::from(action == "write") * 60,
                                    issued_at: Some(1_789_999_000),
                                    svid: false,
                                }),
                                mode: if user.is_some() {
                                    crate::identity::AccessMode::Delegated
                                } else {
                                    crate::identity::AccessMode::AppOnly
                                },
                                user: user.map(Into::into),
                            })),
                            target: Some(crate::evidence::Target {
                                action: action.into(),
                                resource_type: "Order".into(),
                                resource_id: "1".into(),
                            }),
                            ..(*evidence()).clone()
                        };
                        palette.push(evidence.clone());
                        palette.push(evidence);
                    }
                }
            }
        }
        palette
    }

    /// A finding line without what differs between any two writers (its random uid) or with
    /// the order inside a millisecond (the burst's latest denial).
    fn comparable(line: &[u8]) -> serde_json::Value {
        fn strip(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::String(text) => {
                    if let Some(at) = text.find(" (latest:") {
                        text.truncate(at);
                    }
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
                serde_json::Value::Object(fields) => {
                    fields.remove("uid");
                    fields.values_mut().for_each(strip);
                }
                _ => {}
            }
        }
        let mut value = serde_json::from_slice(line).unwrap();
        strip(&mut value);
        value
    }

    proptest::proptest! {
        // Twice the default: an interleaving that tells two groups apart needs both in one
        // millisecond.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// A batch reduced in groups leaves the inventory as reducing each of its decisions
        /// alone, in order, does, and the signals set off the same findings (a burst may name
        /// another denial of its millisecond as its latest): across milliseconds shared and
        /// windows passing, two callers, users, outcomes, actions and copies of one evidence.
        #[test]
        fn a_batch_reduced_in_groups_is_reduced_as_each_of_its_decisions(
            steps in proptest::collection::vec((0..7usize, 0..72usize), 1..160),
        ) {
            let settings = SignalSettings {
                learn_ms: 0,
                spike_min_calls: 8,
                spike_multiplier: 2,
                burst_denials: 4,
                shed_spikes: true,
                ..SignalSettings::default()
            };
            let palette = palette();
            let mut time_ms = 1_790_000_000_000u64;
            let batch: Vec<Event> = steps
                .iter()
                .filter_map(|&(step, which)| {
                    // Mostly the same millisecond; the next, a few seconds, or a window on.
                    time_ms += [0, 0, 0, 0, 1, 4_000, 25_000][step];
                    Some(at(time_ms, palette.get(which)?))
                })
                .collect();
            let grouped = Shared::new(Vec::new(), 10, Signals::new(settings.clone(), None));
            let each = Shared::new(Vec::new(), 10, Signals::new(settings, None));
            let (mut grouped_lines, mut each_lines) = (Vec::new(), Vec::new());
            feeding(&grouped).write_batch(&batch, &mut grouped_lines);
            let mut alone = feeding(&each);
            for event in &batch {
                alone.write_batch(std::slice::from_ref(event), &mut each_lines);
            }
            let (grouped_inventory, each_inventory) =
                (grouped.inventory.lock().unwrap(), each.inventory.lock().unwrap());
            proptest::prop_assert_eq!(grouped_inventory.summary(), each_inventory.summary());
            let findings = |lines: &[u8]| {
                let mut findings: Vec<String> = lines
                    .split(|&b| b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(|line| comparable(line).to_string())
                    .collect();
                findings.sort();
                findings
            };
            proptest::prop_assert_eq!(findings(&grouped_lines), findings(&each_lines));
        }
    }

    /// Review finding: nothing checked how the writer uses its groups. Every decision of a
    /// group is still a line of its own on the sinks (its own decision id), the inventory
    /// counts every decision, and each group's user is its own (pseudonymised) user.
    #[test]
    fn a_group_is_counted_whole_and_every_decision_in_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut writer = Writer {
            pending: Arc::new(Pending::new(16)),
            file: Some(sink::RotatingFile::open(&path, 1 << 20, 1).unwrap()),
            stdout: false,
            otlp: None,
            options: RecordOptions {
                pseudonymise_users: true,
            },
            shared: Shared::new(
                Vec::new(),
                10,
                Signals::new(SignalSettings::default(), None),
            ),
            metrics: Metrics,
        };
        let (alice, alice_copy, bob) =
            (acting_for("alice"), acting_for("alice"), acting_for("bob"));
        // The groups interleave: alice's three decisions of the first millisecond are one
        // group around bob's.
        let batch = [
            at(1, &alice),
            at(1, &bob),
            at(1, &alice_copy),
            at(1, &bob),
            at(1, &alice),
            at(2, &alice),
        ];
        let mut buf = Vec::new();
        writer.write_batch(&batch, &mut buf);
        let shared = writer.shared.clone();
        drop(writer);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), batch.len(), "{text}");
        let (alice_is, bob_is) = (ocsf::pseudonym("alice"), ocsf::pseudonym("bob"));
        assert!(!text.contains("\"alice\""), "{text}");
        for (line, event) in lines.iter().zip(&batch) {
            assert!(line.contains(event.decision_id.hex().as_str()), "{line}");
            let (user, other) = if std::ptr::eq(event.evidence, &bob) {
                (&bob_is, &alice_is)
            } else {
                (&alice_is, &bob_is)
            };
            assert!(line.contains(user.as_str()), "{line}");
            assert!(!line.contains(other.as_str()), "{line}");
        }
        let inventory = shared.inventory.lock().unwrap();
        let summary = inventory.summary();
        assert_eq!(summary.records, 6);
        let app = summary.identities.get("spiffe://x/app").unwrap();
        assert_eq!((app.calls, app.delegated), (6, 6));
        let users: Vec<&str> = app.users.iter().map(String::as_str).collect();
        let mut expected = [alice_is.as_str(), bob_is.as_str()];
        expected.sort_unstable();
        assert_eq!(users, expected);
    }

    /// Review finding: drops reached `tollgate_audit_dropped_total` only when the writer came
    /// round, so while it was stalled on a slow sink (when drops happen) the metric stood still.
    #[test]
    fn drops_reach_the_metric_without_the_writer() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let log = metrics::with_local_recorder(&recorder, || AuditLog {
            queue: Some(Arc::new(Pending::new(1))),
            ..AuditLog::disabled()
        });
        for _ in 0..3 {
            let _ = log.record(
                DecisionId::next(),
                evidence(),
                None,
                crate::clock::started(),
                Duration::ZERO,
            );
        }
        crate::metrics::publish();
        let text = handle.render();
        assert!(text.contains("tollgate_audit_dropped_total 2"), "{text}");
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let pending = Arc::new(Pending::new(1));
        let log = AuditLog {
            queue: Some(pending.clone()),
            ..AuditLog::disabled()
        };
        let record = |log: &AuditLog| {
            log.record(
                DecisionId::next(),
                evidence(),
                Some("/a?k=secret"),
                crate::clock::started(),
                Duration::ZERO,
            )
        };
        // Nothing reads: the second record returns at once, dropped, and only the first waits.
        assert_eq!(record(&log), Queued::Yes);
        assert_eq!(record(&log), Queued::Dropped);
        assert_eq!(log.dropped(), 1);
        let mut taken = Default::default();
        assert!(pending.take(&mut taken), "a full shard is busy");
        let events = events(&taken);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].query, Some("k=_"));
        // Taking made room again.
        assert_eq!(record(&log), Queued::Yes);
        assert_eq!(record(&AuditLog::disabled()), Queued::Disabled);
    }

    /// `new_access = "deny"` with nothing reviewed would deny everything: refused at start.
    #[test]
    fn denying_new_access_needs_a_baseline() {
        let settings = AuditSettings {
            signals: SignalSettings {
                deny_new_access: true,
                ..SignalSettings::default()
            },
            ..AuditSettings::default()
        };
        let error = AuditLog::start(&settings, Metrics).err().unwrap();
        assert!(error.contains("--baseline"), "{error}");
    }
}
