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
        .assert_denied(401, "trust_domain_not_allowed");
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
        .assert_denied(401, "trust_domain_not_allowed");
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

/// The same failure gets the same reason code whatever the identity source.
#[tokio::test]
async fn a_failure_has_one_reason_code_in_every_source() {
    let xfcc = World::with(Options {
        source: "xfcc",
        ..Options::default()
    })
    .await;
    let principal = World::with(Options {
        source: "envoy_principal",
        ..Options::default()
    })
    .await;
    let token = xfcc.issuer.app("payments", "orders.read");
    let token_p = principal.issuer.app("payments", "orders.read");
    for (id, reason) in [
        ("spiffe://evil.example/payments", "trust_domain_not_allowed"),
        ("spiffe://Demo.Example/payments", "spiffe_id_invalid"),
        (&*format!("spiffe://{TRUST_DOMAIN}"), "spiffe_id_invalid"),
        ("https://payments.example", "spiffe_id_invalid"),
    ] {
        let answer = xfcc
            .server
            .check(
                Req::get("/orders/1")
                    .header("x-forwarded-client-cert", &format!("URI={id}"))
                    .token(&token)
                    .build(),
            )
            .await;
        assert_eq!(
            answer.body["reason"], reason,
            "XFCC {id}: {:?}",
            answer.body
        );
        let answer = principal
            .server
            .check(Req::get("/orders/1").principal(id).token(&token_p).build())
            .await;
        assert_eq!(
            answer.body["reason"], reason,
            "principal {id}: {:?}",
            answer.body
        );
    }
    // An XFCC element without a URI has no SPIFFE ID, like a certificate without a URI SAN;
    // one with two is no X509-SVID.
    for (header, reason) in [
        (format!("Hash={}", "ab".repeat(32)), "spiffe_id_missing"),
        (
            format!("URI=spiffe://{TRUST_DOMAIN}/a;URI=spiffe://{TRUST_DOMAIN}/b"),
            "cert_not_svid",
        ),
    ] {
        let answer = xfcc
            .server
            .check(
                Req::get("/orders/1")
                    .header("x-forwarded-client-cert", &header)
                    .token(&token)
                    .build(),
            )
            .await;
        assert_eq!(
            answer.body["reason"], reason,
            "XFCC {header}: {:?}",
            answer.body
        );
    }
}
