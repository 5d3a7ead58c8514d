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
    let forged = forge(&creds.token, 0);
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

/// `token` with one character of its signature changed, clear of the last one's padding bits
/// (changing those makes the token malformed, not forged); `n` picks which.
fn forge(token: &str, n: usize) -> String {
    let mut forged = token.to_owned().into_bytes();
    let at = forged.len() - 5 - n;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(forged).unwrap()
}

/// A forged token refused for the first time is kept by the refused-token cache alone: the
/// verdict caches may answer it again only from its second sighting. So a flood of distinct
/// forgeries, each sent once, copies none of its requests into the per-thread memo of
/// refusals, where they would push out the refusals a retrying client is answered from.
#[test]
fn a_forgery_is_remembered_past_the_refused_token_cache_only_when_it_comes_again() {
    use tollgate::identity::{IdentityCaches, verify_reusable};
    let (_, snapshot) =
        tollgate::config::load(&tollgate::config::ConfigSource::Embedded, 1).unwrap();
    let caches = IdentityCaches::new(1024, 3600);
    let creds = credentials();
    let now = UnixTime::now();
    let refuse = |token: &str| {
        verify_reusable(
            &snapshot.identity,
            &caches,
            snapshot.generation,
            &request(&creds, token, "/orders/1"),
            now,
        )
        .unwrap_err()
    };
    for n in 0..3 {
        let forged = forge(&creds.token, n);
        let first = refuse(&forged);
        assert_eq!(
            first.error.to_string(),
            "token signature is invalid",
            "{first:?}"
        );
        assert_eq!(first.final_until, None, "forgery {n}: a first sighting");
        for _ in 0..2 {
            let again = refuse(&forged);
            assert_eq!(again.error.to_string(), first.error.to_string());
            let until = again
                .final_until
                .expect("seen before: final, and remembered");
            assert!(until > i64::try_from(now.as_secs()).unwrap());
        }
    }
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
    // Fresh, then from the refused-token cache, then from the verdict memo (a refusal reaches
    // the memos from its second sighting).
    for _ in 0..3 {
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

/// The demo's web front end, as the PEP of AuthZEN calls, and an authorizer with a decision
/// cache (so answers may be remembered).
fn authzen_world() -> (Authorizer, CheckInput) {
    let pep = mint(&DemoRequest {
        app: "web-frontend".into(),
        scopes: Vec::new(),
        user: None,
        bind: false,
        lifetime: Duration::from_secs(120),
    })
    .unwrap()
    .check_input("POST", "/access/v1/evaluations");
    (authorizer(), pep)
}

/// `body` asked of `authorizer` by the PEP `input` (authenticated under the memo key
/// `pep_key`), through the remembered-answer path as the HTTP door drives it: the answer, its
/// decision id, and whether it was decided now (rather than answered from memory).
fn ask(
    authorizer: &Authorizer,
    input: &CheckInput,
    body: &str,
    cut_short: bool,
) -> (String, Option<tollgate::verdict::DecisionId>, bool) {
    ask_within(authorizer, input, body, cut_short, Duration::from_secs(5))
}

/// [`ask`] with the call's time budget.
fn ask_within(
    authorizer: &Authorizer,
    input: &CheckInput,
    body: &str,
    cut_short: bool,
    budget: Duration,
) -> (String, Option<tollgate::verdict::DecisionId>, bool) {
    let mut pep = authorizer
        .authzen_caller_keyed(
            |key| key.extend_from_slice(b"the web front end"),
            || Ok(input.clone()),
        )
        .unwrap()
        .unwrap();
    let mut decided = false;
    let (answer, id) = authorizer
        .authzen_answer(&mut pep, &[b"batch", body.as_bytes()], |pep| {
            decided = true;
            if cut_short {
                pep.not_reusable();
            }
            tollgate::http::authzen::decide_body(authorizer, pep, true, body.as_bytes(), budget)
                .map(|a| (a.body, a.decision_id))
        })
        .unwrap_or_else(|refused| panic!("refused: {refused:?}"));
    (String::from_utf8(answer.to_vec()).unwrap(), id, decided)
}

fn evaluations(n: usize) -> String {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let owner = if i % 2 == 0 { "alice" } else { "bob" };
            serde_json::json!({"resource": {"type": "order", "id": format!("O-{i}"),
                "properties": {"owner": {"type": "User", "id": owner}}}})
        })
        .collect();
    serde_json::json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "orders:view"},
        "evaluations": items,
    })
    .to_string()
}

#[test]
fn a_repeated_authzen_call_is_answered_from_memory_with_new_decision_ids() {
    let (authorizer, pep) = authzen_world();
    let single = r#"{"subject":{"type":"user","id":"alice"},"action":{"name":"orders:view"},
        "resource":{"type":"order","id":"O-1","properties":{"owner":{"type":"User","id":"alice"}}}}"#;
    let first = ask(&authorizer, &pep, single, false);
    assert!(first.2, "the first call is decided");
    assert_eq!(first.0, r#"{"decision":true}"#);
    let again = ask(&authorizer, &pep, single, false);
    assert!(!again.2, "the same call again is answered from memory");
    assert_eq!(again.0, first.0);
    let (Some(one), Some(two)) = (first.1, again.1) else {
        panic!("a single evaluation carries its decision id");
    };
    assert_ne!(one, two, "each answer is its own decision");

    // Another body is another question.
    let other = single.replace("\"O-1\"", "\"O-2\"");
    assert!(ask(&authorizer, &pep, &other, false).2);
    // A batch answered from memory has the same answer and no single decision id.
    let batch = evaluations(4);
    let decided = ask(&authorizer, &pep, &batch, false);
    let remembered = ask(&authorizer, &pep, &batch, false);
    assert!(decided.2 && !remembered.2);
    assert_eq!(decided.0, remembered.0);
    assert_eq!(remembered.1, None);
}

#[test]
fn a_reload_a_cut_short_call_or_a_large_batch_is_decided_again() {
    let (authorizer, pep) = authzen_world();
    let batch = evaluations(4);
    assert!(ask(&authorizer, &pep, &batch, false).2);
    assert!(!ask(&authorizer, &pep, &batch, false).2);
    // A new snapshot: nothing remembered under the old one is used.
    let (_, snapshot) =
        tollgate::config::load(&tollgate::config::ConfigSource::Embedded, 2).unwrap();
    authorizer.snapshots().store(snapshot);
    assert!(ask(&authorizer, &pep, &batch, false).2, "after a reload");
    assert!(!ask(&authorizer, &pep, &batch, false).2);

    // A call its answer says not to keep (a batch past its time budget) is decided each time.
    let other = evaluations(5);
    assert!(ask(&authorizer, &pep, &other, true).2);
    assert!(ask(&authorizer, &pep, &other, false).2);

    // More evaluations than a remembered answer holds: decided each time, answered the same.
    let large = evaluations(tollgate::authz::MAX_REPLAYED + 1);
    let first = ask(&authorizer, &pep, &large, false);
    let second = ask(&authorizer, &pep, &large, false);
    assert!(first.2 && second.2);
    assert_eq!(first.0, second.0);
}

/// Every call answered from memory is recorded as its own decision: one audit record per
/// evaluation, each with its own id, its PEP as the actor and its resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_remembered_authzen_answer_is_recorded_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let settings = tollgate::audit::AuditSettings {
        file: Some(tollgate::audit::FileSettings {
            path: path.clone(),
            max_bytes: 1 << 30,
            keep: 1,
        }),
        ..Default::default()
    };
    let (authorizer, writer) = audited_authorizer(&settings);
    let (_, pep) = authzen_world();
    let batch = evaluations(2);
    let decided: Vec<bool> = (0..3)
        .map(|_| ask(&authorizer, &pep, &batch, false).2)
        .collect();
    assert_eq!(decided, [true, false, false]);
    drop(authorizer);
    writer.await.unwrap().unwrap();
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        // Decisions (API Activity), not findings (the short-lived credential's expiry).
        .filter(|record| record["class_uid"] == 6003)
        .collect();
    assert_eq!(
        records.len(),
        6,
        "two evaluations, three calls: {records:#?}"
    );
    let ids: std::collections::HashSet<&str> = records
        .iter()
        .map(|r| r["metadata"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 6, "every record is its own decision");
    for (i, record) in records.iter().enumerate() {
        let resource = record["resources"][0]["uid"].as_str().unwrap();
        assert_eq!(resource, format!("Order::\"O-{}\"", i % 2), "{record}");
        assert_eq!(
            record["status_id"],
            if i % 2 == 0 { 1 } else { 2 },
            "{record}"
        );
        assert!(
            record["actor"].to_string().contains("web-frontend"),
            "the PEP is the actor: {record}"
        );
    }
}

/// Review finding: a batch cut short by its budget must be decided again, not answered with
/// its 503 items from memory. Driven through the door's own budget, not the test's flag.
#[test]
fn a_batch_past_its_budget_is_not_remembered() {
    let (authorizer, pep) = authzen_world();
    let batch = evaluations(4);
    let cut = ask_within(&authorizer, &pep, &batch, false, Duration::ZERO);
    assert!(cut.2);
    assert_eq!(cut.0.matches("\"status\":503").count(), 4, "{}", cut.0);
    let again = ask(&authorizer, &pep, &batch, false);
    assert!(again.2, "decided again, not the cut answer from memory");
    assert_eq!(
        again.0.matches("\"decision\":true").count(),
        2,
        "{}",
        again.0
    );
}

/// Review finding: a body under the memo's key limit can still make a large answer (16 items
/// that each repeat a default resource id of 15,000 bytes in their deny message and evidence:
/// about 0.8 MB a slot). Such an answer is not kept.
#[test]
fn an_answer_too_large_to_keep_is_decided_each_time() {
    let (authorizer, pep) = authzen_world();
    let items: Vec<serde_json::Value> = (0..16).map(|_| serde_json::json!({})).collect();
    let body = serde_json::json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "orders:view"},
        "resource": {"type": "order", "id": "O".repeat(15_000)},
        "evaluations": items,
    })
    .to_string();
    assert!(
        body.len() < tollgate::memo::MAX_KEPT,
        "the key itself is small enough"
    );
    assert!(ask(&authorizer, &pep, &body, false).2);
    assert!(
        ask(&authorizer, &pep, &body, false).2,
        "an answer this large is decided again, not held"
    );
}

/// The message of a deny, for telling a refusal answered again from memory (it keeps the time
/// it was first made at) from one made afresh.
fn deny_message(verdict: &Verdict) -> &str {
    match &verdict.outcome {
        tollgate::verdict::Outcome::Deny(denial) => &denial.message,
        tollgate::verdict::Outcome::Allow => panic!("allowed: {verdict:?}"),
    }
}

/// A client whose certificate expired retries the same request at full speed: each retry
/// decoded and verified the same chain again (about 1.8 times an allowed Check's CPU). An
/// expired certificate cannot become valid under the same snapshot, so its refusal is
/// answered again from memory, like a forged token's.
#[test]
fn an_expired_certificate_is_refused_from_memory_on_a_retry() {
    let authorizer = authorizer();
    let snapshot = authorizer.snapshot();
    let (cert, token) = (lasting(120), lasting(3600));
    let input = request(&cert, &token.token, "/orders/1");
    let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
    let expired_at = UnixTime::now().as_secs() + 600;
    let first = authorizer.decide(&snapshot, &input, at(expired_at), None);
    assert_eq!(reason(&first), Some("cert_expired"), "{first:?}");
    let retry = authorizer.decide(&snapshot, &input, at(expired_at + 10), None);
    assert_eq!(reason(&retry), Some("cert_expired"), "{retry:?}");
    assert_eq!(
        deny_message(&retry),
        deny_message(&first),
        "the retry's refusal was made afresh"
    );
    assert_ne!(retry.decision_id, first.decision_id);
}

/// A certificate refused as not valid yet becomes valid: its refusal must not be kept. The
/// second look is within the caches' TTL of the first, so a kept refusal would answer it.
#[test]
fn a_certificate_not_yet_valid_is_judged_again() {
    let authorizer = authorizer();
    let snapshot = authorizer.snapshot();
    let creds = credentials();
    let input = request(&creds, &creds.token, "/orders/1");
    let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
    // The certificate's notBefore, as its refusal a week early says it.
    let week_early = authorizer.decide(
        &snapshot,
        &input,
        at(UnixTime::now().as_secs() - 7 * 24 * 3600),
        None,
    );
    let not_before: u64 = deny_message(&week_early)
        .strip_prefix("certificate is not valid before ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{week_early:?}"));
    let early = authorizer.decide(&snapshot, &input, at(not_before - 5), None);
    assert_eq!(reason(&early), Some("cert_not_yet_valid"), "{early:?}");
    let valid = authorizer.decide(&snapshot, &input, at(not_before + 5), None);
    assert_ne!(
        reason(&valid),
        Some("cert_not_yet_valid"),
        "a refusal of a certificate not valid yet was kept: {valid:?}"
    );
}

/// An authorizer that records its decisions as `settings` say (so that each verdict carries
/// its evidence), and its audit writer, to await once the authorizer is dropped.
fn audited_authorizer(
    settings: &tollgate::audit::AuditSettings,
) -> (Authorizer, tokio::task::JoinHandle<Result<(), String>>) {
    let (audit, writer) =
        AuditLog::start(settings, tollgate::metrics::Metrics).expect("the audit log starts");
    let (_, snapshot) =
        tollgate::config::load(&tollgate::config::ConfigSource::Embedded, 1).unwrap();
    let authorizer = Authorizer::new(
        Arc::new(SnapshotHandle::new(snapshot)),
        Caches::new(1024, 3600),
        audit,
    );
    (authorizer, writer)
}

/// The evidence `verdict` carries: a remembered verdict hands out the one it was kept with, a
/// fresh one builds its own.
fn evidence(verdict: &Verdict) -> Arc<tollgate::evidence::Evidence> {
    verdict.evidence.clone().expect("audited: evidence")
}

/// A request on `path` whose only credential is `certificate` (none when empty).
fn probe(path: &str, certificate: &str) -> CheckInput {
    CheckInput {
        method: "GET".into(),
        path: path.into(),
        host: "shop.demo".into(),
        certificate: certificate.into(),
        ..CheckInput::default()
    }
}

/// Asserts that a refused request to `/scan/0` is remembered, and that refused requests to a
/// thousand paths leave a caller's remembered verdict where it was.
fn assert_refusals_remembered_apart(authorizer: &Authorizer, refused: impl Fn(&str) -> CheckInput) {
    let snapshot = authorizer.snapshot();
    let now = UnixTime::now();
    let first = authorizer.decide(&snapshot, &refused("/scan/0"), now, None);
    assert!(!first.is_allowed(), "{first:?}");
    let again = authorizer.decide(&snapshot, &refused("/scan/0"), now, None);
    assert_eq!(reason(&again), reason(&first));
    assert_ne!(again.decision_id, first.decision_id);
    assert!(
        Arc::ptr_eq(&evidence(&again), &evidence(&first)),
        "the repeated refusal was decided afresh"
    );
    let creds = credentials();
    let caller = request(&creds, &creds.token, "/orders/1");
    let kept = authorizer.decide(&snapshot, &caller, now, None);
    assert!(kept.is_allowed(), "{kept:?}");
    for n in 1..1000 {
        let refusal = authorizer.decide(&snapshot, &refused(&format!("/scan/{n}")), now, None);
        assert_eq!(reason(&refusal), reason(&first));
    }
    let after = authorizer.decide(&snapshot, &caller, now, None);
    assert!(
        Arc::ptr_eq(&evidence(&after), &evidence(&kept)),
        "refused requests pushed the caller's verdict out of the memo"
    );
}

/// Requests with no credentials at all (probes, a client that lost its token) are refused the
/// same way every time under one snapshot, yet each repeat was decided afresh: the request
/// copied into a `CheckInput`, identity run, evidence built, at several times a remembered
/// allow's cost. They are now remembered, in the refusals' own memo, so that unauthenticated
/// requests on any number of paths never push out the verdicts of the callers a worker
/// serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_request_without_credentials_is_refused_from_memory_in_a_memo_of_its_own() {
    let (authorizer, writer) = audited_authorizer(&Default::default());
    let refused = authorizer.decide(
        &authorizer.snapshot(),
        &probe("/", ""),
        UnixTime::now(),
        None,
    );
    assert_eq!(reason(&refused), Some("no_credentials"), "{refused:?}");
    assert_refusals_remembered_apart(&authorizer, |path| probe(path, ""));
    drop(authorizer);
    writer.await.unwrap().unwrap();
}

/// Review finding: a final certificate refusal was kept in the verdict memo from its first
/// sighting, so a probe sending a junk certificate to many paths pushed out the verdicts of
/// the callers a worker serves, which the unauthenticated case was meant to prevent. Every
/// kept refusal now goes to the refusals' own memo.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn refusals_of_junk_certificates_never_push_out_a_callers_verdict() {
    let (authorizer, writer) = audited_authorizer(&Default::default());
    assert_refusals_remembered_apart(&authorizer, |path| probe(path, "garbage"));
    drop(authorizer);
    writer.await.unwrap().unwrap();
}

/// Review finding: a worker's first verdict for a query was built from the shared cache's
/// decision, so the policy lists of the verdict its memo kept were the shared decision's, and
/// every later hit counted references on a cache line every worker writes. Two workers
/// deciding the same request must hold lists of their own.
#[test]
fn workers_remember_verdicts_that_share_no_reference_counts() {
    let authorizer = authorizer();
    let creds = credentials();
    let input = request(&creds, &creds.token, "/orders/1");
    let now = UnixTime::now();
    let on_a_new_thread = || {
        std::thread::scope(|scope| {
            scope
                .spawn(|| authorizer.decide(&authorizer.snapshot(), &input, now, None))
                .join()
                .unwrap()
        })
    };
    let (first, second) = (on_a_new_thread(), on_a_new_thread());
    assert!(first.is_allowed() && second.is_allowed(), "{first:?}");
    assert!(!first.determining.is_empty());
    assert!(
        !Arc::ptr_eq(&first.determining, &second.determining),
        "two workers' verdicts share the shared cache's lists"
    );
}
