//! Per-issuer verification keys, parsed once when a snapshot is built.

use jsonwebtoken::jwk::{JwkSet, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One usable key from a JWKS document.
pub struct JwksKey {
    kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<String>,
    key: DecodingKey,
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
        let mut keys: Vec<JwksKey> = Vec::with_capacity(set.keys.len());
        for (index, jwk) in set.keys.iter().enumerate() {
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
                continue;
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|source| JwksError::Key {
                index,
                kid: label.clone(),
                source,
            })?;
            if kid.is_some() && keys.iter().any(|k| k.kid == kid) {
                return Err(JwksError::DuplicateKid(label));
            }
            keys.push(JwksKey {
                kid,
                alg: jwk.common.key_algorithm.map(|a| a.to_string()),
                key,
            });
        }
        Ok(Self { keys })
    }

    /// Finds the key for a token: by `kid` when the token names one, otherwise the only key
    /// whose pinned algorithm (if any) matches. Ambiguity is a miss, never a guess.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
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
}
