//! gRPC server assembly: the ext_authz service behind [`Admission`] (one process-wide limit
//! on Checks in flight, a deadline per Check), and `grpc.health.v1`, on connections that
//! answer each Check in one write (see [`OneWrite`]).

pub mod admission;
pub mod check;
pub mod service;
pub mod svid_tls;
pub mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::Connected;
use tonic::transport::{Identity, ServerTlsConfig};

pub use admission::Admission;
pub use check::CheckService;
pub use service::CheckServer;

use crate::config::ListenerTls;

/// Serves ext_authz (`service`: Tollgate's [`CheckServer`], or the benchmarks' do-nothing
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
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + Unpin + 'static,
    I: Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<S>().await;
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
        .add_service(admission.wrap(service))
        .serve_with_incoming_shutdown(incoming.map(|io| io.map(OneWrite)), shutdown)
        .await
}

/// A connection that does not offer vectored writes, so that HTTP/2 (h2) copies a response's
/// frames into one buffer and sends them in one write. On a vectored connection h2 leaves a
/// DATA payload of 256 bytes or more in place, writes it with the frames before it, then writes
/// the trailers after it: a deny (a JSON body, a challenge, the decision id) took two system
/// calls and two TCP segments where an allow took one. Without vectored writes h2 copies
/// payloads up to 1 KiB, which every Check answer but an unusually large deny body fits.
#[derive(Debug)]
pub struct OneWrite<IO>(pub IO);

impl<IO: AsyncRead + Unpin> AsyncRead for OneWrite<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for OneWrite<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
    // `is_write_vectored` stays `false` (the default): the point of this type.
}

impl<IO: Connected> Connected for OneWrite<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// h2 sizes its copy threshold by `is_write_vectored`: the wrapper must say no and still
    /// carry every byte both ways.
    #[tokio::test]
    async fn one_write_hides_vectored_writes_and_carries_the_bytes() {
        let (a, b) = tokio::io::duplex(64);
        assert!(a.is_write_vectored(), "the stream underneath is vectored");
        let (mut a, mut b) = (OneWrite(a), OneWrite(b));
        assert!(!a.is_write_vectored());
        let bufs = [io::IoSlice::new(b"check"), io::IoSlice::new(b" answer")];
        let n = a.write_vectored(&bufs).await.unwrap();
        assert_eq!(
            n, 5,
            "one slice at a time, as a writer without vectored writes goes"
        );
        a.write_all(b" answer").await.unwrap();
        a.shutdown().await.unwrap();
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "check answer");
    }
}
