//! `x-forwarded-client-cert` parsing, to Envoy's grammar: elements separated by `,`, each a
//! list of `Key=value` pairs separated by `;`, where a value holding `,`, `;` or `=` is
//! double-quoted and a `"` inside quotes is escaped by `\`. Anything else is refused: a
//! lenient parser lets a client-controlled field (a certificate Subject) shift element
//! boundaries. Only the last element is trusted: the nearest proxy added it after validating
//! the client's certificate itself.

/// Longest header accepted (Envoy adds a URL-encoded PEM per element with `Cert`).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The fields Tollgate uses from the nearest proxy's XFCC element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XfccElement {
    /// `URI=` values (URI SANs of the client certificate).
    pub uris: Vec<String>,
    /// `Hash=`: hex SHA-256 of the client certificate DER.
    pub hash: Option<[u8; 32]>,
    /// `Cert=`: the client certificate, URL-encoded PEM.
    pub cert: Option<String>,
    /// `Chain=`: the client's whole chain, leaf first, URL-encoded PEM.
    pub chain: Option<String>,
}

/// Why an XFCC header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XfccError {
    /// No element at all.
    #[error("empty header")]
    Empty,
    /// Longer than [`MAX_HEADER_BYTES`].
    #[error("header longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    /// Not Envoy's grammar at byte `at`.
    #[error("not Envoy's format at byte {at}: {what}")]
    Syntax {
        /// Byte offset.
        at: usize,
        /// What was expected.
        what: &'static str,
    },
    /// A key Envoy never writes.
    #[error("unknown key `{0}` (Envoy writes By, Hash, Cert, Chain, Subject, URI, DNS)")]
    UnknownKey(String),
    /// `Hash` is not 64 hex digits.
    #[error("Hash is not a hex SHA-256")]
    Hash,
}

/// Parses the whole header strictly and returns its last element.
pub fn parse_last(header: &str) -> Result<XfccElement, XfccError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(XfccError::TooLong);
    }
    let mut parser = Parser {
        bytes: header.as_bytes(),
        at: 0,
    };
    if header.trim().is_empty() {
        return Err(XfccError::Empty);
    }
    loop {
        let (element, more) = parser.element()?;
        if !more {
            return Ok(element);
        }
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn error(&self, what: &'static str) -> XfccError {
        XfccError::Syntax { at: self.at, what }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// One element; `true` when another follows (a `,` was consumed).
    fn element(&mut self) -> Result<(XfccElement, bool), XfccError> {
        let mut element = XfccElement::default();
        loop {
            self.skip_spaces();
            let key = self.key()?;
            let value = self.value()?;
            match key.to_ascii_lowercase().as_str() {
                "uri" => element.uris.push(value),
                "hash" => {
                    let bytes = hex::decode(&value).map_err(|_| XfccError::Hash)?;
                    element.hash =
                        Some(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| XfccError::Hash)?);
                }
                "cert" => element.cert = Some(value),
                "chain" => element.chain = Some(value),
                "by" | "subject" | "dns" => {}
                _ => return Err(XfccError::UnknownKey(key)),
            }
            self.skip_spaces();
            match self.peek() {
                Some(b';') => self.at += 1,
                Some(b',') => {
                    self.at += 1;
                    return Ok((element, true));
                }
                None => return Ok((element, false)),
                Some(_) => return Err(self.error("`;`, `,` or the end after a value")),
            }
        }
    }

    fn key(&mut self) -> Result<String, XfccError> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.at += 1;
        }
        let key = self.bytes.get(start..self.at).unwrap_or_default();
        if key.is_empty() {
            return Err(self.error("a key"));
        }
        if self.peek() != Some(b'=') {
            return Err(self.error("`=` after a key"));
        }
        self.at += 1;
        Ok(String::from_utf8_lossy(key).into_owned())
    }

    fn value(&mut self) -> Result<String, XfccError> {
        let mut out = Vec::new();
        if self.peek() == Some(b'"') {
            self.at += 1;
            loop {
                match self.peek() {
                    None => return Err(self.error("a closing `\"`")),
                    Some(b'"') => {
                        self.at += 1;
                        break;
                    }
                    Some(b'\\') => {
                        self.at += 1;
                        let escaped = self.peek().ok_or_else(|| self.error("an escaped byte"))?;
                        out.push(escaped);
                        self.at += 1;
                    }
                    Some(b) => {
                        out.push(b);
                        self.at += 1;
                    }
                }
            }
        } else {
            while let Some(b) = self.peek() {
                match b {
                    b';' | b',' => break,
                    // Envoy quotes any value with these; bare, they are someone else's text.
                    b'"' | b'=' | b'\\' => return Err(self.error("a quoted value")),
                    _ => {
                        out.push(b);
                        self.at += 1;
                    }
                }
            }
            while out.last() == Some(&b' ') {
                out.pop();
            }
        }
        String::from_utf8(out).map_err(|_| self.error("UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trusts_only_the_last_element() {
        let hash = "a".repeat(64);
        let header = format!(
            "By=spiffe://x/a;URI=spiffe://evil/forged,By=spiffe://x/b;Hash={hash};Subject=\"CN=a,O=b;c\";URI=spiffe://x/web"
        );
        let el = parse_last(&header).unwrap();
        assert_eq!(el.uris, ["spiffe://x/web"]);
        assert_eq!(el.hash, Some([0xaa; 32]));
    }

    #[test]
    fn rejects_broken_input() {
        assert!(parse_last("").is_err());
        assert!(parse_last("URI").is_err());
        assert!(parse_last("Subject=\"unterminated").is_err());
        assert!(parse_last("Hash=zz").is_err());
    }

    /// Finding: an unbalanced quote in a client-controlled field shifted element boundaries,
    /// so the "last element" could be text the nearest proxy never vouched for.
    #[test]
    fn an_unbalanced_quote_cannot_forge_the_last_element() {
        // The client controls the Subject of the first (older) element; a quote inside an
        // unquoted value is not Envoy's grammar and must be refused, not re-balanced.
        let header = r#"By=spiffe://x/a;Subject=CN=a";URI=spiffe://x/evil,By=spiffe://x/b;URI=spiffe://x/web"#;
        assert!(parse_last(header).is_err(), "{:?}", parse_last(header));
        let header = r#"By=spiffe://x/a;Subject="CN=a,By=spiffe://x/b;URI=spiffe://x/evil"#;
        assert!(parse_last(header).is_err(), "{:?}", parse_last(header));
        // Quoted values with escaped quotes are Envoy's own output and parse.
        let header =
            r#"Subject="CN=a\",O=b";URI=spiffe://x/a,Subject="CN=\"q\";x";URI=spiffe://x/web"#;
        assert_eq!(parse_last(header).unwrap().uris, ["spiffe://x/web"]);
        // A value may not continue after its closing quote.
        assert!(parse_last(r#"Subject="a"b;URI=spiffe://x/web"#).is_err());
        // Unknown keys are refused: Envoy emits only its documented ones.
        assert!(parse_last("Evil=1;URI=spiffe://x/web").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(input in "\\PC{0,120}") {
            let _ = parse_last(&input);
        }
    }
}
