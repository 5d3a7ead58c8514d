//! HTTP forward-auth behind real proxies, each running its shipped `deploy/` file with only
//! ports and file paths substituted: nginx (`auth_request`), Traefik (ForwardAuth) and Envoy
//! (`ext_authz` in HTTP mode). Every proxy gets the same scenario: an allowed request reaches
//! the echo upstream with the real principal, a 401 and a 403 never reach it, a spoofed
//! principal header is overwritten, a certificate header the proxy is not trusted for is
//! refused, and the proxy fails closed while Tollgate is down.

use std::path::Path;
use std::time::Duration;

use crate::support::World;
use crate::support::envoy::{Client, Envoy, HttpAnswer, Upstream};
use crate::support::free_port;
use crate::support::pki::{Ca, TRUST_DOMAIN};
use crate::support::proxies::{Process, start_nginx, start_traefik};
use crate::support::server::{MANIFEST, Options};

fn shipped(path: &str) -> String {
    std::fs::read_to_string(Path::new(MANIFEST).join("deploy").join(path)).unwrap()
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

/// The proxy process, whichever it is (dropped last: it is killed on drop).
enum Running {
    Nginx(Process),
    Traefik(Process),
    Envoy(Envoy),
}

/// Tollgate's HTTP listener on a fixed port, a proxy in front of it, an echo upstream.
struct Front {
    w: World,
    /// The certificate header this proxy sets (and so must overwrite), and how it spells a
    /// PEM certificate there.
    own_header: (&'static str, fn(&str) -> String),
    upstream: Upstream,
    port: u16,
    proxy: Running,
    _dir: tempfile::TempDir,
}

/// The edge's TLS files (server certificate for shop.test, the workloads' CA for clients).
fn edge_files(w: &World, dir: &Path) {
    let edge = w.ca.server("shop.test");
    write(dir, "server.pem", &edge.pem);
    write(dir, "server.key", &edge.key_pem);
    write(dir, "client-ca.pem", &w.ca.pem);
}

/// Tollgate requiring tokens, its HTTP listener on `http_port` with `server_extra`.
async fn tollgate(http_port: u16, server_extra: &str) -> World {
    World::with(Options {
        require_token: true,
        server_extra: format!("http_listen = \"127.0.0.1:{http_port}\"\n{server_extra}"),
        ..Options::default()
    })
    .await
}

impl Front {
    async fn nginx() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let http_port = free_port();
        let w = tollgate(
            http_port,
            "[[server.trusted_proxies]]\nname = \"nginx\"\ncertificate_format = \"nginx\"\n\
             certificate_header = \"x-client-cert\"\nnetworks = [\"127.0.0.1/32\"]",
        )
        .await;
        edge_files(&w, d);
        let upstream = Upstream::start().await;
        let port = free_port();
        let conf = shipped("nginx/tollgate.conf")
            .replace("/etc/nginx/tls/", &format!("{}/", d.display()))
            .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", upstream.port))
            .replace("127.0.0.1:9193", &format!("127.0.0.1:{http_port}"));
        let nginx = start_nginx(d, &conf);
        let own = ("x-client-cert", escaped as fn(&str) -> String);
        Self::ready(w, upstream, port, dir, Running::Nginx(nginx), own).await
    }

    async fn traefik() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let http_port = free_port();
        let w = tollgate(
            http_port,
            "[[server.trusted_proxies]]\nname = \"traefik\"\ncertificate_format = \"traefik\"\n\
             networks = [\"127.0.0.1/32\"]",
        )
        .await;
        edge_files(&w, d);
        let upstream = Upstream::start().await;
        let port = free_port();
        let dynamic = shipped("traefik/tollgate.yml")
            .replace("/etc/traefik/tls/", &format!("{}/", d.display()))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", upstream.port))
            .replace("127.0.0.1:9193", &format!("127.0.0.1:{http_port}"));
        let traefik = start_traefik(d, &dynamic, port);
        let own = (
            "x-forwarded-tls-client-cert",
            pem_body as fn(&str) -> String,
        );
        Self::ready(w, upstream, port, dir, Running::Traefik(traefik), own).await
    }

    async fn envoy() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Envoy <-> Tollgate over mTLS from a mesh CA; Tollgate trusts Envoy's XFCC because of
        // the identity in Envoy's client certificate, not because of where it connects from.
        let mesh = Ca::new("Mesh CA");
        let tollgate_cert = mesh.server("tollgate.internal");
        let envoy_client = mesh.app("envoy-ingress");
        write(d, "tollgate.pem", &tollgate_cert.pem);
        write(d, "tollgate.key", &tollgate_cert.key_pem);
        write(d, "mesh-ca.pem", &mesh.pem);
        let p = |name: &str| d.join(name).display().to_string();
        let http_port = free_port();
        let w = tollgate(
            http_port,
            &format!(
                "[[server.trusted_proxies]]\nname = \"envoy-ingress\"\ncertificate_format = \"xfcc\"\n\
                 identities = [\"spiffe://{TRUST_DOMAIN}/envoy-ingress\"]\n\
                 [server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"",
                p("tollgate.pem"),
                p("tollgate.key"),
                p("mesh-ca.pem")
            ),
        )
        .await;
        edge_files(&w, d);
        write(d, "tollgate-client.pem", &envoy_client.pem);
        write(d, "tollgate-client.key", &envoy_client.key_pem);
        write(d, "tollgate-ca.pem", &mesh.pem);
        let upstream = Upstream::start().await;
        let (admin, port) = (free_port(), free_port());
        let config = shipped("envoy/front-proxy-http.yaml")
            .replace("/etc/envoy/tls/", &format!("{}/", d.display()))
            .replace("address: 0.0.0.0", "address: 127.0.0.1")
            .replace("port_value: 9901", &format!("port_value: {admin}"))
            .replace("port_value: 8443", &format!("port_value: {port}"))
            .replace(
                "port_value: 8080",
                &format!("port_value: {}", upstream.port),
            )
            .replace("port_value: 9193", &format!("port_value: {http_port}"));
        let envoy = Envoy::start(d, "front-proxy-http", &config, admin, port).await;
        let own = ("x-forwarded-client-cert", xfcc as fn(&str) -> String);
        Self::ready(w, upstream, port, dir, Running::Envoy(envoy), own).await
    }

    /// Waits until the proxy answers an allowed request (its config may load after its port
    /// opens), then forgets that request's upstream hit.
    async fn ready(
        w: World,
        upstream: Upstream,
        port: u16,
        dir: tempfile::TempDir,
        proxy: Running,
        own_header: (&'static str, fn(&str) -> String),
    ) -> Self {
        let front = Self {
            w,
            own_header,
            upstream,
            port,
            proxy,
            _dir: dir,
        };
        let token = front.w.issuer.app("payments", "orders.read");
        let mut last = None;
        for _ in 0..200 {
            match front.try_send(Some(&token), "/orders/1", &[]).await {
                Ok(answer) if answer.status == 200 => {
                    front
                        .upstream
                        .hits
                        .store(0, std::sync::atomic::Ordering::SeqCst);
                    return front;
                }
                other => last = Some(other),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = match &front.proxy {
            Running::Nginx(p) | Running::Traefik(p) => p.log(),
            Running::Envoy(e) => std::fs::read_to_string(&e.log).unwrap_or_default(),
        };
        panic!("the proxy never let an allowed request through: {last:?}; its log:\n{log}");
    }

    async fn try_send(
        &self,
        token: Option<&str>,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<HttpAnswer, String> {
        self.try_send_as("payments", token, "GET", path, extra)
            .await
    }

    async fn try_send_as(
        &self,
        app: &str,
        token: Option<&str>,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<HttpAnswer, String> {
        let leaf = self.w.ca.app(app);
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(b) = &bearer {
            headers.push(("authorization", b));
        }
        Client::new(
            &self.w.ca.pem,
            "shop.test",
            Some((&leaf.pem, &leaf.key_pem)),
        )
        .send(self.port, method, path, &headers)
        .await
    }

    async fn send(&self, token: Option<&str>, path: &str, extra: &[(&str, &str)]) -> HttpAnswer {
        self.try_send(token, path, extra).await.unwrap()
    }
}

/// nginx's `$ssl_client_escaped_cert`: URL-encoded PEM.
fn escaped(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Traefik's `passTLSClientCert.pem`: the PEM body without its armour lines.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// Envoy's XFCC element with the certificate.
fn xfcc(pem: &str) -> String {
    format!(
        "Cert=\"{}\";URI=spiffe://{TRUST_DOMAIN}/platform-ops",
        escaped(pem)
    )
}

#[track_caller]
fn assert_denied_by_tollgate(answer: &HttpAnswer, status: u16, reason: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.json()["reason"], reason, "{answer:?}");
    assert_eq!(
        answer
            .headers
            .get("x-tollgate-decision-id")
            .map(String::len),
        Some(32),
        "{answer:?}"
    );
}

/// The scenario every proxy must pass.
async fn scenario(mut front: Front) {
    // Allowed: reaches the upstream with the verified principal, whatever the client claimed.
    let token = front.w.issuer.app("payments", "orders.read");
    let answer = front
        .send(
            Some(&token),
            "/orders/1001",
            &[
                (
                    "x-tollgate-principal",
                    "spiffe://demo.tollgate.dev/platform-ops",
                ),
                ("x-tollgate-decision-id", "forged"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let echo = answer.echo();
    assert_eq!(echo.path, "/orders/1001");
    assert_eq!(
        echo.headers["x-tollgate-principal"],
        format!("spiffe://{TRUST_DOMAIN}/payments"),
        "{echo:?}"
    );
    assert_eq!(echo.headers["x-tollgate-decision-id"].len(), 32, "{echo:?}");
    assert_eq!(front.upstream.hits(), 1);

    // 403: authenticated, but the policy says no.
    let wrong_scope = front.w.issuer.app("payments", "payments.charge");
    let denied = front.send(Some(&wrong_scope), "/orders/1001", &[]).await;
    assert_denied_by_tollgate(&denied, 403, "policy_denied");

    // 401: no token, with the challenge.
    let missing = front.send(None, "/orders/1001", &[]).await;
    assert_denied_by_tollgate(&missing, 401, "token_required");
    assert!(
        missing
            .headers
            .get("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer realm=\"tollgate\"")),
        "{missing:?}"
    );

    // A certificate header this proxy is not trusted to send (the client's own) is refused.
    let spoofed = front
        .send(Some(&token), "/orders/1001", &[("client-cert", ":AAAA:")])
        .await;
    assert_denied_by_tollgate(&spoofed, 401, "cert_header_untrusted");
    assert_eq!(
        front.upstream.hits(),
        1,
        "a denied request reached the upstream"
    );

    // The header the proxy itself sets, sent by the client with another workload's
    // certificate: the proxy overwrites it with the certificate the client really presented.
    let (header, spell) = front.own_header;
    let other = front.w.ca.app("platform-ops");
    let forged = front
        .send(
            Some(&token),
            "/orders/1001",
            &[(header, &spell(&other.pem))],
        )
        .await;
    assert_eq!(forged.status, 200, "{forged:?}");
    assert_eq!(
        forged.echo().headers["x-tollgate-principal"],
        format!("spiffe://{TRUST_DOMAIN}/payments")
    );
    assert_eq!(front.upstream.hits(), 2);

    // Review finding: a client-sent X-Forwarded-For must not become the source address. The
    // batch job may write reports only from 10.20.0.0/16; claiming it from here is denied.
    let batch = front.w.issuer.app("nightly-batch", "reports.write");
    let spoofed_ip = front
        .try_send_as(
            "nightly-batch",
            Some(&batch),
            "PUT",
            "/reports/daily",
            &[("x-forwarded-for", "10.20.0.7")],
        )
        .await
        .unwrap();
    assert_denied_by_tollgate(&spoofed_ip, 403, "policy_denied");
    assert_eq!(front.upstream.hits(), 2);

    // Tollgate down: the proxy fails closed.
    front.w.server.pause().await;
    let down = front.send(Some(&token), "/orders/1001", &[]).await;
    assert!(down.status >= 403, "{down:?}");
    assert_eq!(
        front.upstream.hits(),
        2,
        "a request reached the upstream while Tollgate was down"
    );
    front.w.server.resume().await;
    let mut status = 0;
    for _ in 0..100 {
        status = front.send(Some(&token), "/orders/1", &[]).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, 200,
        "the proxy did not recover after Tollgate restarted"
    );
}

#[tokio::test]
async fn behind_nginx_auth_request() {
    scenario(Front::nginx().await).await;
}

#[tokio::test]
async fn behind_traefik_forward_auth() {
    scenario(Front::traefik().await).await;
}

#[tokio::test]
async fn behind_envoy_http_ext_authz() {
    scenario(Front::envoy().await).await;
}
