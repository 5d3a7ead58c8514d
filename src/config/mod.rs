//! Configuration: one TOML file parsed at a single boundary into types that cannot hold
//! invalid states, plus the reloadable [`Snapshot`] built from it.

mod error;
mod files;
mod raw;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use toml::Spanned;

pub use error::ConfigError;
pub use files::ConfigSource;
use raw::RawConfig;

use crate::audit::AuditTarget;
use crate::identity::bundle::parse_bundle;
use crate::identity::cert::{TrustDomainBundle, TrustStore};
use crate::identity::jwks::KeySet;
use crate::identity::spiffe::is_valid_trust_domain;
use crate::identity::token::{Delegation, Issuer, Issuers};
use crate::identity::{Identity, IdentitySource};
use crate::mapping::routes::{ResourceTemplate, Route, Routes};
use crate::policy::{PolicyStore, SourceFile, line_column};
use crate::snapshot::{ResponseSettings, Snapshot};

/// Process settings that apply at start (listeners, limits, cache bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// ext_authz gRPC listener.
    pub listen: SocketAddr,
    /// Admin HTTP listener, if enabled.
    pub admin_listen: Option<SocketAddr>,
    /// Unix domain socket for ext_authz, if enabled.
    pub unix_socket: Option<PathBuf>,
    /// mTLS for the TCP ext_authz listener, if enabled.
    pub tls: Option<ListenerTls>,
    /// Per-Check deadline.
    pub request_timeout: Duration,
    /// Checks in flight at once.
    pub max_concurrent_requests: usize,
    /// Entries per cache.
    pub cache_max_entries: usize,
    /// Cache entry lifetime.
    pub cache_ttl_seconds: i64,
    /// Audit log target, if enabled.
    pub audit: Option<AuditTarget>,
    /// Audit queue length.
    pub audit_queue: usize,
}

/// PEM material for the gRPC listener's mTLS.
#[derive(Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Server certificate chain.
    pub cert_pem: String,
    /// Server private key.
    pub key_pem: String,
    /// CA bundle for client certificates.
    pub client_ca_pem: String,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls").finish_non_exhaustive()
    }
}

/// A loaded configuration.
#[derive(Debug)]
pub struct Config {
    /// Start-time settings.
    pub settings: Settings,
    /// Everything a decision depends on.
    pub snapshot: Snapshot,
    /// Files and folders the snapshot was built from (empty for the embedded default), for
    /// live reload.
    pub watched: Watched,
}

/// What a snapshot was built from, as live reload watches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// Single files: the config, schema, entities, bundles, intermediates, JWKS, secrets.
    pub files: Vec<PathBuf>,
    /// Folders read recursively (the policy folder).
    pub trees: Vec<PathBuf>,
}

/// Helper that turns spans into located errors for one config file.
struct Locator<'a> {
    file: &'a SourceFile,
}

impl Locator<'_> {
    fn invalid<T>(
        &self,
        spanned: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(&self.file.text, spanned.span().start);
        ConfigError::Invalid {
            file: self.file.name.clone(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads, parses and validates the config and everything it names.
    pub fn load(source: &ConfigSource, generation: u64) -> Result<Self, ConfigError> {
        let file = source.read_config()?;
        let raw: RawConfig = toml::from_str(&file.text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(&file.text, span.start));
            ConfigError::Syntax {
                file: file.name.clone(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        let at = Locator { file: &file };
        let settings = settings(&at, source, &raw)?;
        let identity = identity(&at, source, &raw)?;
        let policies = policies(source, &raw)?;
        let routes = routes(&at, &raw, &policies)?;
        let response = response(&at, &raw)?;
        let watched = watched(source, &raw);
        Ok(Self {
            watched,
            settings,
            snapshot: Snapshot {
                generation,
                identity,
                routes,
                policies,
                response: Arc::new(response),
            },
        })
    }
}

/// Every file (and the policy folder) a snapshot depends on.
fn watched(source: &ConfigSource, raw: &RawConfig) -> Watched {
    let ConfigSource::File(config) = source else {
        return Watched::default();
    };
    let id = &raw.identity;
    let named = std::iter::once(&raw.policies.schema)
        .chain(raw.policies.entities.iter())
        .chain(id.intermediates.iter())
        .chain(
            raw.issuers
                .iter()
                .flat_map(|i| i.jwks_file.iter().chain(i.hmac_secret_file.iter())),
        );
    let bundles = trust_domain_tables(raw)
        .into_iter()
        .filter_map(|(_, table)| table.bundle)
        .filter_map(|p| source.resolve(&p));
    Watched {
        files: std::iter::once(config.clone())
            .chain(named.filter_map(|p| source.resolve(p.get_ref())))
            .chain(bundles)
            .collect(),
        trees: source
            .resolve(raw.policies.dir.get_ref())
            .into_iter()
            .collect(),
    }
}

/// The `[[identity.trust_domains]]` tables that parse, for watching (errors are reported by
/// [`identity`]).
fn trust_domain_tables(raw: &RawConfig) -> Vec<(usize, raw::RawTrustDomain)> {
    raw.identity
        .trust_domains
        .iter()
        .flat_map(|list| list.get_ref().iter().cloned().enumerate())
        .filter_map(|(i, v)| v.try_into().ok().map(|t| (i, t)))
        .collect()
}

fn settings(
    at: &Locator<'_>,
    source: &ConfigSource,
    raw: &RawConfig,
) -> Result<Settings, ConfigError> {
    let addr = |s: &Spanned<String>, key: &str| {
        SocketAddr::from_str(s.get_ref())
            .map_err(|e| at.invalid(s, key, format!("`{}` is not ip:port: {e}", s.get_ref())))
    };
    let admin = &raw.server.admin_listen;
    let embedded = |s: &Spanned<String>, key: &str| {
        at.invalid(
            s,
            key,
            "the embedded default cannot name files; use a config file",
        )
    };
    let unix_socket = match &raw.server.unix_socket {
        Some(path) => Some(
            source
                .resolve(path.get_ref())
                .ok_or_else(|| embedded(path, "server.unix_socket"))?,
        ),
        None => None,
    };
    let tls = match &raw.server.tls {
        Some(tls) => Some(listener_tls(at, source, tls)?),
        None => None,
    };
    Ok(Settings {
        listen: addr(&raw.server.listen, "server.listen")?,
        admin_listen: if admin.get_ref().is_empty() {
            None
        } else {
            Some(addr(admin, "server.admin_listen")?)
        },
        unix_socket,
        tls,
        request_timeout: Duration::from_millis(raw.server.request_timeout_ms.max(1)),
        max_concurrent_requests: raw.server.max_concurrent_requests.max(1),
        cache_max_entries: raw.cache.max_entries,
        cache_ttl_seconds: raw.cache.ttl_seconds.max(0),
        audit: match raw.audit.file.get_ref().as_str() {
            "" => None,
            "-" => Some(AuditTarget::Stdout),
            path => Some(AuditTarget::File(
                source
                    .resolve(path)
                    .ok_or_else(|| embedded(&raw.audit.file, "audit.file"))?,
            )),
        },
        audit_queue: raw.audit.queue.max(1),
    })
}

/// Reads and checks the listener's mTLS material now, so `validate` (and a reload's log) names
/// a bad file instead of `serve` failing at bind time: the certificate chain parses, the key
/// is one rustls can sign with and belongs to the certificate, and the client CA bundle holds
/// usable trust anchors.
fn listener_tls(
    at: &Locator<'_>,
    source: &ConfigSource,
    tls: &raw::RawTls,
) -> Result<ListenerTls, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certificates = |key: &Spanned<String>, name: &str| {
        let text = source.read(key.get_ref())?.text;
        let certs = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| at.invalid(key, name, format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(at.invalid(key, name, "holds no CERTIFICATE block"));
        }
        Ok((text, certs))
    };
    let (cert_pem, chain) = certificates(&tls.cert_file, "server.tls.cert_file")?;
    let (client_ca_pem, cas) = certificates(&tls.client_ca_file, "server.tls.client_ca_file")?;
    for ca in &cas {
        webpki::anchor_from_trusted_cert(ca).map_err(|e| {
            at.invalid(
                &tls.client_ca_file,
                "server.tls.client_ca_file",
                format!("a certificate is not a usable trust anchor: {e}"),
            )
        })?;
    }
    let key_pem = source.read(tls.key_file.get_ref())?.text;
    let bad_key = |message: String| at.invalid(&tls.key_file, "server.tls.key_file", message);
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| bad_key(format!("not a PEM private key: {e}")))?;
    let signer = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad_key(format!("unsupported private key: {e}")))?;
    rustls::sign::CertifiedKey::new(chain, signer)
        .keys_match()
        .map_err(|_| {
            bad_key("the key does not belong to `server.tls.cert_file`'s certificate".into())
        })?;
    Ok(ListenerTls {
        cert_pem,
        key_pem,
        client_ca_pem,
    })
}

fn identity(
    at: &Locator<'_>,
    source: &ConfigSource,
    raw: &RawConfig,
) -> Result<Identity, ConfigError> {
    let id = &raw.identity;
    let kind = match id.source.get_ref().as_str() {
        "certificate" => IdentitySource::Certificate,
        "xfcc" => IdentitySource::Xfcc,
        "envoy_principal" => IdentitySource::EnvoyPrincipal,
        other => {
            return Err(at.invalid(
                &id.source,
                "identity.source",
                format!("`{other}` is not one of `certificate`, `xfcc`, `envoy_principal`"),
            ));
        }
    };
    let mut intermediates = Vec::new();
    for (i, path) in id.intermediates.iter().enumerate() {
        let file = source.read(path.get_ref())?;
        intermediates.extend(parse_bundle(&file.text).map_err(|e| {
            at.invalid(
                path,
                &format!("identity.intermediates[{i}]"),
                format!("{}: {e}", file.name),
            )
        })?);
    }
    let bundles = trust_domains(at, source, id, kind)?;
    let trust_domains: Vec<String> = bundles.iter().map(|b| b.trust_domain.clone()).collect();
    if *id.min_rsa_bits.get_ref() < 2048 {
        return Err(at.invalid(
            &id.min_rsa_bits,
            "identity.min_rsa_bits",
            "must be at least 2048",
        ));
    }
    let trust = TrustStore::new(
        &bundles,
        intermediates,
        *id.min_rsa_bits.get_ref(),
        id.insecure_dns_san_fallback,
    )
    .map_err(|e| at.invalid(&id.source, "identity.trust_domains", e.to_string()))?;
    let mut issuers = Vec::new();
    for (i, issuer) in raw.issuers.iter().enumerate() {
        if raw
            .issuers
            .iter()
            .take(i)
            .any(|o| o.issuer.get_ref() == issuer.issuer.get_ref())
        {
            return Err(at.invalid(
                &issuer.issuer,
                &format!("issuers[{i}].issuer"),
                "duplicate issuer",
            ));
        }
        if *issuer.unqualified_users.get_ref()
            && let Some(first) = raw
                .issuers
                .iter()
                .take(i)
                .find(|o| *o.unqualified_users.get_ref())
        {
            return Err(at.invalid(
                &issuer.unqualified_users,
                &format!("issuers[{i}].unqualified_users"),
                format!(
                    "`{}` already has unqualified users; two issuers sharing `User::\"<sub>\"` \
                     could speak for each other's users",
                    first.issuer.get_ref()
                ),
            ));
        }
        issuers.push(build_issuer(at, source, issuer, i)?);
    }
    Ok(Identity {
        source: kind,
        trust,
        trust_domains,
        issuers: Issuers::new(issuers),
        require_workload: id.require_workload,
        require_token: id.require_token,
    })
}

/// What to write instead of the removed flat keys.
const TRUST_DOMAINS_MIGRATION: &str = "trust bundles now belong to trust domains, so a CA can \
vouch only for its own domain; replace `trust_bundles` and the list of names with one table \
per domain:\n\n[[identity.trust_domains]]\nname = \"example.org\"\nbundle = \"ca.pem\"\n";

/// `[[identity.trust_domains]]`: names checked, bundles read, and no CA shared between
/// domains unless the config says so explicitly.
fn trust_domains(
    at: &Locator<'_>,
    source: &ConfigSource,
    id: &raw::RawIdentity,
    kind: IdentitySource,
) -> Result<Vec<TrustDomainBundle>, ConfigError> {
    if let Some(old) = &id.trust_bundles {
        return Err(at.invalid(old, "identity.trust_bundles", TRUST_DOMAINS_MIGRATION));
    }
    let Some(list) = &id.trust_domains else {
        return Err(at.invalid(
            &id.source,
            "identity.trust_domains",
            "add at least one `[[identity.trust_domains]]` table with `name` (and `bundle`)",
        ));
    };
    let mut bundles: Vec<TrustDomainBundle> = Vec::new();
    for (i, value) in list.get_ref().iter().enumerate() {
        let key = format!("identity.trust_domains[{i}]");
        if value.is_str() {
            return Err(at.invalid(list, &key, TRUST_DOMAINS_MIGRATION));
        }
        let table: raw::RawTrustDomain = value
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| at.invalid(list, &key, e.message().to_owned()))?;
        if !is_valid_trust_domain(&table.name) {
            return Err(at.invalid(
                list,
                &format!("{key}.name"),
                format!(
                    "`{}` is not a trust domain (lower-case [a-z0-9.-_])",
                    table.name
                ),
            ));
        }
        if bundles.iter().any(|b| b.trust_domain == table.name) {
            return Err(at.invalid(
                list,
                &format!("{key}.name"),
                format!("trust domain `{}` is listed twice", table.name),
            ));
        }
        let authorities = match &table.bundle {
            Some(path) => {
                let file = source.read(path)?;
                parse_bundle(&file.text).map_err(|e| {
                    at.invalid(
                        list,
                        &format!("{key}.bundle"),
                        format!("{}: {e}", file.name),
                    )
                })?
            }
            None if kind == IdentitySource::Certificate => {
                return Err(at.invalid(
                    list,
                    &format!("{key}.bundle"),
                    format!(
                        "source `certificate` verifies certificates against each trust domain's \
                         own bundle: set `bundle` for `{}`",
                        table.name
                    ),
                ));
            }
            None => Vec::new(),
        };
        if !id.insecure_shared_ca_across_trust_domains
            && let Some(other) = bundles
                .iter()
                .find(|b| b.authorities.iter().any(|a| authorities.contains(a)))
        {
            return Err(at.invalid(
                list,
                &format!("{key}.bundle"),
                format!(
                    "a CA certificate is in the bundles of both `{}` and `{}`, so it could \
                     vouch for either; give each trust domain its own CA, or set \
                     `identity.insecure_shared_ca_across_trust_domains = true` if one CA \
                     really issues for both",
                    other.trust_domain, table.name
                ),
            ));
        }
        bundles.push(TrustDomainBundle {
            trust_domain: table.name,
            authorities,
        });
    }
    if bundles.is_empty() {
        return Err(at.invalid(
            list,
            "identity.trust_domains",
            "list at least one trust domain",
        ));
    }
    if id.insecure_shared_ca_across_trust_domains {
        tracing::warn!(
            "identity.insecure_shared_ca_across_trust_domains is on: a CA in several trust \
             domains' bundles vouches for all of them"
        );
    }
    Ok(bundles)
}

fn build_issuer(
    at: &Locator<'_>,
    source: &ConfigSource,
    raw: &raw::RawIssuer,
    i: usize,
) -> Result<Issuer, ConfigError> {
    let key = |k: &str| format!("issuers[{i}].{k}");
    if raw.issuer.get_ref().is_empty() {
        return Err(at.invalid(&raw.issuer, &key("issuer"), "must not be empty"));
    }
    // `#` separates issuer from client and user in principals (`<issuer>#<client>`); an issuer
    // identifier never has a fragment (OpenID Connect Discovery §3, RFC 8414 §2).
    if raw.issuer.get_ref().contains('#') {
        return Err(at.invalid(
            &raw.issuer,
            &key("issuer"),
            "an issuer identifier has no `#` fragment",
        ));
    }
    if raw.audiences.get_ref().is_empty() {
        return Err(at.invalid(
            &raw.audiences,
            &key("audiences"),
            "list at least one audience",
        ));
    }
    let hmac_secret = match &raw.hmac_secret_file {
        Some(path) => {
            let secret = source.read(path.get_ref())?;
            let secret = secret.text.trim_end_matches(['\n', '\r']);
            if secret.len() < 32 {
                return Err(at.invalid(
                    path,
                    &key("hmac_secret_file"),
                    "secret must be at least 32 bytes",
                ));
            }
            Some(DecodingKey::from_secret(secret.as_bytes()))
        }
        None => None,
    };
    let mut algorithms = Vec::new();
    for name in raw.algorithms.get_ref() {
        let alg = Algorithm::from_str(name).map_err(|_| {
            at.invalid(
                &raw.algorithms,
                &key("algorithms"),
                format!("`{name}` is not a supported algorithm (`none` never is)"),
            )
        })?;
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        if hmac && hmac_secret.is_none() {
            return Err(at.invalid(
                &raw.algorithms,
                &key("algorithms"),
                format!("`{name}` needs `hmac_secret_file`"),
            ));
        }
        algorithms.push(alg);
    }
    if algorithms.is_empty() {
        return Err(at.invalid(
            &raw.algorithms,
            &key("algorithms"),
            "list at least one algorithm",
        ));
    }
    let keys = match &raw.jwks_file {
        Some(path) => {
            let file = source.read(path.get_ref())?;
            KeySet::from_json(&file.text)
                .map_err(|e| at.invalid(path, &key("jwks_file"), format!("{}: {e}", file.name)))?
        }
        None if hmac_secret.is_some() => KeySet::default(),
        None => {
            return Err(at.invalid(
                &raw.issuer,
                &key("jwks_file"),
                "set `jwks_file` (or `hmac_secret_file`)",
            ));
        }
    };
    let delegation = match raw.delegation.get_ref().as_str() {
        "act_or_subject" => Delegation::ActOrSubject,
        "act_claim_only" => Delegation::ActClaimOnly,
        "act" => {
            return Err(at.invalid(
                &raw.delegation,
                &key("delegation"),
                "`act` is no longer accepted: it treated users' tokens as the app acting for \
                 itself. Remove the key for the safe default (`act_or_subject`), or write \
                 `act_claim_only` if this issuer's app tokens carry a `sub` other than the client",
            ));
        }
        other => {
            return Err(at.invalid(
                &raw.delegation,
                &key("delegation"),
                format!("`{other}` is not `act_or_subject` or `act_claim_only`"),
            ));
        }
    };
    Ok(Issuer::new(
        raw.issuer.get_ref().clone(),
        raw.audiences.get_ref().clone(),
        algorithms,
        keys,
        hmac_secret,
        raw.leeway_seconds,
        raw.required_claims.clone(),
        raw.require_binding,
        delegation,
        raw.client_claims.clone(),
        *raw.unqualified_users.get_ref(),
    ))
}

fn policies(source: &ConfigSource, raw: &RawConfig) -> Result<PolicyStore, ConfigError> {
    let schema = source.read(raw.policies.schema.get_ref())?;
    let files = source.read_cedar_dir(raw.policies.dir.get_ref())?;
    let entities = raw
        .policies
        .entities
        .as_ref()
        .map(|p| source.read(p.get_ref()))
        .transpose()?;
    PolicyStore::load(&schema, &files, entities.as_ref()).map_err(ConfigError::Policies)
}

fn routes(at: &Locator<'_>, raw: &RawConfig, store: &PolicyStore) -> Result<Routes, ConfigError> {
    let actions: Vec<String> = store
        .schema()
        .actions()
        .map(|uid| uid.id().unescaped().to_owned())
        .collect();
    let check_action = |action: &Spanned<String>, key: &str| {
        if actions.iter().any(|a| a == action.get_ref()) {
            Ok(())
        } else {
            Err(at.invalid(
                action,
                key,
                format!("action `{}` is not in the schema", action.get_ref()),
            ))
        }
    };
    // A resource type the action cannot take would fail schema validation on every request.
    let check_resource =
        |action: &Spanned<String>, type_name: &str, at_span: &Spanned<String>, key: &str| {
            let uid = cedar_policy::EntityUid::from_type_name_and_id(
                cedar_policy::EntityTypeName::from_str("Action")
                    .map_err(|e| at.invalid(action, key, e.to_string()))?,
                cedar_policy::EntityId::new(action.get_ref()),
            );
            let allowed: Vec<String> = store
                .schema()
                .resources_for_action(&uid)
                .map(|types| types.map(ToString::to_string).collect())
                .unwrap_or_default();
            if allowed.iter().any(|t| t == type_name) {
                Ok(())
            } else {
                Err(at.invalid(
                at_span,
                key,
                format!(
                    "action `{}` does not apply to `{type_name}` in the schema (it applies to: {})",
                    action.get_ref(),
                    allowed.join(", ")
                ),
            ))
            }
        };
    let mut compiled = Vec::new();
    for (i, route) in raw.routes.iter().enumerate() {
        check_action(&route.action, &format!("routes[{i}].action"))?;
        let attrs: Vec<(String, String)> = route
            .resource_attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let resource = ResourceTemplate::parse(route.resource.get_ref(), &attrs).map_err(|e| {
            at.invalid(
                &route.resource,
                &format!("routes[{i}].resource"),
                e.to_string(),
            )
        })?;
        check_resource(
            &route.action,
            &resource.type_name,
            &route.resource,
            &format!("routes[{i}].resource"),
        )?;
        let mut compiled_route =
            Route::compile(route.pattern.get_ref(), route.action.get_ref(), resource).map_err(
                |e| at.invalid(&route.pattern, &format!("routes[{i}].match"), e.to_string()),
            )?;
        if let Some(hosts) = &route.hosts {
            compiled_route = compiled_route
                .with_hosts(hosts.get_ref())
                .map_err(|e| at.invalid(hosts, &format!("routes[{i}].hosts"), e.to_string()))?;
        }
        compiled_route.line = line_column(&at.file.text, route.pattern.span().start).0;
        compiled.push(compiled_route);
    }
    let fallback = match &raw.unmatched {
        Some(u) => {
            check_action(&u.action, "unmatched.action")?;
            let resource = ResourceTemplate::parse(u.resource.get_ref(), &[])
                .map_err(|e| at.invalid(&u.resource, "unmatched.resource", e.to_string()))?;
            check_resource(
                &u.action,
                &resource.type_name,
                &u.resource,
                "unmatched.resource",
            )?;
            Some((Arc::from(u.action.get_ref().as_str()), resource))
        }
        None => None,
    };
    Ok(Routes::new(compiled, fallback))
}

fn response(at: &Locator<'_>, raw: &RawConfig) -> Result<ResponseSettings, ConfigError> {
    let r = &raw.response;
    let header = |h: &Spanned<String>, key: &str| {
        let name = h.get_ref().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(name)
        } else {
            Err(at.invalid(h, key, format!("`{}` is not a header name", h.get_ref())))
        }
    };
    let status = *r.internal_error_status.get_ref();
    if !(400..=599).contains(&status) {
        return Err(at.invalid(
            &r.internal_error_status,
            "response.internal_error_status",
            "must be 400-599",
        ));
    }
    Ok(ResponseSettings {
        principal_header: header(&r.principal_header, "response.principal_header")?,
        decision_id_header: header(&r.decision_id_header, "response.decision_id_header")?,
        strip_authorization: r.strip_authorization,
        expose_policy_ids: r.expose_policy_ids,
        internal_error_status: status,
    })
}

#[cfg(test)]
mod tests;
