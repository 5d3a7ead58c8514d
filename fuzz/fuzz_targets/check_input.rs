//! A whole Check from bytes: protobuf decode, wire → CheckInput, and the full pipeline against
//! the embedded demo estate. Any input must give a verdict; none may allow without credentials
//! that verify (the fuzzer cannot forge a signature, so an allow is a bug).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rustls_pki_types::UnixTime;
use tollgate::cache::Caches;
use tollgate::config::{Config, ConfigSource};

static DEMO: LazyLock<(Config, Caches)> = LazyLock::new(|| {
    let config = Config::load(&ConfigSource::Embedded, 1).expect("embedded config loads");
    (config, Caches::new(1024, 300, tollgate::metrics::Metrics))
});

fuzz_target!(|data: &[u8]| {
    let Ok(request) =
        envoy_types::pb::envoy::service::auth::v3::CheckRequest::decode(data)
    else {
        return;
    };
    let (config, caches) = &*DEMO;
    if let Ok(input) = tollgate::grpc::check::input_from_proto(request) {
        let verdict = tollgate::authz::check(&config.snapshot, caches, &input, UnixTime::now());
        assert!(!verdict.is_allowed(), "allowed without verifiable credentials: {input:?}");
    }
});
