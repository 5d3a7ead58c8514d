use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, Pipe, SocketAddress, address,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use proptest::prelude::*;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use super::*;
use crate::grpc::check::{WireError, input_from_proto};

/// What prost and `input_from_proto` make of `message`.
fn decoded(message: &[u8]) -> Option<Result<CheckInput, WireError>> {
    CheckRequest::decode(message).ok().map(input_from_proto)
}

/// The memo key the message's view writes, and the one its decoded input stands for.
fn keys(view: &CheckView<'_>, input: &CheckInput) -> (Vec<u8>, Vec<u8>) {
    let mut from_view = Vec::new();
    view.key(&mut from_view);
    let mut from_input = FRONT_DOOR_KEY.to_vec();
    key_field(&mut from_input, b"grpc");
    crate::authz::caches::decision_inputs(input, &mut from_input);
    (from_view, from_input)
}

/// A view read from `message` is the request prost reads there, and keys it alike. (Prost may
/// refuse a message the view reads: the view does not check fields it does not read.)
fn assert_agrees(message: &[u8]) -> bool {
    let Some(view) = CheckView::read(message) else {
        return false;
    };
    let Some(decoded) = decoded(message) else {
        return true;
    };
    let input = decoded.expect("a view is read only where every decision input is");
    assert_eq!(view.input(), input);
    let names: Vec<&str> = view.headers().map(|(name, _)| name).collect();
    assert_eq!(view.header_names().collect::<Vec<_>>(), names);
    let (from_view, from_input) = keys(&view, &input);
    assert_eq!(from_view, from_input);
    true
}

fn check(source: Option<Peer>, http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source,
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn socket(ip: &str) -> Option<Peer> {
    Some(Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(
                    envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                        4000,
                    ),
                ),
                ..Default::default()
            })),
        }),
        certificate: "-----BEGIN%20CERTIFICATE-----".into(),
        principal: "spiffe://demo/p".into(),
        service: "skipped".into(),
        ..Default::default()
    })
}

fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(number, WireType::LengthDelimited, &mut out);
    encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A `CheckRequest` whose `HttpRequest` is `http`'s bytes as given (repeats and all).
fn with_http_bytes(http: &[u8]) -> Vec<u8> {
    field(1, &field(4, &field(2, http)))
}

#[test]
fn a_request_as_envoy_sends_it_is_read_where_it_lies() {
    let headers: HashMap<String, String> = [
        ("authorization", "Bearer t"),
        ("x-request-id", "7"),
        (":authority", "shop.demo"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let message = check(
        socket("::ffff:10.0.0.1"),
        HttpRequest {
            id: "1".into(),
            method: "GET".into(),
            path: "/orders/1?x=1".into(),
            host: "shop.demo".into(),
            scheme: "https".into(),
            headers,
            ..Default::default()
        },
    )
    .encode_to_vec();
    assert!(assert_agrees(&message));
    let view = CheckView::read(&message).unwrap();
    assert_eq!(view.path(), "/orders/1?x=1");
    assert_eq!(view.input().source_ip, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(view.input().header("authorization"), Some("Bearer t"));
}

#[test]
fn raw_headers_are_read_joined_and_raw_values_win() {
    let header = |key: &str, value: &str, raw: &[u8]| HeaderValue {
        key: key.into(),
        value: value.into(),
        raw_value: raw.to_vec(),
    };
    let http = |headers: Vec<HeaderValue>| HttpRequest {
        method: "GET".into(),
        path: "/".into(),
        header_map: Some(HeaderMap { headers }),
        ..Default::default()
    };
    let message = check(
        None,
        http(vec![
            header("authorization", "", b"Bearer raw"),
            header("x-trace", "a", b""),
            header("x-trace", "", b"b"),
        ]),
    )
    .encode_to_vec();
    assert!(assert_agrees(&message));
    let input = CheckView::read(&message).unwrap().input();
    assert_eq!(input.header("authorization"), Some("Bearer raw"));
    assert_eq!(input.header("x-trace"), Some("a,b"));

    // Decoded in full instead: a repeated decision input (joined, it would be a new string),
    // a raw value that is not text (a malformed request), an upper-case name.
    for headers in [
        vec![
            header("authorization", "a", b""),
            header("authorization", "b", b""),
        ],
        vec![header("x-note", "", b"\xff")],
        vec![header("X-Note", "n", b"")],
    ] {
        let message = check(None, http(headers)).encode_to_vec();
        assert_eq!(CheckView::read(&message), None);
    }
}

#[test]
fn what_prost_would_merge_or_overwrite_is_left_to_prost() {
    let plain = HttpRequest {
        method: "GET".into(),
        path: "/a".into(),
        ..Default::default()
    };
    let again = HttpRequest {
        path: "/b".into(),
        ..Default::default()
    };
    // `path` twice: prost keeps the last.
    let mut http = plain.encode_to_vec();
    http.extend(again.encode_to_vec());
    assert_eq!(CheckView::read(&with_http_bytes(&http)), None);
    assert_eq!(
        decoded(&with_http_bytes(&http)).unwrap().unwrap().path,
        "/b"
    );

    // `attributes` twice: prost merges them.
    let mut message = check(socket("10.0.0.1"), plain.clone()).encode_to_vec();
    message.extend(check(None, again).encode_to_vec());
    assert_eq!(CheckView::read(&message), None);

    // The address's oneof set twice: the last variant wins.
    let mut peer = socket("10.0.0.1").unwrap();
    let mut address = peer.address.take().unwrap().encode_to_vec();
    address.extend(
        Address {
            address: Some(address::Address::Pipe(Pipe {
                path: "/sock".into(),
                ..Default::default()
            })),
        }
        .encode_to_vec(),
    );
    let peer = field(1, &address);
    let message = field(
        1,
        &[field(1, &peer), field(4, &field(2, &plain.encode_to_vec()))].concat(),
    );
    assert_eq!(CheckView::read(&message), None);
    assert_eq!(decoded(&message).unwrap().unwrap().source_ip, None);

    // A map's repeated key: the last, as prost keeps it.
    let entry = |k: &str, v: &str| {
        field(
            3,
            &[field(1, k.as_bytes()), field(2, v.as_bytes())].concat(),
        )
    };
    let http = [
        plain.encode_to_vec(),
        entry("authorization", "Bearer first"),
        entry("authorization", "Bearer last"),
    ]
    .concat();
    assert!(assert_agrees(&with_http_bytes(&http)));
}

/// Review finding: an entry whose name is present but empty is a header named `""` to prost;
/// the names-only reading must give it too.
#[test]
fn a_map_entry_with_an_empty_name_is_read_as_prost_reads_it() {
    let message = [
        0x0a, 0x0d, 0x22, 0x0b, 0x12, 0x09, 0x12, 0x03, b'G', b'E', b'T', 0x1a, 0x02, 0x0a, 0x00,
    ];
    assert!(assert_agrees(&message));
}

/// Review finding: an `Address` holding a field beyond the oneof's three (one a later Envoy
/// may add) is left to prost, whose oneof it would set last.
#[test]
fn an_address_with_a_field_the_view_does_not_know_is_left_to_prost() {
    let socket = SocketAddress {
        address: "10.0.0.1".into(),
        ..Default::default()
    };
    let address = [field(1, &socket.encode_to_vec()), field(4, b"x")].concat();
    let http = HttpRequest {
        method: "GET".into(),
        ..Default::default()
    };
    let message = field(
        1,
        &[
            field(1, &field(1, &address)),
            field(4, &field(2, &http.encode_to_vec())),
        ]
        .concat(),
    );
    assert_eq!(CheckView::read(&message), None);
}

#[test]
fn missing_parts_and_broken_bytes_are_left_to_prost() {
    for message in [
        CheckRequest::default().encode_to_vec(),
        CheckRequest {
            attributes: Some(AttributeContext::default()),
        }
        .encode_to_vec(),
        vec![0x0a, 0x05, 0x01],
        vec![0x0b],
        vec![0xff; 12],
    ] {
        assert_eq!(CheckView::read(&message), None, "{message:?}");
    }
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("authorization".to_owned()),
        Just("x-forwarded-client-cert".to_owned()),
        Just("x-tollgate-principal".to_owned()),
        Just("Authorization".to_owned()),
        "[a-z-]{0,6}",
    ]
}

fn peer() -> impl Strategy<Value = Option<Peer>> {
    prop_oneof![
        Just(None),
        Just(socket("10.1.2.3")),
        Just(socket("::ffff:10.1.2.3")),
        Just(socket("not an address")),
        Just(socket("2001:db8::1")),
        Just(socket("")),
        Just(Some(Peer::default())),
        Just(Some(Peer {
            address: Some(Address::default()),
            ..Default::default()
        })),
        Just(Some(Peer {
            address: Some(Address {
                address: Some(address::Address::Pipe(Pipe::default())),
            }),
            ..Default::default()
        })),
    ]
}

fn http_request() -> impl Strategy<Value = HttpRequest> {
    (
        "(GET|POST|[a-zA-Z]{0,5})",
        "[/a-z0-9?#%]{0,24}",
        "[a-z.]{0,10}",
        proptest::collection::hash_map(header_name(), ".{0,10}", 0..5),
        proptest::option::of(proptest::collection::vec(
            (
                header_name(),
                ".{0,6}",
                proptest::collection::vec(any::<u8>(), 0..4),
            ),
            0..5,
        )),
    )
        .prop_map(|(method, path, host, headers, header_map)| HttpRequest {
            method,
            path,
            host,
            headers,
            header_map: header_map.map(|headers| HeaderMap {
                headers: headers
                    .into_iter()
                    .map(|(key, value, raw_value)| HeaderValue {
                        key,
                        value,
                        raw_value,
                    })
                    .collect(),
            }),
            id: "skipped".into(),
            ..Default::default()
        })
}

proptest! {
    /// Whatever a request holds, a view that reads it agrees with prost; and every request in
    /// Envoy's shape is read.
    #[test]
    fn a_view_agrees_with_prost(source in peer(), http in http_request()) {
        let envoy_shaped = {
            let names: Vec<&str> = match (&http.header_map, http.headers.is_empty()) {
                (Some(map), true) => map.headers.iter().map(|h| h.key.as_str()).collect(),
                _ => http.headers.keys().map(String::as_str).collect(),
            };
            let raw_text = http.header_map.as_ref().is_none_or(|map| {
                !http.headers.is_empty()
                    || map.headers.iter().all(|h| std::str::from_utf8(&h.raw_value).is_ok())
            });
            let once = |n: &str| names.iter().filter(|&&k| k == n).count() <= 1;
            names.iter().all(|n| !n.bytes().any(|b| b.is_ascii_uppercase()))
                && raw_text
                && once("authorization")
                && once("x-forwarded-client-cert")
        };
        let message = check(source, http).encode_to_vec();
        prop_assert_eq!(assert_agrees(&message), envoy_shaped);
    }

    /// Concatenated pieces (repeats prost merges or overwrites) and arbitrary bytes: never a
    /// panic, and a view read is what prost reads.
    #[test]
    fn odd_messages_are_read_as_prost_reads_them_or_not_at_all(
        a in http_request(),
        b in http_request(),
        first in peer(),
        second in peer(),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let http = [a.encode_to_vec(), b.encode_to_vec()].concat();
        assert_agrees(&with_http_bytes(&http));
        assert_agrees(&noise);
        assert_agrees(&with_http_bytes(&noise));
        // Two peers, and two addresses in one peer: prost merges them.
        let request = field(4, &field(2, &a.encode_to_vec()));
        let encoded = |peer: &Option<Peer>| peer.as_ref().map(Message::encode_to_vec).unwrap_or_default();
        let peers = [field(1, &encoded(&first)), field(1, &encoded(&second)), request.clone()].concat();
        prop_assert!(!assert_agrees(&field(1, &peers)), "two peers were read");
        let address = |peer: &Option<Peer>| {
            peer.as_ref().and_then(|p| p.address.as_ref()).map(Message::encode_to_vec)
        };
        if let (Some(x), Some(y)) = (address(&first), address(&second)) {
            let peer = [field(1, &x), field(1, &y)].concat();
            let message = field(1, &[field(1, &peer), request].concat());
            prop_assert!(!assert_agrees(&message), "two addresses were read");
        }
    }
}
