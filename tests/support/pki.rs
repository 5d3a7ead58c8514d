//! A throwaway PKI per test: CAs, intermediates and workload leaves with every defect the
//! certificate stage must catch.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

pub const TRUST_DOMAIN: &str = "demo.tollgate.dev";

/// A CA that can issue leaves and intermediates.
pub struct Ca {
    pub pem: String,
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate.
#[derive(Clone)]
pub struct Leaf {
    pub pem: String,
    pub der: Vec<u8>,
    /// Private key PEM (empty for leaves made from a bare public key).
    pub key_pem: String,
}

/// What to put in a leaf.
#[derive(Clone)]
pub struct LeafSpec {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub is_ca: bool,
    pub key_usages: Vec<KeyUsagePurpose>,
}

impl LeafSpec {
    /// A valid X509-SVID for `spiffe://demo.tollgate.dev/<app>`.
    pub fn app(app: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            uris: vec![format!("spiffe://{TRUST_DOMAIN}/{app}")],
            dns: vec![],
            not_before: now - Duration::hours(1),
            not_after: now + Duration::hours(1),
            eku: vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
            is_ca: false,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
        }
    }
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A self-signed root CA that expires at `not_after` (to test expired trust anchors).
    pub fn new_until(name: &str, not_after: OffsetDateTime) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(name);
        params.not_before = not_after - Duration::days(30);
        params.not_after = not_after;
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        self.intermediate_with_usages(
            name,
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign],
        )
    }

    /// An intermediate CA that expires at `not_after`.
    pub fn intermediate_until(&self, name: &str, not_after: OffsetDateTime) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(name);
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// An intermediate CA whose key usage is `usages` (to test CA key-usage checks).
    pub fn intermediate_with_usages(&self, name: &str, usages: Vec<KeyUsagePurpose>) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(name);
        params.key_usages = usages;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn leaf(&self, spec: &LeafSpec) -> Leaf {
        let key = KeyPair::generate().unwrap();
        Leaf {
            key_pem: key.serialize_pem(),
            ..self.leaf_with_key(spec, &key)
        }
    }

    /// A TLS server certificate for `dns_name`.
    pub fn server(&self, dns_name: &str) -> Leaf {
        self.leaf(&LeafSpec {
            uris: vec![],
            dns: vec![dns_name.into()],
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            ..LeafSpec::app("unused")
        })
    }

    /// A leaf for a given subject public key (the CA signs; the leaf key is never used).
    pub fn leaf_with_key(&self, spec: &LeafSpec, key: &impl rcgen::PublicKeyData) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "workload");
        params.subject_alt_names = spec
            .uris
            .iter()
            .map(|u| SanType::URI(u.clone().try_into().unwrap()))
            .chain(
                spec.dns
                    .iter()
                    .map(|d| SanType::DnsName(d.clone().try_into().unwrap())),
            )
            .collect();
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.extended_key_usages = spec.eku.clone();
        params.key_usages = spec.key_usages.clone();
        // X509-SVID §4.1: a leaf says `cA` is false; SPIRE's do, and the Workload API client
        // refuses an SVID without basicConstraints.
        params.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        let cert = params.signed_by(key, &self.issuer).unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: String::new(),
        }
    }

    /// A CRL of this CA (PEM) revoking the leaves `revoked` (DER), valid until `next_update`.
    pub fn crl(&self, revoked: &[&[u8]], next_update: OffsetDateTime) -> String {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|der| {
                    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
                    rcgen::RevokedCertParams {
                        serial_number: rcgen::SerialNumber::from_slice(cert.raw_serial()),
                        revocation_time: now - Duration::minutes(1),
                        reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                        invalidity_date: None,
                    }
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    pub fn app(&self, app: &str) -> Leaf {
        self.leaf(&LeafSpec::app(app))
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    params
}
