//! Policy-count scaling: generated estates of 10 to 10,000 policies where, as real estates
//! grow, each app has its own policies. Cedar evaluation with the scope index against the full
//! set, and the time to load (parse, validate, index) the estate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark setup"
)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tollgate::identity::AccessMode;
use tollgate::mapping::context::{CertificateFacts, RequestFacts, TokenFacts};
use tollgate::mapping::{ContextFacts, Query, Resource};
use tollgate::policy::{PolicyStore, SourceFile, decide, decide_unindexed};

const ACTIONS: [&str; 6] = [
    "orders:read",
    "orders:create",
    "payments:charge",
    "payments:refund",
    "reports:write",
    "admin:rotate-keys",
];

/// `n` policies over `n / 10` apps (at least one): each app gets policies for several actions,
/// each with its own scope condition.
fn estate(n: usize) -> Vec<SourceFile> {
    let apps = (n / 10).max(1);
    let text: String = (0..n)
        .map(|i| {
            let app = i % apps;
            let action = ACTIONS[i % ACTIONS.len()];
            format!(
                "@id(\"gen-{i}\")\npermit (principal == App::\"spiffe://demo.tollgate.dev/app-{app}\", action == Action::\"{action}\", resource)\nwhen {{ context has token && context.token.scopes.contains(\"scope-{i}\") }};\n"
            )
        })
        .collect();
    vec![SourceFile {
        name: "generated.cedar".into(),
        text,
    }]
}

fn schema() -> SourceFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/tollgate.cedarschema");
    SourceFile {
        name: "tollgate.cedarschema".into(),
        text: std::fs::read_to_string(path).unwrap(),
    }
}

fn query() -> Query {
    Query {
        principal: "spiffe://demo.tollgate.dev/app-0".into(),
        action: Arc::from("orders:read"),
        resource: Resource {
            type_name: Arc::from("Order"),
            id: "1001".into(),
            attrs: vec![],
        },
        context: ContextFacts {
            access_mode: AccessMode::AppOnly,
            user: None,
            certificate: Some(CertificateFacts {
                id: "spiffe://demo.tollgate.dev/app-0".into(),
                trust_domain: "demo.tollgate.dev".into(),
                thumbprint: None,
            }),
            token: Some(TokenFacts {
                issuer: "https://issuer.test".into(),
                subject: "app-0".into(),
                client_id: "app-0".into(),
                scopes: vec!["scope-0".into()],
                bound: false,
                actor: String::new(),
            }),
            request: RequestFacts {
                method: "GET".into(),
                path: "/orders/1001".into(),
                host: String::new(),
                source_ip: Some(IpAddr::from([10, 0, 0, 1])),
            },
        },
    }
}

fn scaling(c: &mut Criterion) {
    let schema = schema();
    let query = query();
    let mut group = c.benchmark_group("cedar");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in [10usize, 100, 1_000, 10_000] {
        let store = PolicyStore::load(&schema, &estate(n), None).unwrap();
        assert!(decide(&store, &query).unwrap().allowed);
        assert_eq!(
            decide(&store, &query).unwrap(),
            decide_unindexed(&store, &query).unwrap()
        );
        group.bench_with_input(BenchmarkId::new("indexed", n), &n, |b, _| {
            b.iter(|| decide(&store, black_box(&query)).unwrap())
        });
        if n >= 1_000 {
            group.sample_size(10);
        }
        group.bench_with_input(BenchmarkId::new("unindexed", n), &n, |b, _| {
            b.iter(|| decide_unindexed(&store, black_box(&query)).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let files = estate(10_000);
    group.bench_function("10000 policies", |b| {
        b.iter(|| PolicyStore::load(&schema, black_box(&files), None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, scaling);
criterion_main!(benches);
