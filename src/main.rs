//! The `tollgate` binary: parse the command line, set up logging, dispatch.

use clap::Parser;

/// mimalloc: a server's allocations are many, small and freed on another worker thread than
/// the one that made them (hyper, h2 and prost allocate per request); mimalloc's per-thread
/// free lists serve that pattern with fewer instructions and less cross-thread traffic than
/// glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> tollgate::cli::Exit {
    tollgate::cli::quiet_broken_pipe();
    let cli = tollgate::cli::Cli::parse();
    tollgate::telemetry::init(cli.log_format);
    tollgate::cli::run(cli)
}
