//! gRPC server assembly: the ext_authz service behind [`Admission`] (one process-wide limit
//! on Checks in flight, a deadline per Check), and `grpc.health.v1`.

pub mod admission;
pub mod check;

use std::future::Future;

use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic::transport::{Identity, ServerTlsConfig};

pub use admission::Admission;
pub use check::CheckService;

use crate::config::ListenerTls;

/// Serves ext_authz (`service`: Tollgate's [`CheckService`], or the benchmarks' do-nothing
/// floor, so both run with identical server settings) behind `admission`, and health, on
/// `incoming` (TCP or Unix socket connections) until `shutdown` resolves; with `tls`, every
/// connection must present a client certificate that chains to `tls.client_ca_pem`.
pub async fn serve<S, I, IO, IE>(
    incoming: I,
    service: S,
    admission: &Admission,
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
        .add_service(health_service)
        .add_service(admission.wrap(AuthorizationServer::new(service)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
