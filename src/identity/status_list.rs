//! OAuth Token Status Lists (draft-ietf-oauth-status-list): a token whose `status` claim
//! points into a list its issuer publishes is refused unless its entry there says VALID.
//!
//! The lists an issuer may point at are named in its config (URI prefixes): a token cannot make
//! Tollgate fetch from anywhere else. Each list a token names is registered once, when the
//! token is first verified ([`StatusLists::resolve`]), and fetched off the request path by a
//! follower (`fetch::status_list`), which keeps it fresh at the list's `ttl` (clamped to the
//! configured bounds). Every request then reads one bit field of the current list
//! ([`LiveList::check`]): no lock, no allocation. A list not fetched yet, or whose last good
//! copy is older than the configured maximum age (or past its own `exp`), refuses the token:
//! an unknown status never passes.

use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::jwks::{KeySet, VerifyingKey};
use super::token::TokenError;

/// Largest decompressed list accepted: 16 MiB holds 134 million one-bit entries, far beyond a
/// real list, and bounds what a compressed body (a "zip bomb") can make Tollgate allocate.
pub const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Most lists one issuer's tokens may have registered: lists are shards of thousands to
/// millions of tokens each, so real issuers use a handful; past this a new one is refused
/// (`token_status_unavailable`) rather than followed.
pub const MAX_LISTS: usize = 256;

/// Longest list URI a token may name.
const MAX_URI_BYTES: usize = 2048;

/// The media type of a status list token in JWT form (§5.1), as its `typ` header says.
const STATUS_LIST_TYPE: &str = "statuslist+jwt";

/// An issuer's status-list settings: which lists its tokens may name, and how they are kept.
/// Equal specs share one registry (and its fetched lists) across snapshot builds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusListSpec {
    /// The issuer.
    pub issuer: String,
    /// Allowed list URIs: one ending in `/` allows every URI under it; any other is one exact
    /// list, fetched from the start.
    pub uris: Vec<String>,
    /// Bounds on the refresh interval a list's `ttl` may set, seconds.
    pub refresh_min_seconds: u64,
    /// See `refresh_min_seconds`.
    pub refresh_max_seconds: u64,
    /// The refresh interval of a list that sets no `ttl`, seconds.
    pub refresh_seconds: u64,
    /// Past this many seconds since a list's last successful fetch, its tokens are refused.
    pub max_age_seconds: u64,
}

impl StatusListSpec {
    /// Whether a token may point at `uri`.
    pub fn allows(&self, uri: &str) -> bool {
        self.uris.iter().any(|allowed| {
            if allowed.ends_with('/') {
                uri.starts_with(allowed.as_str()) && uri.len() > allowed.len()
            } else {
                uri == allowed
            }
        })
    }
}

/// A token's entry in a status list (`status.status_list`).
#[derive(Clone)]
pub struct StatusRef {
    /// `uri`.
    pub uri: String,
    /// `idx`.
    pub idx: u64,
    /// The registered list; `None` when the issuer's registry was full.
    pub list: Option<Arc<LiveList>>,
}

impl std::fmt::Debug for StatusRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.uri, self.idx)
    }
}

impl PartialEq for StatusRef {
    fn eq(&self, other: &Self) -> bool {
        self.uri == other.uri && self.idx == other.idx
    }
}

impl Eq for StatusRef {}

/// Why a token's status refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Its entry says something other than VALID (or the index is past the list's end, which
    /// the draft says to treat as invalid).
    #[error("token status is {status} in status list {uri} (index {idx})")]
    NotValid {
        /// The list.
        uri: String,
        /// The token's index in it.
        idx: u64,
        /// `INVALID`, `SUSPENDED`, `0x03`…, or `out of range`.
        status: String,
    },
    /// The list cannot be consulted: never fetched, too old, or too many lists.
    #[error("token status unknown: status list {uri} {reason}")]
    Unavailable {
        /// The list.
        uri: String,
        /// Why.
        reason: &'static str,
    },
}

/// One decoded list, as fetched.
#[derive(Debug)]
pub struct Decoded {
    /// Bits per entry: 1, 2, 4 or 8.
    bits: u8,
    /// The decompressed bit field.
    bytes: Box<[u8]>,
    /// The list's `iat`: an older list never replaces it.
    issued_at: i64,
    /// Unix seconds after which this copy no longer counts: the earlier of the list's `exp`
    /// and its fetch plus the configured maximum age.
    usable_until: i64,
    /// Unix seconds when the follower fetches again: no answer based on this copy is kept past
    /// it, so a flipped entry takes effect on the next request after the fetch.
    refresh_at: i64,
}

/// A fetched list as checked: what [`Decoded`] is built from, with the list's own timing.
#[derive(Debug, PartialEq, Eq)]
pub struct ListToken {
    /// Bits per entry.
    pub bits: u8,
    /// The decompressed bit field.
    pub bytes: Vec<u8>,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
    /// `exp`, Unix seconds, when present.
    pub expires_at: Option<i64>,
    /// `ttl`, seconds, when present.
    pub ttl: Option<u64>,
}

impl ListToken {
    /// Seconds until the list is to be fetched again: its `ttl` (or the default) within the
    /// configured bounds, and never past its `exp` (at least 1 s).
    pub fn refresh_in(&self, spec: &StatusListSpec, now: i64) -> u64 {
        let refresh = self
            .ttl
            .unwrap_or(spec.refresh_seconds)
            .clamp(spec.refresh_min_seconds, spec.refresh_max_seconds);
        match self.expires_at {
            Some(exp) => refresh.min(u64::try_from(exp.saturating_sub(now)).unwrap_or(0).max(1)),
            None => refresh,
        }
    }
}

/// A list's live copy, shared by the follower (which replaces it) and every request naming it.
#[derive(Debug)]
pub struct LiveList {
    uri: String,
    current: ArcSwapOption<Decoded>,
}

impl LiveList {
    fn new(uri: String) -> Self {
        Self {
            uri,
            current: ArcSwapOption::empty(),
        }
    }

    /// The list's URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether a copy has arrived.
    pub fn fetched(&self) -> bool {
        self.current.load().is_some()
    }

    /// Unix seconds of the next refresh, when a copy is in place.
    pub fn refresh_at(&self) -> Option<i64> {
        self.current.load().as_ref().map(|d| d.refresh_at)
    }

    /// Whether `list` holds the same entries as the copy in place.
    pub fn same_entries(&self, list: &ListToken) -> bool {
        self.current
            .load()
            .as_ref()
            .is_some_and(|d| d.bits == list.bits && *d.bytes == *list.bytes)
    }

    /// Puts a freshly fetched copy in place, fetched at `now` and kept until `refresh_in`
    /// seconds from now, usable at most `max_age` seconds; unless it is older (`iat`) than
    /// the copy in place (a stale cache, a replay), which stays: `false` then.
    pub fn replace(&self, list: ListToken, now: i64, refresh_in: u64, max_age: u64) -> bool {
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|d| list.issued_at < d.issued_at)
        {
            return false;
        }
        let usable_until = now
            .saturating_add(i64::try_from(max_age).unwrap_or(i64::MAX))
            .min(list.expires_at.unwrap_or(i64::MAX));
        let refresh_at = now
            .saturating_add(i64::try_from(refresh_in).unwrap_or(i64::MAX))
            .min(usable_until);
        self.current.store(Some(Arc::new(Decoded {
            bits: list.bits,
            bytes: list.bytes.into_boxed_slice(),
            issued_at: list.issued_at,
            usable_until,
            refresh_at,
        })));
        true
    }

    /// The entry at `idx` at `now`: `Ok(until)` when VALID, with the Unix second after which
    /// the answer must be asked again.
    pub fn check(&self, idx: u64, now: i64) -> Result<i64, StatusError> {
        let guard = self.current.load();
        let Some(list) = guard.as_ref() else {
            return Err(self.unavailable("has not been fetched yet"));
        };
        if now >= list.usable_until {
            return Err(self.unavailable(
                "is stale: no successful fetch within its maximum age (or past its exp)",
            ));
        }
        match entry(&list.bytes, list.bits, idx) {
            Some(0) => Ok(list.refresh_at.max(now)),
            Some(status) => Err(StatusError::NotValid {
                uri: self.uri.clone(),
                idx,
                status: status_name(status),
            }),
            None => Err(StatusError::NotValid {
                uri: self.uri.clone(),
                idx,
                status: "out of range".into(),
            }),
        }
    }

    fn unavailable(&self, reason: &'static str) -> StatusError {
        StatusError::Unavailable {
            uri: self.uri.clone(),
            reason,
        }
    }
}

impl StatusRef {
    /// The token's status at `now`: `Ok(until)` while VALID.
    pub fn check(&self, now: i64) -> Result<i64, StatusError> {
        match &self.list {
            Some(list) => list.check(self.idx, now),
            None => Err(StatusError::Unavailable {
                uri: self.uri.clone(),
                reason: "is one too many: the issuer's tokens name more lists than Tollgate follows",
            }),
        }
    }
}

/// The draft's names for status values (§7.1); others in hex.
fn status_name(status: u8) -> String {
    match status {
        0 => "VALID".into(),
        1 => "INVALID".into(),
        2 => "SUSPENDED".into(),
        other => format!("0x{other:02X}"),
    }
}

/// The `bits`-wide entry `idx` of `bytes`: entries are packed from the least significant bit
/// of byte 0 upwards (§4.1). `None` past the end.
pub fn entry(bytes: &[u8], bits: u8, idx: u64) -> Option<u8> {
    let bits = u64::from(bits);
    let position = idx.checked_mul(bits)?;
    let byte = *bytes.get(usize::try_from(position / 8).ok()?)?;
    let shift = position % 8;
    let mask = u8::try_from((1u64 << bits) - 1).unwrap_or(u8::MAX);
    Some((byte >> shift) & mask)
}

/// Who signs an issuer's lists and how to check them: its keys and algorithms as of the last
/// snapshot build.
#[derive(Clone)]
pub struct ListVerifier {
    issuer: String,
    keys: Arc<KeySet>,
    hmac: Option<DecodingKey>,
    algorithms: Vec<Algorithm>,
}

impl ListVerifier {
    /// Lists signed by `issuer` with one of `algorithms`, by a key of `keys` (or the secret).
    pub fn new(
        issuer: String,
        keys: Arc<KeySet>,
        hmac: Option<DecodingKey>,
        algorithms: Vec<Algorithm>,
    ) -> Self {
        Self {
            issuer,
            keys,
            hmac,
            algorithms,
        }
    }

    /// Checks a fetched status list token for `uri` at `now` (§8.3): compact JWS, `typ`
    /// `statuslist+jwt`, signed with the issuer's keys (the draft leaves key resolution to the
    /// relying party, and no longer asks `iss` to match), `sub` the URI it was fetched from,
    /// `iat` present, not past `exp`, and a well-formed list whose decompressed size is at
    /// most `max_bytes`.
    pub fn verify(
        &self,
        text: &str,
        uri: &str,
        now: i64,
        max_bytes: usize,
    ) -> Result<ListToken, String> {
        let token = text.trim();
        // Critical extensions are refused, as on access tokens: none is understood here.
        let crit = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
            .is_some_and(|h| h.contains_key("crit"));
        if crit {
            return Err("the header has `crit` extensions, which Tollgate does not support".into());
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("not a status list token (compact JWS): {e}"))?;
        let typ = header.typ.as_deref().unwrap_or_default();
        let bare = typ
            .get(..12)
            .filter(|p| p.eq_ignore_ascii_case("application/"))
            .and_then(|_| typ.get(12..))
            .unwrap_or(typ);
        if !bare.eq_ignore_ascii_case(STATUS_LIST_TYPE) {
            return Err(format!(
                "`typ` is `{typ}`, not `{STATUS_LIST_TYPE}`: another kind of token"
            ));
        }
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(format!("algorithm {alg:?} is not allowed for the issuer"));
        }
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        let key = if hmac {
            self.hmac.as_ref()
        } else {
            self.keys
                .find(header.kid.as_deref(), alg)
                .map(VerifyingKey::decoding)
        }
        .ok_or_else(|| {
            format!(
                "no key of issuer `{}` for kid `{}`",
                self.issuer,
                header.kid.as_deref().unwrap_or("-")
            )
        })?;
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| format!("does not verify with issuer `{}`: {e}", self.issuer))?
            .claims;
        if claims.get("sub").and_then(Value::as_str) != Some(uri) {
            return Err(format!(
                "`sub` is not the URI it was fetched from (`{uri}`): a list for another URI"
            ));
        }
        let issued_at = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or("`iat` is missing or not a time")?;
        let expires_at = match claims.get("exp") {
            None => None,
            Some(exp) => Some(exp.as_i64().ok_or("`exp` is not a time")?),
        };
        if expires_at.is_some_and(|exp| exp <= now) {
            return Err("the list has expired (`exp`)".into());
        }
        let ttl = match claims.get("ttl") {
            None => None,
            Some(ttl) => Some(
                ttl.as_u64()
                    .filter(|&ttl| ttl > 0)
                    .ok_or("`ttl` is not a positive number")?,
            ),
        };
        let list = claims
            .get("status_list")
            .and_then(Value::as_object)
            .ok_or("`status_list` is missing")?;
        let bits = match list.get("bits").and_then(Value::as_u64) {
            Some(bits @ (1 | 2 | 4 | 8)) => u8::try_from(bits).unwrap_or(1),
            _ => return Err("`status_list.bits` is not 1, 2, 4 or 8".into()),
        };
        let lst = list
            .get("lst")
            .and_then(Value::as_str)
            .ok_or("`status_list.lst` is missing")?;
        let compressed = URL_SAFE_NO_PAD
            .decode(lst)
            .map_err(|_| "`status_list.lst` is not base64url (without padding)")?;
        let bytes = inflate(&compressed, max_bytes)?;
        Ok(ListToken {
            bits,
            bytes,
            issued_at,
            expires_at,
            ttl,
        })
    }
}

/// ZLIB-decompresses `compressed` (RFC 1950, §4.1), refusing output past `max_bytes`.
fn inflate(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    flate2::read::ZlibDecoder::new(compressed)
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("`status_list.lst` is not ZLIB-compressed: {e}"))?;
    if bytes.len() > max_bytes {
        return Err(format!(
            "`status_list.lst` decompresses to more than {max_bytes} bytes"
        ));
    }
    if bytes.is_empty() {
        return Err("`status_list.lst` is empty".into());
    }
    Ok(bytes)
}

/// The lists one issuer's tokens name, shared by every snapshot with the same spec and by the
/// follower that fetches them.
pub struct StatusLists {
    spec: StatusListSpec,
    lists: Mutex<HashMap<String, Arc<LiveList>>>,
    verifier: ArcSwapOption<ListVerifier>,
    /// Wakes the follower: a new list to fetch, or new keys to check lists with.
    wanted: Notify,
}

impl std::fmt::Debug for StatusLists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusLists")
            .field("issuer", &self.spec.issuer)
            .field("uris", &self.spec.uris)
            .finish_non_exhaustive()
    }
}

impl StatusLists {
    /// A registry for `spec`, with its exact URIs registered (so they are fetched at once).
    pub fn new(spec: StatusListSpec) -> Self {
        let lists = spec
            .uris
            .iter()
            .filter(|uri| !uri.ends_with('/'))
            .map(|uri| (uri.clone(), Arc::new(LiveList::new(uri.clone()))))
            .collect();
        Self {
            spec,
            lists: Mutex::new(lists),
            verifier: ArcSwapOption::empty(),
            wanted: Notify::new(),
        }
    }

    /// A registry for `spec` that keeps, from the `previous` registry of the issuer (a spec
    /// that changed), every list the new spec still allows, copy and all: a reload must not
    /// refuse every token naming a list until the refetch.
    pub fn new_after(spec: StatusListSpec, previous: Option<&StatusLists>) -> Self {
        let lists = Self::new(spec);
        if let Some(previous) = previous {
            let kept: Vec<_> = previous
                .lock()
                .iter()
                .filter(|(uri, _)| lists.spec.allows(uri))
                .map(|(uri, list)| (uri.clone(), list.clone()))
                .collect();
            lists.lock().extend(kept);
        }
        lists
    }

    /// The settings.
    pub fn spec(&self) -> &StatusListSpec {
        &self.spec
    }

    /// Uses `verifier` for the fetches from now on (the snapshot's view of the issuer's keys).
    pub fn set_verifier(&self, verifier: ListVerifier) {
        self.verifier.store(Some(Arc::new(verifier)));
        self.wanted.notify_one();
    }

    /// The verifier in place, once a snapshot has set one.
    pub fn verifier(&self) -> Option<Arc<ListVerifier>> {
        self.verifier.load_full()
    }

    /// Every registered list.
    pub fn lists(&self) -> Vec<Arc<LiveList>> {
        self.lock().values().cloned().collect()
    }

    /// Waits until a list is registered or the verifier changes.
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveList>>> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live list for `uri`, registered (and the follower woken) the first time a token
    /// names it; `None` once [`MAX_LISTS`] are registered. Called when a token is verified,
    /// not per request.
    pub fn resolve(&self, uri: &str) -> Option<Arc<LiveList>> {
        let mut lists = self.lock();
        if let Some(list) = lists.get(uri) {
            return Some(list.clone());
        }
        if lists.len() >= MAX_LISTS {
            return None;
        }
        let list = Arc::new(LiveList::new(uri.to_owned()));
        lists.insert(uri.to_owned(), list.clone());
        drop(lists);
        self.wanted.notify_one();
        Some(list)
    }

    /// True while an exact list of the config has not arrived (`/readyz` waits for it).
    pub fn awaits_lists(&self) -> bool {
        self.lock()
            .values()
            .any(|l| self.spec.uris.contains(&l.uri) && !l.fetched())
    }
}

/// Reads a token's `status` claim (§6.1): `{"status_list": {"idx": n, "uri": "…"}}`. A claim
/// the issuer cannot have meant (malformed, or naming a list outside its configured URIs)
/// refuses the token; one without `status_list` (another status mechanism) is ignored only
/// when nothing in it names a list.
pub fn status_ref(
    claims: &Map<String, Value>,
    lists: Option<&StatusLists>,
) -> Result<Option<StatusRef>, TokenError> {
    let Some(status) = claims.get("status") else {
        return Ok(None);
    };
    let invalid = |why: &str| TokenError::InvalidClaim(format!("status: {why}"));
    let status = status.as_object().ok_or_else(|| invalid("not an object"))?;
    let Some(list) = status.get("status_list") else {
        return Ok(None);
    };
    let list = list
        .as_object()
        .ok_or_else(|| invalid("status_list is not an object"))?;
    let idx = list
        .get("idx")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("status_list.idx is not a non-negative integer"))?;
    let uri = list
        .get("uri")
        .and_then(Value::as_str)
        .filter(|uri| !uri.is_empty() && uri.len() <= MAX_URI_BYTES)
        .ok_or_else(|| invalid("status_list.uri is not a URI"))?;
    let Some(lists) = lists else {
        return Err(invalid(
            "the token names a status list, and its issuer's config allows none \
             (`status_lists`)",
        ));
    };
    if !lists.spec.allows(uri) {
        return Err(invalid(
            "the token names a status list outside its issuer's `status_lists`",
        ));
    }
    Ok(Some(StatusRef {
        uri: uri.to_owned(),
        idx,
        list: lists.resolve(uri),
    }))
}

/// Makes a status list token: for tests and `tollgate demo-credentials`-style tooling that
/// needs a list signed like an issuer's. `statuses[i]` is entry `i`.
pub fn encode_entries(statuses: &[u8], bits: u8) -> Vec<u8> {
    let per_byte = 8 / usize::from(bits.max(1));
    let mut bytes = vec![0u8; statuses.len().div_ceil(per_byte)];
    for (i, status) in statuses.iter().enumerate() {
        if let Some(byte) = bytes.get_mut(i / per_byte) {
            *byte |= (status & ((1u16 << bits) - 1) as u8) << ((i % per_byte) * usize::from(bits));
        }
    }
    bytes
}

impl FromStr for StatusListSpec {
    type Err = std::convert::Infallible;

    /// A spec allowing one exact URI with default timing; for tests.
    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        Ok(Self {
            issuer: String::new(),
            uris: vec![uri.to_owned()],
            refresh_min_seconds: 1,
            refresh_max_seconds: 3600,
            refresh_seconds: 300,
            max_age_seconds: 7200,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draft's own examples (§4.1): statuses 1,0,0,1,1,1,0,1 | 1,1,0,0,0,1,0,1 with one bit
    /// each are the bytes 0xB9 0xA3, `lst` "eNrbuRgAAhcBXQ"; with two bits, 1,2,0,3 | 0,1,0,1 |
    /// 1,2,3,3 are 0xC9 0x44 0xF9, `lst` "eNo76fITAAPfAgc".
    #[test]
    fn packs_and_reads_entries_as_the_draft_does() {
        let statuses = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        let bytes = encode_entries(&statuses, 1);
        assert_eq!(bytes, [0xB9, 0xA3]);
        let lst = |text: &str| inflate(&URL_SAFE_NO_PAD.decode(text).unwrap(), 1024).unwrap();
        assert_eq!(lst("eNrbuRgAAhcBXQ"), bytes);
        assert_eq!(lst("eNo76fITAAPfAgc"), [0xC9, 0x44, 0xF9]);
        for (i, &s) in statuses.iter().enumerate() {
            assert_eq!(entry(&bytes, 1, i as u64), Some(s), "entry {i}");
        }
        assert_eq!(entry(&bytes, 1, 16), None);
        assert_eq!(entry(&bytes, 1, u64::MAX), None);
        let two = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        let packed = encode_entries(&two, 2);
        assert_eq!(packed, [0xC9, 0x44, 0xF9]);
        for (i, &s) in two.iter().enumerate() {
            assert_eq!(entry(&packed, 2, i as u64), Some(s), "entry {i}");
        }
        assert_eq!(entry(&[0xAB], 8, 0), Some(0xAB));
        assert_eq!(entry(&[0xAB], 4, 1), Some(0xA));
    }

    #[test]
    fn prefixes_allow_lists_under_them_and_exact_uris_themselves() {
        let mut spec: StatusListSpec = "https://issuer.example/lists/7".parse().unwrap();
        spec.uris.push("https://issuer.example/shards/".into());
        assert!(spec.allows("https://issuer.example/lists/7"));
        assert!(!spec.allows("https://issuer.example/lists/70"));
        assert!(spec.allows("https://issuer.example/shards/1"));
        assert!(!spec.allows("https://issuer.example/shards/"));
        assert!(!spec.allows("https://issuer.example.evil/shards/1"));
    }

    #[test]
    fn a_list_is_refused_past_its_age_and_answers_are_kept_no_longer_than_its_refresh() {
        let list = LiveList::new("https://l".into());
        assert!(matches!(
            list.check(0, 100),
            Err(StatusError::Unavailable { .. })
        ));
        let token = |statuses: &[u8]| ListToken {
            bits: 1,
            bytes: encode_entries(statuses, 1),
            issued_at: 1,
            expires_at: None,
            ttl: None,
        };
        assert!(list.replace(token(&[0, 1]), 100, 30, 60));
        assert_eq!(list.check(0, 100), Ok(130));
        assert!(matches!(
            list.check(1, 100),
            Err(StatusError::NotValid { ref status, .. }) if status == "INVALID"
        ));
        assert!(matches!(
            list.check(8, 100),
            Err(StatusError::NotValid { ref status, .. }) if status == "out of range"
        ));
        assert!(matches!(
            list.check(0, 160),
            Err(StatusError::Unavailable { .. })
        ));
        let mut expiring = token(&[0]);
        expiring.expires_at = Some(110);
        assert!(list.replace(expiring, 100, 30, 60));
        assert_eq!(list.check(0, 105), Ok(110));
        assert!(list.check(0, 110).is_err());
    }

    #[test]
    fn decompression_is_capped() {
        use std::io::Write;
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 2048);
        assert!(inflate(&bomb, 1 << 19).unwrap_err().contains("more than"));
        assert_eq!(inflate(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert!(inflate(b"not zlib", 1024).is_err());
    }

    /// Review finding: the next fetch ignored the list's `exp`, so a list expiring before its
    /// refresh refused its tokens until the refresh came.
    #[test]
    fn a_list_is_fetched_again_by_its_exp() {
        let spec: StatusListSpec = "https://l".parse().unwrap();
        let token = |ttl, exp| ListToken {
            bits: 1,
            bytes: vec![0],
            issued_at: 0,
            expires_at: exp,
            ttl,
        };
        assert_eq!(token(Some(2), Some(101)).refresh_in(&spec, 100), 1);
        assert_eq!(token(Some(600), None).refresh_in(&spec, 100), 600);
        assert_eq!(token(None, Some(100_000)).refresh_in(&spec, 100), 300);
        assert_eq!(token(Some(9_999), Some(100)).refresh_in(&spec, 100), 1);
    }

    /// Review finding: an older list (a stale cache, a replay) replaced a newer one and
    /// un-revoked its tokens.
    #[test]
    fn an_older_list_does_not_replace_a_newer_one() {
        let list = LiveList::new("https://l".into());
        let token = |iat, statuses: &[u8]| ListToken {
            bits: 1,
            bytes: encode_entries(statuses, 1),
            issued_at: iat,
            expires_at: None,
            ttl: None,
        };
        assert!(list.replace(token(200, &[1]), 300, 30, 600));
        assert!(!list.replace(token(100, &[0]), 301, 30, 600));
        assert!(list.check(0, 302).is_err(), "the newer list stays");
    }

    /// Review finding: a changed status-list setting started an empty registry, refusing every
    /// token that names a list until the refetch.
    #[test]
    fn a_new_spec_keeps_the_lists_it_still_allows() {
        let mut spec: StatusListSpec = "https://l/".parse().unwrap();
        spec.uris = vec!["https://l/".into()];
        let old = StatusLists::new(spec.clone());
        let kept = old.resolve("https://l/1").unwrap();
        let _ = kept.replace(
            ListToken {
                bits: 1,
                bytes: vec![0],
                issued_at: 1,
                expires_at: None,
                ttl: None,
            },
            100,
            30,
            600,
        );
        let _ = old.resolve("https://l/2");
        spec.refresh_seconds = 60;
        let mut narrower = spec.clone();
        narrower.uris = vec!["https://l/1".into()];
        let new = StatusLists::new_after(narrower, Some(&old));
        assert_eq!(new.lists().len(), 1);
        assert_eq!(new.resolve("https://l/1").unwrap().check(0, 101), Ok(130));
    }

    /// Review finding: a `crit` header was not refused on a status list, as it is on tokens.
    #[test]
    fn a_list_with_a_crit_header_is_refused() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let secret = b"0123456789abcdef0123456789abcdef";
        let header = B64.encode(br#"{"alg":"HS256","typ":"statuslist+jwt","crit":["x"],"x":1}"#);
        let claims = B64.encode(
            br#"{"sub":"https://l","iat":1,"status_list":{"bits":1,"lst":"eNrbuRgAAhcBXQ"}}"#,
        );
        let message = format!("{header}.{claims}");
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
        .unwrap();
        let verifier = ListVerifier::new(
            "i".into(),
            Arc::default(),
            Some(DecodingKey::from_secret(secret)),
            vec![Algorithm::HS256],
        );
        let token = format!("{message}.{signature}");
        let plain = token.replace(
            &header,
            &B64.encode(br#"{"alg":"HS256","typ":"statuslist+jwt"}"#),
        );
        let _ = plain;
        let error = verifier.verify(&token, "https://l", 2, 1024).unwrap_err();
        assert!(error.contains("crit"), "{error}");
    }
}
