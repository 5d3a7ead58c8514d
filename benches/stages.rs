//! Each stage on its own: certificate verification (cold, cached), JWT verification (RS256,
//! ES256, EdDSA; cold, cached), route matching, Cedar evaluation (also for a route-built
//! resource against a 200,000-user store), a decision-cache hit.
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

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rustls_pki_types::UnixTime;
use tollgate::authz::Caches;
use tollgate::config::{ConfigSource, load};
use tollgate::identity;
use tollgate::mapping::{self, path::normalize};
use tollgate::policy;
use tollgate::request::CheckInput;

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
    let caches = Caches::new(1000, 300);
    let with_cert = CheckInput {
        certificate: field.clone(),
        ..CheckInput::default()
    };
    group.bench_function("cached", |b| {
        b.iter(|| {
            identity::verify(
                &identity,
                &caches.identity,
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
            b.iter(|| {
                identity
                    .issuers
                    .verify(black_box(&token), UnixTime::now())
                    .unwrap()
            })
        });
        let input = CheckInput {
            headers: [("authorization".to_owned(), format!("Bearer {token}"))]
                .into_iter()
                .collect(),
            ..CheckInput::default()
        };
        group.bench_function(format!("{alg:?}/cached"), |b| {
            b.iter(|| {
                identity::verify(
                    &identity,
                    &caches.identity,
                    1,
                    black_box(&input),
                    UnixTime::now(),
                )
                .unwrap()
            })
        });
    }
    group.finish();

    let (_, snapshot) = load(&ConfigSource::Embedded, 1).unwrap();
    let snapshot = &snapshot;
    c.bench_function("routes/normalize+match", |b| {
        b.iter(|| {
            let path = normalize(black_box("/users/alice/orders/1001?x=1")).unwrap();
            snapshot.routes.resolve("shop.test", "GET", &path).unwrap()
        })
    });

    let token = tokens.app("payments", "orders.read");
    let caller = identity::verify(
        &identity,
        &caches.identity,
        1,
        &CheckInput {
            certificate: field,
            headers: [("authorization".to_owned(), format!("Bearer {token}"))]
                .into_iter()
                .collect(),
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
    // A decision-cache miss for a route-built resource (`Order::"1001"` is not in the store,
    // so its `owner` comes from the route): the demo estate against 200,000 more users. The
    // cost must follow what the request reaches, not the store's size.
    let owned = mapping::map(
        &snapshot.routes,
        &caller,
        &CheckInput {
            method: "GET".into(),
            path: "/users/alice/orders/1001".into(),
            ..CheckInput::default()
        },
    )
    .unwrap();
    c.bench_function("cedar/decide route-built resource (example estate)", |b| {
        b.iter(|| policy::decide(&snapshot.policies, black_box(&owned)).unwrap())
    });
    let big = store_with_users(200_000);
    assert_eq!(
        policy::decide(&big, &owned).unwrap(),
        policy::decide(&snapshot.policies, &owned).unwrap()
    );
    c.bench_function("cedar/decide route-built resource (200,000 users)", |b| {
        b.iter(|| policy::decide(&big, black_box(&owned)).unwrap())
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

/// The example estate with `users` more users, each in `Role::"customer"`.
fn store_with_users(users: usize) -> policy::PolicyStore {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let read = |name: &str| policy::SourceFile {
        name: name.into(),
        text: std::fs::read_to_string(format!("{root}/{name}")).unwrap(),
    };
    let mut entities: Vec<serde_json::Value> =
        serde_json::from_str(&read("entities.json").text).unwrap();
    entities.extend((0..users).map(|i| {
        serde_json::json!({"uid": {"type": "User", "id": format!("user-{i}")},
            "attrs": {}, "parents": [{"type": "Role", "id": "customer"}]})
    }));
    let entities = policy::SourceFile {
        name: "entities.json".into(),
        text: serde_json::Value::from(entities).to_string(),
    };
    let files: Vec<_> = ["orders.cedar", "payments.cedar", "platform.cedar"]
        .into_iter()
        .map(read)
        .collect();
    policy::PolicyStore::load(&read("tollgate.cedarschema"), &files, Some(&entities)).unwrap()
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = stages
}
criterion_main!(benches);
