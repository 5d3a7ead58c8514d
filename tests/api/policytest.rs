//! `tollgate test`: the example estate's file passes and covers every policy; failures, bad
//! cases and JUnit output behave.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::server::MANIFEST;

fn tollgate_test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("test")
        .args(args)
        .current_dir(MANIFEST)
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_example_estate_passes_and_covers_every_policy() {
    let out = tollgate_test(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("coverage: 10 of 10 policies determined at least one case"),
        "{text}"
    );
    let summary = text.lines().find(|l| l.starts_with("summary: ")).unwrap();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
}

#[test]
fn failures_are_reported_with_exit_4_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.yaml");
    std::fs::write(
        &file,
        r#"
cases:
  - name: expects the quarantined app to be allowed
    caller:
      spiffe_id: spiffe://demo.tollgate.dev/legacy-reporting
      token: { client_id: legacy-reporting, scopes: [orders.read] }
    request: { method: GET, path: /orders/1 }
    expect: { decision: allow }
  - name: right decision, wrong policy
    caller:
      spiffe_id: spiffe://demo.tollgate.dev/payments
      token: { client_id: payments, scopes: [orders.read] }
    request: { method: GET, path: /orders/1 }
    expect: { decision: allow, policies: [orders-read-own] }
  - name: neither caller nor cedar
    expect: { decision: deny }
  - name: passes
    caller: { spiffe_id: spiffe://demo.tollgate.dev/payments }
    request: { method: GET, path: /nowhere }
    expect: { decision: deny, reason: no_route }
"#,
    )
    .unwrap();
    let junit = dir.path().join("report.xml");
    let out = tollgate_test(&[
        &file.display().to_string(),
        "--junit",
        &junit.display().to_string(),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("case expects the quarantined app to be allowed ... FAILED"),
        "{text}"
    );
    assert!(
        text.contains(
            "expected allow, got deny (reason policy_denied, policies [quarantine-legacy-reporting])"
        ),
        "{text}"
    );
    assert!(
        text.contains("expected allow (policies [orders-read-own]), got allow"),
        "{text}"
    );
    assert!(
        text.contains("case right decision, wrong policy ... FAILED"),
        "{text}"
    );
    assert!(
        text.contains("case neither caller nor cedar ... ERROR"),
        "{text}"
    );
    assert!(text.contains("case passes ... ok"), "{text}");
    assert!(text.contains("summary: 1 passed, 3 failed"), "{text}");
    let xml = std::fs::read_to_string(junit).unwrap();
    assert_eq!(xml.matches("<testcase").count(), 4, "{xml}");
    assert_eq!(xml.matches("<failure").count(), 2, "{xml}");
    assert_eq!(xml.matches("<error").count(), 1, "{xml}");
}

#[test]
fn json_files_and_folders_work_and_missing_paths_fail() {
    let dir = tempfile::tempdir().unwrap();
    let json = serde_json::json!({
        "cases": [{
            "name": "raw cedar in JSON",
            "cedar": {
                "principal": "App::\"spiffe://demo.tollgate.dev/legacy-reporting\"",
                "action": "Action::\"orders:read\"",
                "resource": "Order::\"1\"",
                "context": {"access_mode": "app_only", "request": {"method": "GET", "path": "/", "host": ""}}
            },
            "expect": {"decision": "deny", "policies": ["quarantine-legacy-reporting"]}
        }]
    });
    std::fs::write(dir.path().join("a.json"), json.to_string()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let out = tollgate_test(&[&dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("summary: 1 passed, 0 failed"));
    let out = tollgate_test(&[&Path::new("/nonexistent/tests").display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn fmt_checks_rewrites_and_refuses_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.cedar");
    std::fs::write(
        &file,
        "permit(principal,action,resource)when{context.access_mode==\"app_only\"};\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("fmt")
            .args(args)
            .output()
            .unwrap()
    };
    let path = file.display().to_string();
    let out = run(&["--check", &path]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("would reformat"), "{}", stdout(&out));
    let out = run(&[&path]);
    assert_eq!(out.status.code(), Some(0));
    let formatted = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        formatted,
        "permit (principal, action, resource)\nwhen { context.access_mode == \"app_only\" };\n"
    );
    assert_eq!(run(&["--check", &path]).status.code(), Some(0));
    // The shipped examples are formatted.
    let policies = Path::new(MANIFEST).join("policies").display().to_string();
    assert_eq!(run(&["--check", &policies]).status.code(), Some(0));

    std::fs::write(&file, "permit(principal,, action, resource);").unwrap();
    let out = run(&[&path]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("cannot format"), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "permit(principal,, action, resource);"
    );
}
