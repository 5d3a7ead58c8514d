//! Which proxy is on the other end of an HTTP connection, and what it is believed about: the
//! client certificate it forwards (in its own convention) and the client address. Trust is
//! explicit: a certificate header is read only from a connection that a
//! `[[server.trusted_proxies]]` entry recognises (by source network or by its mTLS identity)
//! *and* configures for that header; from anyone else it is refused, never ignored, because a
//! caller that can send one may be trying to be someone else.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use hyper::HeaderMap;
use hyper::header::HeaderName;

use crate::authz::caches::key_field;
use crate::config::{CertificateHeader, TrustedProxy};
use crate::identity::xfcc;
use crate::memo::{self, Memo};
use crate::verdict::ReasonCode;

/// Header names that carry a client certificate in some proxy's convention. Any of them, from
/// a connection not trusted to send it, is refused.
const CERTIFICATE_HEADERS: &[&str] = &[
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "ssl-client-cert",
    "x-ssl-client-cert",
    "x-client-cert",
];

const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
const CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
const TRAEFIK_CERT: HeaderName = HeaderName::from_static("x-forwarded-tls-client-cert");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The other end of one connection, as the listener saw it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// TCP source address.
    pub addr: SocketAddr,
    /// URI and DNS SANs of the client certificate the TLS handshake verified; empty without TLS.
    pub names: Vec<String>,
    /// That certificate, DER, for a caller that is its own client (AuthZEN's PEP).
    pub certificate: Option<Vec<u8>>,
}

impl Peer {
    /// A peer without TLS.
    pub fn plain(addr: SocketAddr) -> Self {
        Self {
            addr,
            names: Vec::new(),
            certificate: None,
        }
    }

    /// A peer that presented `der`, verified by the handshake.
    pub fn with_certificate(addr: SocketAddr, der: Vec<u8>) -> Self {
        let names = x509_parser::parse_x509_certificate(&der)
            .ok()
            .and_then(|(_, cert)| {
                cert.subject_alternative_name().ok().flatten().map(|san| {
                    san.value
                        .general_names
                        .iter()
                        .filter_map(|name| match name {
                            x509_parser::extensions::GeneralName::URI(uri) => {
                                Some((*uri).to_owned())
                            }
                            x509_parser::extensions::GeneralName::DNSName(dns) => {
                                Some((*dns).to_owned())
                            }
                            _ => None,
                        })
                        .collect()
                })
            })
            .unwrap_or_default();
        Self {
            addr,
            names,
            certificate: Some(der),
        }
    }
}

/// Why a forwarded certificate was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertHeaderError {
    /// The header came from a connection not trusted to send it.
    #[error(
        "`{header}` came from {from}, which no `[[server.trusted_proxies]]` entry trusts to \
         forward client certificates in that header"
    )]
    Untrusted {
        /// The header.
        header: &'static str,
        /// Who sent it (`proxy "name"` or the address).
        from: String,
    },
    /// The header is not its convention's format.
    #[error("`{header}` from proxy `{proxy}` is not {what}")]
    Malformed {
        /// The header.
        header: String,
        /// The proxy.
        proxy: String,
        /// What it should have been.
        what: &'static str,
    },
    /// Envoy's XFCC grammar.
    #[error("`x-forwarded-client-cert` from proxy `{proxy}`: {error}")]
    Xfcc {
        /// The proxy.
        proxy: String,
        /// The parse error.
        error: xfcc::XfccError,
    },
}

impl CertHeaderError {
    /// The deny this stands for.
    pub fn reason(&self) -> ReasonCode {
        match self {
            Self::Untrusted { .. } => ReasonCode::CertHeaderUntrusted,
            Self::Malformed { .. } => ReasonCode::CertMalformed,
            Self::Xfcc { .. } => ReasonCode::XfccInvalid,
        }
    }
}

/// The configured proxies.
#[derive(Debug, Default)]
pub struct Proxies {
    proxies: Vec<TrustedProxy>,
}

impl Proxies {
    /// The proxies of `[[server.trusted_proxies]]`, in order (the first that recognises a
    /// connection is the one it is).
    pub fn new(proxies: Vec<TrustedProxy>) -> Self {
        Self { proxies }
    }

    /// The proxy `peer` is, if any: its address is in the proxy's networks, or its verified
    /// client certificate names one of the proxy's identities.
    pub fn recognise(&self, peer: &Peer) -> Option<&TrustedProxy> {
        self.recognise_at(peer).map(|(_, proxy)| proxy)
    }

    /// [`Self::recognise`], with the proxy's place in the configured order: what tells two
    /// proxies apart (names are for people, and need not differ).
    pub fn recognise_at(&self, peer: &Peer) -> Option<(usize, &TrustedProxy)> {
        let ip = peer.addr.ip().to_canonical();
        self.proxies.iter().enumerate().find(|(_, proxy)| {
            proxy.networks.iter().any(|net| net.contains(&ip))
                || peer
                    .names
                    .iter()
                    .any(|name| proxy.identities.iter().any(|id| id == name))
        })
    }

    /// Whether `name` (lower-case) carries a client certificate in any known convention or
    /// a configured one: such headers are never passed on as request headers.
    pub fn is_certificate_header(&self, name: &str) -> bool {
        CERTIFICATE_HEADERS.contains(&name)
            || self
                .proxies
                .iter()
                .any(|p| matches!(&p.certificate, Some(CertificateHeader::Nginx(h)) if h == name))
    }

    /// Refuses a request with any certificate header that `proxy` (or, without one, `peer`)
    /// is not trusted to send: the headers [`Self::certificate`] would read are then the only
    /// certificate headers left.
    pub fn refuse_untrusted(
        &self,
        proxy: Option<&TrustedProxy>,
        peer: &Peer,
        headers: &HeaderMap,
    ) -> Result<(), CertHeaderError> {
        let convention = proxy.and_then(|p| p.certificate.as_ref());
        let from = || match proxy {
            Some(p) => format!("proxy `{}`", p.name),
            None => peer.addr.ip().to_canonical().to_string(),
        };
        // One pass over the request's names (a handful) rather than a lookup per known name:
        // a lookup by `&str` parses the name every time.
        for name in headers.keys() {
            let name = name.as_str();
            if !self.is_certificate_header(name) || convention.is_some_and(|c| c.uses(name)) {
                continue;
            }
            return Err(match CERTIFICATE_HEADERS.iter().find(|h| **h == name) {
                Some(header) => CertHeaderError::Untrusted {
                    header,
                    from: from(),
                },
                None => CertHeaderError::Untrusted {
                    header: "the nginx certificate header",
                    from: format!("{} (header `{name}`)", from()),
                },
            });
        }
        Ok(())
    }

    /// The client certificate forwarded by `proxy` (URL-encoded or plain PEM, leaf first), or
    /// `None` when it forwarded none. Any certificate header that `proxy` is not trusted for
    /// refuses the request.
    pub fn certificate(
        &self,
        proxy: Option<&TrustedProxy>,
        peer: &Peer,
        headers: &HeaderMap,
    ) -> Result<Option<String>, CertHeaderError> {
        self.refuse_untrusted(proxy, peer, headers)?;
        let convention = proxy.and_then(|p| p.certificate.as_ref());
        let (Some(proxy), Some(convention)) = (proxy, convention) else {
            return Ok(None);
        };
        let malformed = |header: &str, what| CertHeaderError::Malformed {
            header: header.to_owned(),
            proxy: proxy.name.clone(),
            what,
        };
        let one = |name: &HeaderName| -> Result<Option<&str>, CertHeaderError> {
            let mut values = headers.get_all(name).iter();
            let Some(value) = values.next() else {
                return Ok(None);
            };
            if values.next().is_some() {
                return Err(malformed(name.as_str(), "a single header"));
            }
            value
                .to_str()
                .map(Some)
                .map_err(|_| malformed(name.as_str(), "ASCII"))
        };
        match convention {
            CertificateHeader::Xfcc => {
                let Some(value) = one(&XFCC)? else {
                    return Ok(None);
                };
                let element = xfcc::parse_last(value).map_err(|error| CertHeaderError::Xfcc {
                    proxy: proxy.name.clone(),
                    error,
                })?;
                Ok(element.chain.or(element.cert))
            }
            CertificateHeader::Nginx(name) => {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| malformed(name, "a header name"))?;
                Ok(one(&name)?.map(str::to_owned))
            }
            CertificateHeader::Rfc9440 => {
                let Some(leaf) = one(&CLIENT_CERT)? else {
                    if headers.contains_key(&CLIENT_CERT_CHAIN) {
                        return Err(malformed("client-cert-chain", "sent with `client-cert`"));
                    }
                    return Ok(None);
                };
                let chain = one(&CLIENT_CERT_CHAIN)?;
                let whole = [leaf.as_bytes(), chain.unwrap_or_default().as_bytes()];
                let key = if chain.is_some() {
                    &whole[..]
                } else {
                    &whole[..1]
                };
                converted(&FROM_RFC9440, key, || {
                    let what = "an RFC 8941 byte sequence (`:base64:`)";
                    let mut pem = String::new();
                    let der = byte_sequence(leaf).ok_or_else(|| malformed("client-cert", what))?;
                    push_pem(&mut pem, &der);
                    for item in chain.iter().flat_map(|c| c.split(',')) {
                        let der = byte_sequence(item).ok_or_else(|| {
                            malformed("client-cert-chain", "a list of byte sequences")
                        })?;
                        push_pem(&mut pem, &der);
                    }
                    Ok(pem)
                })
                .map(Some)
            }
            CertificateHeader::Traefik => {
                let name = "x-forwarded-tls-client-cert";
                let Some(value) = one(&TRAEFIK_CERT)? else {
                    return Ok(None);
                };
                converted(&FROM_TRAEFIK, &[value.as_bytes()], || {
                    let what = "URL-escaped PEM bodies separated by `,`";
                    let decoded = percent_encoding::percent_decode_str(value)
                        .decode_utf8()
                        .map_err(|_| malformed(name, what))?;
                    let mut pem = String::new();
                    for body in decoded.split(',') {
                        let compact: String = body.split_ascii_whitespace().collect();
                        let der = base64::engine::general_purpose::STANDARD
                            .decode(compact)
                            .map_err(|_| malformed(name, what))?;
                        push_pem(&mut pem, &der);
                    }
                    Ok(pem)
                })
                .map(Some)
            }
        }
    }

    /// Writes, for a memo key, what in `headers` identity reads: `authorization` and the
    /// certificate headers (after [`Self::refuse_untrusted`], only ones the proxy is trusted
    /// for), every value in order, each length-prefixed, then an empty field (no header name
    /// is empty).
    pub fn key_credentials(&self, headers: &HeaderMap, out: &mut Vec<u8>) {
        for (name, value) in headers {
            let name = name.as_str();
            if name == "authorization" || self.is_certificate_header(name) {
                key_field(out, name.as_bytes());
                key_field(out, value.as_bytes());
            }
        }
        key_field(out, &[]);
    }

    /// The client's address: from a trusted proxy, the last `x-forwarded-for` entry (the one
    /// that proxy added); otherwise the connection's own.
    pub fn client_ip(
        &self,
        proxy: Option<&TrustedProxy>,
        peer: &Peer,
        headers: &HeaderMap,
    ) -> IpAddr {
        proxy
            .and_then(|_| headers.get_all(&X_FORWARDED_FOR).iter().next_back())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok())
            .unwrap_or_else(|| peer.addr.ip())
    }
}

thread_local! {
    /// Certificate headers this thread converted to PEM, by their exact bytes: a proxy forwards
    /// the same few certificates again and again, and decoding and re-encoding one costs more
    /// than the rest of a warm decision.
    static FROM_RFC9440: RefCell<Memo<Arc<str>, 16>> = const { RefCell::new(Memo::new()) };
    /// The same for Traefik's header.
    static FROM_TRAEFIK: RefCell<Memo<Arc<str>, 16>> = const { RefCell::new(Memo::new()) };
}

/// The PEM for a certificate header (one memo per convention) whose exact bytes are `parts`:
/// this thread's memo, else `convert`'s (kept when it succeeded). A single part is the key as
/// it is, without a copy; several are joined by NUL, which no header value holds.
fn converted(
    memo: &'static memo::Memos<Arc<str>, 16>,
    parts: &[&[u8]],
    convert: impl FnOnce() -> Result<String, CertHeaderError>,
) -> Result<String, CertHeaderError> {
    let joined;
    let key = match parts {
        [one] => *one,
        _ => {
            joined = parts.join(&0u8);
            &joined
        }
    };
    if let Some((pem, _)) = memo::look(memo, 0, 0, 0, key) {
        return Ok(pem.to_string());
    }
    let pem = convert()?;
    let shared: Arc<str> = Arc::from(pem.as_str());
    memo::keep(memo, 0, 0, (0, i64::MAX), key, || shared);
    Ok(pem)
}

/// An RFC 8941 byte sequence, `:base64:`.
fn byte_sequence(item: &str) -> Option<Vec<u8>> {
    let inner = item.trim().strip_prefix(':')?.strip_suffix(':')?;
    base64::engine::general_purpose::STANDARD.decode(inner).ok()
}

/// `der` as one PEM certificate block.
pub fn pem(der: &[u8]) -> String {
    let mut out = String::with_capacity(der.len() * 4 / 3 + 64);
    push_pem(&mut out, der);
    out
}

/// Appends `der` as one PEM certificate block.
fn push_pem(out: &mut String, der: &[u8]) {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END CERTIFICATE-----\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(certificate: Option<CertificateHeader>) -> TrustedProxy {
        TrustedProxy {
            name: "edge".into(),
            certificate,
            networks: vec!["10.0.0.0/8".parse().unwrap()],
            identities: vec!["spiffe://mesh/edge".into()],
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    fn peer(ip: &str) -> Peer {
        Peer::plain(SocketAddr::new(ip.parse().unwrap(), 1234))
    }

    #[test]
    fn a_proxy_is_recognised_by_network_or_identity_only() {
        let proxies = Proxies::new(vec![proxy(None)]);
        assert!(proxies.recognise(&peer("10.1.2.3")).is_some());
        assert!(proxies.recognise(&peer("::ffff:10.1.2.3")).is_some());
        assert!(proxies.recognise(&peer("192.168.0.1")).is_none());
        let mut named = peer("192.168.0.1");
        named.names = vec!["spiffe://mesh/edge".into()];
        assert!(proxies.recognise(&named).is_some());
    }

    #[test]
    fn certificate_headers_from_anyone_else_are_refused() {
        let proxies = Proxies::new(vec![proxy(Some(CertificateHeader::Traefik))]);
        let stranger = peer("192.168.0.1");
        for name in CERTIFICATE_HEADERS {
            let error = proxies
                .certificate(None, &stranger, &headers(&[(name, "x")]))
                .unwrap_err();
            assert_eq!(error.reason(), ReasonCode::CertHeaderUntrusted, "{name}");
        }
        // The trusted proxy, but a header of another convention.
        let edge = peer("10.0.0.1");
        let error = proxies
            .certificate(
                proxies.recognise(&edge),
                &edge,
                &headers(&[("client-cert", ":AAAA:")]),
            )
            .unwrap_err();
        assert!(error.to_string().contains("proxy `edge`"), "{error}");
    }

    #[test]
    fn each_convention_yields_pem() {
        let der = b"not really a certificate".to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let mut expected = String::new();
        push_pem(&mut expected, &der);
        let edge = peer("10.0.0.1");
        let rfc = Proxies::new(vec![proxy(Some(CertificateHeader::Rfc9440))]);
        let got = rfc
            .certificate(
                rfc.recognise(&edge),
                &edge,
                &headers(&[("client-cert", &format!(":{b64}:"))]),
            )
            .unwrap();
        assert_eq!(got.as_deref(), Some(expected.as_str()));
        // Again, from this thread's memo; with a chain, a different key.
        let header = format!(":{b64}:");
        let again = rfc
            .certificate(
                rfc.recognise(&edge),
                &edge,
                &headers(&[("client-cert", &header)]),
            )
            .unwrap();
        assert_eq!(again, got);
        let chained = rfc
            .certificate(
                rfc.recognise(&edge),
                &edge,
                &headers(&[("client-cert", &header), ("client-cert-chain", &header)]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(chained, expected.repeat(2));
        let traefik = Proxies::new(vec![proxy(Some(CertificateHeader::Traefik))]);
        let escaped = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let got = traefik
            .certificate(
                traefik.recognise(&edge),
                &edge,
                &headers(&[("x-forwarded-tls-client-cert", &escaped)]),
            )
            .unwrap();
        assert_eq!(got.as_deref(), Some(expected.as_str()));
        let bad = rfc
            .certificate(
                rfc.recognise(&edge),
                &edge,
                &headers(&[("client-cert", "no colons")]),
            )
            .unwrap_err();
        assert_eq!(bad.reason(), ReasonCode::CertMalformed);
    }

    /// The last entry of the last `x-forwarded-for` line is the one the proxy added; an entry
    /// that is not an address leaves the connection's own.
    #[test]
    fn the_client_address_is_the_last_forwarded_entry_or_the_connections() {
        let proxies = Proxies::new(vec![proxy(None)]);
        let edge = peer("10.0.0.1");
        let client = |lines: &[&str]| {
            let lines: Vec<_> = lines.iter().map(|l| ("x-forwarded-for", *l)).collect();
            proxies.client_ip(proxies.recognise(&edge), &edge, &headers(&lines))
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client(&["1.1.1.1", "2.2.2.2, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(client(&[" 2001:db8::7 "]), ip("2001:db8::7"));
        assert_eq!(client(&["203.0.113.7, unknown"]), ip("10.0.0.1"));
        assert_eq!(client(&[]), ip("10.0.0.1"));
    }

    #[test]
    fn the_client_address_is_believed_only_from_a_proxy() {
        let proxies = Proxies::new(vec![proxy(None)]);
        let xff = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7")]);
        let edge = peer("10.0.0.1");
        assert_eq!(
            proxies.client_ip(proxies.recognise(&edge), &edge, &xff),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let stranger = peer("192.168.0.1");
        assert_eq!(
            proxies.client_ip(proxies.recognise(&stranger), &stranger, &xff),
            "192.168.0.1".parse::<IpAddr>().unwrap()
        );
    }
}

/// Proxies for tests of the memo keys.
#[cfg(test)]
pub mod testing {
    use super::{CertificateHeader, Proxies, TrustedProxy};

    /// One proxy, `edge`, on loopback, forwarding the client certificate as RFC 9440
    /// `Client-Cert`.
    pub fn edge() -> Proxies {
        Proxies::new(vec![TrustedProxy {
            name: "edge".into(),
            certificate: Some(CertificateHeader::Rfc9440),
            networks: vec!["127.0.0.0/8".parse().unwrap()],
            identities: Vec::new(),
        }])
    }

    /// Two proxies with one name whose conventions read `client-cert` differently: RFC 9440
    /// from 10.0.0.0/24, nginx's escaped PEM from 10.0.1.0/24.
    pub fn namesakes() -> Proxies {
        let proxy = |net: &str, certificate| TrustedProxy {
            name: "ingress".into(),
            certificate: Some(certificate),
            networks: vec![net.parse().unwrap()],
            identities: Vec::new(),
        };
        Proxies::new(vec![
            proxy("10.0.0.0/24", CertificateHeader::Rfc9440),
            proxy(
                "10.0.1.0/24",
                CertificateHeader::Nginx("client-cert".into()),
            ),
        ])
    }
}
