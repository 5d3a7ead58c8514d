use super::*;
use crate::verdict::{ReasonCode, Verdict};
use envoy_types::pb::envoy::config::core::v3::HeaderMap;

fn settings() -> ResponseSettings {
    ResponseSettings {
        principal_header: "x-tollgate-principal".into(),
        decision_id_header: "x-tollgate-decision-id".into(),
        strip_authorization: true,
        expose_policy_ids: true,
        internal_error_status: 503,
    }
}

fn request(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[test]
fn missing_parts_are_errors_not_defaults() {
    assert_eq!(
        input_from_proto(CheckRequest::default()),
        Err(WireError::Missing("attributes"))
    );
    let no_http = CheckRequest {
        attributes: Some(AttributeContext::default()),
    };
    assert_eq!(
        input_from_proto(no_http),
        Err(WireError::Missing("attributes.request"))
    );
}

#[test]
fn reads_header_map_and_normalises_names() {
    let http = HttpRequest {
        method: "GET".into(),
        path: "/x".into(),
        header_map: Some(HeaderMap {
            headers: vec![
                HeaderValue {
                    key: "Authorization".into(),
                    raw_value: b"Bearer t".to_vec(),
                    ..Default::default()
                },
                HeaderValue {
                    key: "x-a".into(),
                    value: "1".into(),
                    ..Default::default()
                },
                HeaderValue {
                    key: "X-A".into(),
                    value: "2".into(),
                    ..Default::default()
                },
            ],
        }),
        ..Default::default()
    };
    let input = input_from_proto(request(http)).unwrap();
    assert_eq!(input.header("authorization"), Some("Bearer t"));
    assert_eq!(input.header("x-a"), Some("1,2"));

    let bad = HttpRequest {
        header_map: Some(HeaderMap {
            headers: vec![HeaderValue {
                key: "k".into(),
                raw_value: vec![0xff, 0xfe],
                ..Default::default()
            }],
        }),
        ..Default::default()
    };
    assert!(matches!(
        input_from_proto(request(bad)),
        Err(WireError::HeaderNotUtf8(_))
    ));
}

#[test]
fn allow_sets_own_headers_and_strips_spoofed_ones() {
    let verdict = Verdict::allow("spiffe://td/app".into(), vec![], vec![]);
    let response = to_proto(
        &verdict,
        vec!["x-tollgate-principal".into(), "x-tollgate-admin".into()],
        &settings(),
    );
    assert_eq!(response.status.unwrap().code, 0);
    let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
        panic!("expected OkResponse");
    };
    let principal = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref().map(|v| (h, v)))
        .find(|(_, v)| v.key == "x-tollgate-principal")
        .unwrap();
    assert_eq!(principal.1.value, "spiffe://td/app");
    assert_eq!(principal.0.append_action, OVERWRITE_IF_EXISTS_OR_ADD);
    assert_eq!(ok.headers_to_remove, ["x-tollgate-admin", "authorization"]);
}

#[test]
fn deny_maps_status_challenge_and_body() {
    let verdict = Verdict::deny(ReasonCode::TokenExpired, "token has expired");
    let response = to_proto(&verdict, vec![], &settings());
    assert_eq!(response.status.as_ref().unwrap().code, 16);
    let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
        panic!("expected DeniedResponse");
    };
    assert_eq!(denied.status.unwrap().code, 401);
    let challenge = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "www-authenticate")
        .unwrap();
    assert!(challenge.value.contains("invalid_token"));
    let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(body["reason"], "token_expired");

    let internal = to_proto(
        &Verdict::deny(ReasonCode::InternalError, "x"),
        vec![],
        &settings(),
    );
    let Some(HttpResponse::DeniedResponse(denied)) = internal.http_response else {
        panic!("expected DeniedResponse");
    };
    assert_eq!(denied.status.unwrap().code, 503);
}
