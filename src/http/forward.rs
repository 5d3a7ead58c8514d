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

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode, http};

use super::proxies::{Peer, Proxies};
use crate::authz::{Authorizer, Decided};
use crate::request::{CheckInput, Headers};
use crate::verdict::{Outcome, ReasonCode, client_owned_headers};

/// Envoy's HTTP ext_authz removes these upstream headers when an allow names them.
const ENVOY_HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";
/// The reason code, on every deny, for proxies that pass headers but not bodies on (nginx).
const REASON_HEADER: &str = "x-tollgate-reason";
/// The deny's own status when the convention forced another (nginx: 401 or 403 only).
const STATUS_HEADER: &str = "x-tollgate-status";

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
pub fn answer(
    authorizer: &Authorizer,
    proxies: &Proxies,
    convention: Convention,
    peer: &Peer,
    parts: &http::request::Parts,
) -> Response<Full<Bytes>> {
    match translate(proxies, convention, peer, parts) {
        Ok(input) => {
            let decided = authorizer.check(&input);
            respond(convention, &decided, Some(&input))
        }
        Err(why) => respond(
            convention,
            &authorizer.refuse(why.reason, why.message),
            None,
        ),
    }
}

/// Wire → core: the original request as `convention` carries it, the certificate a trusted
/// proxy forwarded, the client address.
pub fn translate(
    proxies: &Proxies,
    convention: Convention,
    peer: &Peer,
    parts: &http::request::Parts,
) -> Result<CheckInput, Untranslatable> {
    let headers = &parts.headers;
    let proxy = proxies.recognise(peer);
    let certificate = proxies
        .certificate(proxy, peer, headers)
        .map_err(|e| Untranslatable {
            reason: e.reason(),
            message: e.to_string(),
        })?
        .unwrap_or_default();
    let (method, path, host) = match convention {
        Convention::Envoy => {
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let path = target.strip_prefix("/envoy").unwrap_or(target);
            let path = if path.is_empty() || path.starts_with('?') {
                format!("/{path}")
            } else {
                path.to_owned()
            };
            (parts.method.as_str().to_owned(), path, host_of(parts)?)
        }
        Convention::Nginx => {
            let method = required(headers, &names::X_ORIGINAL_METHOD)?;
            // ingress-nginx sends X-Original-URL and passes a client's X-Original-URI through:
            // with both, which path was asked for is the client's choice. Refused.
            if headers.contains_key(&names::X_ORIGINAL_URI)
                && headers.contains_key(&names::X_ORIGINAL_URL)
            {
                return Err(Untranslatable::malformed(
                    "both `x-original-uri` and `x-original-url`: the proxy must send exactly one",
                ));
            }
            match text(headers, &names::X_ORIGINAL_URI)? {
                Some(uri) => (method, uri, host_of(parts)?),
                None => {
                    // ingress-nginx: the whole URL, host included.
                    let url = required(headers, &names::X_ORIGINAL_URL)?;
                    let uri: http::Uri = url
                        .parse()
                        .map_err(|_| Untranslatable::malformed("`x-original-url` is not a URL"))?;
                    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
                    let host = match uri.authority() {
                        Some(authority) => authority.as_str().to_owned(),
                        None => host_of(parts)?,
                    };
                    (method, path, host)
                }
            }
        }
        Convention::Traefik => (
            required(headers, &names::X_FORWARDED_METHOD)?,
            required(headers, &names::X_FORWARDED_URI)?,
            required(headers, &names::X_FORWARDED_HOST)?,
        ),
    };
    if !path.starts_with('/') {
        return Err(Untranslatable::malformed(format!(
            "the original request target `{path}` is not a path"
        )));
    }
    let mut input = CheckInput {
        method,
        path,
        host,
        headers: Headers::with_capacity_and_hasher(headers.len(), Default::default()),
        source_ip: None,
        certificate,
        principal: String::new(),
    };
    let vouched = proxy.and_then(|p| p.certificate.as_ref());
    for (name, value) in headers {
        let name = name.as_str();
        // A vouched-for header stays (`identity.source = "xfcc"` reads it); others were refused.
        if proxies.is_certificate_header(name) && !vouched.is_some_and(|c| c.uses(name)) {
            continue;
        }
        let value = std::str::from_utf8(value.as_bytes())
            .map_err(|_| Untranslatable::malformed(format!("header `{name}` is not UTF-8")))?;
        input.insert_header(name, value);
    }
    input.set_source_ip(proxies.client_ip(proxy, peer, headers));
    Ok(input)
}

/// The request's own host: `:authority` (HTTP/2) or `Host`.
fn host_of(parts: &http::request::Parts) -> Result<String, Untranslatable> {
    if let Some(authority) = parts.uri.authority() {
        return Ok(authority.as_str().to_owned());
    }
    Ok(text(&parts.headers, &hyper::header::HOST)?.unwrap_or_default())
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

fn text(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, Untranslatable> {
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
        .map(|v| Some(v.to_owned()))
        .map_err(|_| Untranslatable::malformed(format!("`{name}` is not UTF-8")))
}

fn required(headers: &HeaderMap, name: &HeaderName) -> Result<String, Untranslatable> {
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
    input: Option<&CheckInput>,
) -> Response<Full<Bytes>> {
    let settings = &decided.snapshot.response;
    let verdict = &decided.verdict;
    let id = verdict.decision_id.hex();
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    put(headers, &settings.decision_id_header, id.as_str());
    match &verdict.outcome {
        Outcome::Allow => {
            if let Some(principal) = &verdict.principal {
                put(headers, &settings.principal_header, principal);
            }
            if convention == Convention::Envoy {
                let mut remove = input
                    .map(|i| client_owned_headers(i, settings))
                    .unwrap_or_default();
                remove.retain(|h| {
                    *h != settings.principal_header && *h != settings.decision_id_header
                });
                if settings.strip_authorization {
                    remove.push("authorization".into());
                }
                if !remove.is_empty() {
                    put(headers, ENVOY_HEADERS_TO_REMOVE, &remove.join(","));
                }
            }
        }
        Outcome::Deny(denial) => {
            let status = denial.reason.http_status(settings.internal_error_status);
            let wire = match convention {
                Convention::Nginx if status != 401 && status != 403 => {
                    put(headers, STATUS_HEADER, &status.to_string());
                    403
                }
                _ => status,
            };
            *response.status_mut() = StatusCode::from_u16(wire).unwrap_or(StatusCode::FORBIDDEN);
            let headers = response.headers_mut();
            put(headers, "content-type", "application/json");
            put(headers, REASON_HEADER, denial.reason.as_str());
            if let Some(challenge) = denial.reason.challenge() {
                put(headers, "www-authenticate", challenge);
            }
            *response.body_mut() =
                Full::new(Bytes::from(verdict.deny_body(settings.expose_policy_ids)));
        }
    }
    response
}

/// Sets a header Tollgate wrote; names and values come from config or Tollgate itself, and a
/// value that is not a valid header (a principal with a control character) is left out
/// rather than sent broken.
fn put(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
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

    #[test]
    fn endpoints() {
        assert_eq!(Convention::of_path("/envoy/x"), Some(Convention::Envoy));
        assert_eq!(Convention::of_path("/envoyx"), None);
        assert_eq!(Convention::of_path("/nginx"), Some(Convention::Nginx));
        assert_eq!(Convention::of_path("/nginx/x"), None);
    }
}
