//! Trust bundles streamed from the SPIFFE Workload API (a fake agent in the test process,
//! tonic over a Unix socket): the own trust domain's CA rotated mid-traffic, a federated
//! domain's bundle arriving and leaving, streams cut and reconnected, the agent gone past the
//! maximum age. Traffic runs throughout; no request may be decided wrongly.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::jwt::TokenIssuer;
use crate::support::pki::{Ca, Leaf, LeafSpec, TRUST_DOMAIN};
use crate::support::server::{Options, Req, TestServer};
use crate::support::within;
use crate::support::workload::{FakeWorkloadApi, JwtBundlesResponse, X509Svid, X509SvidResponse};

const PARTNER: &str = "partner.example";

/// Longest a test waits for an effect (a poll, a reconnection, a build).
const LIMIT: Duration = Duration::from_secs(8);

/// A certificate-only read of an order: the certificate verified, the example policies then
/// want a token. `cert_untrusted` is the answer when no bundle vouches for it.
const TRUSTED: &str = "policy_denied";

fn key_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .secret_der()
        .to_vec()
}

/// What the agent sends: Tollgate's SVID from `issuing`, the own domain's bundle `own`, and
/// the federated bundles.
fn x509(issuing: &Ca, own: &[&Ca], federated: &[(&str, &Ca)]) -> X509SvidResponse {
    x509_with(&issuing.app("tollgate"), own, federated)
}

/// The same with the given SVID.
fn x509_with(svid: &Leaf, own: &[&Ca], federated: &[(&str, &Ca)]) -> X509SvidResponse {
    X509SvidResponse {
        svids: vec![X509Svid {
            spiffe_id: format!("spiffe://{TRUST_DOMAIN}/tollgate"),
            x509_svid: svid.der.clone(),
            x509_svid_key: key_der(&svid.key_pem),
            bundle: own.iter().flat_map(|ca| ca.der.clone()).collect(),
            hint: String::new(),
        }],
        crl: vec![],
        federated_bundles: federated
            .iter()
            .map(|(td, ca)| (format!("spiffe://{td}"), ca.der.clone()))
            .collect::<HashMap<_, _>>(),
    }
}

/// The own trust domain's JWT bundle, as the agent sends it.
fn own_jwt_bundle(jwks: Vec<u8>) -> JwtBundlesResponse {
    JwtBundlesResponse {
        bundles: [(format!("spiffe://{TRUST_DOMAIN}"), jwks)].into(),
    }
}

/// A JWT-SVID for `spiffe://…/payments`, audience `tollgate`, signed by `keys`.
fn jwt_svid(keys: &TokenIssuer) -> String {
    keys.sign(
        jsonwebtoken::Algorithm::ES256,
        None,
        &serde_json::json!({
            "sub": format!("spiffe://{TRUST_DOMAIN}/payments"), "aud": "tollgate",
            "exp": crate::support::jwt::now() + 300,
        }),
    )
}

/// Bundles from `agent` (kept two seconds while it is unreachable), JWT-SVIDs accepted.
fn streamed(agent: &FakeWorkloadApi) -> Options {
    Options {
        identity_extra: format!(
            "workload_api = \"{}\"\nworkload_api_max_age_seconds = 2",
            agent.endpoint()
        ),
        own_bundle: String::new(),
        extra: "[jwt_svid]\naudiences = [\"tollgate\"]\n".into(),
        ..Options::default()
    }
}

/// Sends the request `cert` makes, over and over, until `stop`; counts answers other than the
/// deny reason `expect`.
fn traffic(
    server: &TestServer,
    cert: String,
    expect: &'static str,
    stop: Arc<AtomicBool>,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<Vec<Duration>>,
) {
    let wrong = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let client = server.client.clone();
    let (w, n) = (wrong.clone(), sent.clone());
    let task = tokio::spawn(async move {
        let mut latencies = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let request = Req::get("/orders/1").cert(&cert).build();
            let sent_at = std::time::Instant::now();
            let answer: crate::support::server::Answer = client
                .clone()
                .check(request)
                .await
                .unwrap()
                .into_inner()
                .into();
            latencies.push(sent_at.elapsed());
            let reason = answer.body["reason"].as_str().map(str::to_owned);
            let right = reason.as_deref() == Some(expect);
            if !right {
                w.fetch_add(1, Ordering::SeqCst);
                eprintln!("wrongly decided: {answer:?}");
            }
            n.fetch_add(1, Ordering::SeqCst);
        }
        latencies
    });
    (wrong, sent, task)
}

async fn ready(server: &TestServer) -> String {
    server.admin_get("/readyz").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_rotate_federate_reconnect_and_expire_with_no_request_decided_wrongly() {
    let ca1 = Ca::new("Own CA 1");
    let ca2 = Ca::new("Own CA 2");
    let partner = Ca::new("Partner CA");
    let mut agent = FakeWorkloadApi::start().await;
    let server = TestServer::start(
        &ca1,
        &TokenIssuer::new(),
        Options {
            trust_domains_extra: format!("[[identity.trust_domains]]\nname = \"{PARTNER}\"\n"),
            ..streamed(&agent)
        },
    )
    .await;

    // Before the agent has said anything: nothing is trusted, and /readyz says what it waits for.
    let old = ca1.app("payments").pem;
    let new = ca2.app("payments").pem;
    assert_eq!(server.reason_for_cert(&old).await, "cert_untrusted");
    let readyz = ready(&server).await;
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
    assert!(readyz.contains(TRUST_DOMAIN), "{readyz}");

    // JWT-SVIDs: refused while the agent has sent no JWT bundle for their domain.
    let jwt_keys = TokenIssuer::new();
    let jwt_svid = jwt_svid(&jwt_keys);
    assert_eq!(server.reason_for_token(&jwt_svid).await, "token_issuer");

    agent.set_jwt(own_jwt_bundle(jwt_keys.jwks().into_bytes()));
    agent.set_x509(x509(&ca1, &[&ca1], &[(PARTNER, &partner)]));
    within(LIMIT, "the JWT bundle taken", async || {
        server.reason_for_token(&jwt_svid).await == TRUSTED
    })
    .await;
    within(LIMIT, "the first bundles taken", async || {
        server.reason_for_cert(&old).await == TRUSTED
    })
    .await;
    assert!(ready(&server).await.starts_with("HTTP/1.1 200"));
    assert_eq!(server.reason_for_cert(&new).await, "cert_untrusted");
    // The partner's CA vouches for the partner domain (the policy then decides) and for
    // nothing else; the own CA cannot vouch for the partner domain.
    let partner_leaf = partner
        .leaf(&LeafSpec {
            uris: vec![format!("spiffe://{PARTNER}/billing")],
            ..LeafSpec::app("unused")
        })
        .pem;
    let own_ca_as_partner = ca1
        .leaf(&LeafSpec {
            uris: vec![format!("spiffe://{PARTNER}/billing")],
            ..LeafSpec::app("unused")
        })
        .pem;
    assert_eq!(server.reason_for_cert(&partner_leaf).await, "policy_denied");
    assert_eq!(
        server.reason_for_cert(&own_ca_as_partner).await,
        "cert_untrusted"
    );
    assert_eq!(
        server.reason_for_cert(&partner.app("payments").pem).await,
        "cert_untrusted"
    );

    // Rotation, step 1: the agent adds the new CA beside the old one. Old certificates stay
    // trusted throughout; new ones become trusted.
    let stop = Arc::new(AtomicBool::new(false));
    let (wrong_old, sent_old, old_traffic) = traffic(&server, old.clone(), TRUSTED, stop.clone());
    agent.set_x509(x509(&ca1, &[&ca1, &ca2], &[(PARTNER, &partner)]));
    within(LIMIT, "the new CA trusted", async || {
        server.reason_for_cert(&new).await == TRUSTED
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut latencies = old_traffic.await.unwrap();

    // Step 2: the old CA is withdrawn (and the SVID reissued by the new one). New
    // certificates stay trusted throughout, across a cut of every stream too.
    let stop = Arc::new(AtomicBool::new(false));
    let (wrong_new, sent_new, new_traffic) = traffic(&server, new.clone(), TRUSTED, stop.clone());
    agent.set_x509(x509(&ca2, &[&ca2], &[(PARTNER, &partner)]));
    within(LIMIT, "the old CA withdrawn", async || {
        server.reason_for_cert(&old).await == "cert_untrusted"
    })
    .await;
    let opened = agent.streams_opened();
    agent.cut_streams();
    within(LIMIT, "the streams reopened", async || {
        agent.streams_opened() >= opened + 2
    })
    .await;
    // The federated bundle leaves: the partner domain is no longer trusted.
    agent.set_x509(x509(&ca2, &[&ca2], &[]));
    within(LIMIT, "the federated bundle dropped", async || {
        server.reason_for_cert(&partner_leaf).await == "cert_untrusted"
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    latencies.extend(new_traffic.await.unwrap());
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];

    // The agent goes away: the last bundles hold for the maximum age (2 s), then go.
    agent.stop().await;
    let gone = std::time::Instant::now();
    assert_eq!(server.reason_for_cert(&new).await, TRUSTED);
    within(
        LIMIT,
        "the bundles dropped after the maximum age",
        async || server.reason_for_cert(&new).await == "cert_untrusted",
    )
    .await;
    let held = gone.elapsed();
    assert!(
        held >= Duration::from_millis(1500),
        "dropped after {held:?}"
    );
    assert!(ready(&server).await.starts_with("HTTP/1.1 503"));

    // And back.
    agent.resume();
    within(LIMIT, "trusted again once the agent is back", async || {
        server.reason_for_cert(&new).await == TRUSTED
    })
    .await;

    let (wrong, sent) = (
        wrong_old.load(Ordering::SeqCst) + wrong_new.load(Ordering::SeqCst),
        sent_old.load(Ordering::SeqCst) + sent_new.load(Ordering::SeqCst),
    );
    eprintln!(
        "{sent} requests during rotation and reconnection; {wrong} decided wrongly; p99 {p99:?}; bundles held {held:?} after the agent left"
    );
    assert!(sent > 50, "too little traffic to say anything: {sent}");
    assert_eq!(wrong, 0);
}

/// Tollgate's SVID for the listener: `spiffe://…/tollgate`, plus a DNS name a TLS client can
/// check.
fn listener_svid(issuing: &Ca, dns: &str) -> Leaf {
    issuing.leaf(&LeafSpec {
        uris: vec![format!("spiffe://{TRUST_DOMAIN}/tollgate")],
        dns: vec![dns.into()],
        ..LeafSpec::app("tollgate")
    })
}

/// An mTLS channel to `port` trusting only `trusts`, presenting `client` (an Envoy SVID).
async fn tls_channel(
    port: u16,
    trusts: &Ca,
    client: &Leaf,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    Endpoint::from_shared(format!("https://localhost:{port}"))?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&trusts.pem))
                .identity(Identity::from_pem(&client.pem, &client.key_pem))
                .domain_name("localhost"),
        )?
        .connect()
        .await
}

async fn check_over(channel: &tonic::transport::Channel, cert: &str) -> String {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    let answer: crate::support::server::Answer = AuthorizationClient::new(channel.clone())
        .check(Req::get("/orders/1").cert(cert).build())
        .await
        .unwrap()
        .into_inner()
        .into();
    answer.body["reason"]
        .as_str()
        .unwrap_or("allowed")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_serves_its_own_svid_and_rotates_it_without_dropping_connections() {
    let ca1 = Ca::new("Own CA 1");
    let ca2 = Ca::new("Own CA 2");
    let mut agent = FakeWorkloadApi::start().await;
    agent.set_x509(x509_with(&listener_svid(&ca1, "localhost"), &[&ca1], &[]));
    let server = TestServer::start(
        &ca1,
        &TokenIssuer::new(),
        Options {
            server_extra: "workload_api_tls = true".into(),
            identity_extra: format!("workload_api = \"{}\"", agent.endpoint()),
            own_bundle: String::new(),
            ..Options::default()
        },
    )
    .await;
    let port = server.running.as_ref().unwrap().grpc_addr.port();
    let envoy1 = ca1.app("envoy");
    let envoy2 = ca2.app("envoy");
    let caller = ca1.app("payments").pem;

    // A connection is served with the SVID from CA 1, and only to a client CA 1 vouches for.
    let mut first = None;
    within(LIMIT, "a TLS connection with the first SVID", async || {
        first = tls_channel(port, &ca1, &envoy1).await.ok();
        first.is_some()
    })
    .await;
    let first = first.unwrap();
    // The listener takes the SVID per handshake; the bundle reaches decisions with the next
    // snapshot.
    within(LIMIT, "the bundle in force", async || {
        check_over(&first, &caller).await == TRUSTED
    })
    .await;
    let refused = tls_channel(port, &ca1, &envoy2).await;
    let refused = match refused {
        Ok(channel) => {
            use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
            AuthorizationClient::new(channel)
                .check(Req::get("/orders/1").build())
                .await
                .is_err()
        }
        Err(_) => true,
    };
    assert!(
        refused,
        "a client certificate from an unknown CA was served"
    );

    // The SVID alone is reissued (same CA, a new name in it): new connections get it at once,
    // and no snapshot is rebuilt for it (every cache stays warm).
    let generation = |readyz: String| {
        readyz
            .split_whitespace()
            .find_map(|w| w.strip_prefix("generation="))
            .map(str::to_owned)
    };
    let before = generation(ready(&server).await);
    agent.set_x509(x509_with(
        &listener_svid(&ca1, "tollgate.test"),
        &[&ca1],
        &[],
    ));
    within(
        LIMIT,
        "a new connection served with the reissued SVID",
        async || {
            use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
            let endpoint = Endpoint::from_shared(format!("https://localhost:{port}"))
                .unwrap()
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&ca1.pem))
                        .identity(Identity::from_pem(&envoy1.pem, &envoy1.key_pem))
                        .domain_name("tollgate.test"),
                )
                .unwrap();
            endpoint.connect().await.is_ok()
        },
    )
    .await;
    assert_eq!(
        generation(ready(&server).await),
        before,
        "an SVID-only rotation rebuilt the snapshot"
    );

    // Rotation: the SVID is reissued by CA 2, and the bundle holds both CAs.
    agent.set_x509(x509_with(
        &listener_svid(&ca2, "localhost"),
        &[&ca1, &ca2],
        &[],
    ));
    let mut second = None;
    within(
        LIMIT,
        "a new connection served with the new SVID",
        async || {
            second = tls_channel(port, &ca2, &envoy2).await.ok();
            second.is_some()
        },
    )
    .await;
    assert_eq!(check_over(&second.unwrap(), &caller).await, TRUSTED);
    // The connection opened before the rotation is still served.
    for _ in 0..20 {
        assert_eq!(check_over(&first, &caller).await, TRUSTED);
    }
    agent.stop().await;
}

/// The maximum age counts from when the agent was last reachable, not from its last update:
/// SPIRE sends an update only when something changes, so a quiet agent is not a stale one, and
/// a stream cut after a quiet spell must not drop the bundles while Tollgate reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_agent_is_not_a_stale_one() {
    let ca = Ca::new("Own CA");
    let jwt_keys = TokenIssuer::new();
    let mut agent = FakeWorkloadApi::start().await;
    agent.set_x509(x509(&ca, &[&ca], &[]));
    agent.set_jwt(own_jwt_bundle(jwt_keys.jwks().into_bytes()));
    let server = TestServer::start(&ca, &TokenIssuer::new(), streamed(&agent)).await;
    let cert = ca.app("payments").pem;
    let jwt_svid = jwt_svid(&jwt_keys);
    within(LIMIT, "the bundles taken", async || {
        server.reason_for_cert(&cert).await == TRUSTED
            && server.reason_for_token(&jwt_svid).await == TRUSTED
    })
    .await;
    // The scenario itself: the agent stays connected and says nothing for longer than the
    // maximum age (nothing changed), then restarts: gone for a second, well within the
    // maximum age counted from then.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let opened = agent.streams_opened();
    agent.stop().await;
    let mut wrong = Vec::new();
    let probe = async |wrong: &mut Vec<String>| {
        for (what, got) in [
            ("certificate", server.reason_for_cert(&cert).await),
            ("JWT-SVID", server.reason_for_token(&jwt_svid).await),
        ] {
            if got != TRUSTED {
                wrong.push(format!("{what}: {got}"));
            }
        }
    };
    let stopped = std::time::Instant::now();
    while stopped.elapsed() < Duration::from_secs(1) {
        probe(&mut wrong).await;
    }
    agent.resume();
    while agent.streams_opened() < opened + 2 {
        probe(&mut wrong).await;
    }
    assert!(
        wrong.is_empty(),
        "wrongly refused while reconnecting: {wrong:?}"
    );
}

/// Shutting down releases the listener served with the SVID: nothing keeps accepting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_svid_listener_stops_accepting_at_shutdown() {
    let ca = Ca::new("Own CA");
    let agent = FakeWorkloadApi::start().await;
    agent.set_x509(x509_with(&listener_svid(&ca, "localhost"), &[&ca], &[]));
    let mut server = TestServer::start(
        &ca,
        &TokenIssuer::new(),
        Options {
            server_extra: "workload_api_tls = true".into(),
            ..streamed(&agent)
        },
    )
    .await;
    let addr = server.running.as_ref().unwrap().grpc_addr;
    server.pause().await;
    within(LIMIT, "the port released after shutdown", async || {
        std::net::TcpListener::bind(addr).is_ok()
    })
    .await;
}

/// Connections that deliver nothing usable do not count as the agent being there: the held
/// bundles still age out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sending_only_unusable_updates_ages_out() {
    let ca = Ca::new("Own CA");
    let agent = FakeWorkloadApi::start().await;
    agent.set_x509(x509(&ca, &[&ca], &[]));
    let server = TestServer::start(&ca, &TokenIssuer::new(), streamed(&agent)).await;
    let cert = ca.app("payments").pem;
    within(LIMIT, "the bundle taken", async || {
        server.reason_for_cert(&cert).await == TRUSTED
    })
    .await;
    agent.set_x509(X509SvidResponse {
        svids: vec![],
        crl: vec![],
        federated_bundles: HashMap::new(),
    });
    agent.cut_streams();
    within(LIMIT, "the bundle aged out", async || {
        server.reason_for_cert(&cert).await == "cert_untrusted"
    })
    .await;
}

/// A JWT authority Tollgate cannot use (a symmetric key) beside the usable ones costs only
/// itself: JWT-SVIDs signed by the others still verify, and nothing else is held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_jwt_authority_costs_only_itself() {
    let ca = Ca::new("Own CA");
    let jwt_keys = TokenIssuer::new();
    let agent = FakeWorkloadApi::start().await;
    agent.set_x509(x509(&ca, &[&ca], &[]));
    let mut jwks: serde_json::Value = serde_json::from_str(&jwt_keys.jwks()).unwrap();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}));
    agent.set_jwt(own_jwt_bundle(jwks.to_string().into_bytes()));
    let server = TestServer::start(&ca, &TokenIssuer::new(), streamed(&agent)).await;
    let jwt_svid = jwt_svid(&jwt_keys);
    within(LIMIT, "the JWT-SVID verified", async || {
        server.reason_for_token(&jwt_svid).await == TRUSTED
    })
    .await;
}
