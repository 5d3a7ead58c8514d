//! JWT header and claims parsing against the demo issuer: never a panic, never verified.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tollgate::config::{ConfigSource, load};
use tollgate::snapshot::Snapshot;

static DEMO: LazyLock<Snapshot> = LazyLock::new(|| {
    load(&ConfigSource::Embedded, 1)
        .expect("embedded config loads")
        .1
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let verified = DEMO
        .identity
        .issuers
        .verify(token, rustls_pki_types::UnixTime::now());
    assert!(verified.is_err(), "{verified:?}");
});
