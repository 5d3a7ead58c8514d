//! The snapshot builder: a [`Spec`] plus the documents a [`Source`] serves become a
//! [`Snapshot`]. It is the one place trust stores, key sets and the Cedar policy store are
//! made, whether a build follows a config change, a file change, or a document fetched at run
//! time; the caller swaps the result in (or keeps the last good snapshot on an error).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;

use super::source::{Digesting, Document, Source, SourceError};
use super::spec::{
    AuthZenSpec, IdentitySpec, IssuerSpec, JwtSvidSpec, Located, Location, Spec, TrustDomainSpec,
};
use super::{Snapshot, SnapshotVersion};
use crate::identity::Identity;
use crate::identity::bundle::{BundleError, RemoteBundle, jwt_svid_keys, parse_bundle};
use crate::identity::cert::{Crl, TrustDomainBundle, TrustStore};
use crate::identity::jwks::{KeySet, RemoteKeys};
use crate::identity::revocation::Revocations;
use crate::identity::status_list::StatusLists;
use crate::identity::token::{Issuer, Issuers, JwtSvids};
use crate::mapping::authzen::AuthZenMapping;
use crate::mapping::routes::Routes;
use crate::policy::{PolicyError, PolicyStore, SourceFile};

/// Why a snapshot could not be built. Every variant names where the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A document could not be read.
    #[error(transparent)]
    Read(#[from] SourceError),
    /// A document's contents do not fit the value the configuration gave it.
    #[error("{at}: {message}")]
    Invalid {
        /// The config value the document belongs to.
        at: Location,
        /// What is wrong and what to do.
        message: String,
    },
    /// The schema, policies or entities have errors (all are listed).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policies(Vec<PolicyError>),
}

fn invalid(at: &Location, message: impl Into<String>) -> BuildError {
    BuildError::Invalid {
        at: at.clone(),
        message: message.into(),
    }
}

/// Builds generation `generation` of the snapshot `spec` describes from `source`'s documents.
pub fn build(spec: &Spec, source: &dyn Source, generation: u64) -> Result<Snapshot, BuildError> {
    let (identity, awaiting, remote_bundles, trust) = identity_part(spec, source, None)?;
    let read = Digesting::new(source);
    let policies = Arc::new(policies(spec, &read)?);
    let routes = routes(spec, &policies)?;
    let authzen = spec
        .authzen
        .as_ref()
        .map(|a| authzen(a, &policies))
        .transpose()?;
    Ok(Snapshot {
        generation,
        identity,
        routes,
        policies,
        response: spec.response.clone(),
        authzen,
        awaiting,
        remote_bundles,
        version: Arc::new(SnapshotVersion {
            policies: read.finish(),
            trust,
        }),
    })
}

/// The identity part of a snapshot: trust, issuers and JWT-SVID keys; what it still awaits;
/// the polled bundles it holds; the digest of what it was built from.
type IdentityPart = (Identity, Vec<String>, Vec<Arc<RemoteBundle>>, String);

/// With `kept_revocations`, a revocation file that does not build is replaced by them (the
/// identity-only renewal: a typo there must not hold up a key or bundle rotation).
fn identity_part(
    spec: &Spec,
    source: &dyn Source,
    kept_revocations: Option<&Arc<Revocations>>,
) -> Result<IdentityPart, BuildError> {
    // An issuer's HMAC secret is named in the digest, never digested: the digest is in every
    // audit record, and a hash of a secret is a way to guess it.
    let secrets: Vec<_> = spec
        .issuers
        .iter()
        .filter_map(|i| i.hmac_secret.as_ref().map(|d| d.value.clone()))
        .collect();
    let read = Digesting::new(source).with_secrets(&secrets);
    let source: &dyn Source = &read;
    let mut awaiting = Vec::new();
    let remote_bundles: Vec<Arc<RemoteBundle>> = spec
        .identity
        .trust_domains
        .iter()
        .filter_map(|d| d.endpoint.as_ref())
        .filter_map(|endpoint| source.remote_bundle(endpoint))
        .collect();
    let identity = identity(
        &spec.identity,
        &spec.issuers,
        spec.jwt_svid.as_ref(),
        source,
        kept_revocations,
        &mut awaiting,
    )?;
    Ok((identity, awaiting, remote_bundles, read.finish()))
}

/// Generation `generation` of `previous` with its identity (trust bundles, key sets) built
/// again from `spec` and `source`, and its policies, routes and response settings kept: what a
/// reload falls back to when the full build fails (say, a policy file mid-edit), so that a
/// broken policy edit never freezes a key rotation or a bundle rotation.
pub fn rebuild_identity(
    spec: &Spec,
    source: &dyn Source,
    previous: &Snapshot,
    generation: u64,
) -> Result<Snapshot, BuildError> {
    let kept = &previous.identity.revocations;
    let (identity, awaiting, remote_bundles, trust) = identity_part(spec, source, Some(kept))?;
    Ok(Snapshot {
        generation,
        identity,
        routes: previous.routes.clone(),
        policies: previous.policies.clone(),
        response: previous.response.clone(),
        authzen: previous.authzen.clone(),
        awaiting,
        remote_bundles,
        version: Arc::new(SnapshotVersion {
            policies: previous.version.policies.clone(),
            trust,
        }),
    })
}

fn identity(
    id: &IdentitySpec,
    issuers: &[IssuerSpec],
    jwt_svid: Option<&JwtSvidSpec>,
    source: &dyn Source,
    kept_revocations: Option<&Arc<Revocations>>,
    awaiting: &mut Vec<String>,
) -> Result<Identity, BuildError> {
    let mut intermediates = Vec::new();
    for document in &id.intermediates {
        intermediates.extend(certificates(document, source)?);
    }
    let bundles = trust_domains(id, source, &intermediates, awaiting)?;
    let revocations = match &id.revocation {
        Some(document) => {
            let built = source
                .read(&document.value)
                .map_err(BuildError::from)
                .and_then(|file| {
                    Revocations::parse(&file.name, &file.text)
                        .map_err(|e| invalid(&document.at, e.to_string()))
                });
            match (built, kept_revocations) {
                (Ok(revocations), _) => Arc::new(revocations),
                (Err(error), Some(kept)) => {
                    tracing::error!(%error, "revocation file not taken in; the last good list stays in force");
                    kept.clone()
                }
                (Err(error), None) => return Err(error),
            }
        }
        None => Arc::default(),
    };
    let svids = match jwt_svid {
        Some(spec) => Some(jwt_svids(spec, id, source)?),
        None => None,
    };
    let trust = TrustStore::new(
        &bundles,
        intermediates,
        id.min_rsa_bits,
        id.insecure_dns_san_fallback,
    )
    .map_err(|e| invalid(&id.trust_domains_at, e.to_string()))?;
    Ok(Identity {
        source: id.source,
        trust,
        trust_domains: bundles.into_iter().map(|b| b.trust_domain).collect(),
        issuers: {
            let issuers = Issuers::new(
                issuers
                    .iter()
                    .map(|issuer| build_issuer(issuer, source))
                    .collect::<Result<_, _>>()?,
            );
            match svids {
                Some(svids) => issuers.with_jwt_svids(svids),
                None => issuers,
            }
        },
        require_workload: id.require_workload,
        require_token: id.require_token,
        revocations,
    })
}

/// Each trust domain's JWT authorities, for JWT-SVIDs: a SPIFFE bundle file's `jwt-svid` keys
/// (a PEM bundle has none), or the Workload API's JWT bundle.
fn jwt_svids(
    spec: &JwtSvidSpec,
    id: &IdentitySpec,
    source: &dyn Source,
) -> Result<JwtSvids, BuildError> {
    let mut by_domain = HashMap::with_capacity(id.trust_domains.len());
    for domain in &id.trust_domains {
        let Some(document) = &domain.jwt_bundle else {
            continue;
        };
        if let Document::Endpoint(_) = &document.value {
            let keys = match endpoint_text(domain, source, &mut Vec::new()) {
                // Checked when it arrived.
                Some(text) => jwt_svid_keys(&text, true).unwrap_or_default(),
                None => KeySet::default(),
            };
            by_domain.insert(domain.name.clone(), Arc::new(keys));
            continue;
        }
        let keys = match (&document.value, source.read(&document.value)) {
            // Not streamed (yet): no JWT-SVID of the domain verifies. Readiness does not wait
            // for it: a domain need not issue JWT-SVIDs at all.
            (Document::Streamed(_), Err(_)) => KeySet::default(),
            (_, Err(error)) => return Err(error.into()),
            (Document::File(_), Ok(file)) => jwt_svid_keys(&file.text, true)
                .map_err(|e| invalid(&document.at, format!("{}: {e}", file.name)))?,
            // A live JWT bundle's problem costs its own domain, never the build.
            (_, Ok(file)) => jwt_svid_keys(&file.text, false).unwrap_or_else(|e| {
                tracing::error!(trust_domain = %domain.name, error = %e, "unusable JWT bundle; the domain's JWT-SVIDs are refused until a good one arrives");
                KeySet::default()
            }),
        };
        by_domain.insert(domain.name.clone(), Arc::new(keys));
    }
    Ok(JwtSvids::new(
        spec.audiences.clone(),
        &spec.algorithms,
        spec.leeway_seconds,
        by_domain,
    ))
}

/// The last good bundle polled from `domain`'s endpoint, if any; one never fetched yet is
/// awaited (one dropped for its age is not: a stale partner must not make Tollgate unready).
fn endpoint_text(
    domain: &TrustDomainSpec,
    source: &dyn Source,
    awaiting: &mut Vec<String>,
) -> Option<String> {
    let endpoint = domain.endpoint.as_ref()?;
    let bundle = source.remote_bundle(endpoint)?;
    let text = bundle.text();
    if text.is_none() && bundle.never_fetched() {
        awaiting.push(format!(
            "the bundle of `{}` from {}",
            domain.name, endpoint.url
        ));
    }
    text
}

/// A live bundle's X.509 authorities, each checked as a trust anchor the way a file's are:
/// an empty bundle is no authority (every SVID of the domain revoked).
pub fn live_authorities(
    trust_domain: &str,
    text: &str,
    min_rsa_bits: usize,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    let authorities = match parse_bundle(text) {
        Ok(authorities) => authorities,
        Err(BundleError::NoX509Authorities) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    TrustStore::new(
        &[TrustDomainBundle {
            trust_domain: trust_domain.to_owned(),
            authorities: authorities.clone(),
            crls: Vec::new(),
        }],
        Vec::new(),
        min_rsa_bits,
        false,
    )
    .map_err(|e| e.to_string())?;
    Ok(authorities)
}

/// The certificates of a PEM or SPIFFE bundle document.
fn certificates(
    document: &Located<Document>,
    source: &dyn Source,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, BuildError> {
    let file = source.read(&document.value)?;
    parse_bundle(&file.text).map_err(|e| invalid(&document.at, format!("{}: {e}", file.name)))
}

/// A trust domain's CRLs, each issued under the name of one of its CAs (its bundle's, or an
/// intermediate's): a list no CA of the domain signs would never be consulted, and a
/// revocation the operator believes in force would not be.
fn crls(
    document: &Located<Document>,
    source: &dyn Source,
    domain: &str,
    authorities: &[rustls_pki_types::CertificateDer<'static>],
    intermediates: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<Vec<Crl>, BuildError> {
    let file = source.read(&document.value)?;
    let crls = Crl::parse_all(file.text.as_bytes())
        .map_err(|e| invalid(&document.at, format!("{}: {e}", file.name)))?;
    for crl in &crls {
        if !authorities
            .iter()
            .chain(intermediates)
            .any(|ca| crl.issued_by(ca.as_ref()))
        {
            return Err(invalid(
                &document.at,
                format!(
                    "{}: the CRL of `{}` is issued by no CA of trust domain `{domain}` (its \
                     bundle or the intermediates): it would never be consulted",
                    file.name, crl.issuer
                ),
            ));
        }
    }
    Ok(crls)
}

/// Each trust domain's bundle read, and no CA shared between domains unless the config says
/// so explicitly.
fn trust_domains(
    id: &IdentitySpec,
    source: &dyn Source,
    intermediates: &[rustls_pki_types::CertificateDer<'static>],
    awaiting: &mut Vec<String>,
) -> Result<Vec<TrustDomainBundle>, BuildError> {
    // Each domain's authorities, and whether they came from a live source (the Workload API,
    // a bundle endpoint). A file's problem fails the build and names the file; a live
    // bundle's problem must not hold up every other change, so that domain alone gets no
    // authority (fail closed) and the log says why.
    let mut bundles: Vec<(TrustDomainBundle, bool)> = Vec::with_capacity(id.trust_domains.len());
    for domain in &id.trust_domains {
        let (authorities, live) = match &domain.bundle {
            Some(bundle) => match &bundle.value {
                Document::File(_) => (certificates(bundle, source)?, false),
                Document::Streamed(_) | Document::Endpoint(_) => {
                    let text = match &bundle.value {
                        Document::Endpoint(_) => endpoint_text(domain, source, awaiting),
                        _ => source.read(&bundle.value).ok().map(|file| file.text),
                    };
                    let authorities = match text {
                        Some(text) => live_authorities(&domain.name, &text, id.min_rsa_bits)
                            .unwrap_or_else(|reason| {
                                tracing::error!(trust_domain = %domain.name, source = %bundle.value, %reason, "unusable bundle; the domain has no authority until a good one arrives");
                                Vec::new()
                            }),
                        // Not streamed (yet), or dropped by the Workload API: no authority,
                        // so the domain's certificates are refused until a bundle arrives.
                        None => {
                            if matches!(bundle.value, Document::Streamed(_)) {
                                awaiting.push(bundle.value.to_string());
                            }
                            Vec::new()
                        }
                    };
                    (authorities, true)
                }
            },
            None => (Vec::new(), false),
        };
        let crls = match &domain.crl {
            Some(document) => crls(document, source, &domain.name, &authorities, intermediates)?,
            None => Vec::new(),
        };
        bundles.push((
            TrustDomainBundle {
                trust_domain: domain.name.clone(),
                authorities,
                crls,
            },
            live,
        ));
    }
    if !id.insecure_shared_ca_across_trust_domains {
        for i in 0..bundles.len() {
            for j in 0..i {
                let (Some((a, a_live)), Some((b, b_live))) = (bundles.get(j), bundles.get(i))
                else {
                    continue;
                };
                if !b.authorities.iter().any(|ca| a.authorities.contains(ca)) {
                    continue;
                }
                let message = format!(
                    "a CA certificate is in the bundles of both `{}` and `{}`, so it could vouch \
                     for either; give each trust domain its own CA, or set \
                     `identity.insecure_shared_ca_across_trust_domains = true` if one CA really \
                     issues for both",
                    a.trust_domain, b.trust_domain
                );
                // A live bundle lending another domain's CA loses its own authority: of two
                // live ones, the bundle that changed last brought the CA in (so a partner can
                // never take an established domain's trust away, whatever the config order);
                // if that cannot be told, both. Two files doing it are the config's error.
                let since = |k: usize| {
                    id.trust_domains
                        .get(k)
                        .and_then(|d| d.bundle.as_ref())
                        .and_then(|b| source.live_since(&b.value))
                };
                let drop: &[usize] = match (a_live, b_live) {
                    (true, true) => match (since(j), since(i)) {
                        (Some(a), Some(b)) if a < b => &[i],
                        (Some(a), Some(b)) if b < a => &[j],
                        _ => &[i, j],
                    },
                    (false, true) => &[i],
                    (true, false) => &[j],
                    (false, false) => {
                        let at = id
                            .trust_domains
                            .get(i)
                            .and_then(|d| d.bundle.as_ref())
                            .map_or(&id.trust_domains_at, |b| &b.at);
                        return Err(invalid(at, message));
                    }
                };
                for &k in drop {
                    if let Some((bundle, _)) = bundles.get_mut(k) {
                        tracing::error!(trust_domain = %bundle.trust_domain, %message, "refusing the live bundle of this domain");
                        bundle.authorities.clear();
                    }
                }
            }
        }
    }
    let bundles: Vec<TrustDomainBundle> = bundles.into_iter().map(|(b, _)| b).collect();
    if id.insecure_shared_ca_across_trust_domains {
        tracing::warn!(
            "identity.insecure_shared_ca_across_trust_domains is on: a CA in several trust \
             domains' bundles vouches for all of them"
        );
    }
    Ok(bundles)
}

fn build_issuer(spec: &IssuerSpec, source: &dyn Source) -> Result<Issuer, BuildError> {
    let hmac_secret = match &spec.hmac_secret {
        Some(document) => {
            let secret = source.read(&document.value)?;
            let secret = secret.text.trim_end_matches(['\n', '\r']);
            if secret.len() < 32 {
                return Err(invalid(&document.at, "secret must be at least 32 bytes"));
            }
            Some(DecodingKey::from_secret(secret.as_bytes()))
        }
        None => None,
    };
    // A fetched key set was checked when it arrived; until one has, the set is empty and the
    // issuer refuses its tokens `token_keys_unavailable`.
    let remote = spec.remote.as_ref().map(|remote| {
        source.remote_keys(remote).unwrap_or_else(|| {
            Arc::new(RemoteKeys::new(
                remote.describe(),
                i64::try_from(remote.max_age_seconds).unwrap_or(i64::MAX),
                remote.optional,
            ))
        })
    });
    let keys = match (&spec.keys, &remote) {
        (Some(document), _) => {
            let file = source.read(&document.value)?;
            Arc::new(
                KeySet::from_json(&file.text)
                    .map_err(|e| invalid(&document.at, format!("{}: {e}", file.name)))?,
            )
        }
        (None, Some(remote)) => remote.current().unwrap_or_default(),
        // The config refuses an issuer with neither keys nor a secret.
        (None, None) => Arc::default(),
    };
    let issuer = Issuer::new(
        spec.issuer.clone(),
        spec.audiences.clone(),
        spec.algorithms.clone(),
        keys,
        hmac_secret,
        spec.leeway_seconds,
        spec.required_claims.clone(),
        spec.require_binding,
        spec.delegation,
        spec.client_claims.clone(),
        spec.unqualified_users,
    );
    let issuer = match remote {
        Some(remote) => issuer.with_remote(remote),
        None => issuer,
    };
    // Lists a token names are registered when it is verified and fetched by the source's
    // follower; a source that does not fetch gets a registry nothing fills.
    Ok(match &spec.status_lists {
        Some(lists) => issuer.with_status_lists(
            source
                .status_lists(lists)
                .unwrap_or_else(|| Arc::new(StatusLists::new(lists.clone()))),
        ),
        None => issuer,
    })
}

fn policies(spec: &Spec, source: &dyn Source) -> Result<PolicyStore, BuildError> {
    let p = &spec.policies;
    let schema = source.read(&p.schema)?;
    let files = source.read_policies(&p.folder)?;
    let entities: Option<SourceFile> = p.entities.as_ref().map(|e| source.read(e)).transpose()?;
    PolicyStore::load(&schema, &files, entities.as_ref()).map_err(BuildError::Policies)
}

/// The AuthZEN mapping, checked against the schema: every Cedar type it names exists, the
/// action type has actions, and the PEP's action is an action.
fn authzen(spec: &AuthZenSpec, store: &PolicyStore) -> Result<Arc<AuthZenMapping>, BuildError> {
    let schema = store.schema();
    let types: Vec<String> = schema.entity_types().map(ToString::to_string).collect();
    for ((from, to), at) in spec.mapping.types.iter().zip(&spec.types_at) {
        if !types.iter().any(|t| **t == **to) {
            return Err(invalid(
                at,
                format!(
                    "AuthZEN type `{from}` maps to `{to}`, which is not an entity type in the \
                     schema (it has: {})",
                    types.join(", ")
                ),
            ));
        }
    }
    let actions: Vec<(String, String)> = schema
        .actions()
        .map(|uid| (uid.type_name().to_string(), uid.id().unescaped().to_owned()))
        .collect();
    let action_type = &*spec.mapping.action_type;
    if !actions.iter().any(|(t, _)| t == action_type) {
        return Err(invalid(
            &spec.action_type_at,
            format!("the schema has no actions of type `{action_type}`"),
        ));
    }
    let pep_action = &*spec.mapping.pep_action;
    if !actions
        .iter()
        .any(|(t, id)| t == "Action" && id == pep_action)
    {
        return Err(invalid(
            &spec.pep_action_at,
            format!(
                "the PEP's action `{pep_action}` is not in the schema: declare it, e.g. \
                 `action \"{pep_action}\" appliesTo {{ principal: App, resource: [..], context: \
                 RequestContext }};`"
            ),
        ));
    }
    Ok(spec.mapping.clone())
}

/// The route table, each route's action and resource type checked against the schema: one
/// that does not fit would fail schema validation on every request it maps.
fn routes(spec: &Spec, store: &PolicyStore) -> Result<Routes, BuildError> {
    let actions: Vec<String> = store
        .schema()
        .actions()
        .map(|uid| uid.id().unescaped().to_owned())
        .collect();
    let check_action = |action: &str, at: &Location| {
        if actions.iter().any(|a| a == action) {
            Ok(())
        } else {
            Err(invalid(
                at,
                format!("action `{action}` is not in the schema"),
            ))
        }
    };
    let check_resource = |action: &str, type_name: &str, at: &Location| {
        let uid = cedar_policy::EntityUid::from_type_name_and_id(
            cedar_policy::EntityTypeName::from_str("Action")
                .map_err(|e| invalid(at, e.to_string()))?,
            cedar_policy::EntityId::new(action),
        );
        let allowed: Vec<String> = store
            .schema()
            .resources_for_action(&uid)
            .map(|types| types.map(ToString::to_string).collect())
            .unwrap_or_default();
        if allowed.iter().any(|t| t == type_name) {
            Ok(())
        } else {
            Err(invalid(
                at,
                format!(
                    "action `{action}` does not apply to `{type_name}` in the schema (it applies \
                     to: {})",
                    allowed.join(", ")
                ),
            ))
        }
    };
    let mut compiled = Vec::with_capacity(spec.routes.len());
    for r in &spec.routes {
        check_action(&r.route.action, &r.action_at)?;
        check_resource(&r.route.action, r.route.resource_type(), &r.resource_at)?;
        compiled.push(r.route.clone());
    }
    let fallback = match &spec.unmatched {
        Some(u) => {
            check_action(&u.action.value, &u.action.at)?;
            check_resource(&u.action.value, &u.resource.type_name, &u.resource_at)?;
            Some((u.action.value.clone(), u.resource.clone()))
        }
        None => None,
    };
    Ok(Routes::new(compiled, fallback))
}
