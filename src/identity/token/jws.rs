//! A compact JWS (RFC 7515 §7.1) as token verification reads it. Before the signature only
//! what chooses a key is read: the header's parameters, and `iss` and `sub`, without building
//! a JSON tree, so a flood of forged tokens costs its signature checks and little besides.
//! After the signature the claims are read once, and the two that every accepted token must
//! carry, `exp` and an `aud` naming this verifier, are required here.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{TokenError, from_jwt_error};
use crate::identity::jwks::VerifyingKey;

/// A token split into its three base64url parts.
pub(super) struct Parts<'a> {
    /// The signing input: header and payload with the dot between them.
    signed: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl<'a> Parts<'a> {
    pub(super) fn split(token: &'a str) -> Result<Self, TokenError> {
        let malformed = || TokenError::Malformed("expected three dot-separated parts".into());
        let (signed, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
        let (header, payload) = signed.split_once('.').ok_or_else(malformed)?;
        if payload.contains('.') {
            return Err(malformed());
        }
        Ok(Self {
            signed,
            header,
            payload,
            signature,
        })
    }

    /// The JOSE header.
    pub(super) fn header(&self) -> Result<Header, TokenError> {
        decode(self.header, "header")
    }

    /// `iss` and `sub`, read to choose the keys; the signature check covers them.
    pub(super) fn addressee(&self) -> Result<Addressee, TokenError> {
        decode(self.payload, "payload")
    }

    /// Checks the signature over the first two parts with `key` under `alg`, then reads the
    /// claims and requires an `exp` (judged later, at the pipeline's `now`) and an `aud` that
    /// names one of `audiences` (RFC 7519 §4.1.3).
    pub(super) fn signed_claims(
        &self,
        key: &VerifyingKey,
        alg: Algorithm,
        audiences: &[String],
    ) -> Result<Map<String, Value>, TokenError> {
        match key.verify(self.signature, self.signed.as_bytes(), alg) {
            Ok(true) => {}
            Ok(false) => return Err(TokenError::Signature),
            Err(e) => return Err(from_jwt_error(e.into_kind(), &format!("{alg:?}"))),
        }
        // Both parts read whole, strictly, once the signature has vouched for them: before it
        // the header's unread parameters were skipped unchecked (RFC 7515 §5.2 wants valid
        // JSON throughout).
        decode::<Map<String, Value>>(self.header, "header")?;
        let claims: Map<String, Value> = decode(self.payload, "payload")?;
        match claims.get("exp") {
            None | Some(Value::Null) => return Err(TokenError::MissingClaim("exp".into())),
            // A time in whole seconds since 1970 (RFC 7519 §2 NumericDate, as Tollgate reads it).
            Some(exp) if !exp.is_u64() => return Err(TokenError::InvalidClaim("exp".into())),
            Some(_) => {}
        }
        accepts_audience(claims.get("aud"), audiences)?;
        Ok(claims)
    }
}

fn decode<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(format!("{what}: {e}")))
}

/// RFC 7519 §4.1.3: a token names its audiences, one string or an array of strings, and one
/// of them must be one of `ours`.
fn accepts_audience(aud: Option<&Value>, ours: &[String]) -> Result<(), TokenError> {
    let ours = |name: &String| ours.contains(name);
    match aud {
        None | Some(Value::Null) => Err(TokenError::MissingClaim("aud".into())),
        Some(Value::String(name)) if ours(name) => Ok(()),
        Some(Value::String(_)) => Err(TokenError::Audience),
        Some(Value::Array(names)) => {
            let mut accepted = false;
            for name in names {
                let Value::String(name) = name else {
                    return Err(TokenError::InvalidClaim("aud".into()));
                };
                accepted |= ours(name);
            }
            if accepted {
                Ok(())
            } else {
                Err(TokenError::Audience)
            }
        }
        Some(_) => Err(TokenError::InvalidClaim("aud".into())),
    }
}

/// The JOSE header parameters verification reads (RFC 7515 §4.1).
#[derive(Debug, Default)]
pub(super) struct Header {
    pub(super) alg: String,
    pub(super) kid: Option<String>,
    pub(super) typ: Option<String>,
    /// A `crit` parameter is present, whatever its value: no extension is understood, so such
    /// a token is refused (RFC 7515 §4.1.11).
    pub(super) crit: bool,
    /// How many other parameters it carries (a JWT-SVID may carry none).
    pub(super) others: usize,
}

/// `iss` and `sub` as the payload has them, before anything vouches for them.
#[derive(Debug, Default)]
pub(super) struct Addressee {
    /// `iss`, when present (`null` included: an `iss` that is not a string is refused).
    pub(super) iss: Option<Value>,
    /// `sub`, when present.
    pub(super) sub: Option<Value>,
}

/// The claims validation reads after the signature. The claims are read into a map there,
/// which keeps the last of repeated names; a token that repeats one of these is refused here
/// instead, so that no two readings of it can differ (RFC 7519 §4 allows either).
const CHECKED: [&str; 4] = ["aud", "exp", "nbf", "iat"];
// Each has a bit of a `u8` while a payload is read.
const _: () = assert!(CHECKED.len() <= 8);

/// A header parameter or claim name, told apart without keeping it.
enum Name {
    Alg,
    Kid,
    Typ,
    Crit,
    Iss,
    Sub,
    /// A claim validation reads after the signature ([`CHECKED`]), with its own bit.
    Checked {
        name: &'static str,
        bit: u8,
    },
    Other,
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl Visitor<'_> for Names {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Name, E> {
                Ok(match name {
                    "alg" => Name::Alg,
                    "kid" => Name::Kid,
                    "typ" => Name::Typ,
                    "crit" => Name::Crit,
                    "iss" => Name::Iss,
                    "sub" => Name::Sub,
                    _ => CHECKED
                        .iter()
                        .zip(0..)
                        .find(|(checked, _)| **checked == name)
                        .map_or(Name::Other, |(name, at)| Name::Checked {
                            name,
                            bit: 1 << at,
                        }),
                })
            }
        }
        deserializer.deserialize_identifier(Names)
    }
}

/// Stores a member's value once; a second occurrence of the name is an error.
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::custom(format_args!("`{name}` appears twice")));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Params;
        impl<'de> Visitor<'de> for Params {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let (mut alg, mut kid, mut typ, mut crit) = (None, None, None, None);
                let mut others = 0;
                while let Some(name) = map.next_key::<Name>()? {
                    match name {
                        Name::Alg => once(&mut alg, map.next_value::<String>()?, "alg")?,
                        Name::Kid => once(&mut kid, map.next_value::<Option<String>>()?, "kid")?,
                        Name::Typ => once(&mut typ, map.next_value::<Option<String>>()?, "typ")?,
                        Name::Crit => {
                            map.next_value::<IgnoredAny>()?;
                            once(&mut crit, true, "crit")?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            others += 1;
                        }
                    }
                }
                Ok(Header {
                    alg: alg.ok_or_else(|| de::Error::missing_field("alg"))?,
                    kid: kid.flatten(),
                    typ: typ.flatten(),
                    crit: crit.unwrap_or(false),
                    others,
                })
            }
        }
        deserializer.deserialize_map(Params)
    }
}

impl<'de> Deserialize<'de> for Addressee {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Claims;
        impl<'de> Visitor<'de> for Claims {
            type Value = Addressee;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JWT claims object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Addressee, A::Error> {
                let mut found = Addressee::default();
                let mut seen = 0u8;
                while let Some(name) = map.next_key::<Name>()? {
                    match name {
                        Name::Iss => once(&mut found.iss, map.next_value()?, "iss")?,
                        Name::Sub => once(&mut found.sub, map.next_value()?, "sub")?,
                        Name::Checked { name, bit } => {
                            map.next_value::<IgnoredAny>()?;
                            if seen & bit != 0 {
                                return Err(de::Error::custom(format_args!(
                                    "`{name}` appears twice"
                                )));
                            }
                            seen |= bit;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(found)
            }
        }
        deserializer.deserialize_map(Claims)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, EncodingKey};

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// A compact JWS of exactly these texts, HS256-signed with [`SECRET`].
    fn signed(header: &str, payload: &str) -> String {
        let message = format!("{}.{}", b64(header), b64(payload));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SECRET),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    }

    fn claims(payload: &str) -> Result<Map<String, Value>, TokenError> {
        let token = signed(r#"{"alg":"HS256"}"#, payload);
        Parts::split(&token)?.signed_claims(
            &VerifyingKey::new(DecodingKey::from_secret(SECRET)),
            Algorithm::HS256,
            &["api".to_owned()],
        )
    }

    fn malformed(error: Result<impl fmt::Debug, TokenError>) -> String {
        match error {
            Err(TokenError::Malformed(why)) => why,
            other => panic!("expected a malformed token, got {other:?}"),
        }
    }

    #[test]
    fn a_token_is_three_parts() {
        for token in ["", "a", "a.b", "a.b.c.d", "..."] {
            let why = malformed(Parts::split(token).map(|_| ()));
            assert!(why.contains("three"), "{token:?}: {why}");
        }
        assert!(Parts::split("a.b.").is_ok());
    }

    #[test]
    fn the_header_reads_what_verification_needs_and_counts_the_rest() {
        let parts = |header: &str| format!("{}.{}.sig", b64(header), b64("{}"));
        let header = Parts::split(&parts(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT","cty":"x","iss":"y"}"#,
        ))
        .unwrap()
        .header()
        .unwrap();
        assert_eq!(header.alg, "ES256");
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert!(!header.crit);
        assert_eq!(header.others, 2);
        // `crit` is refused whatever it holds, `null` too.
        let header = parts(r#"{"alg":"ES256","crit":null}"#);
        assert!(Parts::split(&header).unwrap().header().unwrap().crit);
        for bad in [
            r#"{"kid":"k1"}"#,
            r#"{"alg":5}"#,
            r#"{"alg":"ES256","alg":"HS256"}"#,
            r#"{"alg":"ES256","kid":"a","kid":"b"}"#,
            r#"{"alg":"ES256","\u0061lg":"HS256"}"#,
            r#"{"alg":"ES256","typ":"JWT","typ":"at+jwt"}"#,
            r#"{"alg":"ES256","crit":["x"],"crit":null}"#,
            r#"["alg"]"#,
        ] {
            malformed(Parts::split(&parts(bad)).unwrap().header());
        }
    }

    /// RFC 7519 §4: the claims are read twice, before the signature to choose a key and after
    /// it into a map that keeps the last of repeated names. A token repeating a claim either
    /// reading depends on is refused, so both readings agree.
    #[test]
    fn a_repeated_claim_that_verification_reads_is_refused() {
        for claim in ["iss", "sub", "aud", "exp", "nbf", "iat"] {
            let payload = format!(r#"{{"{claim}":"a","x":1,"{claim}":"b"}}"#);
            let token = format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(&payload));
            malformed(Parts::split(&token).unwrap().addressee());
        }
        // An escaped name is the same name.
        let payload = r#"{"iss":"a","\u0069ss":"b"}"#;
        let token = format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(payload));
        malformed(Parts::split(&token).unwrap().addressee());
        // Other names are the claims map's to read.
        let payload = r#"{"iss":"a","scope":"x","scope":"y","sub":7}"#;
        let token = format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(payload));
        let addressee = Parts::split(&token).unwrap().addressee().unwrap();
        assert_eq!(addressee.iss, Some(Value::String("a".into())));
        assert_eq!(addressee.sub, Some(Value::from(7)));
        // `null` is present, not absent.
        let payload = r#"{"iss":null}"#;
        let token = format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(payload));
        let addressee = Parts::split(&token).unwrap().addressee().unwrap();
        assert_eq!(addressee.iss, Some(Value::Null));
    }

    #[test]
    fn the_signature_is_checked_before_the_claims_are_read() {
        let good = signed(r#"{"alg":"HS256"}"#, r#"{"aud":"api","exp":1}"#);
        let key = VerifyingKey::new(DecodingKey::from_secret(SECRET));
        let api = ["api".to_owned()];
        assert!(
            Parts::split(&good)
                .unwrap()
                .signed_claims(&key, Algorithm::HS256, &api)
                .is_ok()
        );
        let other = VerifyingKey::new(DecodingKey::from_secret(
            b"another secret, as long as the first",
        ));
        assert_eq!(
            Parts::split(&good)
                .unwrap()
                .signed_claims(&other, Algorithm::HS256, &api)
                .unwrap_err(),
            TokenError::Signature
        );
        // A payload that is not JSON, signed: refused as malformed, after the signature.
        let garbage = signed(r#"{"alg":"HS256"}"#, "not json");
        malformed(
            Parts::split(&garbage)
                .unwrap()
                .signed_claims(&key, Algorithm::HS256, &api),
        );
        // The payload is not read before the signature has been checked: a forged one is a
        // bad signature, whatever it holds.
        assert_eq!(
            Parts::split(&garbage)
                .unwrap()
                .signed_claims(&other, Algorithm::HS256, &api)
                .unwrap_err(),
            TokenError::Signature
        );
        // A key of another family than the algorithm's never verifies.
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            assert_eq!(
                Parts::split(&good)
                    .unwrap()
                    .signed_claims(&key, alg, &api)
                    .unwrap_err(),
                TokenError::Signature,
                "{alg:?}"
            );
        }
        let unsigned = format!("{}.!!", good.rsplit_once('.').unwrap().0);
        malformed(
            Parts::split(&unsigned)
                .unwrap()
                .signed_claims(&key, Algorithm::HS256, &api),
        );
    }

    /// Review finding: parameters the header reader skips were not checked at all, so a
    /// signed header that is not valid JSON (RFC 7515 §5.2) was accepted.
    #[test]
    fn a_signed_header_must_be_json_throughout() {
        let deep = format!(
            r#"{{"alg":"HS256","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for header in [
            r#"{"alg":"HS256","x":"\ud800"}"#,
            r#"{"alg":"HS256","x":1e999}"#,
            deep.as_str(),
        ] {
            let token = signed(header, r#"{"aud":"api","exp":1}"#);
            let parts = Parts::split(&token).unwrap();
            assert!(
                parts.header().is_ok(),
                "{header}: read before the signature"
            );
            malformed(parts.signed_claims(
                &VerifyingKey::new(DecodingKey::from_secret(SECRET)),
                Algorithm::HS256,
                &["api".to_owned()],
            ));
        }
    }

    /// Review finding: a negative `exp` went on to be judged as a time and read "expired".
    #[test]
    fn exp_is_a_time_after_1970() {
        let invalid = Err(TokenError::InvalidClaim("exp".into()));
        assert_eq!(claims(r#"{"aud":"api","exp":-1}"#), invalid);
        assert_eq!(claims(r#"{"aud":"api","exp":"1"}"#), invalid);
        assert_eq!(claims(r#"{"aud":"api","exp":1.5}"#), invalid);
        assert!(claims(r#"{"aud":"api","exp":0}"#).is_ok());
    }

    #[test]
    fn exp_and_an_accepted_aud_are_required() {
        assert!(claims(r#"{"aud":"api","exp":1}"#).is_ok());
        assert!(claims(r#"{"aud":["x","api"],"exp":1}"#).is_ok());
        let missing = |claim: &str| Err(TokenError::MissingClaim(claim.into()));
        let invalid = |claim: &str| Err(TokenError::InvalidClaim(claim.into()));
        assert_eq!(claims(r#"{"aud":"api"}"#), missing("exp"));
        assert_eq!(claims(r#"{"aud":"api","exp":null}"#), missing("exp"));
        assert_eq!(claims(r#"{"exp":1}"#), missing("aud"));
        assert_eq!(claims(r#"{"aud":null,"exp":1}"#), missing("aud"));
        assert_eq!(claims(r#"{"aud":"x","exp":1}"#), Err(TokenError::Audience));
        assert_eq!(claims(r#"{"aud":[],"exp":1}"#), Err(TokenError::Audience));
        assert_eq!(claims(r#"{"aud":["api",1],"exp":1}"#), invalid("aud"));
        assert_eq!(claims(r#"{"aud":5,"exp":1}"#), invalid("aud"));
        assert_eq!(claims(r#"{"aud":{"api":1},"exp":1}"#), invalid("aud"));
    }
}
