//! Serde mirror of the TOML config: defaults and unknown-key rejection, no logic. Fields that
//! need checks after parsing keep their span so errors can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listeners and limits.
    #[serde(default)]
    pub server: RawServer,
    /// Workload identity.
    pub identity: RawIdentity,
    /// Token issuers.
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    /// Cedar inputs.
    pub policies: RawPolicies,
    /// Route table, matched in order.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Action and resource for requests no route matches; absent means deny `no_route`.
    #[serde(default)]
    pub unmatched: Option<RawUnmatched>,
    /// Response shaping.
    #[serde(default)]
    pub response: RawResponse,
    /// Cache bounds.
    #[serde(default)]
    pub cache: RawCache,
    /// Audit log.
    #[serde(default)]
    pub audit: RawAudit,
    /// How documents are fetched at run time (JWKS URLs, OIDC discovery).
    #[serde(default)]
    pub fetch: RawFetch,
    /// Accept JWT-SVIDs as bearer tokens.
    #[serde(default)]
    pub jwt_svid: Option<RawJwtSvid>,
    /// Withdrawn credentials and identities.
    #[serde(default)]
    pub revocation: RawRevocation,
    /// Compromise signals.
    #[serde(default)]
    pub signals: RawSignals,
    /// The OpenID AuthZEN API (off without this table).
    #[serde(default)]
    pub authzen: Option<RawAuthZen>,
}

/// `[authzen]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthZen {
    /// AuthZEN type → Cedar entity type; types not listed are used as written.
    #[serde(default)]
    pub types: std::collections::BTreeMap<String, Spanned<String>>,
    /// The Cedar entity type of AuthZEN action names.
    #[serde(default = "default_action_type")]
    pub action_type: Spanned<String>,
    /// The Cedar action a PEP needs on a resource to ask about it.
    #[serde(default = "default_pep_action")]
    pub pep_action: Spanned<String>,
    /// The PDP's public base URL (`https://…`), named by the metadata document.
    pub base_url: Option<Spanned<String>>,
}

fn default_action_type() -> Spanned<String> {
    Spanned::new(0..0, "Action".into())
}

fn default_pep_action() -> Spanned<String> {
    Spanned::new(0..0, "authzen:evaluate".into())
}

/// `[signals]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSignals {
    /// Judge decisions at all.
    pub enabled: bool,
    /// A reviewed baseline (`tollgate report --baseline`) new access is judged against.
    pub baseline: Option<Spanned<String>>,
    /// Identities tracked.
    pub identities_max: Spanned<usize>,
    /// Without a baseline: how long an identity's pairs are learned silently.
    pub learn_seconds: u64,
    /// Calls in one 10-second window below which no spike is called.
    pub spike_min_calls: Spanned<u64>,
    /// How many times its usual rate an identity's window must reach to be a spike.
    pub spike_multiplier: Spanned<u32>,
    /// Denials in one 10-second window that make a burst.
    pub burst_denials: Spanned<u64>,
    /// Report credentials expiring within this (0: never).
    pub expiry_warning_seconds: u64,
    /// Report credentials valid for longer than this (0: never).
    pub max_lifetime_seconds: u64,
    /// `report` (default) or `deny`: with a baseline, a pair outside it is denied.
    pub new_access: Spanned<String>,
    /// `report` (default) or `deny`: a spiking identity is shed for the rest of its window.
    pub volume_spike: Spanned<String>,
}

impl Default for RawSignals {
    fn default() -> Self {
        Self {
            enabled: true,
            baseline: None,
            identities_max: Spanned::new(0..0, 10_000),
            learn_seconds: 600,
            spike_min_calls: Spanned::new(0..0, 100),
            spike_multiplier: Spanned::new(0..0, 10),
            burst_denials: Spanned::new(0..0, 20),
            expiry_warning_seconds: 300,
            max_lifetime_seconds: 0,
            new_access: Spanned::new(0..0, "report".into()),
            volume_spike: Spanned::new(0..0, "report".into()),
        }
    }
}

/// `[revocation]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    /// The revocation file (watched; relative to the config's folder).
    #[serde(default)]
    pub file: Option<Spanned<String>>,
}

/// `[jwt_svid]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtSvid {
    /// Accepted audiences: a JWT-SVID must name one (its `aud` is required).
    pub audiences: Spanned<Vec<String>>,
    /// Allowed algorithms (a subset of the JWT-SVID spec's).
    #[serde(default = "default_jwt_svid_algorithms")]
    pub algorithms: Spanned<Vec<String>>,
    /// Clock skew allowance for `exp`/`nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_jwt_svid_algorithms() -> Spanned<Vec<String>> {
    Spanned::new(
        0..0,
        [
            "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384", "PS512",
        ]
        .map(String::from)
        .to_vec(),
    )
}

/// `[fetch]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFetch {
    /// PEM CA certificates to trust for HTTPS fetches instead of the built-in web roots.
    pub ca_file: Option<Spanned<String>>,
    /// Longest one fetch may take, connection to last byte.
    pub timeout_ms: u64,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Allow `http://` URLs (tests only: a key set fetched in the clear can be replaced).
    pub insecure_allow_http: Spanned<bool>,
}

impl Default for RawFetch {
    fn default() -> Self {
        Self {
            ca_file: None,
            timeout_ms: 5_000,
            max_response_bytes: 1 << 20,
            insecure_allow_http: Spanned::new(0..0, false),
        }
    }
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// ext_authz gRPC listener.
    pub listen: Spanned<String>,
    /// Admin HTTP listener (`/metrics`, `/healthz`, `/readyz`); empty disables it.
    pub admin_listen: Spanned<String>,
    /// Per-Check deadline; past it the request is denied `internal_error`.
    pub request_timeout_ms: u64,
    /// Checks in flight at once; more are shed (denied) rather than queued.
    pub max_concurrent_requests: usize,
    /// Also serve ext_authz on this Unix domain socket (a stale socket file is replaced).
    pub unix_socket: Option<Spanned<String>>,
    /// TLS with required client certificates on the TCP gRPC listener.
    pub tls: Option<RawTls>,
    /// mTLS on the TCP gRPC listener with Tollgate's own X.509-SVID from the Workload API,
    /// rotated in place; clients must chain to the own trust domain's bundle.
    pub workload_api_tls: Spanned<bool>,
    /// HTTP forward-auth (Envoy HTTP, nginx, Traefik) and AuthZEN listener; empty: off.
    pub http_listen: Spanned<String>,
    /// A listener serving only the AuthZEN API; empty: off (it is also on `http_listen`).
    pub authzen_listen: Spanned<String>,
    /// The HTTP listeners close a connection that has not finished its TLS handshake or sent a
    /// whole request head (the first, or the next when kept alive) within this long.
    pub http_idle_timeout_ms: u64,
    /// Proxies whose certificate headers and client addresses the HTTP listener believes.
    pub trusted_proxies: Vec<RawTrustedProxy>,
}

/// `[[server.trusted_proxies]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustedProxy {
    /// Name for logs and errors.
    pub name: Spanned<String>,
    /// `xfcc`, `rfc9440`, `traefik` or `nginx`; absent: trusted for the client address only.
    pub certificate_format: Option<Spanned<String>>,
    /// The header the proxy puts the certificate in (`nginx` only, where the config chooses).
    pub certificate_header: Option<Spanned<String>>,
    /// Source networks (CIDR) the proxy connects from.
    #[serde(default)]
    pub networks: Vec<Spanned<String>>,
    /// URI or DNS names of the proxy's client certificate on the HTTP listener's mTLS.
    #[serde(default)]
    pub identities: Vec<Spanned<String>>,
}

/// `[server.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Server certificate chain, PEM.
    pub cert_file: Spanned<String>,
    /// Server private key, PEM.
    pub key_file: Spanned<String>,
    /// CA bundle that client (Envoy) certificates must chain to, PEM.
    pub client_ca_file: Spanned<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: Spanned::new(0..0, "127.0.0.1:9191".into()),
            admin_listen: Spanned::new(0..0, "127.0.0.1:9192".into()),
            request_timeout_ms: 1000,
            max_concurrent_requests: 4096,
            unix_socket: None,
            tls: None,
            workload_api_tls: Spanned::new(0..0, false),
            http_listen: Spanned::new(0..0, String::new()),
            authzen_listen: Spanned::new(0..0, String::new()),
            http_idle_timeout_ms: 30_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[identity]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// `certificate`, `xfcc` or `envoy_principal`.
    #[serde(default = "default_source")]
    pub source: Spanned<String>,
    /// Removed: anchors in one pool let any CA vouch for any domain. Kept only to say what to
    /// write instead.
    #[serde(default)]
    pub trust_bundles: Option<Spanned<toml::Value>>,
    /// PEM files of intermediates to build paths through.
    #[serde(default)]
    pub intermediates: Vec<Spanned<String>>,
    /// `[[identity.trust_domains]]`: each allowed trust domain and its own bundle. Read as
    /// values so that the old list of names gets a migration error rather than a type error.
    #[serde(default)]
    pub trust_domains: Option<Spanned<Vec<toml::Value>>>,
    /// Allow one CA certificate in several trust domains' bundles (it then vouches for all of
    /// them). Off: such a configuration is refused.
    #[serde(default)]
    pub insecure_shared_ca_across_trust_domains: bool,
    /// Minimum RSA modulus for leaf keys.
    #[serde(default = "default_min_rsa_bits")]
    pub min_rsa_bits: Spanned<usize>,
    /// Accept a DNS SAN as the workload name when a certificate has no URI SAN.
    #[serde(default)]
    pub insecure_dns_san_fallback: bool,
    /// Refuse requests that carry a token but no workload identity.
    #[serde(default)]
    pub require_workload: bool,
    /// Refuse requests without a bearer token, even with a valid workload identity.
    #[serde(default)]
    pub require_token: bool,
    /// The SPIFFE Workload API (`unix:///…`, `tcp://ip:port`, or `SPIFFE_ENDPOINT_SOCKET` to
    /// read that variable): trust bundles for the domains without a `bundle` file.
    #[serde(default)]
    pub workload_api: Option<Spanned<String>>,
    /// Longest the last bundles from the Workload API are trusted while it is unreachable.
    #[serde(default = "default_workload_api_max_age")]
    pub workload_api_max_age_seconds: Spanned<u64>,
}

fn default_workload_api_max_age() -> Spanned<u64> {
    Spanned::new(0..0, 3600)
}

/// One `[[identity.trust_domains]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustDomain {
    /// The trust domain, e.g. `example.org`.
    pub name: String,
    /// PEM certificates or a SPIFFE bundle (JSON) of this domain's CAs; required with
    /// `source = "certificate"`.
    #[serde(default)]
    pub bundle: Option<String>,
    /// The domain's SPIFFE bundle endpoint (`https_web` profile), polled at its refresh hint.
    #[serde(default)]
    pub bundle_endpoint: Option<String>,
    /// Past this long without a successful poll, the endpoint's bundle is trusted no more.
    #[serde(default = "default_bundle_endpoint_max_age")]
    pub bundle_endpoint_max_age_seconds: u64,
    /// PEM certificate revocation lists of this domain's CAs (watched).
    #[serde(default)]
    pub crl: Option<String>,
}

fn default_bundle_endpoint_max_age() -> u64 {
    86_400
}

fn default_source() -> Spanned<String> {
    Spanned::new(0..0, "certificate".into())
}

fn default_min_rsa_bits() -> Spanned<usize> {
    Spanned::new(0..0, 2048)
}

/// `[[issuers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// Expected `iss`.
    pub issuer: Spanned<String>,
    /// Accepted audiences.
    pub audiences: Spanned<Vec<String>>,
    /// JWKS file.
    #[serde(default)]
    pub jwks_file: Option<Spanned<String>>,
    /// JWKS URL, fetched and refreshed at run time.
    #[serde(default)]
    pub jwks_uri: Option<Spanned<String>>,
    /// Find the JWKS URL through `{issuer}/.well-known/openid-configuration`.
    #[serde(default = "default_false")]
    pub discovery: Spanned<bool>,
    /// Refresh interval when the response sets no `Cache-Control: max-age`, seconds.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: Spanned<u64>,
    /// Least refresh interval a `max-age` may ask for, seconds.
    #[serde(default = "default_jwks_refresh_min")]
    pub jwks_refresh_min_seconds: Spanned<u64>,
    /// Most refresh interval a `max-age` may ask for, seconds.
    #[serde(default = "default_jwks_refresh_max")]
    pub jwks_refresh_max_seconds: Spanned<u64>,
    /// Past this long without a successful fetch the issuer's tokens are refused, seconds.
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_seconds: Spanned<u64>,
    /// Least time between refetches asked for by unknown `kid`s, seconds.
    #[serde(default = "default_unknown_kid_cooldown")]
    pub unknown_kid_cooldown_seconds: Spanned<u64>,
    /// `/readyz` does not wait for this issuer's first key set.
    #[serde(default)]
    pub optional: bool,
    /// Allowed algorithms.
    #[serde(default = "default_algorithms")]
    pub algorithms: Spanned<Vec<String>>,
    /// File holding the HMAC secret; required for HS* algorithms.
    #[serde(default)]
    pub hmac_secret_file: Option<Spanned<String>>,
    /// Clock skew allowance for `exp`/`nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Require RFC 8705 certificate-bound tokens.
    #[serde(default)]
    pub require_binding: bool,
    /// `act_or_subject` (default) or `act_claim_only`.
    #[serde(default = "default_delegation")]
    pub delegation: Spanned<String>,
    /// Users are `User::"<sub>"` instead of `User::"<issuer>#<sub>"` (one issuer at most).
    #[serde(default = "default_false")]
    pub unqualified_users: Spanned<bool>,
    /// Claims naming the client, tried in order.
    #[serde(default = "default_client_claims")]
    pub client_claims: Vec<String>,
    /// Token status lists its tokens may name (URIs; one ending in `/` allows all under it).
    #[serde(default)]
    pub status_lists: Option<Spanned<Vec<String>>>,
    /// Refresh interval of a status list that sets no `ttl`, seconds.
    #[serde(default = "default_status_list_refresh")]
    pub status_list_refresh_seconds: Spanned<u64>,
    /// Least refresh interval a list's `ttl` may ask for, seconds.
    #[serde(default = "default_status_list_refresh_min")]
    pub status_list_refresh_min_seconds: Spanned<u64>,
    /// Most refresh interval a list's `ttl` may ask for, seconds.
    #[serde(default = "default_status_list_refresh_max")]
    pub status_list_refresh_max_seconds: Spanned<u64>,
    /// Past this long without a successful fetch of a list, its tokens are refused, seconds.
    #[serde(default = "default_status_list_max_age")]
    pub status_list_max_age_seconds: Spanned<u64>,
}

fn default_status_list_refresh() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}

fn default_status_list_refresh_min() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}

fn default_status_list_refresh_max() -> Spanned<u64> {
    Spanned::new(0..0, 3_600)
}

fn default_status_list_max_age() -> Spanned<u64> {
    Spanned::new(0..0, 7_200)
}

fn default_algorithms() -> Spanned<Vec<String>> {
    Spanned::new(
        0..0,
        vec![
            "RS256".into(),
            "PS256".into(),
            "ES256".into(),
            "EdDSA".into(),
        ],
    )
}

fn default_jwks_refresh() -> Spanned<u64> {
    Spanned::new(0..0, 600)
}

fn default_jwks_refresh_min() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}

fn default_jwks_refresh_max() -> Spanned<u64> {
    Spanned::new(0..0, 43_200)
}

fn default_jwks_max_age() -> Spanned<u64> {
    Spanned::new(0..0, 86_400)
}

fn default_unknown_kid_cooldown() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}

fn default_false() -> Spanned<bool> {
    Spanned::new(0..0, false)
}

fn default_leeway() -> u64 {
    30
}

fn default_delegation() -> Spanned<String> {
    Spanned::new(0..0, "act_or_subject".into())
}

fn default_client_claims() -> Vec<String> {
    vec!["client_id".into(), "azp".into()]
}

/// `[policies]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicies {
    /// `.cedarschema` file.
    pub schema: Spanned<String>,
    /// Folder whose `*.cedar` files are loaded.
    pub dir: Spanned<String>,
    /// Cedar entities JSON file.
    #[serde(default)]
    pub entities: Option<Spanned<String>>,
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// `METHOD /path/{param}`.
    #[serde(rename = "match")]
    pub pattern: Spanned<String>,
    /// Cedar action id.
    pub action: Spanned<String>,
    /// `Type::"{param}"`.
    pub resource: Spanned<String>,
    /// Attributes for the resource entity.
    #[serde(default)]
    pub resource_attrs: BTreeMap<String, String>,
    /// Hosts (`Host`/`:authority`, without port) the route applies to; any host when absent.
    #[serde(default)]
    pub hosts: Option<Spanned<Vec<String>>>,
}

/// `[unmatched]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnmatched {
    /// Cedar action id.
    pub action: Spanned<String>,
    /// `Type::"id"` (no parameters).
    pub resource: Spanned<String>,
}

/// `[response]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawResponse {
    /// Header carrying the principal to the upstream.
    pub principal_header: Spanned<String>,
    /// Header carrying the decision id to the upstream.
    pub decision_id_header: Spanned<String>,
    /// Remove `authorization` before the request goes upstream.
    pub strip_authorization: bool,
    /// Include determining policy ids in 403 bodies.
    pub expose_policy_ids: bool,
    /// Status for internal errors and overload.
    pub internal_error_status: Spanned<u16>,
}

impl Default for RawResponse {
    fn default() -> Self {
        Self {
            principal_header: Spanned::new(0..0, crate::snapshot::DEFAULT_PRINCIPAL_HEADER.into()),
            decision_id_header: Spanned::new(
                0..0,
                crate::snapshot::DEFAULT_DECISION_ID_HEADER.into(),
            ),
            strip_authorization: false,
            expose_policy_ids: true,
            internal_error_status: Spanned::new(0..0, 503),
        }
    }
}

/// `[cache]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Entries per cache (certificates, tokens, decisions); 0 disables caching.
    pub max_entries: usize,
    /// Longest an entry lives, in seconds.
    pub ttl_seconds: i64,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            // Measured: a flood of distinct queries plateaus at ~47 MiB RSS with 10,000 entries
            // per cache and ~220 MiB with 100,000 (decision keys are ~2 KB); see BENCHMARKS.md.
            max_entries: 10_000,
            ttl_seconds: 300,
        }
    }
}

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// File to append OCSF JSON lines to, `-` for stdout; empty writes no file.
    pub file: Spanned<String>,
    /// Also write records to standard output.
    pub stdout: bool,
    /// Size at which the file is rotated.
    pub max_file_bytes: Spanned<u64>,
    /// Rotated files kept.
    pub max_files: u32,
    /// OTLP/gRPC endpoint of an OpenTelemetry Collector; empty exports nothing.
    pub otlp_endpoint: Spanned<String>,
    /// Deadline of one OTLP export.
    pub otlp_timeout_ms: u64,
    /// Records the OTLP exporter holds before it drops.
    pub otlp_queue: Spanned<usize>,
    /// Write the users delegated calls act for as pseudonyms.
    pub pseudonymise_users: bool,
    /// Records queued before new ones are dropped (and counted).
    pub queue: Spanned<usize>,
    /// Identities the live inventory (`/identities`) holds.
    pub identities_max: usize,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            file: Spanned::new(0..0, String::new()),
            stdout: false,
            max_file_bytes: Spanned::new(0..0, 100 << 20),
            max_files: 5,
            otlp_endpoint: Spanned::new(0..0, String::new()),
            otlp_timeout_ms: 10_000,
            otlp_queue: Spanned::new(0..0, 8_192),
            pseudonymise_users: false,
            queue: Spanned::new(0..0, 10_000),
            identities_max: 10_000,
        }
    }
}
