//! End-to-end, in-process `authz::check` on the embedded demo estate: a warm caller (every
//! cache hit), a cold caller (caches disabled: certificate chain, ES256 token and Cedar on every
//! call), and the Cedar stage alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark setup; criterion macros generate undocumented items"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rustls_pki_types::UnixTime;
use tollgate::authz::{self, input::CheckInput};
use tollgate::cache::Caches;
use tollgate::config::{Config, ConfigSource};
use tollgate::demo::{DemoRequest, mint};
use tollgate::metrics::Metrics;
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

    let caller = identity::verify(&snapshot.identity, &cold, 1, &input, UnixTime::now()).unwrap();
    let query = mapping::map(&snapshot.routes, &caller, &input).unwrap();
    c.bench_function("stage/cedar", |b| {
        b.iter(|| policy::decide(&snapshot.policies, black_box(&query)).unwrap())
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
