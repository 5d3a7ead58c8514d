//! JWT-SVIDs as bearer tokens (SPIFFE JWT-SVID spec), their keys from a SPIFFE bundle file's
//! `jwt-svid` entries: the `sub` is the workload when no certificate names one, the bundle of
//! the subject's own trust domain alone can vouch for it, `aud` and `exp` are required, and the
//! header holds nothing but `alg`, `kid` and `typ` (`JWT` or `JOSE`).

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

use crate::support::copy_policies;
use crate::support::jwt::{TokenIssuer, now};
use crate::support::pki::{Ca, TRUST_DOMAIN};
use crate::support::server::{Answer, Options, Req, TestServer};

const PARTNER: &str = "partner.example";

/// A SPIFFE bundle: `ca` as the X.509 authority, `keys`' JWKS as the JWT authorities.
fn spiffe_bundle(ca: &Ca, keys: &TokenIssuer) -> String {
    use base64::Engine;
    let jwks: Value = serde_json::from_str(&keys.jwks()).unwrap();
    let mut entries: Vec<Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let mut k = k.clone();
            k["use"] = json!("jwt-svid");
            k
        })
        .collect();
    entries.push(json!({
        "use": "x509-svid", "kty": "EC",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&ca.der)],
    }));
    json!({"spiffe_sequence": 7, "spiffe_refresh_hint": 300, "keys": entries}).to_string()
}

struct Setup {
    ca: Ca,
    own: TokenIssuer,
    partner: TokenIssuer,
    server: TestServer,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let ca = Ca::new("Own CA");
    let partner_ca = Ca::new("Partner CA");
    let own = TokenIssuer::new();
    let partner = TokenIssuer::new();
    let dir = tempfile::tempdir().unwrap();
    let own_bundle = dir.path().join("own.bundle.json");
    let partner_bundle = dir.path().join("partner.bundle.json");
    std::fs::write(&own_bundle, spiffe_bundle(&ca, &own)).unwrap();
    std::fs::write(&partner_bundle, spiffe_bundle(&partner_ca, &partner)).unwrap();
    let policies = copy_policies(dir.path());
    std::fs::write(
        policies.join("svid.cedar"),
        format!(
            "permit (principal == App::\"spiffe://{TRUST_DOMAIN}/reports\", \
             action == Action::\"orders:read\", resource is Order);\n\
             permit (principal == App::\"spiffe://{PARTNER}/billing\", \
             action == Action::\"orders:read\", resource is Order);\n"
        ),
    )
    .unwrap();
    let server = TestServer::start(
        &ca,
        &TokenIssuer::new(),
        Options {
            own_bundle: format!("bundle = \"{}\"", own_bundle.display()),
            trust_domains_extra: format!(
                "[[identity.trust_domains]]\nname = \"{PARTNER}\"\nbundle = \"{}\"\n",
                partner_bundle.display()
            ),
            policy_dir: Some(policies),
            extra: "[jwt_svid]\naudiences = [\"tollgate\"]\n".into(),
            ..Options::default()
        },
    )
    .await;
    Setup {
        ca,
        own,
        partner,
        server,
        _dir: dir,
    }
}

fn svid(sub: &str, extra: Value) -> Value {
    let mut claims = json!({"sub": sub, "aud": ["tollgate"], "exp": now() + 300, "iat": now()});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn own_id(app: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{app}")
}

impl Setup {
    async fn send(&self, token: &str, cert: Option<&str>) -> Answer {
        let mut request = Req::get("/orders/1").token(token);
        if let Some(cert) = cert {
            request = request.cert(cert);
        }
        self.server.check(request.build()).await
    }
}

#[tokio::test]
async fn a_jwt_svid_names_the_workload_when_no_certificate_does() {
    let s = setup().await;
    let token = s
        .own
        .sign(Algorithm::ES256, None, &svid(&own_id("reports"), json!({})));
    s.send(&token, None)
        .await
        .assert_allowed(&own_id("reports"));
    // RS256 from the same bundle; `typ: JOSE` is allowed too.
    let rs = s
        .own
        .sign(Algorithm::RS256, None, &svid(&own_id("reports"), json!({})));
    s.send(&rs, None).await.assert_allowed(&own_id("reports"));
    let mut jose = Header::new(Algorithm::ES256);
    jose.kid = Some("es".into());
    jose.typ = Some("JOSE".into());
    let jose = s
        .own
        .sign_es256_with(&jose, &svid(&own_id("reports"), json!({})));
    s.send(&jose, None).await.assert_allowed(&own_id("reports"));
    // A federated domain's workload, by its own bundle's keys.
    let billing = format!("spiffe://{PARTNER}/billing");
    let partner = s
        .partner
        .sign(Algorithm::ES256, None, &svid(&billing, json!({})));
    s.send(&partner, None).await.assert_allowed(&billing);
    // With a certificate for the same workload; for another one, refused.
    let cert = s.ca.app("reports").pem;
    s.send(&token, Some(&cert))
        .await
        .assert_allowed(&own_id("reports"));
    let other = s.ca.app("payments").pem;
    s.send(&token, Some(&other))
        .await
        .assert_denied(401, "token_claims");
}

#[tokio::test]
async fn only_the_subjects_own_trust_domain_can_vouch_for_it() {
    let s = setup().await;
    // Signed with the own domain's key, claiming a partner workload: the partner's bundle has
    // no such key.
    let forged = s.own.sign(
        Algorithm::ES256,
        None,
        &svid(&format!("spiffe://{PARTNER}/billing"), json!({})),
    );
    s.send(&forged, None)
        .await
        .assert_denied(401, "token_signature");
    // A domain that is not configured at all.
    let stranger = s.own.sign(
        Algorithm::ES256,
        None,
        &svid("spiffe://elsewhere.example/reports", json!({})),
    );
    s.send(&stranger, None)
        .await
        .assert_denied(401, "token_issuer");
    // A kid the bundle lacks.
    let unknown = s.own.sign(
        Algorithm::ES256,
        Some("nope"),
        &svid(&own_id("reports"), json!({})),
    );
    s.send(&unknown, None)
        .await
        .assert_denied(401, "token_unknown_key");
}

#[tokio::test]
async fn the_spec_rules_are_enforced() {
    let s = setup().await;
    let reports = own_id("reports");
    let cases: Vec<(String, &str)> = vec![
        (
            s.own.sign(
                Algorithm::ES256,
                None,
                &svid(&reports, json!({"aud": null})),
            ),
            "token_claims",
        ),
        (
            s.own.sign(
                Algorithm::ES256,
                None,
                &svid(&reports, json!({"aud": "other"})),
            ),
            "token_audience",
        ),
        (
            s.own.sign(
                Algorithm::ES256,
                None,
                &svid(&reports, json!({"exp": null})),
            ),
            "token_claims",
        ),
        (
            s.own.sign(
                Algorithm::ES256,
                None,
                &svid(&reports, json!({"exp": now() - 3600})),
            ),
            "token_expired",
        ),
        (
            s.own.sign(
                Algorithm::ES256,
                None,
                &svid(&format!("spiffe://{TRUST_DOMAIN}"), json!({})),
            ),
            "token_claims",
        ),
        (
            s.own
                .sign(Algorithm::EdDSA, None, &svid(&reports, json!({}))),
            "token_algorithm",
        ),
        (
            s.own
                .sign_typed(Algorithm::ES256, "at+jwt", &svid(&reports, json!({}))),
            "token_malformed",
        ),
        (
            {
                let mut header = Header::new(Algorithm::ES256);
                header.kid = Some("es".into());
                header.cty = Some("JWT".into());
                s.own.sign_es256_with(&header, &svid(&reports, json!({})))
            },
            "token_malformed",
        ),
    ];
    for (token, reason) in cases {
        s.send(&token, None).await.assert_denied(401, reason);
    }
}

/// Review finding: a JWT-SVID's `status` claim was ignored; a status claim never is. JWT-SVIDs
/// have no status lists configured, so one naming a list is refused.
#[tokio::test]
async fn a_jwt_svid_naming_a_status_list_is_refused() {
    let s = setup().await;
    let status = json!({"status": {"status_list": {"idx": 0, "uri": "https://lists.example/1"}}});
    let token = s
        .own
        .sign(Algorithm::ES256, None, &svid(&own_id("reports"), status));
    s.send(&token, None)
        .await
        .assert_denied(401, "token_claims");
}
