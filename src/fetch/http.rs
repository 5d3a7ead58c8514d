//! The one HTTP client behind fetched documents: hyper on the rustls Tollgate already links,
//! an explicit root store (`fetch.ca_file`, else the built-in web roots), HTTPS only unless a
//! test config allows http, one deadline from connection to last byte, a body size cap, and
//! no redirects followed (a moved key set is a configuration change to make, not to guess).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{FetchSettings, check_fetch_url};

/// Why a fetch failed. Each says what to look at.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one Tollgate may fetch.
    #[error("{0}")]
    Url(String),
    /// No answer: connection, TLS or protocol failure.
    #[error("cannot fetch {url}: {reason}")]
    Request {
        /// What was fetched.
        url: String,
        /// The transport's words.
        reason: String,
    },
    /// No complete answer within `fetch.timeout_ms`.
    #[error("{url} did not answer within {0:?} (fetch.timeout_ms)", .timeout)]
    Timeout {
        /// What was fetched.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// An answer other than 200.
    #[error("{url} answered HTTP {status}{}", .location.as_ref().map(|l| format!(" to {l}; configure that URL if it moved")).unwrap_or_default())]
    Status {
        /// What was fetched.
        url: String,
        /// The status code.
        status: u16,
        /// Where a redirect pointed.
        location: Option<String>,
    },
    /// A body over `fetch.max_response_bytes`.
    #[error("{url} sent more than {limit} bytes (fetch.max_response_bytes)")]
    TooLarge {
        /// What was fetched.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// A body that is not UTF-8 text.
    #[error("{0} sent a body that is not UTF-8 text")]
    NotText(String),
    /// A document that arrived whole but cannot be used.
    #[error("{url}: {reason}")]
    Invalid {
        /// What was fetched.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl FetchError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Url(_) => "url",
            Self::Request { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Status { .. } => "status",
            Self::TooLarge { .. } => "too_large",
            Self::NotText(_) | Self::Invalid { .. } => "invalid",
        }
    }
}

/// A fetched document.
#[derive(Debug)]
pub struct Fetched {
    /// The body.
    pub text: String,
    /// `Cache-Control: max-age`, seconds (0 for `no-cache`/`no-store`).
    pub max_age: Option<u64>,
}

/// The fetching client; cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
    allow_http: bool,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client as `settings` describe it. Fails only on a CA file that config checks accept
    /// but rustls does not (reported, not panicked).
    pub fn new(settings: &FetchSettings) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca_pem {
            Some(pem) => {
                use rustls_pki_types::CertificateDer;
                use rustls_pki_types::pem::PemObject;
                for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let cert = cert.map_err(|e| format!("fetch.ca_file: {e}"))?;
                    roots.add(cert).map_err(|e| format!("fetch.ca_file: {e}"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let connector = if settings.insecure_allow_http {
            builder.https_or_http().enable_http1().wrap_connector(http)
        } else {
            builder.https_only().enable_http1().wrap_connector(http)
        };
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .build(connector),
            timeout: settings.timeout,
            max_bytes: settings.max_response_bytes,
            allow_http: settings.insecure_allow_http,
        })
    }

    /// GETs `url` as JSON: the whole body within the deadline and the size cap, or why not.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        self.get_as(url, "application/json").await
    }

    /// GETs `url`, asking for the media type `accept`.
    pub async fn get_as(&self, url: &str, accept: &'static str) -> Result<Fetched, FetchError> {
        check_fetch_url(url, self.allow_http).map_err(FetchError::Url)?;
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| FetchError::Url(format!("`{url}` is not a URL: {e}")))?;
        let request = hyper::Request::get(uri)
            .header(hyper::header::ACCEPT, accept)
            .header(
                hyper::header::USER_AGENT,
                concat!("tollgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| FetchError::Url(format!("`{url}`: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Request {
                    url: url.to_owned(),
                    reason: error_chain(&e),
                })?;
            let status = response.status();
            if status != hyper::StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: status.as_u16(),
                    location: response
                        .headers()
                        .get(hyper::header::LOCATION)
                        .and_then(|l| l.to_str().ok())
                        .map(str::to_owned),
                });
            }
            let too_large = || FetchError::TooLarge {
                url: url.to_owned(),
                limit: self.max_bytes,
            };
            let declared = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > self.max_bytes as u64) {
                return Err(too_large());
            }
            let max_age = max_age(response.headers());
            let body = Limited::new(response.into_body(), self.max_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        too_large()
                    } else {
                        FetchError::Request {
                            url: url.to_owned(),
                            reason: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            let text = String::from_utf8(body.to_vec())
                .map_err(|_| FetchError::NotText(url.to_owned()))?;
            Ok(Fetched { text, max_age })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_owned(),
                timeout: self.timeout,
            })?
    }
}

/// `Cache-Control`'s `max-age` in seconds; `no-cache` and `no-store` count as 0 (the caller
/// clamps to its lower bound).
fn max_age(headers: &hyper::HeaderMap) -> Option<u64> {
    let mut found = None;
    for value in headers.get_all(hyper::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = directive
                .split_once('=')
                .map_or((directive, None), |(n, a)| (n.trim(), Some(a.trim())));
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                return Some(0);
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Some(seconds) = arg.and_then(|a| a.trim_matches('"').parse::<u64>().ok())
            {
                found = Some(seconds);
            }
        }
    }
    found
}

/// An error and its causes in one line (hyper's outer errors say little on their own).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> hyper::HeaderMap {
        let mut map = hyper::HeaderMap::new();
        for v in values {
            map.append(hyper::header::CACHE_CONTROL, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn reads_max_age_and_treats_no_cache_as_zero() {
        assert_eq!(max_age(&headers(&[])), None);
        assert_eq!(max_age(&headers(&["public, max-age=3600"])), Some(3600));
        assert_eq!(max_age(&headers(&["public", "Max-Age=\"60\""])), Some(60));
        assert_eq!(max_age(&headers(&["max-age=60, no-cache"])), Some(0));
        assert_eq!(max_age(&headers(&["no-store"])), Some(0));
        assert_eq!(max_age(&headers(&["max-age=banana"])), None);
    }
}
