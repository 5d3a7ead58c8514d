//! Request → Cedar query: the route table picks action and resource; the caller and request
//! facts become the context.

pub mod authzen;
pub mod context;
pub mod path;
pub mod routes;

use std::sync::Arc;

use crate::identity::Caller;
use crate::request::CheckInput;
pub use context::ContextFacts;
use routes::Routes;

/// A protobuf- and Cedar-free authorization question; hashable so it can key the decision
/// cache, and complete, so equal queries always get equal answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// `App` entity id.
    pub principal: String,
    /// `Action` entity id.
    pub action: Arc<str>,
    /// The resource entity.
    pub resource: Resource,
    /// The context record.
    pub context: ContextFacts,
}

/// A resource entity built from a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// Entity type, e.g. `Order`.
    pub type_name: Arc<str>,
    /// Entity id from the path.
    pub id: String,
    /// Attributes from route templates (used when the entity store does not hold it).
    pub attrs: Vec<(Arc<str>, AttrValue)>,
}

/// A route-supplied attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// A string.
    String(String),
    /// An entity reference.
    Entity {
        /// Entity type.
        type_name: Arc<str>,
        /// Entity id.
        id: String,
    },
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(s) => write!(f, "{s:?}"),
            Self::Entity { type_name, id } => write!(f, "{type_name}::{id:?}"),
        }
    }
}

/// Why a request could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The method is not an HTTP token.
    #[error("malformed request: method `{0}` is not a token")]
    Method(String),
    /// The path cannot be matched safely.
    #[error("malformed request: {0}")]
    Path(#[from] path::PathError),
    /// No route matches and no fallback is configured.
    #[error("no route for `{method} {path}`")]
    NoRoute {
        /// Method as sent.
        method: String,
        /// Normalised path.
        path: String,
    },
}

/// Maps a verified caller's request to a Cedar query.
pub fn map(routes: &Routes, caller: &Caller, input: &CheckInput) -> Result<Query, MappingError> {
    if input.method.is_empty() || !input.method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(MappingError::Method(
            input.method.escape_debug().to_string(),
        ));
    }
    let path = path::normalize(&input.path)?;
    let Some((action, resource)) = routes.resolve(&input.host, &input.method, &path) else {
        return Err(MappingError::NoRoute {
            method: input.method.clone(),
            path: path.to_path_string(),
        });
    };
    Ok(Query {
        principal: caller.principal.clone(),
        action,
        resource,
        context: ContextFacts::new(caller, input, path.to_path_string()),
    })
}
