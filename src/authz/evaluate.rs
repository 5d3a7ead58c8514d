//! The AuthZEN entry to the decision core. A policy enforcement point (PEP) calls the API; it
//! is authenticated by the same identity layer as any request, then each evaluation it asks
//! for is decided twice: may this PEP ask about this resource (`authzen.pep_action`, a routed
//! Cedar query with the PEP's own context), and the evaluation itself. Both go through the
//! decision cache; each evaluation is recorded like any decision (metrics, audit, log), with
//! the PEP as actor and the evaluated subject as the user it asked for.

use std::cell::RefCell;
use std::sync::Arc;

use hyper::body::Bytes;
use rustls_pki_types::UnixTime;

use super::{
    Authorizer, Decided, DecisionKey, caches, evidence_of, shed_deny, verdict, with_principal,
};
use crate::clock::{self, Started};
use crate::evidence::{Actor, RequestLine, Target};
use crate::identity::{self, Caller, IdentitySource, Refusal};
use crate::mapping::authzen::{AuthZenMapping, EntityRef, Evaluation};
use crate::mapping::{ContextFacts, Query, Resource};
use crate::memo::Memo;
use crate::policy;
use crate::request::CheckInput;
use crate::snapshot::{Snapshot, SnapshotGuard};
use crate::verdict::{DecisionId, Outcome, ReasonCode, Verdict};

/// A PEP as authenticating it found it, kept on the thread for as long as its credentials may
/// be reused: a PEP calls again and again with the same certificate and token, and its
/// authentication, context and request line are most of a single evaluation's cost.
#[derive(Debug)]
struct Authenticated {
    caller: Caller,
    /// Whether a certificate was verified (not a workload named by a JWT-SVID alone): the
    /// identity cache a remembered PEP counts a hit of.
    certificate: bool,
    /// The "may this PEP ask about it" query: the PEP's principal, `authzen.pep_action` and
    /// its own context; the resource is each evaluation's.
    gate: Query,
    /// [`caches::encoding`] of the gate's principal, action and context.
    gate_fixed: Vec<u8>,
    /// The call's request line, for the evaluations' records.
    request: RequestLine,
    /// The call's path, for the records.
    path: String,
}

thread_local! {
    /// PEPs this thread authenticated, by what authenticated them (see
    /// [`Authorizer::authzen_caller_keyed`]).
    static PEPS: RefCell<Memo<Arc<Authenticated>, 16>> = const { RefCell::new(Memo::new()) };
    /// Answers this thread gave, by the PEP that asked and what it asked (see
    /// [`Authorizer::authzen_answer`]).
    static ANSWERS: RefCell<Memo<Arc<Replay>>> = const { RefCell::new(Memo::new()) };
}

/// Most evaluations a remembered answer holds: a PEP repeats single evaluations and small
/// batches; a larger batch is decided again (its items from the decision memo), so a slot
/// never holds more than this many verdicts.
pub const MAX_REPLAYED: usize = 16;

/// The most text a remembered answer holds (its body and its verdicts'): a slot holds about
/// what its key may.
const MAX_KEPT_ANSWER: usize = crate::memo::MAX_KEPT;

/// A call's answer as the PEP got it, and its evaluations' verdicts (evidence and all), to be
/// recorded again with new decision ids when the same PEP asks the same again.
#[derive(Debug)]
struct Replay {
    /// The PEP that asked. Held, so that the address the memo key carries stays this PEP's for
    /// as long as the entry lives.
    pep: Arc<Authenticated>,
    /// The answer's body, shared by every reply (a clone counts a reference).
    body: Bytes,
    /// Each evaluation's verdict and how many decision-cache lookups it stands for.
    verdicts: Vec<(Verdict, u8)>,
    /// A single evaluation: its decision id goes back to the PEP.
    single: bool,
}

/// What a call's evaluations gathered for [`Replay`] while they were decided.
#[derive(Debug)]
struct Gathered {
    verdicts: Vec<(Verdict, u8)>,
    /// About how many bytes the verdicts hold in text (messages, ids, the evidence's).
    bytes: usize,
    /// The earliest time one of its decisions (or the PEP's credentials) expires; `None` once
    /// something was decided that may not be reused.
    until: Option<i64>,
}

impl Gathered {
    /// Adds an evaluation's verdict, made from `lookups` decision-cache lookups good until
    /// `until` (`None`: not reusable). Past [`MAX_REPLAYED`] the call is not kept.
    fn add(&mut self, verdict: &Verdict, lookups: u8, until: Option<i64>) {
        self.until = match (self.until, until) {
            (Some(kept), Some(until)) if self.verdicts.len() < MAX_REPLAYED => {
                Some(kept.min(until))
            }
            _ => None,
        };
        if self.until.is_some() {
            self.bytes += text_bytes(verdict);
            self.verdicts.push((verdict.clone(), lookups));
        } else {
            self.verdicts = Vec::new();
        }
    }
}

/// About how many bytes of text `verdict` holds: its messages (which quote the resource),
/// principal, policy ids and the evidence's own copies. What bounds a remembered answer.
fn text_bytes(verdict: &Verdict) -> usize {
    let message = match &verdict.outcome {
        Outcome::Deny(denial) => denial.message.len(),
        Outcome::Allow => 0,
    };
    let evidence = verdict.evidence.as_deref().map_or(0, |e| {
        e.message.len() + e.target.as_ref().map_or(0, |t| t.resource_id.len())
    });
    let strings = |v: &[String]| v.iter().map(String::len).sum::<usize>();
    message
        + evidence
        + verdict.principal.as_ref().map_or(0, |p| p.len())
        + strings(&verdict.determining)
        + strings(&verdict.errors)
}

/// What one evaluation's decisions allow of its reuse: the lookups made and until when.
#[derive(Debug, Clone, Copy)]
struct Reusable {
    lookups: u8,
    until: Option<i64>,
}

impl Reusable {
    fn looked_up(&mut self, until: i64) {
        self.lookups += 1;
        self.until = self.until.map(|kept| kept.min(until));
    }
}

/// An authenticated PEP and the snapshot all of its evaluations are decided against.
#[derive(Debug)]
pub struct Pep {
    snapshot: SnapshotGuard,
    authenticated: Arc<Authenticated>,
    now: UnixTime,
    /// The gate's resource, replaced per evaluation.
    resource: Resource,
    /// The PEP as the actor of the last subject's evaluations (a batch usually asks about one).
    actor: Option<(EntityRef, Arc<Actor>)>,
    /// When the last evaluation (or the authentication) ended: the next one's time counts from
    /// there, one clock read per evaluation.
    last: Started,
    /// The evaluations of a call that may be remembered ([`Authorizer::authzen_answer`]).
    gathered: Option<Gathered>,
}

impl Pep {
    /// The PEP's Cedar principal.
    pub fn principal(&self) -> &str {
        &self.authenticated.caller.principal
    }

    /// The mapping in force for this call. Read through the snapshot this call holds, not
    /// a reference count of its own: one both workers write would move between their cores
    /// on every call.
    pub fn mapping(&self) -> &AuthZenMapping {
        static NONE: std::sync::LazyLock<AuthZenMapping> =
            std::sync::LazyLock::new(AuthZenMapping::default);
        // A `Pep` is made only from a snapshot with `[authzen]`.
        self.snapshot.authzen.as_deref().unwrap_or(&NONE)
    }

    /// This call's answer is not to be remembered (see [`Authorizer::authzen_answer`]).
    pub fn not_reusable(&mut self) {
        self.gathered = None;
    }

    /// The PEP as the actor asking about `subject`.
    fn actor(&mut self, subject: &EntityRef) -> Arc<Actor> {
        if let Some((last, actor)) = &self.actor
            && last == subject
        {
            return actor.clone();
        }
        let mut actor = Actor::new(&self.authenticated.caller);
        actor.user = Some(subject.cedar());
        let actor = Arc::new(actor);
        self.actor = Some((subject.clone(), actor.clone()));
        actor
    }
}

impl Authorizer {
    /// Authenticates the caller of the AuthZEN API from `input` (its certificate and token),
    /// or records and returns the refusal. `None` when the snapshot has no `[authzen]`.
    pub fn authzen_caller(&self, input: &CheckInput) -> Option<Result<Pep, Decided>> {
        let started = clock::started();
        let snapshot = self.snapshots.for_request();
        let mapping = snapshot.authzen.as_deref()?;
        let now = clock::wall();
        let authenticated = match self.authenticate(&snapshot, mapping, input, now) {
            Ok(authenticated) => Arc::new(authenticated),
            Err(deny) => return Some(Err(self.record(*deny, Some(input), snapshot, started))),
        };
        Some(
            self.pep(snapshot, authenticated, now, started)
                .map_err(|d| *d),
        )
    }

    /// [`Self::authzen_caller`] for a front door that can say what authenticates the PEP
    /// before building its [`CheckInput`]: `key` writes it (it must determine every part of
    /// the input that identity, the gate's context and the request line read), and `build`
    /// makes the input only when this thread has not authenticated the same key under this
    /// snapshot, within its credentials' lifetime. A `build` error is the refusal.
    pub fn authzen_caller_keyed(
        &self,
        key: impl FnOnce(&mut Vec<u8>),
        build: impl FnOnce() -> Result<CheckInput, (ReasonCode, String)>,
    ) -> Option<Result<Pep, Decided>> {
        let started = clock::started();
        let snapshot = self.snapshots.for_request();
        let mapping = snapshot.authzen.as_deref()?;
        let now = clock::wall();
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let remembered = self
            .caches
            .remembered(&PEPS, key, snapshot.generation, now_secs, || {
                let input = build().map_err(|(reason, message)| {
                    Box::new((Verdict::deny(reason, message), None))
                })?;
                match self.authenticate(&snapshot, mapping, &input, now) {
                    Ok(authenticated) => {
                        let until = authenticated.caller.valid_until;
                        Ok((Arc::new(authenticated), until))
                    }
                    Err(deny) => Err(Box::new((*deny, Some(input)))),
                }
            });
        let authenticated = match remembered {
            Ok((authenticated, hit)) => {
                if hit {
                    let token = authenticated.caller.token.is_some();
                    self.caches
                        .identity
                        .reused(authenticated.certificate, token, false);
                }
                authenticated
            }
            Err(refused) => {
                let (deny, input) = *refused;
                return Some(Err(self.record(deny, input.as_ref(), snapshot, started)));
            }
        };
        Some(
            self.pep(snapshot, authenticated, now, started)
                .map_err(|d| *d),
        )
    }

    /// The PEP `authenticated` found, unless it is shed for a volume spike (checked on every
    /// call: a remembered PEP is shed too).
    fn pep(
        &self,
        snapshot: SnapshotGuard,
        authenticated: Arc<Authenticated>,
        now: UnixTime,
        started: Started,
    ) -> Result<Pep, Box<Decided>> {
        let principal = &authenticated.caller.principal;
        if self.is_shed_principal(principal, now) {
            let mut deny = shed_deny(principal);
            if self.audit.is_enabled() {
                let mut evidence =
                    evidence_of(&deny, &snapshot, Some(&authenticated.caller), None, None);
                evidence.request = authenticated.request.clone();
                deny.evidence = Some(Arc::new(evidence));
            }
            let path = Some(authenticated.path.as_str());
            let elapsed = self.note(&mut deny, None, path, &snapshot, started);
            return Err(Box::new(Decided {
                verdict: deny,
                snapshot,
                elapsed,
            }));
        }
        Ok(Pep {
            snapshot,
            now,
            resource: Resource {
                // Replaced by each evaluation's resource; until then the gate's empty type,
                // shared rather than allocated on every call.
                type_name: authenticated.gate.resource.type_name.clone(),
                id: String::new(),
                attrs: Vec::new(),
            },
            authenticated,
            actor: None,
            last: clock::started(),
            gathered: None,
        })
    }

    /// The PEP `input` authenticates as, with its gate's fixed part; or the deny (its
    /// evidence attached).
    fn authenticate(
        &self,
        snapshot: &Snapshot,
        mapping: &AuthZenMapping,
        input: &CheckInput,
        now: UnixTime,
    ) -> Result<Authenticated, Box<Verdict>> {
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
                self.attach_evidence(snapshot, &mut deny, None, None, input);
                return Err(Box::new(deny));
            }
        };
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
        Ok(Authenticated {
            certificate: snapshot.identity.source == IdentitySource::Certificate
                && !input.certificate.is_empty(),
            caller,
            gate,
            gate_fixed,
            request: RequestLine::new(input, None),
            path: input.path.clone(),
        })
    }

    /// Decides `evaluation` for `pep` and records it: `pep_forbidden` when the PEP may not ask
    /// about the resource, else Cedar's answer (`malformed_request` when the evaluation does
    /// not fit the schema).
    pub fn evaluate(&self, pep: &mut Pep, evaluation: &Evaluation) -> Verdict {
        let started = pep.last;
        let now_secs = i64::try_from(pep.now.as_secs()).unwrap_or(i64::MAX);
        // The baseline holds for the process's life; the decisions say how long they do.
        let mut reusable = Reusable {
            lookups: 0,
            until: Some(i64::MAX),
        };
        let mut verdict = match self.refused_to_ask(pep, evaluation, now_secs, &mut reusable) {
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
                            &pep.mapping().action_type,
                            evaluation,
                        )
                    },
                );
                let principal = pep.authenticated.caller.principal.clone();
                match decided {
                    Ok((decision, lookup, until)) => {
                        self.caches.decision_metrics.used(lookup);
                        reusable.looked_up(until);
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
                    Err(e) => {
                        reusable.until = None;
                        with_principal(
                            Verdict::deny(ReasonCode::MalformedRequest, e.to_string()),
                            principal,
                        )
                    }
                }
            }
        };
        if self.audit.is_enabled() {
            let actor = pep.actor(&evaluation.subject);
            let snapshot = &*pep.snapshot;
            let mut evidence = evidence_of(&verdict, snapshot, None, None, None);
            evidence.actor = Some(actor);
            evidence.request = pep.authenticated.request.clone();
            evidence.target = Some(Target {
                action: evaluation.action.clone(),
                resource_type: evaluation.resource.type_name.clone(),
                resource_id: evaluation.resource.id.to_string(),
            });
            verdict.evidence = Some(Arc::new(evidence));
        }
        if let Some(gathered) = &mut pep.gathered {
            gathered.add(&verdict, reusable.lookups, reusable.until);
        }
        let path = Some(pep.authenticated.path.as_str());
        let elapsed = self.note(&mut verdict, None, path, &pep.snapshot, started);
        pep.last = started + elapsed;
        verdict
    }

    /// The answer to `pep`'s call asking `call` (the parts that decide the answer besides the
    /// PEP: the endpoint and the whole body): the one this thread gave the same PEP for the same call
    /// under this snapshot, while every decision in it and the PEP's credentials are still
    /// good, with its evaluations recorded again under new decision ids; else `answer`'s,
    /// kept when each of its evaluations may be reused and there are at most
    /// [`MAX_REPLAYED`]. `answer` must decide every evaluation through [`Self::evaluate`],
    /// and must not reuse an answer that was cut short (a batch past its time budget); it says
    /// so with [`Pep::not_reusable`]. The decision id is the single evaluation's.
    pub fn authzen_answer<E>(
        &self,
        pep: &mut Pep,
        call: &[&[u8]],
        answer: impl FnOnce(&mut Pep) -> Result<(String, Option<DecisionId>), E>,
    ) -> Result<(Bytes, Option<DecisionId>), E> {
        let generation = pep.snapshot.generation;
        let now = i64::try_from(pep.now.as_secs()).unwrap_or(i64::MAX);
        let asker = Arc::clone(&pep.authenticated);
        let key = |out: &mut Vec<u8>| {
            caches::key_field(out, &(Arc::as_ptr(&asker) as usize).to_le_bytes());
            for part in call {
                caches::key_field(out, part);
            }
        };
        let remembered = self.caches.remembered(&ANSWERS, key, generation, now, || {
            pep.gathered = Some(Gathered {
                verdicts: Vec::new(),
                bytes: 0,
                until: Some(asker.caller.valid_until),
            });
            let answered = answer(pep);
            let gathered = pep.gathered.take();
            let (body, decision_id) = answered.map_err(Err)?;
            // Exactly its size: the memo's bound counts the answer's length.
            let body = Bytes::from(body.into_bytes().into_boxed_slice());
            let replay = |gathered: Gathered, until| {
                let replay = Replay {
                    pep: Arc::clone(&asker),
                    body: body.clone(),
                    verdicts: gathered.verdicts,
                    single: decision_id.is_some(),
                };
                Ok((Arc::new(replay), until))
            };
            match gathered {
                // A slot holds at most about what its key may: a small body can still quote
                // a long resource id in every item's message and evidence.
                Some(
                    gathered @ Gathered {
                        until: Some(until), ..
                    },
                ) if gathered.bytes + body.len() <= MAX_KEPT_ANSWER => replay(gathered, until),
                // Not to be reused: answered all the same.
                _ => Err(Ok((body, decision_id))),
            }
        });
        let replay = match remembered {
            Ok((replay, false)) => {
                let single = replay.single.then(|| replay.verdicts.first());
                let decision_id = single.flatten().map(|(v, _)| v.decision_id);
                return Ok((replay.body.clone(), decision_id));
            }
            Ok((replay, true)) => {
                // The entry holds its PEP, so no other PEP can be at the address in its key.
                debug_assert!(Arc::ptr_eq(&replay.pep, &pep.authenticated));
                replay
            }
            Err(Ok(answered)) => return Ok(answered),
            Err(Err(error)) => return Err(error),
        };
        let mut decision_id = None;
        for (kept, lookups) in &replay.verdicts {
            let started = pep.last;
            for _ in 0..*lookups {
                self.caches.decision_metrics.used(crate::cache::Lookup::HIT);
            }
            let id = DecisionId::next();
            decision_id.get_or_insert(id);
            let path = Some(pep.authenticated.path.as_str());
            let evidence = kept.evidence.clone();
            let elapsed = self.note_as(id, kept, evidence, None, path, &pep.snapshot, started);
            pep.last = started + elapsed;
        }
        Ok((replay.body.clone(), decision_id.filter(|_| replay.single)))
    }

    /// The deny when `pep` may not ask about `evaluation`'s resource: the reviewed baseline
    /// (when enforced) and the `authzen.pep_action` policy, through the decision cache.
    fn refused_to_ask(
        &self,
        pep: &mut Pep,
        evaluation: &Evaluation,
        now: i64,
        reusable: &mut Reusable,
    ) -> Option<Verdict> {
        let resource = &evaluation.resource;
        let gate_resource = &mut pep.resource;
        if *gate_resource.type_name != *resource.type_name {
            gate_resource.type_name = resource.type_name.clone();
        }
        gate_resource.id.clear();
        gate_resource.id.push_str(&resource.id);
        let authenticated = &*pep.authenticated;
        let principal = &authenticated.caller.principal;
        let action = &authenticated.gate.action;
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
            .reviewed(principal, action, &resource.type_name)
        {
            return refuse(
                ReasonCode::OutsideBaseline,
                "outside its reviewed baseline (signals.new_access = \"deny\")".into(),
            );
        }
        let snapshot = &*pep.snapshot;
        let key = DecisionKey::Gate {
            fixed: &authenticated.gate_fixed,
            resource: &pep.resource,
        };
        match self.caches.decision(key, snapshot.generation, now, || {
            // The whole query only on a miss: the PEP's part is shared, the resource is this one.
            let gate = Query {
                resource: pep.resource.clone(),
                ..authenticated.gate.clone()
            };
            policy::decide(&snapshot.policies, &gate)
        }) {
            Ok((decision, lookup, until)) => {
                self.caches.decision_metrics.used(lookup);
                reusable.looked_up(until);
                if decision.allowed {
                    None
                } else {
                    refuse(
                        ReasonCode::PepForbidden,
                        format!("no policy permits `{action}` on it"),
                    )
                }
            }
            Err(e) => {
                reusable.until = None;
                refuse(ReasonCode::InternalError, e.to_string())
            }
        }
    }
}
