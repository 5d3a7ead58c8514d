//! What one decision is evidence of: who asked (the verified caller and its credentials, never
//! the credentials themselves), for what (Cedar action and resource), through which request,
//! and what was decided by which policies. Built once when a decision is made fresh and shared
//! by every verdict reused from the caches, so an audit record costs the request path one
//! reference count, not a copy.

use std::net::IpAddr;
use std::sync::Arc;

use crate::identity::cert::WorkloadName;
use crate::identity::{AccessMode, Caller};
use crate::mapping::Query;
use crate::request::CheckInput;
use crate::snapshot::SnapshotVersion;

/// One decision's facts, without its id, time and query string (which differ between reuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The reason code (`allowed` for an allow).
    pub reason: &'static str,
    /// The HTTP status the caller was answered with (200 for an allow).
    pub status: u16,
    /// The denial's detail; empty for an allow.
    pub message: String,
    /// The Cedar principal, once identity succeeded.
    pub principal: Option<String>,
    /// Policies that determined the decision.
    pub determining: Vec<String>,
    /// Cedar evaluation errors (policies skipped).
    pub errors: Vec<String>,
    /// The caller, when identity succeeded (shared: an AuthZEN call's evaluations all have the
    /// same one).
    pub actor: Option<Arc<Actor>>,
    /// The Cedar action and resource, when the request was mapped.
    pub target: Option<Target>,
    /// The HTTP request line, secrets removed.
    pub request: RequestLine,
    /// The snapshot the decision was made against (a reused decision was made against the
    /// same one: the caches are per snapshot generation).
    pub snapshot: Arc<SnapshotVersion>,
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The Cedar principal id: a SPIFFE ID, or `<issuer>#<client>` for a token-only client.
    pub principal: String,
    /// The workload's name and certificate, when a workload was identified.
    pub workload: Option<WorkloadEvidence>,
    /// The token's facts, when one was verified.
    pub token: Option<TokenEvidence>,
    /// App-only or delegated.
    pub mode: AccessMode,
    /// The user a delegated call acts for.
    pub user: Option<String>,
}

/// The workload identity and its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEvidence {
    /// SPIFFE ID (or DNS name under the fallback).
    pub id: String,
    /// SPIFFE trust domain; empty for a DNS name.
    pub trust_domain: String,
    /// SHA-256 of the certificate, when known.
    pub thumbprint: Option<[u8; 32]>,
    /// End of validity of the verified path, Unix seconds, when verified here.
    pub not_after: Option<i64>,
    /// Start of the leaf's validity, Unix seconds, when verified here.
    pub not_before: Option<i64>,
}

/// The verified token's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEvidence {
    /// `iss` (`spiffe://<trust domain>` for a JWT-SVID).
    pub issuer: String,
    /// The client (`client_id`/`azp`), when named.
    pub client_id: Option<String>,
    /// `jti`, when present; records carry only its hash.
    pub jti: Option<String>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `iat`, Unix seconds, when present.
    pub issued_at: Option<i64>,
    /// A JWT-SVID.
    pub svid: bool,
}

/// The Cedar action and resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `Action` entity id.
    pub action: Arc<str>,
    /// Resource entity type.
    pub resource_type: Arc<str>,
    /// Resource entity id.
    pub resource_id: String,
}

/// Longest path kept in evidence, bytes.
pub const MAX_PATH: usize = 2048;

/// The request line as evidence, without its query (see [`redact_query`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestLine {
    /// Method.
    pub method: String,
    /// The path as routes saw it (normalised), or as sent without its query when the request
    /// was refused before mapping.
    pub path: String,
    /// Host.
    pub host: String,
    /// Source address, when known.
    pub source_ip: Option<IpAddr>,
}

impl Evidence {
    /// True for an allow.
    pub fn allowed(&self) -> bool {
        self.reason == ALLOWED
    }
}

/// The reason an allow records.
pub const ALLOWED: &str = "allowed";

impl Target {
    /// The action and resource of `query`.
    pub fn new(query: &Query) -> Self {
        Self {
            action: query.action.clone(),
            resource_type: query.resource.type_name.clone(),
            resource_id: query.resource.id.clone(),
        }
    }
}

impl Actor {
    /// The evidence of a verified caller.
    pub fn new(caller: &Caller) -> Self {
        let token = caller.token.as_deref();
        Self {
            principal: caller.principal.clone(),
            workload: caller.workload.as_ref().map(|w| {
                let (id, trust_domain) = match &w.name {
                    WorkloadName::Spiffe(id) => {
                        (id.as_str().to_owned(), id.trust_domain().to_owned())
                    }
                    WorkloadName::Dns(name) => (name.clone(), String::new()),
                };
                WorkloadEvidence {
                    id,
                    trust_domain,
                    thumbprint: w.thumbprint,
                    not_after: w.not_after,
                    not_before: w.not_before,
                }
            }),
            token: token.map(|t| TokenEvidence {
                issuer: t.issuer.clone(),
                client_id: t.client_id.clone(),
                jti: t.jti.clone(),
                expires_at: t.expires_at,
                issued_at: t.issued_at,
                svid: t.svid.is_some(),
            }),
            mode: caller.mode,
            user: token.and_then(|t| t.user.clone()),
        }
    }

    /// The nearest expiry of the credentials presented, Unix seconds.
    pub fn credentials_expire(&self) -> Option<i64> {
        let cert = self.workload.as_ref().and_then(|w| w.not_after);
        let token = self.token.as_ref().map(|t| t.expires_at);
        match (cert, token) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl RequestLine {
    /// The request line of `input`; `normalised` is the path as routes matched it, when known.
    pub fn new(input: &CheckInput, normalised: Option<&str>) -> Self {
        let sent = input.path.split(['?', '#']).next().unwrap_or_default();
        Self {
            method: input.method.clone(),
            path: capped(normalised.unwrap_or(sent)),
            host: input.host.clone(),
            source_ip: input.source_ip,
        }
    }
}

/// `path`, cut at [`MAX_PATH`] bytes (marked `…`): a refused request's path can be as long as
/// the proxy allows, and a record is kept in a queue and read back line by line.
fn capped(path: &str) -> String {
    if path.len() <= MAX_PATH {
        return path.to_owned();
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", path.get(..end).unwrap_or_default())
}

/// The query string of a request target (`None` without one) with every value replaced by
/// `_`: query strings carry secrets (`?api_key=…`, OAuth codes), and evidence never holds a
/// credential. Parameter names stay, so a reviewer still sees the shape of the call. Not part
/// of [`Evidence`]: the decision caches ignore the query, so it differs between reuses.
pub fn redact_query(target: &str) -> Option<String> {
    // Every record's path is looked at, and most have no query: one vectorised byte search.
    let query = target.get(memchr::memchr(b'?', target.as_bytes())? + 1..)?;
    let query = query.split('#').next().unwrap_or_default();
    let mut out = String::with_capacity(query.len());
    for (i, param) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match param.split_once('=') {
            Some((name, _)) => {
                out.push_str(name);
                out.push_str("=_");
            }
            // A bare parameter may be a value (`?<api key>`): it goes too.
            None => out.push('_'),
        }
    }
    Some(if out.len() > MAX_PATH {
        capped(&out)
    } else {
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_never_survive() {
        let input = CheckInput {
            method: "GET".into(),
            path: "/orders/1?api_key=s3cret&flag&code=abc#frag".into(),
            ..Default::default()
        };
        let line = RequestLine::new(&input, None);
        assert_eq!(line.path, "/orders/1");
        assert_eq!(
            redact_query(&input.path).as_deref(),
            Some("api_key=_&_&code=_")
        );
        assert_eq!(redact_query("/a"), None);
        let line = RequestLine::new(&input, Some("/orders/1"));
        assert_eq!(line.path, "/orders/1");
    }

    /// Review finding: a refused request's path was kept whole, so a queue of records could
    /// hold megabytes each and the report read Tollgate's own records as corrupt.
    #[test]
    fn a_huge_path_is_cut() {
        let input = CheckInput {
            method: "GET".into(),
            path: format!("/{}", "a".repeat(60_000)),
            ..Default::default()
        };
        let line = RequestLine::new(&input, None);
        assert!(line.path.len() <= MAX_PATH + 3, "{}", line.path.len());
        assert!(line.path.ends_with('…'));
    }
}
