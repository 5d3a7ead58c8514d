//! Audit records: one JSON line per decision, written by a background task. The hot path only
//! does a non-blocking `try_send` into a bounded queue; when the queue is full the record is
//! dropped and counted (`tollgate_audit_dropped_total`), never waited for.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::request::CheckInput;
use crate::verdict::{Outcome, Verdict};

/// Most records written per batch before a flush.
const BATCH: usize = 256;

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

impl std::fmt::Display for AuditTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One decision, as written.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// Decision id (also sent upstream or in the deny body).
    pub decision_id: String,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Reason code, `allowed` for allows.
    pub reason: &'static str,
    /// Denial detail.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Cedar principal id, once identified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request target as sent.
    pub path: String,
    /// Host.
    pub host: String,
    /// Source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// Determining policies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Cedar evaluation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Time spent deciding, in microseconds.
    pub elapsed_us: u64,
}

/// The sending side; cheap to clone. Disabled when no target is configured.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: Option<mpsc::Sender<AuditRecord>>,
    metrics: Metrics,
}

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled() -> Self {
        Self {
            queue: None,
            metrics: Metrics,
        }
    }

    /// Opens `target` and starts the writer task; it ends once every `AuditLog` clone is gone
    /// and the queue is drained.
    pub async fn start(
        target: &AuditTarget,
        capacity: usize,
        metrics: Metrics,
    ) -> std::io::Result<(Self, JoinHandle<Result<(), String>>)> {
        let mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = match target {
            AuditTarget::Stdout => Box::new(tokio::io::stdout()),
            AuditTarget::File(path) => Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?,
            ),
        };
        let (tx, mut rx) = mpsc::channel::<AuditRecord>(capacity.max(1));
        let writer = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(first) = rx.recv().await {
                buf.clear();
                let mut next = Some(first);
                let mut n = 0;
                while let Some(record) = next.take() {
                    if serde_json::to_writer(&mut buf, &record).is_ok() {
                        buf.push(b'\n');
                    }
                    n += 1;
                    if n < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if let Err(e) = out.write_all(&buf).await.and(out.flush().await) {
                    tracing::error!(error = %e, "audit write failed; records lost");
                }
            }
            Ok(())
        });
        Ok((
            Self {
                queue: Some(tx),
                metrics,
            },
            writer,
        ))
    }

    /// Queues a record for `verdict`; never blocks. A full queue drops the record (counted in
    /// `tollgate_audit_dropped_total`) rather than slow the request.
    pub fn record(
        &self,
        verdict: &Verdict,
        input: Option<&CheckInput>,
        elapsed: Duration,
    ) -> Queued {
        let Some(queue) = &self.queue else {
            return Queued::Disabled;
        };
        let record = AuditRecord::new(verdict, input, elapsed);
        if queue.try_send(record).is_err() {
            self.metrics.audit_dropped();
            return Queued::Dropped;
        }
        Queued::Yes
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

impl AuditRecord {
    /// The record for one decision.
    pub fn new(verdict: &Verdict, input: Option<&CheckInput>, elapsed: Duration) -> Self {
        let (decision, reason, message) = match &verdict.outcome {
            Outcome::Allow => ("allow", "allowed", String::new()),
            Outcome::Deny(d) => ("deny", d.reason.as_str(), d.message.clone()),
        };
        let field = |f: fn(&CheckInput) -> &str| input.map(f).unwrap_or_default().to_owned();
        Self {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            decision_id: verdict.decision_id.to_string(),
            decision,
            reason,
            message,
            principal: verdict.principal.clone(),
            method: field(|i| &i.method),
            path: input.map(|i| redact_query(&i.path)).unwrap_or_default(),
            host: field(|i| &i.host),
            source_ip: input.and_then(|i| i.source_ip).map(|ip| ip.to_string()),
            policies: verdict.determining.clone(),
            errors: verdict.errors.clone(),
            elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// The request target with every query value replaced by `_`: query strings carry secrets
/// (`?api_key=…`, OAuth codes), and an audit record never holds a credential. Parameter
/// names stay, so a reviewer still sees the shape of the call.
fn redact_query(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    out.push('?');
    for (i, param) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match param.split_once('=') {
            Some((name, _)) => {
                out.push_str(name);
                out.push_str("=_");
            }
            None => out.push_str(param),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::ReasonCode;

    #[tokio::test]
    async fn writes_one_json_line_per_decision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (log, writer) = AuditLog::start(&AuditTarget::File(path.clone()), 16, Metrics)
            .await
            .unwrap();
        let input = CheckInput {
            method: "GET".into(),
            path: "/a".into(),
            ..Default::default()
        };
        let first = log.record(
            &Verdict::allow("p".into(), vec![], vec![]),
            Some(&input),
            Duration::from_micros(3),
        );
        let second = log.record(
            &Verdict::deny(ReasonCode::NoRoute, "no route"),
            None,
            Duration::ZERO,
        );
        assert_eq!((first, second), (Queued::Yes, Queued::Yes));
        drop(log);
        writer.await.unwrap().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["decision"], "allow");
        assert_eq!(lines[0]["path"], "/a");
        assert_eq!(lines[1]["reason"], "no_route");
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_blocking() {
        let (tx, mut rx) = mpsc::channel(1);
        let log = AuditLog {
            queue: Some(tx),
            metrics: Metrics,
        };
        let verdict = Verdict::deny(ReasonCode::NoRoute, "x");
        // Nothing reads: the second record returns at once, dropped, and only the first waits.
        assert_eq!(log.record(&verdict, None, Duration::ZERO), Queued::Yes);
        assert_eq!(log.record(&verdict, None, Duration::ZERO), Queued::Dropped);
        assert_eq!(rx.try_recv().map(|r| r.reason), Ok("no_route"));
        assert!(rx.try_recv().is_err());
        assert_eq!(
            AuditLog::disabled().record(&verdict, None, Duration::ZERO),
            Queued::Disabled
        );
    }
}
