//! Command line: `serve`, `validate`, `check`, `fmt`, `test`, `call`, `bench`, `report` and
//! `demo-credentials`, each a thin shell over the library: `check` and `test` decide through
//! the same `authz::Authorizer` as `serve`.

mod bench;
mod call;
mod check;
mod demo;
mod fmt;
mod report;
mod serve;
mod test;
mod validate;

use std::path::PathBuf;
use std::process::{ExitCode, Termination};

use clap::{Parser, Subcommand};

use crate::config::ConfigSource;
use crate::telemetry::LogFormat;

/// Tollgate: per-request authorization for Envoy ext_authz, with SPIFFE/mTLS and JWT identity
/// and Cedar policies.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, propagate_version = true)]
#[command(
    after_help = "First run: `tollgate serve` starts on the embedded demo estate; \
`tollgate demo-credentials` then mints a client certificate and token to try it with `tollgate call`."
)]
pub struct Cli {
    /// Log format (logs go to stderr; level via RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the ext_authz gRPC server (and the admin HTTP listener).
    Serve(serve::ServeArgs),
    /// Check config, schema, policies, entities and routes as `serve` would, plus lints.
    Validate(validate::ValidateArgs),
    /// Decide one request offline, from a JSON file, with the server's own pipeline.
    Check(check::CheckArgs),
    /// Format Cedar policy files.
    Fmt(fmt::FmtArgs),
    /// Run policy test files (expected decisions for requests).
    Test(test::TestArgs),
    /// Send one Check to a running server, as Envoy would, and print the answer.
    Call(call::CallArgs),
    /// Drive a running server with a realistic request mix; report throughput and latency.
    Bench(bench::BenchArgs),
    /// Access review from audit records: inventory, granted versus used, dormant identities.
    Report(report::ReportArgs),
    /// Mint a client certificate and token trusted by the embedded demo estate.
    DemoCredentials(demo::DemoArgs),
}

/// Where to read configuration from.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Config file (TOML). Without it, the embedded demo estate is used.
    #[arg(long, short = 'c', env = "TOLLGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The source this argument names.
    pub fn source(&self) -> ConfigSource {
        match &self.config {
            Some(path) => ConfigSource::File(path.clone()),
            None => ConfigSource::Embedded,
        }
    }
}

/// Process exit codes; distinct so scripts and CI can tell outcomes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, or the request was allowed.
    Ok,
    /// Something went wrong (bad arguments, unreadable files, server unreachable).
    Error,
    /// The request was denied.
    Deny,
    /// The configuration or policies are invalid.
    Invalid,
    /// A policy test case failed.
    TestsFailed,
}

impl Termination for Exit {
    fn report(self) -> ExitCode {
        ExitCode::from(match self {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Deny => 2,
            Exit::Invalid => 3,
            Exit::TestsFailed => 4,
        })
    }
}

/// A tokio runtime for a command (multi-threaded for servers and load), or the exit to take
/// after saying why there is none.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, Exit> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        Exit::Error
    })
}

/// Exit status of a command whose output's reader went away: the shell's for a process ended
/// by `SIGPIPE` (128 + 13), as `grep` or `cat` report it.
const BROKEN_PIPE_STATUS: i32 = 141;

/// Makes output into a pipe whose reader has gone (`tollgate report … | head`) end the command
/// quietly with [`BROKEN_PIPE_STATUS`], as other Unix tools do, instead of a panic and its
/// backtrace. Rust ignores `SIGPIPE`, so `println!` panics on the write error; this project
/// forbids the `unsafe` that restoring the signal would take, so the panic is recognised by
/// its message (the standard library's `failed printing to stdout`) and turned into the exit.
/// Every other panic goes to the hook that was installed.
pub fn quiet_broken_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        previous(info);
    }));
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Check(args) => check::run(args),
        Command::Test(args) => test::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Call(args) => call::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Report(args) => report::run(args),
        Command::DemoCredentials(args) => demo::run(args),
    }
}
