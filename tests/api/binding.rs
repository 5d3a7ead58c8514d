//! RFC 8705 certificate-bound tokens.

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::World;
use crate::support::jwt::{TokenIssuer, cnf_for};
use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::{Options, Req};

fn rotate() -> Req {
    Req::new("POST", "/admin/keys/rotate")
}

#[tokio::test]
async fn admin_action_needs_a_token_bound_to_the_callers_certificate() {
    let w = World::new().await;
    let cert = w.ca.app("platform-ops");
    let bound = w.issuer.sign(
        Algorithm::ES256,
        None,
        &TokenIssuer::claims("platform-ops", "admin", json!({"cnf": cnf_for(&cert.der)})),
    );
    w.server
        .check(rotate().cert(&cert.pem).token(&bound).build())
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/platform-ops"));

    let unbound = w.issuer.app("platform-ops", "admin");
    w.server
        .check(rotate().cert(&cert.pem).token(&unbound).build())
        .await
        .assert_denied(403, "policy_denied");

    // The same bound token presented with another certificate (e.g. stolen) fails identity.
    let other_cert = w.ca.app("platform-ops");
    let message = w
        .server
        .check(rotate().cert(&other_cert.pem).token(&bound).build())
        .await
        .assert_denied(401, "token_binding_mismatch")
        .message()
        .to_owned();
    assert!(message.contains("different certificate"), "{message}");
    // And with no certificate at all.
    w.server
        .check(rotate().token(&bound).build())
        .await
        .assert_denied(401, "token_binding_mismatch");
}

#[tokio::test]
async fn issuer_can_require_binding() {
    let w = World::with(Options {
        require_binding: true,
        ..Options::default()
    })
    .await;
    let cert = w.ca.app("payments");
    let unbound = w.issuer.app("payments", "orders.read");
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&unbound)
                .build(),
        )
        .await
        .assert_denied(401, "token_binding_required");
    let bound = w.issuer.sign(
        Algorithm::ES256,
        None,
        &TokenIssuer::claims(
            "payments",
            "orders.read",
            json!({"cnf": cnf_for(&cert.der)}),
        ),
    );
    w.server
        .check(Req::get("/orders/1").cert(&cert.pem).token(&bound).build())
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}
