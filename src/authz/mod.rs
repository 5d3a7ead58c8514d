//! The decision core every front door shares: [`Authorizer`]. A front door only translates
//! (wire → [`CheckInput`], [`Verdict`] → wire); deciding, metrics, the audit record and the
//! log line happen here, once.
//!
//! The pipeline is straight-line stages,
//! `identity::verify → mapping::map → decision cache → policy::decide → Verdict`, and cannot
//! fail: every error becomes a deny with a reason code. It can be entered after identity (a
//! caller described by facts, for `tollgate test`) and after mapping (a Cedar query given
//! directly, for an AuthZEN-style API).

pub mod caches;
mod evaluate;
mod log;

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::UnixTime;

use crate::audit::AuditLog;
use crate::clock::{self, Started};
use crate::enforce::Enforcement;
use crate::evidence::{self, Actor, Evidence, RequestLine, Target};
use crate::identity::{self, Caller, IdentitySource, Refusal};
use crate::mapping::{self, Query};
use crate::metrics::DecisionMetrics;
use crate::policy::{self, Decision};
use crate::request::CheckInput;
use crate::snapshot::{Snapshot, SnapshotGuard, SnapshotHandle};
use crate::verdict::{DecisionId, Outcome, ReasonCode, Verdict};
pub use caches::{Caches, DecisionKey, Reuse};
pub use evaluate::{MAX_REPLAYED, Pep};
use log::DecisionLog;

/// What `explain` shows besides the verdict: how far the request got, and as what.
#[derive(Debug, Default)]
pub struct Trace {
    /// The verified caller, when identity succeeded.
    pub caller: Option<Caller>,
    /// The Cedar query, when mapping succeeded.
    pub query: Option<Query>,
}

/// One recorded decision, with the snapshot it was made against (its response settings shape
/// the answer on the wire).
#[derive(Debug)]
pub struct Decided {
    /// The decision.
    pub verdict: Verdict,
    /// The snapshot in force for this request.
    pub snapshot: SnapshotGuard,
    /// Time spent deciding.
    pub elapsed: Duration,
}

/// Decides requests against the current snapshot, with the caches, and records each decision
/// (metrics, audit, log).
#[derive(Debug)]
pub struct Authorizer {
    snapshots: Arc<SnapshotHandle>,
    caches: Caches,
    audit: AuditLog,
    log: DecisionLog,
    metrics: DecisionMetrics,
    /// What the compromise signals enforce (nothing unless `[signals]` says `deny`).
    enforcement: Arc<Enforcement>,
}

impl Authorizer {
    /// An authorizer for a server: live snapshots, shared caches, an audit log.
    pub fn new(snapshots: Arc<SnapshotHandle>, caches: Caches, audit: AuditLog) -> Self {
        Self {
            snapshots,
            caches,
            enforcement: audit.enforcement(),
            audit,
            log: DecisionLog::default(),
            metrics: DecisionMetrics::new(
                &ReasonCode::ALL
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>(),
            ),
        }
    }

    /// The same authorizer enforcing `enforcement` (normally the audit log's, from
    /// `[signals]`).
    pub fn with_enforcement(mut self, enforcement: Arc<Enforcement>) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// An authorizer for a one-shot tool (`check`, `test`): one snapshot, nothing cached, no
    /// audit.
    pub fn offline(snapshot: Snapshot) -> Self {
        Self::new(
            Arc::new(SnapshotHandle::new(snapshot)),
            Caches::disabled(),
            AuditLog::disabled(),
        )
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.load()
    }

    /// The live snapshots (for the reloader and `/readyz`).
    pub fn snapshots(&self) -> &Arc<SnapshotHandle> {
        &self.snapshots
    }

    /// Decides `input` now and records the decision: the entry of every front door.
    pub fn check(&self, input: &CheckInput) -> Decided {
        let started = clock::started();
        let snapshot = self.snapshots.for_request();
        let verdict = self.decide(&snapshot, input, clock::wall(), None);
        self.record(verdict, Some(input), snapshot, started)
    }

    /// [`Self::check`] for a front door that can say what decides a request before building
    /// its [`CheckInput`]: `key` writes that (see [`Caches::verdict_keyed`]), and `build` makes
    /// the input only when the verdict memo has no answer for the key. A request repeated on
    /// this thread then costs no copy of its headers and certificate. `path` is the original
    /// request's, for the record; a `build` error is the deny (never kept).
    pub fn check_keyed(
        &self,
        key: impl FnOnce(&mut Vec<u8>),
        path: &str,
        build: impl Fn() -> Result<CheckInput, (ReasonCode, String)>,
    ) -> Decided {
        let started = clock::started();
        let snapshot = self.snapshots.for_request();
        let now = clock::wall();
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let mut built = None;
        let key = |out: &mut Vec<u8>| {
            key(out);
            debug_assert!(
                out.starts_with(&caches::FRONT_DOOR_KEY),
                "a front door's memo key starts with FRONT_DOOR_KEY"
            );
        };
        let verdict =
            self.caches
                .verdict_keyed(key, snapshot.generation, now_secs, || match build() {
                    Ok(input) => {
                        let fresh = self.decide_fresh(&snapshot, &input, now, None);
                        built = Some(input);
                        fresh
                    }
                    Err((reason, message)) => (Verdict::deny(reason, message), None),
                });
        let mut verdict = if self.is_shed(&verdict, now) {
            // A remembered verdict built nothing; the deny's record wants the request.
            if built.is_none() {
                built = build().ok();
            }
            self.shed(&snapshot, verdict, built.as_ref())
        } else {
            verdict
        };
        let elapsed = self.note(&mut verdict, built.as_ref(), Some(path), &snapshot, started);
        Decided {
            verdict,
            snapshot,
            elapsed,
        }
    }

    /// Records a deny for a request a front door could not translate (`reason` says why).
    pub fn refuse(&self, reason: ReasonCode, message: String) -> Decided {
        let started = clock::started();
        let snapshot = self.snapshots.for_request();
        self.record(Verdict::deny(reason, message), None, snapshot, started)
    }

    fn record(
        &self,
        mut verdict: Verdict,
        input: Option<&CheckInput>,
        snapshot: SnapshotGuard,
        started: Started,
    ) -> Decided {
        let path = input.map(|i| i.path.as_str());
        let elapsed = self.note(&mut verdict, input, path, &snapshot, started);
        Decided {
            verdict,
            snapshot,
            elapsed,
        }
    }

    /// Records a decision made since `started` for a request to `path`: metrics, the audit
    /// record (its evidence moved out of the verdict, or made from `input` for a refusal that
    /// has none), the log line. Returns the time it took.
    fn note(
        &self,
        verdict: &mut Verdict,
        input: Option<&CheckInput>,
        path: Option<&str>,
        snapshot: &Snapshot,
        started: Started,
    ) -> Duration {
        // Moved, not cloned: the record is its last use.
        let evidence = verdict.evidence.take();
        self.note_as(
            verdict.decision_id,
            verdict,
            evidence,
            input,
            path,
            snapshot,
            started,
        )
    }

    /// Records `verdict` under the decision id `id` with `evidence` (made with the decision,
    /// and shared by its reuses; or made now, for a request refused before the pipeline ran):
    /// a remembered verdict is recorded again as it is kept, under a new id, without a copy.
    #[expect(
        clippy::too_many_arguments,
        reason = "note's arguments, with the id and evidence it takes from the verdict"
    )]
    fn note_as(
        &self,
        id: DecisionId,
        verdict: &Verdict,
        evidence: Option<Arc<Evidence>>,
        input: Option<&CheckInput>,
        path: Option<&str>,
        snapshot: &Snapshot,
        started: Started,
    ) -> Duration {
        let elapsed = started.elapsed();
        self.metrics
            .record(verdict.reason().map(ReasonCode::index), elapsed);
        if self.audit.is_enabled() {
            let evidence = evidence
                .unwrap_or_else(|| Arc::new(evidence_of(verdict, snapshot, None, None, input)));
            // A dropped record is counted by the audit log itself.
            let _ = self.audit.record(id, evidence, path, started, elapsed);
        }
        self.log.write(id, verdict, elapsed);
        elapsed
    }

    /// The whole pipeline against `snapshot` at `now`, without recording (benchmarks and
    /// `check --explain`, which passes a `trace`). Without a trace, a request whose decision
    /// inputs this thread saw before gets the verdict it got then (see [`Caches::verdict`]).
    pub fn decide(
        &self,
        snapshot: &Snapshot,
        input: &CheckInput,
        now: UnixTime,
        trace: Option<&mut Trace>,
    ) -> Verdict {
        if trace.is_some() {
            return self.decide_fresh(snapshot, input, now, trace).0;
        }
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let verdict = self
            .caches
            .verdict(input, snapshot.generation, now_secs, || {
                self.decide_fresh(snapshot, input, now, None)
            });
        if self.is_shed(&verdict, now) {
            self.shed(snapshot, verdict, Some(input))
        } else {
            verdict
        }
    }

    /// Whether `verdict`'s principal is shed for a volume spike: asked after the verdict
    /// memo, so that a verdict remembered from before a spike does not let it through.
    fn is_shed(&self, verdict: &Verdict, now: UnixTime) -> bool {
        verdict
            .principal
            .as_deref()
            .is_some_and(|principal| self.is_shed_principal(principal, now))
    }

    /// Whether `principal` is shed for a volume spike at `now`.
    fn is_shed_principal(&self, principal: &str, now: UnixTime) -> bool {
        self.enforcement
            .is_shed(principal, now.as_secs().saturating_mul(1000))
    }

    /// The deny of an identity shed for a volume spike, in place of `verdict`.
    #[cold]
    fn shed(&self, snapshot: &Snapshot, verdict: Verdict, input: Option<&CheckInput>) -> Verdict {
        let mut deny = shed_deny(verdict.principal.as_deref().unwrap_or_default());
        let actor = verdict.evidence.as_deref().and_then(|e| e.actor.clone());
        if self.audit.is_enabled() {
            deny.evidence = Some(Arc::new(evidence_of(&deny, snapshot, None, None, input)));
        }
        if let (Some(evidence), Some(actor)) = (deny.evidence.as_mut(), actor) {
            Arc::make_mut(evidence).actor = Some(actor);
        }
        deny
    }

    /// The whole pipeline, and whether (and until when) its verdict may be reused for the same
    /// decision inputs: a policy decision may, and so may a refusal that cannot change under
    /// this snapshot (no credential, a final certificate or token refusal); a request that
    /// cannot be mapped, or a refusal that time can undo, may not.
    fn decide_fresh(
        &self,
        snapshot: &Snapshot,
        input: &CheckInput,
        now: UnixTime,
        trace: Option<&mut Trace>,
    ) -> (Verdict, Option<Reuse>) {
        let certificate = snapshot.identity.source == IdentitySource::Certificate
            && !input.certificate.is_empty();
        let caller = match identity::verify_reusable(
            &snapshot.identity,
            &self.caches.identity,
            snapshot.generation,
            input,
            now,
        ) {
            Ok(caller) => caller,
            Err(Refusal { error, final_until }) => {
                // A final refusal is answered again from memory: a token's once the
                // refused-token cache already held it (a replayed forgery costs no more than
                // an allowed call from its third sighting; one sent once is copied nowhere),
                // and a certificate's from the first (a retried expired one).
                let refused_token = matches!(error, identity::IdentityError::Token(_));
                let reuse = match error {
                    // No credential at all: refused again for as long as the snapshot lasts.
                    identity::IdentityError::NoCredentials => Some(Reuse {
                        until: i64::MAX,
                        certificate: false,
                        token: false,
                        refused_token: false,
                        refused_certificate: false,
                        unauthenticated: true,
                    }),
                    _ => final_until.map(|until| Reuse {
                        until,
                        certificate: certificate && refused_token,
                        token: false,
                        refused_token,
                        refused_certificate: !refused_token,
                        unauthenticated: false,
                    }),
                };
                let mut deny = Verdict::deny((&error).into(), error.to_string());
                self.attach_evidence(snapshot, &mut deny, None, None, input);
                return (deny, reuse);
            }
        };
        let token = caller.token.is_some();
        let credentials_until = caller.valid_until;
        let (verdict, decided_until) = self.decide_as_until(snapshot, caller, input, now, trace);
        let reuse = decided_until.map(|until| Reuse {
            until: until.min(credentials_until),
            certificate,
            token,
            refused_token: false,
            refused_certificate: false,
            unauthenticated: false,
        });
        (verdict, reuse)
    }

    /// The pipeline after identity: mapping, decision cache, Cedar. `tollgate test` enters here
    /// with a caller described by facts instead of credentials.
    pub fn decide_as(
        &self,
        snapshot: &Snapshot,
        caller: Caller,
        input: &CheckInput,
        now: UnixTime,
        trace: Option<&mut Trace>,
    ) -> Verdict {
        self.decide_as_until(snapshot, caller, input, now, trace).0
    }

    /// [`Self::decide_as`], and until when a policy decision may be reused (`None` for a
    /// request that could not be mapped or decided).
    fn decide_as_until(
        &self,
        snapshot: &Snapshot,
        caller: Caller,
        input: &CheckInput,
        now: UnixTime,
        mut trace: Option<&mut Trace>,
    ) -> (Verdict, Option<i64>) {
        if let Some(trace) = trace.as_deref_mut() {
            trace.caller = Some(caller.clone());
        }
        let query = match mapping::map(&snapshot.routes, &caller, input) {
            Ok(query) => query,
            Err(e) => {
                let mut deny = with_principal(
                    Verdict::deny((&e).into(), e.to_string()),
                    caller.principal.clone(),
                );
                self.attach_evidence(snapshot, &mut deny, Some(&caller), None, input);
                return (deny, None);
            }
        };
        if let Some(trace) = trace {
            trace.query = Some(query.clone());
        }
        let (mut verdict, until) =
            self.decide_query_until(snapshot, caller.principal.clone(), &query, now);
        self.attach_evidence(snapshot, &mut verdict, Some(&caller), Some(&query), input);
        (verdict, until)
    }

    /// Gives a verdict made fresh its evidence, when decisions are recorded: made once here,
    /// it is shared by every reuse of the verdict.
    fn attach_evidence(
        &self,
        snapshot: &Snapshot,
        verdict: &mut Verdict,
        caller: Option<&Caller>,
        query: Option<&Query>,
        input: &CheckInput,
    ) {
        if self.audit.is_enabled() {
            let evidence = evidence_of(verdict, snapshot, caller, query, Some(input));
            verdict.evidence = Some(Arc::new(evidence));
        }
    }

    /// The pipeline after mapping: decision cache and Cedar, for a Cedar query given directly
    /// (principal, action, resource, context), as an AuthZEN-style API supplies it.
    pub fn decide_query(
        &self,
        snapshot: &Snapshot,
        principal: String,
        query: &Query,
        now: UnixTime,
    ) -> Verdict {
        self.decide_query_until(snapshot, principal, query, now).0
    }

    fn decide_query_until(
        &self,
        snapshot: &Snapshot,
        principal: String,
        query: &Query,
        now: UnixTime,
    ) -> (Verdict, Option<i64>) {
        if !self
            .enforcement
            .reviewed(&principal, &query.action, &query.resource.type_name)
        {
            let message = format!(
                "`{}` on `{}` is not in the reviewed baseline of `{principal}` \
                 (signals.new_access = \"deny\")",
                query.action, query.resource.type_name
            );
            let deny = Verdict::deny(ReasonCode::OutsideBaseline, message);
            // The baseline holds for the process's life: as reusable as a policy decision.
            return (with_principal(deny, principal), Some(i64::MAX));
        }
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let decided = self.caches.decision(
            DecisionKey::Query(query),
            snapshot.generation,
            now_secs,
            || policy::decide(&snapshot.policies, query),
        );
        match decided {
            Ok((decision, lookup, until)) => {
                self.caches.decision_metrics.used(lookup);
                let resource = (&*query.resource.type_name, query.resource.id.as_str());
                (
                    verdict(principal, &query.action, resource, &decision),
                    Some(until),
                )
            }
            Err(e) => {
                let deny = Verdict::deny((&e).into(), e.to_string());
                (with_principal(deny, principal), None)
            }
        }
    }
}

/// The verdict for Cedar's `decision` on `action` over `resource` (type and id).
fn verdict(
    principal: String,
    action: &str,
    resource: (&str, &str),
    decision: &Decision,
) -> Verdict {
    if decision.allowed {
        return Verdict::allow(
            principal,
            decision.determining.clone(),
            decision.errors.clone(),
        );
    }
    let message = match &*decision.determining {
        [] => format!(
            "no policy permits `{action}` on {}::\"{}\"",
            resource.0, resource.1
        ),
        ids => format!("forbidden by policy `{}`", ids.join("`, `")),
    };
    let mut verdict = with_principal(Verdict::deny(ReasonCode::PolicyDenied, message), principal);
    verdict.determining = decision.determining.clone();
    verdict.errors = decision.errors.clone();
    verdict
}

/// The deny of `principal`, shed for the rest of the window for a volume spike.
fn shed_deny(principal: &str) -> Verdict {
    let message = format!(
        "`{principal}` is shed for the rest of this 10 s window: it called far more than usual \
         (signals.volume_spike = \"deny\")"
    );
    with_principal(
        Verdict::deny(ReasonCode::IdentityShed, message),
        principal.to_owned(),
    )
}

/// The evidence of `verdict`, as far as the pipeline got.
fn evidence_of(
    verdict: &Verdict,
    snapshot: &Snapshot,
    caller: Option<&Caller>,
    query: Option<&Query>,
    input: Option<&CheckInput>,
) -> Evidence {
    let (reason, status, message) = match &verdict.outcome {
        Outcome::Allow => (evidence::ALLOWED, 200, String::new()),
        Outcome::Deny(d) => (
            d.reason.as_str(),
            d.reason
                .http_status(snapshot.response.internal_error_status),
            d.message.clone(),
        ),
    };
    Evidence {
        reason,
        status,
        message,
        principal: verdict.principal.as_deref().map(str::to_owned),
        determining: verdict.determining.to_vec(),
        errors: verdict.errors.to_vec(),
        actor: caller.map(|c| Arc::new(Actor::new(c))),
        target: query.map(Target::new),
        request: input
            .map(|i| RequestLine::new(i, query.map(|q| q.context.request.path.as_str())))
            .unwrap_or_default(),
        snapshot: snapshot.version.clone(),
    }
}

fn with_principal(mut verdict: Verdict, principal: String) -> Verdict {
    verdict.principal = Some(principal.into());
    verdict
}
