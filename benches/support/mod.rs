//! What the benchmarks share: the test suite's PKI and token minter (by path), and an identity
//! configuration that trusts them.

#[path = "../../tests/support/jwt.rs"]
pub mod jwt;
#[path = "../../tests/support/pki.rs"]
pub mod pki;

use jsonwebtoken::Algorithm;
use tollgate::identity::cert::{TrustDomainBundle, TrustStore};
use tollgate::identity::jwks::KeySet;
use tollgate::identity::token::{Delegation, Issuer, Issuers};
use tollgate::identity::{Identity, IdentitySource};

/// Trusts `ca` for the test trust domain and `tokens` for RS256, ES256 and EdDSA.
pub fn identity(ca: &pki::Ca, tokens: &jwt::TokenIssuer) -> Identity {
    let trust = TrustStore::new(
        &[TrustDomainBundle {
            trust_domain: pki::TRUST_DOMAIN.into(),
            authorities: tollgate::identity::cert::parse_pem_certificates(ca.pem.as_bytes())
                .unwrap(),
            crls: vec![],
        }],
        vec![],
        2048,
        false,
    )
    .unwrap();
    let issuer = Issuer::new(
        jwt::ISSUER.into(),
        vec![jwt::AUDIENCE.into()],
        vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        std::sync::Arc::new(KeySet::from_json(&tokens.jwks()).unwrap()),
        None,
        30,
        vec![],
        false,
        Delegation::ActOrSubject,
        vec!["client_id".into()],
        true,
    );
    Identity {
        source: IdentitySource::Certificate,
        trust,
        trust_domains: vec![pki::TRUST_DOMAIN.into()],
        issuers: Issuers::new(vec![issuer]),
        require_workload: false,
        require_token: false,
        revocations: Default::default(),
    }
}
