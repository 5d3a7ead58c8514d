//! A fake SPIFFE Workload API in the test process: tonic over a Unix socket, serving
//! `SpiffeWorkloadAPI`'s streaming calls from messages written here from the proto (SPIFFE
//! Workload API spec, `workload.proto`), so a test can rotate bundles and SVIDs mid-traffic,
//! cut every stream, or stop the server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::{Request, Response, Status};

#[derive(Clone, PartialEq, prost::Message)]
pub struct X509SvidRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct X509SvidResponse {
    #[prost(message, repeated, tag = "1")]
    pub svids: Vec<X509Svid>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub crl: Vec<Vec<u8>>,
    #[prost(map = "string, bytes", tag = "3")]
    pub federated_bundles: HashMap<String, Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct X509Svid {
    #[prost(string, tag = "1")]
    pub spiffe_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub x509_svid: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub x509_svid_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub bundle: Vec<u8>,
    #[prost(string, tag = "5")]
    pub hint: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct JwtBundlesRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct JwtBundlesResponse {
    #[prost(map = "string, bytes", tag = "1")]
    pub bundles: HashMap<String, Vec<u8>>,
}

struct State {
    x509: watch::Sender<Option<X509SvidResponse>>,
    jwt: watch::Sender<Option<JwtBundlesResponse>>,
    /// Bumped to end every open stream (the client must reconnect).
    cut: watch::Sender<u64>,
    streams_opened: AtomicUsize,
}

/// The running fake; dropping it stops the server.
pub struct FakeWorkloadApi {
    pub socket: PathBuf,
    state: Arc<State>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for FakeWorkloadApi {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl FakeWorkloadApi {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let state = Arc::new(State {
            x509: watch::channel(None).0,
            jwt: watch::channel(None).0,
            cut: watch::channel(0).0,
            streams_opened: AtomicUsize::new(0),
        });
        let mut api = Self {
            socket,
            state,
            task: None,
            _dir: dir,
        };
        api.serve();
        api
    }

    fn serve(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let listener = tokio::net::UnixListener::bind(&self.socket).unwrap();
        let service = Service(self.state.clone());
        self.task = Some(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await;
        }));
    }

    /// `unix://…`, for `identity.workload_api`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn set_x509(&self, response: X509SvidResponse) {
        self.state.x509.send_replace(Some(response));
    }

    pub fn set_jwt(&self, response: JwtBundlesResponse) {
        self.state.jwt.send_replace(Some(response));
    }

    /// Ends every open stream; clients reconnect.
    pub fn cut_streams(&self) {
        self.state.cut.send_modify(|n| *n += 1);
    }

    /// Stops serving (and ends open streams), keeping the state for [`Self::resume`].
    pub async fn stop(&mut self) {
        self.cut_streams();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    pub fn resume(&mut self) {
        self.serve();
    }

    pub fn streams_opened(&self) -> usize {
        self.state.streams_opened.load(Ordering::SeqCst)
    }
}

type Updates<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Every value `updates` holds, now and as it changes, until `cut` moves.
fn follow<T: Clone + Send + Sync + 'static>(
    updates: &watch::Sender<Option<T>>,
    cut: &watch::Sender<u64>,
) -> Updates<T> {
    let mut updates = updates.subscribe();
    let mut cut = cut.subscribe();
    cut.mark_unchanged();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let current = updates.borrow_and_update().clone();
            if let Some(message) = current
                && tx.send(Ok(message)).await.is_err()
            {
                return;
            }
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { return },
                _ = cut.changed() => return,
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[derive(Clone)]
struct Service(Arc<State>);

impl tonic::server::NamedService for Service {
    const NAME: &'static str = "SpiffeWorkloadAPI";
}

struct X509Calls(Arc<State>);
struct JwtCalls(Arc<State>);

/// The spec's rule: a call without `workload.spiffe.io: true` is refused InvalidArgument.
fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get("workload.spiffe.io") {
        Some(v) if v == "true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "missing workload.spiffe.io header",
        )),
    }
}

type Answer<T> = Pin<Box<dyn Future<Output = Result<Response<Updates<T>>, Status>> + Send>>;

impl tonic::server::ServerStreamingService<X509SvidRequest> for X509Calls {
    type Response = X509SvidResponse;
    type ResponseStream = Updates<X509SvidResponse>;
    type Future = Answer<X509SvidResponse>;

    fn call(&mut self, request: Request<X509SvidRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            check_header(&request)?;
            state.streams_opened.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(follow(&state.x509, &state.cut)))
        })
    }
}

impl tonic::server::ServerStreamingService<JwtBundlesRequest> for JwtCalls {
    type Response = JwtBundlesResponse;
    type ResponseStream = Updates<JwtBundlesResponse>;
    type Future = Answer<JwtBundlesResponse>;

    fn call(&mut self, request: Request<JwtBundlesRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            check_header(&request)?;
            state.streams_opened.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(follow(&state.jwt, &state.cut)))
        })
    }
}

impl tower::Service<tonic::codegen::http::Request<Body>> for Service {
    type Response = tonic::codegen::http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            Ok(match request.uri().path() {
                "/SpiffeWorkloadAPI/FetchX509SVID" => {
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                        .server_streaming(X509Calls(state), request)
                        .await
                }
                "/SpiffeWorkloadAPI/FetchJWTBundles" => {
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                        .server_streaming(JwtCalls(state), request)
                        .await
                }
                _ => Status::unimplemented("not served by this fake").into_http(),
            })
        })
    }
}
