//! `tollgate report` on an estate whose answer is known exactly (`tests/fixtures/review`): the
//! inventory, what Cedar grants versus what was used (a grant through a group, one on a
//! condition, one never used), dormant and only-denied identities, corrupt lines counted, gzip
//! and re-serialised records read, merged summaries equal to one read, and the HTML page as
//! headless Chromium renders it.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use tollgate::audit::Event;
use tollgate::audit::ocsf::write_line;
use tollgate::evidence::{Actor, Evidence, RequestLine, Target, TokenEvidence, WorkloadEvidence};
use tollgate::identity::AccessMode;
use tollgate::snapshot::SnapshotVersion;
use tollgate::verdict::DecisionId;

const ESTATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/review/tollgate.toml"
);
const ORDERS: &str = "spiffe://t.example/orders";
const WEB: &str = "spiffe://t.example/web";
const RETIRED: &str = "spiffe://t.example/retired";
const GHOST: &str = "spiffe://t.example/ghost";
const BATCH: &str = "https://idp.t.example#batch";
const T0: u64 = 1_795_000_000_000;

struct Call<'a> {
    minute: u64,
    principal: Option<&'a str>,
    user: Option<&'a str>,
    target: Option<(&'a str, &'a str)>,
    reason: &'a str,
    policies: &'a [&'a str],
}

/// One record, as the server writes it.
fn record(c: &Call<'_>) -> String {
    let allowed = c.reason == "allowed";
    let actor = c.principal.map(|principal| Actor {
        principal: principal.into(),
        workload: (!principal.contains('#')).then(|| WorkloadEvidence {
            id: principal.into(),
            trust_domain: "t.example".into(),
            thumbprint: Some([1; 32]),
            not_after: Some(1_796_000_000),
            not_before: Some(1_795_000_000),
        }),
        token: Some(TokenEvidence {
            issuer: "https://idp.t.example".into(),
            client_id: Some("c".into()),
            jti: None,
            expires_at: 1_795_500_000,
            issued_at: None,
            svid: false,
        }),
        mode: if c.user.is_some() {
            AccessMode::Delegated
        } else {
            AccessMode::AppOnly
        },
        user: c.user.map(Into::into),
    });
    let evidence = Evidence {
        reason: Box::leak(c.reason.to_owned().into_boxed_str()),
        status: if allowed { 200 } else { 403 },
        message: String::new(),
        principal: c.principal.map(Into::into),
        determining: c.policies.iter().map(|p| (*p).to_owned()).collect(),
        errors: vec![],
        actor: actor.map(std::sync::Arc::new),
        target: c.target.map(|(action, resource_type)| Target {
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: "7".into(),
        }),
        request: RequestLine {
            method: "GET".into(),
            path: "/x".into(),
            host: "h".into(),
            source_ip: None,
        },
        snapshot: Arc::new(SnapshotVersion::default()),
    };
    let event = Event {
        time_ms: T0 + c.minute * 60_000,
        decision_id: DecisionId::next(),
        elapsed_us: 1,
        evidence: &evidence,
        query: None,
    };
    let mut out = Vec::new();
    write_line(&mut out, &event, c.user, Default::default());
    String::from_utf8(out).unwrap()
}

fn call<'a>(
    minute: u64,
    principal: &'a str,
    target: (&'a str, &'a str),
    reason: &'a str,
    policies: &'a [&'a str],
) -> Call<'a> {
    Call {
        minute,
        principal: Some(principal),
        user: None,
        target: Some(target),
        reason,
        policies,
    }
}

const READ: (&str, &str) = ("orders:read", "Order");
const CREATE: (&str, &str) = ("orders:create", "Service");

/// Two audit files: the first gzip'd with two lines that are not records, the second with a
/// record re-serialised in another key order (as a pipeline might).
fn write_estate_records(dir: &Path) {
    let first = [
        record(&call(0, ORDERS, READ, "allowed", &["backend-reads"])),
        record(&Call {
            user: Some("alice"),
            ..call(1, WEB, CREATE, "allowed", &["web-creates-for-users"])
        }),
        record(&call(2, WEB, READ, "policy_denied", &[])),
        // Truncated mid-record, and not JSON at all.
        record(&call(3, ORDERS, READ, "allowed", &["backend-reads"]))[..200].to_owned() + "\n",
        "garbage\n".to_owned(),
    ]
    .concat();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("a.log.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(first.as_bytes()).unwrap();
    gz.finish().unwrap();
    let mut resorted: Value = serde_json::from_str(&record(&call(
        65,
        ORDERS,
        READ,
        "allowed",
        &["backend-reads"],
    )))
    .unwrap();
    let class = resorted
        .as_object_mut()
        .unwrap()
        .remove("class_uid")
        .unwrap();
    resorted
        .as_object_mut()
        .unwrap()
        .insert("class_uid".into(), class);
    let second = [
        record(&call(60, ORDERS, READ, "allowed", &["backend-reads"])),
        serde_json::to_string(&resorted).unwrap() + "\n",
        record(&Call {
            user: Some("bob"),
            ..call(61, WEB, CREATE, "allowed", &["web-creates-for-users"])
        }),
        record(&Call {
            minute: 62,
            principal: None,
            user: None,
            target: None,
            reason: "no_credentials",
            policies: &[],
        }),
        record(&call(63, BATCH, READ, "policy_denied", &[])),
    ]
    .concat();
    std::fs::write(dir.join("b.log"), second).unwrap();
}

fn tollgate(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(
        out.status.success(),
        "tollgate {args:?}: {stderr}\n{stdout}"
    );
    (stdout, stderr)
}

fn review(args: &[&str]) -> Value {
    let mut all = vec!["report", "-c", ESTATE, "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&tollgate(&all).0).unwrap()
}

fn row<'a>(r: &'a Value, section: &str, principal: &str) -> &'a Value {
    r[section]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["principal"] == principal)
        .unwrap_or_else(|| panic!("{principal} not in {section}: {r:#}"))
}

/// (action resource-type) → (grant, used calls) for one identity.
fn privileges(r: &Value, principal: &str) -> Vec<(String, String, u64)> {
    row(r, "least_privilege", principal)["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                format!(
                    "{} {}",
                    p["action"].as_str().unwrap(),
                    p["resource_type"].as_str().unwrap()
                ),
                p["grant"]["grant"].as_str().unwrap_or("none").to_owned(),
                p["used"]["calls"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn the_review_of_a_known_estate_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    write_estate_records(dir.path());
    let dir_arg = dir.path().to_str().unwrap();
    let r = review(&[dir_arg]);

    assert_eq!(r["records"], 8, "{r:#}");
    assert_eq!(r["corrupt"], 2, "{r:#}");
    let corrupt_at: Vec<&str> = r["corrupt_at"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(corrupt_at[0].ends_with("a.log.gz:4"), "{corrupt_at:?}");
    assert!(corrupt_at[1].ends_with("a.log.gz:5"), "{corrupt_at:?}");

    let inventory: Vec<&str> = r["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["principal"].as_str().unwrap())
        .collect();
    assert_eq!(inventory, [BATCH, GHOST, ORDERS, RETIRED, WEB]);
    assert_eq!(row(&r, "inventory", GHOST)["declared"], false);
    let orders = row(&r, "inventory", ORDERS);
    assert_eq!(orders["kind"], "workload");
    assert_eq!(orders["owner"], "team-orders");
    assert_eq!(orders["groups"], serde_json::json!(["backend"]));
    assert_eq!(orders["calls"], 3);
    assert_eq!(orders["first_seen_ms"], T0);
    assert_eq!(orders["last_seen_ms"], T0 + 65 * 60_000);
    assert_eq!(orders["expiry_ms"], 1_795_500_000_000u64);
    assert_eq!(
        orders["issuers"],
        serde_json::json!(["https://idp.t.example"])
    );
    let web = row(&r, "inventory", WEB);
    assert_eq!(web["kind"], "delegated app");
    assert_eq!(web["users"], serde_json::json!(["alice", "bob"]));
    assert_eq!(web["denials"], serde_json::json!({"policy_denied": 1}));
    assert_eq!(row(&r, "inventory", RETIRED)["calls"], 0);
    assert_eq!(row(&r, "inventory", BATCH)["kind"], "client");
    assert_eq!(r["unverified"], serde_json::json!({"no_credentials": 1}));

    // Granted versus used, as Cedar computes the grants.
    assert_eq!(
        privileges(&r, ORDERS),
        [
            ("orders:read Order".into(), "unconditional".into(), 3),
            ("payments:refund Payment".into(), "unconditional".into(), 0),
        ]
    );
    assert_eq!(
        privileges(&r, WEB),
        [
            ("orders:read Order".into(), "none".into(), 1),
            ("orders:create Service".into(), "conditional".into(), 2),
        ]
    );
    // Through its group, and never asked for.
    assert_eq!(
        privileges(&r, RETIRED),
        [("orders:read Order".into(), "unconditional".into(), 0)]
    );
    let refund = &row(&r, "least_privilege", ORDERS)["pairs"][1];
    assert_eq!(
        refund["grant"]["policies"],
        serde_json::json!(["orders-refunds"])
    );
    assert!(
        refund["locations"][0]
            .as_str()
            .unwrap()
            .ends_with("review.cedar:18"),
        "{refund}"
    );

    let determined: Vec<(String, u64)> = r["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["determined"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        determined,
        [
            ("backend-reads".into(), 3),
            ("web-creates-for-users".into(), 2),
            ("orders-refunds".into(), 0),
            ("ghost-reads".into(), 0),
        ]
    );
    assert_eq!(r["dormant"], serde_json::json!([GHOST, RETIRED]));
    assert_eq!(r["denied_only"], serde_json::json!([BATCH]));

    // The window: only the second hour.
    let since = "2026-11-18T12:06:40Z"; // T0 + 1 h
    let later = review(&["--since", since, dir_arg]);
    assert_eq!(later["records"], 5, "{later:#}");
    assert_eq!(later["outside_window"], 3);

    // The text a person reads names the unused permission and the file to change.
    let (text, _) = tollgate(&["report", "-c", ESTATE, dir_arg]);
    assert!(
        text.contains("Granted, never used in the window (3)"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains(ORDERS)
            && l.contains("payments:refund on Payment")
            && l.contains("orders-refunds")
            && l.contains("review.cedar:18")),
        "{text}"
    );
    assert!(
        text.contains(
            "Dormant: granted, no call in the window (2)\n  spiffe://t.example/ghost\n  spiffe://t.example/retired"
        ),
        "{text}"
    );
}

/// Review finding: an inventory row wrote `trust_domain` twice (its own, and the summary's
/// flattened into it), which a strict JSON reader refuses.
#[test]
fn an_inventory_row_names_each_field_once() {
    #[derive(serde::Deserialize)]
    struct Row {
        principal: String,
        trust_domain: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Review {
        inventory: Vec<Row>,
    }
    let dir = tempfile::tempdir().unwrap();
    write_estate_records(dir.path());
    let dir_arg = dir.path().to_str().unwrap();
    let (text, _) = tollgate(&["report", "-c", ESTATE, "--format", "json", dir_arg]);
    // Serde's derived reader refuses a field named twice.
    let review: Review = serde_json::from_str(&text).unwrap();
    let orders = review
        .inventory
        .iter()
        .find(|r| r.principal == ORDERS)
        .unwrap();
    assert_eq!(orders.trust_domain.as_deref(), Some("t.example"));
}

#[test]
fn merged_summaries_equal_one_read_of_all_records() {
    let dir = tempfile::tempdir().unwrap();
    write_estate_records(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (a, b) = (path("a.log.gz"), path("b.log"));
    let (sa, sb) = (path("a.summary.json"), path("b.summary.json"));
    tollgate(&["report", "--format", "none", "--save-summary", &sa, &a]);
    tollgate(&["report", "--format", "none", "--save-summary", &sb, &b]);
    let whole = review(&[&a, &b]);
    let mut all = vec!["report", "merge", "-c", ESTATE, "--format", "json"];
    all.extend([sa.as_str(), sb.as_str()]);
    let merged: Value = serde_json::from_str(&tollgate(&all).0).unwrap();
    assert_eq!(merged, whole);

    // The baseline: what each identity was allowed, sorted for a repository.
    let baseline = path("baseline.json");
    tollgate(&[
        "report",
        "merge",
        "--format",
        "none",
        "--baseline",
        &baseline,
        &sa,
        &sb,
    ]);
    let baseline: Value = serde_json::from_slice(&std::fs::read(&baseline).unwrap()).unwrap();
    assert_eq!(
        baseline["identities"],
        serde_json::json!({
            ORDERS: ["orders:read Order"],
            WEB: ["orders:create Service"],
        })
    );
}

#[test]
fn a_bad_input_says_which_and_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["report", "/nonexistent/audit.log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/audit.log"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["report", "--since", "yesterday-ish", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

/// Debian's Chromium (`CHROMIUM` or `/usr/bin/chromium`; `.ci/run` installs it when missing).
fn chromium() -> std::path::PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "headless Chromium is needed to check the HTML review as a person sees it: \
         `apt-get install chromium` (Debian), or set CHROMIUM=/path/to/chromium"
    );
    path
}

#[test]
fn the_html_review_renders_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    write_estate_records(dir.path());
    let html = dir.path().join("review.html");
    tollgate(&[
        "report",
        "-c",
        ESTATE,
        "--format",
        "none",
        "--html",
        html.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing fetched.
    for external in ["src=\"http", "href=\"http", "<script", "@import", "url("] {
        assert!(!page.contains(external), "{external} in the page");
    }
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("file://{}", html.display()),
        ])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The browser parsed it into the sections a reviewer reads.
    for heading in [
        "<h2 id=\"inventory\">Inventory</h2>",
        "<h2 id=\"unused\">Granted, never used</h2>",
        "<h2 id=\"dormant\">Dormant: granted, no call in the window (2)</h2>",
    ] {
        assert!(dom.contains(heading), "{heading} not in the DOM:\n{dom}");
    }
    assert!(
        dom.contains("<code>payments:refund</code> on <code>Payment</code>"),
        "{dom}"
    );
    assert!(dom.contains("team-orders"), "{dom}");
    // The charts: calls over time, denials in their own colour.
    assert!(dom.matches("<svg").count() >= 4, "{dom}");
    assert!(dom.contains("class=\"denials\""), "{dom}");
}
