//! The HTTP listener spoken to directly: conventions, HTTP/2 without TLS (h2c), certificate
//! headers believed only from a configured proxy, and clear refusals of broken requests.

use std::collections::HashMap;

use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::support::World;
use crate::support::free_port;
use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::Options;

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn reason(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .map(|v| v["reason"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }
}

fn request(path: &str, headers: &[(&str, &str)]) -> hyper::Request<Empty<Bytes>> {
    let mut request = hyper::Request::get(path).header("host", "shop.test");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.body(Empty::new()).unwrap()
}

async fn read(response: hyper::Response<hyper::body::Incoming>) -> Reply {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn http1(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    read(sender.send_request(request(path, headers)).await.unwrap()).await
}

/// HTTP/2 with prior knowledge, as Envoy speaks to an h2c cluster.
async fn h2c(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = format!("http://shop.test{path}");
    read(sender.send_request(request(&uri, headers)).await.unwrap()).await
}

/// A server whose HTTP listener trusts `proxies` (TOML tables).
async fn server(proxies: &str) -> (World, u16) {
    let port = free_port();
    let w = World::with(Options {
        server_extra: format!("http_listen = \"127.0.0.1:{port}\"\n{proxies}"),
        ..Options::default()
    })
    .await;
    (w, port)
}

fn traefik_headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/orders/1001"),
        ("x-forwarded-host", "shop.test"),
    ];
    headers.extend_from_slice(extra);
    headers
}

/// RFC 9440's spelling of a PEM certificate: `:base64(DER):`.
fn rfc9440(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

#[tokio::test]
async fn a_certificate_from_a_trusted_network_is_verified_and_believed() {
    let (w, port) = server(
        "[[server.trusted_proxies]]\nname = \"edge\"\ncertificate_format = \"rfc9440\"\n\
         networks = [\"127.0.0.0/8\"]",
    )
    .await;
    // The batch job may write reports only from the batch network: the proxy's
    // X-Forwarded-For is believed, like its certificate header.
    let cert = rfc9440(&w.ca.app("nightly-batch").pem);
    let bearer = format!("Bearer {}", w.issuer.app("nightly-batch", "reports.write"));
    let write = |from: &'static str| {
        [
            ("x-forwarded-method", "PUT"),
            ("x-forwarded-uri", "/reports/daily"),
            ("x-forwarded-host", "shop.test"),
            ("x-forwarded-for", from),
        ]
    };
    let mut headers = write("10.20.1.1").to_vec();
    headers.extend([("client-cert", cert.as_str()), ("authorization", &bearer)]);
    let allowed = h2c(port, "/traefik", &headers).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        allowed.headers["x-tollgate-principal"],
        format!("spiffe://{TRUST_DOMAIN}/nightly-batch")
    );
    let mut headers = write("192.168.1.1").to_vec();
    headers.extend([("client-cert", cert.as_str()), ("authorization", &bearer)]);
    let elsewhere = http1(port, "/traefik", &headers).await;
    assert_eq!(
        (elsewhere.status, elsewhere.reason().as_str()),
        (403, "policy_denied")
    );
    // Verified again, not taken on the proxy's word: a certificate from another CA is refused.
    let stranger = crate::support::pki::Ca::new("Other CA").app("payments");
    let refused = http1(
        port,
        "/traefik",
        &traefik_headers(&[("client-cert", &rfc9440(&stranger.pem))]),
    )
    .await;
    assert_eq!(
        (refused.status, refused.reason().as_str()),
        (401, "cert_untrusted")
    );
    // A proxy trusted for RFC 9440 sending the header in another convention is refused.
    let other = http1(
        port,
        "/traefik",
        &traefik_headers(&[("x-forwarded-tls-client-cert", "MIIB")]),
    )
    .await;
    assert_eq!(
        (other.status, other.reason().as_str()),
        (401, "cert_header_untrusted")
    );
    let garbage = http1(
        port,
        "/traefik",
        &traefik_headers(&[("client-cert", "MIIB")]),
    )
    .await;
    assert_eq!(
        (garbage.status, garbage.reason().as_str()),
        (401, "cert_malformed")
    );
}

#[tokio::test]
async fn a_certificate_header_from_anywhere_else_is_refused() {
    // The only trusted proxy lives elsewhere: loopback is just a client.
    let (w, port) = server(
        "[[server.trusted_proxies]]\nname = \"edge\"\ncertificate_format = \"rfc9440\"\n\
         networks = [\"10.0.0.0/8\"]",
    )
    .await;
    let cert = rfc9440(&w.ca.app("payments").pem);
    let refused = http1(
        port,
        "/traefik",
        &traefik_headers(&[("client-cert", &cert)]),
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.reason(), "cert_header_untrusted");
    assert!(refused.body.contains("127.0.0.1"), "{}", refused.body);
}

#[tokio::test]
async fn broken_requests_get_clear_refusals_in_each_convention() {
    let (_w, port) = server("http_idle_timeout_ms = 300").await;
    // Traefik without its X-Forwarded-* headers: 400 naming the header.
    let traefik = http1(port, "/traefik", &[]).await;
    assert_eq!(traefik.status, 400);
    assert_eq!(traefik.reason(), "malformed_request");
    assert!(
        traefik.body.contains("x-forwarded-method"),
        "{}",
        traefik.body
    );
    // nginx knows only 401 and 403: the 400 travels in x-tollgate-status.
    let nginx = http1(port, "/nginx", &[]).await;
    assert_eq!(nginx.status, 403);
    assert_eq!(nginx.headers["x-tollgate-status"], "400");
    assert_eq!(nginx.headers["x-tollgate-reason"], "malformed_request");
    // Envoy: the original request is the request itself; no credentials is a 401.
    let envoy = h2c(port, "/envoy/orders/1001", &[]).await;
    assert_eq!(
        (envoy.status, envoy.reason().as_str()),
        (401, "no_credentials")
    );
    assert!(envoy.headers.contains_key("www-authenticate"));
    // Review finding: ingress-nginx sends X-Original-URL and passes a client's X-Original-URI
    // through; with both, which path was requested is ambiguous: refused, not guessed.
    let both = http1(
        port,
        "/nginx",
        &[
            ("x-original-method", "GET"),
            ("x-original-url", "https://shop.test/admin/keys/rotate"),
            ("x-original-uri", "/orders/1"),
        ],
    )
    .await;
    assert_eq!(
        both.headers["x-tollgate-reason"], "malformed_request",
        "{}",
        both.body
    );
    let unknown = http1(port, "/check", &[]).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("/traefik"), "{}", unknown.body);
}

/// Review finding: a connection that says nothing, or never finishes its request head, held a
/// descriptor forever. It is closed after `server.http_idle_timeout_ms`.
#[tokio::test]
async fn a_silent_connection_is_closed() {
    use tokio::io::AsyncReadExt;
    let (_w, port) = server("http_idle_timeout_ms = 300").await;
    let read_to_end = |mut tcp: tokio::net::TcpStream| async move {
        let mut rest = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut rest),
        )
        .await
        .map(|read| read.map(|_| rest))
    };
    let started = std::time::Instant::now();
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let closed = read_to_end(silent).await;
    assert!(closed.is_ok(), "a silent connection stayed open for 5 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    // Half a request head, then nothing: hyper's header-read timeout closes it.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /traefik HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_to_end(slow).await.is_ok(),
        "a half-sent head held the connection for 5 s"
    );
}
