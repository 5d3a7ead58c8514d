//! Demo credentials: a workload certificate and a token that the embedded demo estate trusts,
//! so a newcomer can send real requests. The demo keys are public: never trust the demo CA or
//! issuer outside a laptop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::identity::cert::thumbprint;

const DEMO_CA_CERT: &str = include_str!("../deploy/demo/ca.pem");
const DEMO_CA_KEY: &str = include_str!("../deploy/demo/ca.key");
const DEMO_ISSUER_KEY: &str = include_str!("../deploy/demo/issuer.key");
const DEMO_ISSUER: &str = "https://issuer.demo.tollgate.dev";
const DEMO_AUDIENCE: &str = "tollgate-demo";
const DEMO_KID: &str = "demo-2026";
const DEMO_TRUST_DOMAIN: &str = "demo.tollgate.dev";

/// What to mint.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    /// App name; its SPIFFE ID is `spiffe://demo.tollgate.dev/<app>`.
    pub app: String,
    /// Token scopes.
    pub scopes: Vec<String>,
    /// Delegated for this user (`sub`), or app-only when `None`.
    pub user: Option<String>,
    /// Bind the token to the certificate (RFC 8705).
    pub bind: bool,
    /// Lifetime of both (at least a minute).
    pub lifetime: Duration,
}

/// Credentials minted for one app.
pub struct DemoCredentials {
    /// Leaf certificate, PEM.
    pub cert_pem: String,
    /// Leaf private key, PEM.
    pub key_pem: String,
    /// Signed JWT.
    pub token: String,
}

impl DemoCredentials {
    /// A Check of `method path` on the demo's host, with these credentials as Envoy forwards
    /// them (the certificate, and the token as a bearer header): for benchmarks and tests.
    pub fn check_input(&self, method: &str, path: &str) -> crate::request::CheckInput {
        crate::request::CheckInput {
            method: method.into(),
            path: path.into(),
            host: "shop.demo".into(),
            headers: [("authorization".into(), format!("Bearer {}", self.token))]
                .into_iter()
                .collect(),
            certificate: self.cert_pem.clone(),
            ..Default::default()
        }
    }
}

/// Why credentials could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The app name does not make a SPIFFE ID.
    #[error("app `{app}` does not make a valid SPIFFE ID: {source}")]
    App {
        /// As given.
        app: String,
        /// What is wrong with the ID it makes.
        source: crate::identity::spiffe::SpiffeIdError,
    },
    /// Making or signing the certificate failed.
    #[error("{what}: {source}")]
    Certificate {
        /// The step.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// Signing the token failed.
    #[error("{what}: {source}")]
    Token {
        /// The step.
        what: &'static str,
        /// jsonwebtoken's error.
        source: jsonwebtoken::errors::Error,
    },
    /// The clock is before 1970.
    #[error("the system clock is before 1970")]
    Clock,
}

/// Mints a certificate for `spiffe://demo.tollgate.dev/<app>` and a token for it.
pub fn mint(request: &DemoRequest) -> Result<DemoCredentials, MintError> {
    let spiffe_id = format!("spiffe://{DEMO_TRUST_DOMAIN}/{}", request.app);
    crate::identity::spiffe::SpiffeId::parse(&spiffe_id).map_err(|source| MintError::App {
        app: request.app.clone(),
        source,
    })?;
    let certificate = |what| move |source| MintError::Certificate { what, source };
    let lifetime = request.lifetime.max(Duration::from_secs(60));

    let ca_key = KeyPair::from_pem(DEMO_CA_KEY).map_err(certificate("demo CA key"))?;
    let ca = Issuer::from_ca_cert_pem(DEMO_CA_CERT, ca_key).map_err(certificate("demo CA"))?;
    let leaf_key = KeyPair::generate().map_err(certificate("key generation"))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, request.app.clone());
    params.subject_alt_names = vec![SanType::URI(
        spiffe_id
            .clone()
            .try_into()
            .map_err(certificate("the SPIFFE ID as a URI SAN"))?,
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + lifetime;
    let cert = params
        .signed_by(&leaf_key, &ca)
        .map_err(certificate("signing certificate"))?;

    let bound = request
        .bind
        .then(|| URL_SAFE_NO_PAD.encode(thumbprint(cert.der())));
    Ok(DemoCredentials {
        cert_pem: cert.pem(),
        key_pem: leaf_key.serialize_pem(),
        token: TokenMinter::new()?.token(request, bound.as_deref(), None)?,
    })
}

/// Signs demo tokens with the issuer's key parsed once: for a flood of new tokens, where
/// [`mint`]'s certificate and key parse would cost more than the token.
pub struct TokenMinter {
    key: EncodingKey,
    header: Header,
}

impl TokenMinter {
    /// Parses the demo issuer's key.
    pub fn new() -> Result<Self, MintError> {
        let key = EncodingKey::from_ec_pem(DEMO_ISSUER_KEY.as_bytes()).map_err(|source| {
            MintError::Token {
                what: "demo issuer key",
                source,
            }
        })?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(DEMO_KID.into());
        Ok(Self { key, header })
    }

    /// A token for `request`'s app, issued now: bound to the certificate whose SHA-256
    /// thumbprint (base64url) is `bound` when given, and carrying `jti` when given, which makes
    /// two tokens issued in the same second differ.
    pub fn token(
        &self,
        request: &DemoRequest,
        bound: Option<&str>,
        jti: Option<&str>,
    ) -> Result<String, MintError> {
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| MintError::Clock)?
            .as_secs();
        let lifetime = request.lifetime.max(Duration::from_secs(60));
        let mut claims = serde_json::json!({
            "iss": DEMO_ISSUER,
            "aud": DEMO_AUDIENCE,
            "iat": issued_at,
            "exp": issued_at + lifetime.as_secs(),
            "client_id": request.app,
            "sub": request.user.as_deref().unwrap_or(&request.app),
            "scope": request.scopes.join(" "),
        });
        if let Some(object) = claims.as_object_mut() {
            if let Some(thumbprint) = bound {
                object.insert("cnf".into(), serde_json::json!({ "x5t#S256": thumbprint }));
            }
            if let Some(jti) = jti {
                object.insert("jti".into(), jti.into());
            }
        }
        jsonwebtoken::encode(&self.header, &claims, &self.key).map_err(|source| MintError::Token {
            what: "signing token",
            source,
        })
    }
}
