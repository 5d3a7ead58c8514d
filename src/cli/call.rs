//! `tollgate call METHOD PATH`: sends one Check to a running server the way Envoy does
//! (URL-encoded client certificate in `source.certificate`, headers lower-cased).

use std::path::PathBuf;

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;

use crate::loadgen::envoy_request;
use crate::request::CheckInput;

use super::Exit;

/// Arguments of `call`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit code: 0 allowed, 2 denied, 1 error (e.g. server unreachable).")]
pub struct CallArgs {
    /// HTTP method of the request to authorize.
    method: String,
    /// Path (and query) of the request to authorize.
    path: String,
    /// Tollgate's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:9191")]
    server: String,
    /// Client certificate (PEM) to present as the caller's mTLS identity.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// File holding a bearer token.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Bearer token.
    #[arg(long)]
    token: Option<String>,
    /// Extra request header, `name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Downstream source IP to report.
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: String,
    /// Host header.
    #[arg(long, default_value = "shop.demo")]
    host: String,
}

pub(super) fn run(args: CallArgs) -> Exit {
    let request = match build(&args) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Error;
        }
    };
    let runtime = match super::runtime(false) {
        Ok(rt) => rt,
        Err(exit) => return exit,
    };
    runtime.block_on(async {
        let mut client = match AuthorizationClient::connect(args.server.clone()).await {
            Ok(client) => client,
            Err(e) => {
                eprintln!(
                    "error: cannot reach {}: {e} (is `tollgate serve` running?)",
                    args.server
                );
                return Exit::Error;
            }
        };
        let response = match client.check(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                eprintln!("error: Check failed: {status}");
                return Exit::Error;
            }
        };
        match response.http_response {
            Some(HttpResponse::OkResponse(ok)) => {
                println!("ALLOW");
                for h in ok.headers.iter().filter_map(|h| h.header.as_ref()) {
                    println!("  upstream gets {}: {}", h.key, h.value);
                }
                Exit::Ok
            }
            Some(HttpResponse::DeniedResponse(denied)) => {
                let status = denied.status.map(|s| s.code).unwrap_or_default();
                println!("DENY {status}");
                for h in denied.headers.iter().filter_map(|h| h.header.as_ref()) {
                    println!("  {}: {}", h.key, h.value);
                }
                println!("  {}", denied.body);
                Exit::Deny
            }
            _ => {
                let code = response.status.map(|s| s.code).unwrap_or_default();
                println!(
                    "{} (status {code}, no HTTP response)",
                    if code == 0 { "ALLOW" } else { "DENY" }
                );
                if code == 0 { Exit::Ok } else { Exit::Deny }
            }
        }
    })
}

fn build(args: &CallArgs) -> Result<CheckRequest, String> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let certificate = args.cert.as_ref().map(read).transpose()?;
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(path)) => Some(read(path)?.trim().to_owned()),
        (None, None) => None,
    };
    // Headers as every front door reads them: names folded, repeats joined.
    let mut input = CheckInput::default();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("header `{h}` must be `name: value`"))?;
        input.insert_header(k.trim(), v.trim());
    }
    if let Some(token) = token {
        input.insert_header("authorization", format!("Bearer {token}"));
    }
    Ok(envoy_request(
        &args.method,
        &args.path,
        &args.host,
        input.headers.into_iter().collect(),
        certificate.as_deref(),
        &args.source_ip,
    ))
}
