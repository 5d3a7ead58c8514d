//! Writes a synthetic audit corpus, in Tollgate's own record format, for measuring
//! `tollgate report` (BENCHMARKS.md, "Access review"):
//! `cargo run --release --example audit_corpus -- RECORDS IDENTITIES > corpus.log`.
//!
//! Identities are workloads, token clients and delegated apps; each calls a few of eight
//! (action, resource type) pairs, one call in ten is denied, and the records span 90 days.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark tool: a panic is a bug in it"
)]

use std::io::Write;
use std::sync::Arc;

use tollgate::audit::Event;
use tollgate::audit::ocsf::write_line;
use tollgate::evidence::{Actor, Evidence, RequestLine, Target, TokenEvidence, WorkloadEvidence};
use tollgate::identity::AccessMode;
use tollgate::snapshot::SnapshotVersion;
use tollgate::verdict::DecisionId;

const PAIRS: [(&str, &str, &str); 8] = [
    ("orders:read", "Order", "GET"),
    ("orders:create", "Service", "POST"),
    ("orders:cancel", "Order", "DELETE"),
    ("payments:charge", "Service", "POST"),
    ("payments:refund", "Payment", "POST"),
    ("users:read", "User", "GET"),
    ("inventory:read", "Item", "GET"),
    ("reports:export", "Report", "GET"),
];

fn main() {
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let identities: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let start_ms: u64 = 1_790_000_000_000;
    let span_ms: u64 = 90 * 86_400_000;
    let version = Arc::new(SnapshotVersion {
        policies: "68d95146f2dc".into(),
        trust: "1b64dfcbe38d".into(),
    });
    // One evidence per (identity, pair, outcome), shared as the server shares it.
    let evidence: Vec<[Arc<Evidence>; 2]> = (0..identities * 8)
        .map(|i| {
            let (id, p) = (i / 8, (i % 8) as usize);
            [true, false].map(|allowed| Arc::new(evidence_for(id, p, allowed, &version)))
        })
        .collect();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out.lock());
    let mut buf = Vec::with_capacity(1 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for n in 0..records {
        // xorshift: cheap, reproducible.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = x % identities;
        // Each identity uses a few pairs, never all: the rest stay granted and unused.
        let pair = ((x >> 20) % 3 + id) % 8;
        let allowed = !(x >> 40).is_multiple_of(10);
        let e = &evidence[(id * 8 + pair) as usize][usize::from(!allowed)];
        let event = Event {
            time_ms: start_ms + n * span_ms / records.max(1),
            decision_id: DecisionId::next(),
            elapsed_us: 3,
            evidence: e,
            query: None,
        };
        let user = e.actor.as_ref().and_then(|a| a.user.as_deref());
        write_line(&mut buf, &event, user, Default::default());
        if buf.len() > 900_000 {
            out.write_all(&buf).unwrap();
            buf.clear();
        }
    }
    out.write_all(&buf).unwrap();
    out.flush().unwrap();
}

fn evidence_for(id: u64, pair: usize, allowed: bool, version: &Arc<SnapshotVersion>) -> Evidence {
    let (action, resource_type, method) = PAIRS[pair];
    let (principal, workload, token, mode, user) = match id % 4 {
        // Workloads with a certificate and a token.
        0 | 1 => (
            format!("spiffe://bench.example/ns/shop/sa/svc-{id}"),
            true,
            true,
            AccessMode::AppOnly,
            None,
        ),
        // Delegated apps acting for users.
        2 => (
            format!("spiffe://bench.example/ns/web/sa/app-{id}"),
            true,
            true,
            AccessMode::Delegated,
            Some(format!("user-{}", id % 97)),
        ),
        // Token-only clients.
        _ => (
            format!("https://idp.bench.example#client-{id}"),
            false,
            true,
            AccessMode::AppOnly,
            None,
        ),
    };
    Evidence {
        reason: if allowed { "allowed" } else { "policy_denied" },
        status: if allowed { 200 } else { 403 },
        message: if allowed {
            String::new()
        } else {
            format!("no policy permits `{action}` on {resource_type}::\"42\"")
        },
        principal: Some(principal.clone()),
        determining: if allowed {
            vec![format!("{}-policy", action.replace(':', "-"))]
        } else {
            vec![]
        },
        errors: vec![],
        actor: Some(std::sync::Arc::new(Actor {
            workload: workload.then(|| WorkloadEvidence {
                id: principal.clone(),
                trust_domain: "bench.example".into(),
                thumbprint: Some([7; 32]),
                not_after: Some(1_800_000_000),
                not_before: Some(1_790_000_000),
            }),
            token: token.then(|| TokenEvidence {
                issuer: "https://idp.bench.example".into(),
                client_id: Some(format!("client-{id}")),
                jti: None,
                expires_at: 1_800_000_000,
                issued_at: None,
                svid: false,
            }),
            principal,
            mode,
            user,
        })),
        target: Some(Target {
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: "42".into(),
        }),
        request: RequestLine {
            method: method.into(),
            path: format!("/{}/42", resource_type.to_lowercase()),
            host: "shop.bench.example".into(),
            source_ip: Some(std::net::IpAddr::from([10, 0, (id >> 8) as u8, id as u8])),
        },
        snapshot: version.clone(),
    }
}
