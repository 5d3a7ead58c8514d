//! Token stage: every broken token gets 401, `www-authenticate: … invalid_token`, and its code.

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::World;
use crate::support::jwt::{ISSUER, TokenIssuer, now, tampered, unsigned};
use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::{Options, Req};

async fn answer(w: &World, token: &str) -> crate::support::server::Answer {
    let cert = w.ca.app("payments");
    w.server
        .check(Req::get("/orders/1").cert(&cert.pem).token(token).build())
        .await
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    TokenIssuer::claims("payments", "orders.read", extra)
}

#[tokio::test]
async fn accepts_each_allowed_algorithm() {
    let w = World::new().await;
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let token = w.issuer.sign(alg, None, &claims(json!({})));
        answer(&w, &token)
            .await
            .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
    }
}

#[tokio::test]
async fn time_claims() {
    let w = World::new().await;
    let expired = w
        .issuer
        .sign(Algorithm::ES256, None, &claims(json!({"exp": now() - 120})));
    answer(&w, &expired)
        .await
        .assert_denied(401, "token_expired");
    let early = w
        .issuer
        .sign(Algorithm::ES256, None, &claims(json!({"nbf": now() + 600})));
    answer(&w, &early)
        .await
        .assert_denied(401, "token_not_yet_valid");
    let no_exp = w
        .issuer
        .sign(Algorithm::ES256, None, &claims(json!({"exp": null})));
    answer(&w, &no_exp).await.assert_denied(401, "token_claims");
    // Within the 30 s default leeway.
    let just_expired = w
        .issuer
        .sign(Algorithm::ES256, None, &claims(json!({"exp": now() - 5})));
    answer(&w, &just_expired)
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}

#[tokio::test]
async fn issuer_audience_and_key() {
    let w = World::new().await;
    let wrong_aud = w.issuer.sign(
        Algorithm::ES256,
        None,
        &claims(json!({"aud": "someone-else"})),
    );
    answer(&w, &wrong_aud)
        .await
        .assert_denied(401, "token_audience");
    let aud_array = w.issuer.sign(
        Algorithm::ES256,
        None,
        &claims(json!({"aud": ["x", "tollgate-test"]})),
    );
    answer(&w, &aud_array)
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
    let wrong_iss = w.issuer.sign(
        Algorithm::ES256,
        None,
        &claims(json!({"iss": "https://evil.test"})),
    );
    answer(&w, &wrong_iss)
        .await
        .assert_denied(401, "token_issuer");
    let unknown_kid = w
        .issuer
        .sign(Algorithm::ES256, Some("rotated-away"), &claims(json!({})));
    answer(&w, &unknown_kid)
        .await
        .assert_denied(401, "token_unknown_key");
    // A key pinned to RS256 cannot verify an ES256 token.
    let kid_for_other_alg = w
        .issuer
        .sign(Algorithm::ES256, Some("rs"), &claims(json!({})));
    answer(&w, &kid_for_other_alg)
        .await
        .assert_denied(401, "token_unknown_key");
    // A different issuer key under our kid.
    let other = TokenIssuer::new().sign(Algorithm::ES256, Some("es"), &claims(json!({})));
    answer(&w, &other)
        .await
        .assert_denied(401, "token_signature");
}

#[tokio::test]
async fn forged_tokens() {
    let w = World::new().await;
    let none = unsigned(&claims(json!({})));
    let message = answer(&w, &none)
        .await
        .assert_denied(401, "token_algorithm")
        .message()
        .to_owned();
    assert!(message.contains("none"), "{message}");
    let confusion = w.issuer.hmac_confusion(&claims(json!({})));
    answer(&w, &confusion)
        .await
        .assert_denied(401, "token_algorithm");
    let good = w.issuer.app("payments", "orders.read");
    let escalated = tampered(&good, &claims(json!({"scope": "orders.read admin"})));
    answer(&w, &escalated)
        .await
        .assert_denied(401, "token_signature");
    answer(&w, "a.b")
        .await
        .assert_denied(401, "token_malformed");
    answer(&w, "e30.e30.e30.e30")
        .await
        .assert_denied(401, "token_malformed");
}

#[tokio::test]
async fn authorization_header_forms() {
    let w = World::new().await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .header("authorization", &format!("bEaReR {token}"))
                .build(),
        )
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .header("authorization", "Basic dXNlcjpwYXNz")
                .build(),
        )
        .await
        .assert_denied(401, "token_malformed");
}

#[tokio::test]
async fn token_without_certificate_uses_the_issuer_qualified_client_as_principal() {
    let dir = tempfile::tempdir().unwrap();
    let policies = crate::support::copy_policies(dir.path());
    std::fs::write(
        policies.join("jobs.cedar"),
        format!(
            "permit (principal == App::\"{ISSUER}#report-job\", action == Action::\"orders:read\", resource);\n"
        ),
    )
    .unwrap();
    let w = World::with(Options {
        policy_dir: Some(policies),
        ..Options::default()
    })
    .await;
    let token = w.issuer.app("report-job", "orders.read");
    w.server
        .check(Req::get("/orders/1").token(&token).build())
        .await
        .assert_allowed(&format!("{ISSUER}#report-job"));
    let anonymous = w.issuer.sign(
        Algorithm::ES256,
        None,
        &claims(json!({"client_id": null, "azp": null})),
    );
    w.server
        .check(Req::get("/orders/1").token(&anonymous).build())
        .await
        .assert_denied(401, "token_no_client");
}

#[tokio::test]
async fn act_claim_makes_access_delegated() {
    let w = World::new().await;
    let cert = w.ca.app("web-frontend");
    // `sub` = client would be app-only; the RFC 8693 `act` claim makes it delegated for alice.
    let token = w.issuer.sign(
        Algorithm::ES256,
        None,
        &TokenIssuer::claims(
            "web-frontend",
            "orders.read",
            json!({"sub": "alice", "act": {"sub": "web-frontend"}}),
        ),
    );
    w.server
        .check(
            Req::get("/users/alice/orders/3")
                .cert(&cert.pem)
                .token(&token)
                .build(),
        )
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/web-frontend"));
    let bad_act = w.issuer.sign(
        Algorithm::ES256,
        None,
        &TokenIssuer::claims(
            "web-frontend",
            "orders.read",
            json!({"act": "web-frontend"}),
        ),
    );
    w.server
        .check(
            Req::get("/users/alice/orders/3")
                .cert(&cert.pem)
                .token(&bad_act)
                .build(),
        )
        .await
        .assert_denied(401, "token_claims");
}

fn plain_issuer() -> Options {
    Options {
        issuer_extra: String::new(),
        ..Options::default()
    }
}

/// Finding: without a certificate the principal was the bare `client_id`, so a token could
/// name itself `spiffe://…` and be taken for that workload.
#[tokio::test]
async fn a_token_cannot_impersonate_a_workload() {
    let w = World::new().await;
    let token = w.issuer.app(
        &format!("spiffe://{TRUST_DOMAIN}/orders"),
        "payments.charge",
    );
    w.server
        .check(Req::new("POST", "/payments/charge").token(&token).build())
        .await
        .assert_denied(403, "policy_denied");
}

/// Finding: under the default delegation rule a user's token (`sub` a person, no `act`) was
/// treated as the app acting for itself.
#[tokio::test]
async fn a_users_token_is_never_app_only_by_default() {
    let w = World::with(plain_issuer()).await;
    let cert = w.ca.app("payments");
    // `orders-read-backend` permits backend apps acting for themselves.
    let users_token = w.issuer.delegated("payments", "alice", "orders.read");
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&users_token)
                .build(),
        )
        .await
        .assert_denied(403, "policy_denied");
    // A token with no client claim is the user's, not the app's.
    let no_client = w.issuer.sign(
        Algorithm::ES256,
        None,
        &claims(json!({"client_id": null, "sub": "alice"})),
    );
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&no_client)
                .build(),
        )
        .await
        .assert_denied(403, "policy_denied");
    // The app's own token still works.
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&w.issuer.app("payments", "orders.read"))
                .build(),
        )
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}

/// Finding: users were `User::"<sub>"` whatever the issuer, so any trusted issuer could speak
/// for any other issuer's users. By default they are qualified by issuer.
#[tokio::test]
async fn users_are_qualified_by_their_issuer_by_default() {
    let w = World::with(Options {
        issuer_extra: "delegation = \"act_or_subject\"".into(),
        ..Options::default()
    })
    .await;
    let cert = w.ca.app("web-frontend");
    let token = w.issuer.delegated("web-frontend", "alice", "orders.read");
    // The route makes the order's owner `User::"alice"`, which is not this issuer's alice.
    let answer = w
        .server
        .check(
            Req::get("/users/alice/orders/3")
                .cert(&cert.pem)
                .token(&token)
                .build(),
        )
        .await;
    answer.assert_denied(403, "policy_denied");
}

/// Finding: under `unqualified_users`, a `sub` of `https://b.example#alice` named exactly the
/// user another issuer's `alice` is qualified as. `#` is the qualifier's separator: refused.
#[tokio::test]
async fn an_unqualified_issuers_sub_cannot_spell_a_qualified_user() {
    let w = World::new().await;
    let cert = w.ca.app("web-frontend");
    let token = w
        .issuer
        .delegated("web-frontend", "https://b.example#alice", "orders.read");
    w.server
        .check(Req::get("/orders/3").cert(&cert.pem).token(&token).build())
        .await
        .assert_denied(401, "token_claims");
}

/// Finding: a `cnf` Tollgate cannot check (DPoP's `jkt`) was ignored, so a sender-constrained
/// token worked as a plain bearer token.
#[tokio::test]
async fn unverifiable_proof_of_possession_is_refused() {
    let w = World::new().await;
    let dpop = w.issuer.sign(
        Algorithm::ES256,
        None,
        &claims(json!({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})),
    );
    answer(&w, &dpop)
        .await
        .assert_denied(401, "token_binding_unsupported");
}

/// Findings: claim types Tollgate reads were not all checked.
#[tokio::test]
async fn every_claim_read_has_its_type_checked() {
    let w = World::new().await;
    for bad in [
        json!({"cnf": "x5t"}),
        json!({"cnf": ["x5t#S256"]}),
        json!({"cnf": {"x5t#S256": 5}}),
        json!({"cnf": {"x5t#S256": "AAAA"}}),
        json!({"iat": "yesterday"}),
    ] {
        let token = w.issuer.sign(Algorithm::ES256, None, &claims(bad.clone()));
        answer(&w, &token).await.assert_denied(401, "token_claims");
    }
    let from_the_future =
        w.issuer
            .sign(Algorithm::ES256, None, &claims(json!({"iat": now() + 600})));
    answer(&w, &from_the_future)
        .await
        .assert_denied(401, "token_not_yet_valid");
}

/// Finding: the JWT `typ` header was not checked, so other JWTs signed by the same keys
/// (status lists, DPoP proofs) were accepted as access tokens.
#[tokio::test]
async fn only_access_token_types_are_accepted() {
    let w = World::new().await;
    for typ in [
        "statuslist+jwt",
        "dpop+jwt",
        "application/dpop+jwt",
        "id+jwt",
    ] {
        let token = w
            .issuer
            .sign_typed(Algorithm::ES256, typ, &claims(json!({})));
        answer(&w, &token)
            .await
            .assert_denied(401, "token_malformed");
    }
    for typ in ["JWT", "jwt", "at+jwt", "application/at+jwt"] {
        let token = w
            .issuer
            .sign_typed(Algorithm::ES256, typ, &claims(json!({})));
        answer(&w, &token)
            .await
            .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
    }
}

/// Finding: JWK `use` and `key_ops` were ignored, so an encryption key verified signatures.
#[tokio::test]
async fn keys_not_meant_for_verifying_signatures_are_not_used() {
    let w = World::new().await;
    let mut jwks: serde_json::Value = serde_json::from_str(&w.issuer.jwks()).unwrap();
    jwks["keys"][0]["use"] = json!("enc");
    jwks["keys"][1]["key_ops"] = json!(["encrypt", "wrapKey"]);
    jwks["keys"][2]["key_ops"] = json!(["verify"]);
    std::fs::write(w.server.dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let es = w.issuer.sign(Algorithm::ES256, None, &claims(json!({})));
    let running = w.server.running.as_ref().unwrap();
    crate::support::eventually("the JWKS edit was not applied", || {
        running.snapshots.load().generation >= 2
    })
    .await;
    answer(&w, &es)
        .await
        .assert_denied(401, "token_unknown_key");
    let rs = w.issuer.sign(Algorithm::RS256, None, &claims(json!({})));
    answer(&w, &rs)
        .await
        .assert_denied(401, "token_unknown_key");
    let ed = w.issuer.sign(Algorithm::EdDSA, None, &claims(json!({})));
    answer(&w, &ed)
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}

/// A refusal is remembered (a replayed forgery costs a lookup, not a signature check), but
/// only under the snapshot that made it: when the key set changes, the same token is judged
/// afresh.
#[tokio::test]
async fn a_remembered_refusal_ends_with_the_key_set_that_made_it() {
    let w = World::new().await;
    let jwks_path = w.server.dir.path().join("jwks.json");
    let original = w.issuer.jwks();
    let mut without_es256: serde_json::Value = serde_json::from_str(&original).unwrap();
    jwks_without(&mut without_es256, "ES256");
    crate::support::replace_file(&jwks_path, &without_es256.to_string());
    let running = w.server.running.as_ref().unwrap();
    crate::support::eventually("the JWKS edit was not applied", || {
        running.snapshots.load().generation >= 2
    })
    .await;
    let es = w.issuer.sign(Algorithm::ES256, None, &claims(json!({})));
    let edited = running.snapshots.load().generation;
    for _ in 0..3 {
        answer(&w, &es)
            .await
            .assert_denied(401, "token_unknown_key");
    }
    crate::support::replace_file(&jwks_path, &original);
    crate::support::eventually("the JWKS was not restored", || {
        running.snapshots.load().generation > edited
    })
    .await;
    answer(&w, &es)
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}

/// Drops the keys for `alg` from a JWKS.
fn jwks_without(jwks: &mut serde_json::Value, alg: &str) {
    if let Some(keys) = jwks["keys"].as_array_mut() {
        keys.retain(|k| k["alg"] != alg);
    }
}

/// Review finding: a principal is sent upstream as a header; a client id with a control
/// character could not be, so the allow went out without it. Such a claim is refused.
#[tokio::test]
async fn a_client_id_with_a_control_character_is_refused() {
    let w = World::new().await;
    for client in ["svc\u{1}", "svc\nx", "svc\u{7f}"] {
        let token = w.issuer.app(client, "orders.read");
        assert_eq!(
            w.server.reason_for_token(&token).await,
            "token_claims",
            "{client:?}"
        );
    }
}
