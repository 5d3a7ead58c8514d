//! Lints beyond Cedar's validator: things that load fine but cannot be what the author meant.
//! Route actions missing from the schema, resource types an action cannot take, and duplicate
//! policy ids are load errors already; these are warnings.

use std::collections::BTreeSet;
use std::str::FromStr;

use cedar_policy::{ActionConstraint, EntityUid};

use crate::diagnostic::{Diagnostic, Severity};
use crate::policy::line_column;
use crate::snapshot::Snapshot;

/// Warnings for a built snapshot; `config_file` is the name to report route lints under.
pub fn lint(snapshot: &Snapshot, config_file: &str) -> Vec<Diagnostic> {
    let routed_types: BTreeSet<&str> = snapshot.routes.resource_types().collect();
    let store = &snapshot.policies;
    // Routes produce `Action::"<id>"`; a policy on an action group applies to its members.
    let routed_actions: Vec<EntityUid> = snapshot
        .routes
        .actions()
        .filter_map(|a| EntityUid::from_str(&format!("Action::{a:?}")).ok())
        .collect();
    let hierarchy = store.schema().action_entities().ok();
    // The AuthZEN API asks the PEP's action of every PEP, and names the actions of its action
    // type whose principals are types `[authzen] types` maps to (any, when it maps none), and
    // those resource types.
    let authzen = snapshot.authzen.as_deref();
    let mapped = |type_name: &str| {
        authzen
            .is_some_and(|a| a.types.is_empty() || a.types.iter().any(|(_, t)| **t == *type_name))
    };
    let asked = |uid: &EntityUid| {
        let Some(a) = authzen else { return false };
        let action_type = uid.type_name().to_string();
        if action_type == "Action" && uid.id().unescaped() == &*a.pep_action {
            return true;
        }
        action_type == *a.action_type
            && store
                .schema()
                .principals_for_action(uid)
                .is_some_and(|mut principals| principals.any(|p| mapped(&p.to_string())))
    };
    let reached = |uid: &EntityUid| {
        asked(uid)
            || routed_actions.iter().any(|routed| {
                routed == uid
                    || hierarchy
                        .as_ref()
                        .is_some_and(|h| h.is_ancestor_of(uid, routed))
            })
    };
    let mut out: Vec<Diagnostic> = store
        .warnings()
        .iter()
        .map(|w| Diagnostic {
            severity: Severity::Warning,
            kind: "cedar-validator",
            file: w.file.clone(),
            line: w.line,
            column: w.column,
            message: w.message.clone(),
            help: w.help.clone(),
        })
        .collect();

    for policy in store.policies() {
        let actions: Vec<EntityUid> = match policy.action_constraint() {
            ActionConstraint::Any => continue,
            ActionConstraint::Eq(uid) => vec![uid],
            ActionConstraint::In(uids) => uids,
        };
        if actions.iter().any(reached) {
            continue;
        }
        let id = policy.id().to_string();
        let (file, line) = store.source(&id).map_or_else(
            || ("<policies>".to_owned(), 1),
            |s| (s.file.clone(), s.line),
        );
        out.push(Diagnostic {
            severity: Severity::Warning,
            kind: "policy-never-applies",
            file,
            line,
            column: 1,
            message: format!(
                "policy `{id}` can never apply: no route (nor the AuthZEN API) produces action {}",
                // Full names, so `Shop::Action::"read"` is not mistaken for `Action::"read"`.
                actions
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            help: Some("add a [[routes]] entry for the action, or remove the policy".into()),
        });
    }

    let schema_source = store.schema_source();
    for type_name in store
        .schema()
        .resources()
        .map(ToString::to_string)
        .collect::<BTreeSet<_>>()
    {
        if routed_types.contains(type_name.as_str()) || mapped(&type_name) {
            continue;
        }
        let offset = find_entity_declaration(&schema_source.text, &type_name).unwrap_or(0);
        let (line, column) = line_column(&schema_source.text, offset);
        out.push(Diagnostic {
            severity: Severity::Warning,
            kind: "resource-type-unused",
            file: schema_source.name.clone(),
            line,
            column,
            message: format!("no route produces resource type `{type_name}`"),
            help: Some(format!(
                "policies about `{type_name}` cannot be reached through {config_file}"
            )),
        });
    }
    out
}

/// Byte offset of `entity <name>` in a schema (followed by a non-identifier character).
fn find_entity_declaration(schema: &str, name: &str) -> Option<usize> {
    let needle = format!("entity {name}");
    schema.match_indices(&needle).map(|(at, _)| at).find(|at| {
        schema
            .get(at + needle.len()..)
            .and_then(|rest| rest.chars().next())
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, load};

    #[test]
    fn the_example_estate_is_clean() {
        let (_, snapshot) = load(&ConfigSource::Embedded, 1).unwrap();
        assert_eq!(lint(&snapshot, "tollgate.toml"), vec![]);
    }

    #[test]
    fn finds_entity_declarations_exactly() {
        let schema = "entity Orderly;\nentity Order { owner?: User };";
        assert_eq!(find_entity_declaration(schema, "Order"), Some(16));
    }
}
