//! Token stage: every broken token gets 401, `www-authenticate: … invalid_token`, and its code.

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::World;
use crate::support::jwt::{TokenIssuer, now, tampered, unsigned};
use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::Req;

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
async fn token_without_certificate_uses_the_client_as_principal() {
    let w = World::new().await;
    let token = w
        .issuer
        .app("spiffe://demo.tollgate.dev/payments", "orders.read");
    w.server
        .check(Req::get("/orders/1").token(&token).build())
        .await
        .assert_allowed("spiffe://demo.tollgate.dev/payments");
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
