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
        &["x-tollgate-principal".into(), "x-tollgate-admin".into()],
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
    let response = to_proto(&verdict, &[], &settings());
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
        &[],
        &settings(),
    );
    let Some(HttpResponse::DeniedResponse(denied)) = internal.http_response else {
        panic!("expected DeniedResponse");
    };
    assert_eq!(denied.status.unwrap().code, 503);
}

/// The bytes prost writes for the answer's message: what [`encode`] must equal.
fn prost_bytes(verdict: &Verdict, client_owned: &[String], settings: &ResponseSettings) -> Vec<u8> {
    to_proto(verdict, client_owned, settings).encode_to_vec()
}

#[test]
fn an_allow_is_written_as_prost_writes_its_message() {
    let mut settings = settings();
    let owned: Vec<String> = [
        "x-tollgate-principal",
        "x-tollgate-admin",
        "x-tollgate-decision-id",
    ]
    .map(String::from)
    .to_vec();
    // A principal long enough that every enclosing length takes two varint bytes.
    let long = format!("spiffe://td/{}", "a".repeat(300));
    for principal in [Some("spiffe://td/app"), Some(""), Some(long.as_str()), None] {
        for strip in [true, false] {
            for client_owned in [&[][..], &owned[..]] {
                settings.strip_authorization = strip;
                let mut verdict = Verdict::allow(String::new(), vec!["p1".into()], vec![]);
                verdict.principal = principal.map(Arc::from);
                let ours = encode(&verdict, client_owned, &settings).0;
                assert_eq!(
                    ours,
                    prost_bytes(&verdict, client_owned, &settings),
                    "principal {principal:?}, strip {strip}, client-owned {client_owned:?}"
                );
                let decoded = CheckResponse::decode(ours.as_slice()).unwrap();
                assert_eq!(decoded, to_proto(&verdict, client_owned, &settings));
            }
        }
    }
}

#[test]
fn a_deny_is_encoded_as_a_denied_response_whatever_else_the_verdict_holds() {
    // A refusal after identity succeeded still carries the principal: it must not be written
    // as an allow's headers.
    let mut verdict = Verdict::deny(ReasonCode::PolicyDenied, "no policy permits this");
    verdict.principal = Some("spiffe://td/app".into());
    let owned = vec!["x-tollgate-admin".to_owned()];
    let bytes = encode(&verdict, &owned, &settings()).0;
    let decoded = CheckResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.status.as_ref().unwrap().code, 7);
    let Some(HttpResponse::DeniedResponse(denied)) = decoded.http_response else {
        panic!("a deny encoded as {:?}", decoded.http_response);
    };
    assert_eq!(denied.status.unwrap().code, 403);
    assert!(
        !denied
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .any(|h| h.key == "x-tollgate-principal"),
        "{:?}",
        denied.headers
    );
}

mod encoded {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any principal, header names and client-owned headers: the same bytes as prost's.
        #[test]
        fn allow_bytes_equal_prost(
            principal in proptest::option::of(".{0,200}"),
            principal_header in "[a-z-]{0,40}",
            decision_id_header in "[a-z-]{0,140}",
            client_owned in proptest::collection::vec("[a-z-]{0,20}", 0..4),
            strip in any::<bool>(),
        ) {
            let settings = ResponseSettings {
                principal_header,
                decision_id_header,
                strip_authorization: strip,
                ..settings()
            };
            let mut verdict = Verdict::allow(String::new(), vec![], vec![]);
            verdict.principal = principal.map(Arc::from);
            prop_assert_eq!(
                encode(&verdict, &client_owned, &settings).0,
                prost_bytes(&verdict, &client_owned, &settings)
            );
        }

        /// Any reason, message, determining policies and settings: a deny's bytes are the
        /// same as prost's, and decode back to [`to_proto`]'s message.
        #[test]
        fn deny_bytes_equal_prost(
            reason in 0..ReasonCode::ALL.len(),
            message in ".{0,300}",
            determining in proptest::collection::vec(".{0,40}", 0..3),
            principal in proptest::option::of("[a-z:/.]{0,60}"),
            decision_id_header in "[a-z-]{0,140}",
            expose_policy_ids in any::<bool>(),
            internal_error_status in 400_u16..600,
            client_owned in proptest::collection::vec("[a-z-]{0,20}", 0..3),
        ) {
            let settings = ResponseSettings {
                decision_id_header,
                expose_policy_ids,
                internal_error_status,
                ..settings()
            };
            let mut verdict = Verdict::deny(ReasonCode::ALL[reason], message);
            verdict.determining = determining.into();
            verdict.principal = principal.map(Arc::from);
            let ours = encode(&verdict, &client_owned, &settings).0;
            prop_assert_eq!(&ours, &prost_bytes(&verdict, &client_owned, &settings));
            prop_assert_eq!(
                CheckResponse::decode(ours.as_slice()).unwrap(),
                to_proto(&verdict, &client_owned, &settings)
            );
        }
    }
}

/// The embedded demo's authorizer, caches on, and a Check of `path` from `source_ip` with
/// `creds` and `extra` headers, as bytes.
mod from_bytes {
    use std::collections::HashMap;

    use super::*;
    use crate::demo::{DemoCredentials, DemoRequest, mint};

    fn authorizer() -> Authorizer {
        let (_, snapshot) = crate::config::load(&crate::config::ConfigSource::Embedded, 1).unwrap();
        Authorizer::new(
            Arc::new(crate::snapshot::SnapshotHandle::new(snapshot)),
            crate::authz::Caches::new(1000, 300),
            crate::audit::AuditLog::disabled(),
        )
    }

    fn service() -> CheckService {
        CheckService::new(Arc::new(authorizer()))
    }

    /// `message` decoded, changed by `edit`, encoded again.
    fn edit(message: &[u8], edit: impl FnOnce(&mut AttributeContext)) -> Vec<u8> {
        let mut request = CheckRequest::decode(message).unwrap();
        edit(request.attributes.as_mut().unwrap());
        request.encode_to_vec()
    }

    fn http(attributes: &mut AttributeContext) -> &mut HttpRequest {
        attributes
            .request
            .as_mut()
            .and_then(|r| r.http.as_mut())
            .unwrap()
    }

    fn peer(attributes: &mut AttributeContext) -> &mut Peer {
        attributes.source.as_mut().unwrap()
    }

    /// The gRPC code and the deny body's `message`.
    fn refusal(service: &CheckService, message: &[u8]) -> (i32, String) {
        let answer = CheckResponse::decode(&service.answer_message(message).0[..]).unwrap();
        let code = answer.status.unwrap_or_default().code;
        let Some(HttpResponse::DeniedResponse(denied)) = answer.http_response else {
            panic!("not a deny");
        };
        let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
        (
            code,
            body["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Review finding: a remembered Check must be found through the view's key, and every
    /// decision input alone must make another key (each here a miss: the input is built).
    #[test]
    fn a_viewed_check_builds_its_input_only_on_a_miss_and_each_decision_input_keys_it() {
        use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
        let authorizer = authorizer();
        let builds = std::cell::Cell::new(0);
        let check = |message: &[u8]| {
            let view = CheckView::read(message).expect("a Check in Envoy's shape");
            authorizer.check_keyed(
                |key| view.key(key),
                view.path(),
                || {
                    builds.set(builds.get() + 1);
                    Ok(view.input())
                },
            )
        };
        let reader = creds(&["orders.read"]);
        let with_id = |id| message("/orders/1001", "10.0.0.1", &reader, &[("x-request-id", id)]);
        let base = with_id("1");
        assert!(check(&base).verdict.is_allowed());
        assert!(check(&with_id("2")).verdict.is_allowed());
        assert_eq!(builds.get(), 1, "a new request id is not a new decision");
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("host", edit(&base, |a| http(a).host = "other.demo".into())),
            (
                "path",
                edit(&base, |a| http(a).path = "/orders/1002".into()),
            ),
            ("method", edit(&base, |a| http(a).method = "HEAD".into())),
            (
                "principal",
                edit(&base, |a| {
                    peer(a).principal = "spiffe://demo.tollgate.dev/x".into();
                }),
            ),
            (
                "source address",
                edit(&base, |a| {
                    peer(a).address = Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: "10.0.0.2".into(),
                            ..Default::default()
                        })),
                    });
                }),
            ),
            (
                "certificate",
                edit(&base, |a| peer(a).certificate.push_str("%0A")),
            ),
            (
                "authorization",
                edit(&base, |a| {
                    if let Some(value) = http(a).headers.get_mut("authorization") {
                        value.push('x');
                    }
                }),
            ),
            (
                "x-forwarded-client-cert",
                edit(&base, |a| {
                    http(a)
                        .headers
                        .insert("x-forwarded-client-cert".into(), "By=spiffe://x".into());
                }),
            ),
        ];
        for (at, (what, variant)) in variants.iter().enumerate() {
            check(variant);
            assert_eq!(
                builds.get(),
                2 + at,
                "another {what} was answered from the memo"
            );
        }
    }

    /// Review finding: a Check that is protobuf but not proto3 (a header value that is not
    /// text) was refused as "not protobuf".
    #[test]
    fn a_check_prost_cannot_read_is_refused_saying_why() {
        let reader = creds(&["orders.read"]);
        let plain = message("/orders/1001", "10.0.0.1", &reader, &[]);
        let length_delimited = |number: u8, bytes: &[u8]| {
            let mut out = vec![(number << 3) | 2];
            prost::encoding::encode_varint(bytes.len() as u64, &mut out);
            out.extend_from_slice(bytes);
            out
        };
        // The same Check with one more `headers` entry (3), whose value is not UTF-8.
        let mut request = CheckRequest::decode(&plain[..]).unwrap();
        let attributes = request.attributes.as_mut().unwrap();
        let mut http = http(attributes).encode_to_vec();
        let entry = [length_delimited(1, b"x-note"), length_delimited(2, b"\xff")].concat();
        http.extend(length_delimited(3, &entry));
        attributes.request = None;
        let mut attributes = request.attributes.unwrap().encode_to_vec();
        attributes.extend(length_delimited(4, &length_delimited(2, &http)));
        let message = length_delimited(1, &attributes);
        let (code, why) = refusal(&service(), &message);
        assert_eq!(code, rpc_code::INVALID_ARGUMENT);
        assert!(
            why.starts_with("the CheckRequest is not valid protobuf"),
            "{why}"
        );
        assert!(why.contains("UTF-8"), "{why}");
    }

    fn creds(scopes: &[&str]) -> DemoCredentials {
        mint(&DemoRequest {
            app: "orders".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            user: None,
            bind: false,
            lifetime: std::time::Duration::from_secs(3600),
        })
        .unwrap()
    }

    fn message(path: &str, ip: &str, creds: &DemoCredentials, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut headers: HashMap<String, String> = [(
            "authorization".to_owned(),
            format!("Bearer {}", creds.token),
        )]
        .into();
        for (name, value) in extra {
            headers.insert((*name).into(), (*value).into());
        }
        crate::loadgen::envoy_request("GET", path, "shop.demo", headers, Some(&creds.cert_pem), ip)
            .encode_to_vec()
    }

    /// The gRPC status code, the upstream headers' names, and the headers removed.
    fn ask(service: &CheckService, message: &[u8]) -> (i32, Vec<String>, Vec<String>) {
        let answer = CheckResponse::decode(&service.answer_message(message).0[..]).unwrap();
        let code = answer.status.unwrap_or_default().code;
        match answer.http_response {
            Some(HttpResponse::OkResponse(ok)) => (
                code,
                ok.headers
                    .into_iter()
                    .filter_map(|h| h.header.map(|h| h.key))
                    .collect(),
                ok.headers_to_remove,
            ),
            _ => (code, Vec::new(), Vec::new()),
        }
    }

    /// A probe build (`signature-probe`, for `benches/forgeries.py`) verifies a signature on
    /// every Check, repeated ones too, and decides each as any build does
    /// (`cargo test --lib --features signature-probe`, in `.ci/run`).
    #[cfg(feature = "signature-probe")]
    #[test]
    fn a_probe_build_verifies_a_signature_on_every_check_and_decides_as_usual() {
        let service = service();
        let reader = creds(&["orders.read"]);
        let allowed = message("/orders/1001", "10.0.0.1", &reader, &[]);
        let denied = message("/admin/users", "10.0.0.1", &reader, &[]);
        for _ in 0..2 {
            for (message, code) in [
                (&allowed, rpc_code::OK),
                (&denied, rpc_code::PERMISSION_DENIED),
            ] {
                let before = crate::signature_probe::calls();
                assert_eq!(ask(&service, message).0, code);
                assert_eq!(crate::signature_probe::calls(), before + 1, "one a Check");
            }
        }
    }

    /// A repeated Check is answered from the verdict memo without decoding it; what it may not
    /// skip is any decision input, or removing the headers that are Tollgate's to set (a
    /// spoofed `x-tollgate-role` is not a decision input, so it shares the verdict).
    #[test]
    fn a_remembered_verdict_answers_only_the_same_check() {
        let service = service();
        let reader = creds(&["orders.read"]);
        let plain = message(
            "/orders/1001",
            "10.0.0.1",
            &reader,
            &[("x-request-id", "1")],
        );
        let spoofed = message(
            "/orders/1001",
            "10.0.0.1",
            &reader,
            &[("x-tollgate-role", "admin")],
        );
        for _ in 0..2 {
            let (code, headers, removed) = ask(&service, &plain);
            assert_eq!(code, rpc_code::OK);
            assert!(
                headers.iter().any(|h| h == "x-tollgate-principal"),
                "{headers:?}"
            );
            assert!(
                removed.iter().all(|h| h != "x-tollgate-role"),
                "{removed:?}"
            );
            let (code, _, removed) = ask(&service, &spoofed);
            assert_eq!(code, rpc_code::OK);
            assert!(
                removed.iter().any(|h| h == "x-tollgate-role"),
                "{removed:?}"
            );
        }
        // Each denied although the allow of the same Check is remembered on this thread:
        // another caller's token and certificate,
        let other = creds(&[]);
        assert_eq!(
            ask(&service, &message("/orders/1001", "10.0.0.1", &other, &[])).0,
            rpc_code::PERMISSION_DENIED
        );
        // the same credentials on another route (a write),
        let mut write = CheckRequest::decode(&plain[..]).unwrap();
        let http = write
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .unwrap();
        http.method = "DELETE".into();
        assert_eq!(
            ask(&service, &write.encode_to_vec()).0,
            rpc_code::PERMISSION_DENIED
        );
        // the token alone, without the certificate it came with,
        let mut no_cert = CheckRequest::decode(&plain[..]).unwrap();
        no_cert.attributes.as_mut().unwrap().source = None;
        assert_ne!(ask(&service, &no_cert.encode_to_vec()).0, rpc_code::OK);
        // and bytes that are not a CheckRequest: a deny that says so, not a gRPC error.
        assert_eq!(ask(&service, b"\x0a\xff").0, rpc_code::INVALID_ARGUMENT);
    }
}
