//! OAuth token status lists against a real HTTPS issuer in the test process: a token naming a
//! list is allowed once the list says VALID, denied `credential_revoked` within the list's
//! `ttl` of its bit flipping (cached decisions included) while a neighbour in the same list
//! keeps passing, and denied `token_status_unavailable` while the list cannot be had: before
//! its first fetch, past its maximum age, or when what is served is not the list it claims.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::support::World;
use crate::support::idp::{Idp, Mode};
use crate::support::jwt::{TokenIssuer, now};
use crate::support::server::{Answer, Options, Req};

/// A one-bit-per-entry list, `revoked` entries INVALID, as the issuer signs it.
fn list_token(issuer: &TokenIssuer, uri: &str, ttl: u64, revoked: &[usize]) -> String {
    let mut bytes = vec![0u8; 4];
    for &i in revoked {
        bytes[i / 8] |= 1 << (i % 8);
    }
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&bytes).unwrap();
    let lst = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(zlib.finish().unwrap());
    issuer.sign_typed(
        Algorithm::ES256,
        "statuslist+jwt",
        &json!({"sub": uri, "iat": now(), "ttl": ttl, "status_list": {"bits": 1, "lst": lst}}),
    )
}

struct Setup {
    idp: Idp,
    w: World,
    _dir: tempfile::TempDir,
}

/// Tollgate whose test issuer's tokens may name lists under `<idp>/statuslists/`, refreshed
/// every second at most, and refused once a list is 3 s old.
async fn setup() -> Setup {
    let idp = Idp::start("{\"keys\":[]}".into()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("idp-ca.pem");
    std::fs::write(&ca_file, &idp.ca_pem).unwrap();
    let options = Options {
        issuer_extra: format!(
            "unqualified_users = true\nstatus_lists = [\"{}/statuslists/\"]\n\
             status_list_refresh_min_seconds = 1\nstatus_list_refresh_seconds = 1\n\
             status_list_refresh_max_seconds = 2\nstatus_list_max_age_seconds = 3\n",
            idp.url
        ),
        extra: format!(
            "[fetch]\nca_file = {:?}\ntimeout_ms = 500\n",
            ca_file.display().to_string()
        ),
        ..Options::default()
    };
    let w = World::with(options).await;
    Setup { idp, w, _dir: dir }
}

impl Setup {
    fn uri(&self, list: &str) -> String {
        format!("{}/statuslists/{list}", self.idp.url)
    }

    /// `payments` with a token at `idx` of `list`.
    fn request(&self, list: &str, idx: u64) -> Req {
        let claims = TokenIssuer::claims(
            "payments",
            "orders.read",
            json!({"status": {"status_list": {"idx": idx, "uri": self.uri(list)}}}),
        );
        Req::get("/orders/1")
            .cert(&self.w.ca.app("payments").pem)
            .token(&self.w.issuer.sign(Algorithm::ES256, None, &claims))
    }

    async fn check(&self, request: &Req) -> Answer {
        self.w.server.check(request.clone().build()).await
    }

    /// Polls `request` until its answer's reason is `want` (`allowed` for an allow), failing
    /// after `limit`; how long that took.
    async fn until(&self, request: &Req, want: &str, limit: Duration) -> (Duration, Answer) {
        let start = Instant::now();
        loop {
            let answer = self.check(request).await;
            if reason(&answer) == want {
                return (start.elapsed(), answer);
            }
            assert!(
                start.elapsed() < limit,
                "still `{}` after {limit:?}, want `{want}`: {answer:#?}",
                reason(&answer)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn reason(answer: &Answer) -> String {
    answer
        .body
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("allowed")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_revokes_within_the_lists_ttl_and_its_neighbour_keeps_passing() {
    let s = setup().await;
    let uri = s.uri("1");
    s.idp
        .set_status_list("/statuslists/1", list_token(&s.w.issuer, &uri, 1, &[]));
    let (revoked, neighbour) = (s.request("1", 3), s.request("1", 4));
    // The first sight of the list registers it; its fetch lands off the request path.
    let (_, first) = s.until(&revoked, "allowed", Duration::from_secs(3)).await;
    first.assert_allowed(&format!(
        "spiffe://{}/payments",
        crate::support::pki::TRUST_DOMAIN
    ));
    s.check(&neighbour).await;
    // Repeated, so the verdict is cached before the flip.
    for _ in 0..20 {
        assert_eq!(reason(&s.check(&revoked).await), "allowed");
    }
    s.idp
        .set_status_list("/statuslists/1", list_token(&s.w.issuer, &uri, 1, &[3]));
    let flipped = Instant::now();
    let mut neighbour_answers = 0;
    loop {
        let answer = s.check(&revoked).await;
        if reason(&answer) == "credential_revoked" {
            answer.assert_denied(401, "credential_revoked");
            let message = answer.body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("INVALID") && message.contains(&uri) && message.contains("3"),
                "{message}"
            );
            break;
        }
        assert_eq!(reason(&answer), "allowed");
        assert_eq!(reason(&s.check(&neighbour).await), "allowed");
        neighbour_answers += 1;
        assert!(
            flipped.elapsed() < Duration::from_millis(2500),
            "a flipped bit still allowed after the list's ttl (1 s) and a refresh"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = flipped.elapsed();
    // The neighbour in the same list is never touched.
    for _ in 0..20 {
        assert_eq!(reason(&s.check(&neighbour).await), "allowed");
    }
    eprintln!("flip to deny: {took:?} ({neighbour_answers} neighbour answers meanwhile)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_stale_or_foreign_status_list_denies() {
    let s = setup().await;
    let uri = s.uri("2");
    // Down from the start: never fetched, never allowed.
    s.idp.set_mode(Mode::Down);
    s.idp
        .set_status_list("/statuslists/2", list_token(&s.w.issuer, &uri, 1, &[]));
    let request = s.request("2", 0);
    for _ in 0..5 {
        s.check(&request)
            .await
            .assert_denied(503, "token_status_unavailable");
    }
    // Up: allowed. Down again: allowed on the last good copy until its maximum age (3 s).
    s.idp.set_mode(Mode::Normal);
    s.until(&request, "allowed", Duration::from_secs(5)).await;
    s.idp.set_mode(Mode::Down);
    let down = Instant::now();
    let (_, answer) = s
        .until(&request, "token_status_unavailable", Duration::from_secs(6))
        .await;
    answer.assert_denied(503, "token_status_unavailable");
    assert!(
        down.elapsed() >= Duration::from_millis(1500),
        "the last good copy should serve until its maximum age: {:?}",
        down.elapsed()
    );
    s.idp.set_mode(Mode::Normal);

    // A list served under another list's URI (its `sub` names list 2) is not list 3.
    s.idp
        .set_status_list("/statuslists/3", list_token(&s.w.issuer, &uri, 1, &[]));
    let foreign = s.request("3", 0);
    for _ in 0..10 {
        s.check(&foreign)
            .await
            .assert_denied(503, "token_status_unavailable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Signed by someone else: never believed.
    let stranger = TokenIssuer::new();
    let uri4 = s.uri("4");
    s.idp
        .set_status_list("/statuslists/4", list_token(&stranger, &uri4, 1, &[]));
    let forged = s.request("4", 0);
    for _ in 0..10 {
        s.check(&forged)
            .await
            .assert_denied(503, "token_status_unavailable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A list outside the issuer's `status_lists`: the token is refused outright, and nothing
    // is fetched from where it points.
    let claims = TokenIssuer::claims(
        "payments",
        "orders.read",
        json!({"status": {"status_list": {"idx": 0, "uri": "https://elsewhere.example/l/1"}}}),
    );
    let outside = Req::get("/orders/1")
        .cert(&s.w.ca.app("payments").pem)
        .token(&s.w.issuer.sign(Algorithm::ES256, None, &claims));
    s.check(&outside).await.assert_denied(401, "token_claims");
    // An index past the list's end is no statement about the token: refused.
    s.until(&s.request("2", 0), "allowed", Duration::from_secs(5))
        .await;
    s.check(&s.request("2", 4096))
        .await
        .assert_denied(401, "credential_revoked");
}
