//! A federated trust domain's bundle polled from its SPIFFE bundle endpoint (`https_web`), a
//! real HTTPS server in the test process: taken at first poll, replaced by a newer sequence at
//! the bundle's refresh hint, never by an older one, kept through garbage and outages.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

use crate::support::idp::{Idp, Mode};
use crate::support::jwt::TokenIssuer;
use crate::support::pki::{Ca, LeafSpec};
use crate::support::server::{Options, Req, TestServer};

const PARTNER: &str = "partner.example";
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

fn partner_leaf(ca: &Ca) -> String {
    ca.leaf(&LeafSpec {
        uris: vec![format!("spiffe://{PARTNER}/billing")],
        ..LeafSpec::app("unused")
    })
    .pem
}

async fn reason(server: &TestServer, cert: &str) -> String {
    let answer = server.check(Req::get("/orders/1").cert(cert).build()).await;
    answer.body["reason"]
        .as_str()
        .unwrap_or("allowed")
        .to_owned()
}

async fn within(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < Duration::from_secs(6), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_bundle_follows_its_endpoint_by_sequence() {
    let first = Ca::new("Partner CA 1");
    let second = Ca::new("Partner CA 2");
    let endpoint = Idp::start(bundle(&first, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("endpoint-ca.pem");
    std::fs::write(&ca_file, &endpoint.ca_pem).unwrap();
    let server = TestServer::start(
        &Ca::new("Own CA"),
        &TokenIssuer::new(),
        Options {
            trust_domains_extra: format!(
                "[[identity.trust_domains]]\nname = \"{PARTNER}\"\nbundle_endpoint = \"{}/keys\"\n",
                endpoint.url
            ),
            extra: format!("[fetch]\nca_file = \"{}\"\n", ca_file.display()),
            ..Options::default()
        },
    )
    .await;
    let (one, two) = (partner_leaf(&first), partner_leaf(&second));
    within("the first bundle taken", async || {
        reason(&server, &one).await == TRUSTED
    })
    .await;
    assert_eq!(reason(&server, &two).await, "cert_untrusted");

    // A newer sequence replaces it within the refresh hint (1 s).
    endpoint.set_jwks(bundle(&second, 2));
    let start = Instant::now();
    within("the newer bundle taken", async || {
        reason(&server, &two).await == TRUSTED
    })
    .await;
    eprintln!("newer bundle taken after {:?}", start.elapsed());
    assert_eq!(reason(&server, &one).await, "cert_untrusted");

    // An older sequence (a stale replica, a replay) is never taken; nor garbage; nor silence.
    endpoint.set_jwks(bundle(&first, 1));
    let hits = endpoint.jwks_hits();
    within("two more polls", async || endpoint.jwks_hits() >= hits + 2).await;
    for mode in [Mode::Garbage, Mode::Down] {
        endpoint.set_mode(mode);
        let hits = endpoint.jwks_hits();
        within("a poll in this mode", async || endpoint.jwks_hits() > hits).await;
    }
    assert_eq!(reason(&server, &two).await, TRUSTED);
    assert_eq!(reason(&server, &one).await, "cert_untrusted");
}
