//! The decision as a value, the closed set of reason codes, and the one place where every
//! stage error becomes a reason code, an HTTP status and a challenge.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::evidence::Evidence;
use crate::identity::IdentityError;
use crate::identity::cert::CertError;
use crate::identity::status_list::StatusError;
use crate::identity::token::TokenError;
use crate::mapping::MappingError;
use crate::policy::DecideError;
use crate::snapshot::ResponseSettings;

/// The outcome of one check; the `Authorizer` always produces one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Unique id, echoed to the upstream and in deny bodies and audit records.
    pub decision_id: DecisionId,
    /// The Cedar principal id, once identity succeeded. Shared, as are the policy lists: a
    /// remembered verdict is handed out again on every repeat of its request.
    pub principal: Option<Arc<str>>,
    /// Allow or deny with reason.
    pub outcome: Outcome,
    /// Policies that determined a policy decision.
    pub determining: Arc<[String]>,
    /// Cedar evaluation errors (policies skipped), for audit and `--explain`.
    pub errors: Arc<[String]>,
    /// Who asked for what, for the audit record; kept with the verdict when it is reused, and
    /// moved into the record once the decision is recorded.
    pub evidence: Option<Arc<Evidence>>,
}

/// Allow, or deny with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Let the request through.
    Allow,
    /// Refuse it.
    Deny(Denial),
}

/// A refusal: the code and the human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Reason code (closed set).
    pub reason: ReasonCode,
    /// Detail for logs and the response body.
    pub message: String,
}

/// Every reason a request is denied. Closed on purpose: adding one is an API change, the
/// exhaustive matches below make the compiler ask for its name and status, and [`Self::ALL`]
/// is derived, so docs and metrics cannot miss one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::VariantArray)]
pub enum ReasonCode {
    /// No certificate and no token.
    NoCredentials,
    /// A workload identity is required but missing.
    WorkloadRequired,
    /// A bearer token is required but missing.
    TokenRequired,
    /// Certificate is not parseable PEM/DER.
    CertMalformed,
    /// No path to a trust anchor.
    CertUntrusted,
    /// Certificate expired.
    CertExpired,
    /// Certificate not valid yet.
    CertNotYetValid,
    /// Certificate not valid for client authentication.
    CertUsage,
    /// Certificate key too weak.
    CertWeakKey,
    /// Breaks an X509-SVID leaf rule.
    CertNotSvid,
    /// A CA on the path may not sign certificates.
    CertInvalidCa,
    /// No SPIFFE ID in the certificate.
    SpiffeIdMissing,
    /// The SPIFFE ID is malformed.
    SpiffeIdInvalid,
    /// The trust domain is not allowed.
    TrustDomainNotAllowed,
    /// `x-forwarded-client-cert` does not follow Envoy's grammar.
    XfccInvalid,
    /// A client-certificate header came from a connection no `[[server.trusted_proxies]]`
    /// entry trusts to forward one (HTTP listener).
    CertHeaderUntrusted,
    /// Token or `authorization` header malformed.
    TokenMalformed,
    /// Token algorithm not allowed.
    TokenAlgorithm,
    /// Token issuer not trusted.
    TokenIssuer,
    /// No key for the token's `kid`.
    TokenUnknownKey,
    /// The issuer's keys are fetched and none has arrived yet (fail closed).
    TokenKeysUnavailable,
    /// The issuer's fetched keys are older than their maximum age (fail closed).
    TokenKeysStale,
    /// Token signature invalid.
    TokenSignature,
    /// Token expired.
    TokenExpired,
    /// Token not valid yet.
    TokenNotYetValid,
    /// Token audience not accepted.
    TokenAudience,
    /// A claim is missing or invalid.
    TokenClaims,
    /// A token without a certificate names no client.
    TokenNoClient,
    /// The issuer requires a certificate-bound token.
    TokenBindingRequired,
    /// `cnf.x5t#S256` does not match the certificate.
    TokenBindingMismatch,
    /// `cnf` asks for a proof of possession Tollgate cannot verify (e.g. DPoP `jkt`).
    TokenBindingUnsupported,
    /// The revocation file or the trust domain's CRL withdraws the workload, its certificate,
    /// the token or its client.
    CredentialRevoked,
    /// The trust domain's CRL is past its `nextUpdate` (fail closed).
    CrlExpired,
    /// The token's status list has not been fetched, or its last good copy is too old.
    TokenStatusUnavailable,
    /// `signals.new_access = "deny"`: the (action, resource type) is outside the identity's
    /// reviewed baseline.
    OutsideBaseline,
    /// `signals.volume_spike = "deny"`: the identity is shed for the rest of its spike's window.
    IdentityShed,
    /// Unusable request line (path encoding, method).
    MalformedRequest,
    /// No route for the request.
    NoRoute,
    /// Cedar denied.
    PolicyDenied,
    /// AuthZEN: Cedar does not let this PEP ask about the resource (`authzen.pep_action`).
    PepForbidden,
    /// Anything unexpected; fail closed.
    InternalError,
    /// Shed: the process already has `server.max_concurrent_requests` Checks in flight (Envoy
    /// gets a gRPC error and denies).
    Overloaded,
    /// No answer within `server.request_timeout_ms` (Envoy gets a gRPC error and denies).
    Timeout,
}

/// Decision ids: a per-process random prefix and a counter; unique without a syscall per
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecisionId {
    prefix: u64,
    counter: u64,
}

// === impl Verdict ===

impl Verdict {
    /// An allow.
    pub fn allow(
        principal: String,
        determining: impl Into<Arc<[String]>>,
        errors: impl Into<Arc<[String]>>,
    ) -> Self {
        Self {
            decision_id: DecisionId::next(),
            principal: Some(principal.into()),
            outcome: Outcome::Allow,
            determining: determining.into(),
            errors: errors.into(),
            evidence: None,
        }
    }

    /// A deny.
    pub fn deny(reason: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            decision_id: DecisionId::next(),
            principal: None,
            outcome: Outcome::Deny(Denial {
                reason,
                message: message.into(),
            }),
            determining: Arc::new([]),
            errors: Arc::new([]),
            evidence: None,
        }
    }

    /// True for an allow.
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allow)
    }

    /// The deny reason, if denied.
    pub fn reason(&self) -> Option<ReasonCode> {
        match &self.outcome {
            Outcome::Allow => None,
            Outcome::Deny(d) => Some(d.reason),
        }
    }

    /// JSON body for a denied response: `decision_id`, `reason`, `message`, and with
    /// `expose_policies` the determining `policies`. Written field by field, with serde_json
    /// escaping only the strings that need it: a flood of denials pays for this body on every
    /// request, and serialising a struct cost about 2.5k instructions a body.
    pub fn deny_body(&self, expose_policies: bool) -> String {
        let (reason, message) = match &self.outcome {
            Outcome::Allow => ("allowed", ""),
            Outcome::Deny(d) => (d.reason.as_str(), d.message.as_str()),
        };
        let policies: &[String] = if expose_policies {
            &self.determining
        } else {
            &[]
        };
        let listed: usize = policies.iter().map(|p| p.len() + 3).sum();
        let mut body = Vec::with_capacity(96 + message.len() + listed);
        body.extend_from_slice(br#"{"decision_id":""#);
        body.extend_from_slice(self.decision_id.hex().as_str().as_bytes());
        // Reason codes are lower-case words joined by `_`: nothing to escape.
        body.extend_from_slice(br#"","reason":""#);
        body.extend_from_slice(reason.as_bytes());
        body.extend_from_slice(br#"","message":"#);
        json_string(&mut body, message);
        if let Some((first, rest)) = policies.split_first() {
            body.extend_from_slice(br#","policies":["#);
            json_string(&mut body, first);
            for policy in rest {
                body.push(b',');
                json_string(&mut body, policy);
            }
            body.push(b']');
        }
        body.push(b'}');
        // Written from `&str`s and ASCII: always UTF-8.
        String::from_utf8(body).unwrap_or_default()
    }
}

/// `text` as a JSON string, quoted and escaped, onto `out`.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, text);
}

/// Prefix of headers Tollgate owns; client-sent ones never reach the upstream.
const OWN_HEADER_PREFIX: &str = "x-tollgate-";

/// Headers a client sent under any spelling of Tollgate's own: `x-tollgate-*` and the
/// configured names, with any byte but a letter or digit read as `-`, because CGI, WSGI, Rack,
/// PHP and some nginx setups map `x_tollgate_principal` or `x.tollgate.principal` onto the same
/// variable as `x-tollgate-principal`.
pub fn client_owned_headers<'a>(
    names: impl IntoIterator<Item = &'a str>,
    settings: &ResponseSettings,
) -> Vec<String> {
    let fold = |b: u8| if b.is_ascii_alphanumeric() { b } else { b'-' };
    let folded_eq = |name: &str, own: &str| {
        name.len() == own.len()
            && name
                .bytes()
                .zip(own.bytes())
                .all(|(a, b)| fold(a) == fold(b))
    };
    names
        .into_iter()
        .filter(|k| {
            k.get(..OWN_HEADER_PREFIX.len())
                .is_some_and(|prefix| folded_eq(prefix, OWN_HEADER_PREFIX))
                || folded_eq(k, &settings.principal_header)
                || folded_eq(k, &settings.decision_id_header)
        })
        .map(str::to_owned)
        .collect()
}

// === impl ReasonCode ===

impl ReasonCode {
    /// Every code, in declaration order (derived).
    pub const ALL: &'static [ReasonCode] = <Self as strum::VariantArray>::VARIANTS;

    /// This code's position in [`Self::ALL`], for tables indexed by reason (per-reason
    /// metric handles and log state): the declaration order, which `ALL` follows.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The wire name, e.g. `token_expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCredentials => "no_credentials",
            Self::WorkloadRequired => "workload_required",
            Self::TokenRequired => "token_required",
            Self::CertMalformed => "cert_malformed",
            Self::CertUntrusted => "cert_untrusted",
            Self::CertExpired => "cert_expired",
            Self::CertNotYetValid => "cert_not_yet_valid",
            Self::CertUsage => "cert_usage",
            Self::CertWeakKey => "cert_weak_key",
            Self::CertNotSvid => "cert_not_svid",
            Self::CertInvalidCa => "cert_invalid_ca",
            Self::SpiffeIdMissing => "spiffe_id_missing",
            Self::SpiffeIdInvalid => "spiffe_id_invalid",
            Self::TrustDomainNotAllowed => "trust_domain_not_allowed",
            Self::XfccInvalid => "xfcc_invalid",
            Self::CertHeaderUntrusted => "cert_header_untrusted",
            Self::TokenMalformed => "token_malformed",
            Self::TokenAlgorithm => "token_algorithm",
            Self::TokenIssuer => "token_issuer",
            Self::TokenUnknownKey => "token_unknown_key",
            Self::TokenKeysUnavailable => "token_keys_unavailable",
            Self::TokenKeysStale => "token_keys_stale",
            Self::TokenSignature => "token_signature",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenAudience => "token_audience",
            Self::TokenClaims => "token_claims",
            Self::TokenNoClient => "token_no_client",
            Self::TokenBindingRequired => "token_binding_required",
            Self::TokenBindingMismatch => "token_binding_mismatch",
            Self::TokenBindingUnsupported => "token_binding_unsupported",
            Self::CredentialRevoked => "credential_revoked",
            Self::CrlExpired => "crl_expired",
            Self::TokenStatusUnavailable => "token_status_unavailable",
            Self::OutsideBaseline => "outside_baseline",
            Self::IdentityShed => "identity_shed",
            Self::MalformedRequest => "malformed_request",
            Self::NoRoute => "no_route",
            Self::PolicyDenied => "policy_denied",
            Self::PepForbidden => "pep_forbidden",
            Self::InternalError => "internal_error",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
        }
    }

    /// What kind of failure this is; decides status and challenge.
    pub fn class(self) -> FailureClass {
        match self {
            Self::NoCredentials | Self::WorkloadRequired | Self::TokenRequired => {
                FailureClass::Unauthenticated
            }
            Self::CertMalformed
            | Self::CertUntrusted
            | Self::CertExpired
            | Self::CertNotYetValid
            | Self::CertUsage
            | Self::CertWeakKey
            | Self::CertNotSvid
            | Self::CertInvalidCa
            | Self::SpiffeIdMissing
            | Self::SpiffeIdInvalid
            | Self::TrustDomainNotAllowed
            | Self::XfccInvalid
            | Self::CertHeaderUntrusted
            // A revoked workload or token alike: 401 with the bare challenge (an
            // `invalid_token` one would misname a revoked certificate).
            | Self::CredentialRevoked => FailureClass::BadCertificate,
            Self::TokenMalformed
            | Self::TokenAlgorithm
            | Self::TokenIssuer
            | Self::TokenUnknownKey
            | Self::TokenSignature
            | Self::TokenExpired
            | Self::TokenNotYetValid
            | Self::TokenAudience
            | Self::TokenClaims
            | Self::TokenNoClient
            | Self::TokenBindingRequired
            | Self::TokenBindingMismatch
            | Self::TokenBindingUnsupported => FailureClass::BadToken,
            Self::MalformedRequest => FailureClass::Malformed,
            Self::NoRoute | Self::PolicyDenied | Self::PepForbidden | Self::OutsideBaseline => {
                FailureClass::Forbidden
            }
            Self::IdentityShed => FailureClass::Throttled,
            // Tollgate cannot judge the token, through no fault of the caller's: a new token
            // would not help, so not a 401.
            Self::TokenKeysUnavailable
            | Self::TokenKeysStale
            | Self::CrlExpired
            | Self::TokenStatusUnavailable
            | Self::InternalError
            | Self::Overloaded
            | Self::Timeout => FailureClass::Internal,
        }
    }

    /// HTTP status for the denied response (DESIGN §4); `internal_status` is configurable.
    pub fn http_status(self, internal_status: u16) -> u16 {
        match self.class() {
            FailureClass::Unauthenticated
            | FailureClass::BadCertificate
            | FailureClass::BadToken => 401,
            FailureClass::Malformed => 400,
            FailureClass::Forbidden => 403,
            FailureClass::Throttled => 429,
            FailureClass::Internal => internal_status,
        }
    }

    /// `www-authenticate` value for 401s. RFC 6750 §3.1: a request without credentials gets a
    /// bare challenge; a failed token gets `error="invalid_token"`; RFC 7235 §3.1 requires a
    /// challenge on every 401, so a failed certificate gets the bare one too.
    pub fn challenge(self) -> Option<&'static str> {
        match self.class() {
            FailureClass::BadToken => Some("Bearer realm=\"tollgate\", error=\"invalid_token\""),
            FailureClass::Unauthenticated | FailureClass::BadCertificate => {
                Some("Bearer realm=\"tollgate\"")
            }
            FailureClass::Malformed
            | FailureClass::Forbidden
            | FailureClass::Throttled
            | FailureClass::Internal => None,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Broad failure classes that share a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Nothing to authenticate with.
    Unauthenticated,
    /// Workload identity refused.
    BadCertificate,
    /// Token refused.
    BadToken,
    /// Request unusable.
    Malformed,
    /// Authenticated but not permitted.
    Forbidden,
    /// Authenticated, and shed for calling far more than usual.
    Throttled,
    /// Tollgate failed; denied anyway.
    Internal,
}

// === the one error → reason mapping ===

impl From<&IdentityError> for ReasonCode {
    fn from(error: &IdentityError) -> Self {
        match error {
            IdentityError::NoCredentials => Self::NoCredentials,
            IdentityError::WorkloadRequired => Self::WorkloadRequired,
            IdentityError::TokenRequired => Self::TokenRequired,
            IdentityError::Certificate(e) => e.into(),
            IdentityError::Token(e) => e.into(),
            IdentityError::AuthorizationScheme => Self::TokenMalformed,
            IdentityError::Xfcc(_) => Self::XfccInvalid,
            IdentityError::XfccNoUri => Self::SpiffeIdMissing,
            IdentityError::XfccUris(_) => Self::CertNotSvid,
            IdentityError::SpiffeId { .. } => Self::SpiffeIdInvalid,
            IdentityError::TrustDomainNotAllowed(_) => Self::TrustDomainNotAllowed,
            IdentityError::NoClient => Self::TokenNoClient,
            IdentityError::Revoked(_) => Self::CredentialRevoked,
            IdentityError::TokenStatus(StatusError::NotValid { .. }) => Self::CredentialRevoked,
            IdentityError::TokenStatus(StatusError::Unavailable { .. }) => {
                Self::TokenStatusUnavailable
            }
        }
    }
}

impl From<&CertError> for ReasonCode {
    fn from(error: &CertError) -> Self {
        match error {
            CertError::Malformed(_) => Self::CertMalformed,
            CertError::Untrusted(_) => Self::CertUntrusted,
            CertError::Expired { .. } => Self::CertExpired,
            CertError::NotYetValid { .. } => Self::CertNotYetValid,
            CertError::Usage => Self::CertUsage,
            CertError::WeakKey(_) => Self::CertWeakKey,
            CertError::NotSvid(_) => Self::CertNotSvid,
            CertError::InvalidCa(_) => Self::CertInvalidCa,
            CertError::SpiffeIdMissing => Self::SpiffeIdMissing,
            CertError::SpiffeIdInvalid { .. } => Self::SpiffeIdInvalid,
            CertError::TrustDomainNotAllowed(_) => Self::TrustDomainNotAllowed,
            CertError::Revoked => Self::CredentialRevoked,
            CertError::CrlExpired { .. } => Self::CrlExpired,
        }
    }
}

impl From<&TokenError> for ReasonCode {
    fn from(error: &TokenError) -> Self {
        match error {
            TokenError::Malformed(_) => Self::TokenMalformed,
            TokenError::Algorithm(_) => Self::TokenAlgorithm,
            TokenError::Issuer(_) => Self::TokenIssuer,
            TokenError::UnknownKey(_) => Self::TokenUnknownKey,
            TokenError::KeysUnavailable(_) => Self::TokenKeysUnavailable,
            TokenError::KeysStale(_) => Self::TokenKeysStale,
            TokenError::Signature => Self::TokenSignature,
            TokenError::Expired => Self::TokenExpired,
            TokenError::NotYetValid => Self::TokenNotYetValid,
            TokenError::Audience => Self::TokenAudience,
            TokenError::MissingClaim(_) | TokenError::InvalidClaim(_) => Self::TokenClaims,
            TokenError::BindingRequired => Self::TokenBindingRequired,
            TokenError::BindingMismatch(_) => Self::TokenBindingMismatch,
            TokenError::UnsupportedConfirmation(_) => Self::TokenBindingUnsupported,
        }
    }
}

impl From<&MappingError> for ReasonCode {
    fn from(error: &MappingError) -> Self {
        match error {
            MappingError::Method(_) | MappingError::Path(_) => Self::MalformedRequest,
            MappingError::NoRoute { .. } => Self::NoRoute,
        }
    }
}

impl From<&DecideError> for ReasonCode {
    fn from(error: &DecideError) -> Self {
        match error {
            DecideError::Entity(_) | DecideError::Request(_) => Self::InternalError,
        }
    }
}

// === impl DecisionId ===

impl DecisionId {
    /// The next id. Each thread takes counter values from the shared counter a block at a time,
    /// so workers do not contend for one cache line on every request; ids stay unique, though
    /// not ordered across threads.
    pub fn next() -> Self {
        const BLOCK: u64 = 1024;
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            /// The next value this thread hands out, and the end of its block.
            static BLOCK_LEFT: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
        }
        let prefix = *PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 8];
            // A failed RNG only weakens cross-process uniqueness; the counter keeps ids unique.
            let _ = aws_lc_rs::rand::fill(&mut bytes);
            u64::from_le_bytes(bytes)
        });
        let counter = BLOCK_LEFT.with(|left| {
            let (mut next, mut end) = left.get();
            if next == end {
                next = COUNTER.fetch_add(BLOCK, Ordering::Relaxed);
                end = next.wrapping_add(BLOCK);
            }
            left.set((next.wrapping_add(1), end));
            next
        });
        Self { prefix, counter }
    }

    /// The id as 32 lower-case hex digits, without the formatting machinery.
    pub fn hex(&self) -> DecisionHex {
        let mut bytes = [0u8; 16];
        let (high, low) = bytes.split_at_mut(8);
        high.copy_from_slice(&self.prefix.to_be_bytes());
        low.copy_from_slice(&self.counter.to_be_bytes());
        let mut digits = [0u8; 32];
        // 16 bytes always fit 32 digits.
        let _ = hex::encode_to_slice(bytes, &mut digits);
        DecisionHex(digits)
    }
}

/// A [`DecisionId`] written out, on the stack.
#[derive(Debug, Clone, Copy)]
pub struct DecisionHex([u8; 32]);

impl DecisionHex {
    /// The digits.
    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for DecisionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::CheckInput;

    #[test]
    fn the_readme_lists_every_code() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("codes are a closed set:")
            .nth(1)
            .expect("README has the reason-code table");
        for code in ReasonCode::ALL {
            let name = format!("`{}`", code.as_str());
            assert!(table.contains(&name), "README lacks {name}");
        }
    }

    /// Review finding: CGI, PHP and the like map every non-alphanumeric byte of a header name
    /// to `_`, so `x.tollgate.principal` reads as the principal header there too.
    #[test]
    fn every_spelling_of_an_own_header_is_the_clients() {
        let settings = ResponseSettings {
            principal_header: "x-tollgate-principal".into(),
            decision_id_header: "x-tollgate-decision-id".into(),
            strip_authorization: false,
            expose_policy_ids: true,
            internal_error_status: 503,
        };
        let mut input = CheckInput::default();
        for name in [
            "x.tollgate.principal",
            "x_tollgate_admin",
            "x~tollgate~decision~id",
            "x-other",
        ] {
            input.insert_header(name, "v");
        }
        let mut own = client_owned_headers(input.headers.keys().map(String::as_str), &settings);
        own.sort();
        assert_eq!(
            own,
            [
                "x.tollgate.principal",
                "x_tollgate_admin",
                "x~tollgate~decision~id"
            ]
        );
    }

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut names: Vec<_> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ReasonCode::ALL.len());
    }

    #[test]
    fn statuses_and_challenges() {
        assert_eq!(ReasonCode::TokenExpired.http_status(500), 401);
        assert!(
            ReasonCode::TokenExpired
                .challenge()
                .unwrap()
                .contains("invalid_token")
        );
        assert_eq!(
            ReasonCode::CertExpired.challenge(),
            Some("Bearer realm=\"tollgate\"")
        );
        assert_eq!(ReasonCode::PolicyDenied.http_status(500), 403);
        assert_eq!(ReasonCode::PolicyDenied.challenge(), None);
        assert_eq!(ReasonCode::MalformedRequest.http_status(500), 400);
        assert_eq!(ReasonCode::InternalError.http_status(503), 503);
    }

    #[test]
    fn decision_ids_are_unique() {
        let a = DecisionId::next();
        let b = DecisionId::next();
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn decision_ids_are_32_hex_digits_and_unique_across_threads() {
        let id = DecisionId {
            prefix: 0x0123_4567_89ab_cdef,
            counter: 42,
        };
        assert_eq!(id.to_string(), "0123456789abcdef000000000000002a");
        let ids: Vec<DecisionId> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..3_000).map(|_| DecisionId::next()).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "every id once, blocks included");
    }

    proptest::proptest! {
        /// The body written field by field is byte for byte what serialising the fields as a
        /// struct gives (the way it was written before), for any message and policy ids.
        #[test]
        fn deny_body_is_what_serde_writes(
            reason in 0..ReasonCode::ALL.len(),
            message in "\\PC{0,80}|[\"\\\\\u{0}-\u{1f}\u{7f}a]{0,20}",
            determining in proptest::collection::vec("\\PC{0,20}|[\"\\\\\u{0}-\u{1f}]{0,5}", 0..3),
            expose in proptest::bool::ANY,
        ) {
            #[derive(serde::Serialize)]
            struct Body<'a> {
                decision_id: &'a str,
                reason: &'a str,
                message: &'a str,
                #[serde(skip_serializing_if = "<[String]>::is_empty")]
                policies: &'a [String],
            }
            let mut v = Verdict::deny(ReasonCode::ALL[reason], message.clone());
            v.determining = determining.into();
            let expected = serde_json::to_string(&Body {
                decision_id: v.decision_id.hex().as_str(),
                reason: ReasonCode::ALL[reason].as_str(),
                message: &message,
                policies: if expose { &v.determining } else { &[] },
            })
            .unwrap();
            proptest::prop_assert_eq!(v.deny_body(expose), expected);
        }
    }

    #[test]
    fn deny_body_is_json_with_reason() {
        let mut v = Verdict::deny(ReasonCode::PolicyDenied, "no permit");
        v.determining = Arc::new(["p1".into()]);
        let body: serde_json::Value = serde_json::from_str(&v.deny_body(true)).unwrap();
        assert_eq!(body["reason"], "policy_denied");
        assert_eq!(body["policies"][0], "p1");
        let hidden: serde_json::Value = serde_json::from_str(&v.deny_body(false)).unwrap();
        assert!(hidden.get("policies").is_none());
    }
}
