//! ext_authz over a Unix domain socket, and over mTLS with a required client certificate.

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::support::World;
use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::{Answer, Options, Req};

#[tokio::test]
async fn serves_over_a_unix_socket() {
    let w = World::with(Options {
        server_extra: "unix_socket = \"tollgate.sock\"".into(),
        ..Options::default()
    })
    .await;
    let socket = w.server.dir.path().join("tollgate.sock");
    let channel = Endpoint::from_static("http://tollgate.local")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap();
    assert_payments_may_read(&w, channel).await;
}

#[tokio::test]
async fn mtls_listener_requires_a_client_certificate() {
    // Tollgate's serving certificate and Envoy's client certificate come from the same test CA.
    let ca = crate::support::pki::Ca::new("Mesh CA");
    let server_cert = ca.server("tollgate.test");
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in [
        ("srv.pem", &server_cert.pem),
        ("srv.key", &server_cert.key_pem),
        ("mesh-ca.pem", &ca.pem),
    ] {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let path = |name: &str| dir.path().join(name).display().to_string();
    let w = World::with(Options {
        server_extra: format!(
            "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"",
            path("srv.pem"),
            path("srv.key"),
            path("mesh-ca.pem")
        ),
        ..Options::default()
    })
    .await;
    let addr = w.server.running.as_ref().unwrap().grpc_addr;
    let tls = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.pem))
            .domain_name("tollgate.test")
    };

    let envoy = ca.app("envoy-gateway");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls().identity(Identity::from_pem(&envoy.pem, &envoy.key_pem)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_payments_may_read(&w, channel).await;

    // No client certificate: the handshake or the first call fails; nothing is decided.
    let anonymous = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls())
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = anonymous {
        let result = AuthorizationClient::new(channel)
            .check(Req::get("/orders/1").build())
            .await;
        assert!(
            result.is_err(),
            "a client without a certificate was served: {result:?}"
        );
    }
    // Plain text to the TLS port fails too.
    let plain = w
        .server
        .client
        .clone()
        .check(Req::get("/orders/1").build())
        .await;
    assert!(plain.is_err());
}

/// Over `channel`, the test estate allows `payments` to read an order.
async fn assert_payments_may_read(w: &World, channel: tonic::transport::Channel) {
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let response = AuthorizationClient::new(channel)
        .check(Req::get("/orders/1").cert(&cert.pem).token(&token).build())
        .await
        .unwrap()
        .into_inner();
    Answer::from(response).assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}
