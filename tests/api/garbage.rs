//! Property: random wire input never panics and is never allowed, and with valid credentials a
//! random path is allowed only where a route the caller may use really matches.

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use tollgate::grpc::check::input_from_proto;
use tollgate::mapping::path::normalize;

use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::Req;
use crate::support::{World, authorizer};

fn garbage_request() -> impl Strategy<Value = CheckRequest> {
    let text = "\\PC{0,40}";
    (
        prop::option::of((
            "[A-Za-z]{0,8}|\\PC{0,8}",
            "(/[a-z%.;/?A-F0-9]{0,30})|\\PC{0,30}",
            prop::collection::hash_map(
                prop_oneof![
                    Just("authorization".to_owned()),
                    Just("x-forwarded-client-cert".to_owned()),
                    "[a-z-]{1,12}"
                ],
                prop_oneof![Just("Bearer e30.e30.e30".to_owned()), text],
                0..4,
            ),
        )),
        prop_oneof![
            Just(String::new()),
            text,
            "-----BEGIN CERTIFICATE-----%0A[A-Za-z0-9+/=%]{0,80}"
        ],
        text,
    )
        .prop_map(|(http, certificate, principal)| CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    certificate,
                    principal,
                    ..Default::default()
                }),
                request: http.map(|(method, path, headers)| Request {
                    http: Some(HttpRequest {
                        method,
                        path,
                        headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
}

#[tokio::test]
async fn random_requests_are_denied_in_process_and_over_grpc() {
    let w = World::new().await;
    let authorizer = authorizer(&w.server.config_path, 1000);
    let mut runner = TestRunner::default();
    let strategy = garbage_request();
    for i in 0..2000 {
        let request = strategy.new_tree(&mut runner).unwrap().current();
        if i < 100 {
            let answer = w.server.check(request.clone()).await;
            assert_ne!(answer.grpc_code, 0, "allowed over gRPC: {request:?}");
        }
        if let Ok(input) = input_from_proto(request.clone()) {
            let verdict = authorizer.check(&input).verdict;
            assert!(!verdict.is_allowed(), "allowed: {request:?}");
        }
    }
    // The server is still healthy afterwards.
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    w.server
        .check(Req::get("/orders/1").cert(&cert.pem).token(&token).build())
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}

#[tokio::test]
async fn valid_credentials_with_random_paths_only_reach_matching_routes() {
    let w = World::new().await;
    let authorizer = authorizer(&w.server.config_path, 1000);
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let certificate =
        percent_encoding::utf8_percent_encode(&cert.pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let mut runner = TestRunner::default();
    let strategy = (
        prop_oneof![Just("GET"), Just("POST"), Just("get"), Just("PUT")],
        "/[a-zA-Z0-9%./;?#_-]{0,40}",
    );
    let mut allowed = 0;
    for _ in 0..3000 {
        let (method, path) = strategy.new_tree(&mut runner).unwrap().current();
        let mut headers = tollgate::request::Headers::default();
        headers.insert("authorization".to_owned(), format!("Bearer {token}"));
        let input = tollgate::request::CheckInput {
            method: method.to_owned(),
            path: path.clone(),
            headers,
            certificate: certificate.clone(),
            ..Default::default()
        };
        let verdict = authorizer.check(&input).verdict;
        if verdict.is_allowed() {
            allowed += 1;
            let segments = normalize(&path).unwrap().segments;
            assert_eq!(method, "GET", "{path}");
            assert!(
                segments.len() == 2 && segments[0] == "orders",
                "payments was allowed on `{path}` ({segments:?})"
            );
        }
    }
    // Sanity: the generator does reach the allowed route sometimes.
    let verdict = authorizer
        .check(&tollgate::request::CheckInput {
            method: "GET".into(),
            path: "/./orders//x/".into(),
            headers: [("authorization".to_owned(), format!("Bearer {token}"))]
                .into_iter()
                .collect(),
            certificate,
            ..Default::default()
        })
        .verdict;
    assert!(verdict.is_allowed() || allowed > 0);
}
