//! The revocation file under continuous traffic: each kind of entry denies its caller
//! `credential_revoked` within a second of the edit, cached decisions included, and never
//! touches another caller; a broken edit keeps the revocations in force.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;

use crate::support::jwt::{TokenIssuer, now};
use crate::support::pki::TRUST_DOMAIN;
use crate::support::server::{Answer, Options, Req};
use crate::support::{World, eventually, replace_file};

/// A server whose revocation file, in its own folder, starts empty.
async fn world() -> (tempfile::TempDir, std::path::PathBuf, World) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revoked.toml");
    std::fs::write(&file, "# nothing revoked yet\n").unwrap();
    let options = Options {
        extra: format!("[revocation]\nfile = {:?}\n", file.display().to_string()),
        ..Options::default()
    };
    (dir, file, World::with(options).await)
}

fn reason(answer: &Answer) -> String {
    answer
        .body
        .get("reason")
        .and_then(|r| r.as_str())
        .unwrap_or("allowed")
        .to_owned()
}

/// One caller asking the same question over and over, recording every answer.
struct Caller {
    name: &'static str,
    request: Req,
}

/// Every caller's answers, in order, with when they came.
type Seen = Vec<(Instant, String)>;

fn start_load(
    w: &World,
    callers: &[Caller],
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    callers
        .iter()
        .map(|caller| {
            let mut client = w.server.client.clone();
            let request = caller.request.clone().build();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let outcome = match client.check(request.clone()).await {
                        Ok(r) => reason(&Answer::from(r.into_inner())),
                        Err(status) => format!("rpc error: {status}"),
                    };
                    seen.push((Instant::now(), outcome));
                }
                seen
            })
        })
        .collect()
}

/// Writes the revocation file whole (as an editor saves it) and returns when that was and
/// how long until a fresh request of `caller` is denied `credential_revoked`.
async fn revoke(w: &World, file: &Path, text: &str, caller: &Caller) -> (Instant, Duration) {
    let edited = Instant::now();
    replace_file(file, text);
    loop {
        let answer = w.server.check(caller.request.clone().build()).await;
        if reason(&answer) == "credential_revoked" {
            answer.assert_denied(401, "credential_revoked");
            return (edited, edited.elapsed());
        }
        assert!(
            edited.elapsed() < Duration::from_secs(5),
            "{} still `{}` after revoking it",
            caller.name,
            reason(&answer)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn token(issuer: &TokenIssuer, extra: serde_json::Value) -> String {
    issuer.sign(
        Algorithm::ES256,
        None,
        &TokenIssuer::claims("payments", "orders.read", extra),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_entry_revokes_its_caller_within_a_second_and_no_other() {
    let (_dir, file, w) = world().await;
    let payments = |extra| {
        Req::get("/orders/1")
            .cert(&w.ca.app("payments").pem)
            .token(&token(&w.issuer, extra))
    };
    let by_serial = w.ca.app("payments");
    let by_print = w.ca.app("payments");
    let callers = [
        Caller {
            name: "the control",
            request: Req::new("PUT", "/reports/daily")
                .cert(&w.ca.app("nightly-batch").pem)
                .token(&w.issuer.app("nightly-batch", "reports.write"))
                .source_ip("10.20.3.4"),
        },
        Caller {
            name: "a certificate",
            request: Req::get("/orders/1")
                .cert(&by_print.pem)
                .token(&token(&w.issuer, json!({}))),
        },
        Caller {
            name: "a token id",
            request: payments(json!({"jti": "leaked-7"})),
        },
        Caller {
            name: "an issuer and serial",
            request: Req::get("/orders/1")
                .cert(&by_serial.pem)
                .token(&token(&w.issuer, json!({}))),
        },
        Caller {
            name: "a client's older tokens",
            request: payments(json!({"iat": now() - 120})),
        },
        Caller {
            name: "a SPIFFE ID",
            request: payments(json!({})),
        },
    ];
    for caller in &callers {
        let answer = w.server.check(caller.request.clone().build()).await;
        assert_eq!(
            reason(&answer),
            "allowed",
            "{} before any revocation",
            caller.name
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&w, &callers, &stop);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let serial = {
        let (_, cert) = x509_parser::parse_x509_certificate(&by_serial.der).unwrap();
        cert.raw_serial_as_string()
    };
    let thumbprint = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &by_print.der,
    ));
    let cutoff = time::OffsetDateTime::from_unix_timestamp(now() - 60)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Each step adds one entry (top-level lists first, then tables, as TOML wants).
    let lists = [
        format!("certificates = [\"{thumbprint}\"]\n"),
        "token_ids = [\"leaked-7\"]\n".to_owned(),
    ];
    let tables = [
        format!("[[serials]]\nissuer = \"CN=Test Root CA\"\nserial = \"{serial}\"\n"),
        format!("[[clients]]\nclient = \"payments\"\nissued_before = {cutoff}\n"),
    ];
    let spiffe = format!("spiffe_ids = [\"spiffe://{TRUST_DOMAIN}/payments\"]\n");
    let steps = [
        lists[0].clone(),
        lists[..2].concat(),
        lists[..2].concat() + &tables[0],
        lists[..2].concat() + &tables[..2].concat(),
        // A workload by SPIFFE ID: every caller with its certificates, whatever the token.
        lists[..2].concat() + &spiffe + &tables[..2].concat(),
    ];
    let mut flips = Vec::new();
    for (text, caller) in steps.iter().zip(&callers[1..]) {
        let (edited, took) = revoke(&w, &file, text, caller).await;
        eprintln!("{}: revoked in {took:?}", caller.name);
        assert!(
            took <= Duration::from_secs(1),
            "{} took {took:?}",
            caller.name
        );
        flips.push((caller.name, edited + took));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut runs = Vec::new();
    for task in load {
        runs.push(task.await.unwrap());
    }

    let (control, revoked) = runs.split_first().unwrap();
    assert!(
        control.len() > 20,
        "the control asked only {} times",
        control.len()
    );
    assert!(
        control.iter().all(|(_, outcome)| outcome == "allowed"),
        "the control was not always allowed: {:?}",
        control
            .iter()
            .filter(|(_, o)| o != "allowed")
            .take(3)
            .collect::<Vec<_>>()
    );
    for ((name, flipped), seen) in flips.iter().zip(revoked) {
        let mut phases: Vec<&str> = seen.iter().map(|(_, o)| o.as_str()).collect();
        phases.dedup();
        assert_eq!(phases, ["allowed", "credential_revoked"], "{name}");
        // Its repeated question was answered from the caches until the edit; none of those
        // answers outlived the revocation.
        for (at, outcome) in seen {
            if *at > *flipped + Duration::from_millis(50) {
                assert_eq!(
                    outcome, "credential_revoked",
                    "{name} allowed after its revocation"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_broken_edit_keeps_the_revocations_in_force_and_says_where() {
    let (_dir, file, w) = world().await;
    let running = w.server.running.as_ref().unwrap();
    let req = Req::get("/orders/1")
        .cert(&w.ca.app("payments").pem)
        .token(&w.issuer.app("payments", "orders.read"));
    let id = format!("spiffe://{TRUST_DOMAIN}/payments");
    replace_file(&file, &format!("spiffe_ids = [\"{id}\"]\n"));
    eventually("the revocation never took effect", || {
        running.snapshots.load().generation > 1
    })
    .await;
    let denied = w.server.check(req.clone().build()).await;
    denied.assert_denied(401, "credential_revoked");
    let message = denied.body["message"].as_str().unwrap();
    assert!(
        message.contains("revoked.toml:1") && message.contains(&id),
        "{message}"
    );

    // Mid-edit: a SPIFFE ID that is not one. The last good list stays in force.
    replace_file(
        &file,
        &format!("spiffe_ids = [\n  \"{id}\",\n  \"https://nope\",\n]\n"),
    );
    eventually("the broken file was never noticed", || {
        running.snapshots.last_reload_error().is_some()
    })
    .await;
    let error = running.snapshots.last_reload_error().unwrap();
    assert!(
        error.contains("revoked.toml:3: `https://nope` is not a workload SPIFFE ID"),
        "{error}"
    );
    w.server
        .check(req.clone().build())
        .await
        .assert_denied(401, "credential_revoked");

    // Emptied: the workload is back.
    replace_file(&file, "");
    eventually("the workload was never restored", || {
        running.snapshots.last_reload_error().is_none()
    })
    .await;
    w.server.check(req.build()).await.assert_allowed(&id);
}

/// A server whose own trust domain has a CRL file, in a folder of the test's.
async fn world_with_crl(
    crl: impl Fn(&crate::support::pki::Ca) -> String,
) -> (tempfile::TempDir, std::path::PathBuf, World) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo.crl.pem");
    // The CA is made by the world; the list is written once it exists (a placeholder first
    // would fail the build: a CRL must name one of the domain's CAs).
    let ca = crate::support::pki::Ca::new("Test Root CA");
    std::fs::write(&file, crl(&ca)).unwrap();
    let options = Options {
        own_bundle: format!(
            "bundle = \"ca.pem\"\ncrl = {:?}",
            file.display().to_string()
        ),
        ..Options::default()
    };
    (dir, file, World::with_ca(ca, options).await)
}

#[tokio::test]
async fn a_certificate_in_its_domains_crl_is_refused_and_a_new_list_applies_within_a_second() {
    let listed = std::sync::Mutex::new(Vec::new());
    let hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let (_dir, file, w) = world_with_crl(|ca| {
        let leaf = ca.app("payments");
        listed.lock().unwrap().push(leaf.clone());
        ca.crl(&[&leaf.der], hour)
    })
    .await;
    let revoked = listed.lock().unwrap().pop().unwrap();
    let token = w.issuer.app("payments", "orders.read");
    let denied = w
        .server
        .check(
            Req::get("/orders/1")
                .cert(&revoked.pem)
                .token(&token)
                .build(),
        )
        .await;
    denied.assert_denied(401, "credential_revoked");
    assert!(
        denied.body["message"].as_str().unwrap().contains("CRL"),
        "{denied:?}"
    );
    // Another certificate of the same workload is not on the list.
    let fresh = w.ca.app("payments");
    let req = Req::get("/orders/1").cert(&fresh.pem).token(&token);
    w.server
        .check(req.clone().build())
        .await
        .assert_allowed(&format!("spiffe://{TRUST_DOMAIN}/payments"));

    // The CA lists it too: the new list applies to the cached caller within a second.
    let edited = Instant::now();
    replace_file(&file, &w.ca.crl(&[&revoked.der, &fresh.der], hour));
    loop {
        let answer = w.server.check(req.clone().build()).await;
        if reason(&answer) == "credential_revoked" {
            break;
        }
        assert!(edited.elapsed() < Duration::from_secs(5), "never revoked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = edited.elapsed();
    eprintln!("a new CRL applied in {took:?}");
    assert!(took <= Duration::from_secs(1), "the new CRL took {took:?}");
}

#[tokio::test]
async fn an_expired_crl_refuses_its_domain_and_readyz_says_so() {
    let (_dir, _file, w) = world_with_crl(|ca| {
        // Expired a minute ago (this_update an hour before).
        ca.crl(
            &[],
            time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
        )
    })
    .await;
    let answer = w
        .server
        .check(
            Req::get("/orders/1")
                .cert(&w.ca.app("payments").pem)
                .token(&w.issuer.app("payments", "orders.read"))
                .build(),
        )
        .await;
    // Tollgate cannot judge the certificate: the configurable internal status, not a 401.
    answer.assert_denied(503, "crl_expired");
    let readyz = w.server.admin_get("/readyz").await;
    assert!(
        readyz.contains(&format!("crl expired: trust domain `{TRUST_DOMAIN}`")),
        "{readyz}"
    );
}

#[tokio::test]
async fn a_crl_no_ca_of_the_domain_signs_is_refused_at_start() {
    let other = crate::support::pki::Ca::new("Other CA");
    let hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.crl.pem");
    std::fs::write(&file, other.crl(&[], hour)).unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let ca = crate::support::pki::Ca::new("Test Root CA");
    let options = Options {
        own_bundle: format!(
            "bundle = \"ca.pem\"\ncrl = {:?}",
            file.display().to_string()
        ),
        ..Options::default()
    };
    let path =
        crate::support::server::write_config(config_dir.path(), &ca, &TokenIssuer::new(), &options);
    let Err(error) = tollgate::config::load(&tollgate::config::ConfigSource::File(path), 1) else {
        panic!("a CRL of another CA must not load");
    };
    let error = error.to_string();
    assert!(
        error.contains("issued by no CA of trust domain") && error.contains("crl"),
        "{error}"
    );
}
