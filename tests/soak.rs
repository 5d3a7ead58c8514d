//! Soak: a running `tollgate serve` (the release binary, as deployed) answers a steady stream
//! of Checks while its policies, entities, trust bundle and JWKS are replaced every few
//! seconds. Every answer is compared with what the configuration in force should give.
//!
//! On demand (about 30 minutes by default):
//!
//! ```sh
//! cargo test --release --test soak -- --ignored --nocapture
//! SOAK_SECONDS=120 SOAK_RATE=200 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! It fails on any wrong decision, any RPC error, a change not applied within 5 s, or RSS
//! growing by more than a quarter between the first and last third of the run; it prints the
//! counts and the RSS samples.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::free_port;
use support::jwt::TokenIssuer;
use support::pki::Ca;
use support::server::{Answer, Options, Req, write_config};

/// What the configuration in force says, one dimension per replaced source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// The bundle holds CA `a` (else CA `b`).
    bundle_a: bool,
    /// The JWKS holds issuer key set 1 (else 2).
    jwks_1: bool,
    /// A `forbid` quarantines the payments workload.
    quarantine: bool,
    /// `entities.json` puts payments in `Group::"backend"` (else `Group::"batch"`).
    payments_backend: bool,
}

impl State {
    /// The reason a request with a certificate from CA `a`/`b` and a token from key set 1/2
    /// gets (`allowed` for an allow).
    fn expected(self, cert_a: bool, token_1: bool) -> &'static str {
        if cert_a != self.bundle_a {
            "cert_untrusted"
        } else if token_1 != self.jwks_1 {
            "token_signature"
        } else if self.quarantine || !self.payments_backend {
            "policy_denied"
        } else {
            "allowed"
        }
    }

    /// The next state: one source changes per step, in rotation.
    fn step(self, n: usize) -> Self {
        let mut next = self;
        match n % 4 {
            0 => next.quarantine = !next.quarantine,
            1 => next.payments_backend = !next.payments_backend,
            2 => next.bundle_a = !next.bundle_a,
            _ => next.jwks_1 = !next.jwks_1,
        }
        next
    }
}

/// A state and the window in which answers may come from it: from when its files started to
/// be written until the next state was seen live.
struct Era {
    state: State,
    from: Instant,
    until: Option<Instant>,
}

struct Sample {
    sent: Instant,
    received: Instant,
    kind: usize,
    outcome: String,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn generation(admin: u16) -> u64 {
    let text = support::http_get(
        std::net::SocketAddr::from(([127, 0, 0, 1], admin)),
        "/readyz",
    );
    text.split("generation=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// Writes every source for `state` whose content differs from `before`.
fn write_state(dir: &Path, policies: &Path, world: &Sources, state: State, before: Option<State>) {
    let changed = |f: fn(State) -> bool| before.is_none_or(|b| f(b) != f(state));
    if changed(|s| s.bundle_a) {
        let pem = if state.bundle_a {
            &world.ca_a.pem
        } else {
            &world.ca_b.pem
        };
        replace(&dir.join("ca.pem"), pem.as_bytes());
    }
    if changed(|s| s.jwks_1) {
        let jwks = if state.jwks_1 {
            world.keys_1.jwks()
        } else {
            world.keys_2.jwks()
        };
        replace(&dir.join("jwks.json"), jwks.as_bytes());
    }
    if changed(|s| s.quarantine) {
        let text = if state.quarantine {
            "@id(\"soak-quarantine\")\nforbid (principal == App::\"spiffe://demo.tollgate.dev/payments\", action, resource);\n"
        } else {
            "// nothing quarantined\n"
        };
        replace(&policies.join("soak.cedar"), text.as_bytes());
    }
    if changed(|s| s.payments_backend) {
        let group = if state.payments_backend {
            "backend"
        } else {
            "batch"
        };
        let entities = world
            .entities
            .replace("\"PAYMENTS_GROUP\"", &format!("\"{group}\""));
        replace(&policies.join("entities.json"), entities.as_bytes());
    }
}

/// Write-then-rename, as a config management tool or kubelet would.
fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-soak");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Sources {
    ca_a: Ca,
    ca_b: Ca,
    keys_1: TokenIssuer,
    keys_2: TokenIssuer,
    /// `entities.json` with the payments app's group as the placeholder `"PAYMENTS_GROUP"`.
    entities: String,
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "on demand: about 30 minutes (SOAK_SECONDS)"]
fn decisions_stay_right_while_every_source_changes() {
    let seconds = env_or("SOAK_SECONDS", 1800);
    let rate = env_or("SOAK_RATE", 200);
    let period = Duration::from_millis(env_or("SOAK_SWAP_MS", 3000));

    let dir = tempfile::tempdir().unwrap();
    let policies = support::copy_policies(dir.path());
    let entities = std::fs::read_to_string(policies.join("entities.json")).unwrap();
    let world = Sources {
        ca_a: Ca::new("Soak CA A"),
        ca_b: Ca::new("Soak CA B"),
        keys_1: TokenIssuer::new(),
        keys_2: TokenIssuer::new(),
        entities: payments_group_placeholder(&entities),
    };
    let (grpc, admin) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        &world.ca_a,
        &world.keys_1,
        &Options {
            listen: format!("127.0.0.1:{grpc}"),
            admin_listen: format!("127.0.0.1:{admin}"),
            policy_dir: Some(policies.clone()),
            ..Options::default()
        },
    );
    let mut state = State {
        bundle_a: true,
        jwks_1: true,
        quarantine: false,
        payments_backend: true,
    };
    write_state(dir.path(), &policies, &world, state, None);
    let server = Server {
        child: Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    };
    support::wait_for_port(grpc, "tollgate serve");
    support::wait_for_port(admin, "tollgate admin listener");
    let pid = server.child.id();

    // The four requests: certificate from CA a/b × token from key set 1/2.
    let requests: Vec<_> = [(true, true), (true, false), (false, true), (false, false)]
        .into_iter()
        .map(|(cert_a, token_1)| {
            let ca = if cert_a { &world.ca_a } else { &world.ca_b };
            let keys = if token_1 {
                &world.keys_1
            } else {
                &world.keys_2
            };
            // Tokens outlive the run.
            let claims = TokenIssuer::claims(
                "payments",
                "orders.read",
                serde_json::json!({"exp": support::jwt::now() + seconds as i64 + 600}),
            );
            let token = keys.sign(jsonwebtoken::Algorithm::ES256, None, &claims);
            (
                (cert_a, token_1),
                Req::get("/orders/1")
                    .cert(&ca.app("payments").pem)
                    .token(&token)
                    .build(),
            )
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let load = {
        let samples = samples.clone();
        let requests = requests.clone();
        runtime.spawn(async move {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
                    .unwrap()
                    .connect_lazy();
            let client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::new(channel);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0usize;
            while Instant::now() < deadline {
                tick.tick().await;
                let kind = n % requests.len();
                n += 1;
                let mut client = client.clone();
                let request = requests[kind].1.clone();
                let samples = samples.clone();
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let outcome = match client.check(request).await {
                        Ok(r) => Answer::from(r.into_inner())
                            .body
                            .get("reason")
                            .and_then(|r| r.as_str())
                            .unwrap_or("allowed")
                            .to_owned(),
                        Err(status) => format!("rpc error: {status}"),
                    };
                    samples.lock().unwrap().push(Sample {
                        sent,
                        received: Instant::now(),
                        kind,
                        outcome,
                    });
                });
            }
        })
    };

    let mut eras = vec![Era {
        state,
        from: started,
        until: None,
    }];
    let mut rss = vec![(0u64, rss_kib(pid))];
    let mut live_generation = generation(admin);
    let mut swaps = 0usize;
    let mut slowest_swap = Duration::ZERO;
    let mut last_report = Instant::now();
    while Instant::now() + period < deadline {
        std::thread::sleep(period);
        let next = state.step(swaps);
        let written = Instant::now();
        eras.push(Era {
            state: next,
            from: written,
            until: None,
        });
        write_state(dir.path(), &policies, &world, next, Some(state));
        // Poll for the effect: the server's generation moves on.
        let give_up = written + Duration::from_secs(5);
        loop {
            let now_generation = generation(admin);
            if now_generation > live_generation {
                live_generation = now_generation;
                break;
            }
            assert!(
                Instant::now() < give_up,
                "swap {swaps} ({next:?}) not live after 5 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let live = Instant::now();
        slowest_swap = slowest_swap.max(live - written);
        let previous = eras.len() - 2;
        eras[previous].until = Some(live);
        state = next;
        swaps += 1;
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let at = started.elapsed().as_secs();
            rss.push((at, rss_kib(pid)));
            eprintln!(
                "soak: {at:>5} s  swaps {swaps:>4}  answers {:>7}  rss {} KiB",
                samples.lock().unwrap().len(),
                rss_kib(pid)
            );
        }
    }
    runtime.block_on(load).unwrap();
    runtime.shutdown_timeout(Duration::from_secs(5));
    rss.push((started.elapsed().as_secs(), rss_kib(pid)));

    let samples = samples.lock().unwrap();
    let mut wrong = Vec::new();
    let mut errors = 0usize;
    let mut allowed = 0usize;
    for sample in samples.iter() {
        let (cert_a, token_1) = requests[sample.kind].0;
        if sample.outcome.starts_with("rpc error") {
            errors += 1;
            continue;
        }
        allowed += usize::from(sample.outcome == "allowed");
        // Right if some configuration in force while the request was in flight gives it.
        let right = eras.iter().any(|era| {
            era.from <= sample.received
                && era.until.is_none_or(|until| until >= sample.sent)
                && era.state.expected(cert_a, token_1) == sample.outcome
        });
        if !right {
            wrong.push(&sample.outcome);
        }
    }
    let third = rss.len() / 3;
    let mean = |s: &[(u64, u64)]| s.iter().map(|(_, r)| r).sum::<u64>() / s.len().max(1) as u64;
    let (early, late) = (
        mean(&rss[..third.max(1)]),
        mean(&rss[rss.len() - third.max(1)..]),
    );
    eprintln!(
        "soak: {} s, {} answers ({allowed} allowed), {swaps} swaps (slowest live after {slowest_swap:?}), {} wrong, {errors} RPC errors",
        started.elapsed().as_secs(),
        samples.len(),
        wrong.len()
    );
    eprintln!("soak: RSS KiB first third {early}, last third {late}; samples {rss:?}");
    drop(server);
    assert!(
        samples.len() as u64 > seconds * rate / 2,
        "load fell behind"
    );
    assert!(
        wrong.is_empty(),
        "{} wrong decisions, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(errors, 0, "RPC errors");
    assert!(
        late <= early + early / 4,
        "RSS grew from {early} to {late} KiB"
    );
}

/// `entities.json` with the payments app's parent group replaced by a placeholder.
fn payments_group_placeholder(entities: &str) -> String {
    let mut json: serde_json::Value = serde_json::from_str(entities).unwrap();
    let payments = json
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["uid"]["id"] == "spiffe://demo.tollgate.dev/payments")
        .expect("the example estate has the payments app");
    payments["parents"] = serde_json::json!([{"type": "Group", "id": "PAYMENTS_GROUP"}]);
    serde_json::to_string_pretty(&json).unwrap()
}
