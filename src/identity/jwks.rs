//! Per-issuer verification keys, parsed once when a snapshot is built; and, for an issuer
//! whose keys are fetched, the live state the fetcher and the request path share.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{JwkSet, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use tokio::sync::Notify;

/// One usable key from a JWKS document.
pub struct JwksKey {
    kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<String>,
    key: VerifyingKey,
}

/// A key that verifies JWS signatures: a public key parsed once, when its set is built, for
/// each algorithm of its family. Parsing on every check (as `jsonwebtoken::crypto::verify`
/// does) puts an EC point's curve check, or an RSA modulus's Montgomery set-up, on every
/// token verification, and so on every distinct forged token of a flood.
#[derive(Clone)]
pub struct VerifyingKey {
    key: DecodingKey,
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerifyingKey {
    /// `key`, with its public key parsed for every algorithm of its family that aws-lc-rs
    /// accepts it for (none for an HMAC secret). An algorithm the key cannot be parsed for
    /// is left to `jsonwebtoken`, which refuses the signature as before.
    pub fn new(key: DecodingKey) -> Self {
        let parsed = parse_for_family(&key);
        Self { key, parsed }
    }

    /// The key as `jsonwebtoken` takes it (for status-list tokens, which it decodes whole).
    pub fn decoding(&self) -> &DecodingKey {
        &self.key
    }

    /// Whether `signature` (base64url, as in a compact JWS) signs `message` under `alg`: the
    /// contract of `jsonwebtoken::crypto::verify`, from the key parsed ahead when there is one.
    pub fn verify(
        &self,
        signature: &str,
        message: &[u8],
        alg: Algorithm,
    ) -> jsonwebtoken::errors::Result<bool> {
        let Some((_, parsed)) = self.parsed.iter().find(|(a, _)| *a == alg) else {
            return jsonwebtoken::crypto::verify(signature, message, &self.key, alg);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(jsonwebtoken::errors::ErrorKind::Base64)?;
        Ok(parsed.verify_sig(message, &signature).is_ok())
    }
}

/// The aws-lc-rs algorithm behind each asymmetric JWS algorithm, as `jsonwebtoken`'s aws-lc
/// provider chooses it (RSA from 2048 bits; fixed-width ECDSA signatures, RFC 7518 §3.4).
fn parse_for_family(key: &DecodingKey) -> Vec<(Algorithm, ParsedPublicKey)> {
    use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
    let parse = |alg: Algorithm, params: &'static dyn lc::VerificationAlgorithm| {
        let bytes = key.try_get_as_bytes().ok()?;
        ParsedPublicKey::new(params, bytes).ok().map(|p| (alg, p))
    };
    let parse_rsa = |alg: Algorithm, params: &'static lc::RsaParameters| match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(params)
            .ok()
            .map(|p| (alg, p)),
        DecodingKeyKind::SecretOrDer(_) => parse(alg, params),
    };
    match key.family() {
        AlgorithmFamily::Rsa => [
            (RS256, &lc::RSA_PKCS1_2048_8192_SHA256),
            (RS384, &lc::RSA_PKCS1_2048_8192_SHA384),
            (RS512, &lc::RSA_PKCS1_2048_8192_SHA512),
            (PS256, &lc::RSA_PSS_2048_8192_SHA256),
            (PS384, &lc::RSA_PSS_2048_8192_SHA384),
            (PS512, &lc::RSA_PSS_2048_8192_SHA512),
        ]
        .into_iter()
        .filter_map(|(alg, params)| parse_rsa(alg, params))
        .collect(),
        AlgorithmFamily::Ec => [
            parse(ES256, &lc::ECDSA_P256_SHA256_FIXED),
            parse(ES384, &lc::ECDSA_P384_SHA384_FIXED),
        ]
        .into_iter()
        .flatten()
        .collect(),
        AlgorithmFamily::Ed => parse(EdDSA, &lc::ED25519).into_iter().collect(),
        AlgorithmFamily::Hmac => Vec::new(),
    }
}

/// The keys of one issuer, looked up by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<JwksKey>,
}

/// Why a JWKS document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not a JWKS JSON document.
    #[error("not a JWKS document: {0}")]
    Json(#[from] serde_json::Error),
    /// A key could not be turned into a verification key.
    #[error("key {index} (kid `{kid}`): {source}")]
    Key {
        /// Position in `keys`.
        index: usize,
        /// Its `kid`, or `-`.
        kid: String,
        /// What was wrong.
        source: jsonwebtoken::errors::Error,
    },
    /// Two keys share a `kid`, which would make lookups ambiguous.
    #[error("duplicate kid `{0}`")]
    DuplicateKid(String),
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS JSON document. Symmetric (`oct`) keys are refused: HMAC secrets are
    /// configured separately so that a public JWKS can never enable HMAC.
    pub fn from_json(text: &str) -> Result<Self, JwksError> {
        let set: JwkSet = serde_json::from_str(text)?;
        let mut keys = Self::default();
        for (index, jwk) in set.keys.iter().enumerate() {
            keys.add(index, jwk)?;
        }
        Ok(keys)
    }

    /// Parses a fetched JWKS, where one key Tollgate cannot use (an unknown curve or type, a
    /// duplicate `kid`) must not cost the issuer its usable ones: such keys are skipped and
    /// named in the second value, and at most `max_keys` are taken.
    pub fn from_fetched_json(
        text: &str,
        max_keys: usize,
    ) -> Result<(Self, Vec<String>), JwksError> {
        #[derive(serde::Deserialize)]
        struct Loose {
            keys: Vec<serde_json::Value>,
        }
        let set: Loose = serde_json::from_str(text)?;
        let mut keys = Self::default();
        let mut skipped = Vec::new();
        for (index, value) in set.keys.into_iter().enumerate() {
            if keys.keys.len() >= max_keys {
                skipped.push(format!("key {index} and later: more than {max_keys} keys"));
                break;
            }
            let added = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(value)
                .map_err(JwksError::from)
                .and_then(|jwk| keys.add(index, &jwk));
            if let Err(error) = added {
                skipped.push(format!("key {index}: {error}"));
            }
        }
        Ok((keys, skipped))
    }

    /// Adds one JWK (the `index`-th of its document), unless it is not for signatures.
    fn add(&mut self, index: usize, jwk: &jsonwebtoken::jwk::Jwk) -> Result<(), JwksError> {
        let kid = jwk.common.key_id.clone();
        let label = kid.clone().unwrap_or_else(|| "-".into());
        if matches!(
            jwk.algorithm,
            jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
        ) {
            return Err(JwksError::Key {
                index,
                kid: label,
                source: jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into(),
            });
        }
        // RFC 7517 §4.2/§4.3: a key meant for encryption, or whose operations exclude
        // `verify`, must not verify signatures; JWKS documents often mix both kinds.
        let for_signatures = jwk
            .common
            .public_key_use
            .as_ref()
            .is_none_or(|u| *u == PublicKeyUse::Signature)
            && jwk
                .common
                .key_operations
                .as_ref()
                .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
        if !for_signatures {
            return Ok(());
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|source| JwksError::Key {
            index,
            kid: label.clone(),
            source,
        })?;
        if kid.is_some() && self.keys.iter().any(|k| k.kid == kid) {
            return Err(JwksError::DuplicateKid(label));
        }
        self.keys.push(JwksKey {
            kid,
            alg: jwk.common.key_algorithm.map(|a| a.to_string()),
            key: VerifyingKey::new(key),
        });
        Ok(())
    }

    /// The `kid`s of the set (`-` for a key without one), for logs on rotation.
    pub fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.kid.clone().unwrap_or_else(|| "-".into()))
            .collect()
    }

    /// Finds the key for a token: by `kid` when the token names one, otherwise the only key
    /// whose pinned algorithm (if any) matches. Ambiguity is a miss, never a guess.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyingKey> {
        let alg_ok = |k: &JwksKey| k.alg.as_deref().is_none_or(|a| a == alg_name(alg));
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .filter(|k| alg_ok(k))
                .map(|k| &k.key),
            None => {
                let mut candidates = self.keys.iter().filter(|k| alg_ok(k));
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(&only.key),
                    _ => None,
                }
            }
        }
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, &k.alg)))
            .finish()
    }
}

/// An issuer's key set as fetched at run time (a JWKS URL, or the one OIDC discovery names):
/// the last good set, when it was last confirmed, and a way for the request path to ask for
/// an early refetch. It outlives snapshots: each build copies the current set into the
/// snapshot's issuer, and the issuer keeps this handle to judge staleness per request.
#[derive(Debug)]
pub struct RemoteKeys {
    /// What is fetched, for messages (the JWKS URL, or `discovery of <issuer>`).
    pub location: String,
    /// Seconds after the last successful fetch past which the set is too old to trust.
    pub max_age_seconds: i64,
    /// The issuer may stay without keys without holding up readiness.
    pub optional: bool,
    /// Unix seconds of the last successful fetch (changed or not); 0 before the first.
    confirmed_at: AtomicI64,
    current: Mutex<Option<Arc<KeySet>>>,
    /// A request met a `kid` the set lacks; the fetcher decides when to act on it.
    wanted: AtomicBool,
    wake: Notify,
}

impl RemoteKeys {
    /// State for one fetched key set, with nothing fetched yet.
    pub fn new(location: String, max_age_seconds: i64, optional: bool) -> Self {
        Self {
            location,
            max_age_seconds,
            optional,
            confirmed_at: AtomicI64::new(0),
            current: Mutex::new(None),
            wanted: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// The last good set, if any fetch has succeeded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a successful fetch at `now` (Unix seconds); `keys` replaces the set when it
    /// changed. Returns the set it replaced, if it did.
    pub fn confirm(&self, now: i64, keys: Option<Arc<KeySet>>) -> Option<Arc<KeySet>> {
        let replaced = keys.map(|keys| {
            self.current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .replace(keys)
        });
        self.confirmed_at.store(now, Ordering::Release);
        replaced.flatten()
    }

    /// Unix seconds of the last successful fetch; 0 before the first.
    pub fn confirmed_at(&self) -> i64 {
        self.confirmed_at.load(Ordering::Acquire)
    }

    /// Seconds since the last successful fetch, if there was one.
    pub fn age_seconds(&self) -> Option<i64> {
        let at = self.confirmed_at();
        (at > 0).then(|| unix_now().saturating_sub(at))
    }

    /// Unix seconds from which the set is too old to trust.
    pub fn stale_at(&self) -> i64 {
        self.confirmed_at().saturating_add(self.max_age_seconds)
    }

    /// Asks for an early refetch (a token named a `kid` the set lacks). Cheap enough for the
    /// request path: one atomic swap, and a wake-up only for the first ask since the last fetch.
    pub fn want_refetch(&self) {
        if !self.wanted.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Waits until a refetch is asked for (returns at once if one already was).
    pub async fn refetch_wanted(&self) {
        loop {
            if self.wanted.load(Ordering::Acquire) {
                return;
            }
            self.wake.notified().await;
        }
    }

    /// Takes the pending ask, if any: the fetch about to start answers it.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }
}

/// The current Unix time in seconds, as fetched key sets and status lists are stamped: the
/// same reading as validity checks take ([`crate::clock::wall`]), which cannot panic on a
/// clock set before 1970 (`UnixTime::now` does) and reads such a clock as year 9999, so
/// nothing fetched counts as fresh.
pub fn unix_now() -> i64 {
    i64::try_from(crate::clock::wall().as_secs()).unwrap_or(i64::MAX)
}

/// The JOSE name of an algorithm.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_JWKS: &str = r#"{"keys":[
      {"kty":"EC","crv":"P-256","kid":"a","alg":"ES256",
       "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRjfb3J8F7l7fi8eYP1dG-I3Tvs6mR-1G1XK6R8"},
      {"kty":"EC","crv":"P-256","kid":"b",
       "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRjfb3J8F7l7fi8eYP1dG-I3Tvs6mR-1G1XK6R8"}]}"#;

    #[test]
    fn finds_by_kid_and_respects_pinned_alg() {
        let set = KeySet::from_json(EC_JWKS).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.find(Some("a"), Algorithm::ES256).is_some());
        assert!(set.find(Some("a"), Algorithm::ES384).is_none());
        assert!(set.find(Some("b"), Algorithm::ES384).is_some());
        assert!(set.find(Some("zzz"), Algorithm::ES256).is_none());
        // Two candidates without a kid: ambiguous, so no key.
        assert!(set.find(None, Algorithm::ES256).is_none());
    }

    #[test]
    fn a_fetched_set_skips_what_it_cannot_use_and_is_bounded() {
        let mixed = EC_JWKS.replace(
            r#"{"kty":"EC","crv":"P-256","kid":"b","#,
            r#"{"kty":"EC","crv":"secp256k1","kid":"x","x":"AA","y":"AA"},
      {"kty":"oct","k":"c2VjcmV0","kid":"h"},
      {"kty":"EC","crv":"P-256","kid":"a","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRjfb3J8F7l7fi8eYP1dG-I3Tvs6mR-1G1XK6R8"},
      {"kty":"EC","crv":"P-256","kid":"b","#,
        );
        let (set, skipped) = KeySet::from_fetched_json(&mixed, 100).unwrap();
        assert_eq!(set.kids(), ["a", "b"]);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        let (bounded, skipped) = KeySet::from_fetched_json(&mixed, 1).unwrap();
        assert_eq!(bounded.kids(), ["a"]);
        assert!(
            skipped.iter().any(|s| s.contains("more than 1 keys")),
            "{skipped:?}"
        );
        assert!(KeySet::from_fetched_json("{", 10).is_err());
    }

    #[test]
    fn refuses_symmetric_keys_and_duplicates() {
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        assert!(matches!(KeySet::from_json(oct), Err(JwksError::Key { .. })));
        let dup = EC_JWKS.replace("\"kid\":\"b\"", "\"kid\":\"a\"");
        assert!(matches!(
            KeySet::from_json(&dup),
            Err(JwksError::DuplicateKid(_))
        ));
        assert!(matches!(KeySet::from_json("{"), Err(JwksError::Json(_))));
    }

    /// A key parsed ahead answers exactly as `jsonwebtoken::crypto::verify` does on the same
    /// key, for every algorithm and for good, tampered, cut, foreign and non-base64
    /// signatures; and it is parsed ahead for every algorithm of its family.
    #[test]
    fn a_key_parsed_ahead_verifies_as_jsonwebtoken_does() {
        use Algorithm::*;
        use jsonwebtoken::EncodingKey;
        use jsonwebtoken::jwk::Jwk;
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        use x509_parser::x509::SubjectPublicKeyInfo;

        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let jwk = |json: serde_json::Value| serde_json::from_value::<Jwk>(json).unwrap();
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&rsa);
        let (_, spki) = SubjectPublicKeyInfo::from_der(&spki).unwrap();
        let PublicKey::RSA(components) = spki.parsed().unwrap() else {
            panic!("not RSA")
        };
        let modulus = components
            .modulus
            .strip_prefix(&[0u8][..])
            .unwrap_or(components.modulus);
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let point = |pair: &rcgen::KeyPair, crv: &str| {
            let raw = pair.public_key_raw();
            let half = (raw.len() - 1) / 2;
            jwk(serde_json::json!({"kty": "EC", "crv": crv,
                "x": b64(&raw[1..=half]), "y": b64(&raw[half + 1..])}))
        };
        let pem = |pair: &rcgen::KeyPair| pair.serialize_pem();
        // Each key as a JWK, the algorithms it signs with, and how to sign with them.
        let keys: [(Jwk, Vec<Algorithm>, EncodingKey); 4] = [
            (
                jwk(
                    serde_json::json!({"kty": "RSA", "n": b64(modulus), "e": b64(components.exponent)}),
                ),
                vec![RS256, RS384, RS512, PS256, PS384, PS512],
                EncodingKey::from_rsa_pem(pem(&rsa).as_bytes()).unwrap(),
            ),
            (
                point(&p256, "P-256"),
                vec![ES256],
                EncodingKey::from_ec_pem(pem(&p256).as_bytes()).unwrap(),
            ),
            (
                point(&p384, "P-384"),
                vec![ES384],
                EncodingKey::from_ec_pem(pem(&p384).as_bytes()).unwrap(),
            ),
            (
                jwk(
                    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key_raw())}),
                ),
                vec![EdDSA],
                EncodingKey::from_ed_pem(pem(&ed).as_bytes()).unwrap(),
            ),
        ];
        let all = [
            HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ];
        let message = b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0In0";
        let outcome = |result: jsonwebtoken::errors::Result<bool>| match result {
            Ok(verified) => format!("{verified}"),
            Err(e) => format!("{:?}", e.into_kind()),
        };
        for (index, (jwk, algorithms, signer)) in keys.iter().enumerate() {
            let decoding = DecodingKey::from_jwk(jwk).unwrap();
            let key = VerifyingKey::new(decoding.clone());
            let parsed: Vec<Algorithm> = key.parsed.iter().map(|(alg, _)| *alg).collect();
            assert_eq!(&parsed, algorithms, "key {index}");
            let mut signatures = vec!["!!".to_owned(), String::new(), "AAAA".to_owned()];
            for &alg in algorithms {
                let good = jsonwebtoken::crypto::sign(message, signer, alg).unwrap();
                let mut tampered = good.clone().into_bytes();
                tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
                let cut = good.get(..good.len() - 4).unwrap().to_owned();
                signatures.extend([good, String::from_utf8(tampered).unwrap(), cut]);
            }
            for (other, (_, other_algorithms, other_signer)) in keys.iter().enumerate() {
                if other != index {
                    let alg = other_algorithms[0];
                    signatures
                        .push(jsonwebtoken::crypto::sign(message, other_signer, alg).unwrap());
                }
            }
            for signature in &signatures {
                for alg in all {
                    assert_eq!(
                        outcome(key.verify(signature, message, alg)),
                        outcome(jsonwebtoken::crypto::verify(
                            signature, message, &decoding, alg
                        )),
                        "key {index}, {alg:?}, signature {signature}"
                    );
                }
            }
            // Its own good signatures verify (the comparison above is not vacuous).
            for &alg in algorithms {
                let good = jsonwebtoken::crypto::sign(message, signer, alg).unwrap();
                assert!(
                    key.verify(&good, message, alg).unwrap(),
                    "key {index}, {alg:?}"
                );
            }
        }
        // An HMAC secret is not parsed ahead; it verifies through jsonwebtoken.
        let secret = VerifyingKey::new(DecodingKey::from_secret(
            b"0123456789abcdef0123456789abcdef",
        ));
        assert!(secret.parsed.is_empty());
    }
}
