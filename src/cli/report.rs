//! `tollgate report`: the access review from audit records, and `tollgate report merge` of
//! saved summaries (one per node or per day) into one review.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};

use super::{ConfigArg, Exit};
use crate::config;
use crate::inventory::Summary;
use crate::report::read::{ReadNotes, Reader, Window};
use crate::report::review::{Thresholds, review};
use crate::report::{Baseline, SUMMARY_VERSION, SavedSummary, render};

/// Arguments of `tollgate report`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    /// Merge saved summaries instead of reading records.
    #[command(subcommand)]
    merge: Option<ReportCommand>,
    /// Audit files or folders (rotated and gzip'd files included); `-` reads standard input.
    #[arg(value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Count records from this time: RFC 3339 (`2026-11-01`, `2026-11-01T08:00:00Z`) or a
    /// duration ago (`90d`, `12h`, `30m`).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Count records before this time (same forms as `--since`).
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Save the reduced records for `tollgate report merge`.
    #[arg(long, value_name = "FILE")]
    save_summary: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Merge summaries saved with `--save-summary` (from several nodes, or several days) into
    /// one review.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// Summary files.
    #[arg(value_name = "SUMMARY", required = true)]
    summaries: Vec<PathBuf>,
    /// Save the merged summary (to merge again later).
    #[arg(long, value_name = "FILE")]
    save_summary: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct OutputArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also write the review as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Also write what each identity used, for the team to review and commit as the baseline
    /// live detection compares with.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Flag app-only identities granted more resource types than this.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_services: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Tables for a person.
    Text,
    /// The whole review as JSON.
    Json,
    /// Nothing (with `--html`, `--baseline` or `--save-summary`).
    None,
}

pub(super) fn run(args: ReportArgs) -> Exit {
    match args.merge {
        Some(ReportCommand::Merge(merge)) => run_merge(merge),
        None => run_read(args),
    }
}

fn run_read(args: ReportArgs) -> Exit {
    if args.inputs.is_empty() {
        eprintln!(
            "error: name the audit files or folders to read (`-` for standard input), e.g. \
             `tollgate report /var/log/tollgate/`"
        );
        return Exit::Error;
    }
    let now_ms = now_ms();
    let window = match (
        parse_when(args.since.as_deref(), now_ms),
        parse_when(args.until.as_deref(), now_ms),
    ) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Exit::Error;
        }
    };
    let mut progress = Progress::new();
    let mut report_progress = |notes: &ReadNotes, summary: &Summary| progress.show(notes, summary);
    let mut reader = Reader::new(
        Window {
            since_ms: window.0.unwrap_or(0),
            until_ms: window.1.unwrap_or(u64::MAX),
        },
        if std::io::stderr().is_terminal() {
            Some(&mut report_progress)
        } else {
            None
        },
    );
    for input in &args.inputs {
        if let Err(e) = reader.read_path(input) {
            eprintln!("error: {e}");
            return Exit::Error;
        }
    }
    let (summary, notes) = reader.finish();
    progress.done(&notes, &summary);
    let saved = SavedSummary {
        tollgate_summary: SUMMARY_VERSION,
        since_ms: window.0,
        until_ms: window.1,
        corrupt_at: notes.corrupt_at.clone(),
        summary,
    };
    if let Some(path) = &args.save_summary
        && let Err(exit) = write_json(path, &saved)
    {
        return exit;
    }
    output(&args.output, &saved, &notes)
}

fn run_merge(args: MergeArgs) -> Exit {
    let mut merged: Option<SavedSummary> = None;
    for path in &args.summaries {
        let saved: SavedSummary = match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        {
            Ok(saved) => saved,
            Err(e) => {
                eprintln!(
                    "error: {}: not a summary saved by `tollgate report --save-summary`: {e}",
                    path.display()
                );
                return Exit::Error;
            }
        };
        if saved.tollgate_summary != SUMMARY_VERSION {
            eprintln!(
                "error: {}: summary version {} (this Tollgate reads {SUMMARY_VERSION})",
                path.display(),
                saved.tollgate_summary
            );
            return Exit::Error;
        }
        let result = match &mut merged {
            Some(merged) => merged.merge(&saved),
            None => {
                let mut first = SavedSummary {
                    summary: Summary::default(),
                    corrupt_at: Vec::new(),
                    ..saved.clone()
                };
                let result = first.merge(&saved);
                merged = Some(first);
                result
            }
        };
        if let Err(e) = result {
            eprintln!("error: {}: {e}", path.display());
            return Exit::Error;
        }
    }
    let Some(merged) = merged else {
        return Exit::Error;
    };
    if let Some(path) = &args.save_summary
        && let Err(exit) = write_json(path, &merged)
    {
        return exit;
    }
    let notes = ReadNotes {
        corrupt_at: merged.corrupt_at.clone(),
        ..ReadNotes::default()
    };
    output(&args.output, &merged, &notes)
}

fn output(args: &OutputArgs, saved: &SavedSummary, notes: &ReadNotes) -> Exit {
    let snapshot = match config::load(&args.config.source(), 1) {
        Ok((_, snapshot)) => snapshot,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Invalid;
        }
    };
    let review = review(
        &saved.summary,
        notes,
        &snapshot.policies,
        &snapshot.routes,
        (saved.since_ms, saved.until_ms),
        Thresholds {
            max_services: args.max_services,
        },
    );
    if let Some(path) = &args.html
        && let Err(e) = std::fs::write(path, render::html(&review))
    {
        eprintln!("error: {}: cannot write: {e}", path.display());
        return Exit::Error;
    }
    if let Some(path) = &args.baseline
        && let Err(exit) = write_json(path, &Baseline::of(&saved.summary))
    {
        return exit;
    }
    match args.format {
        Format::Text => print!("{}", render::text(&review)),
        Format::Json => match serde_json::to_string_pretty(&review) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: cannot write the review as JSON: {e}");
                return Exit::Error;
            }
        },
        Format::None => {}
    }
    Exit::Ok
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Exit> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        Exit::Error
    })?;
    std::fs::write(path, json).map_err(|e| {
        eprintln!("error: {}: cannot write: {e}", path.display());
        Exit::Error
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `--since`/`--until`: RFC 3339 (a date alone is its midnight UTC) or a duration ago.
fn parse_when(text: Option<&str>, now_ms: u64) -> Result<Option<u64>, String> {
    let Some(text) = text else {
        return Ok(None);
    };
    let unit = |suffix: char, ms: u64| -> Option<u64> {
        let n: u64 = text.strip_suffix(suffix)?.parse().ok()?;
        Some(now_ms.saturating_sub(n.saturating_mul(ms)))
    };
    if let Some(ms) = unit('d', 86_400_000)
        .or_else(|| unit('h', 3_600_000))
        .or_else(|| unit('m', 60_000))
    {
        return Ok(Some(ms));
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    time::OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "`{text}` is not a time: use RFC 3339 (`2026-11-01`, `2026-11-01T08:00:00Z`) \
                 or a duration ago (`90d`, `12h`, `30m`)"
            )
        })
}

/// Progress on a terminal: records, bytes and rate, rewritten in place twice a second.
struct Progress {
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
        }
    }

    fn show(&mut self, notes: &ReadNotes, summary: &Summary) {
        if self.last.elapsed().as_millis() < 500 {
            return;
        }
        self.last = Instant::now();
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let records = summary.records + summary.corrupt + notes.outside_window;
        eprint!(
            "\r  read {:.1}M records, {} MB, {:.2}M records/s, {} identities ",
            records as f64 / 1e6,
            notes.bytes >> 20,
            records as f64 / seconds / 1e6,
            summary.identities.len()
        );
    }

    fn done(&mut self, notes: &ReadNotes, summary: &Summary) {
        if std::io::stderr().is_terminal() && self.started.elapsed().as_millis() >= 500 {
            self.last = Instant::now() - std::time::Duration::from_secs(1);
            self.show(notes, summary);
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = 1_000 * 86_400_000;
        assert_eq!(parse_when(Some("2d"), now), Ok(Some(998 * 86_400_000)));
        assert_eq!(parse_when(Some("30m"), now), Ok(Some(now - 1_800_000)));
        assert_eq!(
            parse_when(Some("2026-11-01"), now),
            Ok(Some(1_793_491_200_000))
        );
        assert_eq!(
            parse_when(Some("2026-11-01T08:00:00Z"), now),
            Ok(Some(1_793_491_200_000 + 8 * 3_600_000))
        );
        assert!(parse_when(Some("last tuesday"), now).is_err());
        assert_eq!(parse_when(None, now), Ok(None));
    }
}
