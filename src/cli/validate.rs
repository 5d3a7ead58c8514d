//! `tollgate validate`: load everything exactly as `serve` would, report every problem found
//! (plus lints) as `file:line:col`, or as JSON.

use crate::config;
use crate::diagnostic::{Diagnostic, Severity};
use crate::lint::lint;

use super::{ConfigArg, Exit};

/// Output format for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:col: severity[kind]: message`, one per line.
    Human,
    /// A JSON array of diagnostics.
    Json,
}

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit code: 0 valid (warnings allowed), 3 errors (or warnings with --deny-warnings)."
)]
pub struct ValidateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Treat warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
}

pub(super) fn run(args: ValidateArgs) -> Exit {
    let source = args.config.source();
    let name = source.config_name();
    let (summary, diagnostics) = match config::load(&source, 1) {
        Ok((_, snapshot)) => {
            let summary = format!(
                "{name}: {} policies, {} routes",
                snapshot.policies.policy_count(),
                snapshot.routes.iter().count()
            );
            (Some(summary), lint(&snapshot, &name))
        }
        Err(error) => (None, Diagnostic::from_config_error(&error)),
    };
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    match args.format {
        Format::Json => match serde_json::to_string_pretty(&diagnostics) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Error;
            }
        },
        Format::Human => {
            for d in &diagnostics {
                println!("{d}");
            }
            let counts = format!("{}, {}", count(errors, "error"), count(warnings, "warning"));
            match &summary {
                Some(summary) => println!("{summary}; {counts}"),
                None => println!("{name}: {counts}"),
            }
        }
    }
    if errors > 0 || (args.deny_warnings && warnings > 0) {
        Exit::Invalid
    } else {
        Exit::Ok
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
