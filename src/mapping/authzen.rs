//! AuthZEN → Cedar: the OpenID AuthZEN API names a subject, an action and a resource by
//! `type` and `id` (with optional `properties`) plus a context; `[authzen]` says which Cedar
//! entity type each AuthZEN type is. The result is an [`Evaluation`]: protobuf-, JSON-wire- and
//! Cedar-free, hashable so it keys the decision cache, and complete, so equal evaluations always
//! get equal answers.

use std::sync::Arc;

/// `[authzen]`: how AuthZEN names become Cedar entities, and what a PEP needs to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthZenMapping {
    /// AuthZEN type → Cedar entity type; a type not listed is used as written.
    pub types: Vec<(String, Arc<str>)>,
    /// The Cedar entity type of AuthZEN action names (`Action`).
    pub action_type: Arc<str>,
    /// The Cedar action (of `Action`) a PEP needs on a resource to ask about it.
    pub pep_action: Arc<str>,
    /// The PDP's public base URL, for the metadata document; `None`: derived from the request.
    pub base_url: Option<String>,
}

impl Default for AuthZenMapping {
    fn default() -> Self {
        Self {
            types: Vec::new(),
            action_type: Arc::from("Action"),
            pep_action: Arc::from("authzen:evaluate"),
            base_url: None,
        }
    }
}

/// A Cedar entity named by an AuthZEN subject or resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityRef {
    /// Cedar entity type.
    pub type_name: Arc<str>,
    /// Entity id.
    pub id: Arc<str>,
    /// `properties`, as JSON object text: the entity's attributes when the store does not hold
    /// it (the PDP's own data wins over what a PEP says about an entity it knows).
    pub properties: Option<Arc<str>>,
}

/// One AuthZEN evaluation in Cedar's terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Evaluation {
    /// The principal.
    pub subject: EntityRef,
    /// The action's id (of type [`AuthZenMapping::action_type`]).
    pub action: Arc<str>,
    /// The resource.
    pub resource: EntityRef,
    /// The context, JSON object text; `None` when none was sent (an empty record).
    pub context: Option<Arc<str>>,
}

impl AuthZenMapping {
    /// The Cedar entity type for AuthZEN type `authzen_type`.
    pub fn cedar_type(&self, authzen_type: &str) -> Arc<str> {
        self.types
            .iter()
            .find(|(from, _)| from == authzen_type)
            .map_or_else(|| Arc::from(authzen_type), |(_, to)| to.clone())
    }

    /// The entity an AuthZEN `type`/`id`/`properties` names.
    pub fn entity(
        &self,
        authzen_type: &str,
        id: &str,
        properties: Option<&serde_json::Value>,
    ) -> EntityRef {
        EntityRef {
            type_name: self.cedar_type(authzen_type),
            id: Arc::from(id),
            properties: properties.map(|p| Arc::from(p.to_string())),
        }
    }
}

impl EntityRef {
    /// `Type::"id"`, as Cedar writes it (for messages and records).
    pub fn cedar(&self) -> String {
        format!("{}::{:?}", self.type_name, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_types_are_renamed_and_others_kept() {
        let mapping = AuthZenMapping {
            types: vec![("user".into(), Arc::from("User"))],
            ..AuthZenMapping::default()
        };
        let user = mapping.entity("user", "alice", None);
        assert_eq!(user.cedar(), "User::\"alice\"");
        let account = mapping.entity("Account", "7", Some(&serde_json::json!({"tier": 1})));
        assert_eq!(&*account.type_name, "Account");
        assert_eq!(account.properties.as_deref(), Some(r#"{"tier":1}"#));
        assert_eq!(&*user.id, "alice");
    }
}
