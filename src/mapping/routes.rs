//! Route table: `METHOD /path/{param}` templates compiled once, matched in file order, each
//! yielding a Cedar action and a resource built from the captured parameters.

use std::sync::Arc;

use super::path::NormalizedPath;
use super::{AttrValue, Resource};

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The template as written, for logs and lints.
    pub pattern: String,
    /// 1-based line of the route in its config file (0 when unknown), for lints.
    pub line: usize,
    method: Option<String>,
    /// Hosts this route applies to (any host when empty): one route table can serve several
    /// destinations, as a shared Tollgate in a mesh does.
    hosts: Vec<HostPattern>,
    segments: Vec<Segment>,
    /// Cedar action id, e.g. `orders:read`.
    pub action: Arc<str>,
    resource: ResourceTemplate,
}

/// A resource built from route parameters: `Type::"{param}"` plus attribute templates.
#[derive(Debug, Clone)]
pub struct ResourceTemplate {
    /// Cedar entity type, e.g. `Order`.
    pub type_name: Arc<str>,
    id: Template,
    attrs: Vec<(Arc<str>, AttrTemplate)>,
}

/// `orders.shop.svc` (exact) or `*.shop.svc` (any name ending in `.shop.svc`), lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
enum AttrTemplate {
    String(Template),
    Entity { type_name: Arc<str>, id: Template },
}

/// Literal text with `{param}` holes.
#[derive(Debug, Clone)]
struct Template(Vec<Piece>);

#[derive(Debug, Clone)]
enum Piece {
    Literal(String),
    Param(String),
}

/// The route table.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
    fallback: Option<(Arc<str>, ResourceTemplate)>,
}

// === impl Routes ===

impl Routes {
    /// A table from compiled routes and an optional fallback for unmatched requests.
    pub fn new(routes: Vec<Route>, fallback: Option<(Arc<str>, ResourceTemplate)>) -> Self {
        Self { routes, fallback }
    }

    /// The compiled routes, in match order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// Every action a request can map to (routes and the fallback).
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .map(|r| &*r.action)
            .chain(self.fallback.iter().map(|(a, _)| &**a))
    }

    /// Every (action, resource type) a request can map to, in table order, each once.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let all = self
            .routes
            .iter()
            .map(|r| (&*r.action, &*r.resource.type_name))
            .chain(self.fallback.iter().map(|(a, r)| (&**a, &*r.type_name)));
        for pair in all {
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
        pairs
    }

    /// Every resource type a request can map to (routes and the fallback).
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .map(|r| &*r.resource.type_name)
            .chain(self.fallback.iter().map(|(_, r)| &*r.type_name))
    }

    /// The first route matching `host`, `method` and `path`, as action and resource.
    pub fn resolve(
        &self,
        host: &str,
        method: &str,
        path: &NormalizedPath,
    ) -> Option<(Arc<str>, Resource)> {
        let host = host_name(host);
        for route in &self.routes {
            if !route.applies_to(&host) {
                continue;
            }
            if let Some(params) = route.matches(method, path) {
                return Some((route.action.clone(), route.resource.build(&params)));
            }
        }
        self.fallback
            .as_ref()
            .map(|(action, resource)| (action.clone(), resource.build(&[])))
    }
}

/// Why a route in the config cannot be compiled (reported at its line in the config file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not `METHOD /path`.
    #[error("route must be `METHOD /path`, e.g. `GET /orders/{{id}}`")]
    Pattern,
    /// The method is not upper-case letters or `*`.
    #[error("method `{0}` must be upper-case letters or `*`")]
    Method(String),
    /// The path is not absolute.
    #[error("path `{0}` must start with `/`")]
    PathNotAbsolute(String),
    /// `{name}` is not an identifier.
    #[error("parameter `{{{0}}}` is not a valid name")]
    ParamName(String),
    /// A segment mixes literal text and a parameter.
    #[error("segment `{0}` must be literal or a whole `{{param}}`")]
    PartialParam(String),
    /// `.` or `..` in a route.
    #[error("dot segments are not allowed in routes")]
    DotSegment,
    /// The resource uses a parameter the path does not capture.
    #[error("resource uses `{{{0}}}`, which the path does not capture")]
    UnboundParam(String),
    /// Not a host name or `*.suffix`.
    #[error("host `{0}` must be a name like `orders.shop.svc` or `*.shop.svc`")]
    Host(String),
    /// A resource attribute name is not an identifier.
    #[error("attribute name `{0}` is not a valid identifier")]
    AttrName(String),
    /// `{` without `}`.
    #[error("unclosed `{{` in `{0}`")]
    Unclosed(String),
    /// `}` without `{`.
    #[error("unopened `}}` in `{0}`")]
    Unopened(String),
    /// Not `Type::"id"`.
    #[error("`{0}` must look like `Type::\"{{param}}\"`")]
    EntityForm(String),
    /// No closing quote.
    #[error("`{0}` must end with a closing quote")]
    EntityQuote(String),
    /// The type is not a Cedar entity type.
    #[error("`{0}` is not a valid Cedar entity type")]
    EntityType(String),
    /// Quotes or backslashes in the id.
    #[error("entity id in `{0}` must not contain quotes or backslashes")]
    EntityId(String),
}

// === impl Route ===

impl Route {
    /// Compiles `"GET /orders/{id}"` (method `*` matches any) with its action and resource.
    pub fn compile(
        pattern: &str,
        action: &str,
        resource: ResourceTemplate,
    ) -> Result<Self, RouteError> {
        let (method, path) = pattern.split_once(' ').ok_or(RouteError::Pattern)?;
        let method = match method {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_owned()),
            m => return Err(RouteError::Method(m.to_owned())),
        };
        if !path.starts_with('/') {
            return Err(RouteError::PathNotAbsolute(path.to_owned()));
        }
        let mut segments = Vec::new();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            let segment = match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if is_identifier(name) => Segment::Param(name.to_owned()),
                Some(name) => return Err(RouteError::ParamName(name.to_owned())),
                None if seg.contains(['{', '}']) => {
                    return Err(RouteError::PartialParam(seg.to_owned()));
                }
                None if seg == "." || seg == ".." => return Err(RouteError::DotSegment),
                None => Segment::Literal(seg.to_owned()),
            };
            segments.push(segment);
        }
        for name in resource.params() {
            let bound = segments
                .iter()
                .any(|s| matches!(s, Segment::Param(p) if p == name));
            if !bound {
                return Err(RouteError::UnboundParam(name.to_owned()));
            }
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            line: 0,
            method,
            hosts: Vec::new(),
            segments,
            action: action.into(),
            resource,
        })
    }

    /// Restricts the route to these hosts: exact names, or `*.suffix`.
    pub fn with_hosts(mut self, hosts: &[String]) -> Result<Self, RouteError> {
        for host in hosts {
            let host = host.to_ascii_lowercase();
            let valid = |name: &str| {
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            };
            let pattern = match host.strip_prefix("*.") {
                Some(suffix) if valid(suffix) => HostPattern::Suffix(format!(".{suffix}")),
                None if valid(&host) => HostPattern::Exact(host),
                _ => return Err(RouteError::Host(host)),
            };
            self.hosts.push(pattern);
        }
        Ok(self)
    }

    /// The resource entity type this route produces.
    pub fn resource_type(&self) -> &str {
        &self.resource.type_name
    }

    fn applies_to(&self, host: &str) -> bool {
        self.hosts.is_empty()
            || self.hosts.iter().any(|pattern| match pattern {
                HostPattern::Exact(name) => name == host,
                HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
            })
    }

    fn matches<'a>(&self, method: &str, path: &'a NormalizedPath) -> Option<Vec<(&str, &'a str)>> {
        if self.method.as_deref().is_some_and(|m| m != method)
            || self.segments.len() != path.segments.len()
        {
            return None;
        }
        let mut params = Vec::new();
        for (pattern, actual) in self.segments.iter().zip(&path.segments) {
            match pattern {
                Segment::Literal(lit) if lit == actual => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.as_str(), actual.as_str())),
            }
        }
        Some(params)
    }
}

/// The host name of a `Host`/`:authority` value: lower-case, without port or trailing dot.
fn host_name(authority: &str) -> std::borrow::Cow<'_, str> {
    let name = match authority.strip_prefix('[') {
        // An IPv6 literal, `[::1]:8080`.
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(name, _)| name),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

// === impl ResourceTemplate ===

impl ResourceTemplate {
    /// Parses `Type::"id {param}"` plus `(name, value)` attribute templates, where a value is
    /// either `Type::"…"` (an entity reference) or plain text (a string).
    pub fn parse(resource: &str, attrs: &[(String, String)]) -> Result<Self, RouteError> {
        let (type_name, id) = parse_entity_template(resource)?;
        let attrs = attrs
            .iter()
            .map(|(name, value)| {
                if !is_identifier(name) {
                    return Err(RouteError::AttrName(name.clone()));
                }
                let template = if value.contains("::\"") {
                    let (type_name, id) = parse_entity_template(value)?;
                    AttrTemplate::Entity { type_name, id }
                } else {
                    AttrTemplate::String(Template::parse(value)?)
                };
                Ok((Arc::from(name.as_str()), template))
            })
            .collect::<Result<_, RouteError>>()?;
        Ok(Self {
            type_name,
            id,
            attrs,
        })
    }

    fn params(&self) -> impl Iterator<Item = &str> {
        let attr_templates = self.attrs.iter().map(|(_, a)| match a {
            AttrTemplate::String(t) | AttrTemplate::Entity { id: t, .. } => t,
        });
        std::iter::once(&self.id)
            .chain(attr_templates)
            .flat_map(|t| t.0.iter())
            .filter_map(|p| match p {
                Piece::Param(name) => Some(name.as_str()),
                Piece::Literal(_) => None,
            })
    }

    fn build(&self, params: &[(&str, &str)]) -> Resource {
        Resource {
            type_name: self.type_name.clone(),
            id: self.id.render(params),
            attrs: self
                .attrs
                .iter()
                .map(|(name, t)| {
                    let value = match t {
                        AttrTemplate::String(t) => AttrValue::String(t.render(params)),
                        AttrTemplate::Entity { type_name, id } => AttrValue::Entity {
                            type_name: type_name.clone(),
                            id: id.render(params),
                        },
                    };
                    (name.clone(), value)
                })
                .collect(),
        }
    }
}

// === impl Template ===

impl Template {
    fn parse(text: &str) -> Result<Self, RouteError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (lit, after) = rest.split_at(open);
            if !lit.is_empty() {
                pieces.push(Piece::Literal(lit.to_owned()));
            }
            let close = after
                .find('}')
                .ok_or_else(|| RouteError::Unclosed(text.to_owned()))?;
            let name = after.get(1..close).unwrap_or_default();
            if !is_identifier(name) {
                return Err(RouteError::ParamName(name.to_owned()));
            }
            pieces.push(Piece::Param(name.to_owned()));
            rest = after.get(close + 1..).unwrap_or_default();
        }
        if rest.contains('}') {
            return Err(RouteError::Unopened(text.to_owned()));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    fn render(&self, params: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Param(name) => {
                    if let Some((_, v)) = params.iter().find(|(n, _)| n == name) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

/// `Type::"id"` with an optional namespace path (`Shop::Order::"{id}"`).
fn parse_entity_template(text: &str) -> Result<(Arc<str>, Template), RouteError> {
    let (type_name, quoted) = text
        .split_once("::\"")
        .ok_or_else(|| RouteError::EntityForm(text.to_owned()))?;
    let id = quoted
        .strip_suffix('"')
        .ok_or_else(|| RouteError::EntityQuote(text.to_owned()))?;
    if type_name.split("::").any(|part| !is_identifier(part)) {
        return Err(RouteError::EntityType(type_name.to_owned()));
    }
    if id.contains(['"', '\\']) {
        return Err(RouteError::EntityId(text.to_owned()));
    }
    Ok((type_name.into(), Template::parse(id)?))
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::path::normalize;

    fn route(pattern: &str, resource: &str) -> Route {
        Route::compile(
            pattern,
            "a",
            ResourceTemplate::parse(resource, &[]).unwrap(),
        )
        .unwrap()
    }

    /// Finding (Istio): one route table decided for every destination of a shared Tollgate.
    #[test]
    fn routes_can_be_limited_to_destination_hosts() {
        let orders = route("GET /items/{id}", "Order::\"{id}\"")
            .with_hosts(&[
                "orders.shop.svc.cluster.local".into(),
                "orders.shop.svc".into(),
            ])
            .unwrap();
        let payments = route("GET /items/{id}", "Payment::\"{id}\"")
            .with_hosts(&["*.payments.svc.cluster.local".into()])
            .unwrap();
        let routes = Routes::new(vec![orders, payments], None);
        let path = normalize("/items/7").unwrap();
        let type_for = |host: &str| {
            routes
                .resolve(host, "GET", &path)
                .map(|(_, r)| r.type_name.to_string())
        };
        assert_eq!(
            type_for("orders.shop.svc.cluster.local").as_deref(),
            Some("Order")
        );
        assert_eq!(type_for("Orders.Shop.svc:8080").as_deref(), Some("Order"));
        assert_eq!(
            type_for("orders.shop.svc.cluster.local.").as_deref(),
            Some("Order")
        );
        assert_eq!(
            type_for("v1.payments.svc.cluster.local").as_deref(),
            Some("Payment")
        );
        assert_eq!(type_for("payments.svc.cluster.local"), None);
        assert_eq!(type_for("evil.example"), None);
        assert_eq!(type_for("[::1]:80"), None);
        assert!(
            route("GET /a", "Service::\"a\"")
                .with_hosts(&["a b".into()])
                .is_err()
        );
        assert!(
            route("GET /a", "Service::\"a\"")
                .with_hosts(&["*.".into()])
                .is_err()
        );
    }

    #[test]
    fn matches_in_order_and_binds_params() {
        let routes = Routes::new(
            vec![
                route("GET /orders/export", "Report::\"orders\""),
                route("GET /orders/{id}", "Order::\"{id}\""),
                route("* /health", "Service::\"health\""),
            ],
            None,
        );
        let (_, r) = routes
            .resolve("", "GET", &normalize("/orders/42").unwrap())
            .unwrap();
        assert_eq!((&*r.type_name, r.id.as_str()), ("Order", "42"));
        let (_, r) = routes
            .resolve("", "GET", &normalize("/orders/export").unwrap())
            .unwrap();
        assert_eq!(&*r.type_name, "Report");
        assert!(
            routes
                .resolve("", "POST", &normalize("/orders/42").unwrap())
                .is_none()
        );
        assert!(
            routes
                .resolve("", "GET", &normalize("/orders/42/x").unwrap())
                .is_none()
        );
        assert!(
            routes
                .resolve("", "DELETE", &normalize("/health").unwrap())
                .is_some()
        );
    }

    #[test]
    fn builds_entity_and_string_attributes() {
        let template = ResourceTemplate::parse(
            "Order::\"{id}\"",
            &[
                ("owner".into(), "User::\"{user}\"".into()),
                ("label".into(), "u-{user}".into()),
            ],
        )
        .unwrap();
        let r = Route::compile("GET /users/{user}/orders/{id}", "a", template).unwrap();
        let routes = Routes::new(vec![r], None);
        let (_, res) = routes
            .resolve("", "GET", &normalize("/users/alice/orders/7").unwrap())
            .unwrap();
        assert_eq!(res.id, "7");
        assert_eq!(
            res.attrs,
            vec![
                (
                    Arc::from("owner"),
                    AttrValue::Entity {
                        type_name: "User".into(),
                        id: "alice".into()
                    }
                ),
                (Arc::from("label"), AttrValue::String("u-alice".into())),
            ]
        );
    }

    #[test]
    fn rejects_bad_templates() {
        let ok = || ResourceTemplate::parse("Order::\"{id}\"", &[]).unwrap();
        let route = |pattern: &str| Route::compile(pattern, "a", ok()).err();
        assert_eq!(route("get /a"), Some(RouteError::Method("get".into())));
        assert_eq!(
            route("GET a"),
            Some(RouteError::PathNotAbsolute("a".into()))
        );
        assert_eq!(
            route("GET /a/{id}x"),
            Some(RouteError::PartialParam("{id}x".into()))
        );
        assert_eq!(route("GET /a/../{id}"), Some(RouteError::DotSegment));
        assert_eq!(
            route("GET /a/{other}"),
            Some(RouteError::UnboundParam("id".into()))
        );
        let resource = |text: &str| ResourceTemplate::parse(text, &[]).err();
        assert_eq!(
            resource("Order"),
            Some(RouteError::EntityForm("Order".into()))
        );
        assert_eq!(
            resource("Or der::\"x\""),
            Some(RouteError::EntityType("Or der".into()))
        );
        assert_eq!(
            resource("Order::\"{id\""),
            Some(RouteError::Unclosed("{id".into()))
        );
        assert_eq!(
            resource("Order::\"a\\\"b\""),
            Some(RouteError::EntityId("Order::\"a\\\"b\"".into()))
        );
    }
}
