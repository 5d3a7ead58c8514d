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
    assert!(readyz.contains("generation=1 policies=10"), "{readyz}");
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
    config.settings.http_listen = Some("127.0.0.1:0".parse().unwrap());
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
    let readyz = w.server.admin_get("/readyz").await;
    assert!(readyz.contains("last reload failed"), "{readyz}");
    assert!(!readyz.contains("broken.cedar"), "{readyz}");
    assert!(
        !readyz.contains(&policies.display().to_string()),
        "{readyz}"
    );
}
