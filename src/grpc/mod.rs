//! gRPC server assembly: the ext_authz service and `grpc.health.v1`, with the cross-cutting
//! limits applied once as tower layers (deadline, global concurrency cap with load shedding).
//! A shed or timed-out Check is an error to Envoy, which denies it (`failure_mode_allow: false`).

pub mod check;

use std::future::Future;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic::transport::{Identity, ServerTlsConfig};

pub use check::CheckService;

use crate::config::ListenerTls;

/// Limits applied to the gRPC listeners.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// Checks in flight at once; more are rejected immediately.
    pub max_concurrent_requests: usize,
}

/// Serves ext_authz (`service`: Tollgate's [`CheckService`], or the load generator's do-nothing
/// baseline, so both run with identical server settings) and health on `incoming` (TCP or Unix
/// socket connections) until
/// `shutdown` resolves; with `tls`, every connection must present a client certificate that
/// chains to `tls.client_ca_pem`.
pub async fn serve<S, I, IO, IE>(
    incoming: I,
    service: S,
    limits: Limits,
    tls: Option<&ListenerTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error>
where
    S: Authorization,
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AuthorizationServer<S>>().await;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
                .client_ca_root(tonic::transport::Certificate::from_pem(&tls.client_ca_pem)),
        )?;
    }
    builder
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
