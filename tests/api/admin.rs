//! The operational surface: gRPC health, and the admin HTTP endpoints.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{World, http_get};

#[tokio::test]
async fn grpc_health_reports_the_authorization_service_serving() {
    let w = World::new().await;
    let addr = w.server.running.as_ref().unwrap().grpc_addr;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    for service in ["", "envoy.service.auth.v3.Authorization"] {
        let status = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn admin_endpoints_answer() {
    let w = World::new().await;
    let admin = w.server.running.as_ref().unwrap().admin_addr.unwrap();
    let (healthz, readyz, missing) = tokio::task::spawn_blocking(move || {
        (
            http_get(admin, "/healthz"),
            http_get(admin, "/readyz"),
            http_get(admin, "/nope"),
        )
    })
    .await
    .unwrap();
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    assert!(readyz.contains("generation=1 policies=8"), "{readyz}");
    assert!(!readyz.contains("demo: true"), "{readyz}");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

/// The embedded demo estate accepts credentials anyone can mint: `/readyz` says so.
#[tokio::test]
async fn readyz_says_when_the_demo_estate_is_serving() {
    use tollgate::config::{ConfigSource, load};
    let (mut config, snapshot) = load(&ConfigSource::Embedded, 1).unwrap();
    config.settings.listen = "127.0.0.1:0".parse().unwrap();
    config.settings.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = tollgate::server::start(ConfigSource::Embedded, config, snapshot, None)
        .await
        .unwrap();
    let admin = running.admin_addr.unwrap();
    let readyz = tokio::task::spawn_blocking(move || http_get(admin, "/readyz"))
        .await
        .unwrap();
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    assert!(readyz.contains("\ndemo: true ("), "{readyz}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_decision_writes_one_audit_line() {
    use crate::support::server::{Options, Req};
    let w = World::with(Options {
        extra: "[audit]\nfile = \"audit.log\"\n".into(),
        ..Options::default()
    })
    .await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let allowed = w
        .server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&token)
                .source_ip("10.1.2.3")
                .build(),
        )
        .await;
    let denied = w.server.check(Req::get("/orders/1").build()).await;
    let dir = w.server.stop().await;
    let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(
        lines[0]["decision_id"],
        allowed.headers["x-tollgate-decision-id"].as_str()
    );
    assert_eq!(lines[0]["principal"], "spiffe://demo.tollgate.dev/payments");
    assert_eq!(lines[0]["source_ip"], "10.1.2.3");
    assert_eq!(lines[1]["reason"], "no_credentials");
    assert_eq!(lines[1]["decision_id"], denied.body["decision_id"]);
}

/// Finding: the audit log wrote the raw path with its query string, so secrets passed as query
/// values (`?token=…`) landed in the evidence store.
#[tokio::test]
async fn audit_records_redact_query_values() {
    use crate::support::server::{Options, Req};
    let w = World::with(Options {
        extra: "[audit]\nfile = \"audit.log\"\n".into(),
        ..Options::default()
    })
    .await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    w.server
        .check(
            Req::get("/orders/1?api_key=s3cr3t&flag&x=%2Fy")
                .cert(&cert.pem)
                .token(&token)
                .build(),
        )
        .await
        .assert_allowed("spiffe://demo.tollgate.dev/payments");
    let dir = w.server.stop().await;
    let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(!text.contains("s3cr3t"), "{text}");
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["path"], "/orders/1?api_key=_&flag&x=_", "{text}");
}

/// Finding: `/readyz` echoed reload errors, with file paths, to anyone who could reach it.
#[tokio::test]
async fn readyz_keeps_reload_details_to_loopback_listeners() {
    use crate::support::server::Options;
    let dir = tempfile::tempdir().unwrap();
    let policies = crate::support::copy_policies(dir.path());
    let w = World::with(Options {
        policy_dir: Some(policies.clone()),
        admin_listen: "0.0.0.0:0".into(),
        ..Options::default()
    })
    .await;
    let running = w.server.running.as_ref().unwrap();
    std::fs::write(policies.join("broken.cedar"), "permit (principal,\n").unwrap();
    crate::support::eventually("the broken file was never noticed", || {
        running.snapshots.last_reload_error().is_some()
    })
    .await;
    let port = running.admin_addr.unwrap().port();
    let readyz = tokio::task::spawn_blocking(move || {
        http_get(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            "/readyz",
        )
    })
    .await
    .unwrap();
    assert!(readyz.contains("last reload failed"), "{readyz}");
    assert!(!readyz.contains("broken.cedar"), "{readyz}");
    assert!(
        !readyz.contains(&policies.display().to_string()),
        "{readyz}"
    );
}
