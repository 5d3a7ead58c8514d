//! Trust bundles as files: PEM certificates, or a SPIFFE bundle (a JWKS whose `x509-svid`
//! keys carry the CA certificate in `x5c`, per the SPIFFE Trust Domain and Bundle spec §4).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;

use super::cert::CertError;
use super::jwks::KeySet;

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

/// The JWT authorities of a trust domain, as a key set: from a SPIFFE bundle (`spiffe_bundle`,
/// its `jwt-svid` keys only, per the JWT-SVID spec §6), or from a JWKS the Workload API sent
/// for the domain (keys without `use`, or with `jwt-svid` or `sig`). Every key must carry a
/// `kid`. A PEM bundle has no JWT authorities: an empty set.
pub fn jwt_svid_keys(text: &str, spiffe_bundle: bool) -> Result<KeySet, BundleError> {
    if !text.trim_start().starts_with('{') {
        return Ok(KeySet::default());
    }
    let mut document: serde_json::Value =
        serde_json::from_str(text).map_err(|e| BundleError::Json(e.to_string()))?;
    let keys = document
        .get_mut("keys")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or_else(|| BundleError::Json("no `keys` array".into()))?;
    let mut kept = Vec::with_capacity(keys.len());
    for (index, mut key) in keys.drain(..).enumerate() {
        let key_use = key.get("use").and_then(serde_json::Value::as_str);
        let wanted = match key_use {
            Some("jwt-svid") => true,
            Some("sig") | None => !spiffe_bundle,
            Some(_) => false,
        };
        if !wanted {
            continue;
        }
        if key.get("kid").and_then(serde_json::Value::as_str).is_none() {
            return Err(BundleError::Json(format!(
                "key {index}: a `jwt-svid` key needs a `kid`"
            )));
        }
        if let Some(object) = key.as_object_mut() {
            object.remove("use");
        }
        kept.push(key);
    }
    let jwks = serde_json::json!({ "keys": kept }).to_string();
    if spiffe_bundle {
        return KeySet::from_json(&jwks).map_err(|e| BundleError::Json(e.to_string()));
    }
    // Streamed from the Workload API: a key Tollgate cannot use costs only itself.
    let (keys, skipped) = KeySet::from_fetched_json(&jwks, MAX_JWT_AUTHORITIES)
        .map_err(|e| BundleError::Json(e.to_string()))?;
    if !skipped.is_empty() {
        tracing::warn!(skipped = ?skipped, "JWT authorities Tollgate cannot use were skipped");
    }
    Ok(keys)
}

/// Most JWT authorities taken from one streamed JWT bundle.
const MAX_JWT_AUTHORITIES: usize = 100;

/// A trust domain's bundle as polled from its SPIFFE bundle endpoint (federation): the last
/// good document and its sequence, shared by the poller and the snapshots built from it.
#[derive(Debug)]
pub struct RemoteBundle {
    /// The endpoint URL, for messages.
    pub location: String,
    current: std::sync::Mutex<Option<(Option<u64>, String)>>,
    /// A bundle was taken once (and may since have been dropped for its age).
    fetched: std::sync::atomic::AtomicBool,
    /// The held bundle is too old to trust; its sequence still guards against replays.
    expired: std::sync::atomic::AtomicBool,
    /// When the held bundle was taken: of two live bundles sharing a CA, the newer brought it.
    taken_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// What became of an offered bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Newer than the one held (or the first): it replaces it.
    Taken,
    /// The very bundle held: a good poll, nothing changes.
    Confirmed,
    /// Not fresher than the one held (an older or equal sequence with other contents, or no
    /// sequence after one with): ignored, and not a good poll.
    Refused,
}

impl RemoteBundle {
    /// Nothing fetched yet from `location`.
    pub fn new(location: String) -> Self {
        Self {
            location,
            current: std::sync::Mutex::new(None),
            fetched: std::sync::atomic::AtomicBool::new(false),
            expired: std::sync::atomic::AtomicBool::new(false),
            taken_at: std::sync::Mutex::new(None),
        }
    }

    /// True until a bundle has been taken.
    pub fn never_fetched(&self) -> bool {
        !self.fetched.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops trusting the held bundle (it is too old); a fetch of the same or a newer one
    /// restores trust. True when a trusted one was held.
    pub fn expire(&self) -> bool {
        let held = self.lock().is_some();
        held && !self.expired.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// The last good bundle document, if any and not expired.
    pub fn text(&self) -> Option<String> {
        if self.expired.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.lock().as_ref().map(|(_, text)| text.clone())
    }

    /// Takes `text` (sequence `sequence`) if it is newer than what is held (SPIFFE Federation
    /// §4.2: a bundle whose `spiffe_sequence` is not greater is not fresher), confirms it if it
    /// is the very bundle held, or refuses it; see [`Offered`].
    pub fn offered(&self, sequence: Option<u64>, text: String) -> Offered {
        let mut current = self.lock();
        let expired = self.expired.load(std::sync::atomic::Ordering::Acquire);
        let outcome = match (&*current, sequence) {
            (None, _) => Offered::Taken,
            (Some((held_seq, held)), _) if *held_seq == sequence && *held == text => {
                Offered::Confirmed
            }
            (Some((Some(held), _)), Some(offered)) if offered > *held => Offered::Taken,
            // A bundle without a sequence cannot prove itself newer than one with, and an
            // older or equal sequence with other contents is not fresher.
            (Some((Some(_), _)), _) => Offered::Refused,
            (Some((None, _)), _) => Offered::Taken,
        };
        match outcome {
            Offered::Taken => {
                *current = Some((sequence, text));
                self.taken_at_now();
                self.fetched
                    .store(true, std::sync::atomic::Ordering::Release);
                self.expired
                    .store(false, std::sync::atomic::Ordering::Release);
            }
            // The endpoint serves the bundle held: trusted again after an outage.
            Offered::Confirmed if expired => {
                self.expired
                    .store(false, std::sync::atomic::Ordering::Release);
                return Offered::Taken;
            }
            Offered::Confirmed | Offered::Refused => {}
        }
        outcome
    }

    /// When the held bundle was taken (changed), if one was.
    pub fn taken_at(&self) -> Option<std::time::Instant> {
        *self
            .taken_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn taken_at_now(&self) {
        *self
            .taken_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Option<u64>, String)>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a SPIFFE bundle says of itself: its sequence and refresh hint (seconds).
pub fn bundle_header(text: &str) -> Result<(Option<u64>, Option<u64>), BundleError> {
    #[derive(serde::Deserialize)]
    struct Header {
        spiffe_sequence: Option<u64>,
        spiffe_refresh_hint: Option<u64>,
        #[allow(
            dead_code,
            reason = "required by the format; read to refuse a document without it"
        )]
        keys: Vec<serde_json::Value>,
    }
    let header: Header =
        serde_json::from_str(text).map_err(|e| BundleError::Json(e.to_string()))?;
    Ok((header.spiffe_sequence, header.spiffe_refresh_hint))
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
    fn a_bundle_is_taken_only_when_newer() {
        use Offered::{Confirmed, Refused, Taken};
        let bundle = RemoteBundle::new("https://x".into());
        assert_eq!(bundle.offered(Some(5), "b".into()), Taken);
        assert_eq!(
            bundle.offered(Some(5), "b".into()),
            Confirmed,
            "the bundle held"
        );
        assert_eq!(
            bundle.offered(Some(5), "c".into()),
            Refused,
            "same sequence"
        );
        assert_eq!(
            bundle.offered(Some(4), "a".into()),
            Refused,
            "older sequence"
        );
        assert_eq!(
            bundle.offered(None, "a".into()),
            Refused,
            "no sequence cannot replace a sequenced bundle"
        );
        assert_eq!(bundle.offered(Some(6), "d".into()), Taken);
        assert_eq!(bundle.text().as_deref(), Some("d"));
        // Too old: no longer trusted; an older replay is still refused, the same one restores.
        assert!(bundle.expire());
        assert_eq!(bundle.text(), None);
        assert_eq!(bundle.offered(Some(5), "b".into()), Refused);
        assert_eq!(
            bundle.offered(Some(6), "other".into()),
            Refused,
            "the same sequence with other contents is not the bundle held"
        );
        assert_eq!(bundle.offered(Some(6), "d".into()), Taken);
        assert_eq!(bundle.text().as_deref(), Some("d"));
        let plain = RemoteBundle::new("https://y".into());
        assert_eq!(plain.offered(None, "a".into()), Taken);
        assert_eq!(plain.offered(None, "a".into()), Confirmed);
        assert_eq!(plain.offered(None, "b".into()), Taken);
    }

    #[test]
    fn takes_only_jwt_svid_keys_with_a_kid() {
        let ec = r#""kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRjfb3J8F7l7fi8eYP1dG-I3Tvs6mR-1G1XK6R8""#;
        let bundle = format!(
            r#"{{"spiffe_sequence": 1, "keys": [
                {{"use": "jwt-svid", "kid": "a", {ec}}},
                {{"use": "sig", "kid": "b", {ec}}},
                {{"use": "x509-svid", "x5c": ["{PEM_BODY}"]}}]}}"#
        );
        assert_eq!(jwt_svid_keys(&bundle, true).unwrap().kids(), ["a"]);
        assert_eq!(jwt_svid_keys(&bundle, false).unwrap().kids(), ["a", "b"]);
        let no_kid = format!(r#"{{"keys": [{{"use": "jwt-svid", {ec}}}]}}"#);
        assert!(matches!(
            jwt_svid_keys(&no_kid, true),
            Err(BundleError::Json(_))
        ));
        assert!(
            jwt_svid_keys("-----BEGIN CERTIFICATE-----", true)
                .unwrap()
                .is_empty()
        );
    }

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
