//! What the policies grant an identity, computed by Cedar itself: partial evaluation of
//! `principal = App::"<id>"`, `action = Action::"<a>"`, a resource of the route's type whose id
//! and attributes are unknown, and an unknown context. Cedar answers per policy: satisfied
//! whatever the unknowns are, or satisfied only for some (a residual).
//!
//! - **Granted** (unconditionally): a permit is satisfied for every resource of the type and
//!   every context, and no forbid may apply.
//! - **Conditional**: a permit holds only for some resources or contexts (scopes, access mode,
//!   the user's own orders, a source network…), or a forbid may override it.
//! - Not granted: no permit can hold.

use std::str::FromStr;

use cedar_policy::{Authorizer, Effect, EntityId, EntityTypeName, EntityUid, Request};
use serde::Serialize;

use crate::policy::PolicyStore;

/// How a permission is granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "grant", rename_all = "snake_case")]
pub enum Grant {
    /// A permit holds for every resource of the type and every context.
    Unconditional {
        /// The permits that grant it.
        policies: Vec<String>,
    },
    /// Permits hold only under conditions, or forbids may override.
    Conditional {
        /// The permits that may grant it.
        policies: Vec<String>,
        /// Forbids that may override it.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        forbids: Vec<String>,
    },
}

impl Grant {
    /// The permits behind it.
    pub fn policies(&self) -> &[String] {
        match self {
            Self::Unconditional { policies } | Self::Conditional { policies, .. } => policies,
        }
    }

    /// True for an unconditional grant.
    pub fn is_unconditional(&self) -> bool {
        matches!(self, Self::Unconditional { .. })
    }
}

/// What the policies grant `principal` for `action` on resources of `resource_type`; `None`
/// when nothing can (or the names are not valid Cedar names).
pub fn granted(
    store: &PolicyStore,
    authorizer: &Authorizer,
    principal: &str,
    action: &str,
    resource_type: &str,
) -> Option<Grant> {
    let principal = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("App").ok()?,
        EntityId::new(principal),
    );
    let action = EntityUid::from_type_name_and_id(
        EntityTypeName::from_str("Action").ok()?,
        EntityId::new(action),
    );
    let request = Request::builder()
        .principal(principal)
        .action(action)
        .unknown_resource_with_type(EntityTypeName::from_str(resource_type).ok()?)
        .build();
    let response = authorizer.is_authorized_partial(&request, &store.policies, &store.entities);
    if response.decision() == Some(cedar_policy::Decision::Deny) {
        return None;
    }
    let ids = |policies: &mut dyn Iterator<Item = cedar_policy::Policy>, effect: Effect| {
        let mut ids: Vec<String> = policies
            .filter(|p| p.effect() == effect)
            .map(|p| p.id().to_string())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let satisfied = ids(&mut response.definitely_satisfied(), Effect::Permit);
    let forbids = ids(&mut response.may_be_determining(), Effect::Forbid);
    if !satisfied.is_empty() {
        return Some(if forbids.is_empty() {
            Grant::Unconditional {
                policies: satisfied,
            }
        } else {
            Grant::Conditional {
                policies: satisfied,
                forbids,
            }
        });
    }
    let residual = ids(&mut response.nontrivial_residuals(), Effect::Permit);
    (!residual.is_empty()).then_some(Grant::Conditional {
        policies: residual,
        forbids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SourceFile;

    fn store(policies: &str) -> PolicyStore {
        let file = |name: &str, text: &str| SourceFile {
            name: name.into(),
            text: text.into(),
        };
        PolicyStore::load(
            &file(
                "s.cedarschema",
                "entity Group; entity App in [Group]; entity Order { locked: Bool };\n\
                 action read, write appliesTo { principal: App, resource: Order, \
                 context: { mode: String } };",
            ),
            &[file("p.cedar", policies)],
            Some(&file(
                "e.json",
                r#"[{"uid":{"type":"Group","id":"g"},"attrs":{},"parents":[]},
                    {"uid":{"type":"App","id":"a"},"attrs":{},"parents":[{"type":"Group","id":"g"}]}]"#,
            )),
        )
        .unwrap()
    }

    #[test]
    fn cedar_says_what_is_granted_and_on_what_condition() {
        let store = store(
            r#"@id("read-all") permit (principal == App::"a", action == Action::"read", resource);
               @id("write-if") permit (principal in Group::"g", action == Action::"write", resource is Order)
                 when { context.mode == "x" };
               @id("locked") forbid (principal, action == Action::"write", resource)
                 when { resource.locked };"#,
        );
        let cedar = Authorizer::new();
        assert_eq!(
            granted(&store, &cedar, "a", "read", "Order"),
            Some(Grant::Unconditional {
                policies: vec!["read-all".into()]
            })
        );
        // Through the group, on a condition of the context, and a forbid may override it.
        assert_eq!(
            granted(&store, &cedar, "a", "write", "Order"),
            Some(Grant::Conditional {
                policies: vec!["write-if".into()],
                forbids: vec!["locked".into()],
            })
        );
        assert_eq!(granted(&store, &cedar, "b", "read", "Order"), None);
        assert_eq!(granted(&store, &cedar, "a", "read", "Not a type!"), None);
    }
}
