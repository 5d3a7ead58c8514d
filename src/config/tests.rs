use std::path::Path;

use super::*;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// The demo config with absolute paths, plus `extra` appended, written to a temp dir.
fn config_with(edit: impl Fn(String) -> String) -> (tempfile::TempDir, ConfigSource) {
    let demo =
        std::fs::read_to_string(Path::new(MANIFEST).join("deploy/demo/tollgate.toml")).unwrap();
    let demo = demo
        .replace("\"ca.pem\"", &format!("\"{MANIFEST}/deploy/demo/ca.pem\""))
        .replace(
            "\"issuer.jwks.json\"",
            &format!("\"{MANIFEST}/deploy/demo/issuer.jwks.json\""),
        )
        .replace("../../policies", &format!("{MANIFEST}/policies"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, edit(demo)).unwrap();
    (dir, ConfigSource::File(path))
}

fn load_err(edit: impl Fn(String) -> String) -> ConfigError {
    let (_dir, source) = config_with(edit);
    load(&source, 1).unwrap_err()
}

#[test]
fn embedded_default_loads() {
    let (config, snapshot) = load(&ConfigSource::Embedded, 7).unwrap();
    assert_eq!(snapshot.generation, 7);
    assert_eq!(config.settings.listen.to_string(), "127.0.0.1:9191");
    assert!(snapshot.policies.policy_count() >= 8);
    assert!(snapshot.routes.iter().count() >= 7);
}

#[test]
fn unknown_key_names_key_and_line() {
    let e = load_err(|c| c.replace("[identity]\n", "[identity]\nsorce = \"xfcc\"\n"));
    let ConfigError::Syntax { line, message, .. } = &e else {
        panic!("{e}");
    };
    assert!(message.contains("sorce"), "{message}");
    assert!(*line > 1);
    assert!(e.to_string().contains("tollgate.toml:"), "{e}");
}

#[test]
fn semantic_errors_name_key_and_line() {
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c: String| c.replace("GET /orders/{id}\"", "get /orders/{id}\"")),
            "routes[1].match",
        ),
        (
            Box::new(|c: String| c.replace("algorithms = [\"ES256\"]", "algorithms = [\"none\"]")),
            "issuers[0].algorithms",
        ),
        (
            Box::new(|c: String| c.replace("algorithms = [\"ES256\"]", "algorithms = [\"HS256\"]")),
            "issuers[0].algorithms",
        ),
        (
            Box::new(|c: String| {
                c.replace("action = \"orders:create\"", "action = \"orders:crate\"")
            }),
            "routes[2].action",
        ),
        (
            Box::new(|c: String| c.replace("source = \"certificate\"", "source = \"cert\"")),
            "identity.source",
        ),
        (
            Box::new(|c: String| c.replace("name = \"demo.tollgate.dev\"", "name = \"Demo\"")),
            "identity.trust_domains[0].name",
        ),
        (
            Box::new(|c: String| {
                c.replace(
                    "resource = 'Payment::\"{id}\"'",
                    "resource = 'Payment::\"{pid}\"'",
                )
            }),
            "routes[4].match",
        ),
        (
            Box::new(|c: String| {
                c.replace("listen = \"127.0.0.1:9191\"", "listen = \"localhost\"")
            }),
            "server.listen",
        ),
    ];
    for (edit, key) in cases {
        let e = load_err(edit);
        match &e {
            ConfigError::Invalid { at, .. } => {
                assert_eq!(at.key, key, "{e}");
                assert!(at.line > 1, "{e}");
            }
            other => panic!("{key}: expected Invalid, got {other}"),
        }
    }
}

#[test]
fn broken_policy_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["orders.cedar", "payments.cedar", "platform.cedar"] {
        std::fs::copy(
            Path::new(MANIFEST).join("policies").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("zz.cedar"),
        "permit(principal, action, resource);\nforbid(principal,, action, resource);\n",
    )
    .unwrap();
    let policy_dir = dir.path().display().to_string();
    let e = load_err(|c| {
        c.replace(
            &format!("dir = \"{MANIFEST}/policies\""),
            &format!("dir = \"{policy_dir}\""),
        )
    });
    let ConfigError::Policies(errors) = &e else {
        panic!("{e}");
    };
    assert_eq!(errors[0].line, 2, "{e}");
    assert!(errors[0].file.ends_with("zz.cedar"));
}

#[test]
fn missing_file_is_a_read_error() {
    let e = load_err(|c| {
        c.replace(
            &format!("{MANIFEST}/deploy/demo/ca.pem"),
            "/nonexistent/ca.pem",
        )
    });
    assert!(matches!(e, ConfigError::Read(_)), "{e}");
}
