//! The fast path for records Tollgate wrote itself: their keys come in the writer's order and
//! each key the review reads is spelled once in a line, so a handful of SIMD substring searches
//! find them without parsing the rest. Safe to search for: in JSON text a `"` inside a string
//! is always escaped (`\"`), so `"key":` can only match a real key. Anything unexpected (a
//! string with escapes, a missing field, two records run together, a cut line) returns `None`
//! and the caller parses the line properly instead.

use memchr::arch::all::packedpair::HeuristicFrequencyRank;
use memchr::memmem::{Finder, FinderBuilder, FinderRev};

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
    authorizations_rev: FinderRev<'static>,
    policy_uid: Finder<'static>,
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

/// Bytes in the order of how often they occur in Tollgate's records, most frequent first
/// (measured over generated and demo records). A substring search first looks for the two
/// rarest bytes of its needle; ranked as general text ranks them, `"`, `:`, `_` and `,` count as
/// rare, and in a record they are everywhere: each of those candidates costs a comparison.
const BY_FREQUENCY: &[u8] = b"\"0e:tiasodp,rncl7_u{}m1h.y26/48 3bx9v5fgT-[]\\";

/// [`BY_FREQUENCY`] as memchr's ranking: 255 for the most frequent byte, falling from there;
/// a byte not listed (capitals, most punctuation) is rarer still.
#[derive(Debug, Clone, Copy)]
struct RecordBytes;

impl HeuristicFrequencyRank for RecordBytes {
    fn rank(&self, byte: u8) -> u8 {
        BY_FREQUENCY
            .iter()
            .position(|&b| b == byte)
            .and_then(|i| u8::try_from(i * 4).ok())
            .map_or(20, |i| 255 - i)
    }
}

/// A forward search for `needle`, prefiltered on its rarest bytes in a record.
fn finder(needle: &'static [u8]) -> Finder<'static> {
    FinderBuilder::new().build_forward_with_ranker(RecordBytes, needle)
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            record: finder(b"{\"class_uid\":"),
            time: finder(b",\"time\":"),
            status_id: finder(b",\"status_id\":"),
            status_code: finder(b",\"status_code\":\""),
            actor: finder(b",\"actor\":{"),
            app_uid: finder(b"\"app_uid\":\""),
            user: finder(b"\"user\":{\"uid\":\""),
            idp: finder(b"\"idp\":{\"name\":\""),
            authorizations: finder(b"\"authorizations\":["),
            authorizations_rev: FinderRev::new(b"\"authorizations\":["),
            policy_uid: finder(b"\"uid\":\""),
            operation: finder(b",\"api\":{\"operation\":\""),
            resources: finder(b",\"resources\":[{\"uid\":\""),
            resource_type: finder(b"\",\"type\":\""),
            unmapped: finder(b",\"unmapped\":{\"tollgate\":{"),
            access_mode: finder(b"\"access_mode\":\""),
            trust_domain: finder(b"\"trust_domain\":\""),
            expires: finder(b"\"credentials_expire\":"),
        }
    }
}

impl Scanner {
    /// The fields of `line`, when it is a whole record in Tollgate's own layout.
    pub fn scan<'a>(&self, line: &'a [u8]) -> Option<Fields<'a>> {
        if !line.starts_with(PREFIX) || !line.ends_with(b"}}}") {
            return None;
        }
        self.fields(line)
    }

    /// Each string read is validated as UTF-8 on its own (`string`), not the whole line: the
    /// fields are a fraction of a record, and the rest is not read (nor is its JSON checked).
    fn fields<'a>(&self, line: &'a [u8]) -> Option<Fields<'a>> {
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
        // The actor's keys come in the writer's order (app_uid, user, idp, session,
        // authorizations), so each is looked for only where it can be: an absent user then
        // costs no search through the whole actor.
        let mut after = actor;
        if let Some((_, principal, end)) = find_string(line, actor..api, &self.app_uid)? {
            f.principal = Some(principal);
            after = end;
        }
        let idp = find_string(line, after..api, &self.idp)?;
        f.issuer = idp.map(|(_, issuer, _)| issuer);
        let before_idp = idp.map_or(api, |(key, _, _)| key);
        if let Some(i) = self.user.find(line.get(after..before_idp)?) {
            let (uid, end) = string(line, after + i + self.user.needle().len())?;
            if line.get(end..)?.starts_with(DELEGATED_USER_END) {
                f.user = Some(uid);
            }
        }
        // Last in the actor: found from its end.
        if let Some(i) = self.authorizations_rev.rfind(line.get(after..api)?) {
            let mut at = after + i + self.authorizations.needle().len();
            // `{"decision":"allow","policy":{"uid":"<id>"}}`, comma separated, to `]`.
            while line.get(at) == Some(&b'{') {
                let uid =
                    self.policy_uid.find(line.get(at..api)?)? + at + self.policy_uid.needle().len();
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
    Some(find_string(line, region, finder)?.map(|(_, value, _)| value))
}

/// Where the key `finder` looks for starts within `region` of `line`, its string value, and
/// the index past the value: `Some(None)` when the key is absent there, `None` when its value
/// is not a plain string.
fn find_string<'a>(
    line: &'a [u8],
    region: std::ops::Range<usize>,
    finder: &Finder<'_>,
) -> Option<Option<(usize, &'a str, usize)>> {
    let start = region.start;
    match finder.find(line.get(region)?) {
        None => Some(None),
        Some(i) => {
            let (value, end) = string(line, start + i + finder.needle().len())?;
            Some(Some((start + i, value, end)))
        }
    }
}

/// The string starting at `at` (just past its opening quote) and the index past its closing
/// quote; `None` if it has escapes (the strict parser unescapes those), no end, or is not
/// UTF-8.
fn string(line: &[u8], at: usize) -> Option<(&str, usize)> {
    let rest = line.get(at..)?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest.get(end) != Some(&b'"') {
        return None;
    }
    Some((std::str::from_utf8(rest.get(..end)?).ok()?, at + end + 1))
}

/// The integer starting at `at`, and the index past it.
fn number(line: &[u8], at: usize) -> Option<(i64, usize)> {
    let rest = line.get(at..)?;
    let (negative, digits) = match rest.first() {
        Some(b'-') => (true, rest.get(1..)?),
        _ => (false, rest),
    };
    let len = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if len == 0 || len > 18 {
        // No digits, or more than an i64 surely holds: the strict parser decides.
        return None;
    }
    let value = digits
        .get(..len)?
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    let end = at + usize::from(negative) + len;
    // A number ends where JSON says one may: anything else (`123-`, `1x`) is not one.
    if !matches!(line.get(end), Some(b',' | b'}' | b']')) {
        return None;
    }
    Some((if negative { -value } else { value }, end))
}
