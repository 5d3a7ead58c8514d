//! The fast path for records Tollgate wrote itself. It walks a record member by member in the
//! writer's order, reading the fields a review needs and stepping over the rest, and accepts
//! exactly what the writer writes: each member once, in that order, at its depth, no
//! whitespace, valid UTF-8 without control bytes, integers as JSON spells them, strings whose
//! escapes the strict parser takes, one record and nothing after it. Anything else (a member
//! the writer does not write, a reordered, repeated or nested key, a string with escapes in a
//! field it reads, a cut line, two records run together) returns `None`, and the caller parses
//! the line properly instead: the scan may refuse a record, never read one differently from
//! the strict parser. It searches for nothing, so no part of a record goes unchecked.

use wide::u8x16;

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
    /// `actor.authorizations[*].policy.uid`.
    pub policies: Policies<'a>,
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

/// The determining policies of one record. The scan keeps the text of the list rather than
/// an array of ids: a record is read once, and a fixed array large enough for any list was
/// most of what was copied per record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Policies<'a> {
    /// None.
    #[default]
    None,
    /// The entries of `actor.authorizations` as Tollgate writes them (between `[` and `]`),
    /// checked by the scan.
    Own(&'a str),
    /// Read by the strict parser.
    Parsed(Vec<&'a str>),
}

impl<'a> Policies<'a> {
    /// The policy ids, in the record's order.
    pub fn iter(&self) -> PolicyIds<'_, 'a> {
        match self {
            Self::None => PolicyIds::Parsed([].iter()),
            Self::Own(text) => PolicyIds::Own(text, 0),
            Self::Parsed(ids) => PolicyIds::Parsed(ids.iter()),
        }
    }
}

/// See [`Policies::iter`].
pub enum PolicyIds<'s, 'a> {
    /// Entries still to read, and where the next one starts.
    Own(&'a str, usize),
    /// Ids read by the strict parser.
    Parsed(std::slice::Iter<'s, &'a str>),
}

impl<'a> Iterator for PolicyIds<'_, 'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            Self::Parsed(ids) => ids.next().copied(),
            Self::Own(text, at) => {
                let mut cursor = Cursor {
                    line: text.as_bytes(),
                    text,
                    at: *at,
                };
                let id = cursor.policy_entry()?;
                // Past the separating comma; at the end, past the text.
                *at = cursor.at + 1;
                Some(id)
            }
        }
    }
}

/// Reads records in Tollgate's own layout.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scanner;

const PREFIX: &[u8] = b"{\"class_uid\":6003,";

impl Scanner {
    /// The fields of `line`, when it is a whole record in Tollgate's own layout.
    pub fn scan<'a>(&self, line: &'a [u8]) -> Option<Fields<'a>> {
        if !line.starts_with(PREFIX) {
            return None;
        }
        // JSON text is UTF-8; the strict parser refuses a line that is not.
        let text = simdutf8::basic::from_utf8(line).ok()?;
        // One record, and nothing after it.
        self.scan_start(text)
            .and_then(|(fields, end)| (end == line.len()).then_some(fields))
    }

    /// The fields of the record `text` starts with, in Tollgate's own layout, and where it
    /// ends: a reader finds a line's end this way, with no search for the newline. The scan
    /// never steps over a newline (a control byte, refused wherever it meets one), so what it
    /// reads is what [`Self::scan`] reads of the line up to the record's end.
    pub fn scan_start<'a>(&self, text: &'a str) -> Option<(Fields<'a>, usize)> {
        let line = text.as_bytes();
        // A control byte is refused where the scan meets it: outside strings nothing but the
        // writer's literals and digits is taken, and inside them `string_end` stops at one.
        if !line.starts_with(PREFIX) {
            return None;
        }
        let mut f = Fields::default();
        let mut c = Cursor {
            line,
            text,
            at: PREFIX.len(),
        };
        c.number_after(b"\"category_uid\":")?;
        c.number_after(b",\"activity_id\":")?;
        c.optional_string(b",\"activity_name\":\"")?;
        c.number_after(b",\"type_uid\":")?;
        c.number_after(b",\"severity_id\":")?;
        f.time = u64::try_from(c.number_after(b",\"time\":")?).ok()?;
        f.status_id = u64::try_from(c.number_after(b",\"status_id\":")?).ok()?;
        c.expect(b",\"status_code\":\"")?;
        f.reason = c.string()?;
        c.optional_string(b",\"status_detail\":\"")?;
        c.number_after(b",\"action_id\":")?;
        c.number_after(b",\"disposition_id\":")?;
        c.string_after(b",\"metadata\":{\"version\":\"")?;
        c.string_after(b",\"uid\":\"")?;
        // No literal longer than 32 bytes: one that long is compared inline, a longer one by
        // a call to `memcmp`.
        c.expect(b",\"profiles\":[\"security_control\"]")?;
        c.expect(b",\"product\":{\"name\":\"Tollgate\",")?;
        c.expect(b"\"vendor_name\":\"Tollgate\",")?;
        c.string_after(b"\"version\":\"")?;
        c.expect(b"}},\"actor\":{")?;
        c.actor(&mut f)?;
        c.expect(b"},\"api\":{\"operation\":\"")?;
        f.action = Some(c.string()?).filter(|a| !a.is_empty());
        c.number_after(b",\"response\":{\"code\":")?;
        c.optional_string(b",\"error\":\"")?;
        c.optional_string(b",\"message\":\"")?;
        c.expect(b"}")?;
        if c.eat(b",\"token\":{\"type_id\":") {
            c.number()?;
            c.string_after(b",\"type\":\"")?;
            c.optional_string(b",\"uid\":\"")?;
            c.number_after(b",\"expiration_time\":")?;
            c.expect(b"}")?;
        }
        c.expect(b"}")?;
        if c.eat(b",\"resources\":[{\"uid\":\"") {
            c.skip_string()?;
            c.expect(b",\"type\":\"")?;
            f.resource_type = Some(c.string()?);
            c.expect(b"}]")?;
        }
        c.expect(b",\"src_endpoint\":{")?;
        let address = c.optional_string(b"\"ip\":\"")?;
        // Each literal a constant, so that it is compared inline.
        if address {
            c.optional_string(b",\"uid\":\"")?;
        } else {
            c.optional_string(b"\"uid\":\"")?;
        }
        c.expect(b"},\"http_request\":{")?;
        c.string_after(b"\"http_method\":\"")?;
        c.string_after(b",\"url\":{\"path\":\"")?;
        c.string_after(b",\"hostname\":\"")?;
        c.optional_string(b",\"query_string\":\"")?;
        c.expect(b"}},\"unmapped\":{\"tollgate\":{")?;
        c.tollgate(&mut f)?;
        c.expect(b"}}}")?;
        Some((f, c.at))
    }
}

/// A position in a line, moved forward by what is read there.
struct Cursor<'a> {
    line: &'a [u8],
    /// The same line as text, validated once: strings read are slices of it.
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Steps past `literal` if it is next.
    #[inline(always)]
    fn eat(&mut self, literal: &[u8]) -> bool {
        let next = self
            .line
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(literal));
        if next {
            self.at += literal.len();
        }
        next
    }

    #[inline(always)]
    fn expect(&mut self, literal: &[u8]) -> Option<()> {
        self.eat(literal).then_some(())
    }

    /// Steps past the member key `key` (with its `:`) if it is next in an object, after the
    /// comma unless `first`; on success the next member is no longer the first.
    #[inline(always)]
    fn member(&mut self, first: &mut bool, key: &[u8]) -> bool {
        let from = self.at;
        if (*first || self.eat(b",")) && self.eat(key) {
            *first = false;
            return true;
        }
        self.at = from;
        false
    }

    /// The string that starts here, just past its opening quote; `None` if it has escapes
    /// (the strict parser unescapes those) or no end.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.line.get(self.at..)?;
        let len = string_end(rest)?;
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        // Between two ASCII quotes: on character boundaries of a valid line.
        let value = self.text.get(self.at..self.at + len)?;
        self.at += len + 1;
        Some(value)
    }

    /// The string value of the member `key` if it is next (see [`Self::member`]):
    /// `Some(None)` when it is not, `None` when its value is not a plain string.
    #[inline(always)]
    fn string_member(&mut self, first: &mut bool, key: &[u8]) -> Option<Option<&'a str>> {
        match self.member(first, key) {
            true => self.string().map(Some),
            false => Some(None),
        }
    }

    /// Steps past `key` (the text before a value) and the integer after it.
    #[inline(always)]
    fn number_after(&mut self, key: &[u8]) -> Option<i64> {
        self.expect(key)?;
        self.number()
    }

    /// Steps past `key` (the text before a string's value) and the string, unread.
    #[inline(always)]
    fn string_after(&mut self, key: &[u8]) -> Option<()> {
        self.expect(key)?;
        self.skip_string()
    }

    #[inline(always)]
    fn number(&mut self) -> Option<i64> {
        let (value, end) = number(self.line, self.at)?;
        self.at = end;
        Some(value)
    }

    /// The actor's members, in the writer's order, up to its closing brace.
    fn actor(&mut self, f: &mut Fields<'a>) -> Option<()> {
        let first = &mut true;
        f.principal = self.string_member(first, b"\"app_uid\":\"")?;
        if self.member(first, b"\"user\":{") {
            let inner = &mut true;
            let uid = self.string_member(inner, b"\"uid\":\"")?;
            if self.member(inner, b"\"name\":\"") {
                self.skip_string()?;
            }
            self.member(inner, b"\"type_id\":").then_some(())?;
            let type_id = self.number()?;
            self.expect(b"}")?;
            f.user = uid.filter(|_| type_id == 1);
        }
        f.issuer = self.string_member(first, b"\"idp\":{\"name\":\"")?;
        if f.issuer.is_some() {
            self.expect(b"}")?;
        }
        if self.member(first, b"\"session\":{") {
            let inner = &mut true;
            if self.member(inner, b"\"credential_uid\":\"") {
                self.skip_string()?;
            }
            if self.member(inner, b"\"expiration_time\":") {
                self.number()?;
            }
            if self.member(inner, b"\"is_remote\":") && !self.eat(b"true") {
                self.expect(b"false")?;
            }
            self.expect(b"}")?;
        }
        if self.member(first, b"\"authorizations\":[") {
            let from = self.at;
            if !self.eat(b"]") {
                self.items(|c| c.policy_entry().map(drop))?;
                f.policies = Policies::Own(self.text.get(from..self.at - 1)?);
            }
        }
        Some(())
    }

    /// The string that starts here, escapes and all, stepped over unread. Its escapes must
    /// be ones the strict parser takes: a line it would refuse is not read here either.
    ///
    /// Most strings a record steps over are short and plain, and end within the next sixteen
    /// bytes: that case is inlined where it is called; the rest goes to
    /// [`Self::skip_escaped_string`], which the compiler keeps out of line.
    #[inline(always)]
    fn skip_string(&mut self) -> Option<()> {
        if let Some(i) = self.line.get(self.at..).and_then(first_special)
            && self.line.get(self.at + i) == Some(&b'"')
        {
            self.at += i + 1;
            return Some(());
        }
        self.skip_escaped_string()
    }

    /// [`Self::skip_string`] for any string: it is called for one that is longer than sixteen
    /// bytes, has escapes, or ends fewer than sixteen bytes before the line does.
    fn skip_escaped_string(&mut self) -> Option<()> {
        loop {
            let rest = self.line.get(self.at..)?;
            let i = string_end(rest)?;
            match rest.get(i..)? {
                [b'"', ..] => {
                    self.at += i + 1;
                    return Some(());
                }
                [
                    b'\\',
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't',
                    ..,
                ] => {
                    self.at += i + 2;
                }
                // `\u` and four hex digits, not a surrogate (which must come in pairs).
                [b'\\', b'u', a, b, c, d, ..]
                    if [a, b, c, d].iter().all(|x| x.is_ascii_hexdigit())
                        && !(matches!(a, b'd' | b'D')
                            && matches!(b, b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')) =>
                {
                    self.at += i + 6;
                }
                _ => return None,
            }
        }
    }

    /// Steps over a string whose opening (`,"key":"` or `"key":"`) is next, if it is:
    /// whether it was there; `None` if it was but the string is not one JSON takes.
    #[inline(always)]
    fn optional_string(&mut self, opening: &[u8]) -> Option<bool> {
        if !self.eat(opening) {
            return Some(false);
        }
        self.skip_string().map(|()| true)
    }

    /// The items of a list whose `[` is behind, each read by `item`, up to and past the `]`:
    /// at least one, separated by commas.
    #[inline(always)]
    fn items(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        loop {
            item(self)?;
            if self.eat(b"]") {
                return Some(());
            }
            self.expect(b",")?;
        }
    }

    /// `{"decision":"allow","policy":{"uid":"<id>"}}`: the id.
    fn policy_entry(&mut self) -> Option<&'a str> {
        self.string_after(b"{\"decision\":\"")?;
        self.expect(b",\"policy\":{\"uid\":\"")?;
        let id = self.string()?;
        self.expect(b"}}")?;
        Some(id)
    }

    /// `unmapped.tollgate`'s members, up to its closing brace.
    fn tollgate(&mut self, f: &mut Fields<'a>) -> Option<()> {
        let first = &mut true;
        f.access_mode = self.string_member(first, b"\"access_mode\":\"")?;
        f.trust_domain = self.string_member(first, b"\"trust_domain\":\"")?;
        if self.member(first, b"\"client_id\":\"") {
            self.skip_string()?;
        }
        if self.member(first, b"\"credentials_expire\":") {
            f.expires_ms = Some(self.number()?);
        }
        self.member(first, b"\"snapshot\":{\"policies\":\"")
            .then_some(())?;
        self.skip_string()?;
        self.string_after(b",\"trust\":\"")?;
        self.expect(b"}")?;
        if self.eat(b",\"errors\":[") {
            self.items(|c| c.string_after(b"\""))?;
        }
        if self.eat(b",\"error_count\":") {
            self.number()?;
        }
        self.number_after(b",\"elapsed_us\":")?;
        Some(())
    }
}

/// The integer starting at `at`, and the index past it; `None` where the strict parser
/// would not read the same integer: no digits, more than an i64 surely holds, a leading
/// zero (not JSON), `-0` (a float to it), or anything but `,`, `}` or `]` after it (`1x`).
///
/// The digits are checked first and the value computed from them last, so that where a
/// caller drops the value (most integers in a record are stepped over) its computation is
/// dropped too.
#[inline(always)]
fn number(line: &[u8], at: usize) -> Option<(i64, usize)> {
    let rest = line.get(at..)?;
    let negative = rest.first() == Some(&b'-');
    let digits = rest.get(usize::from(negative)..)?;
    let len = leading_digits(digits);
    // `0` alone is the only integer JSON starts with a zero, and `-0` is a float to serde.
    let zero_first = digits.first() == Some(&b'0') && (len > 1 || negative);
    if len == 0 || len > 18 || zero_first {
        return None;
    }
    let end = at + usize::from(negative) + len;
    if !matches!(line.get(end), Some(b',' | b'}' | b']')) {
        return None;
    }
    // At most 18 digits: no overflow.
    let value = digits
        .get(..len)?
        .iter()
        .fold(0i64, |value, &digit| value * 10 + i64::from(digit - b'0'));
    Some((if negative { -value } else { value }, end))
}

/// How many ASCII digits `bytes` starts with, counted to at least 19 (enough to tell an
/// integer too long). Where sixteen bytes follow (every integer in a record but the last),
/// they are looked at at once: a byte is a digit when taking `0` from it leaves at most 9,
/// as an unsigned byte (below `0` wraps round to above it).
#[inline(always)]
fn leading_digits(bytes: &[u8]) -> usize {
    if let Some(chunk) = bytes.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
        let offset = u8x16::from(chunk) - u8x16::splat(b'0');
        let ten = u8x16::splat(10);
        let not_digits = offset.min(ten).simd_eq(ten).to_bitmask();
        if not_digits != 0 {
            return not_digits.trailing_zeros() as usize;
        }
    }
    leading_digits_by_word(bytes)
}

/// [`leading_digits`] eight bytes at a time: a byte is not a digit when it has its high bit
/// set, or gains it by adding 0x46 (above `9`) or by subtracting 0x30 (below `0`). A carry
/// or borrow only moves up from a byte that is not a digit, so the lowest flagged byte is
/// exactly the first one that is not.
#[inline(always)]
fn leading_digits_by_word(bytes: &[u8]) -> usize {
    let not_digits =
        |x: u64| (x | x.wrapping_add(ONES * 0x46) | x.wrapping_sub(ONES * 0x30)) & HIGHS;
    match first_flagged(bytes, 19, not_digits) {
        Ok(len) => len,
        Err(at) => {
            let rest = bytes.get(at..).unwrap_or_default();
            at + rest.iter().take_while(|b| b.is_ascii_digit()).count()
        }
    }
}

/// Where the first `"`, `\` or control byte (below 0x20) in `bytes` is, sixteen bytes at a
/// time: the first byte that is not plain text in a string. Most strings in a record end
/// within the first sixteen, and a general search (`memchr2`) costs more to set up than they
/// take to read. Stopping at control bytes here is what refuses them inside strings (the
/// strict parser does), with no pass of its own over the line.
#[inline(always)]
fn string_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 16) {
        if let Some(i) = first_special(chunk) {
            return Some(at + i);
        }
        at += 16;
    }
    let tail = bytes.get(at..)?;
    let i = tail.iter().position(|&b| special(b))?;
    Some(at + i)
}

/// A byte a plain string cannot hold: it ends the string, starts an escape, or is refused.
fn special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Where the first [`special`] byte in the first sixteen bytes of `bytes` is: `None` when
/// there is none there, or when `bytes` is shorter than sixteen (whatever it holds).
#[inline(always)]
fn first_special(bytes: &[u8]) -> Option<usize> {
    let chunk = u8x16::from(<[u8; 16]>::try_from(bytes.get(..16)?).ok()?);
    // Unsigned `chunk < 0x20`: the bytes no greater than 0x1f are their own minimum with it.
    let control = chunk.min(u8x16::splat(0x1f)).simd_eq(chunk);
    let found = (chunk.simd_eq(u8x16::splat(b'"')) | chunk.simd_eq(u8x16::splat(b'\\')) | control)
        .to_bitmask();
    (found != 0).then(|| found.trailing_zeros() as usize)
}

/// Each byte of a word: `ONES * b` repeats `b` eight times.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of each byte of a word.
const HIGHS: u64 = ONES * 0x80;

/// The first byte of `bytes` that `flags` marks (its high bit set in the word `flags`
/// returns; marks above the first may be wrong), looked at eight bytes at a time while the
/// words start before `limit`: `Ok(index)`, or `Err(at)` where the words stopped, unread
/// from there (fewer than eight bytes left, or `limit` reached).
#[inline(always)]
fn first_flagged(bytes: &[u8], limit: usize, flags: impl Fn(u64) -> u64) -> Result<usize, usize> {
    let mut at = 0;
    while at < limit {
        let Some(word) = bytes
            .get(at..at + 8)
            .and_then(|word| <[u8; 8]>::try_from(word).ok())
        else {
            break;
        };
        let flagged = flags(u64::from_le_bytes(word));
        if flagged != 0 {
            return Ok(at + (flagged.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    Err(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The sixteen-at-a-time search finds what a byte-by-byte look finds, in any bytes.
        /// Mostly plain ones, so that runs reach the second and third chunks and the tail
        /// after them.
        #[test]
        fn string_end_agrees_with_a_byte_by_byte_look(bytes in proptest::collection::vec(
            proptest::prop_oneof![
                40 => b'a'..=b'z',
                1 => proptest::prelude::any::<u8>(),
                1 => proptest::strategy::Just(b'"'),
                1 => proptest::strategy::Just(b'\\'),
                1 => 0u8..0x20,
                1 => proptest::strategy::Just(0x80u8),
            ],
            0..80,
        )) {
            let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            proptest::prop_assert_eq!(string_end(&bytes), expected);
        }
    }

    /// A quote, a backslash or a control byte is found at every place: in the first chunk,
    /// the later ones, and the bytes after the last whole chunk; none is found where there is
    /// none, and the bytes either side of the control range (0x1f, 0x20) are told apart.
    #[test]
    fn a_string_end_is_found_in_every_chunk_and_in_the_tail() {
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 49] {
            for at in 0..len {
                for special in [b'"', b'\\', 0, b'\t', b'\n', 0x1f] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    assert_eq!(
                        string_end(&bytes),
                        Some(at),
                        "{len} bytes, {special:#x} at {at}"
                    );
                    // And the first of two.
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                        assert_eq!(string_end(&bytes), Some(at), "{len} bytes, at {at}");
                    }
                }
                for plain in [b' ', b'!', 0x7f, 0x80, 0xff] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = plain;
                    assert_eq!(string_end(&bytes), None, "{len} bytes, {plain:#x} at {at}");
                }
            }
            assert_eq!(string_end(&vec![b'a'; len]), None, "{len} plain bytes");
        }
    }

    proptest::proptest! {
        /// Sixteen or eight at a time, the digits counted are the ones a byte-by-byte count
        /// finds.
        #[test]
        fn leading_digits_agrees_with_a_byte_count(bytes in proptest::collection::vec(
            proptest::prop_oneof![
                // Mostly digits, so that runs reach the second and third words.
                24 => b'0'..=b'9',
                1 => proptest::prelude::any::<u8>(),
                1 => proptest::sample::select(vec![b'/', b':', 0x7f, 0x80, 0xba, 0xff, 0]),
            ],
            0..40,
        )) {
            let counted = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            for found in [leading_digits(&bytes), leading_digits_by_word(&bytes)] {
                if counted < 19 {
                    proptest::prop_assert_eq!(found, counted);
                } else {
                    proptest::prop_assert!(found >= 19);
                }
            }
        }
    }

    /// Every byte that is not a digit ends the count, at every place in both ways of
    /// counting: the bytes either side of the digits (`/`, `:`) and those a wrapping
    /// subtraction could take for one (0x00, 0xff, 0xb0..0xb9 and 0x80).
    #[test]
    fn every_byte_but_a_digit_ends_the_count_at_every_place() {
        for len in [1, 8, 15, 16, 17, 24] {
            for at in 0..len {
                for byte in (0..=u8::MAX).filter(|b| !b.is_ascii_digit()) {
                    let mut bytes = vec![b'7'; len];
                    bytes[at] = byte;
                    assert_eq!(leading_digits(&bytes), at, "{len} bytes, {byte:#x} at {at}");
                    assert_eq!(
                        leading_digits_by_word(&bytes),
                        at,
                        "{len}, {byte:#x} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn numbers_are_read_as_json_spells_them() {
        for (text, want) in [
            ("0,", Some(0)),
            ("7}", Some(7)),
            ("-12]", Some(-12)),
            ("1790000000000,", Some(1_790_000_000_000)),
            ("999999999999999999,", Some(999_999_999_999_999_999)),
            ("9999999999999999999,", None),
            ("-0,", None),
            ("01,", None),
            ("-,", None),
            ("1.5,", None),
            ("1e3,", None),
            ("12", None),
            ("", None),
            ("-", None),
            ("0", None),
            ("0}", Some(0)),
            ("-7,", Some(-7)),
            ("00,", None),
            ("-01,", None),
            ("123456789012345678,", Some(123_456_789_012_345_678)),
            ("-123456789012345678}", Some(-123_456_789_012_345_678)),
            ("1234567890123456789012345,", None),
            ("12345678:", None),
            ("1234567/,", None),
        ] {
            let read = number(text.as_bytes(), 0);
            assert_eq!(read.map(|(n, _)| n), want, "{text}");
            if read.is_some() {
                assert_eq!(read.map(|(_, end)| end), Some(text.len() - 1), "{text}");
            }
        }
    }

    /// Integers whose end is found inside the first, second or third word, by each of the
    /// three ways a byte is told from a digit, and not in the short tail.
    #[test]
    fn an_integer_ends_where_a_word_shows_its_first_other_byte() {
        for (line, want) in [
            (&b"123,45678901"[..], Some((123, 3))),
            (b"123456789,123456789", Some((123_456_789, 9))),
            (
                b"1234567890123456},,,,,,,,",
                Some((1_234_567_890_123_456, 16)),
            ),
            (
                b"12345678901234567],,,,,,,",
                Some((12_345_678_901_234_567, 17)),
            ),
            (b"1234567890:,,,,,,,", None),
            (b"12345\x80,,,,,,,,,", None),
            (b"123456789012345678\x80,,,,,,", None),
            (b"12345678901234567\xff,,,,,,,", None),
            (b"1234567890123456789,,,,,,,", None),
            (b"1234567890123456789012,,,", None),
        ] {
            assert_eq!(number(line, 0), want, "{}", line.escape_ascii());
        }
    }
}
