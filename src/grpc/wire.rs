//! A `CheckRequest` read where it lies: the fields that decide a Check, borrowed from the
//! message's bytes, so that a request answered from the verdict memo costs no decoding into
//! owned strings and maps (prost's decode was an eighth of a Check's instructions).
//!
//! [`CheckView::read`] takes the shape Envoy sends: every field it reads at most once (maps and
//! repeated headers aside), header names in lower case, text where protobuf says text, and no
//! groups. Anything else gives `None`, and the caller decodes the message in full with prost,
//! as before, so a message prost would read differently (a merged repeat, a last-wins scalar)
//! is never read here at all. Fields it does not read are skipped unchecked, as a proxy skips
//! what it does not use.

use std::net::IpAddr;

use prost::encoding::{WireType, decode_key, decode_varint};

use crate::authz::caches::{DecisionInputs, FRONT_DOOR_KEY, key_field};
use crate::request::{CheckInput, Headers};

/// The headers whose values are decision inputs (see [`DecisionInputs`]).
const AUTHORIZATION: &str = "authorization";
const XFCC: &str = "x-forwarded-client-cert";

/// What decides a `CheckRequest`, borrowed from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckView<'a> {
    method: &'a str,
    path: &'a str,
    host: &'a str,
    certificate: &'a str,
    principal: &'a str,
    source_ip: Option<IpAddr>,
    /// The `HttpRequest` message: [`Self::headers`] walks it again.
    http: &'a [u8],
    /// The headers come from Envoy's `header_map` (sent with `encode_raw_headers`), not from
    /// the `headers` map: the map is empty and `header_map` is present.
    raw_headers: bool,
    authorization: Option<&'a str>,
    xfcc: Option<&'a str>,
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one message, in wire order; `Err` ends a message that is not well formed.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    fn of(message: &'a [u8]) -> Self {
        Self { rest: message }
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), ()> {
        let (number, wire_type) = decode_key(&mut self.rest).map_err(|_| ())?;
        let value = match wire_type {
            WireType::Varint => {
                decode_varint(&mut self.rest).map_err(|_| ())?;
                Value::Varint
            }
            WireType::SixtyFourBit => self.skip(8).map(|_| Value::Fixed)?,
            WireType::ThirtyTwoBit => self.skip(4).map(|_| Value::Fixed)?,
            WireType::LengthDelimited => {
                let len = decode_varint(&mut self.rest).map_err(|_| ())?;
                let len = usize::try_from(len).map_err(|_| ())?;
                Value::Bytes(self.skip(len)?)
            }
            // Groups: prost reads them; nothing Envoy sends has one.
            WireType::StartGroup | WireType::EndGroup => return Err(()),
        };
        Ok((number, value))
    }

    fn skip(&mut self, len: usize) -> Result<&'a [u8], ()> {
        if len > self.rest.len() {
            return Err(());
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }
}

/// Fields read once each: a second occurrence (which prost would merge, or let win) is refused.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, number: u32) -> Option<()> {
        let bit = 1u32.checked_shl(number)?;
        if self.0 & bit != 0 {
            return None;
        }
        self.0 |= bit;
        Some(())
    }
}

fn bytes(value: Value<'_>) -> Option<&[u8]> {
    match value {
        Value::Bytes(bytes) => Some(bytes),
        Value::Varint | Value::Fixed => None,
    }
}

fn text(value: Value<'_>) -> Option<&str> {
    std::str::from_utf8(bytes(value)?).ok()
}

/// Each field of `message`, `None` if it is not well formed.
fn each<'a>(message: &'a [u8], mut f: impl FnMut(u32, Value<'a>) -> Option<()>) -> Option<()> {
    for field in Fields::of(message) {
        let (number, value) = field.ok()?;
        f(number, value)?;
    }
    Some(())
}

/// Field `number` of `message`, which holds it at most once: `Some(None)` when absent, `None`
/// when repeated (prost would merge or let the last win) or not well formed.
fn only<'a>(message: &'a [u8], number: u32) -> Option<Option<Value<'a>>> {
    let mut found = None;
    each(message, |at, value| {
        if at == number && found.replace(value).is_some() {
            return None;
        }
        Some(())
    })?;
    Some(found)
}

/// A header as the wire has it: a `headers` map entry, or a `header_map` `HeaderValue`.
#[derive(Default)]
struct Header<'a> {
    name: &'a str,
    value: &'a str,
    raw: Option<&'a str>,
}

impl<'a> Header<'a> {
    /// A map entry (`key` = 1, `value` = 2) or a `HeaderValue` (and `raw_value` = 3, which wins
    /// when not empty, as `input_from_proto` reads it). Names must be lower case.
    fn read(entry: &'a [u8], raw_allowed: bool) -> Option<Self> {
        let mut header = Header::default();
        let mut seen = Seen::default();
        each(entry, |number, value| {
            match number {
                1 | 2 => {
                    seen.first(number)?;
                    let text = text(value)?;
                    if number == 1 {
                        header.name = text;
                    } else {
                        header.value = text;
                    }
                }
                3 if raw_allowed => {
                    seen.first(3)?;
                    let raw = bytes(value)?;
                    if !raw.is_empty() {
                        header.raw = Some(std::str::from_utf8(raw).ok()?);
                    }
                }
                _ => {}
            }
            Some(())
        })?;
        if header.name.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        Some(header)
    }

    fn value(&self) -> &'a str {
        self.raw.unwrap_or(self.value)
    }
}

impl<'a> CheckView<'a> {
    /// The view of `message`, a `CheckRequest`; `None` when it is not in the shape this reads
    /// (see the module's documentation), and must be decoded in full.
    pub fn read(message: &'a [u8]) -> Option<Self> {
        let attributes = bytes(only(message, 1)??)?;
        let (mut source, mut request) = (None, None);
        let mut seen = Seen::default();
        each(attributes, |number, value| {
            match number {
                1 => source = Some(bytes(value)?),
                4 => request = Some(bytes(value)?),
                _ => return Some(()),
            }
            seen.first(number)
        })?;
        let http = bytes(only(request?, 2)??)?;
        let mut view = CheckView {
            method: "",
            path: "",
            host: "",
            certificate: "",
            principal: "",
            source_ip: None,
            http,
            raw_headers: false,
            authorization: None,
            xfcc: None,
        };
        if let Some(source) = source {
            view.read_peer(source)?;
        }
        view.read_http()?;
        Some(view)
    }

    /// `Peer`: address (1), principal (4), certificate (5).
    fn read_peer(&mut self, peer: &'a [u8]) -> Option<()> {
        let mut seen = Seen::default();
        each(peer, |number, value| {
            match number {
                1 => self.source_ip = socket_ip(bytes(value)?)?,
                4 => self.principal = text(value)?,
                5 => self.certificate = text(value)?,
                _ => return Some(()),
            }
            seen.first(number)
        })
    }

    /// `HttpRequest`: method (2), headers (3), path (4), host (5), header_map (13).
    fn read_http(&mut self) -> Option<()> {
        let (mut map_entries, mut header_map) = (0usize, None);
        let mut seen = Seen::default();
        each(self.http, |number, value| {
            match number {
                2 => self.method = text(value)?,
                3 => {
                    let header = Header::read(bytes(value)?, false)?;
                    map_entries += 1;
                    // A map keeps the last of a repeated key, as prost's does.
                    match header.name {
                        AUTHORIZATION => self.authorization = Some(header.value),
                        XFCC => self.xfcc = Some(header.value),
                        _ => {}
                    }
                    return Some(());
                }
                4 => self.path = text(value)?,
                5 => self.host = text(value)?,
                13 => header_map = Some(bytes(value)?),
                _ => return Some(()),
            }
            seen.first(number)
        })?;
        if map_entries > 0 {
            return Some(());
        }
        let Some(header_map) = header_map else {
            return Some(());
        };
        self.raw_headers = true;
        // `HeaderMap`: repeated `HeaderValue` (1); a repeated header is joined, so a repeated
        // decision input would need a new string: such a request is decoded in full.
        each(header_map, |number, value| {
            if number == 1 {
                let header = Header::read(bytes(value)?, true)?;
                let slot = match header.name {
                    AUTHORIZATION => &mut self.authorization,
                    XFCC => &mut self.xfcc,
                    _ => return Some(()),
                };
                if slot.replace(header.value()).is_some() {
                    return None;
                }
            }
            Some(())
        })
    }

    /// The request's path, as sent.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The headers as the pipeline reads them (names, then values), in wire order: the map's
    /// entries (a repeated key once per occurrence), or `header_map`'s.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let raw = self.raw_headers;
        HeaderEntries {
            http: Fields::of(self.http),
            header_map: None,
            raw,
        }
        .filter_map(move |entry| Header::read(entry, raw))
        .map(|header| (header.name, header.value()))
    }

    /// The header names [`Self::headers`] gives, without reading the values again (a token or
    /// a forwarded certificate is most of a request's bytes): for every request, to find the
    /// headers that are Tollgate's to set.
    pub fn header_names(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        HeaderEntries {
            http: Fields::of(self.http),
            header_map: None,
            raw: self.raw_headers,
        }
        .map(|entry| {
            // No name field is the empty name, as protobuf leaves an empty string out.
            Fields::of(entry)
                .map_while(Result::ok)
                .find_map(|(number, value)| (number == 1).then(|| text(value)).flatten())
                .unwrap_or_default()
        })
    }

    /// The verdict memo's key (see `Caches::verdict_keyed`): the [`DecisionInputs`] of the
    /// input [`Self::input`] builds, after a prefix no other front door writes.
    pub fn key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&FRONT_DOOR_KEY);
        key_field(out, b"grpc");
        DecisionInputs {
            certificate: self.certificate,
            principal: self.principal,
            authorization: self.authorization,
            xfcc: self.xfcc,
            method: self.method,
            path: self.path,
            host: self.host,
            source_ip: self.source_ip,
        }
        .write(out);
    }

    /// The request as the pipeline reads it: what `input_from_proto` makes of the same
    /// message.
    pub fn input(&self) -> CheckInput {
        let mut input = CheckInput {
            method: self.method.to_owned(),
            path: self.path.to_owned(),
            host: self.host.to_owned(),
            headers: Headers::default(),
            source_ip: self.source_ip,
            certificate: self.certificate.to_owned(),
            principal: self.principal.to_owned(),
        };
        for (name, value) in self.headers() {
            if self.raw_headers {
                input.insert_header(name, value);
            } else {
                // A map: the last of a repeated key, as prost keeps it (names are lower case).
                input.headers.insert(name.to_owned(), value.to_owned());
            }
        }
        input
    }
}

/// The header entries of an `HttpRequest`: the `headers` map's (3), or with `raw` the
/// `HeaderValue`s (1) of its `header_map` (13).
struct HeaderEntries<'a> {
    http: Fields<'a>,
    header_map: Option<Fields<'a>>,
    raw: bool,
}

impl<'a> Iterator for HeaderEntries<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(header_map) = &mut self.header_map {
                match header_map.next() {
                    Some(Ok((1, value))) => return bytes(value),
                    Some(Ok(_)) => continue,
                    Some(Err(())) | None => self.header_map = None,
                }
            }
            let (number, value) = self.http.next()?.ok()?;
            match (number, self.raw) {
                (3, false) => return bytes(value),
                (13, true) => self.header_map = Some(Fields::of(bytes(value)?)),
                _ => {}
            }
        }
    }
}

/// `Address` → its `socket_address` (1) → `address` (2), as an IP; `None` inside when the
/// address is another kind (a pipe, an internal address) or not an IP, as `input_from_proto`
/// reads it. `None` outside when the message holds more than one field.
fn socket_ip(address: &[u8]) -> Option<Option<IpAddr>> {
    let mut socket = None;
    let mut variants = 0;
    // `Address` is its oneof alone: any second field (another variant, or one a later Envoy
    // adds to the oneof) is left to prost.
    each(address, |number, value| {
        variants += 1;
        if number == 1 {
            socket = Some(bytes(value)?);
        }
        (variants <= 1).then_some(())
    })?;
    let Some(socket) = socket else {
        return Some(None);
    };
    let ip = match only(socket, 2)? {
        Some(address) => text(address)?,
        None => "",
    };
    Some(ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical()))
}

#[cfg(test)]
mod tests;
