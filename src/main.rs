//! The `tollgate` binary: parse the command line, set up logging, dispatch.

use clap::Parser;

fn main() -> tollgate::cli::Exit {
    let cli = tollgate::cli::Cli::parse();
    tollgate::telemetry::init(cli.log_format);
    tollgate::cli::run(cli)
}
