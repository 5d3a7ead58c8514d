//! The forwarded certificate field (URL-encoded PEM) against the demo trust store: never a
//! panic, and nothing the fuzzer makes chains to the demo CA.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rustls_pki_types::UnixTime;
use tollgate::config::{ConfigSource, load};
use tollgate::snapshot::Snapshot;

static DEMO: LazyLock<Snapshot> = LazyLock::new(|| {
    load(&ConfigSource::Embedded, 1)
        .expect("embedded config loads")
        .1
});

fuzz_target!(|data: &[u8]| {
    let Ok(field) = std::str::from_utf8(data) else {
        return;
    };
    let verified = DEMO.identity.trust.verify_forwarded(field, UnixTime::now());
    assert!(verified.is_err(), "{verified:?}");
});
