//! Issuer keys fetched at run time, against a real HTTPS issuer in the test process (rustls,
//! its own test CA): OIDC discovery, rotation followed within the refresh bound, an unknown
//! `kid` answered within one cooldown with the issuer hit at most once per cooldown, an issuer
//! that is down, slow, or answers garbage or 50 MB (the last good keys stay; past their
//! maximum age the issuer's tokens are refused), and `/readyz` waiting for a first key set.

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::idp::{Idp, Mode};
use crate::support::jwt::TokenIssuer;
use crate::support::pki::{Ca, TRUST_DOMAIN};
use crate::support::server::{Answer, Options, Req, TestServer};
use crate::support::{eventually, within};

/// The issuer's JWKS with every `kid` suffixed, so two key sets never share one.
fn jwks(keys: &TokenIssuer, suffix: &str) -> String {
    keys.jwks()
        .replace("\"kid\":\"es\"", &format!("\"kid\":\"es{suffix}\""))
        .replace("\"kid\":\"rs\"", &format!("\"kid\":\"rs{suffix}\""))
        .replace("\"kid\":\"ed\"", &format!("\"kid\":\"ed{suffix}\""))
}

struct Setup {
    idp: Idp,
    ca: Ca,
    server: TestServer,
}

/// Tollgate trusting `idp` for tokens, its keys found by discovery (or at `/keys` when
/// `discovery` is false), with `timings` as the issuer's refresh keys.
async fn setup(idp: Idp, discovery: bool, timings: &str) -> Setup {
    setup_with(idp, discovery, timings, None).await
}

async fn setup_with(
    idp: Idp,
    discovery: bool,
    timings: &str,
    policy_dir: Option<std::path::PathBuf>,
) -> Setup {
    let ca = Ca::new("Test Root CA");
    let unused = TokenIssuer::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("idp-ca.pem");
    std::fs::write(&ca_file, &idp.ca_pem).unwrap();
    let keys = if discovery {
        "discovery = true".to_owned()
    } else {
        format!("jwks_uri = \"{}/keys\"", idp.url)
    };
    let server = TestServer::start(
        &ca,
        &unused,
        Options {
            issuer_name: idp.url.clone(),
            issuer_keys: format!("{keys}\n{timings}"),
            extra: format!(
                "[fetch]\nca_file = \"{}\"\ntimeout_ms = 500\nmax_response_bytes = 65536\n",
                ca_file.display()
            ),
            metrics: true,
            policy_dir,
            ..Options::default()
        },
    )
    .await;
    drop(dir);
    Setup { idp, ca, server }
}

impl Setup {
    async fn check(&self, keys: &TokenIssuer, kid: &str) -> Answer {
        let claims = TokenIssuer::claims("payments", "orders.read", json!({"iss": self.idp.url}));
        let token = keys.sign(Algorithm::ES256, Some(kid), &claims);
        let cert = self.ca.app("payments");
        self.server
            .check(Req::get("/orders/1").cert(&cert.pem).token(&token).build())
            .await
    }

    async fn allowed(&self, keys: &TokenIssuer, kid: &str) -> bool {
        self.check(keys, kid).await.grpc_code == 0
    }

    async fn admin(&self, path: &str) -> String {
        self.server.admin_get(path).await
    }

    /// The `/metrics` line of `series` for this test's issuer with `label`, if any.
    async fn metric(&self, series: &str, label: &str) -> Option<String> {
        let issuer = format!("issuer=\"{}\"", self.idp.url);
        self.admin("/metrics")
            .await
            .lines()
            .find(|l| l.starts_with(series) && l.contains(&issuer) && l.contains(label))
            .map(str::to_owned)
    }

    async fn ready(&self) -> bool {
        self.admin("/readyz").await.starts_with("HTTP/1.1 200")
    }
}

const PRINCIPAL: &str = "spiffe://demo.tollgate.dev/payments";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_keys_and_a_rotation_is_followed_within_the_refresh_bound() {
    let first = TokenIssuer::new();
    let second = TokenIssuer::new();
    let idp = Idp::start(jwks(&first, "-1")).await;
    // The issuer asks for 1 s; the bounds allow 1–2 s.
    idp.set_cache_control(Some("public, max-age=1"));
    let s = setup(
        idp,
        true,
        "jwks_refresh_min_seconds = 1\njwks_refresh_seconds = 2\njwks_refresh_max_seconds = 2\n\
         unknown_kid_cooldown_seconds = 3600",
    )
    .await;
    within(
        Duration::from_secs(5),
        "ready with the first key set",
        async || s.ready().await,
    )
    .await;
    assert!(s.idp.discovery_hits() >= 1);
    s.check(&first, "es-1").await.assert_allowed(PRINCIPAL);
    assert_eq!(TRUST_DOMAIN, "demo.tollgate.dev");

    // Rotate: the first key is withdrawn, the second published. Only the refresh can notice
    // that `es-1` is gone (it is a known kid, so it asks for nothing).
    s.idp.set_jwks(jwks(&second, "-2"));
    let took = within(
        Duration::from_secs(4),
        "the withdrawn key refused within the refresh bound",
        async || !s.allowed(&first, "es-1").await,
    )
    .await;
    s.check(&first, "es-1")
        .await
        .assert_denied(401, "token_unknown_key");
    s.check(&second, "es-2").await.assert_allowed(PRINCIPAL);
    eprintln!("rotation followed after {took:?} (refresh bound 2 s)");
    let changed = s
        .metric("tollgate_jwks_fetches_total", "result=\"changed\"")
        .await
        .unwrap_or_else(|| panic!("no count of changed fetches"));
    assert!(changed.ends_with(" 2"), "{changed}");
    let keys = s.metric("tollgate_jwks_keys", "").await.unwrap();
    assert!(keys.ends_with(" 3"), "{keys}");
    assert!(s.metric("tollgate_jwks_age_seconds", "").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_fetches_at_most_once_per_cooldown_and_a_new_key_is_taken_within_one() {
    let first = TokenIssuer::new();
    let added = TokenIssuer::new();
    let idp = Idp::start(jwks(&first, "-1")).await;
    let s = setup(
        idp,
        false,
        "jwks_refresh_min_seconds = 3600\njwks_refresh_seconds = 3600\n\
         unknown_kid_cooldown_seconds = 2",
    )
    .await;
    within(Duration::from_secs(5), "ready", async || s.ready().await).await;
    s.check(&first, "es-1").await.assert_allowed(PRINCIPAL);
    let base = s.idp.jwks_hits();

    // The issuer publishes a new key beside the old one; a flood of tokens naming kids it
    // never published arrives, with one token signed by the new key among them.
    let both = format!(
        "{{\"keys\": [{}, {}]}}",
        &jwks(&first, "-1")[9..jwks(&first, "-1").len() - 2],
        &jwks(&added, "-new")[9..jwks(&added, "-new").len() - 2]
    );
    s.idp.set_jwks(both);
    let start = Instant::now();
    let mut flood = Vec::new();
    for n in 0..200 {
        let ghost = s.check(&first, &format!("ghost-{n}")).await;
        ghost.assert_denied(401, "token_unknown_key");
        flood.push(ghost);
    }
    let took = within(
        Duration::from_secs(3),
        "the new key accepted within one cooldown (2 s)",
        async || s.allowed(&added, "es-new").await,
    )
    .await;
    let elapsed = start.elapsed();
    let hits = s.idp.jwks_hits() - base;
    // One fetch for the first unknown kid; at most one more per cooldown since.
    let allowed = 1 + (elapsed.as_secs_f64() / 2.0).floor() as usize;
    assert!(
        (1..=allowed).contains(&hits),
        "{hits} JWKS fetches in {elapsed:?} under an unknown-kid flood (cooldown 2 s)"
    );
    eprintln!("new key accepted {took:?} after the flood; {hits} fetch(es) in {elapsed:?}");
    // The old key still works; the flood changed nothing else.
    s.check(&first, "es-1").await.assert_allowed(PRINCIPAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_never_reached_keeps_readyz_unready_and_its_tokens_refused_until_it_answers() {
    let keys = TokenIssuer::new();
    let idp = Idp::start(jwks(&keys, "-1")).await;
    idp.set_mode(Mode::Down);
    let s = setup(
        idp,
        true,
        "jwks_refresh_min_seconds = 1\njwks_refresh_seconds = 1\njwks_refresh_max_seconds = 1\n\
         jwks_max_age_seconds = 60",
    )
    .await;
    within(Duration::from_secs(3), "a failed fetch", async || {
        s.idp.discovery_hits() >= 1
    })
    .await;
    let readyz = s.admin("/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
    assert!(readyz.contains(&s.idp.url), "{readyz}");
    s.check(&keys, "es-1")
        .await
        .assert_denied(503, "token_keys_unavailable");

    s.idp.set_mode(Mode::Normal);
    within(
        Duration::from_secs(5),
        "ready once the issuer answers",
        async || s.ready().await,
    )
    .await;
    s.check(&keys, "es-1").await.assert_allowed(PRINCIPAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_issuer_keeps_the_last_good_keys_until_they_are_too_old() {
    let keys = TokenIssuer::new();
    let idp = Idp::start(jwks(&keys, "-1")).await;
    let s = setup(
        idp,
        false,
        "jwks_refresh_min_seconds = 1\njwks_refresh_seconds = 1\njwks_refresh_max_seconds = 1\n\
         jwks_max_age_seconds = 10",
    )
    .await;
    within(Duration::from_secs(5), "ready", async || s.ready().await).await;
    s.check(&keys, "es-1").await.assert_allowed(PRINCIPAL);

    // Each failure in turn: the keys in force stay, and each is counted by kind.
    for (mode, kind) in [
        (Mode::Garbage, "invalid"),
        (Mode::Huge, "too_large"),
        (Mode::Slow(Duration::from_secs(2)), "timeout"),
        (Mode::Down, "status"),
    ] {
        s.idp.set_mode(mode.clone());
        let hits = s.idp.jwks_hits();
        within(Duration::from_secs(4), "a fetch in this mode", async || {
            s.idp.jwks_hits() > hits
        })
        .await;
        let counted = format!("result=\"{kind}\"");
        within(Duration::from_secs(4), "the failure counted", async || {
            s.metric("tollgate_jwks_fetches_total", &counted)
                .await
                .is_some()
        })
        .await;
        s.check(&keys, "es-1").await.assert_allowed(PRINCIPAL);
    }

    // Still down: past the maximum age, the issuer's tokens are refused.
    let refused = within(
        Duration::from_secs(12),
        "tokens refused once the keys are older than jwks_max_age_seconds",
        async || s.check(&keys, "es-1").await.grpc_code != 0,
    )
    .await;
    s.check(&keys, "es-1")
        .await
        .assert_denied(503, "token_keys_stale");
    eprintln!("stale after a further {refused:?}");

    // And taken again as soon as a fetch succeeds.
    s.idp.set_mode(Mode::Normal);
    within(
        Duration::from_secs(5),
        "accepted again after a good fetch",
        async || s.allowed(&keys, "es-1").await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_document_for_another_issuer_is_not_used() {
    let keys = TokenIssuer::new();
    let idp = Idp::start(jwks(&keys, "-1")).await;
    idp.set_discovery_issuer("https://evil.example");
    let s = setup(
        idp,
        true,
        "jwks_refresh_min_seconds = 1\njwks_refresh_seconds = 1\njwks_refresh_max_seconds = 1",
    )
    .await;
    within(
        Duration::from_secs(4),
        "discovery tried twice",
        async || s.idp.discovery_hits() >= 2,
    )
    .await;
    assert_eq!(s.idp.jwks_hits(), 0, "the JWKS it named was fetched");
    assert!(!s.ready().await);
    s.check(&keys, "es-1")
        .await
        .assert_denied(503, "token_keys_unavailable");
}

/// No Check waits on a fetch: with the issuer answering after 400 ms (under the 500 ms
/// timeout) and refreshing every second, Checks with tokens keep their latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_check_waits_on_a_fetch() {
    let first = TokenIssuer::new();
    let idp = Idp::start(jwks(&first, "-1")).await;
    let s = setup(
        idp,
        false,
        "jwks_refresh_min_seconds = 1\njwks_refresh_seconds = 1\njwks_refresh_max_seconds = 1\n\
         unknown_kid_cooldown_seconds = 1",
    )
    .await;
    within(Duration::from_secs(5), "ready", async || s.ready().await).await;
    s.idp.set_mode(Mode::Slow(Duration::from_millis(400)));
    let start = Instant::now();
    let hits = s.idp.jwks_hits();
    let mut latencies = Vec::new();
    let mut n = 0;
    // Keep asking through several slow refreshes, half the Checks with unknown kids (each of
    // which asks for a refetch).
    while start.elapsed() < Duration::from_secs(3) || s.idp.jwks_hits() < hits + 2 {
        let kid = if n % 2 == 0 {
            "es-1".to_owned()
        } else {
            format!("new-{n}")
        };
        let t = Instant::now();
        let answer = s.check(&first, &kid).await;
        latencies.push(t.elapsed());
        assert_eq!(answer.grpc_code == 0, n % 2 == 0, "{answer:?}");
        n += 1;
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = *latencies.last().unwrap();
    eprintln!(
        "{} Checks during slow refreshes: p99 {p99:?}, max {max:?}",
        latencies.len()
    );
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    assert!(
        max < Duration::from_millis(300),
        "max {max:?}: a Check waited on a fetch"
    );
    eventually("the slow fetches happened", || {
        s.idp.jwks_hits() >= hits + 2
    })
    .await;
}

/// A policy edit that does not build must not freeze the issuer's keys: the key the issuer
/// withdrew is refused and the new one taken, while the broken edit is reported and the last
/// good policies keep deciding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_edit_does_not_freeze_a_key_rotation() {
    let first = TokenIssuer::new();
    let second = TokenIssuer::new();
    let idp = Idp::start(jwks(&first, "-1")).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = crate::support::copy_policies(dir.path());
    let s = setup_with(
        idp,
        false,
        "jwks_refresh_min_seconds = 1\njwks_refresh_seconds = 1\njwks_refresh_max_seconds = 1\n\
         unknown_kid_cooldown_seconds = 3600",
        Some(policies.clone()),
    )
    .await;
    within(Duration::from_secs(5), "ready", async || s.ready().await).await;
    s.check(&first, "es-1").await.assert_allowed(PRINCIPAL);

    std::fs::write(
        policies.join("zz-broken.cedar"),
        "permit(principal,, action, resource);",
    )
    .unwrap();
    within(
        Duration::from_secs(5),
        "the broken edit reported",
        async || s.admin("/readyz").await.contains("last reload failed"),
    )
    .await;
    s.idp.set_jwks(jwks(&second, "-2"));
    within(
        Duration::from_secs(5),
        "the withdrawn key refused despite the broken policy edit",
        async || !s.allowed(&first, "es-1").await,
    )
    .await;
    s.check(&second, "es-2").await.assert_allowed(PRINCIPAL);
    assert!(s.admin("/readyz").await.contains("last reload failed"));
}

/// One key Tollgate cannot use (a curve it does not support) must not cost the issuer its
/// whole rotation: the usable keys beside it are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_key_in_a_fetched_set_does_not_reject_the_others() {
    let first = TokenIssuer::new();
    let second = TokenIssuer::new();
    let idp = Idp::start(jwks(&first, "-1")).await;
    let s = setup(
        idp,
        false,
        "jwks_refresh_min_seconds = 1\njwks_refresh_seconds = 1\njwks_refresh_max_seconds = 1\n\
         unknown_kid_cooldown_seconds = 3600",
    )
    .await;
    within(Duration::from_secs(5), "ready", async || s.ready().await).await;
    let mut rotated: serde_json::Value = serde_json::from_str(&jwks(&second, "-2")).unwrap();
    rotated["keys"].as_array_mut().unwrap().push(json!({
        "kty": "EC", "crv": "secp256k1", "kid": "k1",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRjfb3J8F7l7fi8eYP1dG-I3Tvs6mR-1G1XK6R8",
    }));
    s.idp.set_jwks(rotated.to_string());
    within(
        Duration::from_secs(5),
        "the usable new key taken beside an unusable one",
        async || s.allowed(&second, "es-2").await,
    )
    .await;
    s.check(&first, "es-1")
        .await
        .assert_denied(401, "token_unknown_key");
}
