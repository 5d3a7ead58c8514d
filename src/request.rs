//! `CheckInput`: the protobuf-free facts of one request, as every front door supplies them.
//! The bottom of the module order: it depends on nothing else in the crate.

use std::collections::HashMap;
use std::net::IpAddr;

/// Request headers by lower-case name. foldhash, seeded at random per process, rather than
/// SipHash: every request hashes each of its names, while Envoy forwards at most 100 headers by
/// default, so the table a caller could aim collisions at is tiny; even a gRPC caller sending
/// thousands (up to the message size limit) must guess the seed to make them collide.
pub type Headers = HashMap<String, String, foldhash::fast::RandomState>;

/// One request to decide on. Header names are lower-case and repeats are joined: build it with
/// [`CheckInput::insert_header`] (or deserialize it, which does the same), never by filling
/// `headers` with names as a client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(from = "RequestFile")]
pub struct CheckInput {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Request target as sent: path plus optional query, not decoded.
    pub path: String,
    /// `:authority` / `Host`.
    pub host: String,
    /// Request headers, lower-case names.
    pub headers: Headers,
    /// Downstream address, when the front door knows it.
    pub source_ip: Option<IpAddr>,
    /// Client certificate as URL-encoded PEM (Envoy's `source.certificate`); empty when none.
    pub certificate: String,
    /// Envoy's `source.principal` (its own view of the peer identity); empty when none.
    pub principal: String,
}

impl CheckInput {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Adds a header as a client sent it: names are case-insensitive, and a repeated header
    /// joins the earlier value with `,` (RFC 9110 §5.3), as Envoy forwards it.
    pub fn insert_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name: String = name.into();
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            name.to_ascii_lowercase()
        } else {
            name
        };
        let value = value.into();
        self.headers
            .entry(name)
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&value);
            })
            .or_insert(value);
    }

    /// Source addresses are IPv4 where they can be: `::ffff:10.0.0.1` (from a dual-stack
    /// listener) is `10.0.0.1`, so an IPv4 range condition cannot be dodged by the address
    /// family.
    pub fn set_source_ip(&mut self, ip: IpAddr) {
        self.source_ip = Some(ip.to_canonical());
    }
}

/// A request as written in a file (`tollgate check --request`, `tollgate test` cases): header
/// names in any case, normalised on the way in so `"Authorization"` is the token it looks like.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    method: String,
    path: String,
    #[serde(default)]
    host: String,
    /// Sorted, so `Authorization` and `authorization` given together join in a fixed order.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    source_ip: Option<IpAddr>,
    #[serde(default)]
    certificate: String,
    #[serde(default)]
    principal: String,
}

impl From<RequestFile> for CheckInput {
    fn from(file: RequestFile) -> Self {
        let mut input = CheckInput {
            method: file.method,
            path: file.path,
            host: file.host,
            headers: Headers::with_capacity_and_hasher(file.headers.len(), Default::default()),
            source_ip: None,
            certificate: file.certificate,
            principal: file.principal,
        };
        for (name, value) in file.headers {
            input.insert_header(name, value);
        }
        if let Some(ip) = file.source_ip {
            input.set_source_ip(ip);
        }
        input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_fold_to_lower_case_and_repeats_join() {
        let mut input = CheckInput::default();
        input.insert_header("X-Trace", "a");
        input.insert_header("x-trace", "b");
        input.insert_header("Authorization", "Bearer t");
        assert_eq!(input.header("x-trace"), Some("a,b"));
        assert_eq!(input.header("authorization"), Some("Bearer t"));
        assert_eq!(input.headers.len(), 2);
    }

    #[test]
    fn a_request_file_is_normalised_and_strict() {
        let input: CheckInput = serde_json::from_str(
            r#"{"method":"GET","path":"/","source_ip":"::ffff:10.0.0.1",
                "headers":{"Authorization":"Bearer t","authorization":"Bearer u"}}"#,
        )
        .unwrap();
        assert_eq!(input.header("authorization"), Some("Bearer t,Bearer u"));
        assert_eq!(input.source_ip, Some("10.0.0.1".parse().unwrap()));
        let typo = serde_json::from_str::<CheckInput>(r#"{"method":"GET","path":"/","header":{}}"#);
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `header`")
        );
    }
}
