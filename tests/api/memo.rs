//! Remembered verdicts (the per-thread memo in front of the pipeline), driven through the
//! `Authorizer` with an explicit clock and real demo credentials: reuse must never outlive the
//! credentials, nor answer another request or a genuine token with a forgery's refusal.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::UnixTime;
use tollgate::audit::AuditLog;
use tollgate::authz::{Authorizer, Caches};
use tollgate::demo::{DemoCredentials, DemoRequest, mint};
use tollgate::request::CheckInput;
use tollgate::snapshot::SnapshotHandle;
use tollgate::verdict::{ReasonCode, Verdict};

fn authorizer() -> Authorizer {
    let (_, snapshot) =
        tollgate::config::load(&tollgate::config::ConfigSource::Embedded, 1).unwrap();
    Authorizer::new(
        Arc::new(SnapshotHandle::new(snapshot)),
        Caches::new(1024, 3600),
        AuditLog::disabled(),
    )
}

fn credentials() -> DemoCredentials {
    lasting(120)
}

/// Demo credentials for `orders` (certificate and token) good for `seconds`.
fn lasting(seconds: u64) -> DemoCredentials {
    mint(&DemoRequest {
        app: "orders".into(),
        scopes: vec!["orders.read".into()],
        user: None,
        bind: false,
        lifetime: Duration::from_secs(seconds),
    })
    .unwrap()
}

fn request(creds: &DemoCredentials, token: &str, path: &str) -> CheckInput {
    let mut input = CheckInput {
        method: "GET".into(),
        path: path.into(),
        host: "shop.demo".into(),
        certificate: percent_encoding::utf8_percent_encode(
            &creds.cert_pem,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string(),
        ..CheckInput::default()
    };
    input.insert_header("authorization", format!("Bearer {token}"));
    input
}

fn reason(verdict: &Verdict) -> Option<&'static str> {
    verdict.reason().map(ReasonCode::as_str)
}

/// A remembered allow must not outlive the credentials it was given to.
#[test]
fn a_remembered_allow_ends_when_the_credentials_expire() {
    let authorizer = authorizer();
    let snapshot = authorizer.snapshot();
    let creds = credentials();
    let input = request(&creds, &creds.token, "/orders/1");
    let now = UnixTime::now();
    let first = authorizer.decide(&snapshot, &input, now, None);
    assert!(first.is_allowed(), "{first:?}");
    let again = authorizer.decide(&snapshot, &input, now, None);
    assert!(again.is_allowed());
    assert_ne!(again.decision_id, first.decision_id);
    assert_eq!(again.principal, first.principal);
    let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 600));
    let expired = authorizer.decide(&snapshot, &input, later, None);
    assert!(
        !expired.is_allowed(),
        "allowed after its credentials expired"
    );
    // Another path for the same caller is decided on its own.
    let admin = authorizer.decide(
        &snapshot,
        &request(&creds, &creds.token, "/admin/x"),
        now,
        None,
    );
    assert_ne!(reason(&admin), None, "{admin:?}");
}

#[test]
fn a_replayed_forgery_is_refused_the_same_way_every_time() {
    let authorizer = authorizer();
    let snapshot = authorizer.snapshot();
    let creds = credentials();
    // One character inside the signature, clear of the last one's padding bits (changing
    // those makes the token malformed, not forged).
    let mut forged = creds.token.clone().into_bytes();
    let at = forged.len() - 5;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let input = request(&creds, &forged, "/orders/1");
    let now = UnixTime::now();
    for _ in 0..3 {
        let verdict = authorizer.decide(&snapshot, &input, now, None);
        assert_eq!(reason(&verdict), Some("token_signature"), "{verdict:?}");
    }
    // The genuine token, same certificate, is not refused from memory.
    let genuine = authorizer.decide(
        &snapshot,
        &request(&creds, &creds.token, "/orders/1"),
        now,
        None,
    );
    assert!(genuine.is_allowed(), "{genuine:?}");
}

/// Review finding: a remembered refusal kept the message of the uncut error, so a token
/// carrying kilobytes of text (here its issuer) parked them in every thread's memo.
#[test]
fn a_remembered_refusal_keeps_a_short_message() {
    use base64::Engine;
    let authorizer = authorizer();
    let snapshot = authorizer.snapshot();
    let creds = credentials();
    let part = |json: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    };
    let token = format!(
        "{}.{}.{}",
        part(serde_json::json!({"alg": "ES256", "kid": "demo-2026"})),
        part(serde_json::json!({"iss": "x".repeat(8_000), "aud": "tollgate-demo"})),
        "c2lnbmF0dXJl"
    );
    let input = request(&creds, &token, "/orders/1");
    let now = UnixTime::now();
    for _ in 0..2 {
        let verdict = authorizer.decide(&snapshot, &input, now, None);
        assert_eq!(reason(&verdict), Some("token_issuer"), "{verdict:?}");
        let tollgate::verdict::Outcome::Deny(denial) = &verdict.outcome else {
            panic!("allowed");
        };
        assert!(
            denial.message.len() <= 200,
            "{} bytes",
            denial.message.len()
        );
    }
}

/// Review finding: both credentials expired together, so the test above would pass if reuse
/// ignored either one. Here each outlives the other in turn.
#[test]
fn a_remembered_allow_ends_with_whichever_credential_expires_first() {
    let authorizer = authorizer();
    let snapshot = authorizer.snapshot();
    let (long, short) = (lasting(3600), lasting(120));
    let now = UnixTime::now();
    let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 600));
    for (cert, token, expected) in [
        (&long, &short, "token_expired"),
        (&short, &long, "cert_expired"),
    ] {
        let input = request(cert, &token.token, "/orders/1");
        for _ in 0..2 {
            let verdict = authorizer.decide(&snapshot, &input, now, None);
            assert!(verdict.is_allowed(), "{verdict:?}");
        }
        let verdict = authorizer.decide(&snapshot, &input, later, None);
        assert_eq!(reason(&verdict), Some(expected), "{verdict:?}");
    }
}
