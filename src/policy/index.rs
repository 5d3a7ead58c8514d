//! Candidate policies per (action, principal), so evaluation cost grows with the policies that
//! can apply to a request rather than with the whole estate.
//!
//! A policy whose scope says `action == A` cannot apply to another action, and one that says
//! `principal == P` cannot apply to another principal; Cedar checks the scope before the
//! conditions, so such a policy can neither determine a decision nor raise an evaluation error
//! for that request. Leaving it out therefore changes nothing: same decision, same determining
//! policies, same errors (the property test below checks this on random estates). Anything
//! the index cannot decide cheaply (`action in [...]`, `principal in Group`, `is`) stays a
//! candidate for every request.

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{ActionConstraint, EntityUid, Policy, PolicySet, PrincipalConstraint};
use dashmap::DashMap;

/// The index over one policy set.
pub struct PolicyIndex {
    policies: Vec<Policy>,
    full: Arc<PolicySet>,
    by_action: HashMap<String, Bucket>,
    any_action: Bucket,
    /// Built on first use. Keys are (action, principal if some policy names it exactly, else
    /// ""), so the map is bounded by the estate's shape, not by the callers seen.
    subsets: DashMap<(String, String), Arc<PolicySet>>,
}

#[derive(Default)]
struct Bucket {
    /// Policies whose principal scope is not `==`.
    open: Vec<usize>,
    /// Policies whose principal scope is `== P`, by P.
    by_principal: HashMap<String, Vec<usize>>,
}

impl PolicyIndex {
    /// Indexes `set` by its policies' action and principal scopes.
    pub fn new(set: &PolicySet) -> Self {
        let policies: Vec<Policy> = set.policies().cloned().collect();
        let mut by_action: HashMap<String, Bucket> = HashMap::new();
        let mut any_action = Bucket::default();
        for (i, policy) in policies.iter().enumerate() {
            let bucket = match policy.action_constraint() {
                ActionConstraint::Eq(action) => by_action.entry(action.to_string()).or_default(),
                ActionConstraint::Any | ActionConstraint::In(_) => &mut any_action,
            };
            match policy.principal_constraint() {
                PrincipalConstraint::Eq(principal) => bucket
                    .by_principal
                    .entry(principal.to_string())
                    .or_default()
                    .push(i),
                PrincipalConstraint::Any
                | PrincipalConstraint::In(_)
                | PrincipalConstraint::Is(_)
                | PrincipalConstraint::IsIn(_, _) => bucket.open.push(i),
            }
        }
        Self {
            policies,
            full: Arc::new(set.clone()),
            by_action,
            any_action,
            subsets: DashMap::new(),
        }
    }

    /// The policies that can apply to `principal` doing `action`.
    pub fn candidates(&self, principal: &EntityUid, action: &EntityUid) -> Arc<PolicySet> {
        let action_key = action.to_string();
        let principal_key = principal.to_string();
        let bucket = self.by_action.get(&action_key);
        let named = |b: &Bucket| b.by_principal.contains_key(&principal_key);
        let principal_part = if bucket.is_some_and(named) || named(&self.any_action) {
            principal_key
        } else {
            String::new()
        };
        let key = (action_key, principal_part);
        if let Some(hit) = self.subsets.get(&key) {
            return hit.clone();
        }
        let mut chosen: Vec<usize> = Vec::new();
        for b in bucket.into_iter().chain(std::iter::once(&self.any_action)) {
            chosen.extend(&b.open);
            if let Some(exact) = b.by_principal.get(&key.1) {
                chosen.extend(exact);
            }
        }
        chosen.sort_unstable();
        let mut subset = PolicySet::new();
        for i in chosen {
            let added = self
                .policies
                .get(i)
                .is_some_and(|p| subset.add(p.clone()).is_ok());
            if !added {
                // Cannot happen (ids are unique in the full set); the full set is always
                // correct, only slower.
                return self.full.clone();
            }
        }
        let subset = Arc::new(subset);
        self.subsets.insert(key, subset.clone());
        subset
    }
}

impl std::fmt::Debug for PolicyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyIndex")
            .field("policies", &self.policies.len())
            .field("actions", &self.by_action.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use cedar_policy::{Authorizer, Context, Entities, Request};
    use proptest::prelude::*;

    use super::*;

    const APPS: usize = 4;
    const ACTIONS: usize = 3;

    fn uid(s: &str) -> EntityUid {
        EntityUid::from_str(s).unwrap()
    }

    /// One random policy over apps `p0..p3` (groups `g0`, `g1`), actions `a0..a2`, docs `d0..d2`.
    fn policy() -> impl Strategy<Value = String> {
        let principal = prop_oneof![
            Just("principal".to_owned()),
            (0..APPS).prop_map(|i| format!("principal == App::\"p{i}\"")),
            (0..2usize).prop_map(|i| format!("principal in Group::\"g{i}\"")),
            Just("principal is App".to_owned()),
        ];
        let action = prop_oneof![
            Just("action".to_owned()),
            (0..ACTIONS).prop_map(|i| format!("action == Action::\"a{i}\"")),
            (0..ACTIONS, 0..ACTIONS)
                .prop_map(|(i, j)| format!("action in [Action::\"a{i}\", Action::\"a{j}\"]")),
        ];
        let resource = prop_oneof![
            Just("resource".to_owned()),
            (0..3usize).prop_map(|i| format!("resource == Doc::\"d{i}\"")),
        ];
        let condition = prop_oneof![
            Just(String::new()),
            (0..5i64).prop_map(|n| format!(" when {{ context.n > {n} }}")),
            (0..5i64).prop_map(|n| format!(" unless {{ context.n == {n} }}")),
            // Errors at evaluation: the attribute does not exist.
            Just(" when { principal.missing == 1 }".to_owned()),
        ];
        (any::<bool>(), principal, action, resource, condition).prop_map(|(permit, p, a, r, c)| {
            format!(
                "{} ({p}, {a}, {r}){c};",
                if permit { "permit" } else { "forbid" }
            )
        })
    }

    fn estate() -> impl Strategy<Value = PolicySet> {
        prop::collection::vec(policy(), 0..40)
            .prop_map(|policies| PolicySet::from_str(&policies.join("\n")).unwrap())
    }

    fn entities() -> Entities {
        let json = serde_json::json!([
            {"uid": {"type": "App", "id": "p0"}, "attrs": {}, "parents": [{"type": "Group", "id": "g0"}]},
            {"uid": {"type": "App", "id": "p1"}, "attrs": {}, "parents": [{"type": "Group", "id": "g1"}]},
            {"uid": {"type": "App", "id": "p2"}, "attrs": {}, "parents": [{"type": "Group", "id": "g0"}, {"type": "Group", "id": "g1"}]},
            {"uid": {"type": "App", "id": "p3"}, "attrs": {}, "parents": []},
        ]);
        Entities::from_json_value(json, None).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn candidates_decide_exactly_like_the_full_set(
            set in estate(),
            requests in prop::collection::vec((0..APPS + 1, 0..ACTIONS + 1, 0..3usize, 0..6i64), 1..8),
        ) {
            let index = PolicyIndex::new(&set);
            let entities = entities();
            let authorizer = Authorizer::new();
            for (p, a, r, n) in requests {
                // p == APPS / a == ACTIONS: a principal or action no policy names.
                let principal = uid(&format!("App::\"p{p}\""));
                let action = uid(&format!("Action::\"a{a}\""));
                let context = Context::from_json_value(serde_json::json!({"n": n}), None).unwrap();
                let request = Request::new(principal.clone(), action.clone(), uid(&format!("Doc::\"d{r}\"")), context, None).unwrap();
                let full = authorizer.is_authorized(&request, &set, &entities);
                let subset = index.candidates(&principal, &action);
                let indexed = authorizer.is_authorized(&request, &subset, &entities);
                prop_assert_eq!(full.decision(), indexed.decision());
                let reasons = |r: &cedar_policy::Response| {
                    let mut v: Vec<String> = r.diagnostics().reason().map(ToString::to_string).collect();
                    v.sort();
                    v
                };
                prop_assert_eq!(reasons(&full), reasons(&indexed));
                prop_assert_eq!(full.diagnostics().errors().count(), indexed.diagnostics().errors().count());
            }
        }
    }

    #[test]
    fn leaves_out_policies_for_other_actions_and_principals() {
        let set = PolicySet::from_str(
            r#"permit (principal == App::"p0", action == Action::"a0", resource);
               permit (principal == App::"p1", action == Action::"a0", resource);
               permit (principal, action == Action::"a1", resource);
               forbid (principal, action, resource) when { false };"#,
        )
        .unwrap();
        let index = PolicyIndex::new(&set);
        let count = |p: &str, a: &str| index.candidates(&uid(p), &uid(a)).policies().count();
        assert_eq!(count("App::\"p0\"", "Action::\"a0\""), 2);
        assert_eq!(count("App::\"p9\"", "Action::\"a0\""), 1);
        assert_eq!(count("App::\"p9\"", "Action::\"a1\""), 2);
        // Callers no policy names share one subset: the map stays bounded.
        for i in 0..100 {
            count(&format!("App::\"stranger{i}\""), "Action::\"a0\"");
        }
        assert!(index.subsets.len() <= 4);
    }
}
