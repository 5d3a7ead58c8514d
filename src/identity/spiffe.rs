//! SPIFFE ID parsing per the SPIFFE ID specification (spiffe/spiffe `standards/SPIFFE-ID.md`).
//!
//! Hand-written because the rules are few, exact and security-relevant, and the available crates
//! bundle a Workload API client we do not want in the request path.

use std::fmt;

/// The SPIFFE spec caps a SPIFFE ID at 2048 bytes.
const MAX_LEN: usize = 2048;
/// The SPIFFE spec caps a trust domain name at 255 characters.
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A well-formed SPIFFE ID such as `spiffe://example.org/ns/shop/sa/web`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    uri: String,
    /// Byte offset where the path starts (or `uri.len()` when there is no path).
    path_start: usize,
}

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    /// Does not start with `spiffe://`.
    #[error("scheme must be `spiffe://`")]
    Scheme,
    /// Longer than the spec allows.
    #[error("longer than {MAX_LEN} bytes")]
    TooLong,
    /// Trust domain empty, too long, or has a character outside `[a-z0-9.-_]`.
    #[error("trust domain must be 1-{MAX_TRUST_DOMAIN_LEN} characters of [a-z0-9.-_]")]
    TrustDomain,
    /// A path segment is empty, `.`, `..`, or has a character outside `[A-Za-z0-9.-_]`.
    #[error("path segments must be non-empty, not `.` or `..`, and use only [A-Za-z0-9.-_]")]
    Path,
    /// A workload ID without a path names the trust domain itself, not a workload
    /// (X509-SVID §2: a leaf SVID's ID has a non-root path).
    #[error("a workload's SPIFFE ID needs a path; the bare trust domain names no workload")]
    NoPath,
}

// === impl SpiffeId ===

impl SpiffeId {
    /// Parses and checks a SPIFFE ID. Query, fragment, port and user info are all rejected
    /// because their characters (`?`, `#`, `:`, `@`) are not allowed anywhere.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input.len() > MAX_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = input
            .strip_prefix("spiffe://")
            .ok_or(SpiffeIdError::Scheme)?;
        let (domain, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if domain.is_empty()
            || domain.len() > MAX_TRUST_DOMAIN_LEN
            || !domain.bytes().all(is_trust_domain_char)
        {
            return Err(SpiffeIdError::TrustDomain);
        }
        if !path.is_empty() {
            // `path` starts with '/', so the first split item is empty and skipped.
            for segment in path.split('/').skip(1) {
                if segment.is_empty()
                    || segment == "."
                    || segment == ".."
                    || !segment.bytes().all(is_path_char)
                {
                    return Err(SpiffeIdError::Path);
                }
            }
        }
        Ok(Self {
            uri: input.to_owned(),
            path_start: "spiffe://".len() + domain.len(),
        })
    }

    /// Parses a SPIFFE ID that names a workload: like [`SpiffeId::parse`], and the ID must
    /// have a path. Every workload identity source (certificate, XFCC, Envoy's principal)
    /// goes through this.
    pub fn parse_workload(input: &str) -> Result<Self, SpiffeIdError> {
        let id = Self::parse(input)?;
        if id.path().is_empty() {
            return Err(SpiffeIdError::NoPath);
        }
        Ok(id)
    }

    /// The full URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        self.uri
            .get("spiffe://".len()..self.path_start)
            .unwrap_or_default()
    }

    /// The path, e.g. `/ns/shop/sa/web`; empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        self.uri.get(self.path_start..).unwrap_or_default()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

fn is_trust_domain_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// Checks a trust domain name as written in config.
pub fn is_valid_trust_domain(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_TRUST_DOMAIN_LEN && name.bytes().all(is_trust_domain_char)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_well_formed_ids() {
        let id = SpiffeId::parse("spiffe://example.org/ns/shop/sa/web-1").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "/ns/shop/sa/web-1");
        let root = SpiffeId::parse("spiffe://example.org").unwrap();
        assert_eq!(root.trust_domain(), "example.org");
        assert_eq!(root.path(), "");
    }

    #[test]
    fn rejects_what_the_spec_forbids() {
        let cases = [
            ("http://example.org/a", SpiffeIdError::Scheme),
            ("SPIFFE://example.org/a", SpiffeIdError::Scheme),
            ("spiffe:///a", SpiffeIdError::TrustDomain),
            ("spiffe://Example.org/a", SpiffeIdError::TrustDomain),
            ("spiffe://example.org:443/a", SpiffeIdError::TrustDomain),
            ("spiffe://user@example.org/a", SpiffeIdError::TrustDomain),
            ("spiffe://example.org/", SpiffeIdError::Path),
            ("spiffe://example.org/a//b", SpiffeIdError::Path),
            ("spiffe://example.org/a/./b", SpiffeIdError::Path),
            ("spiffe://example.org/a/../b", SpiffeIdError::Path),
            ("spiffe://example.org/a?x=1", SpiffeIdError::Path),
            ("spiffe://example.org/a#frag", SpiffeIdError::Path),
            ("spiffe://example.org/a%20b", SpiffeIdError::Path),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::parse(input), Err(want), "{input}");
        }
        assert_eq!(
            SpiffeId::parse_workload("spiffe://example.org"),
            Err(SpiffeIdError::NoPath)
        );
        assert!(SpiffeId::parse_workload("spiffe://example.org/web").is_ok());
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_LEN));
        assert_eq!(SpiffeId::parse(&long), Err(SpiffeIdError::TooLong));
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips(input in "\\PC{0,80}") {
            if let Ok(id) = SpiffeId::parse(&input) {
                prop_assert_eq!(id.as_str(), input.as_str());
                prop_assert!(is_valid_trust_domain(id.trust_domain()));
            }
        }

        #[test]
        fn accepts_generated_valid_ids(td in "[a-z0-9._-]{1,20}", segs in prop::collection::vec("[A-Za-z0-9_-][A-Za-z0-9._-]{0,8}", 0..5)) {
            prop_assume!(segs.iter().all(|s| s != "." && s != ".."));
            let uri = format!("spiffe://{td}{}", segs.iter().map(|s| format!("/{s}")).collect::<String>());
            let id = SpiffeId::parse(&uri).unwrap();
            prop_assert_eq!(id.trust_domain(), td.as_str());
        }
    }
}
