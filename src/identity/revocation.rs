//! The revocation file: credentials and identities withdrawn by an operator, checked after
//! verification on every fresh decision. It is a snapshot document like any other: an edit
//! builds a new snapshot, whose generation retires every cached verdict and verification, so
//! a revoked caller's next request is decided afresh and denied `credential_revoked`. An
//! edit that does not parse keeps the last good snapshot (and its revocations), with an
//! error naming the file and line.
//!
//! Every lookup is a hash-set read; nothing here grows with traffic.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::Workload;
use super::cert::{WorkloadName, attribute_type};
use super::spiffe::SpiffeId;
use super::token::VerifiedToken;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What the revocation file withdraws, each entry with its line.
#[derive(Debug, Default)]
pub struct Revocations {
    /// The file's name (without its folder), for deny messages.
    file: String,
    spiffe_ids: Map<String, u32>,
    certificates: Map<[u8; 32], u32>,
    /// By (normalised issuer name, normalised serial).
    serials: Map<(String, String), u32>,
    token_ids: Map<String, u32>,
    clients: Map<String, Vec<ClientRule>>,
}

/// Tokens of one client withdrawn: all of them, or those of one issuer, or those issued
/// before a moment (the incident-response move: everything minted before the leak).
#[derive(Debug, Clone)]
struct ClientRule {
    issuer: Option<String>,
    /// Unix seconds; tokens whose `iat` is earlier (or that carry none) are revoked.
    issued_before: Option<i64>,
    line: u32,
}

/// Which entry withdrew a caller's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The list the entry is in (`spiffe_ids`, `certificates`, `serials`, `token_ids`,
    /// `clients`).
    pub list: &'static str,
    /// The entry, as audit records show the credential (a token id as its hash).
    pub entry: String,
    /// The file and line of the entry.
    pub file: String,
    /// See `file`.
    pub line: u32,
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "credentials revoked by {}:{} ({} entry `{}`)",
            self.file, self.line, self.list, self.entry
        )
    }
}

/// Why the revocation file was refused; names the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RevocationError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    spiffe_ids: Vec<Spanned<String>>,
    #[serde(default)]
    certificates: Vec<Spanned<String>>,
    #[serde(default)]
    serials: Vec<Spanned<RawSerial>>,
    #[serde(default)]
    token_ids: Vec<Spanned<String>>,
    #[serde(default)]
    clients: Vec<Spanned<RawClient>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSerial {
    issuer: String,
    serial: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    client: String,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    issued_before: Option<toml::value::Datetime>,
}

/// Byte offsets of line starts, to turn a span into a line number.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        Self(starts)
    }

    /// The 1-based line holding byte `offset`.
    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|start| *start <= offset).max(1)
    }
}

impl Revocations {
    /// Parses the revocation file `name` (as the configuration names it), whose text is
    /// `text`.
    pub fn parse(name: &str, text: &str) -> Result<Self, RevocationError> {
        let lines = Lines::new(text);
        let fail = |offset: usize, message: String| RevocationError {
            file: name.to_owned(),
            line: lines.of(offset),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            fail(offset, e.message().to_owned())
        })?;
        let line = |span: std::ops::Range<usize>| -> u32 {
            u32::try_from(lines.of(span.start)).unwrap_or(u32::MAX)
        };
        let mut out = Self {
            // Callers see the deny message: the file's name, not where the server keeps it.
            file: std::path::Path::new(name)
                .file_name()
                .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned()),
            ..Self::default()
        };
        for id in &raw.spiffe_ids {
            let parsed = SpiffeId::parse_workload(id.get_ref()).map_err(|reason| {
                fail(
                    id.span().start,
                    format!("`{}` is not a workload SPIFFE ID: {reason}", id.get_ref()),
                )
            })?;
            out.spiffe_ids
                .entry(parsed.as_str().to_owned())
                .or_insert(line(id.span()));
        }
        for thumbprint in &raw.certificates {
            let digest = thumbprint_of(thumbprint.get_ref()).ok_or_else(|| {
                fail(
                    thumbprint.span().start,
                    format!(
                        "`{}` is not a SHA-256 certificate thumbprint: write 64 hex digits \
                         (colons and a `sha256:` prefix allowed), as audit records show it in \
                         `actor.session.credential_uid`",
                        thumbprint.get_ref()
                    ),
                )
            })?;
            out.certificates
                .entry(digest)
                .or_insert(line(thumbprint.span()));
        }
        for serial in &raw.serials {
            let s = serial.get_ref();
            let number = serial_number(&s.serial).ok_or_else(|| {
                fail(
                    serial.span().start,
                    format!("serial `{}` is not a hex number", s.serial),
                )
            })?;
            let issuer = distinguished_name(&s.issuer).ok_or_else(|| {
                fail(
                    serial.span().start,
                    format!(
                        "issuer `{}` is not a distinguished name: write it as `CN=…,O=…`",
                        s.issuer
                    ),
                )
            })?;
            out.serials
                .entry((issuer, number))
                .or_insert(line(serial.span()));
        }
        for jti in &raw.token_ids {
            if jti.get_ref().is_empty() {
                return Err(fail(jti.span().start, "a token id is empty".into()));
            }
            if jti.get_ref().len() > super::token::MAX_JTI_BYTES {
                return Err(fail(
                    jti.span().start,
                    format!(
                        "a token id longer than {} bytes is never read from a token, so it \
                         could never match: revoke the token's client instead",
                        super::token::MAX_JTI_BYTES
                    ),
                ));
            }
            out.token_ids
                .entry(jti.get_ref().clone())
                .or_insert(line(jti.span()));
        }
        for client in &raw.clients {
            let c = client.get_ref();
            if c.client.is_empty() {
                return Err(fail(client.span().start, "`client` is empty".into()));
            }
            let issued_before = match &c.issued_before {
                None => None,
                Some(at) => Some(unix_seconds(at).ok_or_else(|| {
                    fail(
                        client.span().start,
                        format!(
                            "issued_before `{at}` needs a date, a time and an offset, \
                             e.g. 2026-12-03T10:00:00Z"
                        ),
                    )
                })?),
            };
            // `<issuer>#<client>`, as audit records and policies name a token's client.
            let (client_id, issuer) = match (c.client.rsplit_once('#'), &c.issuer) {
                (Some((issuer, client)), None) if !client.is_empty() => {
                    (client.to_owned(), Some(issuer.to_owned()))
                }
                _ => (c.client.clone(), c.issuer.clone()),
            };
            out.clients.entry(client_id).or_default().push(ClientRule {
                issuer,
                issued_before,
                line: line(client.span()),
            });
        }
        Ok(out)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.spiffe_ids.len()
            + self.certificates.len()
            + self.serials.len()
            + self.token_ids.len()
            + self.clients.values().map(Vec::len).sum::<usize>()
    }

    /// No entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry that withdraws this caller's workload or token, if any.
    pub fn check(
        &self,
        workload: Option<&Workload>,
        token: Option<&VerifiedToken>,
    ) -> Option<Revoked> {
        if let Some(w) = workload {
            if let WorkloadName::Spiffe(id) = &w.name
                && let Some(line) = self.spiffe_ids.get(id.as_str())
            {
                return Some(self.revoked("spiffe_ids", id.as_str().to_owned(), *line));
            }
            if let Some(thumbprint) = &w.thumbprint
                && let Some(line) = self.certificates.get(thumbprint)
            {
                let entry = format!("sha256:{}", hex::encode(thumbprint));
                return Some(self.revoked("certificates", entry, *line));
            }
            // The certificate's issuer is already in `name_key`'s form.
            if let (Some(issuer), Some(serial)) = (&w.issuer, &w.serial)
                && !self.serials.is_empty()
                && let Some(serial) = serial_number(serial)
            {
                let key = (issuer.clone(), serial);
                if let Some(line) = self.serials.get(&key) {
                    let entry = format!("{} serial {}", key.0.replace('\n', ","), key.1);
                    return Some(self.revoked("serials", entry, *line));
                }
            }
        }
        let token = token?;
        if let Some(jti) = &token.jti
            && let Some(line) = self.token_ids.get(jti)
        {
            let entry = format!("sha256:{}", super::short_hash(jti.as_bytes()));
            return Some(self.revoked("token_ids", entry, *line));
        }
        let client = token.client_id.as_ref()?;
        let rules = self.clients.get(client)?;
        rules
            .iter()
            .find(|rule| {
                rule.issuer.as_ref().is_none_or(|i| *i == token.issuer)
                    && rule
                        .issued_before
                        .is_none_or(|before| token.issued_at.is_none_or(|iat| iat < before))
            })
            .map(|rule| {
                let entry = match rule.issued_before {
                    Some(before) => format!("{client} (tokens issued before {before})"),
                    None => client.clone(),
                };
                self.revoked("clients", entry, rule.line)
            })
    }

    fn revoked(&self, list: &'static str, entry: String, line: u32) -> Revoked {
        Revoked {
            list,
            entry,
            file: self.file.clone(),
            line,
        }
    }
}

/// A SHA-256 thumbprint from 64 hex digits, colons and a `sha256:` prefix allowed.
fn thumbprint_of(text: &str) -> Option<[u8; 32]> {
    let digits: String = text
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

/// A serial number as lowercase hex without colons or leading zeros, however it was written
/// (`0A:1B`, `0a1b`, `A1B`).
fn serial_number(text: &str) -> Option<String> {
    let digits: String = text
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
}

/// A distinguished name as written in the file, in the form [`name_key`] gives a
/// certificate's: RFC 4514 (`CN=CA,O=Example\, Inc.`), OpenSSL's one-line form
/// (`O = "Example, Inc.", CN = CA`) or its old slash form (`/O=Example/CN=CA`); parts in any
/// order.
fn distinguished_name(text: &str) -> Option<String> {
    let text = text.trim();
    // The slash form separates with `/` alone (its values may hold commas).
    let (separators, text): (&[char], &str) = match text.strip_prefix('/') {
        Some(rest) => (&['/'], rest),
        None => (&[',', '+', ';'], text),
    };
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let (mut escaped, mut quoted) = (false, false);
    for c in text.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if separators.contains(&c) && !quoted {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped || quoted {
        return None;
    }
    parts.push(current);
    let mut normalised = Vec::with_capacity(parts.len());
    for part in parts.iter().filter(|p| !p.trim().is_empty()) {
        let (kind, value) = part.split_once('=')?;
        if kind.trim().is_empty() {
            return None;
        }
        normalised.push(format!("{}={}", attribute_type(kind), value.trim()));
    }
    if normalised.is_empty() {
        return None;
    }
    normalised.sort();
    Some(normalised.join("\n"))
}

/// Unix seconds of a TOML offset date-time.
fn unix_seconds(at: &toml::value::Datetime) -> Option<i64> {
    at.date.as_ref()?;
    at.time.as_ref()?;
    at.offset.as_ref()?;
    let parsed = time::OffsetDateTime::parse(
        &at.to_string(),
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    Some(parsed.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::cert::WorkloadName;

    fn parse(text: &str) -> Result<Revocations, RevocationError> {
        Revocations::parse("revoked.toml", text)
    }

    fn workload(id: &str) -> Workload {
        Workload {
            name: WorkloadName::Spiffe(SpiffeId::parse_workload(id).unwrap()),
            thumbprint: Some([7; 32]),
            serial: Some("0a:1b".into()),
            issuer: Some("CN=Demo CA\nO=Demo".into()),
            not_after: None,
            not_before: None,
        }
    }

    fn token(client: &str, iat: Option<i64>, jti: Option<&str>) -> VerifiedToken {
        VerifiedToken {
            issuer: "https://idp".into(),
            subject: None,
            client_id: Some(client.into()),
            client_principal: Some(format!("https://idp#{client}")),
            scopes: vec![],
            user: None,
            actor: None,
            bound_thumbprint: None,
            require_binding: false,
            valid_until: i64::MAX,
            svid: None,
            expires_at: i64::MAX,
            jti: jti.map(str::to_owned),
            issued_at: iat,
            status: None,
        }
    }

    const FILE: &str = r#"
spiffe_ids = ["spiffe://demo.example/retired"]
certificates = ["sha256:0707070707070707070707070707070707070707070707070707070707070707"]
token_ids = ["leaked-1"]

[[serials]]
issuer = "O=Other, CN=Other CA"
serial = "0A1B"

[[clients]]
client = "ci-bot"
issued_before = 2026-12-03T10:00:00Z

[[clients]]
client = "reporting"
issuer = "https://other-idp"
"#;

    #[test]
    fn each_kind_of_entry_names_itself_and_its_line() {
        let r = parse(FILE).unwrap();
        assert_eq!(r.len(), 6);
        let retired = r.check(Some(&workload("spiffe://demo.example/retired")), None);
        assert_eq!(retired.map(|x| (x.list, x.line)), Some(("spiffe_ids", 2)));
        // Another workload, with the revoked certificate's thumbprint.
        let by_print = r
            .check(Some(&workload("spiffe://demo.example/other")), None)
            .unwrap();
        assert_eq!((by_print.list, by_print.line), ("certificates", 3));
        assert_eq!(
            by_print.to_string(),
            "credentials revoked by revoked.toml:3 (certificates entry \
             `sha256:0707070707070707070707070707070707070707070707070707070707070707`)"
        );
        let jti = r
            .check(None, Some(&token("x", None, Some("leaked-1"))))
            .unwrap();
        assert_eq!((jti.list, jti.line), ("token_ids", 4));
        assert!(!jti.entry.contains("leaked"), "a token id is shown hashed");
    }

    #[test]
    fn serials_match_by_issuer_and_number_however_written() {
        let r = parse(FILE).unwrap();
        let mut w = workload("spiffe://demo.example/other");
        w.thumbprint = None;
        assert_eq!(
            r.check(Some(&w), None),
            None,
            "another issuer's serial 0a1b"
        );
        w.issuer = Some("CN=Other CA\nO=Other".into());
        assert_eq!(r.check(Some(&w), None).map(|x| x.line), Some(6));
        w.serial = Some("0b".into());
        assert_eq!(r.check(Some(&w), None), None);
    }

    #[test]
    fn a_client_cut_off_at_a_moment_keeps_its_newer_tokens() {
        let r = parse(FILE).unwrap();
        let cutoff = 1_796_292_000; // 2026-12-03T10:00:00Z
        let old = r.check(None, Some(&token("ci-bot", Some(cutoff - 1), None)));
        assert_eq!(old.map(|x| (x.list, x.line)), Some(("clients", 10)));
        assert_eq!(
            r.check(None, Some(&token("ci-bot", Some(cutoff), None))),
            None
        );
        // No `iat`: nothing proves it was minted after the cut, so it is revoked.
        assert!(r.check(None, Some(&token("ci-bot", None, None))).is_some());
        // Only the named issuer's `reporting`.
        assert_eq!(r.check(None, Some(&token("reporting", None, None))), None);
        let mut other = token("reporting", None, None);
        other.issuer = "https://other-idp".into();
        assert!(r.check(None, Some(&other)).is_some());
    }

    /// A CA named `O=Example, Inc., CN=Issuing CA` and a workload leaf it signed, verified the
    /// way requests are: the workload as identity verification reports it.
    fn verified_under_a_name_with_a_comma() -> Workload {
        use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::OrganizationName, "Example, Inc.");
        ca.distinguished_name.push(DnType::CommonName, "Issuing CA");
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.subject_alt_names = vec![SanType::URI("spiffe://example.org/app".try_into().unwrap())];
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        leaf.is_ca = IsCa::ExplicitNoCa;
        let leaf = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        let trust = crate::identity::cert::TrustStore::new(
            &[crate::identity::cert::TrustDomainBundle {
                trust_domain: "example.org".into(),
                authorities: vec![ca_cert.der().clone()],
                crls: vec![],
            }],
            vec![],
            2048,
            false,
        )
        .unwrap();
        let verified = trust
            .verify_chain(&[leaf.der().clone()], rustls_pki_types::UnixTime::now())
            .unwrap();
        Workload {
            name: verified.name,
            thumbprint: None,
            serial: Some(verified.serial),
            issuer: Some(verified.issuer),
            not_after: None,
            not_before: None,
        }
    }

    /// Review finding: an issuer whose name has a comma in a value (`O=Example, Inc.`) could
    /// not be written in the file, and the certificate's side did not normalise at all, so the
    /// entry was skipped without a word (fail open).
    #[test]
    fn an_issuer_with_a_comma_in_its_name_is_matched_however_it_is_written() {
        let workload = verified_under_a_name_with_a_comma();
        let serial = workload.serial.clone().unwrap();
        for issuer in [
            r#"CN=Issuing CA,O=Example\, Inc."#,
            r#"O = "Example, Inc.", CN = Issuing CA"#,
            r#"/O=Example, Inc./CN=Issuing CA"#,
        ] {
            let file = format!("[[serials]]\nissuer = '{issuer}'\nserial = \"{serial}\"\n");
            let r = parse(&file).unwrap_or_else(|e| panic!("{issuer}: {e}"));
            assert_eq!(
                r.check(Some(&workload), None).map(|x| x.list),
                Some("serials"),
                "{issuer}"
            );
        }
    }

    /// Review finding: a client written as audit records name it (`<issuer>#<client>`) and a
    /// token id longer than Tollgate reads (256 bytes) parsed, and could never match.
    #[test]
    fn a_client_as_records_name_it_matches_and_an_unmatchable_token_id_is_refused() {
        let r = parse("[[clients]]\nclient = \"https://idp#ci-bot\"\n").unwrap();
        assert!(r.check(None, Some(&token("ci-bot", None, None))).is_some());
        let mut other = token("ci-bot", None, None);
        other.issuer = "https://other".into();
        assert_eq!(
            r.check(None, Some(&other)),
            None,
            "only that issuer's ci-bot"
        );
        let long = "j".repeat(257);
        let e = parse(&format!("token_ids = [\"{long}\"]")).unwrap_err();
        assert!(e.message.contains("256"), "{e}");
    }

    #[test]
    fn a_bad_entry_is_refused_with_its_file_and_line() {
        for (text, line, says) in [
            (
                "spiffe_ids = [\n  \"https://x/y\",\n]",
                2,
                "not a workload SPIFFE ID",
            ),
            ("certificates = [\"abc\"]", 1, "64 hex digits"),
            (
                "\n[[clients]]\nclient = \"x\"\nissued_before = 2026-12-03",
                2,
                "offset",
            ),
            (
                "[[serials]]\nissuer = \"nonsense\"\nserial = \"1\"",
                1,
                "distinguished name",
            ),
            ("token_idz = []", 1, "unknown field"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!((e.file.as_str(), e.line), ("revoked.toml", line), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
    }
}
