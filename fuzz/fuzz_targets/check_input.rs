//! A whole Check from bytes: protobuf decode, wire → CheckInput, and the full pipeline against
//! the embedded demo estate. Any input must give a verdict; none may allow without credentials
//! that verify (the fuzzer cannot forge a signature, so an allow is a bug).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tollgate::audit::AuditLog;
use tollgate::authz::{Authorizer, Caches};
use tollgate::config::{ConfigSource, load};
use tollgate::snapshot::SnapshotHandle;

static DEMO: LazyLock<Authorizer> = LazyLock::new(|| {
    let (_, snapshot) = load(&ConfigSource::Embedded, 1).expect("embedded config loads");
    Authorizer::new(
        Arc::new(SnapshotHandle::new(snapshot)),
        Caches::new(1024, 300),
        AuditLog::disabled(),
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok(request) = envoy_types::pb::envoy::service::auth::v3::CheckRequest::decode(data) else {
        return;
    };
    if let Ok(input) = tollgate::grpc::check::input_from_proto(request) {
        let verdict = DEMO.check(&input).verdict;
        assert!(
            !verdict.is_allowed(),
            "allowed without verifiable credentials: {input:?}"
        );
    }
});
