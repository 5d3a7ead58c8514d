//! End-to-end, in-process `Authorizer::decide` on the embedded demo estate: a warm caller (the
//! same request again: one lookup in the worker's verdict memo), a cold caller (caches disabled: certificate chain, token and Cedar on every
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

/// The allocator `tollgate` ships with (`src/main.rs`): records made on the deciding thread are
/// freed on the audit writer's, which glibc's arenas serve with a lock between the two.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;
use tollgate::audit::AuditLog;
use tollgate::authz::{Authorizer, Caches};
use tollgate::config::{ConfigSource, load};
use tollgate::demo::{DemoRequest, mint};
use tollgate::identity::IdentityCaches;
use tollgate::identity::revocation::Revocations;
use tollgate::request::CheckInput;
use tollgate::snapshot::{Snapshot, SnapshotHandle};
use tollgate::{identity, mapping, policy};

/// Times `iters` runs of `run` in chunks of about 8,000 audit records (`records` a run),
/// starting each chunk on an empty queue: the writer drains it meanwhile, as it does in a
/// server, and waits for it between chunks are untimed. Back to back, one benchmark thread
/// queues records faster than the writer takes them, and the measurement would be of the drop
/// path (a full queue) rather than of recording.
fn queued_not_dropped(
    view: &tollgate::audit::AuditView,
    iters: u64,
    records: u64,
    mut run: impl FnMut(),
) -> Duration {
    // A thread's share of the queue (`audit_settings`: 160,000 records over 16 shards) is
    // 10,000, so a chunk started on an empty queue cannot fill it.
    let chunk = (8_000 / records).max(1);
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let waiting = std::time::Instant::now();
        while view.queued() > 0 {
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "the audit writer took no records for 60 s"
            );
            std::thread::yield_now();
        }
        let runs = left.min(chunk);
        let started = std::time::Instant::now();
        for _ in 0..runs {
            run();
        }
        timed += started.elapsed();
        left -= runs;
    }
    timed
}

/// The audit log the benchmarks record to: no sink (the disk is not measured), a queue
/// large enough for [`queued_not_dropped`]'s chunks.
fn audit_settings() -> tollgate::audit::AuditSettings {
    tollgate::audit::AuditSettings {
        queue: 160_000,
        ..Default::default()
    }
}

fn input() -> CheckInput {
    let creds = mint(&DemoRequest {
        app: "orders".into(),
        scopes: vec!["orders.read".into()],
        user: None,
        bind: false,
        lifetime: Duration::from_secs(3600),
    })
    .unwrap();
    creds.check_input("GET", "/orders/1001")
}

fn check(c: &mut Criterion) {
    let embedded = || load(&ConfigSource::Embedded, 1).unwrap().1;
    let input = input();

    // The pipeline as front doors run it, minus recording (no metrics recorder, no audit).
    let warm = Authorizer::new(
        Arc::new(SnapshotHandle::new(embedded())),
        Caches::new(10_000, 300),
        AuditLog::disabled(),
    );
    let snapshot = &*warm.snapshot();
    let decide = |a: &Authorizer, s: &Snapshot, i: &CheckInput| {
        a.decide(s, i, tollgate::clock::wall(), None)
    };
    assert!(decide(&warm, snapshot, &input).is_allowed());
    c.bench_function("check/warm", |b| {
        b.iter(|| decide(&warm, snapshot, black_box(&input)))
    });

    // The same, recorded as every front door records it: metrics, log, and the decision
    // record queued for the writer (which serialises it and keeps the inventory on its own
    // thread; no sink, so the disk is not measured). Against `check/warm (recorded)`.
    c.bench_function("check/warm (recorded)", |b| {
        b.iter(|| warm.check(black_box(&input)))
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (audit, _writer) = runtime
        .block_on(async { AuditLog::start(&audit_settings(), tollgate::metrics::Metrics) })
        .unwrap();
    let view = audit.view();
    let audited = Authorizer::new(
        Arc::new(SnapshotHandle::new(embedded())),
        Caches::new(10_000, 300),
        audit,
    );
    assert!(audited.check(&input).verdict.is_allowed());
    c.bench_function("check/warm (recorded, audit on)", |b| {
        b.iter_custom(|iters| {
            queued_not_dropped(&view, iters, 1, || {
                black_box(audited.check(black_box(&input)));
            })
        })
    });
    assert_eq!(
        view.dropped(),
        0,
        "the audit benchmark measured dropped records"
    );

    // A new forged token every call, against warm caches: what a flood of distinct forgeries
    // costs in Tollgate's own code (one failed ES256 verification plus everything around it),
    // to set beside `check/warm` + `token/ES256/cold` without the machine's scheduling.
    let token_at = input.headers["authorization"].rfind('.').unwrap() + 1;
    let mut n = 0_u64;
    c.bench_function("check/distinct forgery", |b| {
        b.iter_batched(
            || {
                use base64::Engine;
                n += 1;
                let stamp =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n.to_be_bytes());
                let mut forged = input.clone();
                let value = forged.headers.get_mut("authorization").unwrap();
                value.replace_range(token_at..token_at + stamp.len(), &stamp);
                forged
            },
            |forged| decide(&warm, snapshot, &forged),
            criterion::BatchSize::SmallInput,
        )
    });

    let cold = Authorizer::offline(embedded());
    c.bench_function("check/cold", |b| {
        b.iter(|| decide(&cold, snapshot, black_box(&input)))
    });

    // A 100,000-entry revocation file, no entry this caller's: the warm check (answered before
    // identity is looked at) and the cold one (every fresh decision looks the caller up).
    let with_revocations = || {
        let mut snapshot = embedded();
        snapshot.identity.revocations =
            Arc::new(Revocations::parse("revoked.toml", &revocation_file(100_000)).unwrap());
        snapshot
    };
    let revoking = Authorizer::new(
        Arc::new(SnapshotHandle::new(with_revocations())),
        Caches::new(10_000, 300),
        AuditLog::disabled(),
    );
    let revoking_snapshot = &*revoking.snapshot();
    assert_eq!(revoking_snapshot.identity.revocations.len(), 100_000);
    assert!(decide(&revoking, revoking_snapshot, &input).is_allowed());
    c.bench_function("check/warm (100k revocations)", |b| {
        b.iter(|| decide(&revoking, revoking_snapshot, black_box(&input)))
    });
    c.bench_function("check/cold (100k revocations)", |b| {
        b.iter(|| decide(&cold, revoking_snapshot, black_box(&input)))
    });

    // The same estate behind the test PKI and an RS256 issuer: the target's cold caller.
    let ca = support::pki::Ca::new("Bench CA");
    let tokens = support::jwt::TokenIssuer::new();
    let rs256 = Snapshot {
        identity: support::identity(&ca, &tokens),
        ..embedded()
    };
    let claims = support::jwt::TokenIssuer::claims("orders", "orders.read", serde_json::json!({}));
    let token = tokens.sign(jsonwebtoken::Algorithm::RS256, None, &claims);
    let rs256_input = CheckInput {
        headers: [("authorization".into(), format!("Bearer {token}"))]
            .into_iter()
            .collect(),
        certificate: utf8_percent_encode(&ca.app("orders").pem, NON_ALPHANUMERIC).to_string(),
        ..input.clone()
    };
    assert!(decide(&cold, &rs256, &rs256_input).is_allowed());
    c.bench_function("check/cold (RS256)", |b| {
        b.iter(|| decide(&cold, &rs256, black_box(&rs256_input)))
    });

    let uncached = IdentityCaches::new(0, 0);
    let caller =
        identity::verify(&snapshot.identity, &uncached, 1, &input, UnixTime::now()).unwrap();
    let query = mapping::map(&snapshot.routes, &caller, &input).unwrap();
    c.bench_function("stage/cedar", |b| {
        b.iter(|| policy::decide(&snapshot.policies, black_box(&query)).unwrap())
    });
}

/// A revocation file of `n` entries: SPIFFE IDs, certificate thumbprints, token ids and
/// clients in equal parts.
/// A forward-auth request as Envoy's HTTP ext_authz sends it (`/envoy/orders/1001`, the
/// certificate in RFC 9440's `Client-Cert` from a trusted loopback proxy), translated,
/// decided (warm) and answered: against `check/warm (recorded)`, the HTTP door's own cost.
fn forward_auth(c: &mut Criterion) {
    use base64::Engine;
    use tollgate::http::forward::{self, Convention};
    use tollgate::http::{Peer, Proxies};
    let creds = mint(&DemoRequest {
        app: "orders".into(),
        scopes: vec!["orders.read".into()],
        user: None,
        bind: false,
        lifetime: Duration::from_secs(3600),
    })
    .unwrap();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(creds.cert_pem.as_bytes()).unwrap();
    let client_cert = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    );
    let (config, snapshot) = load(&ConfigSource::Embedded, 1).unwrap();
    let proxies = Proxies::new(config.settings.trusted_proxies.clone());
    let authorizer = Authorizer::new(
        Arc::new(SnapshotHandle::new(snapshot)),
        Caches::new(10_000, 300),
        AuditLog::disabled(),
    );
    let parts = hyper::Request::get("/envoy/orders/1001")
        .header("host", "shop.demo")
        .header("authorization", format!("Bearer {}", creds.token))
        .header("client-cert", client_cert)
        .header("x-forwarded-for", "10.0.0.1")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let peer = Peer::plain("127.0.0.1:40000".parse().unwrap());
    let answered = forward::answer(&authorizer, &proxies, Convention::Envoy, &peer, &parts);
    assert_eq!(answered.status(), 200);
    c.bench_function("http/forward-auth (warm, recorded)", |b| {
        b.iter(|| {
            forward::answer(
                &authorizer,
                &proxies,
                Convention::Envoy,
                &peer,
                black_box(&parts),
            )
        })
    });
}

/// An AuthZEN batch of 100 evaluations for one subject (a user viewing 100 orders, half of
/// them its own, named with their owner), decided in-process from the request body to the
/// response body: JSON in, the PEP's permission and the decision per item (warm caches),
/// each recorded, JSON out. The target is 100 µs.
fn authzen(c: &mut Criterion) {
    let embedded = || load(&ConfigSource::Embedded, 1).unwrap().1;
    let pep_input = mint(&DemoRequest {
        app: "web-frontend".into(),
        scopes: Vec::new(),
        user: None,
        bind: false,
        lifetime: Duration::from_secs(3600),
    })
    .unwrap()
    .check_input("POST", "/access/v1/evaluations");
    let evaluations: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            let owner = if i % 2 == 0 { "alice" } else { "bob" };
            serde_json::json!({"resource": {"type": "order", "id": format!("O-{i}"),
                "properties": {"owner": {"type": "User", "id": owner}}}})
        })
        .collect();
    let body = serde_json::json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "orders:view"},
        "evaluations": evaluations,
    })
    .to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (audit, _writer) = runtime
        .block_on(async { AuditLog::start(&audit_settings(), tollgate::metrics::Metrics) })
        .unwrap();
    let view = audit.view();
    for (name, audit) in [
        ("authzen/batch of 100 (warm)", AuditLog::disabled()),
        ("authzen/batch of 100 (warm, audit on)", audit),
    ] {
        let audited = audit.is_enabled();
        let authorizer = Authorizer::new(
            Arc::new(SnapshotHandle::new(embedded())),
            Caches::new(10_000, 300),
            audit,
        );
        let mut pep = authorizer.authzen_caller(&pep_input).unwrap().unwrap();
        let answered = tollgate::http::authzen::decide_body(
            &authorizer,
            &mut pep,
            true,
            body.as_bytes(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            answered.body.matches("\"decision\":true").count(),
            50,
            "{}",
            answered.body
        );
        let mut decide = || {
            black_box(tollgate::http::authzen::decide_body(
                &authorizer,
                &mut pep,
                true,
                black_box(body.as_bytes()),
                Duration::from_secs(1),
            ))
            .unwrap();
        };
        c.bench_function(name, |b| {
            if audited {
                b.iter_custom(|iters| queued_not_dropped(&view, iters, 100, &mut decide));
            } else {
                b.iter(&mut decide);
            }
        });
    }
    assert_eq!(
        view.dropped(),
        0,
        "the audit benchmark measured dropped records"
    );

    // One evaluation a PEP asks again, as the HTTP door answers it after reading the body:
    // the remembered PEP (by its key), then the remembered answer, each evaluation recorded.
    let authorizer = Authorizer::new(
        Arc::new(SnapshotHandle::new(embedded())),
        Caches::new(10_000, 300),
        AuditLog::disabled(),
    );
    let single = serde_json::json!({
        "subject": {"type": "user", "id": "alice"},
        "action": {"name": "orders:view"},
        "resource": {"type": "order", "id": "O-1",
            "properties": {"owner": {"type": "User", "id": "alice"}}},
    })
    .to_string();
    let ask = || {
        let mut pep = authorizer
            .authzen_caller_keyed(
                |key| key.extend_from_slice(b"the web front end's credentials"),
                || Ok(pep_input.clone()),
            )
            .unwrap()
            .unwrap();
        tollgate::http::authzen::answer_body(
            &authorizer,
            &mut pep,
            false,
            single.as_bytes(),
            Duration::from_secs(1),
        )
        .unwrap()
    };
    assert_eq!(&ask().0[..], br#"{"decision":true}"#);
    c.bench_function("authzen/single, asked again (warm, recorded)", |b| {
        b.iter(|| black_box(ask()))
    });
}

fn revocation_file(n: usize) -> String {
    use std::fmt::Write;
    let quarter = n / 4;
    let list = |key: &str, entry: &dyn Fn(usize) -> String| {
        let items: Vec<String> = (0..quarter)
            .map(|i| format!("  \"{}\",", entry(i)))
            .collect();
        format!("{key} = [\n{}\n]\n", items.join("\n"))
    };
    let mut text = list("spiffe_ids", &|i| {
        format!("spiffe://demo.tollgate.dev/retired-{i}")
    });
    text += &list("certificates", &|i| format!("{:064x}", i + 1));
    text += &list("token_ids", &|i| format!("leaked-{i}"));
    for i in 0..n - 3 * quarter {
        let _ = writeln!(
            text,
            "[[clients]]\nclient = \"client-{i}\"\nissued_before = 2026-12-03T10:00:00Z"
        );
    }
    text
}

criterion_group!(benches, check, forward_auth, authzen);
criterion_main!(benches);
