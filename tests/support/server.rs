//! A real Tollgate on 127.0.0.1:0, configured by a TOML file written per test, called through
//! the ext_authz client generated from Envoy's protos (envoy-types), as Envoy would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tonic::transport::Channel;

use super::jwt::{AUDIENCE, ISSUER, TokenIssuer};
use super::pki::{Ca, TRUST_DOMAIN};

pub const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// How to configure the server under test.
pub struct Options {
    pub source: &'static str,
    /// The gRPC listen address (fixed when a test restarts the server).
    pub listen: String,
    pub require_token: bool,
    pub require_binding: bool,
    pub intermediates: Vec<String>,
    pub dns_fallback: bool,
    /// Extra lines for the `[server]` table.
    pub server_extra: String,
    /// Extra top-level tables.
    pub extra: String,
    /// Policy folder (schema, entities, *.cedar); the repository's `policies/` by default.
    pub policy_dir: Option<PathBuf>,
    /// A second trust domain and its CA bundle (PEM).
    pub partner: Option<(String, String)>,
    /// The admin listener's address.
    pub admin_listen: String,
    /// Keys of the test issuer beyond issuer, audiences, JWKS, algorithms and binding.
    pub issuer_extra: String,
    /// The test issuer's `iss`.
    pub issuer_name: String,
    /// Extra keys for the `[identity]` table.
    pub identity_extra: String,
    /// The own trust domain's bundle line (a PEM file of the test CA by default).
    pub own_bundle: String,
    /// Extra `[[identity.trust_domains]]` tables.
    pub trust_domains_extra: String,
    /// Serve `/metrics` from a recorder shared by every test in the process that asks (its
    /// series carry labels a test can make its own, such as an issuer URL).
    pub metrics: bool,
    /// Where the test issuer's keys come from (a `jwks_file` of its JWKS by default).
    pub issuer_keys: String,
    /// The route table (the demo estate's by default).
    pub routes: Option<String>,
}

/// The test issuer's default extra keys: its users are `User::"<sub>"`, as in the example
/// estate's entities.
pub const ISSUER_DEFAULTS: &str = "unqualified_users = true";

impl Default for Options {
    fn default() -> Self {
        Self {
            source: "certificate",
            listen: "127.0.0.1:0".into(),
            require_token: false,
            require_binding: false,
            intermediates: vec![],
            dns_fallback: false,
            server_extra: String::new(),
            extra: String::new(),
            policy_dir: None,
            partner: None,
            admin_listen: "127.0.0.1:0".into(),
            issuer_extra: ISSUER_DEFAULTS.into(),
            issuer_name: ISSUER.into(),
            metrics: false,
            identity_extra: String::new(),
            own_bundle: "bundle = \"ca.pem\"".into(),
            trust_domains_extra: String::new(),
            issuer_keys: "jwks_file = \"jwks.json\"".into(),
            routes: None,
        }
    }
}

pub struct TestServer {
    pub client: AuthorizationClient<Channel>,
    pub running: Option<tollgate::server::Running>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

/// The process's one metrics recorder, installed the first time a test asks.
fn shared_recorder() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .unwrap()
        })
        .clone()
}

/// The demo estate's routes, so tests decide against the shipped example policies.
pub fn demo_routes() -> String {
    let demo =
        std::fs::read_to_string(Path::new(MANIFEST).join("deploy/demo/tollgate.toml")).unwrap();
    let at = demo.find("[[routes]]").unwrap();
    demo[at..].to_owned()
}

/// Writes the config for `ca`/`issuer` and returns its path.
pub fn write_config(dir: &Path, ca: &Ca, issuer: &TokenIssuer, options: &Options) -> PathBuf {
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(dir.join("jwks.json"), issuer.jwks()).unwrap();
    let partner = match &options.partner {
        Some((domain, pem)) => {
            std::fs::write(dir.join("partner.pem"), pem).unwrap();
            format!("[[identity.trust_domains]]\nname = \"{domain}\"\nbundle = \"partner.pem\"\n")
        }
        None => String::new(),
    };
    let intermediates: Vec<String> = options
        .intermediates
        .iter()
        .enumerate()
        .map(|(i, pem)| {
            let name = format!("intermediate-{i}.pem");
            std::fs::write(dir.join(&name), pem).unwrap();
            format!("\"{name}\"")
        })
        .collect();
    let config = format!(
        r#"
[server]
listen = "{listen}"
admin_listen = "{admin_listen}"
{server_extra}

[identity]
source = "{source}"
intermediates = [{intermediates}]
insecure_dns_san_fallback = {dns_fallback}
require_token = {require_token}
{identity_extra}

[[identity.trust_domains]]
name = "{TRUST_DOMAIN}"
{own_bundle}

{partner}
{trust_domains_extra}
[[issuers]]
issuer = "{issuer_name}"
audiences = ["{AUDIENCE}"]
{issuer_keys}
algorithms = ["ES256", "RS256", "EdDSA"]
require_binding = {require_binding}
{issuer_extra}

[policies]
schema = "{policies}/tollgate.cedarschema"
dir = "{policies}"
entities = "{policies}/entities.json"

{extra}

{routes}
"#,
        source = options.source,
        policies = options
            .policy_dir
            .clone()
            .unwrap_or_else(|| Path::new(MANIFEST).join("policies"))
            .display(),
        listen = options.listen,
        require_token = options.require_token,
        intermediates = intermediates.join(", "),
        require_binding = options.require_binding,
        dns_fallback = options.dns_fallback,
        server_extra = options.server_extra,
        extra = options.extra,
        admin_listen = options.admin_listen,
        issuer_extra = options.issuer_extra,
        issuer_name = options.issuer_name,
        identity_extra = options.identity_extra,
        own_bundle = options.own_bundle,
        trust_domains_extra = options.trust_domains_extra,
        issuer_keys = options.issuer_keys,
        routes = options.routes.clone().unwrap_or_else(demo_routes),
    );
    let path = dir.join("tollgate.toml");
    std::fs::write(&path, config).unwrap();
    path
}

impl TestServer {
    pub async fn start(ca: &Ca, issuer: &TokenIssuer, options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = write_config(dir.path(), ca, issuer, &options);
        let source = tollgate::config::ConfigSource::File(config_path.clone());
        let (config, snapshot) = tollgate::config::load(&source, 1)
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let prometheus = options.metrics.then(shared_recorder);
        let running = tollgate::server::start(source, config, snapshot, prometheus)
            .await
            .unwrap();
        // Lazy, so a server that only speaks TLS can still be started by this harness.
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr))
                .unwrap()
                .connect_lazy();
        let client = AuthorizationClient::new(channel);
        Self {
            client,
            running: Some(running),
            dir,
            config_path,
        }
    }

    /// One GET on the admin listener, whole response; over loopback when the listener is on
    /// every interface (as a node-local client sees it).
    pub async fn admin_get(&self, path: &str) -> String {
        let mut admin = self.running.as_ref().unwrap().admin_addr.unwrap();
        if admin.ip().is_unspecified() {
            admin.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || super::http_get(admin, &path))
            .await
            .unwrap()
    }

    pub async fn check(&self, request: CheckRequest) -> Answer {
        let response = self
            .client
            .clone()
            .check(request)
            .await
            .unwrap()
            .into_inner();
        Answer::from(response)
    }

    /// The deny reason for a certificate-only read of an order (`allowed` for an allow).
    pub async fn reason_for_cert(&self, cert: &str) -> String {
        let answer = self.check(Req::get("/orders/1").cert(cert).build()).await;
        answer.body["reason"]
            .as_str()
            .unwrap_or("allowed")
            .to_owned()
    }

    /// The deny reason for a token-only read of an order (`allowed` for an allow).
    pub async fn reason_for_token(&self, token: &str) -> String {
        let answer = self.check(Req::get("/orders/1").token(token).build()).await;
        answer.body["reason"]
            .as_str()
            .unwrap_or("allowed")
            .to_owned()
    }

    /// Stops the server and starts it again from the same config (same ports).
    pub async fn restart(&mut self) {
        self.pause().await;
        self.resume().await;
    }

    /// Stops the server, keeping its folder and config.
    pub async fn pause(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.unwrap();
        }
    }

    /// Starts the server again from its config file.
    pub async fn resume(&mut self) {
        let source = tollgate::config::ConfigSource::File(self.config_path.clone());
        let (config, snapshot) = tollgate::config::load(&source, 1).unwrap();
        self.running = Some(
            tollgate::server::start(source, config, snapshot, None)
                .await
                .unwrap(),
        );
    }

    /// Stops the server (draining the audit writer) and hands back its folder.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(running) = self.running.take() {
            running.shutdown().await.unwrap();
        }
        self.dir
    }
}

/// Builder for the `CheckRequest` Envoy would send.
#[derive(Clone, Default)]
pub struct Req {
    method: String,
    path: String,
    certificate: String,
    principal: String,
    headers: HashMap<String, String>,
    source_ip: Option<String>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Client certificate (PEM chain), URL-encoded as Envoy forwards it.
    pub fn cert(mut self, pem: &str) -> Self {
        self.certificate = utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string();
        self
    }

    pub fn raw_cert(mut self, field: &str) -> Self {
        self.certificate = field.into();
        self
    }

    pub fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    pub fn principal(mut self, principal: &str) -> Self {
        self.principal = principal.into();
        self
    }

    pub fn source_ip(mut self, ip: &str) -> Self {
        self.source_ip = Some(ip.into());
        self
    }

    pub fn build(self) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: self.source_ip.map(|ip| Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: ip,
                            ..Default::default()
                        })),
                    }),
                    certificate: self.certificate,
                    principal: self.principal,
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: self.method,
                        path: self.path,
                        host: "shop.test".into(),
                        headers: self.headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}

/// The parts of a `CheckResponse` tests assert on.
#[derive(Debug)]
pub struct Answer {
    pub grpc_code: i32,
    pub http_status: Option<i32>,
    pub headers: HashMap<String, String>,
    pub headers_to_remove: Vec<String>,
    pub body: serde_json::Value,
}

impl From<CheckResponse> for Answer {
    fn from(response: CheckResponse) -> Self {
        let grpc_code = response.status.map(|s| s.code).unwrap_or(-1);
        match response.http_response {
            Some(HttpResponse::OkResponse(ok)) => Answer {
                grpc_code,
                http_status: None,
                headers: ok
                    .headers
                    .into_iter()
                    .filter_map(|h| h.header.map(|h| (h.key, h.value)))
                    .collect(),
                headers_to_remove: ok.headers_to_remove,
                body: serde_json::Value::Null,
            },
            Some(HttpResponse::DeniedResponse(denied)) => Answer {
                grpc_code,
                http_status: denied.status.map(|s| s.code),
                headers: denied
                    .headers
                    .into_iter()
                    .filter_map(|h| h.header.map(|h| (h.key, h.value)))
                    .collect(),
                headers_to_remove: vec![],
                body: serde_json::from_str(&denied.body).unwrap(),
            },
            other => panic!("unexpected http_response {other:?}"),
        }
    }
}

impl Answer {
    /// Asserts an allow for `principal` and returns self.
    #[track_caller]
    pub fn assert_allowed(&self, principal: &str) -> &Self {
        assert_eq!(self.grpc_code, 0, "expected allow, got {self:#?}");
        assert_eq!(
            self.headers.get("x-tollgate-principal").map(String::as_str),
            Some(principal)
        );
        assert_eq!(
            self.headers.get("x-tollgate-decision-id").map(String::len),
            Some(32)
        );
        self
    }

    /// Asserts a deny with `status` and `reason`, and the response contract for that status.
    #[track_caller]
    pub fn assert_denied(&self, status: i32, reason: &str) -> &Self {
        assert_ne!(self.grpc_code, 0, "expected deny, got {self:#?}");
        assert_eq!(self.http_status, Some(status), "{self:#?}");
        assert_eq!(self.body["reason"], reason, "{self:#?}");
        assert!(!self.body["message"].as_str().unwrap_or_default().is_empty());
        assert_eq!(self.body["decision_id"].as_str().map(str::len), Some(32));
        assert_eq!(
            self.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        let challenge = self.headers.get("www-authenticate");
        if status == 401 {
            let challenge = challenge.expect("401 must carry www-authenticate");
            assert_eq!(
                challenge.contains("invalid_token"),
                reason.starts_with("token_"),
                "{challenge}"
            );
        } else {
            assert!(challenge.is_none());
        }
        self
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}
