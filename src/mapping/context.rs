//! The Cedar context record: what policies may know about the caller and the request.

use std::net::IpAddr;

use crate::identity::cert::WorkloadName;
use crate::identity::{AccessMode, Caller};
use crate::request::CheckInput;

/// Context facts, in Tollgate's own hashable form; `policy::decide` turns them into a Cedar
/// record matching the schema's `RequestContext`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContextFacts {
    /// App-only or delegated.
    pub access_mode: AccessMode,
    /// The user an app acts for (delegated only).
    pub user: Option<String>,
    /// Certificate facts, when a workload was identified.
    pub certificate: Option<CertificateFacts>,
    /// Token facts, when a token was verified.
    pub token: Option<TokenFacts>,
    /// Request facts.
    pub request: RequestFacts,
}

/// The workload identity facts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateFacts {
    /// SPIFFE ID (or DNS name under the fallback).
    pub id: String,
    /// SPIFFE trust domain; empty for DNS names.
    pub trust_domain: String,
    /// SHA-256 of the certificate, when known. Kept as bytes: hex is only needed when a Cedar
    /// context is built (a decision-cache miss), not on every request.
    pub thumbprint: Option<[u8; 32]>,
}

/// The token facts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenFacts {
    /// `iss`.
    pub issuer: String,
    /// `sub` or empty.
    pub subject: String,
    /// Client id or empty.
    pub client_id: String,
    /// Scopes, sorted.
    pub scopes: Vec<String>,
    /// Bound to the presented certificate (RFC 8705).
    pub bound: bool,
    /// `act.sub` or empty.
    pub actor: String,
}

/// The HTTP request facts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestFacts {
    /// Method.
    pub method: String,
    /// Normalised path.
    pub path: String,
    /// Host.
    pub host: String,
    /// Source address, when known.
    pub source_ip: Option<IpAddr>,
}

impl CertificateFacts {
    /// The thumbprint as lower-case hex, as policies see it; empty when unknown.
    pub fn thumbprint_hex(&self) -> String {
        self.thumbprint.map(hex::encode).unwrap_or_default()
    }
}

impl ContextFacts {
    /// The context as the JSON record Cedar sees (for `check --explain`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut request = serde_json::json!({
            "method": self.request.method,
            "path": self.request.path,
            "host": self.request.host,
        });
        if let (Some(ip), Some(map)) = (self.request.source_ip, request.as_object_mut()) {
            map.insert("source_ip".into(), serde_json::json!(ip.to_string()));
        }
        let mut record = serde_json::json!({
            "access_mode": match self.access_mode {
                AccessMode::AppOnly => "app_only",
                AccessMode::Delegated => "delegated",
            },
            "request": request,
        });
        if let Some(map) = record.as_object_mut() {
            if let Some(user) = &self.user {
                map.insert("user".into(), serde_json::json!(format!("User::{user:?}")));
            }
            if let Some(c) = &self.certificate {
                let cert = serde_json::json!({
                    "id": c.id, "trust_domain": c.trust_domain, "thumbprint": c.thumbprint_hex(),
                });
                map.insert("certificate".into(), cert);
            }
            if let Some(t) = &self.token {
                let token = serde_json::json!({
                    "issuer": t.issuer, "subject": t.subject, "client_id": t.client_id,
                    "actor": t.actor, "bound": t.bound, "scopes": t.scopes,
                });
                map.insert("token".into(), token);
            }
        }
        record
    }

    /// Collects the facts for one request.
    pub fn new(caller: &Caller, input: &CheckInput, path: String) -> Self {
        let certificate = caller.workload.as_ref().map(|w| {
            let (id, trust_domain) = match &w.name {
                WorkloadName::Spiffe(id) => (id.as_str().to_owned(), id.trust_domain().to_owned()),
                WorkloadName::Dns(name) => (name.clone(), String::new()),
            };
            CertificateFacts {
                id,
                trust_domain,
                thumbprint: w.thumbprint,
            }
        });
        let token = caller.token.as_ref().map(|t| TokenFacts {
            issuer: t.issuer.clone(),
            subject: t.subject.clone().unwrap_or_default(),
            client_id: t.client_id.clone().unwrap_or_default(),
            scopes: t.scopes.clone(),
            bound: caller.bound,
            actor: t.actor.clone().unwrap_or_default(),
        });
        Self {
            access_mode: caller.mode,
            user: caller.token.as_ref().and_then(|t| t.user.clone()),
            certificate,
            token,
            request: RequestFacts {
                method: input.method.clone(),
                path,
                host: input.host.clone(),
                source_ip: input.source_ip,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_reaches_policies_as_lower_hex() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xAB;
        bytes[31] = 0x01;
        let facts = CertificateFacts {
            id: "spiffe://td/app".into(),
            trust_domain: "td".into(),
            thumbprint: Some(bytes),
        };
        let hex = facts.thumbprint_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00") && hex.ends_with("0001"), "{hex}");
        let none = CertificateFacts {
            thumbprint: None,
            ..facts
        };
        assert_eq!(none.thumbprint_hex(), "", "unknown stays empty, as before");
    }
}
