//! `x-forwarded-client-cert` parsing (Envoy's format). Only the last element is trusted: it is
//! the one the nearest proxy added after validating the client's certificate itself.

/// The fields Tollgate uses from the nearest proxy's XFCC element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XfccElement {
    /// `URI=` values (URI SANs of the client certificate).
    pub uris: Vec<String>,
    /// `Hash=`: hex SHA-256 of the client certificate DER.
    pub hash: Option<[u8; 32]>,
}

/// Parses the header and returns its last element.
pub fn parse_last(header: &str) -> Result<XfccElement, String> {
    let elements = split_unquoted(header, b',');
    let last = elements
        .last()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or("empty header")?;
    let mut out = XfccElement::default();
    for pair in split_unquoted(last, b';') {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        let value = unquote(value.trim())?;
        match key.trim().to_ascii_lowercase().as_str() {
            "uri" => out.uris.push(value),
            "hash" => {
                let bytes = hex::decode(&value).map_err(|_| "Hash is not hex".to_owned())?;
                out.hash = Some(
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| "Hash is not SHA-256".to_owned())?,
                );
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Splits on `sep` outside double quotes (a backslash escapes the next byte inside quotes).
fn split_unquoted(input: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in input.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                parts.push(input.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(input.get(start..).unwrap_or_default());
    parts
}

fn unquote(value: &str) -> Result<String, String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Ok(value.to_owned());
    };
    let inner = inner.strip_suffix('"').ok_or("unterminated quote")?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().ok_or("dangling escape")?);
        } else {
            out.push(c);
        }
    }
    Ok(out)
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

    proptest! {
        #[test]
        fn never_panics(input in "\\PC{0,120}") {
            let _ = parse_last(&input);
        }
    }
}
