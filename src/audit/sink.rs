//! Where records go: a file rotated by size under a disk cap, standard output for a log
//! shipper, and an OpenTelemetry Collector over OTLP/gRPC. Each is written by the evidence
//! thread, never by a request; a sink that fails logs it and keeps the others going.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, SdkLogger, SdkLoggerProvider,
};

/// A file rotated by size: `audit.log` is written, `audit.log.1` … `audit.log.<keep>` are the
/// previous ones, newest first, and the oldest is deleted. Disk use stays under
/// `max_bytes × (keep + 1)`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    written: u64,
}

impl RotatingFile {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep,
            file,
            written,
        })
    }

    /// Writes whole lines (each ending in `\n`), rotating between two lines whenever the next
    /// would take the file past its size. A single line longer than a whole file gets a file
    /// of its own.
    pub fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let mut rest = lines;
        while !rest.is_empty() {
            let room = usize::try_from(self.max_bytes.saturating_sub(self.written))
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let fits = rest
                .get(..room)
                .and_then(|r| r.iter().rposition(|&b| b == b'\n'))
                .map_or(0, |end| end + 1);
            let take = match fits {
                0 if self.written > 0 => {
                    self.rotate()?;
                    continue;
                }
                0 => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |end| end + 1),
                n => n,
            };
            let (now, later) = rest.split_at(take);
            self.file.write_all(now)?;
            self.written += now.len() as u64;
            rest = later;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            // The oldest goes; each other moves up one; the current becomes `.1`.
            match std::fs::remove_file(numbered(self.keep)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..self.keep).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

/// Where the OTLP exporter sends records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// Per-export deadline.
    pub timeout: Duration,
    /// Records the exporter holds before it drops (its own queue, behind Tollgate's).
    pub queue: usize,
}

/// Records as OpenTelemetry log records, batched and exported by the SDK's own thread: the
/// body is the OCSF record (the same JSON line a file gets), with the event name
/// `ocsf.api_activity` and the decision and reason as attributes for the collector to route on.
pub struct Otlp {
    provider: SdkLoggerProvider,
    logger: SdkLogger,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp").finish_non_exhaustive()
    }
}

impl Otlp {
    /// The exporter for `settings`; must be called within the Tokio runtime that will carry
    /// its gRPC connection. Connects lazily: a collector that is down costs exports, not start.
    pub fn start(settings: &OtlpSettings) -> Result<Self, String> {
        let mut builder = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout);
        if settings.endpoint.starts_with("https://") {
            builder = builder
                .with_tls_config(tonic::transport::ClientTlsConfig::new().with_enabled_roots());
        }
        let exporter = builder.build().map_err(|e| e.to_string())?;
        let processor = BatchLogProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(settings.queue.max(1))
                    .with_max_export_batch_size(512.min(settings.queue.max(1)))
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        let provider = SdkLoggerProvider::builder()
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("tollgate")
                    .build(),
            )
            .with_log_processor(processor)
            .build();
        let logger = provider.logger("tollgate.audit");
        Ok(Self { provider, logger })
    }

    /// Hands one record (a JSON line, without its newline) to the exporter; never blocks.
    pub fn emit(
        &self,
        line: &str,
        allowed: bool,
        reason: &'static str,
        time: std::time::SystemTime,
    ) {
        self.send(
            line,
            time,
            ("ocsf.api_activity", super::ocsf::API_ACTIVITY),
            &[
                ("tollgate.decision", if allowed { "allow" } else { "deny" }),
                ("tollgate.reason", reason),
            ],
        );
    }

    /// Queues one Detection Finding line.
    pub fn emit_finding(&self, line: &str, kind: &'static str, time: std::time::SystemTime) {
        self.send(
            line,
            time,
            ("ocsf.detection_finding", super::ocsf::DETECTION_FINDING),
            &[("tollgate.signal", kind)],
        );
    }

    fn send(
        &self,
        line: &str,
        time: std::time::SystemTime,
        (event, class_uid): (&'static str, u32),
        attributes: &[(&'static str, &'static str)],
    ) {
        let mut record = self.logger.create_log_record();
        record.set_event_name(event);
        record.set_timestamp(time);
        record.set_observed_timestamp(std::time::SystemTime::now());
        record.set_severity_number(Severity::Info);
        record.set_body(AnyValue::from(line.to_owned()));
        record.add_attribute("ocsf.class_uid", i64::from(class_uid));
        for (key, value) in attributes {
            record.add_attribute(*key, *value);
        }
        self.logger.emit(record);
    }

    /// Exports what is queued and stops the exporter (blocking: call it off the runtime's
    /// worker threads).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "the OTLP exporter did not shut down cleanly; records may be lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_disk_use_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = RotatingFile::open(&path, 100, 2).unwrap();
        let line = [b'x'; 39]
            .iter()
            .copied()
            .chain([b'\n'])
            .collect::<Vec<_>>();
        for _ in 0..20 {
            file.write(&line).unwrap();
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
        let total: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 300, "{total} bytes on disk");
        // Whole lines only, in every file.
        for name in names {
            let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
            assert!(text.lines().all(|l| l.len() == 39));
            assert_eq!(text.len() % 40, 0);
        }
    }
}
