//! Tollgate: a per-request authorization sidecar for Envoy's `ext_authz`.
//!
//! # Life of a Check
//!
//! ```text
//! Envoy ──gRPC Check──▶ grpc::check        CheckRequest → CheckInput (the only protobuf code)
//!                         ▼
//!                       authz::Authorizer  one Snapshot per request; records metrics, audit, log
//!                         ├ identity::verify   certificate (webpki + SPIFFE) · token (JWT, JWKS, RFC 8705)
//!                         │                    memoised per thread, cached by credential digest
//!                         ├ mapping::map       route table → Cedar principal/action/resource/context
//!                         ├ decision cache     per-thread memo by exact query, then a keyed digest
//!                         └ policy::decide     Cedar authorizer → Decision
//!                         ▼
//!                       verdict::Verdict   every stage error → one ReasonCode → status/challenge
//!                         ▼
//!                       grpc::check        Verdict → CheckResponse (OK + headers | 401/403 + JSON)
//! ```
//! `tollgate check` and `tollgate test` enter the same [`authz::Authorizer`].
//!
//! # Where a snapshot comes from
//!
//! ```text
//! config file ──config::Config::parse──▶ Settings (start time) + Spec (what to build, located)
//! Spec + Source (files · embedded · fetched later) ──snapshot::build──▶ Snapshot ──▶ SnapshotHandle
//! reload: config changed → parse + build · a named document changed → build from the Spec in force
//! ```
//!
//! # Modules, top to bottom
//!
//! Each module uses only modules listed below it (`tests/api/layering.rs` checks this list).
//!
//! - [`cli`]: `serve`, `validate`, `check`, `test`, `fmt`, `call`, `bench`, `demo-credentials`.
//! - [`server`]: binds and runs the listeners.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`http`]: the HTTP listener: forward-auth for Envoy (HTTP mode), nginx and Traefik.
//! - [`grpc`]: tonic server assembly and the ext_authz translation layer.
//! - [`reload`]: file watching and `SIGHUP` → rebuild → atomic snapshot swap.
//! - [`policytest`]: policy test files, run through the [`authz::Authorizer`].
//! - [`report`]: the access review from audit records (inventory, granted versus used).
//! - [`lint`], [`diagnostic`]: the policy authors' checks and their `file:line` reports.
//! - [`fetch`]: documents fetched at run time (JWKS URLs, OIDC discovery, token status lists)
//!   as a snapshot source.
//! - [`config`]: TOML → validated settings and a [`snapshot::spec::Spec`]; files as a source.
//! - [`authz`]: the [`authz::Authorizer`] and its caches.
//! - [`audit`]: one JSON record per decision, written off the request path.
//! - [`verdict`]: decisions, reason codes, the error → wire mapping.
//! - [`evidence`]: what one decision is evidence of (caller, credentials' facts, action,
//!   resource, request line), shared by every reuse of the decision.
//! - [`snapshot`]: everything one decision reads, swapped atomically; built from a spec and a
//!   [`snapshot::source::Source`]'s documents.
//! - [`policy`]: Cedar schema/policies/entities and evaluation.
//! - [`mapping`]: path normalisation, routes, Cedar context.
//! - [`demo`]: credentials for the embedded demo estate.
//! - [`identity`]: certificates, SPIFFE IDs, XFCC, JWTs, JWKS, certificate binding.
//! - [`loadgen`]: the load generator behind `tollgate bench`.
//! - [`telemetry`]: structured logging setup.
//! - [`metrics`]: metric names and verbs.
//! - [`signals`]: compromise signals (new access, volume spikes, denial bursts, credential
//!   expiry), judged from decisions on the audit writer's thread.
//! - [`enforce`]: what the signals enforce on the request path (a reviewed baseline as an
//!   allow-list, shed identities), when configured to.
//! - [`inventory`]: per-identity summaries of decisions, bounded and mergeable (`/identities`,
//!   `tollgate report`).
//! - [`cache`]: a bounded, generation-tagged TTL cache that knows nothing of its values.
//! - [`memo`]: the small per-thread memo in front of such a cache, keyed by exact bytes.
//! - [`request`]: [`request::CheckInput`], the protobuf-free request every front door builds.
//! - [`clock`]: the request path's clocks (the coarse wall clock for validity windows, the
//!   timestamp counter for elapsed times).
//! - [`signature_probe`]: one fixed ES256 verification, the signature floor of the benchmarks
//!   (`tollgate-floor --verify-es256`, a `signature-probe` build).

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod authz;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod diagnostic;
pub mod enforce;
pub mod evidence;
pub mod fetch;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod inventory;
pub mod lint;
pub mod loadgen;
pub mod mapping;
pub mod memo;
pub mod metrics;
pub mod policy;
pub mod policytest;
pub mod reload;
pub mod report;
pub mod request;
pub mod server;
pub mod signals;
pub mod signature_probe;
pub mod snapshot;
pub mod telemetry;
pub mod verdict;
