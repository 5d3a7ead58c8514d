//! The TOML config: any text gives a config or an error, never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tollgate::config::{ConfigSource, load};

/// One file the fuzzer rewrites, in a folder with the demo's files beside it so that
/// relative paths in the fuzzed config can resolve.
static FILE: LazyLock<std::path::PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("tollgate-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp folder");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/demo");
    for name in ["ca.pem", "issuer.jwks.json"] {
        let _ = std::fs::copy(format!("{demo}/{name}"), dir.join(name));
    }
    dir.join("tollgate.toml")
});

fuzz_target!(|data: &[u8]| {
    if std::fs::write(&*FILE, data).is_err() {
        return;
    }
    let _ = load(&ConfigSource::File(FILE.clone()), 1);
});
