//! `tollgate-floor [ADDR]`: a Check server that allows everything without looking, served by
//! the same `grpc::serve` assembly and default limits as `tollgate serve`. It is the floor a
//! real decision is measured against (`tollgate bench --baseline` starts it), and it lives in
//! its own binary so that nothing in `tollgate` can serve an allow-everything answer.
//!
//! Prints `listening on ADDR` once bound (ADDR defaults to `127.0.0.1:0`, any free port).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use envoy_types::pb::google::rpc;
use tollgate::grpc::{self, Admission};

/// Allows everything, reads nothing.
#[derive(Debug, Clone, Copy)]
struct NullCheck;

#[tonic::async_trait]
impl Authorization for NullCheck {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            ..CheckResponse::default()
        }))
    }
}

fn main() -> ExitCode {
    let addr = match std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("error: usage: tollgate-floor [ADDR]: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(addr: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {bound}");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // `tollgate serve`'s defaults (`[server] request_timeout_ms`, `max_concurrent_requests`).
    let admission = Admission::new(4096, Duration::from_secs(1));
    grpc::serve(
        incoming,
        NullCheck,
        &admission,
        None,
        std::future::pending(),
    )
    .await
    .map_err(|e| e.to_string())
}
