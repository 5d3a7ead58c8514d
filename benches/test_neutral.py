"""Unit tests of benches/neutral.py's parts that decide what h2load sends and what counts as a
valid run (run by .ci/run: python3 -m unittest discover -s benches -p 'test_*.py')."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import neutral  # noqa: E402


def message(method, path, headers, body=b""):
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    if body:
        head += f"content-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class Http1Call(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def test_each_door_sends_its_own_body(self):
        a = neutral.Call.http1(message("POST", "/a", [("host", "x")], b'{"a":1}'), self.tmp, "a")
        b = neutral.Call.http1(message("POST", "/b", [("host", "x")], b'{"b":2}'), self.tmp, "b")
        self.assertNotEqual(a.body, b.body)
        with open(a.body, "rb") as f:
            self.assertEqual(f.read(), b'{"a":1}')
        with open(b.body, "rb") as f:
            self.assertEqual(f.read(), b'{"b":2}')

    def test_host_becomes_authority_and_content_length_is_h2loads(self):
        cert = ":MIIB+x/y=:"
        call = neutral.Call.http1(
            message("POST", "/p", [("host", "pdp.demo"), ("client-cert", cert)], b"{}"), self.tmp, "p")
        self.assertEqual(call.path, "/p")
        self.assertTrue(call.h1)
        self.assertIn(":authority: pdp.demo", call.headers)
        self.assertIn(f"client-cert: {cert}", call.headers)
        self.assertFalse(any(h.startswith("content-length") or h.startswith("host:") for h in call.headers))

    def test_a_get_has_no_body_and_other_methods_are_kept(self):
        get = neutral.Call.http1(message("GET", "/g", [("host", "x")]), self.tmp, "g")
        self.assertIsNone(get.body)
        self.assertFalse(any(h.startswith(":method") for h in get.headers))
        put = neutral.Call.http1(message("PUT", "/u", [("host", "x")], b"{}"), self.tmp, "u")
        self.assertIn(":method: PUT", put.headers)
        self.assertIsNotNone(put.body)
        delete = neutral.Call.http1(message("DELETE", "/d", [("host", "x")]), self.tmp, "d")
        self.assertIn(":method: DELETE", delete.headers)


class ExpectedRun(unittest.TestCase):
    """A run counts only when every decision made during it was the expected one (an allow, or
    for the forged token a `token_signature` deny) and there are at least as many as h2load
    measured: any other decision fails it (AuthZEN answers a deny with 200, and a gRPC Check's
    deny is an HTTP 200 too), even when the warm-up's expected ones would cover the count."""

    def test_every_request_expected(self):
        self.assertIsNone(neutral.not_all_expected((100, 105), (1300, 1305), 1000, "allowed"))

    def test_another_decision_fails_the_run_even_with_warmup_ones(self):
        self.assertIn("otherwise", neutral.not_all_expected((100, 105), (1300, 1306), 1000, "allowed"))

    def test_too_few_expected(self):
        self.assertIn("only 800", neutral.not_all_expected((100, 105), (900, 905), 1000, "allowed"))

    def test_the_forged_scenario_counts_its_deny(self):
        self.assertIsNone(neutral.not_all_expected((0, 50), (1000, 1050), 1000, "denied token_signature"))
        self.assertIn("otherwise", neutral.not_all_expected((0, 50), (1000, 1051), 1000, "denied token_signature"))


if __name__ == "__main__":
    unittest.main()
