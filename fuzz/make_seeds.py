#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/: a few well-formed and a few broken inputs per
target, so fuzzing starts from the shapes real callers send. Run from the repository root:
`python3 fuzz/make_seeds.py`. CheckRequest seeds are protobuf, encoded here by hand (field
numbers from Envoy's external_auth.proto and attribute_context.proto)."""
import os
import urllib.parse

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def check_request(method, path, headers=(), principal="", certificate="", ip=None):
    http = field(2, method) + field(4, path) + field(5, "shop.test")
    for k, v in headers:
        http += field(3, field(1, k) + field(2, v))
    peer = b""
    if ip:
        # Address.socket_address(1) { address(2) }
        peer += field(1, field(1, field(2, ip)))
    if principal:
        peer += field(4, principal)
    if certificate:
        peer += field(5, certificate)
    attributes = field(1, peer) + field(4, field(2, http))
    return field(1, attributes)


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


demo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "demo")
ca_pem = open(os.path.join(demo, "ca.pem")).read()
config = open(os.path.join(demo, "tollgate.toml")).read()
token = ("eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImRlbW8ifQ."
         "eyJpc3MiOiJodHRwczovL2lzc3Vlci5kZW1vLnRvbGxnYXRlLmRldiIsImF1ZCI6InRvbGxnYXRlLWRlbW8iLCJleHAiOjQxMDI0NDQ4MDAsImNsaWVudF9pZCI6Im9yZGVycyIsInNjb3BlIjoib3JkZXJzLnJlYWQifQ."
         "c2lnbmF0dXJl")

write("check_input", "get-order", check_request("GET", "/orders/1", [("authorization", "Bearer " + token)]))
write("check_input", "delegated", check_request("GET", "/users/alice/orders/3", [("authorization", "Bearer " + token)], ip="::ffff:10.20.3.4"))
write("check_input", "cert", check_request("POST", "/payments/charge", certificate=urllib.parse.quote(ca_pem, safe="")))
write("check_input", "principal", check_request("PUT", "/reports/x", principal="spiffe://demo.tollgate.dev/nightly-batch"))
write("check_input", "xfcc", check_request("GET", "/orders/..;/admin", [("x-forwarded-client-cert", 'By=spiffe://a/b;URI=spiffe://demo.tollgate.dev/web;Subject="CN=a,b"')]))

for i, p in enumerate(["GET /orders/1", "GET /users/alice/orders/3", "POST /payments/42/refund",
                       "GET /orders/..;/admin", "GET //orders//1?x=/admin", "GET /orders/%2e%2e%3b",
                       "GET /orders/%252e", "PUT /reports/caf%C3%A9"]):
    write("path_routes", f"seed-{i}", p)

for i, h in enumerate([
        'By=spiffe://x/a;Hash=' + "a" * 64 + ';Subject="CN=a,O=b;c";URI=spiffe://x/web',
        'By=spiffe://x/a;URI=spiffe://x/a,By=spiffe://x/b;URI=spiffe://x/web;DNS=web.svc',
        'Subject="CN=\\"q\\";x";URI=spiffe://x/web',
        'Subject=CN=a";URI=spiffe://x/evil,URI=spiffe://x/web']):
    write("xfcc", f"seed-{i}", h)

write("certificate", "ca", urllib.parse.quote(ca_pem, safe=""))
write("certificate", "plain-pem", ca_pem)
write("certificate", "empty-block", "-----BEGIN CERTIFICATE-----%0AAAAA%0A-----END CERTIFICATE-----%0A")

write("jwt", "es256", token)
write("jwt", "none", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5kZW1vLnRvbGxnYXRlLmRldiJ9.")
write("jwt", "typ", "eyJhbGciOiJFUzI1NiIsInR5cCI6InN0YXR1c2xpc3Qrand0In0.e30.AA")

write("config", "demo", config)
write("config", "old-keys", config.replace('[[identity.trust_domains]]\nname = "demo.tollgate.dev"\nbundle = "ca.pem"',
                                           'trust_bundles = ["ca.pem"]\ntrust_domains = ["demo.tollgate.dev"]'))
write("config", "xfcc", config.replace('source = "certificate"', 'source = "xfcc"'))
