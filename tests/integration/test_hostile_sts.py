"""Malformed STS answers (extends test_token_exchange_failures.py, which covers 5xx, garbage, no
access_token, a non-Bearer type, an oversized body, slowness and outages): each is refused with
the right status, never forwarded, never cached, and the VM keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream
from harness.checks import bearer, json_body, new_marker
from harness.exchange import mint, okta_envoy_options, okta_plugin_config, upstream_authorization
from harness.faults import ScriptedSts, wasm_failures

SECRET = "okta-client-secret-for-hostile-sts"
FAILED = ("temporarily_unavailable", "token exchange failed")
REFUSED = ("access_denied", "token exchange refused")
UNAVAILABLE = ("temporarily_unavailable", "token exchange unavailable")
GOOD = b'{"access_token":"backend.token.value","token_type":"Bearer","expires_in":300}'


@pytest.fixture(scope="module")
def sts(idp: IdentityProvider, resource: str) -> Iterator[ScriptedSts]:
    server = ScriptedSts(idp, subject_audiences=[resource], clients={"mcp-filter": SECRET}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider, sts: ScriptedSts) -> dict[str, Any]:
    config = okta_plugin_config(envoy_port=envoy_port, idp_port=idp.port, sts_port=sts.port)
    config["token_exchange"]["token_endpoint"]["timeout"] = "1s"
    return config


@pytest.fixture(scope="module")
def envoy_options(sts: ScriptedSts) -> dict[str, Any]:
    return okta_envoy_options(sts.port, SECRET)


@pytest.fixture(autouse=True)
def _normal_sts(sts: ScriptedSts, envoy: Envoy) -> Iterator[None]:
    yield
    sts.raw, sts.patch, sts.headers = None, None, {}
    failures = wasm_failures(envoy.log_text())
    assert not failures, "\n".join(failures[:4])


MALFORMED: list[tuple[str, dict[str, Any], int, tuple[str, str]]] = [
    ("empty-200", {"raw": (200, b"")}, 502, FAILED),
    ("json-array", {"raw": (200, b"[" + GOOD + b"]")}, 502, FAILED),
    ("truncated-json", {"raw": (200, GOOD[:-10])}, 502, FAILED),
    ("json-null", {"raw": (200, b"null")}, 502, FAILED),
    ("deeply-nested", {"raw": (200, b'{"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}")}, 502, FAILED),
    ("non-utf8-body", {"raw": (200, b'{"access_token":"t\xff","token_type":"Bearer"}')}, 502, FAILED),
    ("status-201", {"raw": (201, GOOD)}, 502, FAILED),
    ("status-302", {"raw": (302, b"")}, 502, FAILED),
    ("status-400-not-json", {"raw": (400, b"<html>bad</html>")}, 403, REFUSED),
    ("access-token-number", {"patch": {"access_token": 7}}, 502, FAILED),
    ("access-token-with-space", {"patch": {"access_token": "a b"}}, 502, FAILED),
    ("access-token-with-crlf", {"patch": {"access_token": "a\r\nx-injected: 1"}}, 502, FAILED),
    ("access-token-17-kib", {"patch": {"access_token": "t" * 17_000}}, 502, FAILED),
    ("access-token-empty", {"patch": {"access_token": ""}}, 502, FAILED),
    ("expires-in-negative", {"patch": {"expires_in": -5}}, 502, FAILED),
    ("expires-in-string", {"patch": {"expires_in": "300"}}, 502, FAILED),
    ("expires-in-object", {"patch": {"expires_in": {"s": 300}}}, 502, FAILED),
    ("token-type-missing", {"patch": {"token_type": None}}, 502, FAILED),
    ("token-type-mac", {"patch": {"token_type": "mac"}}, 502, FAILED),
]


@pytest.mark.parametrize(("behaviour", "status", "body"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_sts_answer_is_refused(http: httpx.Client, envoy: Envoy, idp: IdentityProvider, sts: ScriptedSts,
                                         upstream: McpUpstream, behaviour: dict[str, Any], status: int,
                                         body: tuple[str, str]) -> None:
    sts.raw, sts.patch = behaviour.get("raw"), behaviour.get("patch")
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
def test_extreme_expires_in_is_bounded(envoy: Envoy, idp: IdentityProvider, sts: ScriptedSts,
                                       upstream: McpUpstream, expires_in: float, cached: bool) -> None:
    """A huge lifetime is capped by the subject token's exp (cached); a lifetime within the
    expiry margin is used once and not cached."""
    sts.patch = {"expires_in": expires_in}
    token, marker = mint(idp, f"hs-expires-{expires_in}"), new_marker()
    with httpx.Client(base_url=envoy.url, timeout=10) as client:  # one worker
        for _ in range(3):
            assert client.get("/echo", headers=bearer(token, marker)).status_code == 200
    calls = sts.calls_with_subject_token(token)
    assert len(calls) == (1 if cached else 3), len(calls)
    issued = {c.issued_token for c in calls}
    assert {v.removeprefix("Bearer ") for v in upstream_authorization(upstream, marker)} <= issued


def test_sts_rate_limit_is_temporary(http: httpx.Client, idp: IdentityProvider, sts: ScriptedSts,
                                     upstream: McpUpstream) -> None:
    sts.raw = (429, b'{"error":"slow_down","error_description":"too many requests"}')
    token, marker = mint(idp, "hs-429"), new_marker()
    response = http.get("/echo", headers=bearer(token, marker))
    assert upstream.seen(marker) == []
    assert response.status_code == 503, response.text
    assert (json_body(response)["error"], json_body(response)["error_description"]) == UNAVAILABLE
    assert response.headers.get("retry-after")


def test_vm_still_serving(http: httpx.Client, idp: IdentityProvider, upstream: McpUpstream,
                          sts: ScriptedSts) -> None:
    marker = new_marker()
    for i in range(6):
        assert http.get("/echo", headers=bearer(mint(idp, f"hs-survivor-{i}"), marker)).status_code == 200
    assert len(upstream.seen(marker)) == 6


