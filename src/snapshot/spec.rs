//! [`Spec`]: what a snapshot is to be built from, as the configuration describes it. Every
//! value here is already checked on its own (names, enums, addresses, route syntax); what
//! needs a document's contents (bundles, keys, the schema) is the builder's to check. Each
//! value a build can still reject keeps its [`Location`] in the config, so the error names the
//! file, line and key exactly as a parse error would.

use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::ResponseSettings;
use super::source::{Document, Folder};
use crate::identity::IdentitySource;
use crate::identity::status_list::StatusListSpec;
use crate::identity::token::Delegation;
use crate::mapping::authzen::AuthZenMapping;
use crate::mapping::routes::{ResourceTemplate, Route};

/// Where in the configuration a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Config file as shown to the user.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, e.g. `issuers[0].jwks_file`.
    pub key: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: `{}`",
            self.file, self.line, self.column, self.key
        )
    }
}

/// A value and where the configuration wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub at: Location,
}

/// Everything a build needs besides the documents themselves. Only `config::Config::parse`
/// makes one, and it enforces what spans several values (one issuer per `iss`, at most one
/// with unqualified users, a key source per issuer, a bundle per trust domain where
/// certificates are verified); the builder relies on that.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Workload identity.
    pub identity: IdentitySpec,
    /// Token issuers, in config order.
    pub issuers: Vec<IssuerSpec>,
    /// JWT-SVIDs as bearer tokens, when accepted.
    pub jwt_svid: Option<JwtSvidSpec>,
    /// Cedar inputs.
    pub policies: PolicySpec,
    /// Routes, compiled; their actions and resource types are checked against the schema at
    /// build time.
    pub routes: Vec<RouteSpec>,
    /// Action and resource for requests no route matches.
    pub unmatched: Option<UnmatchedSpec>,
    /// Response shaping (needs no document).
    pub response: Arc<ResponseSettings>,
    /// The AuthZEN API's mapping, when `[authzen]` is configured; its types and actions are
    /// checked against the schema at build time.
    pub authzen: Option<AuthZenSpec>,
}

/// `[authzen]`, located for build errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthZenSpec {
    /// The mapping.
    pub mapping: Arc<AuthZenMapping>,
    /// Where `pep_action` was written (or the table, when defaulted).
    pub pep_action_at: Location,
    /// Where `action_type` was written.
    pub action_type_at: Location,
    /// Where each `types` entry was written, in `mapping.types` order.
    pub types_at: Vec<Location>,
}

impl Spec {
    /// Every single document a build reads (not the policy folder), for watching.
    pub fn documents(&self) -> impl Iterator<Item = &Document> {
        let id = &self.identity;
        std::iter::once(&self.policies.schema)
            .chain(self.policies.entities.iter())
            .chain(id.intermediates.iter().map(|d| &d.value))
            .chain(id.revocation.iter().map(|d| &d.value))
            .chain(
                id.trust_domains
                    .iter()
                    .filter_map(|t| t.crl.as_ref().map(|c| &c.value)),
            )
            .chain(
                id.trust_domains
                    .iter()
                    .filter_map(|t| t.bundle.as_ref().map(|b| &b.value)),
            )
            .chain(
                self.issuers
                    .iter()
                    .flat_map(|i| i.keys.iter().chain(i.hmac_secret.iter()).map(|d| &d.value)),
            )
    }
}

/// `[identity]`.
#[derive(Debug, Clone)]
pub struct IdentitySpec {
    /// Where the workload identity comes from.
    pub source: IdentitySource,
    /// The allowed trust domains, each with its own bundle.
    pub trust_domains: Vec<TrustDomainSpec>,
    /// Where the trust domains are configured, for errors about the set as a whole.
    pub trust_domains_at: Location,
    /// PEM files of intermediates to build paths through.
    pub intermediates: Vec<Located<Document>>,
    /// Minimum RSA modulus for leaf keys (at least 2048).
    pub min_rsa_bits: usize,
    /// Accept a DNS SAN as the workload name when a certificate has no URI SAN.
    pub insecure_dns_san_fallback: bool,
    /// Allow one CA certificate in several trust domains' bundles.
    pub insecure_shared_ca_across_trust_domains: bool,
    /// Refuse requests that carry a token but no workload identity.
    pub require_workload: bool,
    /// Refuse requests without a bearer token.
    pub require_token: bool,
    /// The revocation file (`[revocation] file`).
    pub revocation: Option<Located<Document>>,
}

impl Spec {
    /// True when a document must be fetched at run time (a JWKS URL, OIDC discovery, a
    /// bundle endpoint): building from files alone would leave it out.
    pub fn has_live_sources(&self) -> bool {
        self.issuers
            .iter()
            .any(|i| i.remote.is_some() || i.status_lists.is_some())
            || self
                .identity
                .trust_domains
                .iter()
                .any(|d| d.endpoint.is_some())
    }
}

/// One `[[identity.trust_domains]]` table.
#[derive(Debug, Clone)]
pub struct TrustDomainSpec {
    /// The trust domain, already checked to be one.
    pub name: String,
    /// Its CA bundle (PEM or SPIFFE bundle JSON); `None` only where no certificate is verified.
    pub bundle: Option<Located<Document>>,
    /// Its SPIFFE bundle endpoint, when its bundle is polled from there (federation).
    pub endpoint: Option<BundleEndpointSpec>,
    /// Where its JWT authorities come from (a SPIFFE bundle's `jwt-svid` keys, or the
    /// Workload API's JWT bundle), for JWT-SVIDs.
    pub jwt_bundle: Option<Located<Document>>,
    /// Its certificate revocation lists (PEM).
    pub crl: Option<Located<Document>>,
}

/// A federated trust domain's bundle endpoint (SPIFFE Federation, `https_web` profile).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BundleEndpointSpec {
    /// The trust domain the bundle is for (a bundle does not name its domain).
    pub trust_domain: String,
    /// The endpoint URL.
    pub url: String,
    /// Past this many seconds without a successful poll, the bundle is trusted no more.
    pub max_age_seconds: u64,
}

/// `[jwt_svid]`: JWT-SVIDs accepted as bearer tokens.
#[derive(Debug, Clone)]
pub struct JwtSvidSpec {
    /// A JWT-SVID must name one of these in `aud`.
    pub audiences: Vec<String>,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowance for `exp`/`nbf`.
    pub leeway_seconds: u64,
}

/// One `[[issuers]]` table.
#[derive(Debug, Clone)]
pub struct IssuerSpec {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted audiences (at least one).
    pub audiences: Vec<String>,
    /// Allowed algorithms (at least one; HMAC ones only with a secret).
    pub algorithms: Vec<Algorithm>,
    /// The JWKS file; `None` for an issuer whose keys are fetched, or an HMAC-only one.
    pub keys: Option<Located<Document>>,
    /// Where the issuer's keys are fetched from at run time, instead of a file.
    pub remote: Option<RemoteJwksSpec>,
    /// The token status lists its tokens may name, when any.
    pub status_lists: Option<StatusListSpec>,
    /// The HMAC secret.
    pub hmac_secret: Option<Located<Document>>,
    /// Clock skew allowance for `exp`/`nbf`.
    pub leeway_seconds: u64,
    /// Claims that must be present.
    pub required_claims: Vec<String>,
    /// Require RFC 8705 certificate-bound tokens.
    pub require_binding: bool,
    /// How the issuer signals that an app acts for a user.
    pub delegation: Delegation,
    /// Claims naming the client, tried in order.
    pub client_claims: Vec<String>,
    /// Users are `User::"<sub>"` rather than qualified by the issuer.
    pub unqualified_users: bool,
}

/// An issuer's keys fetched at run time: the fetcher's whole brief for that issuer. Equal
/// specs share one fetcher across rebuilds; a changed one starts afresh.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteJwksSpec {
    /// The issuer, for discovery and for messages.
    pub issuer: String,
    /// Where the JWKS comes from.
    pub location: JwksLocation,
    /// Bounds on the refresh interval a response's `Cache-Control: max-age` may set, seconds.
    pub refresh_min_seconds: u64,
    /// See `refresh_min_seconds`.
    pub refresh_max_seconds: u64,
    /// The refresh interval when a response sets none, seconds.
    pub refresh_seconds: u64,
    /// Past this many seconds without a successful fetch, the issuer's tokens are refused.
    pub max_age_seconds: u64,
    /// Least time between two fetches asked for by unknown `kid`s, seconds.
    pub unknown_kid_cooldown_seconds: u64,
    /// `/readyz` does not wait for this issuer's first key set.
    pub optional: bool,
}

/// Where a fetched JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksLocation {
    /// A JWKS URL.
    Uri(String),
    /// `{issuer}/.well-known/openid-configuration`'s `jwks_uri`, its `issuer` checked.
    Discovery,
}

impl RemoteJwksSpec {
    /// What is fetched, as messages name it.
    pub fn describe(&self) -> String {
        match &self.location {
            JwksLocation::Uri(uri) => uri.clone(),
            JwksLocation::Discovery => format!("OIDC discovery of {}", self.issuer),
        }
    }
}

/// `[policies]`.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// The `.cedarschema` document.
    pub schema: Document,
    /// The folder of `.cedar` files.
    pub folder: Folder,
    /// The entities JSON document.
    pub entities: Option<Document>,
}

/// One `[[routes]]` table, compiled.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// The compiled route.
    pub route: Route,
    /// Where its action was written.
    pub action_at: Location,
    /// Where its resource was written.
    pub resource_at: Location,
}

/// `[unmatched]`.
#[derive(Debug, Clone)]
pub struct UnmatchedSpec {
    /// The Cedar action id.
    pub action: Located<Arc<str>>,
    /// The resource (no parameters).
    pub resource: ResourceTemplate,
    /// Where the resource was written.
    pub resource_at: Location,
}
