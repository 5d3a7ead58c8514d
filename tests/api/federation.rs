//! A federated trust domain's bundle polled from its SPIFFE bundle endpoint (`https_web`), a
//! real HTTPS server in the test process: taken at first poll, replaced by a newer sequence at
//! the bundle's refresh hint, never by an older one, kept through garbage and outages.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

use crate::support::idp::{Idp, Mode};
use crate::support::jwt::TokenIssuer;
use crate::support::pki::{Ca, LeafSpec};
use crate::support::server::{Options, TestServer};
use crate::support::within;

const PARTNER: &str = "partner.example";

/// Longest a test waits for an effect (a poll, a reconnection, a build).
const LIMIT: Duration = Duration::from_secs(8);
/// The certificate verified; the example policies then want a token.
const TRUSTED: &str = "policy_denied";

fn bundle(ca: &Ca, sequence: u64) -> String {
    json!({
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": 1,
        "keys": [{"use": "x509-svid", "kty": "EC",
                  "x5c": [base64::engine::general_purpose::STANDARD.encode(&ca.der)]}],
    })
    .to_string()
}

/// Tollgate with its own CA `own` and, for each `(domain, endpoint, extra keys)`, a trust
/// domain polled from that endpoint (its test CA trusted for the fetch).
async fn federating(own: &Ca, partners: &[(&str, &Idp, &str)]) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("endpoint-ca.pem");
    let cas: String = partners.iter().map(|(_, e, _)| e.ca_pem.as_str()).collect();
    std::fs::write(&ca_file, cas).unwrap();
    let tables: String = partners
        .iter()
        .map(|(td, endpoint, extra)| {
            format!(
                "[[identity.trust_domains]]\nname = \"{td}\"\nbundle_endpoint = \"{}/keys\"\n{extra}",
                endpoint.url
            )
        })
        .collect();
    let server = TestServer::start(
        own,
        &TokenIssuer::new(),
        Options {
            trust_domains_extra: tables,
            extra: format!("[fetch]\nca_file = \"{}\"\n", ca_file.display()),
            ..Options::default()
        },
    )
    .await;
    (server, dir)
}

fn partner_leaf(ca: &Ca) -> String {
    ca.leaf(&LeafSpec {
        uris: vec![format!("spiffe://{PARTNER}/billing")],
        ..LeafSpec::app("unused")
    })
    .pem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_bundle_follows_its_endpoint_by_sequence() {
    let first = Ca::new("Partner CA 1");
    let second = Ca::new("Partner CA 2");
    let own = Ca::new("Own CA");
    let endpoint = Idp::start(bundle(&first, 1)).await;
    let (server, _dir) = federating(&own, &[(PARTNER, &endpoint, "")]).await;
    let (one, two) = (partner_leaf(&first), partner_leaf(&second));
    within(LIMIT, "the first bundle taken", async || {
        server.reason_for_cert(&one).await == TRUSTED
    })
    .await;
    assert_eq!(server.reason_for_cert(&two).await, "cert_untrusted");

    // A newer sequence replaces it within the refresh hint (1 s).
    endpoint.set_jwks(bundle(&second, 2));
    let start = Instant::now();
    within(LIMIT, "the newer bundle taken", async || {
        server.reason_for_cert(&two).await == TRUSTED
    })
    .await;
    eprintln!("newer bundle taken after {:?}", start.elapsed());
    assert_eq!(server.reason_for_cert(&one).await, "cert_untrusted");

    // An older sequence (a stale replica, a replay) is never taken; nor garbage; nor silence.
    endpoint.set_jwks(bundle(&first, 1));
    let hits = endpoint.jwks_hits();
    within(LIMIT, "two more polls", async || {
        endpoint.jwks_hits() >= hits + 2
    })
    .await;
    for mode in [Mode::Garbage, Mode::Down] {
        endpoint.set_mode(mode);
        let hits = endpoint.jwks_hits();
        within(LIMIT, "a poll in this mode", async || {
            endpoint.jwks_hits() > hits
        })
        .await;
    }
    assert_eq!(server.reason_for_cert(&two).await, TRUSTED);
    assert_eq!(server.reason_for_cert(&one).await, "cert_untrusted");

    // A newer bundle that does not hold a usable CA is not taken: the last good one stays,
    // and no build fails over it.
    endpoint.set_mode(Mode::Normal);
    endpoint.set_jwks(
        json!({"spiffe_sequence": 3, "spiffe_refresh_hint": 1,
               "keys": [{"use": "x509-svid", "kty": "EC", "x5c": ["AAAA"]}]})
        .to_string(),
    );
    let hits = endpoint.jwks_hits();
    within(LIMIT, "two polls of the broken bundle", async || {
        endpoint.jwks_hits() >= hits + 2
    })
    .await;
    assert_eq!(server.reason_for_cert(&two).await, TRUSTED);
    assert!(!readyz(&server).await.contains("last reload failed"));

    // A partner publishing another domain's CA (here, ours) gets no authority at all, and
    // nothing else is held up: our own certificates stay trusted.
    endpoint.set_jwks(bundle(&own, 4));
    within(
        LIMIT,
        "the partner refused once it lends our CA",
        async || server.reason_for_cert(&two).await == "cert_untrusted",
    )
    .await;
    assert_eq!(
        server.reason_for_cert(&own.app("payments").pem).await,
        TRUSTED
    );
    assert!(!readyz(&server).await.contains("last reload failed"));
}

async fn readyz(server: &TestServer) -> String {
    server.admin_get("/readyz").await
}

/// An endpoint that stops answering is trusted for its maximum age, then its domain is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_endpoint_silent_past_its_maximum_age_is_trusted_no_more() {
    let partner = Ca::new("Partner CA");
    let endpoint = Idp::start(bundle(&partner, 1)).await;
    let (server, _dir) = federating(
        &Ca::new("Own CA"),
        &[(PARTNER, &endpoint, "bundle_endpoint_max_age_seconds = 3\n")],
    )
    .await;
    let leaf = partner_leaf(&partner);
    within(LIMIT, "the bundle taken", async || {
        server.reason_for_cert(&leaf).await == TRUSTED
    })
    .await;
    endpoint.set_mode(Mode::Down);
    let down = Instant::now();
    within(
        LIMIT,
        "the domain refused after the maximum age",
        async || server.reason_for_cert(&leaf).await == "cert_untrusted",
    )
    .await;
    assert!(
        down.elapsed() >= Duration::from_secs(2),
        "{:?}",
        down.elapsed()
    );
}

/// A poll that brings a bundle Tollgate refuses (an older sequence: say the partner's server
/// was rebuilt) is not a good poll: the held bundle still ages out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bundle_does_not_keep_the_held_one_alive() {
    let (first, second) = (Ca::new("Partner CA 1"), Ca::new("Partner CA 2"));
    let endpoint = Idp::start(bundle(&first, 5)).await;
    let (server, _dir) = federating(
        &Ca::new("Own CA"),
        &[(PARTNER, &endpoint, "bundle_endpoint_max_age_seconds = 3\n")],
    )
    .await;
    let old = partner_leaf(&first);
    within(LIMIT, "the bundle taken", async || {
        server.reason_for_cert(&old).await == TRUSTED
    })
    .await;
    endpoint.set_jwks(bundle(&second, 1));
    within(LIMIT, "the held bundle aged out", async || {
        server.reason_for_cert(&old).await == "cert_untrusted"
    })
    .await;
}

/// One partner publishing another partner's CA cannot take that partner's trust away, whatever
/// their order in the config: the bundle that brought the shared CA in loses its authority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_lending_another_partners_ca_loses_only_its_own_authority() {
    let (ca1, ca2) = (Ca::new("Partner 1 CA"), Ca::new("Partner 2 CA"));
    let one = Idp::start(bundle(&ca1, 1)).await;
    let two = Idp::start(bundle(&ca2, 1)).await;
    let (server, _dir) = federating(
        &Ca::new("Own CA"),
        &[("one.example", &one, ""), ("two.example", &two, "")],
    )
    .await;
    let leaf = |ca: &Ca, td: &str| {
        ca.leaf(&LeafSpec {
            uris: vec![format!("spiffe://{td}/billing")],
            ..LeafSpec::app("unused")
        })
        .pem
    };
    let (from_one, from_two) = (leaf(&ca1, "one.example"), leaf(&ca2, "two.example"));
    within(LIMIT, "both bundles taken", async || {
        server.reason_for_cert(&from_one).await == TRUSTED
            && server.reason_for_cert(&from_two).await == TRUSTED
    })
    .await;
    // The first partner (listed first) starts publishing the second one's CA.
    one.set_jwks(
        json!({"spiffe_sequence": 2, "spiffe_refresh_hint": 1, "keys": [
            {"use": "x509-svid", "kty": "EC",
             "x5c": [base64::engine::general_purpose::STANDARD.encode(&ca2.der)]}]})
        .to_string(),
    );
    within(LIMIT, "the lending partner refused", async || {
        server.reason_for_cert(&from_one).await == "cert_untrusted"
    })
    .await;
    assert_eq!(server.reason_for_cert(&from_two).await, TRUSTED);
}
