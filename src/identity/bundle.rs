//! Trust bundles as files: PEM certificates, or a SPIFFE bundle (a JWKS whose `x509-svid`
//! keys carry the CA certificate in `x5c`, per the SPIFFE Trust Domain and Bundle spec §4).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;

use super::cert::CertError;

/// Most CA certificates one bundle may hold; bounds path-building work per request.
const MAX_BUNDLE_CERTIFICATES: usize = 64;

/// Why a bundle file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Neither PEM certificates nor a SPIFFE bundle.
    #[error("{0}")]
    Pem(#[from] CertError),
    /// Looks like JSON but is not a SPIFFE bundle.
    #[error("SPIFFE bundle: {0}")]
    Json(String),
    /// A SPIFFE bundle with no `x509-svid` key.
    #[error("SPIFFE bundle has no `x509-svid` key, so it cannot verify certificates")]
    NoX509Authorities,
    /// More certificates than a bundle may hold.
    #[error("bundle holds more than {MAX_BUNDLE_CERTIFICATES} certificates")]
    TooMany,
}

#[derive(serde::Deserialize)]
struct SpiffeBundle {
    keys: Vec<SpiffeKey>,
}

#[derive(serde::Deserialize)]
struct SpiffeKey {
    #[serde(rename = "use")]
    key_use: Option<String>,
    #[serde(default)]
    x5c: Vec<String>,
}

/// Reads a bundle file's text: a SPIFFE bundle when it starts with `{`, PEM otherwise.
pub fn parse_bundle(text: &str) -> Result<Vec<CertificateDer<'static>>, BundleError> {
    let certs = if text.trim_start().starts_with('{') {
        spiffe_bundle(text)?
    } else {
        parse_pem_certificates_unbounded(text.as_bytes())?
    };
    if certs.len() > MAX_BUNDLE_CERTIFICATES {
        return Err(BundleError::TooMany);
    }
    Ok(certs)
}

fn spiffe_bundle(text: &str) -> Result<Vec<CertificateDer<'static>>, BundleError> {
    let bundle: SpiffeBundle =
        serde_json::from_str(text).map_err(|e| BundleError::Json(e.to_string()))?;
    let mut out = Vec::new();
    for (index, key) in bundle.keys.iter().enumerate() {
        // JWT-SVID keys verify tokens, not certificates; they are not trust anchors here.
        if key.key_use.as_deref() != Some("x509-svid") {
            continue;
        }
        // The spec requires exactly one certificate, the authority itself.
        let [der] = key.x5c.as_slice() else {
            return Err(BundleError::Json(format!(
                "key {index}: an `x509-svid` key needs exactly one `x5c` certificate"
            )));
        };
        let der = STANDARD
            .decode(der)
            .map_err(|_| BundleError::Json(format!("key {index}: `x5c` is not base64")))?;
        out.push(CertificateDer::from(der));
    }
    if out.is_empty() {
        return Err(BundleError::NoX509Authorities);
    }
    Ok(out)
}

/// PEM bundles may hold more certificates than one request may send.
fn parse_pem_certificates_unbounded(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    use rustls_pki_types::pem::PemObject;
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        out.push(item.map_err(|e| CertError::Malformed(format!("PEM: {e}")))?);
        if out.len() > MAX_BUNDLE_CERTIFICATES {
            break;
        }
    }
    if out.is_empty() {
        return Err(CertError::Malformed("no PEM certificate found".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM_BODY: &str = "MIIBdzCCAR2gAwIBAgIUYQ==";

    #[test]
    fn reads_spiffe_bundles() {
        let json = format!(
            r#"{{"spiffe_sequence": 3, "keys": [
                {{"use": "jwt-svid", "kty": "EC", "kid": "k"}},
                {{"use": "x509-svid", "kty": "EC", "x5c": ["{PEM_BODY}"]}}]}}"#
        );
        let certs = parse_bundle(&json).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(
            parse_bundle(r#"{"keys": [{"use": "jwt-svid"}]}"#),
            Err(BundleError::NoX509Authorities)
        );
        assert!(matches!(
            parse_bundle(r#"{"keys": [{"use": "x509-svid", "x5c": []}]}"#),
            Err(BundleError::Json(_))
        ));
        assert!(matches!(
            parse_bundle(r#"{"keys": [{"use": "x509-svid", "x5c": ["%%"]}]}"#),
            Err(BundleError::Json(_))
        ));
        assert!(matches!(parse_bundle("{"), Err(BundleError::Json(_))));
        assert!(matches!(parse_bundle("garbage"), Err(BundleError::Pem(_))));
    }
}
