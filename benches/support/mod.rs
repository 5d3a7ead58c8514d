//! What the benchmarks share: the test suite's PKI and token minter (by path), and an identity
//! configuration that trusts them.

#[path = "../../tests/support/jwt.rs"]
pub mod jwt;
#[path = "../../tests/support/pki.rs"]
pub mod pki;

use jsonwebtoken::Algorithm;
use tollgate::identity::cert::TrustStore;
use tollgate::identity::jwks::KeySet;
use tollgate::identity::token::{Delegation, Issuer, Issuers};
use tollgate::identity::{Identity, IdentitySource};

/// Trusts `ca` for the test trust domain and `tokens` for RS256, ES256 and EdDSA.
pub fn identity(ca: &pki::Ca, tokens: &jwt::TokenIssuer) -> Identity {
    let anchors = tollgate::identity::cert::parse_pem_certificates(ca.pem.as_bytes()).unwrap();
    let trust = TrustStore::new(
        &anchors,
        vec![],
        vec![pki::TRUST_DOMAIN.into()],
        2048,
        false,
    )
    .unwrap();
    let issuer = Issuer::new(
        jwt::ISSUER.into(),
        vec![jwt::AUDIENCE.into()],
        vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        KeySet::from_json(&tokens.jwks()).unwrap(),
        None,
        30,
        vec![],
        false,
        Delegation::ActClaim,
        vec!["client_id".into()],
    );
    Identity {
        source: IdentitySource::Certificate,
        trust,
        trust_domains: vec![pki::TRUST_DOMAIN.into()],
        issuers: Issuers::new(vec![issuer]),
        require_workload: false,
        require_token: false,
    }
}
