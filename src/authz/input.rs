//! `CheckInput`: the protobuf-free facts of one request, as every front door supplies them.

use std::collections::HashMap;
use std::net::IpAddr;

/// One request to decide on. Header names are lower-case (Envoy sends them so; other front
/// doors must normalise).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Request target as sent: path plus optional query, not decoded.
    pub path: String,
    /// `:authority` / `Host`.
    #[serde(default)]
    pub host: String,
    /// Request headers, lower-case names.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Downstream address, when the front door knows it.
    #[serde(default)]
    pub source_ip: Option<IpAddr>,
    /// Client certificate as URL-encoded PEM (Envoy's `source.certificate`); empty when none.
    #[serde(default)]
    pub certificate: String,
    /// Envoy's `source.principal` (its own view of the peer identity); empty when none.
    #[serde(default)]
    pub principal: String,
}

impl CheckInput {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}
