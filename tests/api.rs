//! Integration tests: one binary, real server, real gRPC, real certificates and tokens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]

mod support;

#[path = "api/admin.rs"]
mod admin;
#[path = "api/allow_deny.rs"]
mod allow_deny;
#[path = "api/audit.rs"]
mod audit;
#[path = "api/authzen.rs"]
mod authzen;
#[path = "api/binding.rs"]
mod binding;
#[path = "api/cert.rs"]
mod cert;
#[path = "api/cli.rs"]
mod cli;
#[path = "api/deploy.rs"]
mod deploy;
#[path = "api/enforcement.rs"]
mod enforcement;
#[path = "api/envoy.rs"]
mod envoy;
#[path = "api/federation.rs"]
mod federation;
#[path = "api/fetched_keys.rs"]
mod fetched_keys;
#[path = "api/forward_auth.rs"]
mod forward_auth;
#[path = "api/garbage.rs"]
mod garbage;
#[path = "api/http_listener.rs"]
mod http_listener;
#[path = "api/jwt_svid.rs"]
mod jwt_svid;
#[path = "api/layering.rs"]
mod layering;
#[path = "api/memo.rs"]
mod memo;
#[path = "api/overload.rs"]
mod overload;
#[path = "api/policytest.rs"]
mod policytest;
#[path = "api/reload.rs"]
mod reload;
#[path = "api/report.rs"]
mod report;
#[path = "api/revocation.rs"]
mod revocation;
#[path = "api/sources.rs"]
mod sources;
#[path = "api/status_list.rs"]
mod status_list;
#[path = "api/token.rs"]
mod token;
#[path = "api/transport.rs"]
mod transport;
#[path = "api/validate.rs"]
mod validate;
#[path = "api/workload_api.rs"]
mod workload_api;
