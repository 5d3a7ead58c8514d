//! Bearer JWT verification: algorithm allowlist, issuer, key by `kid`, signature, `aud`,
//! `exp`/`nbf` with leeway, required claims; then the facts policies need (scopes, client,
//! delegation, RFC 8705 confirmation).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls_pki_types::UnixTime;
use serde_json::{Map, Value};

use super::jwks::{KeySet, RemoteKeys, VerifyingKey};
use super::spiffe::SpiffeId;
use super::status_list::{ListVerifier, StatusLists, StatusRef, status_ref};

mod jws;

use jws::{Header, Parts};

/// Largest bearer token accepted; real tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How an issuer signals that an app acts for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delegation {
    /// The safe default: an RFC 8693 `act` claim, or a `sub` that differs from the client (a
    /// user's token presented by the app), or no client claim at all, makes a token delegated.
    ActOrSubject,
    /// Only an `act` claim makes a token delegated; a `sub` that differs from the client is the
    /// app's own subject id (issuers whose app tokens carry, say, a service principal's object
    /// id). An explicit choice in the issuer's config, never a default.
    ActClaimOnly,
}

/// The JWT `typ` values of an access token (RFC 7519 §5.1, RFC 9068 §2.1), compared
/// case-insensitively with an optional `application/` prefix (RFC 7515 §4.1.9). Other JWTs
/// signed by the same keys (status lists, DPoP proofs, ID tokens) are not access tokens.
const ACCESS_TOKEN_TYPES: [&str; 2] = ["jwt", "at+jwt"];

/// One trusted token issuer.
pub struct Issuer {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted `aud` values (any one must match).
    pub audiences: Vec<String>,
    /// Public keys from the issuer's JWKS (for a fetched one, as of the snapshot's build).
    pub keys: Arc<KeySet>,
    /// For an issuer whose keys are fetched: how fresh they are, and where to ask for more.
    pub remote: Option<Arc<RemoteKeys>>,
    /// The status lists its tokens may name, when the config allows any.
    pub status_lists: Option<Arc<StatusLists>>,
    /// Shared secret for HMAC algorithms, when configured.
    pub hmac_secret: Option<VerifyingKey>,
    /// Claims that must be present besides `iss`, `aud`, `exp`.
    pub required_claims: Vec<String>,
    /// Reject tokens without `cnf.x5t#S256`.
    pub require_binding: bool,
    /// Delegation rule.
    pub delegation: Delegation,
    /// Claims that name the client, tried in order.
    pub client_claims: Vec<String>,
    /// Users appear as `User::"<sub>"` rather than `User::"<iss>#<sub>"`; config allows it for
    /// one issuer at most, so two issuers' users can never be confused.
    pub unqualified_users: bool,
    /// Clock skew allowance, seconds (also applied to `iat`).
    pub leeway_seconds: u64,
    /// The allowed algorithms (never empty, never `none`, HMAC only with a secret).
    algorithms: Vec<Algorithm>,
}

/// All configured issuers, by `iss`.
#[derive(Debug, Default)]
pub struct Issuers {
    by_name: HashMap<String, Issuer>,
    /// JWT-SVIDs, when accepted as bearer tokens.
    svids: Option<JwtSvids>,
}

/// JWT-SVIDs accepted as bearer tokens (SPIFFE JWT-SVID spec): validated against the JWT
/// bundle of the trust domain their `sub` names, and no other.
pub struct JwtSvids {
    audiences: Vec<String>,
    leeway_seconds: u64,
    algorithms: Vec<Algorithm>,
    /// Each allowed trust domain's JWT authorities.
    by_domain: HashMap<String, Arc<KeySet>>,
}

/// The algorithms the JWT-SVID spec allows (§3: RS, ES, PS at 256/384/512; jsonwebtoken has
/// no ES512).
pub const JWT_SVID_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

impl JwtSvids {
    /// JWT-SVIDs for `audiences` (at least one must be in `aud`), signed with one of
    /// `algorithms` by a key of the `by_domain` bundle of the token's trust domain.
    pub fn new(
        audiences: Vec<String>,
        algorithms: &[Algorithm],
        leeway_seconds: u64,
        by_domain: HashMap<String, Arc<KeySet>>,
    ) -> Self {
        Self {
            audiences,
            leeway_seconds,
            algorithms: algorithms
                .iter()
                .copied()
                .filter(|alg| JWT_SVID_ALGORITHMS.contains(alg))
                .collect(),
            by_domain,
        }
    }

    fn verify(
        &self,
        token: &Parts<'_>,
        header: &Header,
        sub: &str,
        now: i64,
    ) -> Result<VerifiedToken, TokenError> {
        // §2: the header holds `alg`, `kid` and `typ` only; `typ` is `JWT` or `JOSE`.
        if header.crit || header.others > 0 {
            return Err(TokenError::Malformed(
                "a JWT-SVID header holds only `alg`, `kid` and `typ`".into(),
            ));
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| t != "JWT" && t != "JOSE")
        {
            return Err(TokenError::Malformed(
                "a JWT-SVID's `typ` is `JWT` or `JOSE`".into(),
            ));
        }
        let id =
            SpiffeId::parse_workload(sub).map_err(|_| TokenError::InvalidClaim("sub".into()))?;
        // The bundle of the subject's own trust domain, and no other (Workload API §5).
        let keys = self
            .by_domain
            .get(id.trust_domain())
            .filter(|keys| !keys.is_empty())
            .ok_or_else(|| TokenError::Issuer(format!("spiffe://{}", id.trust_domain())))?;
        let alg = Algorithm::from_str(&header.alg)
            .map_err(|_| TokenError::Algorithm(header.alg.clone()))?;
        if !self.algorithms.contains(&alg) {
            return Err(TokenError::Algorithm(header.alg.clone()));
        }
        let key = keys.find(header.kid.as_deref(), alg).ok_or_else(|| {
            TokenError::UnknownKey(header.kid.clone().unwrap_or_else(|| "-".into()))
        })?;
        // `sub` chose the keys, so it is present: with `exp` and `aud`, what §3 requires.
        let claims = token.signed_claims(key, alg, &self.audiences)?;
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| TokenError::InvalidClaim("exp".into()))?;
        valid_at(self.leeway_seconds, &claims, expires_at, now)?;
        Ok(VerifiedToken {
            issuer: format!("spiffe://{}", id.trust_domain()),
            subject: Some(id.as_str().to_owned()),
            client_id: Some(id.as_str().to_owned()),
            client_principal: Some(id.as_str().to_owned()),
            scopes: Vec::new(),
            user: None,
            actor: None,
            bound_thumbprint: None,
            require_binding: false,
            valid_until: expires_at,
            svid: Some(id),
            expires_at,
            jti: jti(&claims),
            issued_at: claims.get("iat").and_then(Value::as_i64),
            // No status lists are configured for JWT-SVIDs: one naming a list is refused,
            // never waved through.
            status: status_ref(&claims, None)?,
        })
    }
}

impl std::fmt::Debug for JwtSvids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvids")
            .field("audiences", &self.audiences)
            .field("domains", &self.by_domain)
            .finish_non_exhaustive()
    }
}

/// Facts from a token whose signature and claims checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `iss`.
    pub issuer: String,
    /// `sub`, when present.
    pub subject: Option<String>,
    /// The client (`client_id`/`azp` by default).
    pub client_id: Option<String>,
    /// The Cedar principal for a caller identified by this token alone: `<iss>#<client>`.
    /// Qualified by issuer, and `#` never appears in a SPIFFE ID or DNS name, so no claim can
    /// make a token pass for a workload or for another issuer's client.
    pub client_principal: Option<String>,
    /// Scopes from `scope` (space separated) or `scp` (array), sorted and unique.
    pub scopes: Vec<String>,
    /// The user this token acts for, when delegated: `<iss>#<sub>`, or `<sub>` for the issuer
    /// with `unqualified_users`.
    pub user: Option<String>,
    /// `act.sub`, when an actor is named.
    pub actor: Option<String>,
    /// `cnf.x5t#S256`, decoded.
    pub bound_thumbprint: Option<[u8; 32]>,
    /// The issuer requires binding.
    pub require_binding: bool,
    /// Until when this verification holds, Unix seconds: `exp`, or sooner the moment the
    /// issuer's fetched keys go stale.
    pub valid_until: i64,
    /// For a JWT-SVID, the workload it names (verified against its trust domain's bundle).
    pub svid: Option<SpiffeId>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `jti`, when present: audit records carry only a hash of it.
    pub jti: Option<String>,
    /// `iat`, Unix seconds, when present: revocation can cut a client's tokens off at a moment.
    pub issued_at: Option<i64>,
    /// Its entry in a status list, when `status.status_list` names one: checked per request.
    pub status: Option<StatusRef>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS, bad base64 or JSON, or too large.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// `alg` is `none`, unknown, or not allowed for the issuer.
    #[error("token algorithm `{0}` is not allowed")]
    Algorithm(String),
    /// `iss` is missing or not a configured issuer.
    #[error("token issuer `{0}` is not trusted")]
    Issuer(String),
    /// No key matches the token's `kid` and algorithm.
    #[error("no key for token kid `{0}`")]
    UnknownKey(String),
    /// The issuer's keys are fetched and no fetch has succeeded yet.
    #[error("issuer `{0}` has no key set yet: its JWKS has not been fetched")]
    KeysUnavailable(String),
    /// The issuer's fetched keys are older than its `jwks_max_age_seconds`.
    #[error("issuer `{0}`'s key set is stale: no successful JWKS fetch within its maximum age")]
    KeysStale(String),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    Signature,
    /// Past `exp` (plus leeway).
    #[error("token has expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// No `aud` value is accepted.
    #[error("token audience is not accepted")]
    Audience,
    /// A required claim is absent.
    #[error("token lacks required claim `{0}`")]
    MissingClaim(String),
    /// A claim has the wrong type or format.
    #[error("token claim `{0}` is invalid")]
    InvalidClaim(String),
    /// The issuer requires a certificate-bound token and this one is not.
    #[error("token must be certificate-bound (cnf.x5t#S256)")]
    BindingRequired,
    /// `cnf.x5t#S256` does not match the verified client certificate.
    #[error("token is bound to a different certificate: {0}")]
    BindingMismatch(String),
    /// `cnf` names a proof-of-possession method Tollgate cannot check (e.g. DPoP's `jkt`), so
    /// accepting the token as a bearer token would drop the sender constraint.
    #[error("token requires proof of possession by `cnf.{0}`, which Tollgate cannot verify")]
    UnsupportedConfirmation(String),
}

impl TokenError {
    /// Whether the same token would be refused again under the same snapshot at any later
    /// time: everything but "not valid yet" (time only moves towards `nbf`, and past `exp`).
    /// Binding is judged per request, against the certificate sent with it, and never here.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Self::NotYetValid
                | Self::BindingRequired
                | Self::BindingMismatch(_)
                // A fetch can end these without a new snapshot.
                | Self::KeysUnavailable(_)
                | Self::KeysStale(_)
        )
    }

    /// The same refusal with any text taken from the token cut to [`KEPT_TEXT`] bytes, for
    /// keeping: a remembered refusal must cost a small entry whatever the token carried.
    pub fn bounded(&self) -> Self {
        let cut = |text: &str| -> String {
            if text.len() <= KEPT_TEXT {
                return text.to_owned();
            }
            let end = (0..=KEPT_TEXT)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            format!("{}…", text.get(..end).unwrap_or_default())
        };
        match self {
            Self::Malformed(t) => Self::Malformed(cut(t)),
            Self::Algorithm(t) => Self::Algorithm(cut(t)),
            Self::Issuer(t) => Self::Issuer(cut(t)),
            Self::UnknownKey(t) => Self::UnknownKey(cut(t)),
            Self::KeysUnavailable(t) => Self::KeysUnavailable(cut(t)),
            Self::KeysStale(t) => Self::KeysStale(cut(t)),
            Self::MissingClaim(t) => Self::MissingClaim(cut(t)),
            Self::InvalidClaim(t) => Self::InvalidClaim(cut(t)),
            Self::BindingMismatch(t) => Self::BindingMismatch(cut(t)),
            Self::UnsupportedConfirmation(t) => Self::UnsupportedConfirmation(cut(t)),
            Self::Signature
            | Self::Expired
            | Self::NotYetValid
            | Self::Audience
            | Self::BindingRequired => self.clone(),
        }
    }
}

/// Longest `jti` read from a token; a longer one is no `jti`.
pub const MAX_JTI_BYTES: usize = 256;

/// Most bytes of token-supplied text a remembered refusal keeps.
pub const KEPT_TEXT: usize = 64;

// === impl Issuer ===

impl Issuer {
    /// Builds an issuer; the caller guarantees the allowlist invariants (config does).
    #[expect(
        clippy::too_many_arguments,
        reason = "a plain constructor from validated config"
    )]
    pub fn new(
        issuer: String,
        audiences: Vec<String>,
        algorithms: Vec<Algorithm>,
        keys: Arc<KeySet>,
        hmac_secret: Option<DecodingKey>,
        leeway_seconds: u64,
        required_claims: Vec<String>,
        require_binding: bool,
        delegation: Delegation,
        client_claims: Vec<String>,
        unqualified_users: bool,
    ) -> Self {
        Self {
            issuer,
            audiences,
            keys,
            remote: None,
            status_lists: None,
            hmac_secret: hmac_secret.map(VerifyingKey::new),
            required_claims,
            require_binding,
            delegation,
            client_claims,
            unqualified_users,
            leeway_seconds,
            algorithms,
        }
    }
}

impl Issuer {
    /// The same issuer, its keys fetched at run time and judged by `remote`'s freshness.
    pub fn with_remote(mut self, remote: Arc<RemoteKeys>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The same issuer, its tokens' `status` claims checked against `lists`, which are
    /// verified with this issuer's keys once this issuer is in force ([`Self::activate`]).
    pub fn with_status_lists(mut self, lists: Arc<StatusLists>) -> Self {
        self.status_lists = Some(lists);
        self
    }

    /// Hands this issuer's keys to its status lists' follower. Called when the snapshot
    /// holding it goes into force, never while building: a build that fails must not leave
    /// the shared lists checked with keys that never were.
    pub fn activate(&self) {
        if let Some(lists) = &self.status_lists {
            lists.set_verifier(ListVerifier::new(
                self.issuer.clone(),
                self.keys.clone(),
                self.hmac_secret.as_ref().map(|k| k.decoding().clone()),
                self.algorithms.clone(),
            ));
        }
    }

    /// True while a status list the config names exactly has not arrived (its tokens are
    /// refused `token_status_unavailable` meanwhile); `/readyz` waits for it.
    pub fn awaits_status_lists(&self) -> bool {
        self.status_lists.as_ref().is_some_and(|l| l.awaits_lists())
    }

    /// True while the issuer's keys are fetched and none has arrived yet: `/readyz` waits for
    /// these unless the issuer is optional.
    pub fn awaits_keys(&self) -> bool {
        self.remote
            .as_ref()
            .is_some_and(|r| !r.optional && self.keys.is_empty())
    }
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("keys", &self.keys)
            .field("hmac", &self.hmac_secret.is_some())
            .finish_non_exhaustive()
    }
}

// === impl Issuers ===

impl Issuers {
    /// Collects issuers; later duplicates are the caller's error to report.
    pub fn new(issuers: Vec<Issuer>) -> Self {
        Self {
            by_name: issuers.into_iter().map(|i| (i.issuer.clone(), i)).collect(),
            svids: None,
        }
    }

    /// The same issuers, also accepting JWT-SVIDs as `svids` describes.
    pub fn with_jwt_svids(mut self, svids: JwtSvids) -> Self {
        self.svids = Some(svids);
        self
    }

    /// Puts every issuer's keys in force for its status lists (see [`Issuer::activate`]).
    pub fn activate(&self) {
        self.by_name.values().for_each(Issuer::activate);
    }

    /// Every issuer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Issuer> {
        self.by_name.values()
    }

    /// True when no issuer is configured and JWT-SVIDs are not accepted (tokens are then
    /// always refused).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.svids.is_none()
    }

    /// Verifies a compact JWS at `now` and extracts its facts.
    pub fn verify(&self, token: &str, now: UnixTime) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("token too large".into()));
        }
        let token = Parts::split(token)?;
        let header = token.header()?;
        // Read `iss` (and `sub`) before verifying only to choose the keys; the signature check
        // covers them.
        let unverified = token.addressee()?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let iss = match &unverified.iss {
            Some(Value::String(iss)) => Some(iss.as_str()),
            Some(_) => return Err(TokenError::InvalidClaim("iss".into())),
            None => None,
        };
        // A configured issuer's token, or else a JWT-SVID: its `sub` names a workload, whose
        // trust domain's JWT bundle alone can vouch for it.
        if iss.is_none_or(|iss| !self.by_name.contains_key(iss))
            && let Some(svids) = &self.svids
            && let Some(Value::String(sub)) = &unverified.sub
            && sub.starts_with("spiffe://")
        {
            return svids.verify(&token, &header, sub, now);
        }
        if header.crit {
            return Err(TokenError::Malformed("unsupported `crit` header".into()));
        }
        if let Some(typ) = &header.typ {
            let bare = typ
                .get(..12)
                .filter(|p| p.eq_ignore_ascii_case("application/"))
                .and_then(|_| typ.get(12..))
                .unwrap_or(typ);
            if !ACCESS_TOKEN_TYPES
                .iter()
                .any(|t| t.eq_ignore_ascii_case(bare))
            {
                return Err(TokenError::Malformed(format!(
                    "token type `{typ}` is not an access token (`JWT` or `at+jwt`)"
                )));
            }
        }
        let alg = Algorithm::from_str(&header.alg)
            .map_err(|_| TokenError::Algorithm(header.alg.clone()))?;
        let iss = iss.ok_or_else(|| TokenError::MissingClaim("iss".into()))?;
        let issuer = self
            .by_name
            .get(iss)
            .ok_or_else(|| TokenError::Issuer(iss.to_owned()))?;
        if !issuer.algorithms.contains(&alg) {
            return Err(TokenError::Algorithm(header.alg));
        }
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        // Fetched keys are judged before any key is looked up: none yet, or too old to trust,
        // refuses every token of the issuer, whatever it names.
        let stale_at = match &issuer.remote {
            Some(remote) if !hmac => {
                if issuer.keys.is_empty() {
                    return Err(TokenError::KeysUnavailable(issuer.issuer.clone()));
                }
                let stale_at = remote.stale_at();
                if now >= stale_at {
                    return Err(TokenError::KeysStale(issuer.issuer.clone()));
                }
                stale_at
            }
            _ => i64::MAX,
        };
        let key = if hmac {
            issuer.hmac_secret.as_ref()
        } else {
            issuer.keys.find(header.kid.as_deref(), alg)
        };
        let Some(key) = key else {
            // A key the issuer may have published since the last fetch: ask for an early
            // refetch (the fetcher bounds how often), and refuse this token meanwhile.
            if let Some(remote) = &issuer.remote
                && !hmac
            {
                remote.want_refetch();
            }
            return Err(TokenError::UnknownKey(
                header.kid.clone().unwrap_or_else(|| "-".into()),
            ));
        };

        // `iss` chose the issuer, so it is present and names this one: with `exp` and `aud`,
        // the claims RFC 9068 §2.2 requires of every access token.
        let claims = token.signed_claims(key, alg, &issuer.audiences)?;
        let mut verified = facts(issuer, &claims, now)?;
        verified.valid_until = verified.valid_until.min(stale_at);
        Ok(verified)
    }
}

fn from_jwt_error(kind: ErrorKind, alg: &str) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer("mismatch".into()),
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
        ErrorKind::InvalidClaimFormat(claim) => TokenError::InvalidClaim(claim),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm => TokenError::Algorithm(alg.to_owned()),
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => TokenError::Signature,
        ErrorKind::InvalidToken => TokenError::Malformed("not a compact JWS".into()),
        ErrorKind::Base64(_) => TokenError::Malformed("a part is not base64url".into()),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            TokenError::Malformed("the header or claims are not a JSON object".into())
        }
        _ => TokenError::Malformed("the token could not be decoded".into()),
    }
}

/// Pulls the policy-relevant facts out of verified claims.
fn facts(
    issuer: &Issuer,
    claims: &Map<String, Value>,
    now: i64,
) -> Result<VerifiedToken, TokenError> {
    for name in &issuer.required_claims {
        if !claims.contains_key(name) {
            return Err(TokenError::MissingClaim(name.clone()));
        }
    }
    // Names become principals, sent upstream as header values: a control character cannot be
    // one, and is no part of any real name.
    let string = |name: &str| -> Result<Option<String>, TokenError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.chars().any(char::is_control) => Ok(Some(s.clone())),
            Some(_) => Err(TokenError::InvalidClaim(name.into())),
        }
    };
    let subject = string("sub")?;
    let mut client_id = None;
    for name in &issuer.client_claims {
        if let Some(value) = string(name)? {
            client_id = Some(value);
            break;
        }
    }
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| TokenError::InvalidClaim("exp".into()))?;
    valid_at(issuer.leeway_seconds, claims, expires_at, now)?;
    let actor = match claims.get("act") {
        None => None,
        Some(Value::Object(act)) => match act.get("sub") {
            Some(Value::String(sub)) if !sub.chars().any(char::is_control) => Some(sub.clone()),
            _ => return Err(TokenError::InvalidClaim("act".into())),
        },
        Some(_) => return Err(TokenError::InvalidClaim("act".into())),
    };
    let user = match (&actor, &subject, &client_id) {
        (Some(_), Some(sub), _) => Some(sub),
        (Some(_), None, _) => return Err(TokenError::MissingClaim("sub".into())),
        // No client claim: nothing says an app acts for itself, so it is the user's token.
        (None, Some(sub), None) => Some(sub),
        (None, Some(sub), Some(client))
            if sub != client && issuer.delegation == Delegation::ActOrSubject =>
        {
            Some(sub)
        }
        _ => None,
    };
    let user = match user {
        // `#` separates issuer and subject in qualified names; an unqualified `sub` holding
        // one could spell another issuer's user.
        Some(sub) if issuer.unqualified_users && sub.contains('#') => {
            return Err(TokenError::InvalidClaim("sub".into()));
        }
        Some(sub) if issuer.unqualified_users => Some(sub.clone()),
        Some(sub) => Some(format!("{}#{sub}", issuer.issuer)),
        None => None,
    };
    Ok(VerifiedToken {
        issuer: issuer.issuer.clone(),
        subject,
        client_principal: client_id
            .as_ref()
            .map(|client| format!("{}#{client}", issuer.issuer)),
        client_id,
        scopes: scopes(claims)?,
        user,
        actor,
        bound_thumbprint: confirmation(claims)?,
        require_binding: issuer.require_binding,
        valid_until: expires_at,
        svid: None,
        expires_at,
        jti: jti(claims),
        issued_at: claims.get("iat").and_then(Value::as_i64),
        status: status_ref(claims, issuer.status_lists.as_deref())?,
    })
}

/// `jti` (RFC 7519 §4.1.7) when it is a string of sane length; anything else is no `jti` (it
/// is evidence, not a check).
fn jti(claims: &Map<String, Value>) -> Option<String> {
    claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|jti| jti.len() <= MAX_JTI_BYTES)
        .map(str::to_owned)
}

/// `exp` and `nbf` (RFC 7519 §4.1.4-5) against `now` with the issuer's leeway; `iat` (§4.1.6) is
/// optional, but when present it must be a time, and not in the future beyond the leeway: a
/// token "issued" later than now is a clock or forgery problem.
fn valid_at(
    leeway_seconds: u64,
    claims: &Map<String, Value>,
    expires_at: i64,
    now: i64,
) -> Result<(), TokenError> {
    let leeway = i64::try_from(leeway_seconds).unwrap_or(i64::MAX);
    if expires_at < now.saturating_sub(leeway) {
        return Err(TokenError::Expired);
    }
    let time = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| TokenError::InvalidClaim(name.into())),
    };
    for name in ["nbf", "iat"] {
        if time(name)?.is_some_and(|at| at > now.saturating_add(leeway)) {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(())
}

fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
    let mut out: Vec<String> = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        (Some(_), _) => return Err(TokenError::InvalidClaim("scope".into())),
        (None, Some(Value::Array(items))) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| TokenError::InvalidClaim("scp".into()))?,
        (None, Some(Value::String(s))) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        (None, Some(_)) => return Err(TokenError::InvalidClaim("scp".into())),
        (None, None) => Vec::new(),
    };
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// RFC 7800 / RFC 8705 §3.1: `cnf` is an object; `x5t#S256` is the base64url SHA-256 of the
/// certificate DER. Any other confirmation member (`jkt`, `jwk`, `kid`, …) is a proof Tollgate
/// cannot check, and the token is refused rather than downgraded to a bearer token.
fn confirmation(claims: &Map<String, Value>) -> Result<Option<[u8; 32]>, TokenError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let cnf = cnf
        .as_object()
        .ok_or_else(|| TokenError::InvalidClaim("cnf".into()))?;
    if let Some(method) = cnf.keys().find(|k| *k != "x5t#S256") {
        return Err(TokenError::UnsupportedConfirmation(method.clone()));
    }
    let Some(thumb) = cnf.get("x5t#S256") else {
        return Err(TokenError::InvalidClaim("cnf".into()));
    };
    let bytes = thumb
        .as_str()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .ok_or_else(|| TokenError::InvalidClaim("cnf.x5t#S256".into()))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(Some)
        .map_err(|_| TokenError::InvalidClaim("cnf.x5t#S256".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn issuer(algorithms: Vec<Algorithm>, secret: Option<&[u8]>) -> Issuers {
        Issuers::new(vec![Issuer::new(
            "https://issuer.test".into(),
            vec!["api".into()],
            algorithms,
            Arc::default(),
            secret.map(DecodingKey::from_secret),
            0,
            vec![],
            false,
            Delegation::ActOrSubject,
            vec!["client_id".into(), "azp".into()],
            true,
        )])
    }

    /// Review finding: building an issuer handed its keys to the shared status lists at once,
    /// so a build that then failed left the lists checked with keys never in force.
    #[test]
    fn an_issuers_keys_reach_its_status_lists_only_when_it_is_in_force() {
        let lists = Arc::new(StatusLists::new("https://l/".parse().unwrap()));
        let issuer = issuer(
            vec![Algorithm::HS256],
            Some(b"0123456789abcdef0123456789abcdef"),
        )
        .by_name
        .into_values()
        .next()
        .unwrap()
        .with_status_lists(lists.clone());
        assert!(lists.verifier().is_none());
        issuer.activate();
        assert!(lists.verifier().is_some());
    }

    fn hs256(claims: &Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn time_claims_are_judged_at_the_pipelines_now() {
        let issuers = issuer(vec![Algorithm::HS256], Some(b"s3cret"));
        let token = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":2_000_000_000,
                "nbf":1_900_000_000,"iat":1_950_000_000,"client_id":"web"}),
            b"s3cret",
        );
        let at = |secs: u64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        assert!(issuers.verify(&token, at(1_960_000_000)).is_ok());
        assert_eq!(
            issuers.verify(&token, at(2_000_000_001)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            issuers.verify(&token, at(1_899_999_999)),
            Err(TokenError::NotYetValid)
        );
        // `iat` in the future of `now`, although `nbf` has passed.
        assert_eq!(
            issuers.verify(&token, at(1_920_000_000)),
            Err(TokenError::NotYetValid)
        );
        let bad_nbf = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":2_000_000_000,
                "nbf":"soon"}),
            b"s3cret",
        );
        assert_eq!(
            issuers.verify(&bad_nbf, at(1_960_000_000)),
            Err(TokenError::InvalidClaim("nbf".into()))
        );
    }

    #[test]
    fn extracts_scopes_client_and_delegation() {
        let issuers = issuer(vec![Algorithm::HS256], Some(b"s3cret"));
        let token = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":["x","api"],"exp":now()+60,
                "sub":"alice","client_id":"web","scope":"b a a"}),
            b"s3cret",
        );
        let v = issuers.verify(&token, UnixTime::now()).unwrap();
        assert_eq!(v.scopes, ["a", "b"]);
        assert_eq!(v.client_id.as_deref(), Some("web"));
        assert_eq!(v.user.as_deref(), Some("alice"));

        let app = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":now()+60,
                "sub":"web","azp":"web","scp":["x"]}),
            b"s3cret",
        );
        let v = issuers.verify(&app, UnixTime::now()).unwrap();
        assert_eq!(v.user, None);
        assert_eq!(v.scopes, ["x"]);
    }

    #[test]
    fn refuses_none_hmac_without_secret_and_bad_claims() {
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"iss":"https://issuer.test"}"#)
        );
        let issuers = issuer(vec![Algorithm::ES256], None);
        assert_eq!(
            issuers.verify(&none, UnixTime::now()),
            Err(TokenError::Algorithm("none".into()))
        );
        let token = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":now()+60}),
            b"k",
        );
        assert_eq!(
            issuers.verify(&token, UnixTime::now()),
            Err(TokenError::Algorithm("HS256".into()))
        );

        let issuers = issuer(vec![Algorithm::HS256], Some(b"k"));
        let expired = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":now()-60}),
            b"k",
        );
        assert_eq!(
            issuers.verify(&expired, UnixTime::now()),
            Err(TokenError::Expired)
        );
        let wrong_aud = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"other","exp":now()+60}),
            b"k",
        );
        assert_eq!(
            issuers.verify(&wrong_aud, UnixTime::now()),
            Err(TokenError::Audience)
        );
        let bad_sig = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":now()+60}),
            b"other",
        );
        assert_eq!(
            issuers.verify(&bad_sig, UnixTime::now()),
            Err(TokenError::Signature)
        );
        let bad_scope = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":now()+60,"scope":5}),
            b"k",
        );
        assert_eq!(
            issuers.verify(&bad_scope, UnixTime::now()),
            Err(TokenError::InvalidClaim("scope".into()))
        );
        let unknown = hs256(
            &serde_json::json!({"iss":"https://evil.test","aud":"api","exp":now()+60}),
            b"k",
        );
        assert_eq!(
            issuers.verify(&unknown, UnixTime::now()),
            Err(TokenError::Issuer("https://evil.test".into()))
        );
    }

    /// Review finding: `crit` was refused only at the header reader; nothing checked that
    /// verification acts on it.
    #[test]
    fn a_token_with_crit_is_refused_whatever_it_holds() {
        let issuers = issuer(vec![Algorithm::HS256], Some(b"k"));
        let claims = format!(
            r#"{{"iss":"https://issuer.test","aud":"api","exp":{}}}"#,
            now() + 60
        );
        for header in [
            r#"{"alg":"HS256","crit":["x"],"x":1}"#,
            r#"{"alg":"HS256","crit":null}"#,
        ] {
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(&claims)
            );
            let signature = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &jsonwebtoken::EncodingKey::from_secret(b"k"),
                Algorithm::HS256,
            )
            .unwrap();
            let token = format!("{message}.{signature}");
            assert!(
                matches!(
                    issuers.verify(&token, UnixTime::now()),
                    Err(TokenError::Malformed(why)) if why.contains("crit")
                ),
                "{header}"
            );
        }
    }

    #[test]
    fn reads_cnf_thumbprint() {
        let issuers = issuer(vec![Algorithm::HS256], Some(b"k"));
        let thumb = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let token = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":now()+60,
                "cnf":{"x5t#S256": thumb}}),
            b"k",
        );
        assert_eq!(
            issuers
                .verify(&token, UnixTime::now())
                .unwrap()
                .bound_thumbprint,
            Some([7u8; 32])
        );
        let short = hs256(
            &serde_json::json!({"iss":"https://issuer.test","aud":"api","exp":now()+60,
                "cnf":{"x5t#S256": "AAAA"}}),
            b"k",
        );
        assert_eq!(
            issuers.verify(&short, UnixTime::now()),
            Err(TokenError::InvalidClaim("cnf.x5t#S256".into()))
        );
    }

    proptest! {
        #[test]
        fn garbage_never_verifies(token in "[A-Za-z0-9_.=-]{0,200}") {
            let issuers = issuer(vec![Algorithm::HS256], Some(b"k"));
            prop_assert!(issuers.verify(&token, UnixTime::now()).is_err());
        }
    }
}
