//! Identity sources other than the forwarded certificate: XFCC and Envoy's peer principal.

use crate::support::World;
use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::{Options, Req};

#[tokio::test]
async fn xfcc_trusts_only_the_nearest_proxys_element() {
    let w = World::with(Options {
        source: "xfcc",
        ..Options::default()
    })
    .await;
    let token = w.issuer.app("payments", "orders.read");
    let xfcc = format!(
        "By=spiffe://{TRUST_DOMAIN}/edge;URI=spiffe://{TRUST_DOMAIN}/platform-ops,\
         By=spiffe://{TRUST_DOMAIN}/sidecar;Hash={};Subject=\"CN=payments,O=Shop\";URI=spiffe://{TRUST_DOMAIN}/payments",
        "ab".repeat(32)
    );
    w.server
        .check(
            Req::get("/orders/1")
                .header("x-forwarded-client-cert", &xfcc)
                .token(&token)
                .build(),
        )
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
    w.server
        .check(
            Req::get("/orders/1")
                .header(
                    "x-forwarded-client-cert",
                    "URI=spiffe://evil.example/payments",
                )
                .token(&token)
                .build(),
        )
        .await
        .assert_denied(401, "xfcc_invalid");
    w.server
        .check(
            Req::get("/orders/1")
                .header("x-forwarded-client-cert", "Hash=nothex")
                .token(&token)
                .build(),
        )
        .await
        .assert_denied(401, "xfcc_invalid");
}

#[tokio::test]
async fn envoy_principal_source_for_istio() {
    let w = World::with(Options {
        source: "envoy_principal",
        ..Options::default()
    })
    .await;
    let token = w.issuer.app("payments", "orders.read");
    let id = format!("spiffe://{TRUST_DOMAIN}/payments");
    w.server
        .check(Req::get("/orders/1").principal(&id).token(&token).build())
        .await
        .assert_allowed(&id);
    w.server
        .check(
            Req::get("/orders/1")
                .principal("spiffe://cluster.local/ns/x/sa/y")
                .token(&token)
                .build(),
        )
        .await
        .assert_denied(401, "peer_principal_invalid");
    // The forwarded certificate is ignored under this source: the principal decides.
    let cert = w.ca.app("platform-ops");
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .principal(&id)
                .token(&token)
                .build(),
        )
        .await
        .assert_allowed(&id);
}
