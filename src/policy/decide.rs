//! Query → Cedar request → decision, keeping the determining policy ids and evaluation errors.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use super::PolicyStore;
use crate::identity::AccessMode;
use crate::mapping::{AttrValue, ContextFacts, Query};

/// Cedar's answer for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed (some permit applied and no forbid did).
    pub allowed: bool,
    /// The policies that determined the decision.
    pub determining: Vec<String>,
    /// Evaluation errors (a policy that errors is skipped; Cedar stays default-deny).
    pub errors: Vec<String>,
}

/// Why a query could not be put to Cedar: a mismatch between routes and schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// An entity type or id could not be formed.
    #[error("invalid entity `{0}`")]
    Entity(String),
    /// The request does not conform to the schema.
    #[error("request does not match the schema: {0}")]
    Request(String),
}

/// Evaluates a query against the store, considering only the policies whose scope can apply
/// (see [`super::PolicyIndex`]).
pub fn decide(store: &PolicyStore, query: &Query) -> Result<Decision, DecideError> {
    decide_with(store, query, true)
}

/// The reference path: evaluates every policy. Decides exactly like [`decide`]; kept to
/// measure the index and to check it.
pub fn decide_unindexed(store: &PolicyStore, query: &Query) -> Result<Decision, DecideError> {
    decide_with(store, query, false)
}

fn decide_with(store: &PolicyStore, query: &Query, indexed: bool) -> Result<Decision, DecideError> {
    let principal = uid("App", &query.principal)?;
    let action = uid("Action", &query.action)?;
    let resource = uid(&query.resource.type_name, &query.resource.id)?;
    let context = context(&query.context)?;
    let candidates = if indexed {
        store.index.candidates(&principal, &action)
    } else {
        std::sync::Arc::new(store.policies.clone())
    };
    let request = cedar_policy::Request::new(
        principal,
        action,
        resource.clone(),
        context,
        Some(&store.schema),
    )
    .map_err(|e| DecideError::Request(e.to_string()))?;

    let synthesized;
    let entities = if query.resource.attrs.is_empty() || store.entities.get(&resource).is_some() {
        &store.entities
    } else {
        let attrs = query
            .resource
            .attrs
            .iter()
            .map(|(name, value)| Ok((name.to_string(), attr(value)?)))
            .collect::<Result<HashMap<_, _>, DecideError>>()?;
        let entity = Entity::new(resource, attrs, HashSet::new())
            .map_err(|e| DecideError::Entity(e.to_string()))?;
        synthesized = store
            .entities
            .clone()
            .add_entities([entity], Some(&store.schema))
            .map_err(|e| DecideError::Entity(e.to_string()))?;
        &synthesized
    };

    Ok(evaluate(store, &request, &candidates, entities))
}

/// Evaluates a Cedar request written out by hand (`tollgate test` raw cases): entity UIDs in
/// Cedar syntax and the context as JSON, validated against the schema like any request.
pub fn decide_raw(
    store: &PolicyStore,
    principal: &str,
    action: &str,
    resource: &str,
    context: &serde_json::Value,
) -> Result<Decision, DecideError> {
    let parse = |uid: &str| {
        EntityUid::from_str(uid).map_err(|e| DecideError::Entity(format!("{uid}: {e}")))
    };
    let (principal, action, resource) = (parse(principal)?, parse(action)?, parse(resource)?);
    let context = Context::from_json_value(context.clone(), Some((&store.schema, &action)))
        .map_err(|e| DecideError::Request(e.to_string()))?;
    let request =
        cedar_policy::Request::new(principal, action, resource, context, Some(&store.schema))
            .map_err(|e| DecideError::Request(e.to_string()))?;
    Ok(evaluate(store, &request, &store.policies, &store.entities))
}

fn evaluate(
    store: &PolicyStore,
    request: &cedar_policy::Request,
    policies: &cedar_policy::PolicySet,
    entities: &cedar_policy::Entities,
) -> Decision {
    let response = store.authorizer.is_authorized(request, policies, entities);
    let diagnostics = response.diagnostics();
    let mut determining: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
    determining.sort_unstable();
    Decision {
        allowed: response.decision() == cedar_policy::Decision::Allow,
        determining,
        errors: diagnostics.errors().map(ToString::to_string).collect(),
    }
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, DecideError> {
    let type_name =
        EntityTypeName::from_str(type_name).map_err(|_| DecideError::Entity(type_name.into()))?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

fn attr(value: &AttrValue) -> Result<RestrictedExpression, DecideError> {
    Ok(match value {
        AttrValue::String(s) => RestrictedExpression::new_string(s.clone()),
        AttrValue::Entity { type_name, id } => {
            RestrictedExpression::new_entity_uid(uid(type_name, id)?)
        }
    })
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn record(fields: Vec<(&str, RestrictedExpression)>) -> Result<RestrictedExpression, DecideError> {
    RestrictedExpression::new_record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .map_err(|e| DecideError::Request(e.to_string()))
}

/// Builds the context record the schema's `RequestContext` type describes.
fn context(facts: &ContextFacts) -> Result<Context, DecideError> {
    let mut pairs: Vec<(String, RestrictedExpression)> = vec![(
        "access_mode".into(),
        string(match facts.access_mode {
            AccessMode::AppOnly => "app_only",
            AccessMode::Delegated => "delegated",
        }),
    )];
    if let Some(user) = &facts.user {
        pairs.push((
            "user".into(),
            RestrictedExpression::new_entity_uid(uid("User", user)?),
        ));
    }
    if let Some(cert) = &facts.certificate {
        pairs.push((
            "certificate".into(),
            record(vec![
                ("id", string(&cert.id)),
                ("trust_domain", string(&cert.trust_domain)),
                ("thumbprint", string(&cert.thumbprint_hex())),
            ])?,
        ));
    }
    if let Some(token) = &facts.token {
        pairs.push((
            "token".into(),
            record(vec![
                ("issuer", string(&token.issuer)),
                ("subject", string(&token.subject)),
                ("client_id", string(&token.client_id)),
                ("actor", string(&token.actor)),
                ("bound", RestrictedExpression::new_bool(token.bound)),
                (
                    "scopes",
                    RestrictedExpression::new_set(token.scopes.iter().map(|s| string(s))),
                ),
            ])?,
        ));
    }
    let req = &facts.request;
    let mut request = vec![
        ("method", string(&req.method)),
        ("path", string(&req.path)),
        ("host", string(&req.host)),
    ];
    if let Some(ip) = req.source_ip {
        request.push(("source_ip", super::ip::ip_expression(ip)));
    }
    pairs.push(("request".into(), record(request)?));
    Context::from_pairs(pairs).map_err(|e| DecideError::Request(e.to_string()))
}
