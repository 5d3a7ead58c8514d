//! A whole Check from bytes, as the gRPC door answers it: read where it lies
//! (`grpc::wire::CheckView`) or decoded in full by prost, then the full pipeline against the
//! embedded demo estate. Any input must give an answer; none may allow without credentials
//! that verify (the fuzzer cannot forge a signature, so an allow is a bug); and where the view
//! reads a message prost also decodes, both make the same request of it.
#![no_main]

use std::sync::{Arc, LazyLock};

use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tollgate::audit::AuditLog;
use tollgate::authz::{Authorizer, Caches};
use tollgate::config::{ConfigSource, load};
use tollgate::grpc::CheckService;
use tollgate::grpc::check::input_from_proto;
use tollgate::grpc::wire::CheckView;
use tollgate::snapshot::SnapshotHandle;

static DEMO: LazyLock<CheckService> = LazyLock::new(|| {
    let (_, snapshot) = load(&ConfigSource::Embedded, 1).expect("embedded config loads");
    CheckService::new(Arc::new(Authorizer::new(
        Arc::new(SnapshotHandle::new(snapshot)),
        Caches::new(1024, 300),
        AuditLog::disabled(),
    )))
});

fuzz_target!(|data: &[u8]| {
    let answer = DEMO.answer_message(data);
    let answer = CheckResponse::decode(&answer.0[..]).expect("every answer is a CheckResponse");
    let code = answer.status.unwrap_or_default().code;
    assert_ne!(code, 0, "allowed without verifiable credentials");
    if let (Some(view), Ok(request)) = (CheckView::read(data), CheckRequest::decode(data)) {
        assert_eq!(Ok(view.input()), input_from_proto(request));
    }
});
