//! `envoy.service.auth.v3.Authorization/Check`: the only code that sees Envoy's protobuf.
//! It translates `CheckRequest` → `CheckInput` and `Verdict` → the `CheckResponse`'s bytes,
//! nothing else.

use std::net::IpAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::wire::CheckView;
use crate::authz::Authorizer;
use crate::request::{CheckInput, Headers};
use crate::snapshot::ResponseSettings;
use crate::verdict::{Denial, FailureClass, Outcome, ReasonCode, Verdict, client_owned_headers};

/// `HeaderValueOption.append_action`: OVERWRITE_IF_EXISTS_OR_ADD.
const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;

/// The ext_authz service.
#[derive(Debug, Clone)]
pub struct CheckService {
    authorizer: Arc<Authorizer>,
}

impl CheckService {
    /// A service deciding with `authorizer`.
    pub fn new(authorizer: Arc<Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl CheckService {
    /// Decides the Check `message` (a `CheckRequest`'s bytes) and writes its answer. A message
    /// in the shape Envoy sends is read where it lies ([`CheckView`]), and one this thread
    /// answered before with the same decision inputs is answered from the verdict memo
    /// without building its [`CheckInput`]; any other is decoded in full ([`Self::answer`]).
    pub fn answer_message(&self, message: &[u8]) -> Encoded {
        // Benchmarks only: the allowed path plus one signature check (see `signature_probe`).
        #[cfg(feature = "signature-probe")]
        std::hint::black_box(crate::signature_probe::verify_once());
        let Some(view) = CheckView::read(message) else {
            return match CheckRequest::decode(message) {
                Ok(request) => self.answer(request),
                Err(error) => {
                    let refused = self.authorizer.refuse(
                        ReasonCode::MalformedRequest,
                        format!("the CheckRequest is not valid protobuf: {error}"),
                    );
                    encode(&refused.verdict, &[], &refused.snapshot.response)
                }
            };
        };
        let decided =
            self.authorizer
                .check_keyed(|key| view.key(key), view.path(), || Ok(view.input()));
        let mut own = client_owned_headers(view.header_names(), &decided.snapshot.response);
        // A map's repeated key is one header.
        own.sort_unstable();
        own.dedup();
        encode(&decided.verdict, &own, &decided.snapshot.response)
    }

    /// Decides one decoded Check and writes its answer.
    pub fn answer(&self, request: CheckRequest) -> Encoded {
        let (decided, own_headers) = match input_from_proto(request) {
            Ok(input) => {
                let decided = self.authorizer.check(&input);
                let names = input.headers.keys().map(String::as_str);
                let own = client_owned_headers(names, &decided.snapshot.response);
                (decided, own)
            }
            Err(error) => (
                self.authorizer
                    .refuse(ReasonCode::MalformedRequest, error.to_string()),
                Vec::new(),
            ),
        };
        encode(&decided.verdict, &own_headers, &decided.snapshot.response)
    }
}

/// Why a `CheckRequest` cannot be decided on (`malformed_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A message Envoy always sends is absent.
    #[error("the CheckRequest has no `{0}`")]
    Missing(&'static str),
    /// A raw header value is not UTF-8.
    #[error("header `{0}` is not UTF-8")]
    HeaderNotUtf8(String),
}

/// Wire → core. Missing pieces are errors, not defaults, so a broken caller is denied.
pub fn input_from_proto(request: CheckRequest) -> Result<CheckInput, WireError> {
    let CheckRequest { attributes } = request;
    // Destination, context extensions, metadata and TLS session are not used for decisions.
    let AttributeContext {
        source, request, ..
    } = attributes.ok_or(WireError::Missing("attributes"))?;
    let Request { http, .. } = request.ok_or(WireError::Missing("attributes.request"))?;
    let HttpRequest {
        method,
        headers,
        header_map,
        path,
        host,
        ..
    } = http.ok_or(WireError::Missing("attributes.request.http"))?;
    let Peer {
        address,
        principal,
        certificate,
        ..
    } = source.unwrap_or_default();
    let count = header_map
        .as_ref()
        .filter(|_| headers.is_empty())
        .map_or(headers.len(), |map| map.headers.len());
    let mut input = CheckInput {
        method,
        path,
        host,
        headers: Headers::with_capacity_and_hasher(count, Default::default()),
        source_ip: None,
        certificate,
        principal,
    };
    match header_map {
        // Envoy sends `header_map` instead of `headers` when `encode_raw_headers` is on.
        Some(map) if headers.is_empty() => {
            for h in map.headers {
                if h.raw_value.is_empty() {
                    input.insert_header(h.key, h.value);
                    continue;
                }
                let value = String::from_utf8(h.raw_value)
                    .map_err(|_| WireError::HeaderNotUtf8(h.key.clone()))?;
                input.insert_header(h.key, value);
            }
        }
        _ => {
            for (key, value) in headers {
                input.insert_header(key, value);
            }
        }
    }
    if let Some(ip) = address.and_then(|a| a.address).and_then(|a| match a {
        address::Address::SocketAddress(sa) => sa.address.parse::<IpAddr>().ok(),
        _ => None,
    }) {
        input.set_source_ip(ip);
    }
    Ok(input)
}

/// Core → wire, as a message (what [`encode`] writes for a deny, and the reference its bytes
/// for an allow are tested against).
pub fn to_proto(
    verdict: &Verdict,
    client_owned: &[String],
    settings: &ResponseSettings,
) -> CheckResponse {
    let decision_id = verdict.decision_id.hex();
    match &verdict.outcome {
        Outcome::Allow => {
            let headers = allow_headers(verdict, decision_id.as_str(), settings)
                .map(|(key, value)| header(key, value.to_owned()))
                .collect();
            let headers_to_remove = headers_to_remove(client_owned, settings)
                .map(str::to_owned)
                .collect();
            CheckResponse {
                status: Some(rpc::Status {
                    code: rpc_code::OK,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    headers_to_remove,
                    ..Default::default()
                })),
                ..Default::default()
            }
        }
        Outcome::Deny(denial) => CheckResponse {
            status: Some(rpc::Status {
                code: rpc_code_of(denial.reason.class()),
                message: denial.reason.as_str().into(),
                ..Default::default()
            }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus {
                    code: i32::from(denial.reason.http_status(settings.internal_error_status)),
                }),
                headers: deny_headers(denial, decision_id.as_str(), settings)
                    .map(|(key, value)| header(key, value.to_owned()))
                    .collect(),
                body: verdict.deny_body(settings.expose_policy_ids),
            })),
            ..Default::default()
        },
    }
}

/// A Check's answer: the bytes of its `CheckResponse` in protobuf's wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

/// Core → wire bytes: exactly the bytes prost writes for [`to_proto`]'s message (tests hold
/// the two together), written straight from the verdict: building the message took a `String`
/// per header name and value and a vector per list only to encode and drop them, and prost
/// sized each nested message again at every level, which together cost more than the decision
/// of an allow. A deny is written the same way, so a flood of refusals pays no more than it must.
pub fn encode(verdict: &Verdict, client_owned: &[String], settings: &ResponseSettings) -> Encoded {
    match &verdict.outcome {
        Outcome::Allow => encode_allow(verdict, client_owned, settings),
        Outcome::Deny(denial) => encode_deny(verdict, denial, settings),
    }
}

fn encode_allow(
    verdict: &Verdict,
    client_owned: &[String],
    settings: &ResponseSettings,
) -> Encoded {
    let decision_id = verdict.decision_id.hex();
    let headers = allow_headers(verdict, decision_id.as_str(), settings);
    let remove = headers_to_remove(client_owned, settings);
    let ok_len: usize = headers
        .clone()
        .map(|(key, value)| nested_len(OK_HEADERS, header_option_len(key, value)))
        .sum::<usize>()
        + remove
            .clone()
            .map(|name| nested_len(OK_HEADERS_TO_REMOVE, name.len()))
            .sum::<usize>();
    let mut out =
        Vec::with_capacity(nested_len(RESPONSE_STATUS, 0) + nested_len(RESPONSE_OK, ok_len));
    // `status` is present and empty: code OK is protobuf's default, so nothing is written in it.
    put_nested(RESPONSE_STATUS, 0, &mut out);
    put_nested(RESPONSE_OK, ok_len, &mut out);
    for (key, value) in headers {
        put_header_option(OK_HEADERS, key, value, &mut out);
    }
    for name in remove {
        put_nested(OK_HEADERS_TO_REMOVE, name.len(), &mut out);
        out.extend_from_slice(name.as_bytes());
    }
    Encoded(out)
}

fn encode_deny(verdict: &Verdict, denial: &Denial, settings: &ResponseSettings) -> Encoded {
    let decision_id = verdict.decision_id.hex();
    let headers = deny_headers(denial, decision_id.as_str(), settings);
    let code = rpc_code_of(denial.reason.class());
    let message = denial.reason.as_str();
    let http_status = i32::from(denial.reason.http_status(settings.internal_error_status));
    let body = verdict.deny_body(settings.expose_policy_ids);
    let status_len = int32_len(STATUS_CODE, code) + string_len(STATUS_MESSAGE, message);
    let http_status_len = int32_len(HTTP_STATUS_CODE, http_status);
    let denied_len = nested_len(DENIED_STATUS, http_status_len)
        + headers
            .clone()
            .map(|(key, value)| nested_len(DENIED_HEADERS, header_option_len(key, value)))
            .sum::<usize>()
        + string_len(DENIED_BODY, &body);
    let mut out = Vec::with_capacity(
        nested_len(RESPONSE_STATUS, status_len) + nested_len(RESPONSE_DENIED, denied_len),
    );
    put_nested(RESPONSE_STATUS, status_len, &mut out);
    put_int32(STATUS_CODE, code, &mut out);
    put_string(STATUS_MESSAGE, message, &mut out);
    put_nested(RESPONSE_DENIED, denied_len, &mut out);
    put_nested(DENIED_STATUS, http_status_len, &mut out);
    put_int32(HTTP_STATUS_CODE, http_status, &mut out);
    for (key, value) in headers {
        put_header_option(DENIED_HEADERS, key, value, &mut out);
    }
    put_string(DENIED_BODY, &body, &mut out);
    Encoded(out)
}

/// The headers a deny answers the client with, in order: the content type of its JSON body,
/// the decision id, and a challenge when the reason has one.
fn deny_headers<'a>(
    denial: &'a Denial,
    decision_id: &'a str,
    settings: &'a ResponseSettings,
) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
    [
        Some(("content-type", "application/json")),
        Some((settings.decision_id_header.as_str(), decision_id)),
        denial
            .reason
            .challenge()
            .map(|challenge| ("www-authenticate", challenge)),
    ]
    .into_iter()
    .flatten()
}

/// The gRPC status a deny's class answers with.
fn rpc_code_of(class: FailureClass) -> i32 {
    match class {
        FailureClass::Unauthenticated | FailureClass::BadCertificate | FailureClass::BadToken => {
            rpc_code::UNAUTHENTICATED
        }
        FailureClass::Malformed => rpc_code::INVALID_ARGUMENT,
        FailureClass::Forbidden => rpc_code::PERMISSION_DENIED,
        FailureClass::Throttled => rpc_code::RESOURCE_EXHAUSTED,
        FailureClass::Internal => rpc_code::UNAVAILABLE,
    }
}

/// The headers an allow sets upstream, in order: the decision id, then the principal.
fn allow_headers<'a>(
    verdict: &'a Verdict,
    decision_id: &'a str,
    settings: &'a ResponseSettings,
) -> impl Iterator<Item = (&'a str, &'a str)> + Clone {
    let principal = verdict
        .principal
        .as_deref()
        .map(|principal| (settings.principal_header.as_str(), principal));
    [
        Some((settings.decision_id_header.as_str(), decision_id)),
        principal,
    ]
    .into_iter()
    .flatten()
}

/// The headers an allow removes before the request goes upstream: the client's copies of
/// Tollgate's own headers (those it sets itself are overwritten instead), and `authorization`
/// when configured.
fn headers_to_remove<'a>(
    client_owned: &'a [String],
    settings: &'a ResponseSettings,
) -> impl Iterator<Item = &'a str> + Clone {
    client_owned
        .iter()
        .map(String::as_str)
        .filter(|h| *h != settings.principal_header && *h != settings.decision_id_header)
        .chain(settings.strip_authorization.then_some("authorization"))
}

// Field numbers of the messages [`encode`] writes (envoy/service/auth/v3/external_auth.proto,
// envoy/config/core/v3/base.proto, envoy/type/v3/http_status.proto, google/rpc/status.proto).
const RESPONSE_STATUS: u32 = 1;
const RESPONSE_DENIED: u32 = 2;
const RESPONSE_OK: u32 = 3;
const STATUS_CODE: u32 = 1;
const STATUS_MESSAGE: u32 = 2;
const DENIED_STATUS: u32 = 1;
const DENIED_HEADERS: u32 = 2;
const DENIED_BODY: u32 = 3;
const HTTP_STATUS_CODE: u32 = 1;
const OK_HEADERS: u32 = 2;
const OK_HEADERS_TO_REMOVE: u32 = 5;
const OPTION_HEADER: u32 = 1;
const OPTION_APPEND_ACTION: u32 = 3;
const HEADER_KEY: u32 = 1;
const HEADER_VALUE: u32 = 2;

/// A `HeaderValue`'s length: proto3 leaves an empty string out.
fn header_value_len(key: &str, value: &str) -> usize {
    string_len(HEADER_KEY, key) + string_len(HEADER_VALUE, value)
}

/// A `HeaderValueOption`'s length: the header and the append action.
fn header_option_len(key: &str, value: &str) -> usize {
    nested_len(OPTION_HEADER, header_value_len(key, value))
        + key_len(OPTION_APPEND_ACTION)
        + encoded_len_varint(OVERWRITE_IF_EXISTS_OR_ADD as u64)
}

/// One `HeaderValueOption` (overwrite or add) as field `tag` of the message being written.
fn put_header_option(tag: u32, key: &str, value: &str, out: &mut Vec<u8>) {
    put_nested(tag, header_option_len(key, value), out);
    put_nested(OPTION_HEADER, header_value_len(key, value), out);
    put_string(HEADER_KEY, key, out);
    put_string(HEADER_VALUE, value, out);
    encode_key(OPTION_APPEND_ACTION, WireType::Varint, out);
    encode_varint(OVERWRITE_IF_EXISTS_OR_ADD as u64, out);
}

/// An `int32` field's length: proto3 leaves a zero out, and a negative value takes ten bytes.
fn int32_len(tag: u32, value: i32) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(i64::from(value) as u64)
    }
}

fn put_int32(tag: u32, value: i32, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(i64::from(value) as u64, out);
    }
}

fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        nested_len(tag, value.len())
    }
}

/// A length-delimited field's whole length, for a payload of `len` bytes.
fn nested_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A length-delimited field's key and length; its `len` bytes follow.
fn put_nested(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn put_string(tag: u32, value: &str, out: &mut Vec<u8>) {
    if !value.is_empty() {
        put_nested(tag, value.len(), out);
        out.extend_from_slice(value.as_bytes());
    }
}

/// google.rpc.Code values used in `CheckResponse.status`.
mod rpc_code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

fn header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value,
            ..Default::default()
        }),
        append_action: OVERWRITE_IF_EXISTS_OR_ADD,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
