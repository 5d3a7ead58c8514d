//! The entity slice a request needs, so that a resource built from a route (not in the store)
//! can be evaluated without copying the store.
//!
//! Cedar reads an entity's data only when a policy reaches it: the principal, action and
//! resource, entities named in the context, entity literals in policy conditions, and, from
//! those, entities named by attributes or tags (ancestry is stored on each entity, so `in`
//! needs no further entities). The slice is that closure, found through an index of attribute
//! references built once per snapshot; its cost follows what the request reaches, not the
//! store's size.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Entities, Entity, EntityUid, EvalResult, PolicySet};

/// Most entities one request's slice may hold; a larger closure is refused (fail closed)
/// rather than letting one request do unbounded work.
pub const MAX_SLICE_ENTITIES: usize = 10_000;

/// Attribute references between entities, and the entity literals policy conditions use.
#[derive(Debug, Default)]
pub struct EntityGraph {
    refs: HashMap<EntityUid, Vec<EntityUid>>,
    condition_literals: Vec<EntityUid>,
}

/// A slice would exceed [`MAX_SLICE_ENTITIES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the request reaches more than {MAX_SLICE_ENTITIES} entities through attributes; \
     refusing rather than evaluating against an unbounded slice"
)]
pub struct SliceTooLarge;

impl EntityGraph {
    /// Indexes the store's attribute and tag references and the policies' condition literals.
    pub fn new(entities: &Entities, policies: &PolicySet) -> Self {
        let mut refs = HashMap::new();
        for entity in entities.iter() {
            let mut named = Vec::new();
            for (_, value) in entity.attrs().chain(entity.tags()) {
                if let Ok(value) = value {
                    collect_uids(&value, &mut named);
                }
            }
            if !named.is_empty() {
                refs.insert(entity.uid(), named);
            }
        }
        let mut condition_literals = HashSet::new();
        for policy in policies.policies() {
            if let Ok(json) = policy.to_json()
                && let Some(conditions) = json.get("conditions")
            {
                collect_json_literals(conditions, &mut condition_literals);
            }
        }
        Self {
            refs,
            condition_literals: condition_literals.into_iter().collect(),
        }
    }

    /// The store entities reachable from `roots` and the condition literals, cloned.
    pub fn slice(
        &self,
        entities: &Entities,
        roots: impl IntoIterator<Item = EntityUid>,
    ) -> Result<Vec<Entity>, SliceTooLarge> {
        let mut seen: HashSet<EntityUid> = HashSet::new();
        let mut queue: Vec<EntityUid> = roots
            .into_iter()
            .chain(self.condition_literals.iter().cloned())
            .collect();
        let mut out = Vec::new();
        while let Some(uid) = queue.pop() {
            if !seen.insert(uid.clone()) {
                continue;
            }
            if let Some(entity) = entities.get(&uid) {
                if out.len() == MAX_SLICE_ENTITIES {
                    return Err(SliceTooLarge);
                }
                out.push(entity.clone());
                if let Some(named) = self.refs.get(&uid) {
                    queue.extend(named.iter().filter(|u| !seen.contains(*u)).cloned());
                }
            }
        }
        Ok(out)
    }
}

fn collect_uids(value: &EvalResult, out: &mut Vec<EntityUid>) {
    match value {
        EvalResult::EntityUid(uid) => out.push(uid.clone()),
        EvalResult::Set(set) => set.iter().for_each(|v| collect_uids(v, out)),
        EvalResult::Record(record) => record.iter().for_each(|(_, v)| collect_uids(v, out)),
        EvalResult::Bool(_)
        | EvalResult::Long(_)
        | EvalResult::String(_)
        | EvalResult::ExtensionValue(_) => {}
    }
}

/// Entity literals (`{"__entity": {"type": …, "id": …}}`) anywhere in a policy's JSON.
fn collect_json_literals(json: &serde_json::Value, out: &mut HashSet<EntityUid>) {
    match json {
        serde_json::Value::Object(map) => {
            if let Some(literal) = map.get("__entity")
                && let Ok(uid) = EntityUid::from_json(literal.clone())
            {
                out.insert(uid);
            }
            map.values().for_each(|v| collect_json_literals(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_json_literals(v, out)),
        _ => {}
    }
}
