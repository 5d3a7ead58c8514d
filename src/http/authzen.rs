//! The OpenID AuthZEN Authorization API 1.0 over HTTP: `POST /access/v1/evaluation`,
//! `POST /access/v1/evaluations` and `GET /.well-known/authzen-configuration`. This module is
//! translation only: JSON ↔ [`Evaluation`]s, the batch semantics, statuses and `X-Request-ID`.
//! The PEP's authentication, the "may this PEP ask" policy, the decisions, caches and records
//! are the [`Authorizer`]'s.
//!
//! Errors follow the specification: 400 for a request that is not JSON of the right shape
//! (content type, syntax, a missing or mistyped `subject`/`action`/`resource` field), 401 when
//! the PEP did not authenticate, 403 when no policy lets it ask; a policy deny is a 200 with
//! `"decision": false`. Error bodies are the message as text.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::proxies::{CertHeaderError, Peer, Proxies};
use crate::authz::caches::{key_field, request_line_inputs};
use crate::authz::{Authorizer, Pep};
use crate::config::TrustedProxy;
use crate::mapping::authzen::{AuthZenMapping, EntityRef, Evaluation};
use crate::request::{CheckInput, Headers};
use crate::verdict::{DecisionId, FailureClass, Outcome, ReasonCode, Verdict};

/// The single evaluation endpoint.
pub const EVALUATION: &str = "/access/v1/evaluation";
/// The batch endpoint.
pub const EVALUATIONS: &str = "/access/v1/evaluations";
/// The metadata document.
pub const METADATA: &str = "/.well-known/authzen-configuration";
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most evaluations in one batch.
pub const MAX_EVALUATIONS: usize = 1000;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const DECISION_ID: HeaderName = HeaderName::from_static("x-tollgate-decision-id");

/// Whether `path` is one of the API's endpoints.
pub fn serves(path: &str) -> bool {
    matches!(path, EVALUATION | EVALUATIONS | METADATA)
}

#[derive(Deserialize)]
struct WireEntity<'a> {
    #[serde(rename = "type", borrow)]
    type_name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    properties: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireAction<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

/// One evaluation as sent: any part may be absent in a batch item (the defaults fill it).
#[derive(Deserialize)]
struct WireEvaluation<'a> {
    #[serde(default, borrow)]
    subject: Option<WireEntity<'a>>,
    #[serde(default, borrow)]
    action: Option<WireAction<'a>>,
    #[serde(default, borrow)]
    resource: Option<WireEntity<'a>>,
    #[serde(default, borrow)]
    context: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct WireOptions<'a> {
    #[serde(default, borrow)]
    evaluations_semantic: Option<std::borrow::Cow<'a, str>>,
}

/// A request: one evaluation, or a batch's defaults (the same fields; not `flatten`ed, which
/// cannot carry raw JSON values) and its items.
#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default, borrow)]
    subject: Option<WireEntity<'a>>,
    #[serde(default, borrow)]
    action: Option<WireAction<'a>>,
    #[serde(default, borrow)]
    resource: Option<WireEntity<'a>>,
    #[serde(default, borrow)]
    context: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "at_most_evaluations")]
    evaluations: Option<Vec<WireEvaluation<'a>>>,
    #[serde(default, borrow)]
    options: Option<WireOptions<'a>>,
}

/// `evaluations`, refused while parsing once it passes [`MAX_EVALUATIONS`]: a 1 MiB body of
/// empty items would otherwise be parsed whole (hundreds of thousands of them) first.
fn at_most_evaluations<'de, D>(
    deserializer: D,
) -> Result<Option<Vec<WireEvaluation<'de>>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct AtMost;
    impl<'de> serde::de::Visitor<'de> for AtMost {
        type Value = Vec<WireEvaluation<'de>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_EVALUATIONS} evaluations")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() == MAX_EVALUATIONS {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_EVALUATIONS} evaluations in one request"
                    )));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    deserializer.deserialize_seq(AtMost).map(Some)
}

/// `options.evaluations_semantic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// A refusal of the whole call: status and message.
#[derive(Debug)]
pub struct Refused {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong, for the text body.
    pub message: String,
    /// `WWW-Authenticate`, for a 401.
    pub challenge: Option<&'static str>,
}

impl Refused {
    fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            challenge: None,
        }
    }
}

/// Answers one AuthZEN request from `peer`.
pub async fn answer(
    authorizer: &Authorizer,
    proxies: &Proxies,
    peer: &Peer,
    request: Request<Incoming>,
    deadline: Duration,
) -> Response<Full<Bytes>> {
    let request_id = request.headers().get(&REQUEST_ID).cloned();
    let mut response = match respond(authorizer, proxies, peer, request, deadline).await {
        Ok(response) => response,
        Err(refused) => {
            let mut response = Response::new(Full::new(Bytes::from(refused.message + "\n")));
            *response.status_mut() = refused.status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            if let Some(challenge) = refused.challenge {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            response
        }
    };
    if let Some(id) = request_id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

async fn respond(
    authorizer: &Authorizer,
    proxies: &Proxies,
    peer: &Peer,
    request: Request<Incoming>,
    deadline: Duration,
) -> Result<Response<Full<Bytes>>, Refused> {
    let snapshot = authorizer.snapshots().for_request();
    let Some(mapping) = snapshot.authzen.as_deref() else {
        return Err(Refused {
            status: StatusCode::NOT_FOUND,
            message: "the AuthZEN API is off: add an `[authzen]` table to the config \
                      (README \"AuthZEN API\")"
                .into(),
            challenge: None,
        });
    };
    if request.uri().path() == METADATA {
        if request.method() != Method::GET {
            return Err(method_not_allowed("GET"));
        }
        return Ok(json(
            StatusCode::OK,
            Bytes::from(metadata(mapping, &request, peer)),
        ));
    }
    // The call takes its own snapshot once its PEP is known.
    drop(snapshot);
    if request.method() != Method::POST {
        return Err(method_not_allowed("POST"));
    }
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Refused::bad(
            "the body must be `Content-Type: application/json`",
        ));
    }
    let (parts, body) = request.into_parts();
    let proxy = proxies.recognise_at(peer);
    if let Err(error) = proxies.refuse_untrusted(proxy.map(|(_, p)| p), peer, &parts.headers) {
        // Refused and recorded like at the forward-auth doors (`cert_header_untrusted`, 401).
        let refused = authorizer.refuse(error.reason(), error.to_string());
        return Err(refusal(&refused.verdict));
    }
    if let Some(message) = super::header_not_text(&parts.headers) {
        let refused = authorizer.refuse(ReasonCode::MalformedRequest, message);
        return Err(refusal(&refused.verdict));
    }
    let mut pep = match authorizer.authzen_caller_keyed(
        |key| pep_key(proxies, proxy, peer, &parts, key),
        || pep_input(proxies, peer, &parts).map_err(|e| (e.reason(), e.to_string())),
    ) {
        None => return Err(Refused::bad("the AuthZEN API was turned off by a reload")),
        Some(Err(refused)) => return Err(refusal(&refused.verdict)),
        Some(Ok(pep)) => pep,
    };
    let body = match read_body(body, deadline).await {
        Ok(body) => body,
        Err(BodyError::Late) => {
            return Err(Refused {
                status: StatusCode::REQUEST_TIMEOUT,
                message: format!("the body did not arrive within {} ms", deadline.as_millis()),
                challenge: None,
            });
        }
        Err(BodyError::TooLarge) => {
            return Err(Refused {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                challenge: None,
            });
        }
        Err(BodyError::Broken(error)) => {
            return Err(Refused::bad(format!("the body could not be read: {error}")));
        }
    };
    let batch = parts.uri.path() == EVALUATIONS;
    let (answer, decision_id) = answer_body(authorizer, &mut pep, batch, &body, deadline)?;
    let mut response = json(StatusCode::OK, answer);
    if let Some(id) = decision_id
        && let Ok(id) = HeaderValue::from_str(id.hex().as_str())
    {
        response.headers_mut().insert(DECISION_ID, id);
    }
    Ok(response)
}

/// Why a call's body was not read.
#[derive(Debug)]
enum BodyError {
    /// It had not all arrived within the deadline.
    Late,
    /// It is longer than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The connection failed while it arrived.
    Broken(Box<dyn std::error::Error + Send + Sync>),
}

/// The whole body, at most [`MAX_BODY_BYTES`], within `deadline`. A body already received
/// (the usual case: a small JSON document that came with the headers) is taken at once, as
/// the one chunk it came in; the deadline's timer is armed only for one still arriving.
async fn read_body(body: Incoming, deadline: Duration) -> Result<Bytes, BodyError> {
    let mut whole = std::pin::pin!(whole_body(body, MAX_BODY_BYTES));
    let ready = {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        whole.as_mut().poll(&mut context)
    };
    if let std::task::Poll::Ready(body) = ready {
        return body;
    }
    tokio::time::timeout(deadline, whole)
        .await
        .unwrap_or(Err(BodyError::Late))
}

/// `body`'s data, refused once it is longer than `limit`. A body of one chunk is that chunk,
/// without a copy; trailers are ignored.
async fn whole_body<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut first = Bytes::new();
    let mut rest = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Broken(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(BodyError::TooLarge);
        }
        if data.is_empty() {
            // Nothing to keep (HTTP/2 often ends a body with an empty frame).
        } else if first.is_empty() && rest.is_empty() {
            first = data;
        } else {
            if rest.is_empty() {
                // Room for what the body says is still to come, within the limit.
                let more = usize::try_from(body.size_hint().lower()).unwrap_or(limit);
                rest.reserve(len.saturating_add(more).min(limit));
                rest.extend_from_slice(&first);
                first = Bytes::new();
            }
            rest.extend_from_slice(&data);
        }
        if body.is_end_stream() {
            break;
        }
    }
    Ok(if rest.is_empty() {
        first
    } else {
        // Exactly the body's size: a grown buffer's spare room is not kept with it.
        Bytes::from(rest.into_boxed_slice())
    })
}

/// The answer to `pep`'s call with `body` ([`decide_body`]'s), or the one this thread gave
/// the same PEP for the same call while it is still good ([`Authorizer::authzen_answer`]),
/// and the single evaluation's decision id. The door's whole decision, after authentication.
pub fn answer_body(
    authorizer: &Authorizer,
    pep: &mut Pep,
    batch_endpoint: bool,
    body: &[u8],
    budget: Duration,
) -> Result<(Bytes, Option<DecisionId>), Refused> {
    let decide = |pep: &mut Pep| {
        decide_body(authorizer, pep, batch_endpoint, body, budget).map(|a| (a.body, a.decision_id))
    };
    if body.len() > crate::memo::MAX_KEPT {
        // Too large to be remembered: not copied into a memo key either.
        let (answer, id) = decide(pep)?;
        return Ok((Bytes::from(answer), id));
    }
    let endpoint: &[u8] = if batch_endpoint { b"batch" } else { b"single" };
    let (answer, id) = authorizer.authzen_answer(pep, &[endpoint, body], decide)?;
    Ok((answer, id))
}

/// A decided call: the JSON body, and the decision id of a single evaluation.
#[derive(Debug)]
pub struct Answered {
    /// The response body.
    pub body: String,
    /// The single evaluation's decision id (a batch has one per item, in the records).
    pub decision_id: Option<DecisionId>,
}

/// Decides the request `body` for `pep`: one evaluation, or a batch when `batch_endpoint` and
/// the body has `evaluations`, whose items past `budget` (`server.request_timeout_ms`) are not
/// decided but fail closed, so one batch cannot hold a worker. The part of a call after
/// authentication and transport, kept apart so it can be measured in-process
/// (`benches/check.rs`).
pub fn decide_body(
    authorizer: &Authorizer,
    pep: &mut Pep,
    batch_endpoint: bool,
    body: &[u8],
    budget: Duration,
) -> Result<Answered, Refused> {
    let started = crate::clock::started();
    let request: WireRequest<'_> = serde_json::from_slice(body)
        .map_err(|e| Refused::bad(format!("not an AuthZEN request: {e}")))?;
    let WireRequest {
        subject,
        action,
        resource,
        context,
        evaluations,
        options,
    } = request;
    let defaults = WireEvaluation {
        subject,
        action,
        resource,
        context,
    };
    let defaults = Parts::of(pep.mapping(), &defaults).map_err(Refused::bad)?;
    let batch = batch_endpoint && evaluations.as_ref().is_some_and(|items| !items.is_empty());
    if !batch {
        let evaluation = Parts::default().complete(&defaults).map_err(Refused::bad)?;
        let verdict = authorizer.evaluate(pep, &evaluation);
        if verdict.reason() == Some(ReasonCode::PepForbidden) {
            return Err(refusal(&verdict));
        }
        let mut body = String::new();
        push_decision(&mut body, &verdict);
        return Ok(Answered {
            body,
            decision_id: Some(verdict.decision_id),
        });
    }
    let semantic = match options
        .as_ref()
        .and_then(|o| o.evaluations_semantic.as_deref())
    {
        None | Some("execute_all") => Semantic::ExecuteAll,
        Some("deny_on_first_deny") => Semantic::DenyOnFirstDeny,
        Some("permit_on_first_permit") => Semantic::PermitOnFirstPermit,
        Some(other) => {
            return Err(Refused::bad(format!(
                "`options.evaluations_semantic` `{other}` is not one of `execute_all`, \
                 `deny_on_first_deny`, `permit_on_first_permit`"
            )));
        }
    };
    let items = evaluations.as_deref().unwrap_or_default();
    if items.len() > MAX_EVALUATIONS {
        return Err(Refused::bad(format!(
            "{} evaluations in one request; at most {MAX_EVALUATIONS}",
            items.len()
        )));
    }
    if items.len() > crate::authz::MAX_REPLAYED {
        // Too many to remember: do not gather them.
        pep.not_reusable();
    }
    let mut out = String::with_capacity(24 + items.len() * 20);
    out.push_str("{\"evaluations\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if started.elapsed() > budget {
            pep.not_reusable();
            let message = format!(
                "not decided within {} ms (server.request_timeout_ms)",
                budget.as_millis()
            );
            out.push_str(&error_item(503, &message));
            continue;
        }
        let evaluation = Parts::of(pep.mapping(), item).and_then(|parts| parts.complete(&defaults));
        let allowed = match evaluation {
            Ok(evaluation) => {
                let verdict = authorizer.evaluate(pep, &evaluation);
                push_decision(&mut out, &verdict);
                verdict.is_allowed()
            }
            Err(message) => {
                out.push_str(&error_item(400, &message));
                false
            }
        };
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allowed,
            Semantic::PermitOnFirstPermit => allowed,
        };
        if stop {
            break;
        }
    }
    out.push_str("]}");
    Ok(Answered {
        body: out,
        decision_id: None,
    })
}

/// One evaluation's parts in Cedar's terms, each possibly absent (a batch's defaults, or an
/// item's overrides). Converted once: a batch's items share their defaults by reference count.
#[derive(Default)]
struct Parts {
    subject: Option<EntityRef>,
    action: Option<Arc<str>>,
    resource: Option<EntityRef>,
    context: Option<Arc<str>>,
}

impl Parts {
    fn of(mapping: &AuthZenMapping, wire: &WireEvaluation<'_>) -> Result<Self, String> {
        let entity = |wire: &Option<WireEntity<'_>>, what: &str| -> Result<_, String> {
            let Some(wire) = wire else { return Ok(None) };
            Ok(Some(EntityRef {
                type_name: mapping.cedar_type(&wire.type_name),
                id: Arc::from(&*wire.id),
                properties: object(wire.properties, what)?,
            }))
        };
        Ok(Self {
            subject: entity(&wire.subject, "subject.properties")?,
            action: wire.action.as_ref().map(|a| Arc::from(&*a.name)),
            resource: entity(&wire.resource, "resource.properties")?,
            context: object(wire.context, "context")?,
        })
    }

    /// The evaluation these parts ask for, absent parts taken from `defaults` (each whole: an
    /// item's `resource` replaces the default's, properties and all).
    fn complete(self, defaults: &Parts) -> Result<Evaluation, String> {
        let missing = |what: &str| format!("no `{what}`, in the evaluation or as a default");
        Ok(Evaluation {
            subject: self
                .subject
                .or_else(|| defaults.subject.clone())
                .ok_or_else(|| missing("subject"))?,
            action: self
                .action
                .or_else(|| defaults.action.clone())
                .ok_or_else(|| missing("action"))?,
            resource: self
                .resource
                .or_else(|| defaults.resource.clone())
                .ok_or_else(|| missing("resource"))?,
            context: self.context.or_else(|| defaults.context.clone()),
        })
    }
}

/// A raw JSON value that must be an object, as shared text.
fn object(raw: Option<&RawValue>, what: &str) -> Result<Option<Arc<str>>, String> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get().trim_start().starts_with('{') => Ok(Some(Arc::from(raw.get()))),
        Some(_) => Err(format!("`{what}` must be a JSON object")),
    }
}

/// Appends a Decision object: bare `{"decision":b}` for a policy decision (PEPs may reject a
/// permit with a context they do not understand), with an `error` context when the evaluation
/// could not be decided as asked.
fn push_decision(out: &mut String, verdict: &Verdict) {
    match &verdict.outcome {
        Outcome::Allow => out.push_str("{\"decision\":true}"),
        Outcome::Deny(denial) => match denial.reason {
            ReasonCode::PolicyDenied | ReasonCode::OutsideBaseline => {
                out.push_str("{\"decision\":false}");
            }
            ReasonCode::PepForbidden => out.push_str(&error_item(403, &denial.message)),
            ReasonCode::MalformedRequest => out.push_str(&error_item(400, &denial.message)),
            other => out.push_str(&error_item(other.http_status(500), &denial.message)),
        },
    }
}

fn error_item(status: u16, message: &str) -> String {
    serde_json::json!({
        "decision": false,
        "context": { "error": { "status": status, "message": message } },
    })
    .to_string()
}

/// The whole call refused for the PEP's own sake: 401 with the challenge, 403, or the
/// failure's status.
fn refusal(verdict: &Verdict) -> Refused {
    let (reason, message) = match &verdict.outcome {
        Outcome::Deny(denial) => (denial.reason, denial.message.clone()),
        Outcome::Allow => (ReasonCode::InternalError, String::new()),
    };
    let status = match reason.class() {
        FailureClass::Unauthenticated | FailureClass::BadCertificate | FailureClass::BadToken => {
            StatusCode::UNAUTHORIZED
        }
        FailureClass::Forbidden => StatusCode::FORBIDDEN,
        FailureClass::Malformed => StatusCode::BAD_REQUEST,
        FailureClass::Throttled => StatusCode::TOO_MANY_REQUESTS,
        FailureClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Refused {
        status,
        message: format!("{}: {message}", reason.as_str()),
        challenge: reason.challenge(),
    }
}

fn method_not_allowed(allow: &'static str) -> Refused {
    Refused {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("use {allow}"),
        challenge: None,
    }
}

/// What authenticates the PEP of a call (see `Authorizer::authzen_caller_keyed`): the proxy
/// it came through by its place (`at`), or its own TLS certificate without one; its
/// credential headers; the request line and client address [`pep_input`] gives its context.
fn pep_key(
    proxies: &Proxies,
    proxy: Option<(usize, &TrustedProxy)>,
    peer: &Peer,
    parts: &hyper::http::request::Parts,
    out: &mut Vec<u8>,
) {
    match (proxy, &peer.certificate) {
        (Some((at, _)), _) => key_field(out, &(at as u64).to_le_bytes()),
        (None, None) => key_field(out, &[0]),
        (None, Some(der)) => {
            key_field(out, &[1]);
            key_field(out, der);
        }
    }
    proxies.key_credentials(&parts.headers, out);
    let host = pep_host(parts);
    let source_ip = proxies.client_ip(proxy.map(|(_, p)| p), peer, &parts.headers);
    // The whole path: the context reads it as it is.
    key_field(out, parts.uri.path().as_bytes());
    request_line_inputs(parts.method.as_str(), "", host, Some(source_ip), out);
}

/// The host of a call: `:authority`, or a textual `Host`; borrowed, as every call keys on it.
fn host_of<'a>(uri: &'a hyper::Uri, headers: &'a hyper::HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// [`host_of`] a PEP's call, empty when it names none.
fn pep_host(parts: &hyper::http::request::Parts) -> &str {
    host_of(&parts.uri, &parts.headers).unwrap_or_default()
}

/// The PEP's call as a request for the identity layer: its bearer token, and its certificate
/// (its own on an mTLS connection, or forwarded by a trusted proxy).
fn pep_input(
    proxies: &Proxies,
    peer: &Peer,
    parts: &hyper::http::request::Parts,
) -> Result<CheckInput, CertHeaderError> {
    let proxy = proxies.recognise(peer);
    let forwarded = proxies.certificate(proxy, peer, &parts.headers)?;
    let certificate = match (forwarded, &peer.certificate) {
        (Some(pem), _) => pem,
        (None, Some(der)) if proxy.is_none() => super::proxies::pem(der),
        (None, _) => String::new(),
    };
    let mut input = CheckInput {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        host: pep_host(parts).to_owned(),
        headers: Headers::with_capacity_and_hasher(parts.headers.len(), Default::default()),
        source_ip: None,
        certificate,
        principal: String::new(),
    };
    for (name, value) in &parts.headers {
        if proxies.is_certificate_header(name.as_str()) {
            continue;
        }
        if let Ok(value) = std::str::from_utf8(value.as_bytes()) {
            input.insert_header(name.as_str(), value);
        }
    }
    input.set_source_ip(proxies.client_ip(proxy, peer, &parts.headers));
    Ok(input)
}

/// The metadata document: the PDP's identifier (`authzen.base_url`, or this request's own
/// scheme and host) and its two endpoints.
fn metadata(mapping: &AuthZenMapping, request: &Request<Incoming>, peer: &Peer) -> String {
    let base = match &mapping.base_url {
        Some(base) => base.clone(),
        None => {
            let scheme = if peer.names.is_empty() && peer.certificate.is_none() {
                "http"
            } else {
                "https"
            };
            let host = host_of(request.uri(), request.headers()).unwrap_or("localhost");
            format!("{scheme}://{host}")
        }
    };
    serde_json::json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}{EVALUATION}"),
        "access_evaluations_endpoint": format!("{base}{EVALUATIONS}"),
    })
    .to_string()
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A 503 for a call shed at the process's limit (its `X-Request-ID` echoed).
pub fn overloaded(request_id: Option<&HeaderValue>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"overloaded: too many requests in flight (server.max_concurrent_requests)\n",
    )));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    if let Some(id) = request_id {
        response.headers_mut().insert(REQUEST_ID, id.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> {
        let frames: Vec<Result<_, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(hyper::body::Frame::data(Bytes::from_static(p))))
            .collect();
        http_body_util::StreamBody::new(tokio_stream::iter(frames))
    }

    fn whole(
        body: impl hyper::body::Body<Data = Bytes, Error = std::convert::Infallible>,
        limit: usize,
    ) -> Result<Bytes, BodyError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(whole_body(body, limit))
    }

    /// A body of chunks that says it has ended once the last one is taken, as a body with a
    /// content length does.
    struct Ending(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for Ending {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(|c| Ok(hyper::body::Frame::data(c))))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    /// Review findings: an empty chunk (HTTP/2 often ends a body with an empty DATA frame)
    /// does not make a one-chunk body be copied, and a body in several chunks that says when
    /// it has ended is read whole.
    #[test]
    fn empty_chunks_are_skipped_and_an_ending_body_is_read_whole() {
        let one = Bytes::from_static(b"{\"subject\":{}}");
        for parts in [
            vec![one.clone(), Bytes::new()],
            vec![Bytes::new(), one.clone()],
            vec![Bytes::new(), one.clone(), Bytes::new()],
        ] {
            let read = whole(Ending(parts.clone().into()), 64).unwrap();
            assert_eq!(read, one);
            assert_eq!(
                read.as_ptr(),
                one.as_ptr(),
                "{parts:?}: the one chunk, not a copy"
            );
        }
        let parts: Vec<Bytes> = [&b"{\"a\""[..], b":", b"1}"].map(Bytes::from_static).into();
        assert_eq!(whole(Ending(parts.into()), 64).unwrap(), "{\"a\":1}");
    }

    /// A body is read whole however it is cut, the one chunk of a body that says it has ended
    /// is taken as it is, and the limit counts every chunk.
    #[test]
    fn a_body_is_read_whole_and_bounded_however_it_is_cut() {
        assert_eq!(whole(chunks(&[]), 8).unwrap(), "");
        assert_eq!(
            whole(chunks(&[b"{\"a\"", b"", b":1}"]), 8).unwrap(),
            "{\"a\":1}"
        );
        assert_eq!(whole(chunks(&[b"", b"{}"]), 8).unwrap(), "{}");
        assert_eq!(whole(chunks(&[b"12345678"]), 8).unwrap(), "12345678");
        assert!(matches!(
            whole(chunks(&[b"1234", b"56789"]), 8),
            Err(BodyError::TooLarge)
        ));
        assert!(matches!(
            whole(chunks(&[b"123456789"]), 8),
            Err(BodyError::TooLarge)
        ));
        let one = Bytes::from_static(b"{\"subject\":{}}");
        let read = whole(Full::new(one.clone()), 64).unwrap();
        assert_eq!(read, one);
        assert_eq!(read.as_ptr(), one.as_ptr(), "the one chunk, not a copy");
    }

    fn parts(path: &str, headers: &[(&'static str, &str)]) -> hyper::http::request::Parts {
        let mut request = Request::post(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn key(proxies: &Proxies, peer: &Peer, parts: &hyper::http::request::Parts) -> Vec<u8> {
        let mut out = Vec::new();
        pep_key(proxies, proxies.recognise_at(peer), peer, parts, &mut out);
        out
    }

    /// Two calls share a PEP key only when their inputs authenticate the same PEP with the
    /// same context: a request id or the body do not count, the rest does.
    #[test]
    fn the_pep_key_holds_what_authenticates_it() {
        let proxies = crate::http::proxies::testing::edge();
        let proxy = Peer::plain("127.0.0.1:5000".parse().unwrap());
        let base = [
            ("host", "pdp.demo"),
            ("authorization", "Bearer a"),
            ("client-cert", ":AAAA:"),
            ("x-forwarded-for", "10.0.0.1"),
        ];
        let with = |i: usize, header: (&'static str, &'static str)| {
            let mut headers = base.to_vec();
            headers[i] = header;
            headers
        };
        let k = key(&proxies, &proxy, &parts(EVALUATION, &base));
        let mut more = base.to_vec();
        more.extend([("x-request-id", "7"), ("content-type", "application/json")]);
        assert_eq!(key(&proxies, &proxy, &parts(EVALUATION, &more)), k);
        for (what, other) in [
            ("host", with(0, ("host", "other"))),
            ("token", with(1, ("authorization", "Bearer b"))),
            ("certificate", with(2, ("client-cert", ":AAAB:"))),
            ("client address", with(3, ("x-forwarded-for", "10.0.0.2"))),
        ] {
            assert_ne!(
                key(&proxies, &proxy, &parts(EVALUATION, &other)),
                k,
                "{what}"
            );
        }
        assert_ne!(key(&proxies, &proxy, &parts(EVALUATIONS, &base)), k, "path");
        // Without a proxy, the PEP's own TLS certificate authenticates it.
        let direct =
            |der: &[u8]| Peer::with_certificate("192.0.2.7:5000".parse().unwrap(), der.to_vec());
        let headers = [("host", "pdp.demo")];
        let a = key(&proxies, &direct(b"a"), &parts(EVALUATION, &headers));
        assert_ne!(
            key(&proxies, &direct(b"b"), &parts(EVALUATION, &headers)),
            a
        );
        let plain = Peer::plain("192.0.2.7:5000".parse().unwrap());
        assert_ne!(key(&proxies, &plain, &parts(EVALUATION, &headers)), a);
    }

    /// Proxies are told apart by their place, not their name (their conventions read the
    /// same header as different certificates), and a PEP without a proxy by its address.
    #[test]
    fn the_pep_key_tells_proxies_and_addresses_apart() {
        let proxies = crate::http::proxies::testing::namesakes();
        let headers = [
            ("client-cert", ":AAAA:"),
            ("x-forwarded-for", "203.0.113.7"),
        ];
        let from = |addr: &str| Peer::plain(addr.parse().unwrap());
        assert_ne!(
            key(
                &proxies,
                &from("10.0.0.5:5000"),
                &parts(EVALUATION, &headers)
            ),
            key(
                &proxies,
                &from("10.0.1.5:5000"),
                &parts(EVALUATION, &headers)
            )
        );
        let direct = [("host", "pdp.demo")];
        assert_ne!(
            key(
                &proxies,
                &from("192.0.2.7:5000"),
                &parts(EVALUATION, &direct)
            ),
            key(
                &proxies,
                &from("192.0.2.8:5000"),
                &parts(EVALUATION, &direct)
            )
        );
    }

    /// Replicas of one trusted proxy forwarding one PEP's calls share its key: the PEP is
    /// authenticated once per worker, not once per replica.
    #[test]
    fn replicas_of_a_proxy_share_a_peps_key() {
        let proxies = crate::http::proxies::testing::edge();
        let headers = [
            ("host", "pdp.demo"),
            ("client-cert", ":AAAA:"),
            ("x-forwarded-for", "203.0.113.7"),
        ];
        let from = |addr: &str| Peer::plain(addr.parse().unwrap());
        assert_eq!(
            key(
                &proxies,
                &from("127.0.0.1:5000"),
                &parts(EVALUATION, &headers)
            ),
            key(
                &proxies,
                &from("127.0.0.2:5000"),
                &parts(EVALUATION, &headers)
            )
        );
    }

    /// A PEP authenticated once is remembered for its key; a refusal is not.
    #[test]
    fn a_pep_is_authenticated_once_per_key() {
        let (_, snapshot) = crate::config::load(&crate::config::ConfigSource::Embedded, 1).unwrap();
        let authorizer = Authorizer::new(
            Arc::new(crate::snapshot::SnapshotHandle::new(snapshot)),
            crate::authz::Caches::new(1000, 300),
            crate::audit::AuditLog::disabled(),
        );
        let creds = crate::demo::mint(&crate::demo::DemoRequest {
            app: "web-frontend".into(),
            scopes: Vec::new(),
            user: None,
            bind: false,
            lifetime: Duration::from_secs(3600),
        })
        .unwrap();
        let input = creds.check_input("POST", EVALUATION);
        let builds = std::cell::Cell::new(0);
        let caller = |key: &'static [u8], refuse: bool| {
            authorizer
                .authzen_caller_keyed(
                    |out| out.extend_from_slice(key),
                    || {
                        builds.set(builds.get() + 1);
                        if refuse {
                            Err((ReasonCode::CertMalformed, "no".into()))
                        } else {
                            Ok(input.clone())
                        }
                    },
                )
                .unwrap()
                .map(|pep| pep.principal().to_owned())
                .map_err(Box::new)
        };
        let principal = caller(b"a", false).unwrap();
        assert_eq!(principal, "spiffe://demo.tollgate.dev/web-frontend");
        assert!(caller(b"a", false).is_ok());
        assert_eq!(builds.get(), 1);
        assert!(caller(b"b", false).is_ok());
        assert_eq!(builds.get(), 2);
        for _ in 0..2 {
            let refused = caller(b"c", true).unwrap_err();
            assert_eq!(refused.verdict.reason(), Some(ReasonCode::CertMalformed));
        }
        assert_eq!(builds.get(), 4);
    }
}
