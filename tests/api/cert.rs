//! Certificate stage: every defect gets 401 and its own reason code.

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::support::World;
use crate::support::pki::{Ca, LeafSpec, TRUST_DOMAIN};
use crate::support::server::{Options, Req};

async fn deny_for(w: &World, pem: &str, reason: &str) -> String {
    let token = w.issuer.app("payments", "orders.read");
    let answer = w
        .server
        .check(Req::get("/orders/1").cert(pem).token(&token).build())
        .await;
    answer.assert_denied(401, reason);
    answer.message().to_owned()
}

#[tokio::test]
async fn validity_window() {
    let w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let expired = w.ca.leaf(&LeafSpec {
        not_before: now - Duration::days(2),
        not_after: now - Duration::days(1),
        ..LeafSpec::app("payments")
    });
    let message = deny_for(&w, &expired.pem, "cert_expired").await;
    assert!(message.contains("expired"), "{message}");
    let future = w.ca.leaf(&LeafSpec {
        not_before: now + Duration::days(1),
        not_after: now + Duration::days(2),
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &future.pem, "cert_not_yet_valid").await;
}

#[tokio::test]
async fn chain_must_reach_the_trust_bundle() {
    let w = World::new().await;
    let stranger = Ca::new("Other CA").app("payments");
    deny_for(&w, &stranger.pem, "cert_untrusted").await;

    // Leaf from an intermediate: trusted when the intermediate is sent with it...
    let intermediate = w.ca.intermediate("Issuing CA");
    let leaf = intermediate.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let chain = format!("{}{}", leaf.pem, intermediate.pem);
    w.server
        .check(Req::get("/orders/1").cert(&chain).token(&token).build())
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
    // ...and untrusted when it is not (Envoy forwards only the leaf).
    deny_for(&w, &leaf.pem, "cert_untrusted").await;
}

#[tokio::test]
async fn configured_intermediates_pool_completes_a_leaf_only_chain() {
    let ca = Ca::new("Root");
    let intermediate = ca.intermediate("Issuing CA");
    let issuer = crate::support::jwt::TokenIssuer::new();
    let server = crate::support::server::TestServer::start(
        &ca,
        &issuer,
        Options {
            intermediates: vec![intermediate.pem.clone()],
            ..Options::default()
        },
    )
    .await;
    let leaf = intermediate.app("payments");
    let token = issuer.app("payments", "orders.read");
    server
        .check(Req::get("/orders/1").cert(&leaf.pem).token(&token).build())
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}

#[tokio::test]
async fn spiffe_id_rules() {
    let w = World::new().await;
    let no_uri = w.ca.leaf(&LeafSpec {
        uris: vec![],
        dns: vec!["payments.svc".into()],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &no_uri.pem, "spiffe_id_missing").await;
    let other_domain = w.ca.leaf(&LeafSpec {
        uris: vec!["spiffe://evil.example/payments".into()],
        ..LeafSpec::app("payments")
    });
    let message = deny_for(&w, &other_domain.pem, "trust_domain_not_allowed").await;
    assert!(message.contains("evil.example"), "{message}");
    let malformed = w.ca.leaf(&LeafSpec {
        uris: vec![format!("spiffe://{TRUST_DOMAIN}/a/../payments")],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &malformed.pem, "spiffe_id_invalid").await;
    let not_spiffe = w.ca.leaf(&LeafSpec {
        uris: vec!["https://payments.example".into()],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &not_spiffe.pem, "spiffe_id_invalid").await;
}

#[tokio::test]
async fn x509_svid_leaf_rules() {
    let w = World::new().await;
    let two_uris = w.ca.leaf(&LeafSpec {
        uris: vec![
            format!("spiffe://{TRUST_DOMAIN}/payments"),
            format!("spiffe://{TRUST_DOMAIN}/platform-ops"),
        ],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &two_uris.pem, "cert_not_svid").await;
    let signs_certs = w.ca.leaf(&LeafSpec {
        key_usages: vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &signs_certs.pem, "cert_not_svid").await;
    let is_ca = w.ca.leaf(&LeafSpec {
        is_ca: true,
        key_usages: vec![KeyUsagePurpose::DigitalSignature],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &is_ca.pem, "cert_not_svid").await;
}

#[tokio::test]
async fn client_auth_usage_is_required() {
    let w = World::new().await;
    let server_only = w.ca.leaf(&LeafSpec {
        eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &server_only.pem, "cert_usage").await;
}

#[tokio::test]
async fn garbage_certificates_and_missing_credentials() {
    let w = World::new().await;
    let token = w.issuer.app("payments", "orders.read");
    for field in [
        "not a pem",
        "%zz%",
        "-----BEGIN CERTIFICATE-----%0AAAAA%0A-----END CERTIFICATE-----%0A",
    ] {
        w.server
            .check(Req::get("/orders/1").raw_cert(field).token(&token).build())
            .await
            .assert_denied(401, "cert_malformed");
    }
    let huge = "A".repeat(70 * 1024);
    w.server
        .check(Req::get("/orders/1").raw_cert(&huge).token(&token).build())
        .await
        .assert_denied(401, "cert_malformed");
    let answer = w.server.check(Req::get("/orders/1").build()).await;
    answer.assert_denied(401, "no_credentials");
    assert_eq!(
        answer.headers["www-authenticate"],
        "Bearer realm=\"tollgate\""
    );
}

#[tokio::test]
async fn dns_san_fallback_is_opt_in() {
    let w = World::with(Options {
        dns_fallback: true,
        ..Options::default()
    })
    .await;
    let dns_only = w.ca.leaf(&LeafSpec {
        uris: vec![],
        dns: vec!["payments.shop.svc".into()],
        ..LeafSpec::app("payments")
    });
    let token = w.issuer.app("payments", "orders.read");
    // Identified by its DNS name, which no policy names: authenticated, then denied by policy.
    let answer = w
        .server
        .check(
            Req::get("/orders/1")
                .cert(&dns_only.pem)
                .token(&token)
                .build(),
        )
        .await;
    answer.assert_denied(403, "policy_denied");
    assert!(answer.message().contains("orders:read"));
    // A URI SAN still has to be a valid SPIFFE ID even with the fallback on.
    let bad_uri = w.ca.leaf(&LeafSpec {
        uris: vec!["https://payments.example".into()],
        dns: vec!["payments.shop.svc".into()],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &bad_uri.pem, "spiffe_id_invalid").await;
}

#[tokio::test]
async fn weak_leaf_keys_are_refused() {
    let w = World::new().await;
    let weak = rcgen::SubjectPublicKeyInfo::from_pem(include_str!("../fixtures/rsa-1024.pub.pem"))
        .unwrap();
    let leaf = w.ca.leaf_with_key(&LeafSpec::app("payments"), &weak);
    let message = deny_for(&w, &leaf.pem, "cert_weak_key").await;
    assert!(message.contains("1024"), "{message}");
}

#[tokio::test]
async fn intermediates_must_be_allowed_to_sign_certificates() {
    let w = World::new().await;
    let not_a_signer =
        w.ca.intermediate_with_usages("Misissued CA", vec![KeyUsagePurpose::DigitalSignature]);
    let leaf = not_a_signer.app("payments");
    let chain = format!("{}{}", leaf.pem, not_a_signer.pem);
    deny_for(&w, &chain, "cert_invalid_ca").await;
}

/// Finding: every anchor went into one pool, so a partner CA could issue a leaf naming the demo
/// trust domain and be accepted as that domain's workload.
#[tokio::test]
async fn a_trust_domains_ca_vouches_only_for_that_domain() {
    let partner = Ca::new("Partner CA");
    let w = World::with(Options {
        partner: Some(("partner.example".into(), partner.pem.clone())),
        ..Options::default()
    })
    .await;
    // The partner CA names the demo domain: refused, whatever the partner domain allows.
    let forged = partner.app("orders");
    deny_for(&w, &forged.pem, "cert_untrusted").await;
    // The demo CA names the partner domain: refused the same way.
    let forged_other_way = w.ca.leaf(&LeafSpec {
        uris: vec!["spiffe://partner.example/orders".into()],
        ..LeafSpec::app("orders")
    });
    deny_for(&w, &forged_other_way.pem, "cert_untrusted").await;
    // Each CA for its own domain still authenticates (the policies then decide).
    let own = partner.leaf(&LeafSpec {
        uris: vec!["spiffe://partner.example/orders".into()],
        ..LeafSpec::app("orders")
    });
    let token = w.issuer.app("payments", "orders.read");
    w.server
        .check(Req::get("/orders/1").cert(&own.pem).token(&token).build())
        .await
        .assert_denied(403, "policy_denied");
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&w.ca.app("payments").pem)
                .token(&token)
                .build(),
        )
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));
}

/// Finding: an ID naming only the trust domain was accepted as a workload.
#[tokio::test]
async fn a_workload_id_needs_a_path() {
    let w = World::new().await;
    for uri in [
        format!("spiffe://{TRUST_DOMAIN}"),
        format!("spiffe://{TRUST_DOMAIN}/"),
    ] {
        let bare = w.ca.leaf(&LeafSpec {
            uris: vec![uri],
            ..LeafSpec::app("payments")
        });
        deny_for(&w, &bare.pem, "spiffe_id_invalid").await;
    }
}

/// Finding: a leaf with no extended key usage at all was accepted; the README says client
/// authentication usage is required, and X509-SVIDs from SPIRE and Istio carry it.
#[tokio::test]
async fn a_leaf_without_extended_key_usage_is_refused() {
    let w = World::new().await;
    let no_eku = w.ca.leaf(&LeafSpec {
        eku: vec![],
        ..LeafSpec::app("payments")
    });
    deny_for(&w, &no_eku.pem, "cert_usage").await;
}

/// Finding: the certificate cache was bounded by the leaf's expiry only, so a chain whose
/// intermediate expired kept working from the cache.
#[test]
fn a_verified_chain_expires_with_its_earliest_certificate() {
    use rustls_pki_types::{CertificateDer, UnixTime};
    let root = Ca::new("Root");
    let short_lived = root.intermediate_until(
        "Short-lived CA",
        OffsetDateTime::now_utc() + Duration::hours(2),
    );
    let leaf = short_lived.leaf(&LeafSpec {
        not_after: OffsetDateTime::now_utc() + Duration::days(5),
        ..LeafSpec::app("payments")
    });
    let store = crate::support::trust_store(&root);
    let chain = [
        CertificateDer::from(leaf.der.clone()),
        CertificateDer::from(short_lived.der.clone()),
    ];
    let verified = store.verify_chain(&chain, UnixTime::now()).unwrap();
    let intermediate_expiry = (OffsetDateTime::now_utc() + Duration::hours(2)).unix_timestamp();
    assert!(
        (verified.not_after - intermediate_expiry).abs() <= 1,
        "cached until {} but the intermediate expires at {intermediate_expiry}",
        verified.not_after
    );
}

/// Finding: webpki does not check a trust anchor's validity, so a root past its `notAfter`
/// still vouched for leaves.
#[test]
fn an_expired_trust_anchor_vouches_for_nothing() {
    use rustls_pki_types::{CertificateDer, UnixTime};
    let expired_root = Ca::new_until(
        "Expired root",
        OffsetDateTime::now_utc() - Duration::hours(1),
    );
    let leaf = expired_root.leaf(&LeafSpec::app("payments"));
    let store = crate::support::trust_store(&expired_root);
    let refused = store
        .verify_chain(&[CertificateDer::from(leaf.der.clone())], UnixTime::now())
        .unwrap_err();
    assert!(
        matches!(refused, tollgate::identity::cert::CertError::Expired { .. }),
        "{refused:?}"
    );
}

/// Finding: under `insecure_dns_san_fallback` the DNS SAN was taken as the principal without a
/// syntax check, so `DNS:spiffe://demo.tollgate.dev/payments` became that SPIFFE principal.
#[tokio::test]
async fn a_dns_fallback_name_must_be_a_hostname() {
    let w = World::with(Options {
        dns_fallback: true,
        ..Options::default()
    })
    .await;
    let token = w.issuer.app("payments", "orders.read");
    for forged in [
        format!("spiffe://{TRUST_DOMAIN}/payments"),
        "payments/../admin".into(),
        "-payments.svc".into(),
        "payments..svc".into(),
        "*.shop.svc".into(),
        "payments.svc.".into(),
    ] {
        let leaf = w.ca.leaf(&LeafSpec {
            uris: vec![],
            dns: vec![forged.clone()],
            ..LeafSpec::app("payments")
        });
        let answer = w
            .server
            .check(Req::get("/orders/1").cert(&leaf.pem).token(&token).build())
            .await;
        assert_eq!(
            answer.body["reason"], "cert_not_svid",
            "DNS name `{forged}`: {:?}",
            answer.body
        );
    }
}
