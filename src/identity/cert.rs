//! Verifies a forwarded client certificate: the leaf's SPIFFE ID picks the bundle of the trust
//! domain it claims, rustls-webpki builds the path to that bundle alone, then the checks webpki
//! leaves to us (X509-SVID leaf rules, key strength, CA key usage).
//!
//! Trust domains are isolated (SPIFFE federation): a CA in one domain's bundle can never vouch
//! for an identity in another, because it is never offered as an anchor for it.

use std::collections::HashMap;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::OID_SIG_ED25519;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use super::spiffe::{SpiffeId, SpiffeIdError};

/// Most certificates Tollgate reads from one request; bounds path-building work.
const MAX_SENT_CERTIFICATES: usize = 8;
/// Largest forwarded certificate field accepted, URL-encoded (a long chain is ~16 KiB).
pub const MAX_CERTIFICATE_FIELD_BYTES: usize = 64 * 1024;

/// Signature algorithms accepted on certificates: aws-lc-rs implementations of everything
/// webpki supports except ML-DSA, which no workload CA issues yet.
static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ECDSA_P521_SHA256,
    webpki::aws_lc_rs::ECDSA_P521_SHA384,
    webpki::aws_lc_rs::ECDSA_P521_SHA512,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PKCS1_3072_8192_SHA384,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// One trust domain and the CA certificates that may vouch for its workloads.
#[derive(Debug, Clone)]
pub struct TrustDomainBundle {
    /// The trust domain, e.g. `example.org`.
    pub trust_domain: String,
    /// Its CA certificates (DER); empty where the identity source verifies no certificate.
    pub authorities: Vec<CertificateDer<'static>>,
    /// Its certificate revocation lists.
    pub crls: Vec<Crl>,
}

/// One certificate revocation list of a trust domain, signature not yet checked (webpki
/// checks it against the issuer on the path when it is consulted).
#[derive(Debug, Clone)]
pub struct Crl {
    /// As webpki consults it (shared: every snapshot built from the same file may hold it).
    pub list: std::sync::Arc<webpki::CertRevocationList<'static>>,
    /// `nextUpdate`, Unix seconds: past it the list is expired and its domain's certificates
    /// are refused `crl_expired`.
    pub next_update: i64,
    /// The issuer's name, for messages.
    pub issuer: String,
    /// The issuer's name as encoded, to find the CA that signs the list.
    pub issuer_der: Vec<u8>,
}

impl Crl {
    /// True when `ca` (DER) is the certificate whose name this list is issued under.
    pub fn issued_by(&self, ca: &[u8]) -> bool {
        X509Certificate::from_der(ca)
            .is_ok_and(|(_, cert)| cert.subject().as_raw() == self.issuer_der)
    }

    /// Every CRL in `bytes` (PEM blocks, or one DER list), with `nextUpdate` required.
    pub fn parse_all(bytes: &[u8]) -> Result<Vec<Self>, String> {
        use x509_parser::revocation_list::CertificateRevocationList;
        let ders: Vec<Vec<u8>> =
            if bytes.starts_with(b"-----") || bytes.iter().take(64).all(u8::is_ascii) {
                rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(bytes)
                    .map(|crl| {
                        crl.map(|der| der.as_ref().to_vec())
                            .map_err(|e| format!("PEM: {e}"))
                    })
                    .collect::<Result<_, _>>()?
            } else {
                vec![bytes.to_vec()]
            };
        if ders.is_empty() {
            return Err("no CRL in it (expected `-----BEGIN X509 CRL-----` blocks or DER)".into());
        }
        ders.iter()
            .map(|der| {
                let (_, parsed) = CertificateRevocationList::from_der(der)
                    .map_err(|e| format!("a CRL does not parse: {e}"))?;
                let issuer = parsed.issuer().to_string();
                let issuer_der = parsed.issuer().as_raw().to_vec();
                let next_update = parsed
                    .next_update()
                    .ok_or_else(|| format!("the CRL of `{issuer}` has no nextUpdate"))?
                    .timestamp();
                let list = webpki::OwnedCertRevocationList::from_der(der)
                    .map_err(|e| format!("the CRL of `{issuer}` is not usable: {e:?}"))?;
                Ok(Self {
                    list: std::sync::Arc::new(webpki::CertRevocationList::Owned(list)),
                    next_update,
                    issuer,
                    issuer_der,
                })
            })
            .collect()
    }
}

/// What the certificate stage trusts; built once per snapshot.
#[derive(Debug)]
pub struct TrustStore {
    domains: HashMap<String, Anchors>,
    /// Every domain's anchors together: only for DNS-named leaves under the insecure fallback,
    /// which name no trust domain.
    all: Anchors,
    intermediates: Vec<CertificateDer<'static>>,
    min_rsa_bits: usize,
    dns_san_fallback: bool,
}

/// Trust anchors with their expiry, which webpki's anchors do not keep, and the domain's
/// revocation lists.
#[derive(Debug, Default)]
struct Anchors {
    anchors: Vec<TrustAnchor<'static>>,
    /// `notAfter` of each anchor, Unix seconds, in the same order.
    not_after: Vec<i64>,
    crls: Vec<Crl>,
}

impl Anchors {
    /// The earliest `nextUpdate` of the domain's CRLs.
    fn crls_expire(&self) -> Option<i64> {
        self.crls.iter().map(|c| c.next_update).min()
    }
}

/// How the workload named itself in its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkloadName {
    /// A SPIFFE ID from the single URI SAN.
    Spiffe(SpiffeId),
    /// A DNS SAN, used only when `insecure_dns_san_fallback` is on and there is no URI SAN.
    Dns(String),
}

/// A certificate that chained to a trust anchor and passed every leaf rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCert {
    /// The workload's name.
    pub name: WorkloadName,
    /// SHA-256 of the leaf's DER, the RFC 8705 `x5t#S256` input.
    pub thumbprint: [u8; 32],
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The leaf's issuer name as [`name_key`] writes it, for revocation by issuer and serial.
    pub issuer: String,
    /// End of validity of the whole verified path (leaf, intermediates, anchor), Unix
    /// seconds; bounds how long the result may be cached.
    pub not_after: i64,
    /// Start of the leaf's validity, Unix seconds: with `not_after`, how long a lifetime it
    /// was issued with.
    pub not_before: i64,
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not URL-encoded PEM holding DER certificates.
    #[error("certificate is malformed: {0}")]
    Malformed(String),
    /// No path to a configured trust anchor, or a bad signature on the path.
    #[error("certificate is not trusted: {0}")]
    Untrusted(String),
    /// Past `notAfter`.
    #[error("certificate expired at {not_after} (now {now})")]
    Expired {
        /// Expiry, Unix seconds.
        not_after: u64,
        /// Verification time, Unix seconds.
        now: u64,
        /// Whether the leaf itself expired, not an intermediate or root on the path found
        /// (another path may pass a replacement that is not valid yet).
        leaf: bool,
    },
    /// Before `notBefore`.
    #[error("certificate is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of validity, Unix seconds.
        not_before: u64,
        /// Verification time, Unix seconds.
        now: u64,
    },
    /// Extended key usage lacks `clientAuth`.
    #[error("certificate is not valid for client authentication")]
    Usage,
    /// Key too small or of an unsupported type.
    #[error("certificate key is too weak: {0}")]
    WeakKey(String),
    /// Breaks an X509-SVID leaf rule.
    #[error("certificate is not a valid workload certificate: {0}")]
    NotSvid(String),
    /// An intermediate on the path may not sign certificates.
    #[error("certificate chain has an invalid CA: {0}")]
    InvalidCa(String),
    /// No URI SAN (and no DNS fallback).
    #[error("certificate has no SPIFFE ID")]
    SpiffeIdMissing,
    /// The URI SAN is not a SPIFFE ID.
    #[error("certificate SPIFFE ID `{uri}` is invalid: {reason}")]
    SpiffeIdInvalid {
        /// The URI as found.
        uri: String,
        /// The rule it breaks.
        reason: SpiffeIdError,
    },
    /// The SPIFFE ID's trust domain is not configured.
    #[error("trust domain `{0}` is not allowed")]
    TrustDomainNotAllowed(String),
    /// A certificate on the path is listed in its trust domain's CRL.
    #[error("certificate is revoked by its trust domain's CRL")]
    Revoked,
    /// The trust domain's CRL is past its `nextUpdate`: no certificate of the domain can be
    /// judged until a fresh list is installed.
    #[error("the trust domain's CRL expired at {next_update} (now {now}): install a fresh one")]
    CrlExpired {
        /// `nextUpdate`, Unix seconds.
        next_update: u64,
        /// Verification time, Unix seconds.
        now: u64,
    },
}

impl CertError {
    /// Whether the same certificate would be refused again under the same snapshot at any
    /// later time: everything but "not valid yet" (time only moves towards `notBefore`, and
    /// past `notAfter` and a CRL's `nextUpdate`) and an expired intermediate or root (webpki
    /// reports the first of equally ranked failures, so a replacement on another path may
    /// only be not valid yet). Bundles and CRLs change only with a new snapshot, which judges
    /// the certificate afresh.
    pub fn is_final(&self) -> bool {
        match self {
            Self::NotYetValid { .. } => false,
            Self::Expired { leaf, .. } => *leaf,
            _ => true,
        }
    }
}

// === impl TrustStore ===

impl TrustStore {
    /// Builds a store from each trust domain's CA certificates and an intermediates pool.
    pub fn new(
        bundles: &[TrustDomainBundle],
        intermediates: Vec<CertificateDer<'static>>,
        min_rsa_bits: usize,
        dns_san_fallback: bool,
    ) -> Result<Self, CertError> {
        let mut domains = HashMap::with_capacity(bundles.len());
        let mut all = Anchors::default();
        for bundle in bundles {
            let mut anchors = Anchors::default();
            for der in &bundle.authorities {
                let not_after = check_ca(der)?;
                let anchor = webpki::anchor_from_trusted_cert(der)
                    .map(|anchor| anchor.to_owned())
                    .map_err(|e| CertError::Malformed(format!("trust anchor: {e}")))?;
                all.anchors.push(anchor.clone());
                all.not_after.push(not_after);
                anchors.anchors.push(anchor);
                anchors.not_after.push(not_after);
            }
            anchors.crls = bundle.crls.clone();
            domains.insert(bundle.trust_domain.clone(), anchors);
        }
        Ok(Self {
            domains,
            all,
            intermediates,
            min_rsa_bits,
            dns_san_fallback,
        })
    }

    /// Trust domains whose CRL is past its `nextUpdate` at `now` (Unix seconds), with when.
    pub fn expired_crls(&self, now: i64) -> Vec<(&str, i64)> {
        let mut expired: Vec<(&str, i64)> = self
            .domains
            .iter()
            .filter_map(|(domain, anchors)| Some((domain.as_str(), anchors.crls_expire()?)))
            .filter(|(_, at)| *at <= now)
            .collect();
        expired.sort_unstable();
        expired
    }

    /// Verifies a URL-encoded PEM field as Envoy forwards it (leaf first, then any
    /// intermediates) at time `now`.
    pub fn verify_forwarded(&self, field: &str, now: UnixTime) -> Result<VerifiedCert, CertError> {
        let chain = decode_forwarded(field)?;
        self.verify_chain(&chain, now)
    }

    /// Verifies a leaf (first) plus sent intermediates.
    pub fn verify_chain(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<VerifiedCert, CertError> {
        let (leaf_der, sent) = chain
            .split_first()
            .ok_or_else(|| CertError::Malformed("no certificate".into()))?;
        // The leaf's own claims come first: they say which bundle may vouch for it.
        let leaf_facts = self.check_leaf(leaf_der)?;
        let anchors = match &leaf_facts.name {
            WorkloadName::Spiffe(id) => self
                .domains
                .get(id.trust_domain())
                .ok_or_else(|| CertError::TrustDomainNotAllowed(id.trust_domain().to_owned()))?,
            WorkloadName::Dns(_) => &self.all,
        };
        if anchors.anchors.is_empty() {
            return Err(CertError::Untrusted(
                "no trust bundle is configured for the certificate's trust domain".into(),
            ));
        }
        let leaf = EndEntityCert::try_from(leaf_der)
            .map_err(|e| CertError::Malformed(format!("leaf: {e}")))?;
        let mut pool: Vec<CertificateDer<'_>> =
            Vec::with_capacity(sent.len() + self.intermediates.len());
        pool.extend(sent.iter().cloned());
        pool.extend(self.intermediates.iter().cloned());
        // Every certificate on the path whose issuer has a list in the domain's CRLs is looked
        // up in it; an expired list refuses (`nextUpdate` enforced).
        let crls: Vec<&webpki::CertRevocationList<'_>> =
            anchors.crls.iter().map(|c| &*c.list).collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crls)
            .ok()
            .map(|options| {
                options
                    .with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                    .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                    .build()
            });
        let path = leaf
            .verify_for_usage(
                SIGNATURE_ALGORITHMS,
                &anchors.anchors,
                &pool,
                now,
                // "If present" for the CAs on the path; `check_leaf` requires it on the leaf.
                KeyUsage::client_auth(),
                revocation,
                None,
            )
            .map_err(|error| {
                let mut error = from_webpki(error);
                // The leaf's own expiry (an intermediate expiring with it is the same answer).
                if let CertError::Expired {
                    not_after, leaf, ..
                } = &mut error
                {
                    *leaf = i64::try_from(*not_after).is_ok_and(|at| at >= leaf_facts.not_after);
                }
                error
            })?;
        // A verification is reused no longer than the lists it was checked against hold.
        let mut not_after = leaf_facts
            .not_after
            .min(anchors.crls_expire().unwrap_or(i64::MAX));
        for intermediate in path.intermediate_certificates() {
            not_after = not_after.min(check_ca(intermediate.der().as_ref())?);
        }
        let anchor = path.anchor();
        if let Some(expiry) = anchors
            .anchors
            .iter()
            .position(|a| {
                a.subject == anchor.subject
                    && a.subject_public_key_info == anchor.subject_public_key_info
            })
            .and_then(|i| anchors.not_after.get(i))
        {
            // webpki takes anchors as given; an expired root vouches for nothing.
            let now_secs = now.as_secs();
            if i64::try_from(now_secs).is_ok_and(|now| *expiry < now) {
                return Err(CertError::Expired {
                    not_after: u64::try_from(*expiry).unwrap_or(0),
                    now: now_secs,
                    leaf: false,
                });
            }
            not_after = not_after.min(*expiry);
        }
        Ok(VerifiedCert {
            not_after,
            ..leaf_facts
        })
    }

    /// X509-SVID leaf rules, key strength, and the workload name, from one parse of the leaf.
    fn check_leaf(&self, der: &[u8]) -> Result<VerifiedCert, CertError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertError::Malformed(format!("leaf: {e}")))?;
        if !rest.is_empty() {
            return Err(CertError::Malformed("trailing data after leaf".into()));
        }
        let invalid = |e: x509_parser::error::X509Error| CertError::Malformed(e.to_string());
        if let Some(bc) = cert.basic_constraints().map_err(invalid)?
            && bc.value.ca
        {
            return Err(CertError::NotSvid("leaf has cA set".into()));
        }
        if let Some(ku) = cert.key_usage().map_err(invalid)?
            && (ku.value.key_cert_sign() || ku.value.crl_sign())
        {
            return Err(CertError::NotSvid("leaf has keyCertSign or cRLSign".into()));
        }
        // Required, not just "if present" (webpki's rule): the leaf authenticates a client, and
        // SPIRE's and Istio's SVIDs always say so.
        match cert.extended_key_usage().map_err(invalid)? {
            Some(eku) if eku.value.client_auth => {}
            _ => return Err(CertError::Usage),
        }
        self.check_key(&cert)?;

        let mut uris = Vec::new();
        let mut dns = None;
        if let Some(san) = cert.subject_alternative_name().map_err(invalid)? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => uris.push(*uri),
                    GeneralName::DNSName(name) if dns.is_none() => dns = Some(*name),
                    _ => {}
                }
            }
        }
        let name = match uris.as_slice() {
            [uri] => WorkloadName::Spiffe(SpiffeId::parse_workload(uri).map_err(|reason| {
                CertError::SpiffeIdInvalid {
                    uri: (*uri).to_owned(),
                    reason,
                }
            })?),
            [] => match dns {
                Some(name) if self.dns_san_fallback => {
                    WorkloadName::Dns(hostname(name).ok_or_else(|| {
                        CertError::NotSvid(format!("DNS SAN `{name}` is not a hostname"))
                    })?)
                }
                _ => return Err(CertError::SpiffeIdMissing),
            },
            _ => return Err(CertError::NotSvid("more than one URI SAN".into())),
        };
        Ok(VerifiedCert {
            name,
            thumbprint: thumbprint(der),
            serial: cert.raw_serial_as_string().replace(':', ""),
            issuer: name_key(cert.issuer()),
            not_after: cert.validity().not_after.timestamp(),
            not_before: cert.validity().not_before.timestamp(),
        })
    }

    fn check_key(&self, cert: &X509Certificate<'_>) -> Result<(), CertError> {
        let spki = cert.public_key();
        if spki.algorithm.algorithm == OID_SIG_ED25519 {
            return Ok(());
        }
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= self.min_rsa_bits => Ok(()),
            Ok(PublicKey::RSA(rsa)) => Err(CertError::WeakKey(format!(
                "RSA {} bits, minimum {}",
                rsa.key_size(),
                self.min_rsa_bits
            ))),
            Ok(PublicKey::EC(ec)) if ec.key_size() >= 256 => Ok(()),
            Ok(PublicKey::EC(ec)) => Err(CertError::WeakKey(format!(
                "EC {} bits, minimum 256",
                ec.key_size()
            ))),
            Ok(_) | Err(_) => Err(CertError::WeakKey("unsupported key type".into())),
        }
    }
}

/// SHA-256 of a certificate's DER: the RFC 8705 `x5t#S256` input.
pub fn thumbprint(der: &[u8]) -> [u8; 32] {
    super::sha256(der)
}

/// Decodes Envoy's URL-encoded PEM into DER certificates, bounded in size and count.
pub fn decode_forwarded(field: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    if field.len() > MAX_CERTIFICATE_FIELD_BYTES {
        return Err(CertError::Malformed("certificate field too large".into()));
    }
    let pem: std::borrow::Cow<'_, [u8]> = percent_encoding::percent_decode_str(field).into();
    parse_pem_certificates(&pem)
}

/// Reads every `CERTIFICATE` block in a PEM document (at most [`MAX_SENT_CERTIFICATES`]).
pub fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        let der = item.map_err(|e| CertError::Malformed(format!("PEM: {e}")))?;
        if out.len() == MAX_SENT_CERTIFICATES {
            return Err(CertError::Malformed(format!(
                "more than {MAX_SENT_CERTIFICATES} certificates"
            )));
        }
        out.push(der);
    }
    if out.is_empty() {
        return Err(CertError::Malformed("no PEM certificate found".into()));
    }
    Ok(out)
}

/// A CA on the path must be allowed to sign certificates when it states key usage at all.
/// Returns its `notAfter` (Unix seconds), which bounds how long a path through it is good.
/// A DNS SAN as a principal name: letter-digit-hyphen labels (RFC 1123), lowercased so one
/// host is one principal. Anything else (a wildcard, a URI, a path, an empty label) could
/// spell some other principal.
fn hostname(name: &str) -> Option<String> {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (name.len() <= 253 && name.split('.').all(label_ok)).then(|| name.to_ascii_lowercase())
}

fn check_ca(der: &[u8]) -> Result<i64, CertError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CertError::Malformed(format!("CA: {e}")))?;
    let subject = cert.subject().to_string();
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(CertError::InvalidCa(format!(
            "`{subject}` lacks keyCertSign"
        ))),
        Ok(_) => Ok(cert.validity().not_after.timestamp()),
        Err(e) => Err(CertError::InvalidCa(format!("`{subject}`: {e}"))),
    }
}

fn from_webpki(error: webpki::Error) -> CertError {
    use webpki::Error as E;
    match error {
        E::CertExpired { time, not_after } => CertError::Expired {
            not_after: not_after.as_secs(),
            now: time.as_secs(),
            // Which certificate expired is told apart by `verify_chain`, which knows the leaf.
            leaf: false,
        },
        E::CertNotValidYet { time, not_before } => CertError::NotYetValid {
            not_before: not_before.as_secs(),
            now: time.as_secs(),
        },
        #[expect(
            deprecated,
            reason = "older webpki paths still return the bare variant"
        )]
        E::RequiredEkuNotFound => CertError::Usage,
        E::RequiredEkuNotFoundContext(_) => CertError::Usage,
        E::CaUsedAsEndEntity => CertError::NotSvid("leaf is a CA certificate".into()),
        E::BadDer | E::BadDerTime | E::TrailingData(_) => {
            CertError::Malformed("a certificate on the chain is not valid DER".into())
        }
        E::UnsupportedCertVersion => {
            CertError::Malformed("a certificate on the chain is not X.509 v3".into())
        }
        E::CertRevoked => CertError::Revoked,
        E::CrlExpired { time, next_update } => CertError::CrlExpired {
            next_update: next_update.as_secs(),
            now: time.as_secs(),
        },
        other => CertError::Untrusted(untrusted_because(&other).into()),
    }
}

/// A distinguished name as revocation entries match it: each attribute as `TYPE=value` (the
/// type's short name upper-cased, see [`attribute_type`]; the value as encoded, trimmed), sorted,
/// one per line. Built from the attributes, not from a printed name: a printed name does not
/// escape a comma inside a value.
pub fn name_key(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::objects::{oid_registry, oid2abbrev};
    let mut parts: Vec<String> = name
        .iter_attributes()
        .map(|attribute| {
            let oid = attribute.attr_type();
            let kind =
                oid2abbrev(oid, oid_registry()).map_or_else(|_| oid.to_id_string(), str::to_owned);
            let value = attribute.as_str().map_or_else(
                |_| hex::encode(attribute.attr_value().data),
                |v| v.trim().to_owned(),
            );
            format!("{}={value}", attribute_type(&kind))
        })
        .collect();
    parts.sort();
    parts.join("\n")
}

/// An attribute type's one spelling: upper-cased, long names and aliases to the short name
/// (`commonName` and `cn` are `CN`; `Email`, `E` and `emailAddress` are `EMAILADDRESS`).
pub fn attribute_type(kind: &str) -> String {
    let upper = kind.trim().to_ascii_uppercase();
    match upper.as_str() {
        "COMMONNAME" => "CN",
        "ORGANIZATIONNAME" => "O",
        "ORGANIZATIONALUNITNAME" => "OU",
        "COUNTRYNAME" => "C",
        "LOCALITYNAME" => "L",
        "STATEORPROVINCENAME" | "S" => "ST",
        "EMAIL" | "E" => "EMAILADDRESS",
        "DOMAINCOMPONENT" => "DC",
        other => other,
    }
    .to_owned()
}

/// webpki's errors display as their Rust names; a log reader gets a sentence instead.
fn untrusted_because(error: &webpki::Error) -> &'static str {
    use webpki::Error as E;
    match error {
        E::UnknownIssuer => {
            "no chain to a CA of the certificate's trust domain (send the intermediates, or \
             check the domain's bundle)"
        }
        E::InvalidSignatureForPublicKey
        | E::SignatureAlgorithmMismatch
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a signature on the chain does not verify with an accepted algorithm"
        }
        E::EndEntityUsedAsCa => "a certificate that is not a CA signed another",
        E::PathLenConstraintViolated | E::MaximumPathDepthExceeded => "the chain is too long",
        E::NameConstraintViolation | E::MalformedNameConstraint => {
            "the certificate's names break a CA's name constraints"
        }
        E::InvalidCertValidity => "a certificate's validity period is inverted",
        E::UnsupportedCriticalExtension | E::MalformedExtensions | E::ExtensionValueInvalid => {
            "a certificate has an unsupported or malformed critical extension"
        }
        E::CertRevoked | E::CertDistrusted => "a certificate on the chain is revoked",
        E::MaximumSignatureChecksExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumNameConstraintComparisonsExceeded => {
            "the chain took too much work to verify (too many candidate intermediates)"
        }
        _ => "the certificate chain does not verify",
    }
}

#[cfg(test)]
mod tests {
    use super::{CertError, hostname};

    #[test]
    fn a_dns_fallback_name_is_a_lowercased_hostname_or_nothing() {
        assert_eq!(
            hostname("Payments.Shop.svc").as_deref(),
            Some("payments.shop.svc")
        );
        assert_eq!(hostname("db-1").as_deref(), Some("db-1"));
        let long_label = "a".repeat(64);
        for bad in [
            "",
            ".",
            "a..b",
            "a.",
            "-a",
            "a-",
            "*.a",
            "a_b",
            "spiffe://td/x",
            long_label.as_str(),
        ] {
            assert_eq!(hostname(bad), None, "{bad:?}");
        }
    }

    /// A refusal is kept only when no later moment could pass the same certificate.
    #[test]
    fn only_refusals_that_time_cannot_lift_are_final() {
        let expired = |leaf| CertError::Expired {
            not_after: 10,
            now: 20,
            leaf,
        };
        assert!(expired(true).is_final());
        assert!(
            !expired(false).is_final(),
            "an intermediate may be replaced"
        );
        assert!(
            !CertError::NotYetValid {
                not_before: 30,
                now: 20
            }
            .is_final()
        );
        assert!(CertError::Revoked.is_final());
        assert!(CertError::Untrusted("no path".into()).is_final());
    }
}
