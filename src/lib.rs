//! Tollgate: a per-request authorization sidecar for Envoy's `ext_authz`.
//!
//! # Life of a Check
//!
//! ```text
//! Envoy ──gRPC Check──▶ grpc::check      CheckRequest → CheckInput (the only protobuf code)
//!                         │  one Snapshot per request (snapshot::SnapshotHandle)
//!                         ▼
//!                       authz::check     straight-line, cannot fail:
//!                         ├ identity::verify   certificate (webpki + SPIFFE) · token (JWT, JWKS, RFC 8705)
//!                         │                    cached by credential digest (cache)
//!                         ├ mapping::map       route table → Cedar principal/action/resource/context
//!                         ├ decision cache     keyed by the full query, tagged by generation
//!                         └ policy::decide     Cedar authorizer → Decision
//!                         ▼
//!                       verdict::Verdict  every stage error → one ReasonCode → status/challenge
//!                         ▼
//!                       grpc::check      Verdict → CheckResponse (OK + headers | 401/403 + JSON)
//! ```
//!
//! # Layout
//!
//! - [`cli`]: `serve`, `check`, `call`, `demo-credentials`.
//! - [`config`]: TOML → validated settings and the first [`snapshot::Snapshot`].
//! - [`demo`]: credentials for the embedded demo estate.
//! - [`server`]: binds and runs the gRPC and admin listeners.
//! - [`reload`]: file watching and `SIGHUP` → rebuild → atomic snapshot swap.
//! - [`grpc`]: tonic server assembly and the ext_authz translation layer.
//! - [`authz`]: the pipeline and its protobuf-free input.
//! - [`identity`]: certificates, SPIFFE IDs, XFCC, JWTs, JWKS, certificate binding.
//! - [`mapping`]: path normalisation, routes, Cedar context.
//! - [`policy`]: Cedar schema/policies/entities and evaluation.
//! - [`policytest`], [`lint`], [`diagnostic`]: the policy authors' toolchain.
//! - [`cache`]: bounded generation-tagged caches.
//! - [`verdict`]: decisions, reason codes, the error → wire mapping.
//! - [`metrics`], [`audit`], [`admin`], [`telemetry`]: observability.
//! - [`loadgen`]: the load generator behind `tollgate bench`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod authz;
pub mod cache;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diagnostic;
pub mod grpc;
pub mod identity;
pub mod lint;
pub mod loadgen;
pub mod mapping;
pub mod metrics;
pub mod policy;
pub mod policytest;
pub mod reload;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod verdict;
