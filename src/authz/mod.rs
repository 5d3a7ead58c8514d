//! The decision pipeline as straight-line stages:
//! `identity::verify → mapping::map → decision cache → policy::decide → Verdict`.
//! It cannot fail: every error becomes a deny with a reason code.

pub mod input;

use std::sync::Arc;

use rustls_pki_types::UnixTime;

use crate::cache::Caches;
use crate::identity::{self, Caller};
use crate::mapping::{self, Query};
use crate::policy::{self, Decision};
use crate::snapshot::Snapshot;
use crate::verdict::{ReasonCode, Verdict};
use input::CheckInput;

/// What `explain` shows besides the verdict: how far the request got, and as what.
#[derive(Debug, Default)]
pub struct Trace {
    /// The verified caller, when identity succeeded.
    pub caller: Option<Caller>,
    /// The Cedar query, when mapping succeeded.
    pub query: Option<Query>,
}

/// Decides one request against one snapshot.
pub fn check(snapshot: &Snapshot, caches: &Caches, input: &CheckInput, now: UnixTime) -> Verdict {
    run(snapshot, caches, input, now, None)
}

/// [`check`], also returning the intermediate stages (for `check --explain`).
pub fn explain(
    snapshot: &Snapshot,
    caches: &Caches,
    input: &CheckInput,
    now: UnixTime,
) -> (Verdict, Trace) {
    let mut trace = Trace::default();
    let verdict = run(snapshot, caches, input, now, Some(&mut trace));
    (verdict, trace)
}

fn run(
    snapshot: &Snapshot,
    caches: &Caches,
    input: &CheckInput,
    now: UnixTime,
    mut trace: Option<&mut Trace>,
) -> Verdict {
    let generation = snapshot.generation;
    let caller = match identity::verify(&snapshot.identity, caches, generation, input, now) {
        Ok(caller) => caller,
        Err(e) => return Verdict::deny((&e).into(), e.to_string()),
    };
    if let Some(trace) = trace.as_deref_mut() {
        trace.caller = Some(caller.clone());
    }
    decide_for(snapshot, caches, caller, input, now, trace)
}

/// The pipeline after identity: mapping, decision cache, Cedar. `tollgate test` enters here
/// with a caller described by facts instead of credentials.
pub fn decide_for(
    snapshot: &Snapshot,
    caches: &Caches,
    caller: Caller,
    input: &CheckInput,
    now: UnixTime,
    trace: Option<&mut Trace>,
) -> Verdict {
    let generation = snapshot.generation;
    let query = match mapping::map(&snapshot.routes, &caller, input) {
        Ok(query) => query,
        Err(e) => {
            return with_principal(Verdict::deny((&e).into(), e.to_string()), caller.principal);
        }
    };
    if let Some(trace) = trace {
        trace.query = Some(query.clone());
    }
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let key = caches.query_digest(&query);
    let decision = match caches.decisions.get(&key, generation, now_secs) {
        Some(hit) => hit,
        None => match policy::decide(&snapshot.policies, &query) {
            Ok(decision) => {
                let decision = Arc::new(decision);
                caches
                    .decisions
                    .insert(key, decision.clone(), generation, now_secs, i64::MAX);
                decision
            }
            Err(e) => {
                return with_principal(Verdict::deny((&e).into(), e.to_string()), caller.principal);
            }
        },
    };
    verdict(caller.principal, &query, &decision)
}

fn verdict(principal: String, query: &Query, decision: &Decision) -> Verdict {
    if decision.allowed {
        return Verdict::allow(
            principal,
            decision.determining.clone(),
            decision.errors.clone(),
        );
    }
    let message = match decision.determining.as_slice() {
        [] => format!(
            "no policy permits `{}` on {}::\"{}\"",
            query.action, query.resource.type_name, query.resource.id
        ),
        ids => format!("forbidden by policy `{}`", ids.join("`, `")),
    };
    let mut verdict = with_principal(Verdict::deny(ReasonCode::PolicyDenied, message), principal);
    verdict.determining = decision.determining.clone();
    verdict.errors = decision.errors.clone();
    verdict
}

fn with_principal(mut verdict: Verdict, principal: String) -> Verdict {
    verdict.principal = Some(principal);
    verdict
}
