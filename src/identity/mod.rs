//! Who is calling: the workload (certificate, XFCC, or Envoy's principal) and the bearer token,
//! combined into one [`Caller`] with its access mode.

pub mod binding;
pub mod bundle;
pub mod cert;
pub mod jwks;
mod memo;
pub mod revocation;
pub mod spiffe;
pub mod status_list;
pub mod token;
pub mod xfcc;

use std::sync::Arc;

use aws_lc_rs::digest;
use rustls_pki_types::UnixTime;

use crate::cache::{Lookup, TtlCache};
use crate::metrics::CacheMetrics;
use crate::request::CheckInput;
use cert::{CertError, TrustStore, VerifiedCert, WorkloadName};
use spiffe::{SpiffeId, SpiffeIdError};
use token::{Issuers, TokenError, VerifiedToken};

/// Where the workload identity comes from; a per-listener trust decision (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// Verify `source.certificate` (Envoy's `include_peer_certificate`).
    Certificate,
    /// Trust the last element of `x-forwarded-client-cert`, added by the nearest proxy.
    Xfcc,
    /// Trust `source.principal`, which Envoy derived after its own TLS validation (Istio).
    EnvoyPrincipal,
}

/// Everything identity verification needs from a snapshot.
#[derive(Debug)]
pub struct Identity {
    /// Workload identity source.
    pub source: IdentitySource,
    /// Trust anchors and leaf rules for certificates.
    pub trust: TrustStore,
    /// Trust domains accepted from XFCC and Envoy principals.
    pub trust_domains: Vec<String>,
    /// Token issuers.
    pub issuers: Issuers,
    /// Refuse requests without a workload identity, even with a valid token.
    pub require_workload: bool,
    /// Refuse requests without a bearer token, even with a workload identity.
    pub require_token: bool,
    /// Credentials and identities withdrawn (the revocation file; empty without one). Shared,
    /// so an identity-only renewal can keep the last good list.
    pub revocations: Arc<revocation::Revocations>,
}

/// How the caller acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// The app acts for itself.
    AppOnly,
    /// The app acts for a user named in the token.
    Delegated,
}

impl AccessMode {
    /// Delegated when the token names a user it acts for (RFC 8693 `act`, or the issuer's
    /// `sub` rule); app-only otherwise, including without a token.
    pub fn for_token(token: Option<&VerifiedToken>) -> Self {
        match token.and_then(|t| t.user.as_ref()) {
            Some(_) => Self::Delegated,
            None => Self::AppOnly,
        }
    }
}

/// The verified workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its name (SPIFFE ID, or DNS SAN under the fallback).
    pub name: WorkloadName,
    /// Certificate thumbprint, when known (certificate and XFCC sources).
    pub thumbprint: Option<[u8; 32]>,
    /// Certificate serial, when verified here.
    pub serial: Option<String>,
    /// The certificate's issuer name, when verified here.
    pub issuer: Option<String>,
    /// End of validity of the verified certificate path, Unix seconds, when verified here.
    pub not_after: Option<i64>,
    /// Start of the leaf's validity, Unix seconds, when verified here.
    pub not_before: Option<i64>,
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The Cedar principal id: the workload's name, or the token's client.
    pub principal: String,
    /// The workload, when one was identified.
    pub workload: Option<Workload>,
    /// The token, when one was presented and verified.
    pub token: Option<Arc<VerifiedToken>>,
    /// The token is bound to the workload's certificate (RFC 8705).
    pub bound: bool,
    /// App-only or delegated.
    pub mode: AccessMode,
    /// Unix seconds until which this identification may be reused: the earliest expiry of the
    /// verified credentials and of the cache entries they came from (`i64::MAX`: no limit).
    pub valid_until: i64,
}

/// Why the caller could not be identified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Neither a workload identity nor a token.
    #[error("no credentials: send a client certificate or a bearer token")]
    NoCredentials,
    /// A workload identity is required and none was presented.
    #[error("a workload identity (client certificate) is required")]
    WorkloadRequired,
    /// A bearer token is required and none was presented.
    #[error("a bearer token is required")]
    TokenRequired,
    /// The certificate was refused.
    #[error(transparent)]
    Certificate(#[from] CertError),
    /// The token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The `authorization` header is not `Bearer <token>`.
    #[error("authorization header is not a bearer token")]
    AuthorizationScheme,
    /// The XFCC header does not follow Envoy's grammar.
    #[error("x-forwarded-client-cert is invalid: {0}")]
    Xfcc(#[from] xfcc::XfccError),
    /// The nearest XFCC element has no `URI=`: no SPIFFE ID, as a certificate without a URI SAN.
    #[error("x-forwarded-client-cert's nearest element names no SPIFFE ID (no `URI=`)")]
    XfccNoUri,
    /// The nearest XFCC element has several `URI=`: not an X509-SVID.
    #[error("x-forwarded-client-cert's nearest element has {0} URIs; an X509-SVID has exactly one")]
    XfccUris(usize),
    /// A SPIFFE ID from XFCC or Envoy's peer principal breaks the SPIFFE ID rules.
    #[error("{from} `{id}` is not a workload SPIFFE ID: {reason}")]
    SpiffeId {
        /// Where it came from, as a reader of the log knows it.
        from: &'static str,
        /// As sent.
        id: String,
        /// The rule it breaks.
        reason: SpiffeIdError,
    },
    /// The SPIFFE ID's trust domain is not configured (any source).
    #[error("trust domain `{0}` is not allowed")]
    TrustDomainNotAllowed(String),
    /// A token without a workload must name its client.
    #[error("token names no client (client_id/azp) and no certificate identifies the caller")]
    NoClient,
    /// An entry of the revocation file withdraws the workload or the token.
    #[error("{0}")]
    Revoked(revocation::Revoked),
    /// The token's status list says it is not valid, or cannot be consulted.
    #[error("{0}")]
    TokenStatus(status_list::StatusError),
}

/// SHA-256 of a raw credential: a collision-resistant key, so a cached result can never be
/// reached with a different credential.
pub type Digest = [u8; 32];

/// Verified credentials by digest, so a repeated caller costs a hash lookup; and refused
/// tokens, so a replayed forgery does too instead of a signature check each time.
#[derive(Debug)]
pub struct IdentityCaches {
    certs: TtlCache<Digest, Arc<VerifiedCert>>,
    tokens: TtlCache<Digest, Arc<VerifiedToken>>,
    /// Refusals that cannot change while the snapshot stays (see [`TokenError::is_final`]);
    /// bounded apart from `tokens`, so a flood of forgeries cannot evict good callers.
    refused_tokens: TtlCache<Digest, TokenError>,
    metrics: [CacheMetrics; 3],
    /// This cache set's tag in the per-thread memo ([`memo`]), or `None` when caching is off.
    memo_owner: Option<u64>,
}

impl IdentityCaches {
    /// Caches holding at most `capacity` entries each, for at most `ttl_seconds` (and never
    /// past the credential's own expiry).
    pub fn new(capacity: usize, ttl_seconds: i64) -> Self {
        Self {
            certs: TtlCache::new(capacity, ttl_seconds),
            tokens: TtlCache::new(capacity, ttl_seconds),
            refused_tokens: TtlCache::new(capacity, ttl_seconds),
            metrics: ["certificate", "token", "token_refused"].map(CacheMetrics::new),
            memo_owner: (capacity > 0 && ttl_seconds > 0).then(memo::next_owner),
        }
    }
}

impl IdentityCaches {
    /// Counts a request answered from a verdict remembered for the same credentials as the
    /// cache hits that verdict stood for: a verified certificate, a verified token, a refused
    /// token.
    pub fn reused(&self, certificate: bool, token: bool, refused_token: bool) {
        if certificate {
            self.certs_used(Lookup::HIT);
        }
        if token {
            self.tokens_used(Lookup::HIT);
        }
        if refused_token {
            self.refused_used(Lookup::HIT);
        }
    }

    fn certs_used(&self, lookup: Lookup) {
        let [certs, _, _] = &self.metrics;
        certs.used(lookup);
    }

    fn tokens_used(&self, lookup: Lookup) {
        let [_, tokens, _] = &self.metrics;
        tokens.used(lookup);
    }

    fn refused_used(&self, lookup: Lookup) {
        let [_, _, refused] = &self.metrics;
        refused.used(lookup);
    }
}

/// Verifies the caller's credentials, consulting the caches first.
pub fn verify(
    identity: &Identity,
    caches: &IdentityCaches,
    generation: u64,
    input: &CheckInput,
    now: UnixTime,
) -> Result<Caller, IdentityError> {
    verify_reusable(identity, caches, generation, input, now).map_err(|refusal| refusal.error)
}

/// Why [`verify_reusable`] refused a caller, and until when the verdict caches may answer the
/// same credentials with it again.
#[derive(Debug)]
pub struct Refusal {
    /// Why.
    pub error: IdentityError,
    /// Unix seconds until which the verdict caches may answer the same credentials with the
    /// same refusal under this snapshot: a final certificate refusal, or a final token refusal
    /// seen before (after a workload identity that held). `None` when it may change, and for a
    /// token refused for the first time: that one is kept by the refused-token cache alone,
    /// so a flood of distinct forged tokens, each sent once, costs no copies of its requests
    /// in the per-thread memo of refusals; a replayed one is remembered from its second
    /// sighting.
    pub final_until: Option<i64>,
}

impl From<IdentityError> for Refusal {
    fn from(error: IdentityError) -> Self {
        Self {
            error,
            final_until: None,
        }
    }
}

/// [`verify`], saying of a refusal whether it is final.
pub fn verify_reusable(
    identity: &Identity,
    caches: &IdentityCaches,
    generation: u64,
    input: &CheckInput,
    now: UnixTime,
) -> Result<Caller, Refusal> {
    let (workload, cert_until) = match identity.source {
        IdentitySource::Certificate => certificate(identity, caches, generation, input, now)
            .map_err(|error| certificate_refusal(error, caches, now))?,
        IdentitySource::Xfcc => (forwarded_certificate(identity, input)?, i64::MAX),
        IdentitySource::EnvoyPrincipal => (envoy_principal(identity, input)?, i64::MAX),
    };
    let (token, mut token_until) = match bearer(input)? {
        Some(raw) => match token(identity, caches, generation, raw, now) {
            Ok((token, until)) => (Some(token), until),
            Err((error, seen_before_until)) => {
                return Err(Refusal {
                    error: error.into(),
                    final_until: seen_before_until.map(|until| until.min(cert_until)),
                });
            }
        },
        None => (None, i64::MAX),
    };
    // A JWT-SVID names a workload: the caller's identity when no certificate does, and the
    // same one as the certificate when one does.
    let workload = match (workload, token.as_deref().and_then(|t| t.svid.as_ref())) {
        (None, Some(id)) => Some(Workload {
            name: WorkloadName::Spiffe(id.clone()),
            thumbprint: None,
            serial: None,
            issuer: None,
            not_after: None,
            not_before: None,
        }),
        (Some(w), Some(id)) if !matches!(&w.name, WorkloadName::Spiffe(own) if own == id) => {
            return Err(IdentityError::from(TokenError::InvalidClaim(
                "sub: the JWT-SVID names another workload than the certificate".into(),
            ))
            .into());
        }
        (workload, _) => workload,
    };
    // After every credential is known good, and before anything is built on them.
    if let Some(revoked) = identity
        .revocations
        .check(workload.as_ref(), token.as_deref())
    {
        return Err(IdentityError::Revoked(revoked).into());
    }
    // Per request, cached tokens included: the list may have changed since the token was
    // verified. An answer is kept no longer than the list's next refresh.
    if let Some(status) = token.as_deref().and_then(|t| t.status.as_ref()) {
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let until = status.check(now_secs).map_err(IdentityError::TokenStatus)?;
        token_until = token_until.min(until);
    }
    let bound = match &token {
        Some(t) => binding::check(t, workload.as_ref().and_then(|w| w.thumbprint.as_ref()))
            .map_err(IdentityError::from)?,
        None => false,
    };
    if identity.require_workload && workload.is_none() {
        return Err(IdentityError::WorkloadRequired.into());
    }
    if identity.require_token && token.is_none() {
        return Err(IdentityError::TokenRequired.into());
    }
    let principal = match (&workload, &token) {
        (Some(w), _) => match &w.name {
            WorkloadName::Spiffe(id) => id.as_str().to_owned(),
            WorkloadName::Dns(name) => name.clone(),
        },
        (None, Some(t)) => t.client_principal.clone().ok_or(IdentityError::NoClient)?,
        (None, None) => return Err(IdentityError::NoCredentials.into()),
    };
    let mode = AccessMode::for_token(token.as_deref());
    Ok(Caller {
        principal,
        workload,
        token,
        bound,
        mode,
        valid_until: cert_until.min(token_until),
    })
}

/// Verifies a bearer token, or answers from the caches: a token verified before, or one
/// refused before for a reason that cannot change under this snapshot. Says until when the
/// answer holds: a verified token's cache entry, or a final refusal's when the caches held it
/// already (`None`: not final, or refused for the first time). A final refusal always comes
/// with its kept (cut) text.
fn token(
    identity: &Identity,
    caches: &IdentityCaches,
    generation: u64,
    raw: &str,
    now: UnixTime,
) -> Result<(Arc<VerifiedToken>, i64), (TokenError, Option<i64>)> {
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if let Some(owner) = caches.memo_owner
        && let Some(kept) = memo::token(owner, generation, now_secs, raw)
    {
        caches.tokens_used(Lookup::HIT);
        return Ok(kept);
    }
    if let Some(owner) = caches.memo_owner
        && let Some((refusal, until)) = memo::refusal(owner, generation, now_secs, raw)
    {
        caches.refused_used(Lookup::HIT);
        return Err((refusal, Some(until)));
    }
    let digest = sha256(raw.as_bytes());
    if let Some((refusal, until)) = caches
        .refused_tokens
        .get_until(&digest, generation, now_secs)
    {
        caches.refused_used(Lookup::HIT);
        if let Some(owner) = caches.memo_owner {
            memo::keep_refusal(owner, generation, (now_secs, until), raw, &refusal);
        }
        return Err((refusal, Some(until)));
    }
    let verified = caches
        .tokens
        .get_or_try_insert_until(digest, generation, now_secs, || {
            let verified = identity.issuers.verify(raw, now)?;
            let valid_until = verified.valid_until;
            Ok::<_, TokenError>((Arc::new(verified), valid_until))
        });
    match verified {
        Ok((verified, lookup, until)) => {
            caches.tokens_used(lookup);
            if let Some(owner) = caches.memo_owner {
                memo::keep_token(owner, generation, (now_secs, until), raw, &verified);
            }
            Ok((verified, until))
        }
        Err(refusal) => {
            if !refusal.is_final() {
                return Err((refusal, None));
            }
            // Until the TTL, or a new snapshot (a new key set) judges it afresh.
            let kept = refusal.bounded();
            let evicted =
                caches
                    .refused_tokens
                    .insert(digest, kept.clone(), generation, now_secs, i64::MAX);
            caches.refused_used(Lookup::miss(evicted));
            // A first sighting: remembered further only when it comes again (see `Refusal`).
            // It is given with the kept (cut) text, as the caches will answer it again.
            Err((kept, None))
        }
    }
}

/// A certificate's refusal, final (see [`CertError::is_final`]) for as long as the certificate
/// cache would keep a verified one when its message is short: the verdict caches then answer a
/// retried request with it again, from the first retry (a token's refusal only from its
/// second sighting: see [`Refusal`]), instead of decoding and
/// verifying the same chain on every retry (a client whose certificate expired retries at
/// full speed: each retry cost about 1.8 times an allowed Check). A long message (text taken
/// from the certificate) is not kept: a remembered refusal must be a small entry.
fn certificate_refusal(error: IdentityError, caches: &IdentityCaches, now: UnixTime) -> Refusal {
    let is_final = matches!(&error, IdentityError::Certificate(cert) if cert.is_final())
        && error.to_string().len() <= KEPT_CERT_MESSAGE;
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    Refusal {
        final_until: is_final.then(|| caches.certs.expiry(now_secs, i64::MAX)),
        error,
    }
}

/// Longest certificate refusal message the verdict caches keep (the longest Tollgate writes
/// itself, a CRL's expiry, is about 90 bytes).
const KEPT_CERT_MESSAGE: usize = 160;

fn certificate(
    identity: &Identity,
    caches: &IdentityCaches,
    generation: u64,
    input: &CheckInput,
    now: UnixTime,
) -> Result<(Option<Workload>, i64), IdentityError> {
    if input.certificate.is_empty() {
        return Ok((None, i64::MAX));
    }
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if let Some(owner) = caches.memo_owner
        && let Some((workload, until)) = memo::cert(owner, generation, now_secs, &input.certificate)
    {
        caches.certs_used(Lookup::HIT);
        return Ok((Some(workload), until));
    }
    let (verified, lookup, until) = caches.certs.get_or_try_insert_until(
        sha256(input.certificate.as_bytes()),
        generation,
        now_secs,
        || {
            let verified = identity.trust.verify_forwarded(&input.certificate, now)?;
            let not_after = verified.not_after;
            Ok::<_, IdentityError>((Arc::new(verified), not_after))
        },
    )?;
    caches.certs_used(lookup);
    let workload = Workload {
        name: verified.name.clone(),
        thumbprint: Some(verified.thumbprint),
        serial: Some(verified.serial.clone()),
        issuer: Some(verified.issuer.clone()),
        not_after: Some(verified.not_after),
        not_before: Some(verified.not_before),
    };
    if let Some(owner) = caches.memo_owner {
        memo::keep_cert(
            owner,
            generation,
            (now_secs, until),
            &input.certificate,
            &workload,
        );
    }
    Ok((Some(workload), until))
}

fn forwarded_certificate(
    identity: &Identity,
    input: &CheckInput,
) -> Result<Option<Workload>, IdentityError> {
    let Some(header) = input.header("x-forwarded-client-cert") else {
        return Ok(None);
    };
    let element = xfcc::parse_last(header)?;
    let uri = match element.uris.as_slice() {
        [uri] => uri,
        [] => return Err(IdentityError::XfccNoUri),
        uris => return Err(IdentityError::XfccUris(uris.len())),
    };
    let id = trusted_spiffe_id(identity, uri, "x-forwarded-client-cert URI")?;
    Ok(Some(Workload {
        name: WorkloadName::Spiffe(id),
        thumbprint: element.hash,
        serial: None,
        issuer: None,
        not_after: None,
        not_before: None,
    }))
}

fn envoy_principal(
    identity: &Identity,
    input: &CheckInput,
) -> Result<Option<Workload>, IdentityError> {
    if input.principal.is_empty() {
        return Ok(None);
    }
    let id = trusted_spiffe_id(identity, &input.principal, "Envoy's peer principal")?;
    Ok(Some(Workload {
        name: WorkloadName::Spiffe(id),
        thumbprint: None,
        serial: None,
        issuer: None,
        not_after: None,
        not_before: None,
    }))
}

/// A workload SPIFFE ID in an allowed trust domain, from a source other than a certificate
/// (whose checks, with the same outcomes, are in `cert`).
fn trusted_spiffe_id(
    identity: &Identity,
    uri: &str,
    from: &'static str,
) -> Result<SpiffeId, IdentityError> {
    let id = SpiffeId::parse_workload(uri).map_err(|reason| IdentityError::SpiffeId {
        from,
        id: uri.to_owned(),
        reason,
    })?;
    if identity
        .trust_domains
        .iter()
        .any(|td| td == id.trust_domain())
    {
        Ok(id)
    } else {
        Err(IdentityError::TrustDomainNotAllowed(
            id.trust_domain().to_owned(),
        ))
    }
}

/// The bearer token, if an `authorization` header is present. The scheme is case-insensitive
/// (RFC 7235 §2.1); any other scheme is an error rather than "no token", so a typo fails loudly.
fn bearer(input: &CheckInput) -> Result<Option<&str>, IdentityError> {
    let Some(value) = input.header("authorization") else {
        return Ok(None);
    };
    let value = value.trim();
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(IdentityError::AuthorizationScheme)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(IdentityError::AuthorizationScheme);
    }
    Ok(Some(token))
}

/// The first 16 bytes of SHA-256, hex: how records and revocation messages name a value
/// (a token id, a user) without showing it.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = digest::digest(&digest::SHA256, bytes);
    hex::encode(digest.as_ref().get(..16).unwrap_or_default())
}

/// SHA-256, the digest behind credential cache keys and certificate thumbprints.
pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use token::Issuer;

    fn input_with_auth(value: &str) -> CheckInput {
        let mut input = CheckInput::default();
        input.headers.insert("authorization".into(), value.into());
        input
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict() {
        assert_eq!(bearer(&input_with_auth("Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(
            bearer(&input_with_auth("bEaReR  abc")).unwrap(),
            Some("abc")
        );
        assert_eq!(bearer(&CheckInput::default()).unwrap(), None);
        for bad in ["Basic abc", "Bearer", "Bearer ", "Bearer a b", "abc"] {
            assert_eq!(
                bearer(&input_with_auth(bad)),
                Err(IdentityError::AuthorizationScheme),
                "{bad}"
            );
        }
    }

    /// An identity that takes HS256 tokens from `https://issuer.test` (audience `api`) and
    /// Envoy's peer principal as the workload.
    fn hmac_identity() -> Identity {
        Identity {
            source: IdentitySource::EnvoyPrincipal,
            trust: TrustStore::new(&[], Vec::new(), 2048, false).unwrap(),
            trust_domains: vec!["example.org".into()],
            issuers: Issuers::new(vec![Issuer::new(
                "https://issuer.test".into(),
                vec!["api".into()],
                vec![jsonwebtoken::Algorithm::HS256],
                std::sync::Arc::default(),
                Some(jsonwebtoken::DecodingKey::from_secret(SECRET)),
                0,
                vec![],
                false,
                token::Delegation::ActOrSubject,
                vec!["client_id".into()],
                false,
            )]),
            require_workload: false,
            require_token: false,
            revocations: Arc::default(),
        }
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn hs256(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn a_final_refusal_is_remembered_for_its_generation_and_a_passing_one_is_not() {
        let identity = hmac_identity();
        let caches = IdentityCaches::new(100, 300);
        let now = UnixTime::now();
        let secs = i64::try_from(now.as_secs()).unwrap();
        let good = hs256(
            serde_json::json!({"iss": "https://issuer.test", "aud": "api",
            "exp": secs + 600, "client_id": "web"}),
        );
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"iss": "https://issuer.test", "aud": "api",
                "exp": secs + 600, "client_id": "web"}),
            &jsonwebtoken::EncodingKey::from_secret(b"not the issuer's secret, but as long"),
        )
        .unwrap();
        let early = hs256(
            serde_json::json!({"iss": "https://issuer.test", "aud": "api",
            "exp": secs + 600, "nbf": secs + 300, "client_id": "web"}),
        );
        let refused = |token: &str| {
            caches
                .refused_tokens
                .get(&sha256(token.as_bytes()), 1, secs)
        };
        for _ in 0..2 {
            let e = verify(
                &identity,
                &caches,
                1,
                &input_with_auth(&format!("Bearer {forged}")),
                now,
            );
            assert_eq!(e.unwrap_err(), IdentityError::Token(TokenError::Signature));
        }
        assert_eq!(refused(&forged), Some(TokenError::Signature));
        // Another snapshot (a new key set, say) judges it afresh.
        assert_eq!(
            caches
                .refused_tokens
                .get(&sha256(forged.as_bytes()), 2, secs),
            None
        );
        // Not valid *yet* will pass: never remembered.
        let e = verify(
            &identity,
            &caches,
            1,
            &input_with_auth(&format!("Bearer {early}")),
            now,
        );
        assert_eq!(
            e.unwrap_err(),
            IdentityError::Token(TokenError::NotYetValid)
        );
        assert_eq!(refused(&early), None);
        // And the good token is unaffected.
        assert!(
            verify(
                &identity,
                &caches,
                1,
                &input_with_auth(&format!("Bearer {good}")),
                now
            )
            .is_ok()
        );
    }

    /// The per-thread memo serves a token only while the shared cache would: not past its
    /// `exp`, and not under another snapshot (here, one whose issuer has another secret).
    #[test]
    fn a_remembered_token_is_not_served_past_its_expiry_or_into_another_snapshot() {
        let identity = hmac_identity();
        let caches = IdentityCaches::new(100, 300);
        let now = UnixTime::now();
        let secs = now.as_secs();
        let token = hs256(
            serde_json::json!({"iss": "https://issuer.test", "aud": "api",
            "exp": secs + 5, "client_id": "web"}),
        );
        let input = input_with_auth(&format!("Bearer {token}"));
        for _ in 0..3 {
            assert!(verify(&identity, &caches, 1, &input, now).is_ok());
        }
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs + 6));
        assert_eq!(
            verify(&identity, &caches, 1, &input, later).unwrap_err(),
            IdentityError::Token(TokenError::Expired)
        );
        let mut rotated = hmac_identity();
        rotated.issuers = Issuers::new(vec![Issuer::new(
            "https://issuer.test".into(),
            vec!["api".into()],
            vec![jsonwebtoken::Algorithm::HS256],
            std::sync::Arc::default(),
            Some(jsonwebtoken::DecodingKey::from_secret(
                b"another secret, just as long as it",
            )),
            0,
            vec![],
            false,
            token::Delegation::ActOrSubject,
            vec!["client_id".into()],
            false,
        )]);
        assert_eq!(
            verify(&rotated, &caches, 2, &input, now).unwrap_err(),
            IdentityError::Token(TokenError::Signature)
        );
        // The first snapshot's cache set still answers from its memo, and another set does not.
        assert!(verify(&identity, &caches, 1, &input, now).is_ok());
        let other = IdentityCaches::new(100, 300);
        assert_eq!(
            verify(&rotated, &other, 1, &input, now).unwrap_err(),
            IdentityError::Token(TokenError::Signature)
        );
        // A refusal remembered on this thread is not carried into the snapshot that accepts
        // the key: a token signed with the new secret, refused twice under the old one.
        let signed_new = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"iss": "https://issuer.test", "aud": "api",
                "exp": secs + 600, "client_id": "web"}),
            &jsonwebtoken::EncodingKey::from_secret(b"another secret, just as long as it"),
        )
        .unwrap();
        let input = input_with_auth(&format!("Bearer {signed_new}"));
        for _ in 0..2 {
            assert_eq!(
                verify(&identity, &caches, 1, &input, now).unwrap_err(),
                IdentityError::Token(TokenError::Signature)
            );
        }
        assert!(verify(&rotated, &caches, 2, &input, now).is_ok());
    }

    /// Review finding: a refusal kept the token's own strings (an `iss` of up to the token
    /// size limit), so unsigned junk could fill the cache with ~16 KiB entries.
    #[test]
    fn a_remembered_refusal_keeps_no_more_than_a_short_message() {
        let identity = hmac_identity();
        let caches = IdentityCaches::new(100, 300);
        let now = UnixTime::now();
        let secs = i64::try_from(now.as_secs()).unwrap();
        let long = hs256(serde_json::json!({"iss": "x".repeat(10_000), "aud": "api",
            "exp": secs + 600}));
        let e = verify(
            &identity,
            &caches,
            1,
            &input_with_auth(&format!("Bearer {long}")),
            now,
        );
        assert!(matches!(
            e,
            Err(IdentityError::Token(TokenError::Issuer(_)))
        ));
        let kept = caches
            .refused_tokens
            .get(&sha256(long.as_bytes()), 1, secs)
            .unwrap();
        assert!(
            kept.to_string().len() <= 128,
            "{} bytes kept",
            kept.to_string().len()
        );
        // Cut on a character boundary, whatever the text.
        let TokenError::Issuer(cut) = TokenError::Issuer("é".repeat(100)).bounded() else {
            panic!("the variant changed");
        };
        assert!(cut.len() <= token::KEPT_TEXT + '…'.len_utf8(), "{cut}");
        assert!(cut.ends_with('…'));
    }
}
