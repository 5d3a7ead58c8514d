//! A real HTTPS token issuer in the test process: OIDC discovery and a JWKS, served by hyper
//! over rustls with a certificate from a test CA, whose behaviour a test changes mid-run (rotate
//! keys, go down, answer slowly, answer garbage or 50 MB) and whose hits it counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::pki::Ca;

/// How the issuer answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// The documents, as set.
    Normal,
    /// HTTP 503 to everything.
    Down,
    /// The documents, after this long.
    Slow(Duration),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with 50 MB of JSON-looking text.
    Huge,
}

struct State {
    jwks: String,
    cache_control: Option<String>,
    mode: Mode,
    /// The `issuer` the discovery document names (the server's own URL unless changed).
    discovery_issuer: String,
    /// Token status lists by path (`/statuslists/…`), served as `application/statuslist+jwt`.
    status_lists: std::collections::HashMap<String, String>,
}

pub struct Idp {
    /// `https://localhost:<port>`: the issuer identifier.
    pub url: String,
    /// The CA that signed the server certificate (for `fetch.ca_file`).
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
    jwks_hits: Arc<AtomicUsize>,
    discovery_hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    pub async fn start(jwks: String) -> Self {
        let ca = Ca::new("IdP test CA");
        let leaf = ca.server("localhost");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("https://localhost:{port}");
        let state = Arc::new(Mutex::new(State {
            jwks,
            cache_control: None,
            mode: Mode::Normal,
            discovery_issuer: url.clone(),
            status_lists: std::collections::HashMap::new(),
        }));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let discovery_hits = Arc::new(AtomicUsize::new(0));
        let tls = {
            use rustls_pki_types::pem::PemObject;
            use rustls_pki_types::{CertificateDer, PrivateKeyDer};
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(leaf.pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        };
        let task = {
            let (state, jwks_hits, discovery_hits) =
                (state.clone(), jwks_hits.clone(), discovery_hits.clone());
            let base = url.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let tls = tls.clone();
                    let (state, jwks_hits, discovery_hits, base) = (
                        state.clone(),
                        jwks_hits.clone(),
                        discovery_hits.clone(),
                        base.clone(),
                    );
                    tokio::spawn(async move {
                        let Ok(stream) = tls.accept(tcp).await else {
                            return;
                        };
                        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                            let (state, jwks_hits, discovery_hits, base) = (
                                state.clone(),
                                jwks_hits.clone(),
                                discovery_hits.clone(),
                                base.clone(),
                            );
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    answer(&request, &state, &jwks_hits, &discovery_hits, &base)
                                        .await,
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Self {
            url,
            ca_pem: ca.pem.clone(),
            state,
            jwks_hits,
            discovery_hits,
            task,
        }
    }

    pub fn set_jwks(&self, jwks: String) {
        self.state.lock().unwrap().jwks = jwks;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        self.state.lock().unwrap().cache_control = value.map(str::to_owned);
    }

    pub fn set_discovery_issuer(&self, issuer: &str) {
        self.state.lock().unwrap().discovery_issuer = issuer.to_owned();
    }

    /// Serves `token` at `path` (a status list token) from now on.
    pub fn set_status_list(&self, path: &str, token: String) {
        self.state
            .lock()
            .unwrap()
            .status_lists
            .insert(path.to_owned(), token);
    }

    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn discovery_hits(&self) -> usize {
        self.discovery_hits.load(Ordering::SeqCst)
    }
}

async fn answer(
    request: &Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    jwks_hits: &AtomicUsize,
    discovery_hits: &AtomicUsize,
    base: &str,
) -> Response<Full<Bytes>> {
    let (mode, jwks, cache_control, issuer, list) = {
        let s = state.lock().unwrap();
        (
            s.mode.clone(),
            s.jwks.clone(),
            s.cache_control.clone(),
            s.discovery_issuer.clone(),
            s.status_lists.get(request.uri().path()).cloned(),
        )
    };
    let mut content_type = "application/json";
    let body = match request.uri().path() {
        "/.well-known/openid-configuration" => {
            discovery_hits.fetch_add(1, Ordering::SeqCst);
            serde_json::json!({"issuer": issuer, "jwks_uri": format!("{base}/keys")}).to_string()
        }
        "/keys" => {
            jwks_hits.fetch_add(1, Ordering::SeqCst);
            jwks
        }
        _ => match list {
            Some(list) => {
                content_type = "application/statuslist+jwt";
                list
            }
            None => return status(StatusCode::NOT_FOUND),
        },
    };
    let body = match mode {
        Mode::Normal => body,
        Mode::Down => return status(StatusCode::SERVICE_UNAVAILABLE),
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            body
        }
        Mode::Garbage => "<html>not json</html>".into(),
        Mode::Huge => format!("{{\"keys\": [\"{}\"]}}", "A".repeat(50 << 20)),
    };
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type);
    if let Some(value) = cache_control {
        response = response.header("cache-control", value);
    }
    response.body(Full::new(Bytes::from(body))).unwrap()
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .unwrap()
}
