//! `tollgate fmt [--check] [PATHS]`: format Cedar policy files with Cedar's own formatter.

use std::path::PathBuf;

use super::Exit;

/// Arguments of `fmt`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit code: 0 formatted (or already formatted), 3 a file does not parse \
or, with --check, would be reformatted, 1 error."
)]
pub struct FmtArgs {
    /// Report files that are not formatted instead of rewriting them.
    #[arg(long)]
    check: bool,
    /// Maximum line width.
    #[arg(long, default_value_t = 100)]
    line_width: usize,
    /// Cedar files, or folders whose `*.cedar` files to format.
    #[arg(default_value = "policies")]
    paths: Vec<PathBuf>,
}

pub(super) fn run(args: FmtArgs) -> Exit {
    let mut files = Vec::new();
    for path in &args.paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    return Exit::Error;
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    let config = cedar_policy_formatter::Config {
        line_width: args.line_width,
        indent_width: 2,
    };
    let mut problems = 0;
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return Exit::Error;
            }
        };
        let formatted = match cedar_policy_formatter::policies_str_to_pretty(&text, &config) {
            Ok(formatted) => formatted,
            Err(e) => {
                println!("{}: cannot format: {e:#}", file.display());
                problems += 1;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        if args.check {
            println!("would reformat {}", file.display());
            problems += 1;
        } else if let Err(e) = std::fs::write(file, &formatted) {
            eprintln!("error: {}: {e}", file.display());
            return Exit::Error;
        } else {
            println!("formatted {}", file.display());
        }
    }
    if problems > 0 {
        Exit::Invalid
    } else {
        Exit::Ok
    }
}
