//! The fast path for records Tollgate wrote itself: their keys come in the writer's order and
//! each key the review reads is spelled once in a line, so a handful of SIMD substring searches
//! find them without parsing the rest. Safe to search for: in JSON text a `"` inside a string
//! is always escaped (`\"`), so `"key":` can only match a real key. Anything unexpected (a
//! string with escapes, a missing field, two records run together, a cut line) returns `None`
//! and the caller parses the line properly instead.

use memchr::memmem::Finder;

/// Determining policies read per record; more are not counted.
pub const MAX_POLICIES: usize = 32;

/// What a review reads of one record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    /// `time`.
    pub time: u64,
    /// `status_id`: 1 allowed.
    pub status_id: u64,
    /// `status_code`: the reason code.
    pub reason: &'a str,
    /// `actor.app_uid`.
    pub principal: Option<&'a str>,
    /// `actor.user.uid` when `actor.user.type_id` is 1 (a user a delegated call acted for).
    pub user: Option<&'a str>,
    /// `actor.idp.name`.
    pub issuer: Option<&'a str>,
    /// `actor.authorizations[*].policy.uid`, the first [`MAX_POLICIES`].
    pub policies: [&'a str; MAX_POLICIES],
    /// How many of `policies` are set.
    pub policy_count: usize,
    /// `api.operation`.
    pub action: Option<&'a str>,
    /// `resources[0].type`.
    pub resource_type: Option<&'a str>,
    /// `unmapped.tollgate.access_mode`.
    pub access_mode: Option<&'a str>,
    /// `unmapped.tollgate.trust_domain`.
    pub trust_domain: Option<&'a str>,
    /// `unmapped.tollgate.credentials_expire`.
    pub expires_ms: Option<i64>,
}

/// The searches, built once.
pub struct Scanner {
    record: Finder<'static>,
    time: Finder<'static>,
    status_id: Finder<'static>,
    status_code: Finder<'static>,
    actor: Finder<'static>,
    app_uid: Finder<'static>,
    user: Finder<'static>,
    idp: Finder<'static>,
    authorizations: Finder<'static>,
    operation: Finder<'static>,
    resources: Finder<'static>,
    resource_type: Finder<'static>,
    unmapped: Finder<'static>,
    access_mode: Finder<'static>,
    trust_domain: Finder<'static>,
    expires: Finder<'static>,
}

const PREFIX: &[u8] = b"{\"class_uid\":6003,";
const DELEGATED_USER_END: &[u8] = b",\"type_id\":1}";

impl Default for Scanner {
    fn default() -> Self {
        Self {
            record: Finder::new(b"{\"class_uid\":"),
            time: Finder::new(b",\"time\":"),
            status_id: Finder::new(b",\"status_id\":"),
            status_code: Finder::new(b",\"status_code\":\""),
            actor: Finder::new(b",\"actor\":{"),
            app_uid: Finder::new(b"\"app_uid\":\""),
            user: Finder::new(b"\"user\":{\"uid\":\""),
            idp: Finder::new(b"\"idp\":{\"name\":\""),
            authorizations: Finder::new(b"\"authorizations\":["),
            operation: Finder::new(b",\"api\":{\"operation\":\""),
            resources: Finder::new(b",\"resources\":[{\"uid\":\""),
            resource_type: Finder::new(b"\",\"type\":\""),
            unmapped: Finder::new(b",\"unmapped\":{\"tollgate\":{"),
            access_mode: Finder::new(b"\"access_mode\":\""),
            trust_domain: Finder::new(b"\"trust_domain\":\""),
            expires: Finder::new(b"\"credentials_expire\":"),
        }
    }
}

impl Scanner {
    /// The fields of `line`, when it is a whole record in Tollgate's own layout.
    pub fn scan<'a>(&self, line: &'a [u8]) -> Option<Fields<'a>> {
        if !line.starts_with(PREFIX) || !line.ends_with(b"}}}") {
            return None;
        }
        // Two records run together (a torn write): leave it to the strict parser.
        if self.record.find(line.get(1..)?).is_some() {
            return None;
        }
        let mut f = Fields::default();
        let at = self.time.find(line)? + self.time.needle().len();
        let (time, at) = number(line, at)?;
        f.time = u64::try_from(time).ok()?;
        let at = self.status_id.find(line.get(at..)?)? + at + self.status_id.needle().len();
        let (status, at) = number(line, at)?;
        f.status_id = u64::try_from(status).ok()?;
        let at = self.status_code.find(line.get(at..)?)? + at + self.status_code.needle().len();
        let (reason, at) = string(line, at)?;
        f.reason = reason;
        let actor = self.actor.find(line.get(at..)?)? + at;
        let api = self.operation.find(line.get(actor..)?)? + actor;
        let actor_part = line.get(actor..api)?;
        f.principal = optional_string(line, actor..api, &self.app_uid)?;
        f.issuer = optional_string(line, actor..api, &self.idp)?;
        if let Some(i) = self.user.find(actor_part) {
            let (uid, end) = string(line, actor + i + self.user.needle().len())?;
            if line.get(end..)?.starts_with(DELEGATED_USER_END) {
                f.user = Some(uid);
            }
        }
        if let Some(i) = self.authorizations.find(actor_part) {
            let mut at = actor + i + self.authorizations.needle().len();
            // `{"decision":"allow","policy":{"uid":"<id>"}}`, comma separated, to `]`.
            while line.get(at) == Some(&b'{') {
                let uid = memchr::memmem::find(line.get(at..api)?, b"\"uid\":\"")? + at + 7;
                let (id, end) = string(line, uid)?;
                if let Some(slot) = f.policies.get_mut(f.policy_count) {
                    *slot = id;
                    f.policy_count += 1;
                }
                at = end + 2; // past `}}`
                match line.get(at) {
                    Some(b',') => at += 1,
                    Some(b']') => break,
                    _ => return None,
                }
            }
        }
        let at = api + self.operation.needle().len();
        let (action, at) = string(line, at)?;
        f.action = Some(action).filter(|a| !a.is_empty());
        let unmapped = self.unmapped.find(line.get(at..)?)? + at;
        if let Some(i) = self.resources.find(line.get(at..unmapped)?) {
            let from = at + i;
            let t = self.resource_type.find(line.get(from..unmapped)?)?
                + from
                + self.resource_type.needle().len();
            f.resource_type = Some(string(line, t)?.0);
        }
        let tail = line.get(unmapped..)?;
        f.access_mode = optional_string(line, unmapped..line.len(), &self.access_mode)?;
        f.trust_domain = optional_string(line, unmapped..line.len(), &self.trust_domain)?;
        if let Some(i) = self.expires.find(tail) {
            f.expires_ms = Some(number(line, unmapped + i + self.expires.needle().len())?.0);
        }
        Some(f)
    }
}

/// The string value of the key `finder` looks for within `region` of `line`: `Some(None)`
/// when the key is absent there, `None` when its value is not a plain string.
fn optional_string<'a>(
    line: &'a [u8],
    region: std::ops::Range<usize>,
    finder: &Finder<'_>,
) -> Option<Option<&'a str>> {
    let start = region.start;
    match finder.find(line.get(region)?) {
        None => Some(None),
        Some(i) => Some(Some(string(line, start + i + finder.needle().len())?.0)),
    }
}

/// The string starting at `at` (just past its opening quote) and the index past its closing
/// quote; `None` if it has escapes (the strict parser unescapes those) or no end.
fn string(line: &[u8], at: usize) -> Option<(&str, usize)> {
    let rest = line.get(at..)?;
    let end = memchr::memchr(b'"', rest)?;
    let text = rest.get(..end)?;
    if memchr::memchr(b'\\', text).is_some() {
        return None;
    }
    Some((std::str::from_utf8(text).ok()?, at + end + 1))
}

/// The integer starting at `at`, and the index past it.
fn number(line: &[u8], at: usize) -> Option<(i64, usize)> {
    let rest = line.get(at..)?;
    let len = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))
        .unwrap_or(rest.len());
    let text = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((text.parse().ok()?, at + len))
}
