//! Decision records: OCSF API Activity lines for every kind of decision, secrets never
//! written, the file rotated under its cap, records exported over OTLP/gRPC to a receiver made
//! here, and the live inventory on `/identities`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::jwt::TokenIssuer;
use crate::support::server::{Options, Req};
use crate::support::{World, eventually, within};

fn app(name: &str) -> String {
    format!("spiffe://demo.tollgate.dev/{name}")
}

fn auditing(extra: &str) -> Options {
    Options {
        extra: format!("[audit]\nfile = \"audit.log\"\n{extra}"),
        ..Options::default()
    }
}

/// The decision records (API Activity) of the audit file, and its whole text.
fn records(dir: &Path) -> (String, Vec<Value>) {
    let (text, lines) = all_lines(dir);
    (
        text,
        lines
            .into_iter()
            .filter(|r| r["class_uid"] == 6003)
            .collect(),
    )
}

/// The compromise signals (Detection Findings) of the audit file.
fn findings(dir: &Path) -> Vec<Value> {
    all_lines(dir)
        .1
        .into_iter()
        .filter(|r| r["class_uid"] == 2004)
        .collect()
}

fn all_lines(dir: &Path) -> (String, Vec<Value>) {
    let text = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (text, lines)
}

/// OCSF 1.8 API Activity: what the class and the base event require, on every record.
fn assert_ocsf(r: &Value) {
    assert_eq!(r["class_uid"], 6003, "{r}");
    assert_eq!(r["category_uid"], 6, "{r}");
    let activity = r["activity_id"].as_u64().unwrap();
    assert!([0, 1, 2, 3, 4, 99].contains(&activity), "{r}");
    assert_eq!(r["type_uid"].as_u64(), Some(600_300 + activity), "{r}");
    assert_eq!(r["severity_id"], 1, "{r}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let time = r["time"].as_u64().unwrap();
    assert!(time <= now_ms && now_ms - time < 600_000, "{r}");
    assert_eq!(r["metadata"]["version"], "1.8.0", "{r}");
    assert_eq!(r["metadata"]["product"]["name"], "Tollgate", "{r}");
    assert!(r["metadata"]["product"]["version"].is_string(), "{r}");
    // `actor` needs one of user, process, session, app_name, app_uid; `src_endpoint` one of ip,
    // uid, name, hostname, …; `api` its `operation`.
    assert!(
        r["actor"]["user"].is_object() || r["actor"]["app_uid"].is_string(),
        "{r}"
    );
    let endpoint = &r["src_endpoint"];
    assert!(
        endpoint["ip"].is_string() || endpoint["uid"].is_string(),
        "{r}"
    );
    assert!(r["api"]["operation"].is_string(), "{r}");
    // The snapshot in force: policies and trust material, 12 hex digits each.
    for part in ["policies", "trust"] {
        let digest = r["unmapped"]["tollgate"]["snapshot"][part]
            .as_str()
            .unwrap();
        assert_eq!(digest.len(), 12, "{r}");
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{r}");
    }
}

#[tokio::test]
async fn every_decision_is_an_ocsf_api_activity_record() {
    let w = World::with(auditing("")).await;
    let cert = w.ca.app("payments");
    let token = w.issuer.sign(
        jsonwebtoken::Algorithm::ES256,
        None,
        &TokenIssuer::claims(
            "payments",
            "orders.read",
            serde_json::json!({"jti": "jti-7f3e-secret"}),
        ),
    );
    let allowed = w
        .server
        .check(
            Req::get("/orders/1001")
                .cert(&cert.pem)
                .token(&token)
                .source_ip("10.1.2.3")
                .build(),
        )
        .await;
    allowed.assert_allowed(&app("payments"));
    let unverified = w.server.check(Req::get("/orders/1").build()).await;
    unverified.assert_denied(401, "no_credentials");
    let expired = w.issuer.sign(
        jsonwebtoken::Algorithm::ES256,
        None,
        &TokenIssuer::claims(
            "payments",
            "orders.read",
            serde_json::json!({"exp": 1_000_000, "iat": 999_000}),
        ),
    );
    w.server
        .check(
            Req::get("/orders/1")
                .cert(&cert.pem)
                .token(&expired)
                .build(),
        )
        .await
        .assert_denied(401, "token_expired");
    w.server
        .check(Req::get("/nowhere").cert(&cert.pem).token(&token).build())
        .await
        .assert_denied(403, "no_route");
    // Scopes that do not grant it: Cedar says no.
    let weak = w.issuer.app("payments", "profile");
    w.server
        .check(Req::get("/orders/1").cert(&cert.pem).token(&weak).build())
        .await
        .assert_denied(403, "policy_denied");
    let dir = w.server.stop().await;
    let (text, r) = records(dir.path());
    assert_eq!(r.len(), 5, "{text}");
    for record in &r {
        assert_ocsf(record);
    }

    // The allow: who, with which credentials (facts, not secrets), for what, by which policy.
    let a = &r[0];
    assert_eq!(a["activity_id"], 2);
    assert_eq!(a["status_id"], 1);
    assert_eq!(a["status_code"], "allowed");
    assert_eq!(a["disposition_id"], 1);
    assert_eq!(
        a["metadata"]["uid"],
        allowed.headers["x-tollgate-decision-id"].as_str()
    );
    assert_eq!(a["actor"]["app_uid"], app("payments"));
    assert!(
        a["actor"]["user"].is_null(),
        "an app-only call names no user: {a}"
    );
    assert_eq!(
        a["unmapped"]["tollgate"]["trust_domain"],
        "demo.tollgate.dev"
    );
    assert_eq!(a["actor"]["idp"]["name"], crate::support::jwt::ISSUER);
    let thumbprint = a["actor"]["session"]["credential_uid"].as_str().unwrap();
    assert_eq!(thumbprint.len(), "sha256:".len() + 64);
    assert!(a["actor"]["session"]["expiration_time"].as_i64().unwrap() > 0);
    let jti = a["api"]["token"]["uid"].as_str().unwrap();
    assert!(jti.starts_with("sha256:") && !jti.contains("7f3e"), "{a}");
    assert!(a["api"]["token"]["expiration_time"].as_i64().unwrap() > 0);
    assert_eq!(a["api"]["operation"], "orders:read");
    assert_eq!(a["api"]["response"]["code"], 200);
    assert_eq!(a["resources"][0]["uid"], "Order::\"1001\"");
    assert_eq!(a["resources"][0]["type"], "Order");
    assert_eq!(a["src_endpoint"]["ip"], "10.1.2.3");
    assert_eq!(a["http_request"]["http_method"], "GET");
    assert_eq!(a["http_request"]["url"]["path"], "/orders/1001");
    assert_eq!(a["actor"]["authorizations"][0]["decision"], "allow");
    assert_eq!(
        a["actor"]["authorizations"][0]["policy"]["uid"],
        "orders-read-backend"
    );
    assert_eq!(a["unmapped"]["tollgate"]["access_mode"], "app_only");
    assert_eq!(a["unmapped"]["tollgate"]["client_id"], "payments");

    // Refused before identity: nobody verified, no actor invented.
    let u = &r[1];
    assert_eq!(u["status_code"], "no_credentials");
    assert_eq!(u["api"]["response"]["code"], 401);
    assert_eq!(u["actor"]["user"]["name"], "unverified");
    assert!(u["actor"]["app_uid"].is_null(), "{u}");
    assert_eq!(u["metadata"]["uid"], unverified.body["decision_id"]);
    assert_eq!(u["src_endpoint"]["uid"], "unknown");

    assert_eq!(r[2]["status_code"], "token_expired");
    // Identified, but no route: the actor is known, the resource is not.
    assert_eq!(r[3]["status_code"], "no_route");
    assert_eq!(r[3]["actor"]["app_uid"], app("payments"));
    assert!(r[3]["resources"].is_null());
    // Cedar's deny: the action and resource it was asked about.
    let d = &r[4];
    assert_eq!(d["status_code"], "policy_denied");
    assert_eq!(d["status_id"], 2);
    assert_eq!(d["disposition_id"], 2);
    assert_eq!(d["api"]["response"]["code"], 403);
    assert_eq!(d["api"]["operation"], "orders:read");

    // Every record of one server names the same snapshot.
    let versions: std::collections::HashSet<String> = r
        .iter()
        .map(|x| x["unmapped"]["tollgate"]["snapshot"].to_string())
        .collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
}

#[tokio::test]
async fn delegated_calls_name_the_user_or_its_pseudonym() {
    for pseudonymise in [false, true] {
        let w = World::with(auditing(&format!("pseudonymise_users = {pseudonymise}\n"))).await;
        let cert = w.ca.app("web-frontend");
        let alice = w
            .issuer
            .delegated("web-frontend", "alice-0b5e@example.com", "orders.read");
        w.server
            .check(
                Req::get("/users/alice-0b5e@example.com/orders/7")
                    .cert(&cert.pem)
                    .token(&alice)
                    .build(),
            )
            .await;
        let dir = w.server.stop().await;
        let (text, r) = records(dir.path());
        let d = &r[0];
        assert_eq!(d["unmapped"]["tollgate"]["access_mode"], "delegated", "{d}");
        assert_eq!(d["actor"]["user"]["type_id"], 1, "{d}");
        assert_eq!(d["actor"]["app_uid"], app("web-frontend"));
        let user = d["actor"]["user"]["uid"].as_str().unwrap();
        if pseudonymise {
            assert!(user.starts_with("sha256:"), "{d}");
            // Nowhere in the record but the request path the route put it in.
            assert_eq!(text.matches("alice-0b5e@example.com").count(), 1, "{text}");
        } else {
            assert_eq!(user, "alice-0b5e@example.com");
        }
    }
}

/// No token, certificate or query value ever reaches a record: searched for in the file.
#[tokio::test]
async fn records_never_hold_a_credential_or_a_query_value() {
    let w = World::with(auditing("")).await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    w.server
        .check(
            Req::get("/orders/1?api_key=s3cr3t-q&flag-s3cr3t&x=%2Fy")
                .cert(&cert.pem)
                .token(&token)
                .build(),
        )
        .await
        .assert_allowed(&app("payments"));
    // A refused token is not written either.
    w.server
        .check(
            Req::get("/orders/1?code=s3cr3t-code")
                .token(&format!("{token}x"))
                .build(),
        )
        .await;
    let dir = w.server.stop().await;
    let (text, r) = records(dir.path());
    assert_eq!(r.len(), 2);
    let signature = token.rsplit('.').next().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let cert_body: String = cert
        .pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for secret in [
        "s3cr3t",
        signature,
        payload,
        &cert_body[..40],
        &cert_body[cert_body.len() - 40..],
    ] {
        assert!(
            !text.contains(secret),
            "`{secret}` in the audit file:\n{text}"
        );
    }
    assert_eq!(
        r[0]["http_request"]["url"]["query_string"],
        "api_key=_&_&x=_"
    );
    assert_eq!(r[1]["http_request"]["url"]["query_string"], "code=_");
}

#[tokio::test]
async fn the_file_rotates_and_stays_under_its_cap() {
    let w = World::with(auditing("max_file_bytes = 4096\nmax_files = 2\n")).await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    for i in 0..60 {
        w.server
            .check(
                Req::get(&format!("/orders/{i}"))
                    .cert(&cert.pem)
                    .token(&token)
                    .build(),
            )
            .await
            .assert_allowed(&app("payments"));
    }
    let dir = w.server.stop().await;
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("audit.log"))
        .collect();
    names.sort();
    assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
    let mut total = 0;
    let mut records = 0;
    for name in &names {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        total += text.len();
        for line in text.lines() {
            // Whole records only: rotation never splits one.
            serde_json::from_str::<Value>(line).unwrap();
            records += 1;
        }
    }
    // The cap: a file is rotated before a batch would take it past 4096 bytes.
    assert!(total <= 3 * 4096, "{total} bytes in {names:?}");
    assert!(records < 60, "the oldest records were not deleted");
}

/// An OTLP/gRPC logs receiver, as an OpenTelemetry Collector serves it.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService
    for Receiver
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
        >,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse>,
        tonic::Status,
    > {
        let mut got = self.0.lock().unwrap();
        for resource in request.into_inner().resource_logs {
            for scope in resource.scope_logs {
                got.extend(scope.log_records);
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_an_opentelemetry_collector_over_otlp_grpc() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogsServiceServer::new(receiver.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let w = World::with(Options {
        extra: format!("[audit]\notlp_endpoint = \"http://{addr}\"\n"),
        ..Options::default()
    })
    .await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    let allowed = w
        .server
        .check(Req::get("/orders/1").cert(&cert.pem).token(&token).build())
        .await;
    w.server.check(Req::get("/orders/1").build()).await;
    // Stopping flushes the exporter.
    w.server.stop().await;
    eventually("the collector never got both records", || {
        receiver.0.lock().unwrap().len() >= 2
    })
    .await;
    let got = receiver.0.lock().unwrap().clone();
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Any::StringValue(s)) => serde_json::from_str(s).unwrap(),
            other => panic!("body is not a string: {other:?}"),
        })
        .collect();
    assert!(got.iter().all(|r| r.event_name == "ocsf.api_activity"));
    assert!(got.iter().all(|r| r.time_unix_nano > 0));
    for body in &bodies {
        assert_ocsf(body);
    }
    assert_eq!(
        bodies[0]["metadata"]["uid"],
        allowed.headers["x-tollgate-decision-id"].as_str()
    );
    assert_eq!(bodies[1]["status_code"], "no_credentials");
    let decision = |r: &opentelemetry_proto::tonic::logs::v1::LogRecord| {
        r.attributes
            .iter()
            .find(|kv| kv.key == "tollgate.decision")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .cloned()
    };
    assert_eq!(decision(&got[0]), Some(Any::StringValue("allow".into())));
    assert_eq!(decision(&got[1]), Some(Any::StringValue("deny".into())));
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn identities_shows_the_live_inventory() {
    let w = World::new().await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    for _ in 0..3 {
        w.server
            .check(Req::get("/orders/1").cert(&cert.pem).token(&token).build())
            .await
            .assert_allowed(&app("payments"));
    }
    w.server
        .check(Req::get("/nowhere").cert(&cert.pem).token(&token).build())
        .await;
    w.server.check(Req::get("/orders/1").build()).await;
    let fetch = async || {
        let text = w.server.admin_get("/identities").await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{text}");
        serde_json::from_str::<Value>(body).unwrap()
    };
    // The writer counts in batches: wait for all five decisions.
    within(
        Duration::from_secs(5),
        "all five decisions in the inventory",
        async || fetch().await["records"] == 5,
    )
    .await;
    let inventory = fetch().await;
    assert_eq!(inventory["records"], 5, "{inventory}");
    let identities = inventory["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 1, "{inventory}");
    let payments = &identities[0];
    assert_eq!(payments["principal"], app("payments"));
    assert_eq!(payments["kind"], "workload");
    assert_eq!(payments["trust_domain"], "demo.tollgate.dev");
    assert_eq!(payments["calls"], 4);
    assert_eq!(payments["denials"]["no_route"], 1);
    assert_eq!(payments["used"]["orders:read Order"]["allowed"], 3);
    assert_eq!(inventory["unverified"]["no_credentials"], 1);
}

/// A denial burst of one identity is a Detection Finding on the audit sinks within a second,
/// counted and shown in `/identities`; the allowed traffic of another in the same seconds sets
/// nothing off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_burst_is_a_finding_within_a_second_and_normal_traffic_is_not() {
    let w = World::with(auditing("")).await;
    let (payments, quarantined) = (w.ca.app("payments"), w.ca.app("legacy-reporting"));
    let ok = Req::get("/orders/1")
        .cert(&payments.pem)
        .token(&w.issuer.app("payments", "orders.read"));
    let probing = Req::get("/orders/1")
        .cert(&quarantined.pem)
        .token(&w.issuer.app("legacy-reporting", "orders.read"));
    for _ in 0..40 {
        w.server
            .check(ok.clone().build())
            .await
            .assert_allowed(&app("payments"));
    }
    let started = std::time::Instant::now();
    for _ in 0..25 {
        w.server
            .check(probing.clone().build())
            .await
            .assert_denied(403, "policy_denied");
    }
    let dir = w.server.dir.path().to_owned();
    within(
        Duration::from_secs(5),
        "a finding in the audit file",
        async || !findings(&dir).is_empty(),
    )
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the finding took {took:?}");
    let found = findings(&dir);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    // OCSF 1.8 Detection Finding: what the class and the base event require.
    assert_eq!(f["category_uid"], 2, "{f}");
    assert_eq!(f["activity_id"], 1, "{f}");
    assert_eq!(f["type_uid"], 200_401, "{f}");
    assert_eq!(f["severity_id"], 3, "{f}");
    assert_eq!(f["status_id"], 1, "new, not yet reviewed: {f}");
    assert_eq!(f["is_alert"], true, "{f}");
    assert!(
        f["message"]
            .as_str()
            .is_some_and(|m| m.contains("denial_burst")),
        "{f}"
    );
    assert!(
        f["time"].is_u64() && f["metadata"]["version"] == "1.8.0",
        "{f}"
    );
    assert_eq!(f["finding_info"]["types"][0], "denial_burst", "{f}");
    assert!(
        f["finding_info"]["uid"].is_string() && f["finding_info"]["title"].is_string(),
        "{f}"
    );
    assert_eq!(
        f["evidences"][0]["actor"]["app_uid"],
        app("legacy-reporting"),
        "{f}"
    );
    assert!(
        f["finding_info"]["desc"]
            .as_str()
            .unwrap()
            .starts_with("20 denials"),
        "{f}"
    );

    let text = w.server.admin_get("/identities").await;
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    let signals_of = |who: &str| {
        body["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["principal"] == app(who))
            .map(|i| i["signals"].clone())
            .unwrap()
    };
    assert_eq!(
        signals_of("legacy-reporting")[0]["kind"],
        "denial_burst",
        "{body}"
    );
    assert_eq!(signals_of("payments"), serde_json::json!([]), "{body}");
}

/// Review finding: `/readyz` listed the sinks, a collector's address among them, on any
/// interface; the counts are for everyone, where the records go only for loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_counts_drops_and_names_sinks_only_on_loopback() {
    let w = World::with(Options {
        admin_listen: "0.0.0.0:0".into(),
        extra: "[audit]\nqueue = 1\notlp_endpoint = \"http://collector.internal.example:4317\"\n"
            .into(),
        ..Options::default()
    })
    .await;
    let cert = w.ca.app("payments");
    let token = w.issuer.app("payments", "orders.read");
    // A queue of one and a writer that naps between batches: most of these are dropped.
    for _ in 0..100 {
        w.server
            .check(Req::get("/orders/1").cert(&cert.pem).token(&token).build())
            .await;
    }
    // The listener is on every interface: details are kept to loopback listeners.
    let readyz = w.server.admin_get("/readyz").await;
    assert!(readyz.contains("records dropped"), "{readyz}");
    assert!(!readyz.contains("collector.internal.example"), "{readyz}");
}

/// `[signals] new_access = "deny"`: the reviewed baseline is an allow-list on the request path.
/// What it holds passes (as the policies decide); what it does not is denied
/// `outside_baseline`, recorded, and a new-access finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewed_baseline_is_an_allow_list_when_new_access_denies() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.json");
    let reviewed = serde_json::json!({
        "tollgate_baseline": 1, "first_ms": 0, "last_ms": 0,
        "identities": { app("payments"): ["orders:read Order"] },
    });
    std::fs::write(&baseline, reviewed.to_string()).unwrap();
    let w = World::with(auditing(&format!(
        "[signals]\nbaseline = {:?}\nnew_access = \"deny\"\n",
        baseline.display().to_string()
    )))
    .await;
    let payments = Req::get("/orders/1")
        .cert(&w.ca.app("payments").pem)
        .token(&w.issuer.app("payments", "orders.read"));
    let batch = Req::new("PUT", "/reports/daily")
        .cert(&w.ca.app("nightly-batch").pem)
        .token(&w.issuer.app("nightly-batch", "reports.write"))
        .source_ip("10.20.3.4");
    for _ in 0..3 {
        w.server
            .check(payments.clone().build())
            .await
            .assert_allowed(&app("payments"));
        let denied = w.server.check(batch.clone().build()).await;
        denied.assert_denied(403, "outside_baseline");
        let message = denied.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("reports:write") && message.contains("Report"),
            "{message}"
        );
    }
    let dir = w.server.dir.path().to_owned();
    within(
        Duration::from_secs(5),
        "the new-access finding",
        async || {
            findings(&dir)
                .iter()
                .any(|f| f["finding_info"]["types"][0] == "new_access")
        },
    )
    .await;
    let denials = || {
        records(&dir)
            .1
            .iter()
            .filter(|r| r["status_code"] == "outside_baseline")
            .count()
    };
    within(
        Duration::from_secs(5),
        "three outside_baseline records",
        async || denials() >= 3,
    )
    .await;
    assert_eq!(denials(), 3);
}
