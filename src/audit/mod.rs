//! Decision records: every decision becomes one OCSF API Activity record ([`ocsf`]) written
//! to the configured sinks ([`sink`]), and one observation in this sidecar's live inventory
//! (`/identities`). The request path only does a non-blocking `try_send` of an [`Event`] (a
//! reference to the decision's shared [`Evidence`] plus its id and time) into a bounded
//! queue; when the queue is full the record is dropped and counted
//! (`tollgate_audit_dropped_total`, `/readyz`), never waited for. One thread, off the
//! runtime's workers, serialises, writes and counts.

pub mod ocsf;
pub mod sink;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::evidence::Evidence;
use crate::inventory::{Inventory, Observation, Summary};
use crate::metrics::Metrics;
use crate::verdict::DecisionId;
pub use ocsf::RecordOptions;
pub use sink::OtlpSettings;

/// Most records written per batch before the sinks are written.
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

/// One decision on its way to the sinks.
#[derive(Debug)]
pub struct Event {
    /// Unix milliseconds (filled in by the writer when `decided` is set).
    pub time_ms: u64,
    /// When the decision was made, as the request path already measured it: the writer turns
    /// it into `time_ms`, so the request path reads no wall clock for its record.
    pub decided: Option<std::time::Instant>,
    /// The decision's id.
    pub decision_id: DecisionId,
    /// Time spent deciding, microseconds.
    pub elapsed_us: u64,
    /// Who asked for what, and the outcome.
    pub evidence: Arc<Evidence>,
    /// The query string, values already replaced (see [`crate::evidence::redact_query`]).
    pub query: Option<String>,
}

/// The sending side; cheap to clone. Disabled in one-shot tools.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: Option<mpsc::Sender<Event>>,
    shared: Arc<Shared>,
    metrics: Metrics,
}

/// What the writer and the admin endpoints share.
#[derive(Debug)]
struct Shared {
    dropped: AtomicU64,
    write_errors: AtomicU64,
    inventory: Mutex<Inventory>,
    sinks: Vec<String>,
}

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled() -> Self {
        Self {
            queue: None,
            shared: Arc::new(Shared {
                dropped: AtomicU64::new(0),
                write_errors: AtomicU64::new(0),
                inventory: Mutex::new(Inventory::new(1)),
                sinks: Vec::new(),
            }),
            metrics: Metrics,
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
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            inventory: Mutex::new(Inventory::new(settings.identities_max)),
            sinks: settings.sinks(),
        });
        let (tx, rx) = mpsc::channel::<Event>(settings.queue.max(1));
        let writer = Writer {
            rx,
            file,
            stdout: settings.stdout,
            otlp,
            options: RecordOptions {
                pseudonymise_users: settings.pseudonymise_users,
            },
            shared: shared.clone(),
            metrics: metrics.clone(),
        };
        let handle = tokio::task::spawn_blocking(move || {
            writer.run();
            Ok(())
        });
        Ok((
            Self {
                queue: Some(tx),
                shared,
                metrics,
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
        decided: std::time::Instant,
        elapsed: Duration,
    ) -> Queued {
        let Some(queue) = &self.queue else {
            return Queued::Disabled;
        };
        let event = Event {
            time_ms: 0,
            decided: Some(decided),
            decision_id,
            elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            evidence,
            query: target.and_then(crate::evidence::redact_query),
        };
        if queue.try_send(event).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.audit_dropped();
            return Queued::Dropped;
        }
        Queued::Yes
    }

    /// What the admin endpoints show of this log; holding it does not keep the writer running.
    pub fn view(&self) -> AuditView {
        AuditView {
            shared: self.shared.clone(),
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
}

impl AuditView {
    /// Records dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Batches a sink failed to write, since start.
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// The sinks records go to.
    pub fn sinks(&self) -> &[String] {
        &self.shared.sinks
    }

    /// A copy of the live inventory, and how many identities it evicted to stay bounded.
    pub fn inventory(&self) -> (Summary, u64) {
        match self.shared.inventory.lock() {
            Ok(inventory) => (inventory.summary().clone(), inventory.evicted()),
            Err(poisoned) => {
                let inventory = poisoned.into_inner();
                (inventory.summary().clone(), inventory.evicted())
            }
        }
    }
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
    rx: mpsc::Receiver<Event>,
    file: Option<sink::RotatingFile>,
    stdout: bool,
    otlp: Option<sink::Otlp>,
    options: RecordOptions,
    shared: Arc<Shared>,
    metrics: Metrics,
}

impl Writer {
    /// Drains the queue in batches, and naps when it is empty instead of waiting on it: a
    /// waiting receiver would make every request's send wake a thread (a syscall on the request
    /// path), while a nap costs a record a few milliseconds of delay.
    fn run(mut self) {
        use tokio::sync::mpsc::error::TryRecvError;
        let mut buf = Vec::with_capacity(256 * 1024);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            batch.clear();
            let mut closed = false;
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                let (wall, now) = (unix_ms(SystemTime::now()), std::time::Instant::now());
                for event in &mut batch {
                    if let Some(at) = event.decided.take() {
                        let ago = u64::try_from(now.duration_since(at).as_millis()).unwrap_or(0);
                        event.time_ms = wall.saturating_sub(ago);
                    }
                }
                buf.clear();
                self.write_batch(&batch, &mut buf);
            }
            if closed {
                break;
            }
            if batch.len() < BATCH {
                std::thread::sleep(IDLE_NAP);
            }
        }
        if let Some(otlp) = &self.otlp {
            otlp.shutdown();
        }
    }

    fn write_batch(&mut self, batch: &[Event], buf: &mut Vec<u8>) {
        let users: Vec<_> = batch
            .iter()
            .map(|event| ocsf::user(&event.evidence, self.options))
            .collect();
        for (event, user) in batch.iter().zip(&users) {
            let start = buf.len();
            ocsf::write_line(buf, event, user.as_deref(), self.options);
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
        for (event, user) in batch.iter().zip(&users) {
            policies.clear();
            policies.extend(event.evidence.determining.iter().map(String::as_str));
            inventory.observe(&observation(event, user.as_deref()), &policies);
        }
        drop(inventory);
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

    fn failed(&self, sink: &str, error: &std::io::Error) {
        self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
        self.metrics.audit_write_failed();
        tracing::error!(sink, error = %error, "audit write failed; records lost");
    }
}

/// What the inventory needs of one event.
pub fn observation<'a>(event: &'a Event, user: Option<&'a str>) -> Observation<'a> {
    let e = &*event.evidence;
    let actor = e.actor.as_ref();
    let workload = actor.and_then(|a| a.workload.as_ref());
    let token = actor.and_then(|a| a.token.as_ref());
    Observation {
        time_ms: event.time_ms,
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
    }
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
            actor: Some(Actor {
                principal: "spiffe://x/app".into(),
                workload: None,
                token: None,
                mode: crate::identity::AccessMode::Delegated,
                user: Some("alice@corp".into()),
            }),
            ..(*evidence()).clone()
        };
        let event = Event {
            time_ms: 1,
            decided: None,
            decision_id: DecisionId::next(),
            elapsed_us: 1,
            evidence: Arc::new(evidence),
            query: None,
        };
        let options = RecordOptions {
            pseudonymise_users: true,
        };
        let mut line = Vec::new();
        let user = ocsf::user(&event.evidence, options);
        ocsf::write_line(&mut line, &event, user.as_deref(), options);
        let line = String::from_utf8(line).unwrap();
        assert!(!line.contains("alice"), "{line}");
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let (tx, mut rx) = mpsc::channel(1);
        let log = AuditLog {
            queue: Some(tx),
            ..AuditLog::disabled()
        };
        let record = |log: &AuditLog| {
            log.record(
                DecisionId::next(),
                evidence(),
                Some("/a?k=secret"),
                std::time::Instant::now(),
                Duration::ZERO,
            )
        };
        // Nothing reads: the second record returns at once, dropped, and only the first waits.
        assert_eq!(record(&log), Queued::Yes);
        assert_eq!(record(&log), Queued::Dropped);
        assert_eq!(log.dropped(), 1);
        let queued = rx.try_recv().unwrap();
        assert_eq!(queued.query.as_deref(), Some("k=_"));
        assert!(rx.try_recv().is_err());
        assert_eq!(record(&AuditLog::disabled()), Queued::Disabled);
    }
}
