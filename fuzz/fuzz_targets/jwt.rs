//! JWT header and claims parsing against the demo issuer: never a panic, never verified.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tollgate::config::{Config, ConfigSource};

static DEMO: LazyLock<Config> =
    LazyLock::new(|| Config::load(&ConfigSource::Embedded, 1).expect("embedded config loads"));

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let verified = DEMO
        .snapshot
        .identity
        .issuers
        .verify(token, rustls_pki_types::UnixTime::now());
    assert!(verified.is_err(), "{verified:?}");
});
