//! `tollgate validate` on fixture folders: one per error kind and lint, exit codes, JSON.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::server::MANIFEST;

/// A fixture folder: the demo config with local paths and a copy of the example policies,
/// then `edit` applied.
fn fixture(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for entry in std::fs::read_dir(Path::new(MANIFEST).join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    for f in ["ca.pem", "issuer.jwks.json", "revoked.toml"] {
        std::fs::copy(
            Path::new(MANIFEST).join("deploy/demo").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    let config = std::fs::read_to_string(Path::new(MANIFEST).join("deploy/demo/tollgate.toml"))
        .unwrap()
        .replace("../../policies", "policies");
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, config).unwrap();
    edit(dir.path());
    (dir, path)
}

fn replace_in(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} lacks {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

fn validate(config: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["validate", "--config"];
    let config = config.display().to_string();
    args.push(&config);
    args.extend_from_slice(extra);
    std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(&args)
        .output()
        .unwrap()
}

#[track_caller]
fn expect(output: &Output, code: i32, needles: &[&str]) {
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(code), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn the_example_estate_is_clean() {
    let (_dir, config) = fixture(|_| {});
    expect(
        &validate(&config, &[]),
        0,
        &["10 policies, 7 routes; 0 errors, 0 warnings"],
    );
    let out = validate(&config, &["--format", "json", "--deny-warnings"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn each_error_kind_is_located_and_exits_3() {
    type Edit = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "config-syntax",
            Box::new(|d| {
                replace_in(
                    d,
                    "tollgate.toml",
                    "[identity]\n",
                    "[identity]\nsorce = 1\n",
                )
            }),
            vec!["tollgate.toml:19:1: error[config-syntax]", "sorce"],
        ),
        (
            "config-invalid",
            Box::new(|d| {
                replace_in(
                    d,
                    "tollgate.toml",
                    "GET /orders/{id}\"",
                    "GET /orders/{oid}\"",
                )
            }),
            vec!["error[config-invalid]", "`routes[1].match`", "{id}"],
        ),
        (
            "route-resource",
            Box::new(|d| {
                replace_in(
                    d,
                    "tollgate.toml",
                    "resource = 'Service::\"orders\"'",
                    "resource = 'Order::\"new\"'",
                )
            }),
            vec!["`routes[2].resource`", "does not apply to `Order`"],
        ),
        (
            "syntax",
            Box::new(|d| {
                std::fs::write(
                    d.join("policies/zz.cedar"),
                    "permit(principal, action, resource);\nforbid(principal action, resource);\n",
                )
                .unwrap()
            }),
            vec!["zz.cedar:2:18: error[syntax]"],
        ),
        (
            "validation",
            Box::new(|d| {
                std::fs::write(d.join("policies/zz.cedar"), "\npermit(principal, action == Action::\"orders:read\", resource)\nwhen { context.nope };\n").unwrap()
            }),
            vec!["zz.cedar:3:", "error[validation]", "help:"],
        ),
        (
            "duplicate-policy-id",
            Box::new(|d| {
                std::fs::write(
                    d.join("policies/zz.cedar"),
                    "@id(\"orders-read-own\")\npermit(principal, action, resource);\n",
                )
                .unwrap()
            }),
            vec![
                "zz.cedar:1:1: error[duplicate-policy-id]",
                "orders-read-own",
            ],
        ),
        (
            "schema",
            Box::new(|d| {
                replace_in(
                    d,
                    "policies/tollgate.cedarschema",
                    "entity Payment;",
                    "entity Payment {",
                )
            }),
            vec!["tollgate.cedarschema:", "error[schema]"],
        ),
        (
            "entities",
            Box::new(|d| {
                replace_in(
                    d,
                    "policies/entities.json",
                    "\"owner\": \"team-shop\"",
                    "\"owner\": 7",
                )
            }),
            vec!["entities.json:1:1: error[entities]"],
        ),
        (
            "listener-tls",
            Box::new(|d| {
                // A key that belongs to another certificate: caught now, not when serving.
                let ca = crate::support::pki::Ca::new("Mesh CA");
                let (ours, other) = (ca.server("tollgate.test"), ca.server("other.test"));
                std::fs::write(d.join("srv.pem"), &ours.pem).unwrap();
                std::fs::write(d.join("srv.key"), &other.key_pem).unwrap();
                std::fs::write(d.join("mesh.pem"), &ca.pem).unwrap();
                replace_in(
                    d,
                    "tollgate.toml",
                    "[identity]\n",
                    "[server.tls]\ncert_file = \"srv.pem\"\nkey_file = \"srv.key\"\n\
                     client_ca_file = \"mesh.pem\"\n\n[identity]\n",
                )
            }),
            vec![
                "error[config-invalid]",
                "`server.tls.key_file`",
                "does not belong",
            ],
        ),
        (
            "read",
            Box::new(|d| std::fs::remove_file(d.join("ca.pem")).unwrap()),
            vec!["ca.pem:1:1: error[read]"],
        ),
    ];
    for (name, edit, needles) in cases {
        let (_dir, config) = fixture(|d| edit(d));
        let out = validate(&config, &[]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(3), "{name}: {text}");
        for needle in needles {
            assert!(
                text.contains(needle),
                "{name}: missing {needle:?} in:\n{text}"
            );
        }
    }
}

#[test]
fn several_broken_files_are_all_reported() {
    let (_dir, config) = fixture(|d| {
        std::fs::write(
            d.join("policies/a.cedar"),
            "permit(principal,, action, resource);",
        )
        .unwrap();
        std::fs::write(
            d.join("policies/b.cedar"),
            "forbid(principal, action, resource) when { 1 + };",
        )
        .unwrap();
    });
    expect(
        &validate(&config, &[]),
        3,
        &["a.cedar:1:", "b.cedar:1:", "2 errors"],
    );
}

#[test]
fn lints_warn_and_can_fail_the_build() {
    let (_dir, config) = fixture(|d| {
        replace_in(
            d,
            "tollgate.toml",
            "[[routes]]\nmatch = \"POST /payments/{id}/refund\"\naction = \"payments:refund\"\nresource = 'Payment::\"{id}\"'\n",
            "",
        );
    });
    let needles = [
        "payments.cedar:11:1: warning[policy-never-applies]: policy `payments-refund-support` can never apply",
        "tollgate.cedarschema:40:1: warning[resource-type-unused]: no route produces resource type `Payment`",
        "0 errors, 2 warnings",
    ];
    expect(&validate(&config, &[]), 0, &needles);
    let out = validate(&config, &["--deny-warnings", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["kind"], "policy-never-applies");
    assert_eq!(json[0]["severity"], "warning");
    assert_eq!(json[1]["line"], 40);
}

/// Finding: Cedar's own validator warnings (an impossible policy) were dropped, and a policy on
/// an action group was linted as never applying although its member actions are routed.
#[test]
fn cedar_warnings_are_shown_and_action_groups_count_as_routed() {
    let (_dir, config) = fixture(|d| {
        replace_in(
            d,
            "policies/tollgate.cedarschema",
            "action \"orders:read\" appliesTo",
            "action \"orders:any\";\naction \"orders:read\" in [Action::\"orders:any\"] appliesTo",
        );
        std::fs::write(
            d.join("policies/groups.cedar"),
            "@id(\"orders-any\")\npermit (principal, action in Action::\"orders:any\", resource);\n\n@id(\"never\")\npermit (principal, action == Action::\"orders:read\", resource) when { false };\n",
        )
        .unwrap();
    });
    let out = validate(&config, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("groups.cedar:4:1: warning[cedar-validator]:") && text.contains("never"),
        "{text}"
    );
    assert!(!text.contains("`orders-any` can never apply"), "{text}");
}
