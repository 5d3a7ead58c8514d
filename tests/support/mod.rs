//! Test support: PKI, token issuer, and a real server.
#![allow(
    dead_code,
    reason = "each test module uses a different part of the support code"
)]

pub mod envoy;
pub mod idp;
pub mod jwt;
pub mod pki;
pub mod proxies;
pub mod server;
pub mod tools;
pub mod workload;

use jwt::TokenIssuer;
use pki::Ca;
use server::{Options, TestServer};

/// A TCP port free on loopback right now (for listeners a test starts in another process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The decision core for the config at `path`, outside any server: caches holding up to
/// `cache_entries` each (0: none), no audit.
pub fn authorizer(path: &std::path::Path, cache_entries: usize) -> tollgate::authz::Authorizer {
    let source = tollgate::config::ConfigSource::File(path.to_owned());
    let (_, snapshot) = tollgate::config::load(&source, 1).unwrap();
    tollgate::authz::Authorizer::new(
        std::sync::Arc::new(tollgate::snapshot::SnapshotHandle::new(snapshot)),
        tollgate::authz::Caches::new(cache_entries, 60),
        tollgate::audit::AuditLog::disabled(),
    )
}

/// One HTTP/1.1 GET over plain TCP; the whole response (status line, headers, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

/// Polls the async `done` every 20 ms until it holds and says how long that took; fails the
/// test after `limit`, saying what never happened. For effects that take seconds (a refresh,
/// a reconnection) and need a request to observe.
pub async fn within(
    limit: std::time::Duration,
    what: &str,
    mut done: impl AsyncFnMut() -> bool,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what} (waited {limit:?})");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Polls `done` every 10 ms until it holds; fails the test after 3 s, saying what never
/// happened. The one way tests wait for an effect (no fixed sleeps).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// [`eventually`] for code outside a runtime: polls `done` every 20 ms, failing the test with
/// `what` after 5 s.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Blocks until something accepts TCP connections on 127.0.0.1:`port`; fails the test after
/// 10 s, naming `what` did not start.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The example estate's policy files (schema, entities, *.cedar), not its tests.
pub const POLICY_FILES: [&str; 6] = [
    "tollgate.cedarschema",
    "entities.json",
    "authzen.cedar",
    "orders.cedar",
    "payments.cedar",
    "platform.cedar",
];

/// Copies the example policies into `<dir>/policies` for a test to edit; returns that folder.
pub fn copy_policies(dir: &std::path::Path) -> std::path::PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for f in POLICY_FILES {
        let from = std::path::Path::new(server::MANIFEST)
            .join("policies")
            .join(f);
        std::fs::copy(from, policies.join(f)).unwrap();
    }
    policies
}

/// A CA, an issuer, and a server trusting both.
pub struct World {
    pub ca: Ca,
    pub issuer: TokenIssuer,
    pub server: TestServer,
}

impl World {
    pub async fn new() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        Self::with_ca(Ca::new("Test Root CA"), options).await
    }

    /// A world around a CA the test made first (to write files it signs before the start).
    pub async fn with_ca(ca: Ca, options: Options) -> Self {
        let issuer = TokenIssuer::new();
        let server = TestServer::start(&ca, &issuer, options).await;
        Self { ca, issuer, server }
    }
}

/// A certificate trust store for `ca` alone, trusted for the test trust domain.
pub fn trust_store(ca: &Ca) -> tollgate::identity::cert::TrustStore {
    tollgate::identity::cert::TrustStore::new(
        &[tollgate::identity::cert::TrustDomainBundle {
            trust_domain: pki::TRUST_DOMAIN.into(),
            authorities: vec![rustls_pki_types::CertificateDer::from(ca.der.clone())],
            crls: vec![],
        }],
        vec![],
        2048,
        false,
    )
    .unwrap()
}

/// Replaces a file whole, by rename, as editors and ConfigMaps do (a reload never reads it
/// half-written).
pub fn replace_file(path: &std::path::Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}
