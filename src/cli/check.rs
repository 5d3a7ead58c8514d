//! `tollgate check --request FILE [--explain]`: one decision offline, with the server's own
//! pipeline; `--explain` shows the Cedar request it became and why it was decided so.

use std::path::PathBuf;

use crate::authz::{Authorizer, Trace};
use crate::config;
use crate::policy::PolicyStore;
use crate::request::CheckInput;
use crate::verdict::{Outcome, ReasonCode, Verdict};

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
    /// Also show the Cedar request, the determining policies' sources, and evaluation errors.
    #[arg(long)]
    explain: bool,
}

pub(super) fn run(args: CheckArgs) -> Exit {
    let snapshot = match config::load(&args.config.source(), 1) {
        Ok((_, snapshot)) => snapshot,
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
    let authorizer = Authorizer::offline(snapshot);
    let snapshot = authorizer.snapshot();
    let mut trace = Trace::default();
    let verdict = authorizer.decide(&snapshot, &input, crate::clock::wall(), Some(&mut trace));
    if args.explain {
        print_trace(&trace);
    }
    print_verdict(&verdict, &snapshot.policies);
    if args.explain {
        print_why(&verdict, &trace);
    }
    if verdict.is_allowed() {
        Exit::Ok
    } else {
        Exit::Deny
    }
}

fn print_verdict(verdict: &Verdict, policies: &PolicyStore) {
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
    for id in verdict.determining.iter() {
        match policies.source(id) {
            Some(src) => println!("policy: {id} ({}:{})", src.file, src.line),
            None => println!("policy: {id}"),
        }
    }
    for error in verdict.errors.iter() {
        println!("evaluation error: {error}");
    }
}

fn print_trace(trace: &Trace) {
    if let Some(caller) = &trace.caller {
        let mode = match caller.mode {
            crate::identity::AccessMode::AppOnly => "app_only",
            crate::identity::AccessMode::Delegated => "delegated",
        };
        println!(
            "caller: {} ({mode}{})",
            caller.principal,
            if caller.bound {
                ", certificate-bound token"
            } else {
                ""
            }
        );
    }
    if let Some(query) = &trace.query {
        println!("cedar request:");
        println!("  principal: App::{:?}", query.principal);
        println!("  action:    Action::{:?}", &*query.action);
        println!(
            "  resource:  {}::{:?}",
            query.resource.type_name, query.resource.id
        );
        for (name, value) in &query.resource.attrs {
            println!("    .{name} = {value}");
        }
        let context = serde_json::to_string_pretty(&query.context.to_json()).unwrap_or_default();
        println!("  context:   {}", context.replace('\n', "\n             "));
    }
}

fn print_why(verdict: &Verdict, trace: &Trace) {
    let Outcome::Deny(denial) = &verdict.outcome else {
        return;
    };
    let stage = match (trace.caller.is_some(), trace.query.is_some()) {
        (false, _) => "identity: the caller's credentials were refused; no policy was evaluated",
        (true, false) => {
            "mapping: the request did not map to a Cedar request; no policy was evaluated"
        }
        (true, true)
            if denial.reason == ReasonCode::PolicyDenied && verdict.determining.is_empty() =>
        {
            "policy: nothing permitted this request (Cedar denies by default)"
        }
        (true, true) if denial.reason == ReasonCode::PolicyDenied => {
            "policy: a forbid policy matched"
        }
        (true, true) => "policy: the request could not be evaluated",
    };
    println!("why: {stage}");
}
