//! `tollgate-floor [--bare | --http [--read-body | --json]] [--verify-es256] [ADDR]`: a Check server that allows everything without
//! looking. It is the floor a real decision is measured against (`tollgate bench --baseline`
//! starts it), and it lives in its own binary so that nothing in `tollgate` can serve an
//! allow-everything answer.
//!
//! With `--http` it is the do-nothing HTTP server of the forward-auth and AuthZEN benchmarks:
//! Tollgate's own HTTP listener (`http::serve`: hyper, HTTP/1.1 and h2c, the same connection
//! handling) answering every request 200 with an empty body; `--read-body` makes it read each
//! request's body first, to tell what receiving an AuthZEN call's body costs from what
//! Tollgate does with it; `--json` reads the body and answers `{"decision":true}` as JSON,
//! what an AuthZEN server that decides nothing still sends (the protocol's own work).
//!
//! By default it is served by the same `grpc::serve` assembly and default limits as `tollgate
//! serve` (admission, deadline, health service), with envoy-types' generated ext_authz server
//! inside, as an outsider writes one: Tollgate's own Check service (`grpc::CheckServer`) boxes
//! one future fewer and copies an answer already encoded, so this floor's transport costs a
//! little more than Tollgate's. With `--bare` it is a plain tonic server with the ext_authz
//! service alone, the floor a neutral observer would write, so the cost of Tollgate's layers is
//! measured too.
//!
//! `--verify-es256` makes every Check verify one ES256 signature (aws-lc-rs, as Tollgate's
//! token verification) before answering: the floor of a server whose every request costs a
//! signature check, so that what the machine charges a busy server (interrupts, wakeups,
//! acknowledgements) can be told apart from what Tollgate's code adds to a forged token
//! (`BENCHMARKS.md`, distinct forgeries).
//!
//! Prints `listening on ADDR` once bound (ADDR defaults to `127.0.0.1:0`, any free port).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use envoy_types::pb::google::rpc;
use tollgate::grpc::{self, Admission};
use tollgate::signature_probe::Es256;

/// Answers 200 to every HTTP request; reads nothing, or with `--read-body` the whole body
/// first (what any server that answers a POST pays before its own work); with `--json` also
/// an AuthZEN answer.
#[derive(Debug, Clone, Copy)]
struct NullHttp {
    read_body: bool,
    json: bool,
}

impl tollgate::http::Handler for NullHttp {
    fn handle(
        &self,
        _peer: &tollgate::http::Peer,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> impl std::future::Future<Output = hyper::Response<http_body_util::Full<hyper::body::Bytes>>>
    + Send {
        let NullHttp { read_body, json } = *self;
        async move {
            if read_body || json {
                use http_body_util::BodyExt;
                let _ = request.into_body().collect().await;
            }
            if !json {
                return hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::new()));
            }
            let mut response = hyper::Response::new(http_body_util::Full::new(
                hyper::body::Bytes::from_static(b"{\"decision\":true}"),
            ));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            response
        }
    }
}

/// Allows everything, reads nothing; verifies a signature first when asked to.
#[derive(Debug, Clone)]
struct NullCheck {
    work: Option<std::sync::Arc<Es256>>,
}

#[tonic::async_trait]
impl Authorization for NullCheck {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        if let Some(work) = &self.work
            && !work.verify()
        {
            return Err(tonic::Status::internal("the floor's own signature failed"));
        }
        Ok(tonic::Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            ..CheckResponse::default()
        }))
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut flag = |name: &str| match args.iter().position(|a| a == name) {
        Some(at) => {
            args.remove(at);
            true
        }
        None => false,
    };
    let bare = flag("--bare");
    let http = flag("--http");
    let read_body = flag("--read-body");
    let json = flag("--json");
    let work = if flag("--verify-es256") {
        match Es256::new() {
            Ok(work) => Some(std::sync::Arc::new(work)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let addr = match args.as_slice() {
        [] => Ok("127.0.0.1:0".parse::<SocketAddr>()),
        [addr] => Ok(addr.parse()),
        _ => Err(()),
    };
    let addr = match addr {
        Ok(Ok(addr)) => addr,
        Ok(Err(e)) => {
            eprintln!(
                "error: usage: tollgate-floor [--bare | --http [--read-body | --json]] [--verify-es256] [ADDR]: {e}"
            );
            return ExitCode::from(1);
        }
        Err(()) => {
            eprintln!(
                "error: usage: tollgate-floor [--bare | --http [--read-body | --json]] [--verify-es256] [ADDR]"
            );
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
    let served = if http {
        runtime.block_on(serve_http(addr, NullHttp { read_body, json }))
    } else {
        runtime.block_on(serve(addr, bare, work))
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve_http(addr: SocketAddr, handler: NullHttp) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {bound}");
    tollgate::http::serve(
        listener,
        std::sync::Arc::new(handler),
        None,
        // `tollgate serve`'s default `[server] http_idle_timeout_ms`.
        Duration::from_secs(30),
        std::future::pending(),
    )
    .await
    .map_err(|e| e.to_string())
}

async fn serve(
    addr: SocketAddr,
    bare: bool,
    work: Option<std::sync::Arc<Es256>>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {bound}");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    if bare {
        return tonic::transport::Server::builder()
            .add_service(AuthorizationServer::new(NullCheck { work }))
            .serve_with_incoming(incoming)
            .await
            .map_err(|e| e.to_string());
    }
    // `tollgate serve`'s defaults (`[server] request_timeout_ms`, `max_concurrent_requests`).
    let admission = Admission::new(4096, Duration::from_secs(1));
    grpc::serve(
        incoming,
        AuthorizationServer::new(NullCheck { work }),
        &admission,
        None,
        std::future::pending(),
    )
    .await
    .map_err(|e| e.to_string())
}
