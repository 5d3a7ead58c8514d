//! Forward-auth: the proxy asks over HTTP whether to let a request through, in its own
//! convention, and Tollgate answers in the same. One endpoint per convention, each translating
//! the proxy's request to a [`CheckInput`] and the [`Verdict`] back; everything else is the
//! [`Authorizer`]'s.
//!
//! | endpoint | proxy | where the original request is |
//! |---|---|---|
//! | `/envoy/<path>` | Envoy `ext_authz` HTTP service (`path_prefix: /envoy`) | the request's own method and path |
//! | `/nginx` | nginx `auth_request` | `X-Original-Method`, `X-Original-URI` (or ingress-nginx's `X-Original-URL`) |
//! | `/traefik` | Traefik ForwardAuth | `X-Forwarded-Method`, `-Uri`, `-Host` |

use std::borrow::Cow;
use std::net::IpAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode, http};

use super::proxies::{Peer, Proxies};
use crate::authz::caches::{FRONT_DOOR_KEY, key_field, request_line_inputs};
use crate::authz::{Authorizer, Decided};
use crate::config::TrustedProxy;
use crate::request::{CheckInput, Headers};
use crate::snapshot::{DEFAULT_DECISION_ID_HEADER, DEFAULT_PRINCIPAL_HEADER};
use crate::verdict::{Outcome, ReasonCode, client_owned_headers};

// Header names are constants: `from_static` is checked when the program is compiled, where
// the same call in a function checks the name on every answer.
/// Envoy's HTTP ext_authz removes these upstream headers when an allow names them.
const ENVOY_HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");
/// The reason code, on every deny, for proxies that pass headers but not bodies on (nginx).
const REASON_HEADER: HeaderName = HeaderName::from_static("x-tollgate-reason");
/// The deny's own status when the convention forced another (nginx: 401 or 403 only).
const STATUS_HEADER: HeaderName = HeaderName::from_static("x-tollgate-status");
const PRINCIPAL_HEADER: HeaderName = HeaderName::from_static(DEFAULT_PRINCIPAL_HEADER);
const DECISION_ID_HEADER: HeaderName = HeaderName::from_static(DEFAULT_DECISION_ID_HEADER);

/// A proxy's forward-auth convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// Envoy's `ext_authz` in HTTP mode.
    Envoy,
    /// nginx `auth_request`.
    Nginx,
    /// Traefik ForwardAuth.
    Traefik,
}

impl Convention {
    /// The convention whose endpoint `path` is.
    pub fn of_path(path: &str) -> Option<Self> {
        match path {
            "/nginx" => Some(Self::Nginx),
            "/traefik" => Some(Self::Traefik),
            _ if path == "/envoy" || path.starts_with("/envoy/") => Some(Self::Envoy),
            _ => None,
        }
    }
}

/// Why a proxy's request could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    /// The deny it stands for.
    pub reason: ReasonCode,
    /// What was wrong, for the deny body and log.
    pub message: String,
}

impl Untranslatable {
    fn malformed(message: impl Into<String>) -> Self {
        Self {
            reason: ReasonCode::MalformedRequest,
            message: message.into(),
        }
    }
}

/// Decides the proxy's request `parts` (arriving from `peer` in `convention`) and answers it.
/// A request this thread answered before with the same decision inputs is answered from the
/// verdict memo without building its [`CheckInput`] (see [`Original::key`]).
pub fn answer(
    authorizer: &Authorizer,
    proxies: &Proxies,
    convention: Convention,
    peer: &Peer,
    parts: &http::request::Parts,
) -> Response<Full<Bytes>> {
    let original = match Original::read(proxies, convention, peer, parts) {
        Ok(original) => original,
        Err(why) => {
            let refused = authorizer.refuse(why.reason, why.message);
            return respond(convention, &refused, None);
        }
    };
    let decided = authorizer.check_keyed(
        |key| original.key(proxies, key),
        &original.path,
        || {
            original
                .input(proxies, peer)
                .map_err(|why| (why.reason, why.message))
        },
    );
    respond(convention, &decided, Some(&parts.headers))
}

/// Wire → core: the original request as `convention` carries it, the certificate a trusted
/// proxy forwarded, the client address.
pub fn translate(
    proxies: &Proxies,
    convention: Convention,
    peer: &Peer,
    parts: &http::request::Parts,
) -> Result<CheckInput, Untranslatable> {
    Original::read(proxies, convention, peer, parts)?.input(proxies, peer)
}

/// The proxy's request as its convention carries it: checked, and borrowed from the request
/// (nothing copied), because a repeated request is answered from its key alone.
#[derive(Debug)]
struct Original<'a> {
    /// The proxy the connection is, with its place among the configured ones.
    proxy: Option<(usize, &'a TrustedProxy)>,
    method: &'a str,
    path: Cow<'a, str>,
    host: Cow<'a, str>,
    source_ip: IpAddr,
    headers: &'a HeaderMap,
}

impl<'a> Original<'a> {
    /// Everything that can refuse the request except the certificate's own format: the
    /// convention's headers, certificate headers from whoever may not send them, a target that
    /// is not a path, a header that is not text. Checked on every request, memo hit or not.
    fn read(
        proxies: &'a Proxies,
        convention: Convention,
        peer: &Peer,
        parts: &'a http::request::Parts,
    ) -> Result<Self, Untranslatable> {
        let headers = &parts.headers;
        let recognised = proxies.recognise_at(peer);
        let proxy = recognised.map(|(_, proxy)| proxy);
        proxies
            .refuse_untrusted(proxy, peer, headers)
            .map_err(|e| Untranslatable {
                reason: e.reason(),
                message: e.to_string(),
            })?;
        let (method, path, host): (&str, Cow<'_, str>, Cow<'_, str>) = match convention {
            Convention::Envoy => {
                let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let path = target.strip_prefix("/envoy").unwrap_or(target);
                let path = if path.is_empty() || path.starts_with('?') {
                    Cow::Owned(format!("/{path}"))
                } else {
                    Cow::Borrowed(path)
                };
                (parts.method.as_str(), path, host_of(parts)?)
            }
            Convention::Nginx => {
                let method = required(headers, &names::X_ORIGINAL_METHOD)?;
                // ingress-nginx sends X-Original-URL and passes a client's X-Original-URI
                // through: with both, which path was asked for is the client's choice. Refused.
                if headers.contains_key(&names::X_ORIGINAL_URI)
                    && headers.contains_key(&names::X_ORIGINAL_URL)
                {
                    return Err(Untranslatable::malformed(
                        "both `x-original-uri` and `x-original-url`: the proxy must send exactly \
                         one",
                    ));
                }
                match text(headers, &names::X_ORIGINAL_URI)? {
                    Some(uri) => (method, Cow::Borrowed(uri), host_of(parts)?),
                    None => {
                        // ingress-nginx: the whole URL, host included.
                        let url = required(headers, &names::X_ORIGINAL_URL)?;
                        let uri: http::Uri = url.parse().map_err(|_| {
                            Untranslatable::malformed("`x-original-url` is not a URL")
                        })?;
                        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
                        let host = match uri.authority() {
                            Some(authority) => Cow::Owned(authority.as_str().to_owned()),
                            None => host_of(parts)?,
                        };
                        (method, Cow::Owned(path), host)
                    }
                }
            }
            Convention::Traefik => (
                required(headers, &names::X_FORWARDED_METHOD)?,
                Cow::Borrowed(required(headers, &names::X_FORWARDED_URI)?),
                Cow::Borrowed(required(headers, &names::X_FORWARDED_HOST)?),
            ),
        };
        if !path.starts_with('/') {
            return Err(Untranslatable::malformed(format!(
                "the original request target `{path}` is not a path"
            )));
        }
        if let Some(message) = super::header_not_text(headers) {
            return Err(Untranslatable::malformed(message));
        }
        Ok(Self {
            proxy: recognised,
            method,
            path,
            host,
            source_ip: proxies.client_ip(proxy, peer, headers),
            headers,
        })
    }

    /// The verdict memo's key (`Caches::verdict_keyed`): the [`CheckInput`] that
    /// [`Self::input`] builds is a function of it, in the parts the pipeline reads (the
    /// proxy, whose convention turns the certificate headers into the certificate; those
    /// headers and `authorization`; the request line and client address). Other headers,
    /// such as a request id, are left out, so that a repeated call finds its verdict.
    fn key(&self, proxies: &Proxies, out: &mut Vec<u8>) {
        out.extend_from_slice(&FRONT_DOOR_KEY);
        // The proxy by its place, not its name: names need not differ, and its convention
        // turns the certificate headers into the certificate.
        match self.proxy {
            None => key_field(out, &[]),
            Some((at, _)) => key_field(out, &(at as u64).to_le_bytes()),
        }
        proxies.key_credentials(self.headers, out);
        request_line_inputs(
            self.method,
            &self.path,
            &self.host,
            Some(self.source_ip),
            out,
        );
    }

    /// The request as the pipeline reads it, with the forwarded certificate as PEM (the one
    /// refusal left: a certificate header not in its convention's format).
    fn input(&self, proxies: &Proxies, peer: &Peer) -> Result<CheckInput, Untranslatable> {
        let certificate = proxies
            .certificate(self.proxy.map(|(_, p)| p), peer, self.headers)
            .map_err(|e| Untranslatable {
                reason: e.reason(),
                message: e.to_string(),
            })?
            .unwrap_or_default();
        let mut input = CheckInput {
            method: self.method.to_owned(),
            path: self.path.clone().into_owned(),
            host: self.host.clone().into_owned(),
            headers: Headers::with_capacity_and_hasher(self.headers.len(), Default::default()),
            source_ip: None,
            certificate,
            principal: String::new(),
        };
        for (name, value) in self.headers {
            // Text, as `read` checked; a certificate header left is one the proxy vouches
            // for (`identity.source = "xfcc"` reads it).
            if let Ok(value) = std::str::from_utf8(value.as_bytes()) {
                input.insert_header(name.as_str(), value);
            }
        }
        input.set_source_ip(self.source_ip);
        Ok(input)
    }
}

/// The request's own host: `:authority` (HTTP/2) or `Host`.
fn host_of(parts: &http::request::Parts) -> Result<Cow<'_, str>, Untranslatable> {
    if let Some(authority) = parts.uri.authority() {
        return Ok(Cow::Borrowed(authority.as_str()));
    }
    Ok(Cow::Borrowed(
        text(&parts.headers, &hyper::header::HOST)?.unwrap_or_default(),
    ))
}

/// The conventions' header names, parsed once (a lookup by `&str` parses it every time).
mod names {
    use hyper::header::HeaderName;
    pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
    pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
    pub const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
    pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
    pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
    pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, Untranslatable> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Untranslatable::malformed(format!(
            "`{name}` is sent more than once"
        )));
    }
    std::str::from_utf8(value.as_bytes())
        .map(Some)
        .map_err(|_| Untranslatable::malformed(format!("`{name}` is not UTF-8")))
}

fn required<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, Untranslatable> {
    text(headers, name)?.ok_or_else(|| {
        Untranslatable::malformed(format!(
            "no `{name}`: is the proxy configured as the README's forward-auth section shows?"
        ))
    })
}

/// Core → wire. An allow is a 200 whose headers the proxy copies upstream; a deny is
/// Tollgate's status, challenge and JSON body, which Envoy and Traefik return to the client
/// as they are. nginx's `auth_request` knows only 2xx, 401 and 403 (anything else is its own
/// 500), so there any other deny is a 403 with the real status in `x-tollgate-status`.
pub fn respond(
    convention: Convention,
    decided: &Decided,
    request_headers: Option<&HeaderMap>,
) -> Response<Full<Bytes>> {
    let settings = &decided.snapshot.response;
    let verdict = &decided.verdict;
    let id = verdict.decision_id.hex();
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    put(headers, own_name(&settings.decision_id_header), id.as_str());
    match &verdict.outcome {
        Outcome::Allow => {
            if let Some(principal) = &verdict.principal {
                put(headers, own_name(&settings.principal_header), principal);
            }
            if convention == Convention::Envoy {
                let mut remove = request_headers
                    .map(|h| client_owned_headers(h.keys().map(HeaderName::as_str), settings))
                    .unwrap_or_default();
                remove.retain(|h| {
                    *h != settings.principal_header && *h != settings.decision_id_header
                });
                let name = ENVOY_HEADERS_TO_REMOVE;
                match (remove.is_empty(), settings.strip_authorization) {
                    (true, false) => {}
                    // The usual answer, without building it.
                    (true, true) => {
                        headers.insert(name, HeaderValue::from_static("authorization"));
                    }
                    (false, strip) => {
                        if strip {
                            remove.push("authorization".into());
                        }
                        put(headers, Some(name), &remove.join(","));
                    }
                }
            }
        }
        Outcome::Deny(denial) => {
            let status = denial.reason.http_status(settings.internal_error_status);
            let wire = match convention {
                Convention::Nginx if status != 401 && status != 403 => {
                    let name = STATUS_HEADER;
                    put(headers, Some(name), &status.to_string());
                    403
                }
                _ => status,
            };
            *response.status_mut() = StatusCode::from_u16(wire).unwrap_or(StatusCode::FORBIDDEN);
            let headers = response.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                REASON_HEADER,
                HeaderValue::from_static(denial.reason.as_str()),
            );
            if let Some(challenge) = denial.reason.challenge() {
                headers.insert(
                    hyper::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            *response.body_mut() =
                Full::new(Bytes::from(verdict.deny_body(settings.expose_policy_ids)));
        }
    }
    response
}

/// The header `name` from `response.*_header`: the defaults without a copy (every answer
/// carries them), another configured name parsed; `None` for one that is not a header name.
fn own_name(name: &str) -> Option<HeaderName> {
    match name {
        DEFAULT_PRINCIPAL_HEADER => Some(PRINCIPAL_HEADER),
        DEFAULT_DECISION_ID_HEADER => Some(DECISION_ID_HEADER),
        other => HeaderName::from_bytes(other.as_bytes()).ok(),
    }
}

/// Sets a header Tollgate wrote; a value that is not a valid header (a principal with a
/// control character) is left out rather than sent broken.
fn put(headers: &mut HeaderMap, name: Option<HeaderName>, value: &str) {
    if let (Some(name), Ok(value)) = (name, HeaderValue::from_str(value)) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&'static str, &str)]) -> http::request::Parts {
        let mut request = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn peer() -> Peer {
        Peer::plain("127.0.0.1:5000".parse().unwrap())
    }

    /// The deny's headers are written with `from_static` (no copy per answer), which panics on
    /// a value it does not take as it is (bytes past ASCII, control bytes): every reason code
    /// and challenge goes through `from_static` here, so such a change fails this test rather
    /// than a request. (The fixed names are constants, checked when Tollgate is compiled.)
    #[test]
    fn every_reason_and_challenge_is_taken_by_from_static() {
        for reason in ReasonCode::ALL {
            let _ = HeaderValue::from_static(reason.as_str());
            if let Some(challenge) = reason.challenge() {
                let _ = HeaderValue::from_static(challenge);
            }
        }
        let _ = HeaderValue::from_static("authorization");
    }

    #[test]
    fn each_convention_finds_the_original_request() {
        let proxies = Proxies::default();
        let envoy = translate(
            &proxies,
            Convention::Envoy,
            &peer(),
            &parts("/envoy/orders/7?x=1", &[("host", "shop.test")]),
        )
        .unwrap();
        assert_eq!(
            (
                envoy.method.as_str(),
                envoy.path.as_str(),
                envoy.host.as_str()
            ),
            ("POST", "/orders/7?x=1", "shop.test")
        );
        let bare = translate(&proxies, Convention::Envoy, &peer(), &parts("/envoy", &[])).unwrap();
        assert_eq!(bare.path, "/");
        let nginx = translate(
            &proxies,
            Convention::Nginx,
            &peer(),
            &parts(
                "/nginx",
                &[
                    ("x-original-method", "DELETE"),
                    ("x-original-url", "https://shop.test/orders/9"),
                ],
            ),
        )
        .unwrap();
        assert_eq!(
            (
                nginx.method.as_str(),
                nginx.path.as_str(),
                nginx.host.as_str()
            ),
            ("DELETE", "/orders/9", "shop.test")
        );
        let traefik = translate(
            &proxies,
            Convention::Traefik,
            &peer(),
            &parts(
                "/traefik",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "h"),
                ],
            ),
        )
        .unwrap();
        assert_eq!(traefik.path, "/a");
        assert_eq!(traefik.source_ip, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn missing_or_doubled_convention_headers_are_malformed() {
        let proxies = Proxies::default();
        let none = translate(&proxies, Convention::Nginx, &peer(), &parts("/nginx", &[]));
        assert_eq!(none.unwrap_err().reason, ReasonCode::MalformedRequest);
        let twice = translate(
            &proxies,
            Convention::Traefik,
            &peer(),
            &parts(
                "/traefik",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-method", "POST"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "h"),
                ],
            ),
        );
        assert!(twice.unwrap_err().message.contains("more than once"));
        let not_a_path = translate(
            &proxies,
            Convention::Traefik,
            &peer(),
            &parts(
                "/traefik",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "http://elsewhere/"),
                    ("x-forwarded-host", "h"),
                ],
            ),
        );
        assert!(not_a_path.is_err());
    }

    /// The embedded demo behind its trusted loopback proxy (RFC 9440 `Client-Cert`), caches on.
    struct Demo {
        authorizer: Authorizer,
        proxies: Proxies,
    }

    impl Demo {
        fn new() -> Self {
            let (config, snapshot) =
                crate::config::load(&crate::config::ConfigSource::Embedded, 1).unwrap();
            Self {
                authorizer: Authorizer::new(
                    std::sync::Arc::new(crate::snapshot::SnapshotHandle::new(snapshot)),
                    crate::authz::Caches::new(1000, 300),
                    crate::audit::AuditLog::disabled(),
                ),
                proxies: Proxies::new(config.settings.trusted_proxies.clone()),
            }
        }

        /// `GET /envoy<path>` with `creds` and `extra` headers, from `peer`: the status and
        /// `x-tollgate-reason`.
        fn ask(
            &self,
            peer: &Peer,
            path: &str,
            creds: &crate::demo::DemoCredentials,
            extra: &[(&'static str, &[u8])],
        ) -> (u16, String) {
            use base64::Engine;
            let der = <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>
                ::from_pem_slice(creds.cert_pem.as_bytes())
                .unwrap();
            let cert = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            let mut request = http::Request::get(format!("/envoy{path}"))
                .header("host", "shop.demo")
                .header("authorization", format!("Bearer {}", creds.token))
                .header("client-cert", format!(":{cert}:"));
            for (name, value) in extra {
                request = request.header(*name, HeaderValue::from_bytes(value).unwrap());
            }
            let parts = request.body(()).unwrap().into_parts().0;
            let answered = answer(
                &self.authorizer,
                &self.proxies,
                Convention::Envoy,
                peer,
                &parts,
            );
            let reason = answered
                .headers()
                .get(&REASON_HEADER)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (answered.status().as_u16(), reason)
        }
    }

    fn creds(app: &str, scopes: &[&str]) -> crate::demo::DemoCredentials {
        crate::demo::mint(&crate::demo::DemoRequest {
            app: app.into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            user: None,
            bind: false,
            lifetime: std::time::Duration::from_secs(3600),
        })
        .unwrap()
    }

    /// A repeated request is answered from the verdict memo without building its input; what
    /// it may not skip is every check of the request itself, and any decision input.
    #[test]
    fn a_remembered_verdict_answers_only_the_same_request() {
        let demo = Demo::new();
        let proxy = peer();
        let stranger = Peer::plain("192.0.2.7:5000".parse().unwrap());
        let reader = creds("orders", &["orders.read"]);
        let request_id: &[(&str, &[u8])] = &[("x-request-id", b"7")];
        for _ in 0..2 {
            assert_eq!(
                demo.ask(&proxy, "/orders/1001", &reader, &[]),
                (200, String::new())
            );
            assert_eq!(demo.ask(&proxy, "/orders/1001", &reader, request_id).0, 200);
        }
        // Each denied although the allow of the same request is remembered on this thread:
        // another caller (certificate and token),
        assert_eq!(
            demo.ask(&proxy, "/orders/1001", &creds("orders", &[]), &[]),
            (403, "policy_denied".into())
        );
        // a header that is not text,
        assert_eq!(
            demo.ask(&proxy, "/orders/1001", &reader, &[("x-note", b"\xff")]),
            (400, "malformed_request".into())
        );
        // a certificate header from a connection not trusted to send it,
        assert_eq!(
            demo.ask(&stranger, "/orders/1001", &reader, &[]),
            (401, "cert_header_untrusted".into())
        );
        // a certificate header in a second convention,
        let xfcc: &[(&str, &[u8])] = &[("x-forwarded-client-cert", b"x")];
        assert_eq!(
            demo.ask(&proxy, "/orders/1001", &reader, xfcc),
            (401, "cert_header_untrusted".into())
        );
        // another route.
        assert_eq!(demo.ask(&proxy, "/admin/keys/rotate", &reader, &[]).0, 403);
    }

    /// The memo key of a forward-auth request to `path` from `peer` with `headers`.
    fn key_of(
        proxies: &Proxies,
        peer: &Peer,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Vec<u8> {
        let mut request = http::Request::get(format!("/envoy{path}")).header("host", "shop.demo");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let parts = request.body(()).unwrap().into_parts().0;
        let original = Original::read(proxies, Convention::Envoy, peer, &parts).unwrap();
        let mut key = Vec::new();
        original.key(proxies, &mut key);
        key
    }

    /// Two requests share a key only when building their inputs gives the same decision
    /// inputs: what decides nothing (a request id) is left out, and everything else is in.
    #[test]
    fn the_memo_key_holds_every_decision_input() {
        let proxies = crate::http::proxies::testing::edge();
        let proxy = peer();
        let stranger = Peer::plain("192.0.2.7:5000".parse().unwrap());
        let base = [
            ("authorization", "Bearer a"),
            ("client-cert", ":AAAA:"),
            ("x-forwarded-for", "10.0.0.1"),
        ];
        let key = key_of(&proxies, &proxy, "/orders/1", &base);
        let mut with_id = base.to_vec();
        with_id.push(("x-request-id", "42"));
        assert_eq!(key_of(&proxies, &proxy, "/orders/1", &with_id), key);
        assert_eq!(key_of(&proxies, &proxy, "/orders/1?page=2", &base), key);
        for (what, other) in [
            (
                "token",
                key_of(
                    &proxies,
                    &proxy,
                    "/orders/1",
                    &[("authorization", "Bearer b"), base[1], base[2]],
                ),
            ),
            (
                "certificate",
                key_of(
                    &proxies,
                    &proxy,
                    "/orders/1",
                    &[base[0], ("client-cert", ":AAAB:"), base[2]],
                ),
            ),
            (
                "client address",
                key_of(
                    &proxies,
                    &proxy,
                    "/orders/1",
                    &[base[0], base[1], ("x-forwarded-for", "10.0.0.2")],
                ),
            ),
            ("path", key_of(&proxies, &proxy, "/orders/2", &base)),
            (
                "no proxy",
                key_of(&proxies, &stranger, "/orders/1", &[base[0]]),
            ),
        ] {
            assert_ne!(other, key, "{what}");
        }
    }

    /// Replicas of one trusted proxy forwarding one client's request share its key, so the
    /// caller's verdict is remembered once, not once per replica; the address each connection
    /// has decides only when the forwarded one is not an address.
    #[test]
    fn replicas_of_a_proxy_share_a_callers_key() {
        let proxies = crate::http::proxies::testing::edge();
        let first = Peer::plain("127.0.0.1:5000".parse().unwrap());
        let second = Peer::plain("127.0.0.2:5000".parse().unwrap());
        let forwarded = |client: &'static str| {
            [
                ("authorization", "Bearer a"),
                ("client-cert", ":AAAA:"),
                ("x-forwarded-for", client),
            ]
        };
        let client = forwarded("203.0.113.7");
        assert_eq!(
            key_of(&proxies, &first, "/orders/1", &client),
            key_of(&proxies, &second, "/orders/1", &client)
        );
        let junk = forwarded("unknown");
        assert_ne!(
            key_of(&proxies, &first, "/orders/1", &junk),
            key_of(&proxies, &second, "/orders/1", &junk)
        );
    }

    /// Two proxies may share a name (it is for logs) but not a key: their conventions read the
    /// same header bytes as different certificates.
    #[test]
    fn proxies_with_one_name_do_not_share_keys() {
        let proxies = crate::http::proxies::testing::namesakes();
        let headers = [
            ("client-cert", ":AAAA:"),
            ("x-forwarded-for", "203.0.113.7"),
        ];
        let first = Peer::plain("10.0.0.5:5000".parse().unwrap());
        let second = Peer::plain("10.0.1.5:5000".parse().unwrap());
        assert_ne!(
            key_of(&proxies, &first, "/orders/1", &headers),
            key_of(&proxies, &second, "/orders/1", &headers)
        );
    }

    /// The memo's key decides whether the input is built at all.
    #[test]
    fn a_keyed_check_builds_its_input_only_on_a_miss() {
        let demo = Demo::new();
        let input = creds("orders", &["orders.read"]).check_input("GET", "/orders/1001");
        let builds = std::cell::Cell::new(0);
        let check = |key: &[u8]| {
            demo.authorizer.check_keyed(
                |out| {
                    out.extend_from_slice(&FRONT_DOOR_KEY);
                    out.extend_from_slice(key);
                },
                "/orders/1001",
                || {
                    builds.set(builds.get() + 1);
                    Ok(input.clone())
                },
            )
        };
        assert!(check(b"a").verdict.is_allowed());
        assert!(check(b"a").verdict.is_allowed());
        assert_eq!(builds.get(), 1);
        assert!(check(b"b").verdict.is_allowed());
        assert_eq!(builds.get(), 2);
    }

    #[test]
    fn endpoints() {
        assert_eq!(Convention::of_path("/envoy/x"), Some(Convention::Envoy));
        assert_eq!(Convention::of_path("/envoyx"), None);
        assert_eq!(Convention::of_path("/nginx"), Some(Convention::Nginx));
        assert_eq!(Convention::of_path("/nginx/x"), None);
    }
}
