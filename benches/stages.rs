//! Each stage on its own: certificate verification (cold, cached), JWT verification (RS256,
//! ES256, EdDSA; cold, cached), route matching, Cedar evaluation, a decision-cache hit.
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
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rustls_pki_types::UnixTime;
use tollgate::authz::input::CheckInput;
use tollgate::cache::Caches;
use tollgate::config::{Config, ConfigSource};
use tollgate::identity;
use tollgate::mapping::{self, path::normalize};
use tollgate::metrics::Metrics;
use tollgate::policy;

use support::{identity, jwt, pki};

fn stages(c: &mut Criterion) {
    let ca = pki::Ca::new("Bench CA");
    let tokens = jwt::TokenIssuer::new();
    let identity = identity(&ca, &tokens);
    let leaf = ca.app("payments");
    let field = utf8_percent_encode(&leaf.pem, NON_ALPHANUMERIC).to_string();

    let mut group = c.benchmark_group("certificate");
    group.bench_function("cold", |b| {
        b.iter(|| {
            identity
                .trust
                .verify_forwarded(black_box(&field), UnixTime::now())
                .unwrap()
        })
    });
    let caches = Caches::new(1000, 300, Metrics);
    let with_cert = CheckInput {
        certificate: field.clone(),
        ..CheckInput::default()
    };
    group.bench_function("cached", |b| {
        b.iter(|| {
            identity::verify(
                &identity,
                &caches,
                1,
                black_box(&with_cert),
                UnixTime::now(),
            )
            .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("token");
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let claims = jwt::TokenIssuer::claims(
            "payments",
            "orders.read",
            serde_json::json!({"exp": jwt::now() + 3600}),
        );
        let token = tokens.sign(alg, None, &claims);
        group.bench_function(format!("{alg:?}/cold"), |b| {
            b.iter(|| identity.issuers.verify(black_box(&token)).unwrap())
        });
        let input = CheckInput {
            headers: HashMap::from([("authorization".to_owned(), format!("Bearer {token}"))]),
            ..CheckInput::default()
        };
        group.bench_function(format!("{alg:?}/cached"), |b| {
            b.iter(|| {
                identity::verify(&identity, &caches, 1, black_box(&input), UnixTime::now()).unwrap()
            })
        });
    }
    group.finish();

    let config = Config::load(&ConfigSource::Embedded, 1).unwrap();
    let snapshot = &config.snapshot;
    c.bench_function("routes/normalize+match", |b| {
        b.iter(|| {
            let path = normalize(black_box("/users/alice/orders/1001?x=1")).unwrap();
            snapshot.routes.resolve("shop.test", "GET", &path).unwrap()
        })
    });

    let token = tokens.app("payments", "orders.read");
    let caller = identity::verify(
        &identity,
        &caches,
        1,
        &CheckInput {
            certificate: field,
            headers: HashMap::from([("authorization".to_owned(), format!("Bearer {token}"))]),
            ..CheckInput::default()
        },
        UnixTime::now(),
    )
    .unwrap();
    let input = CheckInput {
        method: "GET".into(),
        path: "/orders/1001".into(),
        ..CheckInput::default()
    };
    let query = mapping::map(&snapshot.routes, &caller, &input).unwrap();
    c.bench_function("mapping/map", |b| {
        b.iter(|| mapping::map(&snapshot.routes, black_box(&caller), black_box(&input)).unwrap())
    });
    c.bench_function("cedar/decide (example estate, 8 policies)", |b| {
        b.iter(|| policy::decide(&snapshot.policies, black_box(&query)).unwrap())
    });
    let decision = Arc::new(policy::decide(&snapshot.policies, &query).unwrap());
    caches
        .decisions
        .insert(caches.query_digest(&query), decision, 1, 0, i64::MAX);
    c.bench_function("cache/decision hit (digest + lookup)", |b| {
        b.iter(|| {
            let key = caches.query_digest(black_box(&query));
            caches.decisions.get(&key, 1, 1).unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = stages
}
criterion_main!(benches);
