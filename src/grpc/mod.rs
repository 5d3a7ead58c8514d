//! gRPC server assembly: the ext_authz service and `grpc.health.v1`, with the cross-cutting
//! limits applied once as tower layers (deadline, global concurrency cap with load shedding).
//! A shed or timed-out Check is an error to Envoy, which denies it (`failure_mode_allow: false`).

pub mod check;

use std::future::Future;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use check::CheckService;

/// Limits applied to the gRPC listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// Checks in flight at once; more are rejected immediately.
    pub max_concurrent_requests: usize,
}

/// Serves ext_authz and health on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    service: CheckService,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AuthorizationServer<CheckService>>()
        .await;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .timeout(limits.request_timeout)
        .layer(
            tower::ServiceBuilder::new()
                .load_shed()
                .concurrency_limit(limits.max_concurrent_requests),
        )
        .add_service(health_service)
        .add_service(AuthorizationServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
