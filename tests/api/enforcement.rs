//! Signal enforcement through the decision core, in-process: a reviewed baseline as an
//! allow-list (for requests and for Cedar queries handed in directly), and a shed identity
//! denied even where its allow was remembered.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::UnixTime;
use tollgate::audit::AuditLog;
use tollgate::authz::{Authorizer, Caches, Trace};
use tollgate::config::{ConfigSource, load};
use tollgate::demo::{DemoRequest, mint};
use tollgate::enforce::Enforcement;
use tollgate::inventory::Baseline;
use tollgate::request::CheckInput;
use tollgate::snapshot::SnapshotHandle;
use tollgate::verdict::ReasonCode;

const ORDERS: &str = "spiffe://demo.tollgate.dev/orders";

fn authorizer(enforcement: Enforcement) -> Authorizer {
    let (_, snapshot) = load(&ConfigSource::Embedded, 1).unwrap();
    Authorizer::new(
        Arc::new(SnapshotHandle::new(snapshot)),
        Caches::new(1_000, 60),
        AuditLog::disabled(),
    )
    .with_enforcement(Arc::new(enforcement))
}

fn orders_read() -> CheckInput {
    mint(&DemoRequest {
        app: "orders".into(),
        scopes: vec!["orders.read".into()],
        user: None,
        bind: false,
        lifetime: Duration::from_secs(600),
    })
    .unwrap()
    .check_input("GET", "/orders/1001")
}

fn reason(a: &Authorizer, input: &CheckInput) -> &'static str {
    let snapshot = a.snapshot();
    a.decide(&snapshot, input, UnixTime::now(), None)
        .reason()
        .map_or("allowed", ReasonCode::as_str)
}

#[test]
fn a_reviewed_baseline_allows_its_pairs_and_denies_the_rest() {
    let input = orders_read();
    let baseline = |pairs: &[&str]| Baseline {
        identities: [(
            ORDERS.to_owned(),
            pairs.iter().map(|p| (*p).to_owned()).collect(),
        )]
        .into(),
        ..Baseline::default()
    };
    let reviewed = authorizer(Enforcement::new(
        Some(&baseline(&["orders:read Order"])),
        false,
    ));
    assert_eq!(reason(&reviewed, &input), "allowed");
    let narrower = authorizer(Enforcement::new(
        Some(&baseline(&["orders:write Order"])),
        false,
    ));
    for _ in 0..3 {
        assert_eq!(reason(&narrower, &input), "outside_baseline");
    }
    assert_eq!(
        reason(&authorizer(Enforcement::default()), &input),
        "allowed"
    );
}

#[test]
fn a_shed_identity_is_denied_even_where_its_allow_was_remembered() {
    let enforcement = Arc::new(Enforcement::new(None, true));
    let (_, snapshot) = load(&ConfigSource::Embedded, 1).unwrap();
    let a = Authorizer::new(
        Arc::new(SnapshotHandle::new(snapshot)),
        Caches::new(1_000, 60),
        AuditLog::disabled(),
    )
    .with_enforcement(enforcement.clone());
    let input = orders_read();
    for _ in 0..3 {
        assert_eq!(reason(&a, &input), "allowed");
    }
    let now_ms = UnixTime::now().as_secs() * 1000;
    enforcement.shed(ORDERS, now_ms, now_ms + 60_000);
    let snapshot = a.snapshot();
    let shed = a.decide(&snapshot, &input, UnixTime::now(), None);
    assert_eq!(shed.reason(), Some(ReasonCode::IdentityShed));
    assert_eq!(ReasonCode::IdentityShed.http_status(503), 429);
    assert_eq!(shed.principal.as_deref(), Some(ORDERS));
    enforcement.shed("someone-else", now_ms + 70_000, now_ms + 80_000);
    assert_eq!(
        reason(&a, &input),
        "allowed",
        "past its time, no longer shed"
    );
}

/// Review finding: the pipeline entered after mapping (an AuthZEN-style door) skipped the
/// reviewed baseline.
#[test]
fn the_baseline_holds_for_queries_given_directly() {
    let baseline = Baseline {
        identities: [(ORDERS.to_owned(), ["orders:write Order".to_owned()].into())].into(),
        ..Baseline::default()
    };
    let a = authorizer(Enforcement::new(Some(&baseline), false));
    let snapshot = a.snapshot();
    let mut trace = Trace::default();
    let _ = a.decide(&snapshot, &orders_read(), UnixTime::now(), Some(&mut trace));
    let query = trace.query.expect("mapped");
    let verdict = a.decide_query(&snapshot, ORDERS.into(), &query, UnixTime::now());
    assert_eq!(verdict.reason(), Some(ReasonCode::OutsideBaseline));
}
