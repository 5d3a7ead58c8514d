//! `tollgate demo-credentials`: writes [`crate::demo::mint`]'s output to files.

use std::path::PathBuf;
use std::time::Duration;

use crate::demo::{DemoRequest, mint};

use super::Exit;

/// Arguments of `demo-credentials`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Apps in the demo estate: web-frontend, orders, payments, nightly-batch, \
legacy-reporting (quarantined), platform-ops. Users: alice, bob (customers), carol (support)."
)]
pub struct DemoArgs {
    /// App name; its SPIFFE ID is spiffe://demo.tollgate.dev/<APP>.
    #[arg(long, default_value = "web-frontend")]
    app: String,
    /// Token scopes (repeat or comma-separate).
    #[arg(long = "scope", value_delimiter = ',')]
    scopes: Vec<String>,
    /// Make the token delegated: the app acts for this user (`sub`).
    #[arg(long)]
    user: Option<String>,
    /// Bind the token to the certificate (RFC 8705 `cnf.x5t#S256`).
    #[arg(long)]
    bind: bool,
    /// Lifetime of the certificate and token, in minutes.
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// Output folder.
    #[arg(long, default_value = "demo-credentials")]
    out: PathBuf,
}

pub(super) fn run(args: DemoArgs) -> Exit {
    let request = DemoRequest {
        app: args.app.clone(),
        scopes: args.scopes.clone(),
        user: args.user.clone(),
        bind: args.bind,
        lifetime: Duration::from_secs(args.minutes.saturating_mul(60)),
    };
    let minted = match mint(&request) {
        Ok(minted) => minted,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Error;
        }
    };
    let base = args.out.join(&args.app);
    let files = [
        (base.with_extension("pem"), &minted.cert_pem),
        (base.with_extension("key"), &minted.key_pem),
        (base.with_extension("jwt"), &minted.token),
    ];
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("error: {}: {e}", args.out.display());
        return Exit::Error;
    }
    for (path, contents) in &files {
        if let Err(e) = std::fs::write(path, contents) {
            eprintln!("error: {}: {e}", path.display());
            return Exit::Error;
        }
        println!("wrote {}", path.display());
    }
    println!(
        "try: tollgate call --cert {} --token-file {} GET /orders/1001",
        files[0].0.display(),
        files[2].0.display()
    );
    Exit::Ok
}
