//! `tollgate check --request FILE`: one decision offline, with the server's own pipeline.

use std::path::PathBuf;

use rustls_pki_types::UnixTime;

use crate::authz::{self, input::CheckInput};
use crate::cache::Caches;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::verdict::Outcome;

use super::{ConfigArg, Exit};

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The request file is JSON: {\"method\": \"GET\", \"path\": \"/orders/1\", \
\"headers\": {\"authorization\": \"Bearer …\"}, \"certificate\": \"<PEM>\", \"source_ip\": \"10.0.0.1\", \
\"host\": \"…\", \"principal\": \"…\"}. Exit code: 0 allow, 2 deny, 1 error, 3 invalid config."
)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// JSON file describing the request.
    #[arg(long, short = 'r', value_name = "FILE")]
    request: PathBuf,
}

pub(super) fn run(args: CheckArgs) -> Exit {
    let config = match Config::load(&args.config.source(), 1) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Invalid;
        }
    };
    let text = match std::fs::read_to_string(&args.request) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {}: cannot read: {e}", args.request.display());
            return Exit::Error;
        }
    };
    let input: CheckInput = match serde_json::from_str(&text) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: {}: {e}", args.request.display());
            return Exit::Error;
        }
    };
    let caches = Caches::new(0, 0, Metrics);
    let verdict = authz::check(&config.snapshot, &caches, &input, UnixTime::now());
    let policies = &config.snapshot.policies;
    match &verdict.outcome {
        Outcome::Allow => println!("decision: allow"),
        Outcome::Deny(denial) => {
            println!("decision: deny");
            println!("reason: {}", denial.reason);
            println!("message: {}", denial.message);
        }
    }
    if let Some(principal) = &verdict.principal {
        println!("principal: App::\"{principal}\"");
    }
    for id in &verdict.determining {
        match policies.source(id) {
            Some(src) => println!("policy: {id} ({}:{})", src.file, src.line),
            None => println!("policy: {id}"),
        }
    }
    for error in &verdict.errors {
        println!("evaluation error: {error}");
    }
    if verdict.is_allowed() {
        Exit::Ok
    } else {
        Exit::Deny
    }
}
