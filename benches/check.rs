//! End-to-end, in-process `authz::check` on the embedded demo estate: a warm caller (every
//! cache hit), a cold caller (caches disabled: certificate chain, token and Cedar on every
//! call) with the demo's ES256 issuer and with an RS256 issuer, and the Cedar stage alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    dead_code,
    reason = "benchmark setup; the test PKI and minter are shared with tests/ by path"
)]

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rustls_pki_types::UnixTime;
use tollgate::authz::{self, input::CheckInput};
use tollgate::cache::Caches;
use tollgate::config::{Config, ConfigSource};
use tollgate::demo::{DemoRequest, mint};
use tollgate::metrics::Metrics;
use tollgate::snapshot::Snapshot;
use tollgate::{identity, mapping, policy};

fn input() -> CheckInput {
    let creds = mint(&DemoRequest {
        app: "orders".into(),
        scopes: vec!["orders.read".into()],
        user: None,
        bind: false,
        lifetime: Duration::from_secs(3600),
    })
    .unwrap();
    CheckInput {
        method: "GET".into(),
        path: "/orders/1001".into(),
        host: "shop.demo".into(),
        headers: HashMap::from([("authorization".into(), format!("Bearer {}", creds.token))]),
        certificate: creds.cert_pem,
        ..Default::default()
    }
}

fn check(c: &mut Criterion) {
    let config = Config::load(&ConfigSource::Embedded, 1).unwrap();
    let snapshot = &config.snapshot;
    let input = input();

    let warm = Caches::new(10_000, 300, Metrics);
    assert!(authz::check(snapshot, &warm, &input, UnixTime::now()).is_allowed());
    c.bench_function("check/warm", |b| {
        b.iter(|| authz::check(snapshot, &warm, black_box(&input), UnixTime::now()))
    });

    let cold = Caches::new(0, 0, Metrics);
    c.bench_function("check/cold", |b| {
        b.iter(|| authz::check(snapshot, &cold, black_box(&input), UnixTime::now()))
    });

    // The same estate behind the test PKI and an RS256 issuer: the target's cold caller.
    let ca = support::pki::Ca::new("Bench CA");
    let tokens = support::jwt::TokenIssuer::new();
    let estate = Config::load(&ConfigSource::Embedded, 1).unwrap().snapshot;
    let rs256 = Snapshot {
        identity: support::identity(&ca, &tokens),
        ..estate
    };
    let claims = support::jwt::TokenIssuer::claims("orders", "orders.read", serde_json::json!({}));
    let token = tokens.sign(jsonwebtoken::Algorithm::RS256, None, &claims);
    let rs256_input = CheckInput {
        headers: HashMap::from([("authorization".into(), format!("Bearer {token}"))]),
        certificate: utf8_percent_encode(&ca.app("orders").pem, NON_ALPHANUMERIC).to_string(),
        ..input.clone()
    };
    assert!(authz::check(&rs256, &cold, &rs256_input, UnixTime::now()).is_allowed());
    c.bench_function("check/cold (RS256)", |b| {
        b.iter(|| authz::check(&rs256, &cold, black_box(&rs256_input), UnixTime::now()))
    });

    let caller = identity::verify(&snapshot.identity, &cold, 1, &input, UnixTime::now()).unwrap();
    let query = mapping::map(&snapshot.routes, &caller, &input).unwrap();
    c.bench_function("stage/cedar", |b| {
        b.iter(|| policy::decide(&snapshot.policies, black_box(&query)).unwrap())
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
