//! The demo config in a folder of its own, for tests that edit or rebuild it.

use std::path::Path;

use super::ConfigSource;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// The demo config, with `edit` applied, written to a new temp folder: its certificates,
/// keys, schema and entities named by absolute path, its policies copied to `policies/`
/// and its revocation file beside it (so a test can change them).
pub(crate) fn demo_config(edit: impl Fn(String) -> String) -> (tempfile::TempDir, ConfigSource) {
    let repo = Path::new(MANIFEST);
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for f in [
        "authzen.cedar",
        "orders.cedar",
        "payments.cedar",
        "platform.cedar",
    ] {
        std::fs::copy(repo.join("policies").join(f), policies.join(f)).unwrap();
    }
    // Copies beside the config, for a test that edits one (the config names the repository's
    // CA bundle unless the test's edit points it at the copy).
    for f in ["revoked.toml", "ca.pem"] {
        std::fs::copy(repo.join("deploy/demo").join(f), dir.path().join(f)).unwrap();
    }
    let demo = std::fs::read_to_string(repo.join("deploy/demo/tollgate.toml")).unwrap();
    let demo = demo
        .replace("\"ca.pem\"", &format!("\"{MANIFEST}/deploy/demo/ca.pem\""))
        .replace(
            "\"issuer.jwks.json\"",
            &format!("\"{MANIFEST}/deploy/demo/issuer.jwks.json\""),
        )
        .replace("dir = \"../../policies\"", "dir = \"policies\"")
        .replace("../../policies", &format!("{MANIFEST}/policies"));
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, edit(demo)).unwrap();
    (dir, ConfigSource::File(path))
}
