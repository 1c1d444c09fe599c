"""Malformed STS answers (extends test_token_exchange_failures.py, which covers 5xx, garbage, no
access_token, a non-Bearer type, an oversized body, slowness and outages): each is refused with
the right status, never forwarded, never cached, and the VM keeps serving."""

from __future__ import annotations

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, SecurityTokenService
from harness.checks import bearer, json_body, new_marker
from harness.exchange import OKTA, ExchangeProfile, mint, upstream_authorization
from harness.sts_fault import StsFault

SECRET = "okta-client-secret-for-hostile-sts"
FAILED = ("temporarily_unavailable", "token exchange failed")
REFUSED = ("access_denied", "token exchange refused")
UNAVAILABLE = ("temporarily_unavailable", "token exchange unavailable")
GOOD = b'{"access_token":"backend.token.value","token_type":"Bearer","expires_in":300}'


pytestmark = pytest.mark.usefixtures("sts_restored", "vm_never_fails")


@pytest.fixture(scope="module")
def exchange() -> ExchangeProfile:
    return OKTA.with_timeout("1s")


@pytest.fixture(scope="module")
def sts_secret() -> str:
    return SECRET


MALFORMED: list[tuple[str, StsFault, int, tuple[str, str]]] = [
    ("empty-200", StsFault.raw(200, b""), 502, FAILED),
    ("json-array", StsFault.raw(200, b"[" + GOOD + b"]"), 502, FAILED),
    ("truncated-json", StsFault.raw(200, GOOD[:-10]), 502, FAILED),
    ("json-null", StsFault.raw(200, b"null"), 502, FAILED),
    ("deeply-nested", StsFault.raw(200, b'{"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"), 502, FAILED),
    ("non-utf8-body", StsFault.raw(200, b'{"access_token":"t\xff","token_type":"Bearer"}'), 502, FAILED),
    ("status-201", StsFault.raw(201, GOOD), 502, FAILED),
    ("status-302", StsFault.raw(302, b""), 502, FAILED),
    ("status-400-not-json", StsFault.raw(400, b"<html>bad</html>"), 403, REFUSED),
    ("access-token-number", StsFault.patched(access_token=7), 502, FAILED),
    ("access-token-with-space", StsFault.patched(access_token="a b"), 502, FAILED),
    ("access-token-with-crlf", StsFault.patched(access_token="a\r\nx-injected: 1"), 502, FAILED),
    ("access-token-17-kib", StsFault.patched(access_token="t" * 17_000), 502, FAILED),
    ("access-token-empty", StsFault.patched(access_token=""), 502, FAILED),
    ("expires-in-negative", StsFault.patched(expires_in=-5), 502, FAILED),
    ("expires-in-string", StsFault.patched(expires_in="300"), 502, FAILED),
    ("expires-in-object", StsFault.patched(expires_in={"s": 300}), 502, FAILED),
    ("token-type-missing", StsFault.patched(token_type=None), 502, FAILED),
    ("token-type-mac", StsFault.patched(token_type="mac"), 502, FAILED),
]


@pytest.mark.parametrize(("behaviour", "status", "body"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_sts_answer_is_refused(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                         sts: SecurityTokenService, upstream: McpUpstream, behaviour: StsFault,
                                         status: int, body: tuple[str, str]) -> None:
    sts.set_fault(behaviour)
    token, marker = mint(idp, "hs-malformed"), new_marker()
    calls_before = len(sts.calls)
    for _ in range(2):  # a failure is not cached: the second request asks the STS again
        response = http.get("/echo", headers=bearer(token, marker))
        assert response.status_code == status, response.text
        answer = json_body(response)
        assert (answer["error"], answer["error_description"]) == body, answer
        assert "backend.token.value" not in response.text
    assert len(sts.calls) - calls_before >= 2
    assert upstream.seen(marker) == []


@pytest.mark.parametrize("expires_in, cached", [(1e300, True), (2**64, True), (0, False), (0.5, False)],
                         ids=["1e300", "2^64", "zero", "half-a-second"])
def test_extreme_expires_in_is_bounded(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService,
                                       upstream: McpUpstream, expires_in: float, cached: bool) -> None:
    """A huge lifetime is capped by the subject token's exp (cached); a lifetime within the
    expiry margin is used once and not cached."""
    sts.set_fault(StsFault.patched(expires_in=expires_in))
    token, marker = mint(idp, f"hs-expires-{expires_in}"), new_marker()
    with httpx.Client(base_url=envoy.url, timeout=10) as client:  # one worker
        for _ in range(3):
            assert client.get("/echo", headers=bearer(token, marker)).status_code == 200
    calls = sts.calls_with_subject_token(token)
    assert len(calls) == (1 if cached else 3), len(calls)
    issued = {c.issued_token for c in calls}
    assert {v.removeprefix("Bearer ") for v in upstream_authorization(upstream, marker)} <= issued


def test_sts_rate_limit_is_temporary(http: httpx.Client, idp: IdentityProvider, sts: SecurityTokenService,
                                     upstream: McpUpstream) -> None:
    sts.set_fault(StsFault.raw(429, b'{"error":"slow_down","error_description":"too many requests"}'))
    token, marker = mint(idp, "hs-429"), new_marker()
    response = http.get("/echo", headers=bearer(token, marker))
    assert upstream.seen(marker) == []
    assert response.status_code == 503, response.text
    assert (json_body(response)["error"], json_body(response)["error_description"]) == UNAVAILABLE
    assert response.headers.get("retry-after")


def test_vm_still_serving(http: httpx.Client, idp: IdentityProvider, upstream: McpUpstream,
                          sts: SecurityTokenService) -> None:
    marker = new_marker()
    for i in range(6):
        assert http.get("/echo", headers=bearer(mint(idp, f"hs-survivor-{i}"), marker)).status_code == 200
    assert len(upstream.seen(marker)) == 6


