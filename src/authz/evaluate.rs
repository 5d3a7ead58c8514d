//! The AuthZEN entry to the decision core. A policy enforcement point (PEP) calls the API; it
//! is authenticated by the same identity layer as any request, then each evaluation it asks
//! for is decided twice: may this PEP ask about this resource (`authzen.pep_action`, a routed
//! Cedar query with the PEP's own context), and the evaluation itself. Both go through the
//! decision cache; each evaluation is recorded like any decision (metrics, audit, log), with
//! the PEP as actor and the evaluated subject as the user it asked for.

use std::sync::Arc;
use std::time::Instant;

use rustls_pki_types::UnixTime;

use super::{Authorizer, Decided, DecisionKey, caches, evidence_of, verdict, with_principal};
use crate::evidence::{Actor, RequestLine, Target};
use crate::identity::{self, Caller, Refusal};
use crate::mapping::authzen::{AuthZenMapping, EntityRef, Evaluation};
use crate::mapping::{ContextFacts, Query, Resource};
use crate::policy;
use crate::request::CheckInput;
use crate::snapshot::SnapshotGuard;
use crate::verdict::{ReasonCode, Verdict};

/// An authenticated PEP and the snapshot all of its evaluations are decided against.
#[derive(Debug)]
pub struct Pep<'a> {
    snapshot: SnapshotGuard,
    mapping: Arc<AuthZenMapping>,
    caller: Caller,
    input: &'a CheckInput,
    now: UnixTime,
    /// The "may this PEP ask about it" query, its resource replaced per evaluation (the PEP's
    /// context is built once per call).
    gate: Query,
    /// [`caches::encoding`] of the gate's principal, action and context.
    gate_fixed: Vec<u8>,
    /// The call's request line, for the evaluations' records.
    request: RequestLine,
    /// The PEP as the actor of the last subject's evaluations (a batch usually asks about one).
    actor: Option<(EntityRef, Arc<Actor>)>,
    /// When the last evaluation (or the authentication) ended: the next one's time counts from
    /// there, one clock read per evaluation.
    last: Instant,
}

impl Pep<'_> {
    /// The PEP's Cedar principal.
    pub fn principal(&self) -> &str {
        &self.caller.principal
    }

    /// The mapping in force for this call.
    pub fn mapping(&self) -> &AuthZenMapping {
        &self.mapping
    }

    /// The PEP as the actor asking about `subject`.
    fn actor(&mut self, subject: &EntityRef) -> Arc<Actor> {
        if let Some((last, actor)) = &self.actor
            && last == subject
        {
            return actor.clone();
        }
        let mut actor = Actor::new(&self.caller);
        actor.user = Some(subject.cedar());
        let actor = Arc::new(actor);
        self.actor = Some((subject.clone(), actor.clone()));
        actor
    }
}

impl Authorizer {
    /// Authenticates the caller of the AuthZEN API from `input` (its certificate and token),
    /// or records and returns the refusal. `None` when the snapshot has no `[authzen]`.
    pub fn authzen_caller<'a>(&self, input: &'a CheckInput) -> Option<Result<Pep<'a>, Decided>> {
        let started = Instant::now();
        let snapshot = self.snapshots.for_request();
        let mapping = snapshot.authzen.clone()?;
        let now = UnixTime::now();
        let caller = match identity::verify_reusable(
            &snapshot.identity,
            &self.caches.identity,
            snapshot.generation,
            input,
            now,
        ) {
            Ok(caller) => caller,
            Err(Refusal { error, .. }) => {
                let mut deny = Verdict::deny((&error).into(), error.to_string());
                self.attach_evidence(&snapshot, &mut deny, None, None, input);
                return Some(Err(self.record(deny, Some(input), snapshot, started)));
            }
        };
        if self
            .enforcement
            .is_shed(&caller.principal, now.as_secs().saturating_mul(1000))
        {
            let principal = caller.principal.clone();
            let message = format!(
                "`{principal}` is shed for the rest of this 10 s window: it called far more than \
                 usual (signals.volume_spike = \"deny\")"
            );
            let mut deny =
                with_principal(Verdict::deny(ReasonCode::IdentityShed, message), principal);
            self.attach_evidence(&snapshot, &mut deny, Some(&caller), None, input);
            return Some(Err(self.record(deny, Some(input), snapshot, started)));
        }
        let gate = Query {
            principal: caller.principal.clone(),
            action: mapping.pep_action.clone(),
            resource: Resource {
                type_name: Arc::from(""),
                id: String::new(),
                attrs: Vec::new(),
            },
            context: ContextFacts::new(&caller, input, input.path.clone()),
        };
        let gate_fixed = caches::encoding(&(&gate.principal, &gate.action, &gate.context));
        Some(Ok(Pep {
            snapshot,
            mapping,
            caller,
            input,
            now,
            gate,
            gate_fixed,
            request: RequestLine::new(input, None),
            actor: None,
            last: Instant::now(),
        }))
    }

    /// Decides `evaluation` for `pep` and records it: `pep_forbidden` when the PEP may not ask
    /// about the resource, else Cedar's answer (`malformed_request` when the evaluation does
    /// not fit the schema).
    pub fn evaluate(&self, pep: &mut Pep<'_>, evaluation: &Evaluation) -> Verdict {
        let started = pep.last;
        let now_secs = i64::try_from(pep.now.as_secs()).unwrap_or(i64::MAX);
        let mut verdict = match self.refused_to_ask(pep, evaluation, now_secs) {
            Some(deny) => deny,
            None => {
                let snapshot = &*pep.snapshot;
                let decided = self.caches.decision(
                    DecisionKey::Evaluation(evaluation),
                    snapshot.generation,
                    now_secs,
                    || {
                        policy::decide_evaluation(
                            &snapshot.policies,
                            &pep.mapping.action_type,
                            evaluation,
                        )
                    },
                );
                let principal = pep.caller.principal.clone();
                match decided {
                    Ok((decision, lookup, _)) => {
                        self.caches.decision_metrics.used(lookup);
                        let resource = &evaluation.resource;
                        verdict(
                            principal,
                            &evaluation.action,
                            (&resource.type_name, &resource.id),
                            &decision,
                        )
                    }
                    // The PEP asked something the schema does not allow: its request, not an
                    // internal failure.
                    Err(e) => with_principal(
                        Verdict::deny(ReasonCode::MalformedRequest, e.to_string()),
                        principal,
                    ),
                }
            }
        };
        if self.audit.is_enabled() {
            let actor = pep.actor(&evaluation.subject);
            let snapshot = &*pep.snapshot;
            let mut evidence = evidence_of(&verdict, snapshot, None, None, None);
            evidence.actor = Some(actor);
            evidence.request = pep.request.clone();
            evidence.target = Some(Target {
                action: evaluation.action.clone(),
                resource_type: evaluation.resource.type_name.clone(),
                resource_id: evaluation.resource.id.to_string(),
            });
            verdict.evidence = Some(Arc::new(evidence));
        }
        let path = Some(pep.input.path.as_str());
        let elapsed = self.note(&mut verdict, Some(pep.input), path, &pep.snapshot, started);
        pep.last = started + elapsed;
        verdict
    }

    /// The deny when `pep` may not ask about `evaluation`'s resource: the reviewed baseline
    /// (when enforced) and the `authzen.pep_action` policy, through the decision cache.
    fn refused_to_ask(
        &self,
        pep: &mut Pep<'_>,
        evaluation: &Evaluation,
        now: i64,
    ) -> Option<Verdict> {
        let resource = &evaluation.resource;
        let gate = &mut pep.gate;
        if *gate.resource.type_name != *resource.type_name {
            gate.resource.type_name = resource.type_name.clone();
        }
        gate.resource.id.clear();
        gate.resource.id.push_str(&resource.id);
        let principal = &pep.caller.principal;
        let refuse = |reason: ReasonCode, why: String| {
            let message = format!(
                "the PEP `{principal}` may not ask about {}: {why}",
                resource.cedar()
            );
            Some(with_principal(
                Verdict::deny(reason, message),
                principal.clone(),
            ))
        };
        if !self
            .enforcement
            .reviewed(principal, &gate.action, &resource.type_name)
        {
            return refuse(
                ReasonCode::OutsideBaseline,
                "outside its reviewed baseline (signals.new_access = \"deny\")".into(),
            );
        }
        let snapshot = &*pep.snapshot;
        let gate = &pep.gate;
        let key = DecisionKey::Gate {
            fixed: &pep.gate_fixed,
            resource: &gate.resource,
        };
        match self.caches.decision(key, snapshot.generation, now, || {
            policy::decide(&snapshot.policies, gate)
        }) {
            Ok((decision, lookup, _)) => {
                self.caches.decision_metrics.used(lookup);
                if decision.allowed {
                    None
                } else {
                    refuse(
                        ReasonCode::PepForbidden,
                        format!("no policy permits `{}` on it", gate.action),
                    )
                }
            }
            Err(e) => refuse(ReasonCode::InternalError, e.to_string()),
        }
    }
}
