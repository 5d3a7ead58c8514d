//! Configuration: one TOML file parsed at a single boundary into [`Settings`] (what applies
//! at start) and a [`Spec`] (what every snapshot is built from), both validated as far as
//! they can be without reading the documents they name. [`snapshot::build`] turns the spec
//! and a [`Source`]'s documents into a [`Snapshot`]; [`load`] does both for a first start.
//!
//! [`snapshot::build`]: crate::snapshot::build::build

mod error;
mod files;
#[cfg(test)]
pub(crate) mod fixture;
mod raw;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use toml::Spanned;

pub use error::ConfigError;
pub use files::ConfigSource;
use raw::RawConfig;

use crate::audit::{AuditSettings, FileSettings, OtlpSettings};
use crate::identity::IdentitySource;
use crate::identity::spiffe::is_valid_trust_domain;
use crate::identity::status_list::StatusListSpec;
use crate::identity::token::Delegation;
use crate::mapping::authzen::AuthZenMapping;
use crate::mapping::routes::{ResourceTemplate, Route};
use crate::policy::{SourceFile, line_column};
use crate::signals::SignalSettings;
use crate::snapshot::build::build;
use crate::snapshot::source::{Document, Folder, Source, Streamed};
use crate::snapshot::spec::{
    AuthZenSpec, BundleEndpointSpec, IdentitySpec, IssuerSpec, JwksLocation, JwtSvidSpec, Located,
    Location, PolicySpec, RemoteJwksSpec, RouteSpec, Spec, TrustDomainSpec, UnmatchedSpec,
};
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
    /// Decision records: sinks, queue, inventory.
    pub audit: AuditSettings,
    /// How documents are fetched at run time.
    pub fetch: FetchSettings,
    /// The SPIFFE Workload API, when bundles are streamed from it.
    pub workload_api: Option<WorkloadApiSettings>,
    /// The TCP gRPC listener serves mTLS with Tollgate's own SVID from the Workload API.
    pub workload_api_tls: bool,
    /// HTTP forward-auth and AuthZEN listener, if enabled (same `tls` as the gRPC listener).
    pub http_listen: Option<SocketAddr>,
    /// AuthZEN-only listener, if enabled.
    pub authzen_listen: Option<SocketAddr>,
    /// How long an HTTP connection may take to finish its handshake or send a request head.
    pub http_idle_timeout: Duration,
    /// Proxies the HTTP listener believes about client certificates and addresses.
    pub trusted_proxies: Vec<TrustedProxy>,
}

/// `[[server.trusted_proxies]]`: a proxy in front of the HTTP listener, recognised by where it
/// connects from or by its mTLS certificate, and what it is believed about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxy {
    /// Name for logs and deny messages.
    pub name: String,
    /// How it forwards the client certificate; `None`: it forwards none (client address only).
    pub certificate: Option<CertificateHeader>,
    /// Source networks it connects from.
    pub networks: Vec<ipnet::IpNet>,
    /// URI or DNS SANs of its client certificate (the HTTP listener's mTLS verified it).
    pub identities: Vec<String>,
}

/// A proxy's convention for forwarding a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateHeader {
    /// Envoy's `x-forwarded-client-cert`, `Cert=`/`Chain=` of its last element.
    Xfcc,
    /// RFC 9440 `Client-Cert` (and `Client-Cert-Chain`).
    Rfc9440,
    /// Traefik's `X-Forwarded-Tls-Client-Cert` (`passTLSClientCert.pem`).
    Traefik,
    /// nginx's `$ssl_client_escaped_cert`, in the named header (lower-case).
    Nginx(String),
}

impl CertificateHeader {
    /// The (lower-case) headers this convention uses.
    pub fn headers(&self) -> &[&str] {
        match self {
            Self::Xfcc => &["x-forwarded-client-cert"],
            Self::Rfc9440 => &["client-cert", "client-cert-chain"],
            Self::Traefik => &["x-forwarded-tls-client-cert"],
            Self::Nginx(_) => &[],
        }
    }

    /// Whether `name` (lower-case) is one of this convention's headers.
    pub fn uses(&self, name: &str) -> bool {
        match self {
            Self::Nginx(header) => header == name,
            other => other.headers().contains(&name),
        }
    }
}

/// `identity.workload_api`: where the SPIFFE Workload API listens, and how long its last
/// bundles are trusted while it cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadApiSettings {
    /// `unix:///…` or `tcp://ip:port`, the environment variable already read.
    pub endpoint: String,
    /// Past this long disconnected, the streamed bundles are dropped (fail closed).
    pub max_age: Duration,
}

/// `[fetch]`: the HTTP client behind fetched documents (JWKS URLs, OIDC discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSettings {
    /// PEM CA certificates trusted for HTTPS fetches; `None`: the built-in web roots.
    pub ca_pem: Option<String>,
    /// Longest one fetch may take, connection to last byte.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// `http://` URLs are allowed (tests only).
    pub insecure_allow_http: bool,
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

/// A parsed configuration: nothing in it has read a document yet, except the listener's own
/// TLS material (so that `validate` names a bad key).
#[derive(Debug, Clone)]
pub struct Config {
    /// Start-time settings.
    pub settings: Settings,
    /// What every snapshot is built from.
    pub spec: Spec,
    /// The files and folders behind the spec (empty for the embedded default), for live
    /// reload.
    pub watched: Watched,
}

/// What a snapshot was built from, as live reload watches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// The config file itself: a change means parse again, not only build again.
    pub config: Option<PathBuf>,
    /// The documents it names: schema, entities, bundles, intermediates, JWKS, secrets.
    pub files: Vec<PathBuf>,
    /// Folders read recursively (the policy folder).
    pub trees: Vec<PathBuf>,
}

impl Watched {
    /// Everything either watches: while a new config cannot be built yet, the reloader watches
    /// what it names as well as what the config in force names.
    pub fn and(&self, other: &Watched) -> Watched {
        let merge = |a: &[PathBuf], b: &[PathBuf]| {
            let mut all: Vec<PathBuf> = a.iter().chain(b).cloned().collect();
            all.sort();
            all.dedup();
            all
        };
        Watched {
            config: self.config.clone().or_else(|| other.config.clone()),
            files: merge(&self.files, &other.files),
            trees: merge(&self.trees, &other.trees),
        }
    }
}

/// Parses the config at `source` and builds generation `generation` of its snapshot from the
/// same source's files: what `serve`, `validate`, `check` and `test` start from.
pub fn load(source: &ConfigSource, generation: u64) -> Result<(Config, Snapshot), ConfigError> {
    let config = Config::parse(source)?;
    let snapshot = config.build(source, generation)?;
    Ok((config, snapshot))
}

/// Turns spans into located errors for one config file.
struct Locator<'a> {
    file: &'a SourceFile,
}

impl Locator<'_> {
    fn locate<T>(&self, spanned: &Spanned<T>, key: &str) -> Location {
        let (line, column) = line_column(&self.file.text, spanned.span().start);
        Location {
            file: self.file.name.clone(),
            line,
            column,
            key: key.to_owned(),
        }
    }

    fn invalid<T>(
        &self,
        spanned: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            at: self.locate(spanned, key),
            message: message.into(),
        }
    }

    /// A file the config names, with where it is named.
    fn document(&self, path: &Spanned<String>, key: &str) -> Located<Document> {
        Located {
            value: Document::File(path.get_ref().clone()),
            at: self.locate(path, key),
        }
    }
}

impl Config {
    /// Reads, parses and validates the config file; reads no other file but the listener's
    /// TLS material.
    pub fn parse(source: &ConfigSource) -> Result<Self, ConfigError> {
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
        let (routes, unmatched) = routes(&at, &raw)?;
        let spec = Spec {
            identity: identity(&at, &raw)?,
            issuers: issuers(&at, &raw)?,
            jwt_svid: jwt_svid(&at, &raw)?,
            policies: PolicySpec {
                schema: Document::File(raw.policies.schema.get_ref().clone()),
                folder: Folder(raw.policies.dir.get_ref().clone()),
                entities: raw
                    .policies
                    .entities
                    .as_ref()
                    .map(|p| Document::File(p.get_ref().clone())),
            },
            routes,
            unmatched,
            response: Arc::new(response(&at, &raw)?),
            authzen: raw.authzen.as_ref().map(|a| authzen(&at, a)).transpose()?,
        };
        let watched = watched(source, &spec);
        Ok(Self {
            settings,
            spec,
            watched,
        })
    }

    /// Builds generation `generation` of the snapshot from `source`'s documents.
    pub fn build(&self, source: &dyn Source, generation: u64) -> Result<Snapshot, ConfigError> {
        Ok(build(&self.spec, source, generation)?)
    }
}

/// Every file (and the policy folder) a snapshot depends on.
fn watched(source: &ConfigSource, spec: &Spec) -> Watched {
    let ConfigSource::File(config) = source else {
        return Watched::default();
    };
    let resolve = |document: &Document| match document {
        Document::File(path) => source.resolve(path),
        Document::Streamed(_) | Document::Endpoint(_) => None,
    };
    let Folder(policies) = &spec.policies.folder;
    let mut files: Vec<PathBuf> = spec.documents().filter_map(resolve).collect();
    // Sorted and without repeats, as `Watched::and` makes them, so equal sets compare equal.
    files.sort();
    files.dedup();
    Watched {
        config: Some(config.clone()),
        files,
        trees: source.resolve(policies).into_iter().collect(),
    }
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
    let optional_addr = |s: &Spanned<String>, key: &str| {
        if s.get_ref().is_empty() {
            Ok(None)
        } else {
            addr(s, key).map(Some)
        }
    };
    let http_listen = optional_addr(&raw.server.http_listen, "server.http_listen")?;
    for (listen, key) in [
        (&raw.server.http_listen, "server.http_listen"),
        (&raw.server.authzen_listen, "server.authzen_listen"),
    ] {
        if listen.get_ref().is_empty() || !*raw.server.workload_api_tls.get_ref() {
            continue;
        }
        return Err(at.invalid(
            listen,
            key,
            "the HTTP listener serves TLS from `[server.tls]` files only; with \
             `workload_api_tls` it would be plaintext beside an mTLS gRPC listener",
        ));
    }
    let authzen_listen = optional_addr(&raw.server.authzen_listen, "server.authzen_listen")?;
    let trusted_proxies = raw
        .server
        .trusted_proxies
        .iter()
        .map(|proxy| trusted_proxy(at, proxy, tls.is_some()))
        .collect::<Result<Vec<_>, _>>()?;
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
        audit: audit_settings(at, source, &raw.audit, &raw.signals)?,
        fetch: fetch_settings(at, source, &raw.fetch)?,
        workload_api: workload_api(at, &raw.identity)?,
        workload_api_tls: {
            let on = &raw.server.workload_api_tls;
            if *on.get_ref() && raw.identity.workload_api.is_none() {
                return Err(at.invalid(
                    on,
                    "server.workload_api_tls",
                    "serves Tollgate's SVID from the Workload API: set `identity.workload_api`",
                ));
            }
            if *on.get_ref() && raw.server.tls.is_some() {
                return Err(at.invalid(
                    on,
                    "server.workload_api_tls",
                    "set `[server.tls]` files or `workload_api_tls`, not both",
                ));
            }
            *on.get_ref()
        },
        http_listen,
        authzen_listen,
        http_idle_timeout: Duration::from_millis(raw.server.http_idle_timeout_ms.max(1)),
        trusted_proxies,
    })
}

/// `[authzen]`: the mapping, located; the schema checks come at build time.
fn authzen(at: &Locator<'_>, raw: &raw::RawAuthZen) -> Result<AuthZenSpec, ConfigError> {
    let base_url = match &raw.base_url {
        Some(url) => {
            let text = url.get_ref().trim_end_matches('/');
            let parsed: Option<hyper::Uri> = text.parse().ok();
            if !parsed.is_some_and(|u| {
                u.scheme_str() == Some("https") && u.host().is_some() && u.query().is_none()
            }) {
                return Err(at.invalid(
                    url,
                    "authzen.base_url",
                    "must be an https URL without query (the PDP identifier of AuthZEN metadata)",
                ));
            }
            Some(text.to_owned())
        }
        None => None,
    };
    let types = raw
        .types
        .iter()
        .map(|(from, to)| (from.clone(), Arc::from(to.get_ref().as_str())))
        .collect();
    Ok(AuthZenSpec {
        mapping: Arc::new(AuthZenMapping {
            types,
            action_type: Arc::from(raw.action_type.get_ref().as_str()),
            pep_action: Arc::from(raw.pep_action.get_ref().as_str()),
            base_url,
        }),
        pep_action_at: at.locate(&raw.pep_action, "authzen.pep_action"),
        action_type_at: at.locate(&raw.action_type, "authzen.action_type"),
        types_at: raw
            .types
            .iter()
            .map(|(from, to)| at.locate(to, &format!("authzen.types.{from}")))
            .collect(),
    })
}

/// One `[[server.trusted_proxies]]` entry: a proxy must be recognisable (networks, or
/// identities on an mTLS listener), and its certificate convention known.
fn trusted_proxy(
    at: &Locator<'_>,
    raw: &raw::RawTrustedProxy,
    mtls: bool,
) -> Result<TrustedProxy, ConfigError> {
    let key = "server.trusted_proxies";
    let certificate = match &raw.certificate_format {
        None => None,
        Some(format) => Some(match (format.get_ref().as_str(), &raw.certificate_header) {
            ("nginx", Some(header)) => {
                let name = header.get_ref().trim().to_ascii_lowercase();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(at.invalid(
                        header,
                        key,
                        "`certificate_header` must be a header name (letters, digits, `-`)",
                    ));
                }
                CertificateHeader::Nginx(name)
            }
            ("nginx", None) => {
                return Err(at.invalid(
                    format,
                    key,
                    "nginx forwards `$ssl_client_escaped_cert` in a header of your choosing: \
                     name it in `certificate_header`",
                ));
            }
            (_, Some(header)) => {
                return Err(at.invalid(
                    header,
                    key,
                    "`certificate_header` is for `certificate_format = \"nginx\"` only; the \
                     other conventions fix their header names",
                ));
            }
            ("xfcc", None) => CertificateHeader::Xfcc,
            ("rfc9440", None) => CertificateHeader::Rfc9440,
            ("traefik", None) => CertificateHeader::Traefik,
            (other, None) => {
                return Err(at.invalid(
                    format,
                    key,
                    format!("`{other}` is not one of `xfcc`, `rfc9440`, `traefik`, `nginx`"),
                ));
            }
        }),
    };
    let networks = raw
        .networks
        .iter()
        .map(|net| {
            let text = net.get_ref().trim();
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| at.invalid(net, key, format!("`{text}` is not a network (CIDR)")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(first) = raw.identities.first()
        && !mtls
    {
        return Err(at.invalid(
            first,
            key,
            "`identities` are checked against the proxy's client certificate: the HTTP listener \
             needs `[server.tls]`",
        ));
    }
    if networks.is_empty() && raw.identities.is_empty() {
        return Err(at.invalid(
            &raw.name,
            key,
            format!(
                "proxy `{}` names neither `networks` nor `identities`: nothing would recognise it",
                raw.name.get_ref()
            ),
        ));
    }
    Ok(TrustedProxy {
        name: raw.name.get_ref().clone(),
        certificate,
        networks,
        identities: raw.identities.iter().map(|i| i.get_ref().clone()).collect(),
    })
}

/// The longest any maximum age may be: "never expire" is not a setting, and timers past it
/// would overflow.
const MAX_AGE_CAP: u64 = 315_360_000;

/// `identity.workload_api`, an environment variable read now so `validate` says it is unset.
fn workload_api(
    at: &Locator<'_>,
    id: &raw::RawIdentity,
) -> Result<Option<WorkloadApiSettings>, ConfigError> {
    let Some(value) = &id.workload_api else {
        return Ok(None);
    };
    let key = "identity.workload_api";
    let endpoint = if value.get_ref() == "SPIFFE_ENDPOINT_SOCKET" {
        std::env::var("SPIFFE_ENDPOINT_SOCKET").map_err(|_| {
            at.invalid(
                value,
                key,
                "names SPIFFE_ENDPOINT_SOCKET, which is not set in the environment",
            )
        })?
    } else {
        value.get_ref().clone()
    };
    let unix = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"));
    let ok = match unix {
        Some(path) => path.starts_with('/'),
        None => endpoint
            .strip_prefix("tcp://")
            .is_some_and(|a| SocketAddr::from_str(a).is_ok()),
    };
    if !ok {
        return Err(at.invalid(
            value,
            key,
            format!(
                "`{endpoint}` is not `unix:///absolute/path` or `tcp://ip:port` (or \
                 `SPIFFE_ENDPOINT_SOCKET` to read that variable)"
            ),
        ));
    }
    let max_age = &id.workload_api_max_age_seconds;
    if *max_age.get_ref() > MAX_AGE_CAP {
        return Err(at.invalid(
            max_age,
            "identity.workload_api_max_age_seconds",
            format!("must be at most {MAX_AGE_CAP} (ten years)"),
        ));
    }
    Ok(Some(WorkloadApiSettings {
        endpoint,
        max_age: Duration::from_secs((*max_age.get_ref()).max(1)),
    }))
}

/// `[fetch]`, its CA file read and checked now so `validate` names a bad one.
/// Longest audit queue: each record holds a decision's evidence (kilobytes at most), so this
/// bounds the memory a slow sink can take.
const MAX_AUDIT_QUEUE: usize = 1_000_000;

fn audit_settings(
    at: &Locator<'_>,
    source: &ConfigSource,
    raw: &raw::RawAudit,
    signals: &raw::RawSignals,
) -> Result<AuditSettings, ConfigError> {
    for (value, key) in [
        (&raw.queue, "audit.queue"),
        (&raw.otlp_queue, "audit.otlp_queue"),
    ] {
        if *value.get_ref() > MAX_AUDIT_QUEUE {
            return Err(at.invalid(
                value,
                key,
                format!("must be at most {MAX_AUDIT_QUEUE} (records held in memory)"),
            ));
        }
    }
    let file = match raw.file.get_ref().as_str() {
        "" | "-" => None,
        path => Some(FileSettings {
            path: source.resolve(path).ok_or_else(|| {
                at.invalid(
                    &raw.file,
                    "audit.file",
                    "the embedded default cannot name files; use a config file",
                )
            })?,
            max_bytes: {
                let bytes = *raw.max_file_bytes.get_ref();
                if bytes < 4096 {
                    return Err(at.invalid(
                        &raw.max_file_bytes,
                        "audit.max_file_bytes",
                        "must be at least 4096 (a file holds whole records)",
                    ));
                }
                bytes
            },
            keep: raw.max_files,
        }),
    };
    let otlp = match raw.otlp_endpoint.get_ref().as_str() {
        "" => None,
        endpoint if endpoint.starts_with("http://") || endpoint.starts_with("https://") => {
            Some(OtlpSettings {
                endpoint: endpoint.to_owned(),
                timeout: Duration::from_millis(raw.otlp_timeout_ms.max(1)),
                queue: (*raw.otlp_queue.get_ref()).max(1),
            })
        }
        _ => {
            return Err(at.invalid(
                &raw.otlp_endpoint,
                "audit.otlp_endpoint",
                "must be an http:// or https:// URL, e.g. http://otel-collector:4317",
            ));
        }
    };
    Ok(AuditSettings {
        file,
        stdout: raw.stdout || raw.file.get_ref() == "-",
        otlp,
        queue: (*raw.queue.get_ref()).max(1),
        pseudonymise_users: raw.pseudonymise_users,
        identities_max: raw.identities_max.max(1),
        signals: signal_settings(at, signals)?,
        baseline: match &signals.baseline {
            Some(path) if !path.get_ref().is_empty() => {
                Some(source.resolve(path.get_ref()).ok_or_else(|| {
                    at.invalid(
                        path,
                        "signals.baseline",
                        "the embedded default cannot name files; use a config file",
                    )
                })?)
            }
            _ => None,
        },
    })
}

/// `[signals]`: the rules' parameters, each with a lower bound that keeps it meaningful.
fn signal_settings(at: &Locator<'_>, raw: &raw::RawSignals) -> Result<SignalSettings, ConfigError> {
    if *raw.spike_multiplier.get_ref() < 2 {
        return Err(at.invalid(
            &raw.spike_multiplier,
            "signals.spike_multiplier",
            "must be at least 2 (a spike is a multiple of the usual rate)",
        ));
    }
    if *raw.burst_denials.get_ref() < 1 {
        return Err(at.invalid(
            &raw.burst_denials,
            "signals.burst_denials",
            "must be at least 1",
        ));
    }
    if *raw.identities_max.get_ref() == 0 {
        return Err(at.invalid(
            &raw.identities_max,
            "signals.identities_max",
            "must be at least 1 (set `enabled = false` to track nothing)",
        ));
    }
    if *raw.spike_min_calls.get_ref() == 0 {
        return Err(at.invalid(
            &raw.spike_min_calls,
            "signals.spike_min_calls",
            "must be at least 1: with no floor the first call after a quiet spell is a spike",
        ));
    }
    let deny = |value: &Spanned<String>, key: &str| match value.get_ref().as_str() {
        "report" => Ok(false),
        "deny" => Ok(true),
        other => Err(at.invalid(
            value,
            key,
            format!("`{other}` is not `report` (the default) or `deny`"),
        )),
    };
    let deny_new_access = deny(&raw.new_access, "signals.new_access")?;
    let shed_spikes = deny(&raw.volume_spike, "signals.volume_spike")?;
    for (on, value, key) in [
        (deny_new_access, &raw.new_access, "signals.new_access"),
        (shed_spikes, &raw.volume_spike, "signals.volume_spike"),
    ] {
        if on && !raw.enabled {
            return Err(at.invalid(
                value,
                key,
                "`deny` needs the signals judged: remove `enabled = false`",
            ));
        }
    }
    Ok(SignalSettings {
        deny_new_access,
        shed_spikes,
        enabled: raw.enabled,
        identities_max: *raw.identities_max.get_ref(),
        learn_ms: raw.learn_seconds.saturating_mul(1000),
        spike_min_calls: *raw.spike_min_calls.get_ref(),
        spike_multiplier: *raw.spike_multiplier.get_ref(),
        burst_denials: *raw.burst_denials.get_ref(),
        expiry_warning_ms: raw.expiry_warning_seconds.saturating_mul(1000),
        max_lifetime_ms: raw.max_lifetime_seconds.saturating_mul(1000),
    })
}

fn fetch_settings(
    at: &Locator<'_>,
    source: &ConfigSource,
    raw: &raw::RawFetch,
) -> Result<FetchSettings, ConfigError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let ca_pem = match &raw.ca_file {
        Some(path) => {
            let text = source.read_relative(path.get_ref())?.text;
            let certs = CertificateDer::pem_slice_iter(text.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    at.invalid(path, "fetch.ca_file", format!("not PEM certificates: {e}"))
                })?;
            if certs.is_empty() {
                return Err(at.invalid(path, "fetch.ca_file", "holds no CERTIFICATE block"));
            }
            for ca in &certs {
                webpki::anchor_from_trusted_cert(ca).map_err(|e| {
                    at.invalid(
                        path,
                        "fetch.ca_file",
                        format!("a certificate is not a usable trust anchor: {e}"),
                    )
                })?;
            }
            Some(text)
        }
        None => None,
    };
    if *raw.insecure_allow_http.get_ref() {
        tracing::warn!(
            "fetch.insecure_allow_http is on: key sets fetched over http:// can be replaced by \
             anyone on the path; use it only in tests"
        );
    }
    Ok(FetchSettings {
        ca_pem,
        timeout: Duration::from_millis(raw.timeout_ms.max(1)),
        max_response_bytes: raw.max_response_bytes.max(1),
        insecure_allow_http: *raw.insecure_allow_http.get_ref(),
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
        let text = source.read_relative(key.get_ref())?.text;
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
    let key_pem = source.read_relative(tls.key_file.get_ref())?.text;
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

fn identity(at: &Locator<'_>, raw: &RawConfig) -> Result<IdentitySpec, ConfigError> {
    let id = &raw.identity;
    let source = match id.source.get_ref().as_str() {
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
    if *id.min_rsa_bits.get_ref() < 2048 {
        return Err(at.invalid(
            &id.min_rsa_bits,
            "identity.min_rsa_bits",
            "must be at least 2048",
        ));
    }
    Ok(IdentitySpec {
        source,
        trust_domains: trust_domains(at, id, source, *raw.fetch.insecure_allow_http.get_ref())?,
        trust_domains_at: at.locate(&id.source, "identity.trust_domains"),
        intermediates: id
            .intermediates
            .iter()
            .enumerate()
            .map(|(i, path)| at.document(path, &format!("identity.intermediates[{i}]")))
            .collect(),
        min_rsa_bits: *id.min_rsa_bits.get_ref(),
        insecure_dns_san_fallback: id.insecure_dns_san_fallback,
        insecure_shared_ca_across_trust_domains: id.insecure_shared_ca_across_trust_domains,
        require_workload: id.require_workload,
        require_token: id.require_token,
        // `""` is the documented "none".
        revocation: raw
            .revocation
            .file
            .as_ref()
            .filter(|path| !path.get_ref().is_empty())
            .map(|path| at.document(path, "revocation.file")),
    })
}

/// What to write instead of the removed flat keys.
const TRUST_DOMAINS_MIGRATION: &str = "trust bundles now belong to trust domains, so a CA can \
vouch only for its own domain; replace `trust_bundles` and the list of names with one table \
per domain:\n\n[[identity.trust_domains]]\nname = \"example.org\"\nbundle = \"ca.pem\"\n";

/// `[[identity.trust_domains]]`: names checked, and a bundle for each where certificates are
/// verified (whether bundles share a CA is the builder's to check, having read them).
fn trust_domains(
    at: &Locator<'_>,
    id: &raw::RawIdentity,
    kind: IdentitySource,
    allow_http: bool,
) -> Result<Vec<TrustDomainSpec>, ConfigError> {
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
    let mut domains: Vec<TrustDomainSpec> = Vec::new();
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
        if domains.iter().any(|d| d.name == table.name) {
            return Err(at.invalid(
                list,
                &format!("{key}.name"),
                format!("trust domain `{}` is listed twice", table.name),
            ));
        }
        let bundle_key = format!("{key}.bundle");
        let endpoint = match &table.bundle_endpoint {
            Some(url) => {
                let endpoint_key = format!("{key}.bundle_endpoint");
                if table.bundle.is_some() {
                    return Err(at.invalid(
                        list,
                        &endpoint_key,
                        "set `bundle` or `bundle_endpoint`, not both",
                    ));
                }
                check_fetch_url(url, allow_http)
                    .map_err(|message| at.invalid(list, &endpoint_key, message))?;
                if table.bundle_endpoint_max_age_seconds == 0
                    || table.bundle_endpoint_max_age_seconds > MAX_AGE_CAP
                {
                    return Err(at.invalid(
                        list,
                        &format!("{key}.bundle_endpoint_max_age_seconds"),
                        format!("must be between 1 and {MAX_AGE_CAP} (ten years)"),
                    ));
                }
                Some(BundleEndpointSpec {
                    trust_domain: table.name.clone(),
                    url: url.clone(),
                    max_age_seconds: table.bundle_endpoint_max_age_seconds,
                })
            }
            None => None,
        };
        let bundle = match table.bundle {
            // Polled from the endpoint, and read as a SPIFFE bundle document.
            None if endpoint.is_some() => Some(Located {
                value: Document::Endpoint(table.name.clone()),
                at: at.locate(list, &format!("{key}.bundle_endpoint")),
            }),
            Some(path) => Some(Located {
                value: Document::File(path),
                // A table inside an array of tables keeps no spans of its own.
                at: at.locate(list, &bundle_key),
            }),
            // The domain's bundle, own or federated, as the Workload API streams it.
            None if id.workload_api.is_some() => Some(Located {
                value: Document::Streamed(Streamed::X509Bundle(table.name.clone())),
                at: at.locate(list, &format!("{key}.name")),
            }),
            None if kind == IdentitySource::Certificate => {
                return Err(at.invalid(
                    list,
                    &bundle_key,
                    format!(
                        "source `certificate` verifies certificates against each trust domain's \
                         own bundle: set `bundle` for `{}` (or `identity.workload_api` to \
                         stream it from SPIRE)",
                        table.name
                    ),
                ));
            }
            None => None,
        };
        // JWT authorities come with the bundle: a SPIFFE bundle file's `jwt-svid` keys, or
        // the Workload API's JWT bundle for the same domain.
        let jwt_bundle = bundle.as_ref().map(|bundle| match &bundle.value {
            Document::Streamed(_) => Located {
                value: Document::Streamed(Streamed::JwtBundle(table.name.clone())),
                at: bundle.at.clone(),
            },
            Document::File(_) | Document::Endpoint(_) => bundle.clone(),
        });
        let crl = table
            .crl
            .filter(|path| !path.is_empty())
            .map(|path| Located {
                value: Document::File(path),
                at: at.locate(list, &format!("{key}.crl")),
            });
        domains.push(TrustDomainSpec {
            name: table.name,
            bundle,
            endpoint,
            jwt_bundle,
            crl,
        });
    }
    if domains.is_empty() {
        return Err(at.invalid(
            list,
            "identity.trust_domains",
            "list at least one trust domain",
        ));
    }
    Ok(domains)
}

/// `[[issuers]]`: each checked, and no two that could speak for each other.
fn issuers(at: &Locator<'_>, raw: &RawConfig) -> Result<Vec<IssuerSpec>, ConfigError> {
    let mut issuers = Vec::with_capacity(raw.issuers.len());
    for (i, issuer) in raw.issuers.iter().enumerate() {
        let earlier = raw.issuers.get(..i).unwrap_or_default();
        if earlier
            .iter()
            .any(|o| o.issuer.get_ref() == issuer.issuer.get_ref())
        {
            return Err(at.invalid(
                &issuer.issuer,
                &format!("issuers[{i}].issuer"),
                "duplicate issuer",
            ));
        }
        if *issuer.unqualified_users.get_ref()
            && let Some(first) = earlier.iter().find(|o| *o.unqualified_users.get_ref())
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
        issuers.push(issuer_spec(
            at,
            issuer,
            i,
            *raw.fetch.insecure_allow_http.get_ref(),
        )?);
    }
    Ok(issuers)
}

/// `[jwt_svid]`: audiences required, algorithms from the JWT-SVID spec's list only.
fn jwt_svid(at: &Locator<'_>, raw: &RawConfig) -> Result<Option<JwtSvidSpec>, ConfigError> {
    let Some(svid) = &raw.jwt_svid else {
        return Ok(None);
    };
    if svid.audiences.get_ref().is_empty() {
        return Err(at.invalid(
            &svid.audiences,
            "jwt_svid.audiences",
            "list at least one audience: a JWT-SVID is only for the audiences it names",
        ));
    }
    let mut algorithms = Vec::new();
    for name in svid.algorithms.get_ref() {
        let alg = Algorithm::from_str(name)
            .ok()
            .filter(|alg| crate::identity::token::JWT_SVID_ALGORITHMS.contains(alg))
            .ok_or_else(|| {
                at.invalid(
                    &svid.algorithms,
                    "jwt_svid.algorithms",
                    format!(
                        "`{name}` is not a JWT-SVID algorithm (RS256/384/512, ES256/384, \
                         PS256/384/512)"
                    ),
                )
            })?;
        algorithms.push(alg);
    }
    if algorithms.is_empty() {
        return Err(at.invalid(
            &svid.algorithms,
            "jwt_svid.algorithms",
            "list at least one algorithm",
        ));
    }
    Ok(Some(JwtSvidSpec {
        audiences: svid.audiences.get_ref().clone(),
        algorithms,
        leeway_seconds: svid.leeway_seconds,
    }))
}

/// An issuer's `jwks_uri` or `discovery`, with its refresh bounds checked.
fn remote_jwks(
    at: &Locator<'_>,
    raw: &raw::RawIssuer,
    i: usize,
    allow_http: bool,
) -> Result<Option<RemoteJwksSpec>, ConfigError> {
    let key = |k: &str| format!("issuers[{i}].{k}");
    let location = match (&raw.jwks_uri, *raw.discovery.get_ref()) {
        (Some(_), true) => {
            return Err(at.invalid(
                &raw.discovery,
                &key("discovery"),
                "set `jwks_uri` or `discovery = true`, not both",
            ));
        }
        (Some(uri), false) => {
            check_fetch_url(uri.get_ref(), allow_http)
                .map_err(|message| at.invalid(uri, &key("jwks_uri"), message))?;
            JwksLocation::Uri(uri.get_ref().clone())
        }
        (None, true) => {
            check_fetch_url(raw.issuer.get_ref(), allow_http).map_err(|message| {
                at.invalid(
                    &raw.discovery,
                    &key("discovery"),
                    format!("discovery fetches from the issuer identifier, and {message}"),
                )
            })?;
            JwksLocation::Discovery
        }
        (None, false) => return Ok(None),
    };
    let (min, default, max) = (
        &raw.jwks_refresh_min_seconds,
        &raw.jwks_refresh_seconds,
        &raw.jwks_refresh_max_seconds,
    );
    if *min.get_ref() == 0 || min.get_ref() > default.get_ref() || default.get_ref() > max.get_ref()
    {
        return Err(at.invalid(
            default,
            &key("jwks_refresh_seconds"),
            format!(
                "needs 0 < jwks_refresh_min_seconds ({}) <= jwks_refresh_seconds ({}) <= \
                 jwks_refresh_max_seconds ({})",
                min.get_ref(),
                default.get_ref(),
                max.get_ref()
            ),
        ));
    }
    let max_age = &raw.jwks_max_age_seconds;
    if *max_age.get_ref() > MAX_AGE_CAP {
        return Err(at.invalid(
            max_age,
            &key("jwks_max_age_seconds"),
            format!("must be at most {MAX_AGE_CAP} (ten years)"),
        ));
    }
    // An issuer's `max-age` may ask for the longest refresh; the keys must outlive it, or they
    // go stale at the very moment the next refresh is due.
    if max_age.get_ref() <= max.get_ref() {
        return Err(at.invalid(
            max_age,
            &key("jwks_max_age_seconds"),
            format!(
                "must exceed `jwks_refresh_max_seconds` ({}), or the keys go stale before the \
                 next refresh",
                max.get_ref()
            ),
        ));
    }
    if *raw.unknown_kid_cooldown_seconds.get_ref() > MAX_AGE_CAP {
        return Err(at.invalid(
            &raw.unknown_kid_cooldown_seconds,
            &key("unknown_kid_cooldown_seconds"),
            format!("must be at most {MAX_AGE_CAP} (ten years)"),
        ));
    }
    if *raw.unknown_kid_cooldown_seconds.get_ref() == 0 {
        return Err(at.invalid(
            &raw.unknown_kid_cooldown_seconds,
            &key("unknown_kid_cooldown_seconds"),
            "must be at least 1, or unknown kids could make Tollgate hammer the issuer",
        ));
    }
    Ok(Some(RemoteJwksSpec {
        issuer: raw.issuer.get_ref().clone(),
        location,
        refresh_min_seconds: *min.get_ref(),
        refresh_max_seconds: *max.get_ref(),
        refresh_seconds: *default.get_ref(),
        max_age_seconds: *raw.jwks_max_age_seconds.get_ref(),
        unknown_kid_cooldown_seconds: *raw.unknown_kid_cooldown_seconds.get_ref(),
        optional: raw.optional,
    }))
}

/// `status_lists` and its timing, checked: URLs Tollgate may fetch, and bounds in order.
fn status_lists(
    at: &Locator<'_>,
    raw: &raw::RawIssuer,
    i: usize,
    allow_http: bool,
) -> Result<Option<StatusListSpec>, ConfigError> {
    let key = |k: &str| format!("issuers[{i}].{k}");
    let Some(uris) = &raw.status_lists else {
        return Ok(None);
    };
    if uris.get_ref().is_empty() {
        return Err(at.invalid(
            uris,
            &key("status_lists"),
            "list the status list URIs the issuer's tokens may name (one ending in `/` allows \
             every list under it), or remove the key",
        ));
    }
    for uri in uris.get_ref() {
        check_fetch_url(uri, allow_http)
            .map_err(|message| at.invalid(uris, &key("status_lists"), message))?;
    }
    let (min, default, max, max_age) = (
        &raw.status_list_refresh_min_seconds,
        &raw.status_list_refresh_seconds,
        &raw.status_list_refresh_max_seconds,
        &raw.status_list_max_age_seconds,
    );
    if *min.get_ref() == 0 || min.get_ref() > default.get_ref() || default.get_ref() > max.get_ref()
    {
        return Err(at.invalid(
            default,
            &key("status_list_refresh_seconds"),
            format!(
                "needs 0 < status_list_refresh_min_seconds ({}) <= status_list_refresh_seconds \
                 ({}) <= status_list_refresh_max_seconds ({})",
                min.get_ref(),
                default.get_ref(),
                max.get_ref()
            ),
        ));
    }
    if max_age.get_ref() <= max.get_ref() || *max_age.get_ref() > MAX_AGE_CAP {
        return Err(at.invalid(
            max_age,
            &key("status_list_max_age_seconds"),
            format!(
                "must exceed `status_list_refresh_max_seconds` ({}), or lists go stale before \
                 their next refresh, and be at most {MAX_AGE_CAP} (ten years)",
                max.get_ref()
            ),
        ));
    }
    Ok(Some(StatusListSpec {
        issuer: raw.issuer.get_ref().clone(),
        uris: uris.get_ref().clone(),
        refresh_min_seconds: *min.get_ref(),
        refresh_max_seconds: *max.get_ref(),
        refresh_seconds: *default.get_ref(),
        max_age_seconds: *max_age.get_ref(),
    }))
}

/// A URL Tollgate may fetch from: `https://` with a host, or `http://` when allowed.
pub fn check_fetch_url(url: &str, allow_http: bool) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !allow_http {
            return Err(format!(
                "`{url}` is not https: a key set fetched in the clear can be replaced on the \
                 way (set `fetch.insecure_allow_http = true` only in tests)"
            ));
        }
        rest
    } else {
        return Err(format!("`{url}` is not an https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "`{url}` needs a host (and no user name or password)"
        ));
    }
    if url.contains('#') {
        return Err(format!("`{url}` has a fragment"));
    }
    Ok(())
}

fn issuer_spec(
    at: &Locator<'_>,
    raw: &raw::RawIssuer,
    i: usize,
    allow_http: bool,
) -> Result<IssuerSpec, ConfigError> {
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
    let hmac_secret = raw
        .hmac_secret_file
        .as_ref()
        .map(|path| at.document(path, &key("hmac_secret_file")));
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
    let keys = raw
        .jwks_file
        .as_ref()
        .map(|path| at.document(path, &key("jwks_file")));
    let remote = remote_jwks(at, raw, i, allow_http)?;
    if keys.is_some() && remote.is_some() {
        return Err(at.invalid(
            &raw.issuer,
            &key("jwks_file"),
            "set one of `jwks_file`, `jwks_uri` and `discovery = true`, not several",
        ));
    }
    if keys.is_none() && remote.is_none() && hmac_secret.is_none() {
        return Err(at.invalid(
            &raw.issuer,
            &key("jwks_file"),
            "set `jwks_file`, `jwks_uri` or `discovery = true` (or `hmac_secret_file`)",
        ));
    }
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
    Ok(IssuerSpec {
        issuer: raw.issuer.get_ref().clone(),
        audiences: raw.audiences.get_ref().clone(),
        algorithms,
        keys,
        remote,
        status_lists: status_lists(at, raw, i, allow_http)?,
        hmac_secret,
        leeway_seconds: raw.leeway_seconds,
        required_claims: raw.required_claims.clone(),
        require_binding: raw.require_binding,
        delegation,
        client_claims: raw.client_claims.clone(),
        unqualified_users: *raw.unqualified_users.get_ref(),
    })
}

/// `[[routes]]` and `[unmatched]`, compiled; the builder checks their actions and resource
/// types against the schema.
fn routes(
    at: &Locator<'_>,
    raw: &RawConfig,
) -> Result<(Vec<RouteSpec>, Option<UnmatchedSpec>), ConfigError> {
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, route) in raw.routes.iter().enumerate() {
        let resource_key = format!("routes[{i}].resource");
        let attrs: Vec<(String, String)> = route
            .resource_attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let resource = ResourceTemplate::parse(route.resource.get_ref(), &attrs)
            .map_err(|e| at.invalid(&route.resource, &resource_key, e.to_string()))?;
        let mut compiled =
            Route::compile(route.pattern.get_ref(), route.action.get_ref(), resource).map_err(
                |e| at.invalid(&route.pattern, &format!("routes[{i}].match"), e.to_string()),
            )?;
        if let Some(hosts) = &route.hosts {
            compiled = compiled
                .with_hosts(hosts.get_ref())
                .map_err(|e| at.invalid(hosts, &format!("routes[{i}].hosts"), e.to_string()))?;
        }
        compiled.line = line_column(&at.file.text, route.pattern.span().start).0;
        routes.push(RouteSpec {
            route: compiled,
            action_at: at.locate(&route.action, &format!("routes[{i}].action")),
            resource_at: at.locate(&route.resource, &resource_key),
        });
    }
    let unmatched = match &raw.unmatched {
        Some(u) => Some(UnmatchedSpec {
            action: Located {
                value: Arc::from(u.action.get_ref().as_str()),
                at: at.locate(&u.action, "unmatched.action"),
            },
            resource: ResourceTemplate::parse(u.resource.get_ref(), &[])
                .map_err(|e| at.invalid(&u.resource, "unmatched.resource", e.to_string()))?,
            resource_at: at.locate(&u.resource, "unmatched.resource"),
        }),
        None => None,
    };
    Ok((routes, unmatched))
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
