//! Request-path normalisation before route matching. A mismatch between what Tollgate matches
//! and what the upstream serves is an authorization bypass, so anything ambiguous is refused.

/// Longest request target accepted.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a request target is refused (all `malformed_request`: Tollgate will not guess what the
/// upstream would make of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("path longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// Not origin-form.
    #[error("path must start with `/`")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("bad percent-encoding in segment `{0}`")]
    BadEscape(String),
    /// `%2F` or `%5C`: a separator the upstream may or may not decode.
    #[error("encoded `/` or `\\` in path")]
    EncodedSeparator,
    /// A literal `\`, which some servers read as `/`.
    #[error("`\\` in path")]
    Backslash,
    /// A control character.
    #[error("control character in path")]
    Control,
    /// The decoded bytes are not UTF-8.
    #[error("path is not UTF-8")]
    NotUtf8,
    /// `;`, literal or encoded: Java servers strip `;params` from a segment, so `..;` is a dot
    /// segment there.
    #[error("`;` in path: servers disagree on path parameters")]
    Semicolon,
    /// A `%` left after decoding: a second decode would change the path.
    #[error("`%` left after decoding: the path is encoded twice")]
    DoubleEncoded,
    /// Three or more dots, which some servers treat as `..`.
    #[error("a segment of only dots")]
    Dots,
}

/// A normalised path: percent-decoded segments with `.`/`..` resolved and empty segments gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// Decoded segments.
    pub segments: Vec<String>,
}

impl NormalizedPath {
    /// The canonical form, e.g. `/orders/42`; `/` for the root.
    pub fn to_path_string(&self) -> String {
        if self.segments.is_empty() {
            return "/".into();
        }
        self.segments.iter().fold(String::new(), |mut acc, s| {
            acc.push('/');
            acc.push_str(s);
            acc
        })
    }
}

/// Normalises a request target (path plus optional query). The query and fragment are
/// dropped: routes never match on them.
///
/// Refused as malformed: not origin-form (`/…`), bad percent-encoding, non-UTF-8, encoded `/`
/// or `\`, a literal `\`, control characters, or more than [`MAX_PATH_BYTES`]; and anything
/// upstream servers read differently from each other: `;` (literal or encoded: Java servers
/// strip `;params` from a segment, so `..;` is a dot segment there), a `%` left after decoding
/// (a double-encoded path that a second decode would change), and segments of three or more
/// dots (some servers treat them as `..`).
pub fn normalize(target: &str) -> Result<NormalizedPath, PathError> {
    if target.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = decode_segment(raw)?;
        if segment.contains(';') {
            return Err(PathError::Semicolon);
        }
        if segment.contains('%') {
            return Err(PathError::DoubleEncoded);
        }
        if segment.len() > 2 && segment.bytes().all(|b| b == b'.') {
            return Err(PathError::Dots);
        }
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    Ok(NormalizedPath { segments })
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let byte = if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    let decoded = u8::try_from(hi * 16 + lo)
                        .map_err(|_| PathError::BadEscape(raw.to_owned()))?;
                    if decoded == b'/' || decoded == b'\\' {
                        return Err(PathError::EncodedSeparator);
                    }
                    decoded
                }
                _ => return Err(PathError::BadEscape(raw.to_owned())),
            }
        } else {
            i += 1;
            if b == b'\\' {
                return Err(PathError::Backslash);
            }
            b
        };
        if byte.is_ascii_control() {
            return Err(PathError::Control);
        }
        out.push(byte);
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(p: &str) -> String {
        normalize(p).unwrap().to_path_string()
    }

    #[test]
    fn resolves_dots_slashes_and_encoding() {
        assert_eq!(norm("/orders/42?x=1#f"), "/orders/42");
        assert_eq!(norm("//orders///42/"), "/orders/42");
        assert_eq!(norm("/orders/../admin"), "/admin");
        assert_eq!(norm("/orders/%2e%2e/admin"), "/admin");
        assert_eq!(norm("/orders/%2E/42"), "/orders/42");
        assert_eq!(norm("/../../etc"), "/etc");
        assert_eq!(norm("/caf%C3%A9"), "/café");
        assert_eq!(norm("/"), "/");
    }

    #[test]
    fn refuses_ambiguity() {
        for bad in [
            "orders",
            "http://host/orders",
            "*",
            "/a%2Fb",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/a%zz",
            "/a%2",
            "/a%00",
            "/a%ff",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert!(normalize(&format!("/{}", "a".repeat(MAX_PATH_BYTES))).is_err());
    }

    /// Finding: `/orders/..;/admin` matched `GET /orders/{id}/{part}` with `id = "..;"`, while
    /// Java servers resolve `..;` to a dot segment and serve `/admin`.
    #[test]
    fn refuses_what_upstream_servers_read_differently() {
        for bad in [
            "/orders/..;/admin",
            "/orders/%2e%2e;/admin",
            "/orders/.;x=1/admin",
            "/orders/1;jsessionid=abc",
            "/orders;x=1/1",
            "/orders/1%3Bx",
            "/orders/%252e%252e/admin",
            "/orders/%2541",
            "/orders/.../admin",
            "/orders/%2e%2e%2e",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert_eq!(norm("/orders/a.b"), "/orders/a.b");
        assert_eq!(norm("/orders/.hidden"), "/orders/.hidden");
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(p in "/[a-z%./?;A-F0-9]{0,40}") {
            if let Ok(n) = normalize(&p) {
                let again = normalize(&n.to_path_string());
                // Decoding twice could differ only if a segment decodes to a new escape.
                if let Ok(again) = again {
                    prop_assert!(again.segments.len() <= n.segments.len());
                }
                prop_assert!(n.segments.iter().all(|s| s != ".." && s != "." && !s.is_empty() && !s.contains('/')));
            }
        }
    }
}
