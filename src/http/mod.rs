//! The HTTP listener: forward-auth for proxies ([`forward`]: Envoy's HTTP `ext_authz`, nginx
//! `auth_request`, Traefik ForwardAuth) and the OpenID AuthZEN API ([`authzen`]), over
//! HTTP/1.1 and h2c, or TLS with required client certificates like the gRPC listener. Every
//! request shares the process's one admission limit with the gRPC listener, and is decided by
//! the one [`Authorizer`].

pub mod authzen;
pub mod forward;
pub mod proxies;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::authz::Authorizer;
use crate::config::ListenerTls;
use crate::grpc::Admission;
use crate::verdict::ReasonCode;
use forward::Convention;
pub use proxies::{Peer, Proxies};

/// What a listener does with each request: Tollgate's doors ([`Mounted`]), or the benchmarks'
/// do-nothing floor, so both run on exactly the same connection handling.
pub trait Handler: Send + Sync + 'static {
    /// The response to `request` from `peer`.
    fn handle(
        &self,
        peer: &Peer,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// The doors as one listener serves them.
#[derive(Debug)]
pub struct Mounted {
    /// The doors.
    pub doors: Arc<Doors>,
    /// Which of them this listener serves.
    pub mount: Mount,
}

impl Handler for Mounted {
    fn handle(
        &self,
        peer: &Peer,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        self.doors.answer(self.mount, peer, request)
    }
}

/// What one HTTP listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// Forward-auth endpoints and the AuthZEN API (`server.http_listen`).
    All,
    /// The AuthZEN API only (`server.authzen_listen`).
    AuthZenOnly,
}

/// Everything the HTTP front doors share.
#[derive(Debug)]
pub struct Doors {
    authorizer: Arc<Authorizer>,
    admission: Admission,
    proxies: Proxies,
}

impl Doors {
    /// Doors deciding with `authorizer`, behind the process's `admission`.
    pub fn new(authorizer: Arc<Authorizer>, admission: Admission, proxies: Proxies) -> Self {
        Self {
            authorizer,
            admission,
            proxies,
        }
    }

    /// Answers one request on a `mount` listener from `peer`.
    pub async fn answer(
        &self,
        mount: Mount,
        peer: &Peer,
        request: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let convention = match mount {
            Mount::All => Convention::of_path(path),
            Mount::AuthZenOnly => None,
        };
        if convention.is_none() && !authzen::serves(path) {
            return not_found(path, mount);
        }
        let Some(_slot) = self.admission.enter() else {
            let decided = self.authorizer.refuse(
                ReasonCode::Overloaded,
                format!(
                    "{} requests already in flight (server.max_concurrent_requests)",
                    self.admission.limit()
                ),
            );
            return match convention {
                Some(convention) => forward::respond(convention, &decided, None),
                None => authzen::overloaded(request.headers().get("x-request-id")),
            };
        };
        match convention {
            Some(convention) => {
                let (parts, _body) = request.into_parts();
                forward::answer(&self.authorizer, &self.proxies, convention, peer, &parts)
            }
            None => {
                let deadline = self.admission.deadline();
                authzen::answer(&self.authorizer, &self.proxies, peer, request, deadline).await
            }
        }
    }
}

/// The refusal of a request with a header value that is not UTF-8, naming the header: both
/// doors refuse such a request rather than decide it without the header.
fn header_not_text(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .iter()
        .find(|(_, value)| !is_text(value.as_bytes()))
        .map(|(name, _)| format!("header `{name}` is not UTF-8"))
}

/// Whether `bytes` are UTF-8. Header values are nearly always ASCII (a forwarded certificate
/// or a token is a kilobyte of base64), which is checked 64 bytes at a time in a loop the
/// compiler turns into vector instructions, at about a third of `from_utf8`'s cost; anything
/// else gets the full check.
fn is_text(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    let ascii = chunks
        .by_ref()
        .all(|chunk| chunk.iter().fold(0u8, |any, &byte| any | byte) < 0x80)
        && chunks.remainder().is_ascii();
    ascii || std::str::from_utf8(bytes).is_ok()
}

fn not_found(path: &str, mount: Mount) -> Response<Full<Bytes>> {
    let endpoints = match mount {
        Mount::All => {
            "forward-auth at /envoy/<path>, /nginx and /traefik (README \"HTTP forward-auth\"), \
             and AuthZEN at /access/v1/evaluation, /access/v1/evaluations and \
             /.well-known/authzen-configuration"
        }
        Mount::AuthZenOnly => {
            "AuthZEN at /access/v1/evaluation, /access/v1/evaluations and \
             /.well-known/authzen-configuration"
        }
    };
    let body = serde_json::json!({
        "error": format!("no endpoint `{path}`; this listener serves {endpoints}"),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The rustls server config for `tls`: Tollgate's certificate, client certificates required
/// and verified against the client CA, HTTP/2 or HTTP/1.1 by ALPN.
pub fn server_tls(tls: &ListenerTls) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(tls.client_ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| format!("client CA: {e}"))?;
        roots.add(ca).map_err(|e| format!("client CA: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("client CA: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| format!("key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `handler` on `listener` until `shutdown`, then lets open connections finish their
/// requests (at most 5 s). A connection that has not finished its TLS handshake, sent its
/// first byte, or (HTTP/1) a whole request head within `idle` is closed: a caller cannot hold
/// descriptors by connecting and saying nothing, or saying half a request.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Option<Arc<rustls::ServerConfig>>,
    idle: Duration,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: the next accept may succeed; do not spin.
                    tracing::warn!(%error, "http listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let handler = handler.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(async move {
                    // hyper reads a connection's first bytes to choose HTTP/1.1 or HTTP/2
                    // without a timer of its own.
                    // (`readable` would not do: a new socket counts as readable until a read
                    // says otherwise.)
                    let mut first = [0u8; 1];
                    if !matches!(
                        tokio::time::timeout(idle, tcp.peek(&mut first)).await,
                        Ok(Ok(1..))
                    ) {
                        return;
                    }
                    let peer = Peer::plain(addr);
                    connection(TokioIo::new(tcp), peer, handler, idle, watcher).await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(idle, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, peer = %addr, "http listener: TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| leaf.as_ref().to_vec());
                    let peer = match certificate {
                        Some(der) => Peer::with_certificate(addr, der),
                        None => Peer::plain(addr),
                    };
                    connection(TokioIo::new(stream), peer, handler, idle, watcher).await;
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

/// Serves one connection, HTTP/1.1 or HTTP/2 as the client speaks.
async fn connection<IO, H: Handler>(
    io: TokioIo<IO>,
    peer: Peer,
    handler: Arc<H>,
    idle: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = Arc::new(peer);
    let service = hyper::service::service_fn(move |request| {
        let handler = handler.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(handler.handle(&peer, request).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle);
    let served = watcher.watch(builder.serve_connection(io, service).into_owned());
    if let Err(error) = served.await {
        tracing::debug!(%error, "http listener: connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::is_text;

    /// The fast check agrees with `from_utf8` wherever the non-ASCII byte lies (in a whole
    /// chunk or in the remainder), and for sequences that are and are not UTF-8.
    #[test]
    fn text_is_utf8_wherever_its_bytes_lie() {
        for len in [0, 1, 63, 64, 65, 127, 128, 200] {
            let ascii = vec![b'a'; len];
            assert!(is_text(&ascii), "{len} ASCII bytes");
            for at in 0..len {
                for (insert, utf8) in [
                    (&[0xff][..], false),
                    (&[0xc3, 0xa9][..], true),
                    (&[0xc3][..], false),
                    (&[0xe2, 0x82, 0xac][..], true),
                ] {
                    let mut bytes = ascii.clone();
                    bytes.splice(at..=at, insert.iter().copied());
                    assert_eq!(is_text(&bytes), utf8, "{insert:x?} at {at} of {len}");
                    assert_eq!(is_text(&bytes), std::str::from_utf8(&bytes).is_ok());
                }
            }
        }
    }
}
