//! A token issuer per test: ES256, RS256 and EdDSA keys, their JWKS, and a minter that can also
//! produce every kind of broken token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use serde_json::{Value, json};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "tollgate-test";

pub struct TokenIssuer {
    es256: KeyPair,
    rs256: KeyPair,
    eddsa: KeyPair,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl TokenIssuer {
    pub fn new() -> Self {
        Self {
            es256: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            rs256: KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
            eddsa: KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        }
    }

    pub fn jwks(&self) -> String {
        let ec = self.es256.public_key_raw();
        let der = rcgen::PublicKeyData::subject_public_key_info(&self.rs256);
        let (_, spki) = SubjectPublicKeyInfo::from_der(&der).unwrap();
        let PublicKey::RSA(rsa) = spki.parsed().unwrap() else {
            panic!("not RSA")
        };
        let modulus = rsa.modulus.strip_prefix(&[0u8][..]).unwrap_or(rsa.modulus);
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256",
             "x": b64(&ec[1..33]), "y": b64(&ec[33..65])},
            {"kty": "RSA", "kid": "rs", "alg": "RS256", "n": b64(modulus), "e": b64(rsa.exponent)},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
             "x": b64(self.eddsa.public_key_raw())},
        ]})
        .to_string()
    }

    /// Standard claims for an app-only token of `client`, overridden/extended by `extra`
    /// (a `null` value removes a claim).
    pub fn claims(client: &str, scopes: &str, extra: Value) -> Value {
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 300,
            "sub": client, "client_id": client, "scope": scopes,
        });
        if let (Some(map), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            for (k, v) in extra {
                if v.is_null() {
                    map.remove(&k);
                } else {
                    map.insert(k, v);
                }
            }
        }
        claims
    }

    pub fn sign(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let (key, default_kid) = match alg {
            Algorithm::ES256 => (
                EncodingKey::from_ec_pem(self.es256.serialize_pem().as_bytes()).unwrap(),
                "es",
            ),
            Algorithm::RS256 => (
                EncodingKey::from_rsa_pem(self.rs256.serialize_pem().as_bytes()).unwrap(),
                "rs",
            ),
            Algorithm::EdDSA => (
                EncodingKey::from_ed_pem(self.eddsa.serialize_pem().as_bytes()).unwrap(),
                "ed",
            ),
            other => panic!("no key for {other:?}"),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.unwrap_or(default_kid).to_owned());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// ES256 with the `typ` header set to `typ`.
    pub fn sign_typed(&self, alg: Algorithm, typ: &str, claims: &Value) -> String {
        assert_eq!(alg, Algorithm::ES256);
        let key = EncodingKey::from_ec_pem(self.es256.serialize_pem().as_bytes()).unwrap();
        let mut header = Header::new(alg);
        header.kid = Some("es".into());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// ES256 with a header of the caller's making.
    pub fn sign_es256_with(&self, header: &Header, claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(self.es256.serialize_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(header, claims, &key).unwrap()
    }

    /// ES256 app-only token.
    pub fn app(&self, client: &str, scopes: &str) -> String {
        self.sign(
            Algorithm::ES256,
            None,
            &Self::claims(client, scopes, json!({})),
        )
    }

    /// ES256 delegated token: `client` acting for `user`.
    pub fn delegated(&self, client: &str, user: &str, scopes: &str) -> String {
        self.sign(
            Algorithm::ES256,
            None,
            &Self::claims(client, scopes, json!({"sub": user})),
        )
    }

    /// HS256 signed with the issuer's public RSA key as the secret (key-confusion attack).
    pub fn hmac_confusion(&self, claims: &Value) -> String {
        let secret = self.rs256.public_key_pem();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rs".into());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }
}

/// `alg: none` with an empty signature.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// The token with its payload swapped for `claims` (signature kept).
pub fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// RFC 8705 `cnf` claim for a certificate.
pub fn cnf_for(der: &[u8]) -> Value {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    json!({"x5t#S256": b64(digest.as_ref())})
}
