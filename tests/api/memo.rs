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
    mint(&DemoRequest {
        app: "orders".into(),
        scopes: vec!["orders.read".into()],
        user: None,
        bind: false,
        lifetime: Duration::from_secs(120),
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
    let mut forged = creds.token.clone();
    let last = forged
        .pop()
        .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    forged.push(last);
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
