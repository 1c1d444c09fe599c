"""The IdP's /jwks misbehaving against a real Envoy: malformed key sets at the first fetch (503,
then recovery without a restart), failures of every kind during background refreshes (the last
good keys stay in use), and key rotation with an overlap (old and new keys both valid, then the
old one withdrawn and its tokens refused).

The keys here live 2 s (`cache_duration`; the IdP sends no Cache-Control), so a refresh runs
about every 1.8 s. Waits are bounded by deadlines; no test asserts how long anything took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness import Envoy, McpUpstream, free_port, provider, resource_url, standard_plugin_config, wait_until
from harness.checks import bearer, challenge, echoed, json_body, new_marker
from harness.faults import RawAnswer, ScriptedIdp, wasm_failures

UNAVAILABLE = {"error": "temporarily_unavailable", "error_description": "signing keys unavailable"}
CLIENT_TIMEOUT = 10  # no request may take longer: the filter must answer within its own deadlines
DEADLINE = 15  # for recovery and for refreshes to be seen

pytestmark = pytest.mark.usefixtures("vm_never_fails")


def _config(port: int, idp: ScriptedIdp) -> dict[str, Any]:
    config = standard_plugin_config(envoy_port=port, idp_port=idp.port)
    jwks = provider(config)["remote_jwks"]
    jwks["http_uri"]["timeout"] = "1s"
    jwks["cache_duration"] = "2s"
    jwks["failed_refetch_duration"] = "1s"
    jwks["unknown_kid_refetch_interval"] = "60s"  # rotations below must come from refreshes
    return config


@pytest.fixture(scope="module")
def idp(envoy_port: int) -> Iterator[ScriptedIdp]:
    server = ScriptedIdp(audience=resource_url(envoy_port), jwks_max_age=None).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: ScriptedIdp) -> dict[str, Any]:
    return _config(envoy_port, idp)


@pytest.fixture(autouse=True)
def _healthy_idp(idp: ScriptedIdp) -> Iterator[None]:
    yield
    idp.start()
    idp.raw, idp.delay = None, 0.0
    idp.set_jwks_mode("ok")


def _client(envoy: Envoy) -> httpx.Client:
    # No keep-alive: each request may land on either worker.
    return httpx.Client(base_url=envoy.url, timeout=CLIENT_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0))


def _all_ok(client: httpx.Client, make_token: Callable[[], str], n: int = 6) -> bool:
    return all(client.get("/echo", headers=bearer(make_token())).status_code == 200 for _ in range(n))


def _rsa_jwk(idp: ScriptedIdp) -> dict[str, Any]:
    return idp.key().jwk()


def _b64(n: int, byte: int = 0xFF) -> str:
    import base64

    return base64.urlsafe_b64encode(bytes([byte]) * n).rstrip(b"=").decode()


MALFORMED: list[tuple[str, Callable[[ScriptedIdp], RawAnswer]]] = [
    ("bad-n", lambda idp: RawAnswer(200, json.dumps({"keys": [{**_rsa_jwk(idp), "n": "!!not-base64!!"}]}).encode(),
                                    {"content-type": "application/json"})),
    ("short-n", lambda idp: RawAnswer(200, json.dumps({"keys": [{**_rsa_jwk(idp), "n": _b64(64)}]}).encode(),
                                      {"content-type": "application/json"})),
    ("bad-e", lambda idp: RawAnswer(200, json.dumps({"keys": [{**_rsa_jwk(idp), "e": ""}]}).encode(),
                                    {"content-type": "application/json"})),
    ("unknown-kty", lambda idp: RawAnswer(200, json.dumps({"keys": [{**_rsa_jwk(idp), "kty": "XYZ"}]}).encode(),
                                          {"content-type": "application/json"})),
    ("hmac-key", lambda idp: RawAnswer(200, json.dumps({"keys": [{"kty": "oct", "k": _b64(32), "kid": "h"}]}).encode(),
                                       {"content-type": "application/json"})),
    ("empty-key-set", lambda idp: RawAnswer(200, b'{"keys":[]}', {"content-type": "application/json"})),
    ("keys-not-a-list", lambda idp: RawAnswer(200, b'{"keys":{}}', {"content-type": "application/json"})),
    ("not-json", lambda idp: RawAnswer(200, b"<html>maintenance</html>", {"content-type": "text/html"})),
    ("huge-document", lambda idp: RawAnswer(200, json.dumps({"keys": [_rsa_jwk(idp)], "pad": "x" * 400_000}).encode(),
                                            {"content-type": "application/json"})),
    ("deeply-nested", lambda idp: RawAnswer(200, b'{"keys":' + b"[" * 20_000 + b"]" * 20_000 + b"}",
                                            {"content-type": "application/json"})),
    ("status-204", lambda idp: RawAnswer(204, b"", {})),
    ("status-404", lambda idp: RawAnswer(404, b'{"error":"not_found"}', {"content-type": "application/json"})),
]


@pytest.mark.parametrize("answer", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_first_jwks_is_503_then_recovers(make_envoy: Callable[..., Envoy], upstream: McpUpstream,
                                                   answer: Callable[[ScriptedIdp], RawAnswer]) -> None:
    port = free_port()
    idp = ScriptedIdp(audience=resource_url(port), jwks_max_age=None).start()
    envoy = make_envoy(_config(port, idp), idp_port=idp.port, listener_port=port).start()
    try:
        idp.raw = answer(idp)
        marker = new_marker()
        with _client(envoy) as client:
            response = client.get("/echo", headers=bearer(idp.mint(), marker))
            assert response.status_code == 503, response.text
            assert json_body(response) == UNAVAILABLE
            assert response.headers.get("retry-after") == "1"
            assert upstream.seen(marker) == []
            envoy.wait_for_counter("mcp_auth.jwks_fetch.failed", 1)

            idp.raw = None  # the IdP is fixed: no restart of anything
            wait_until(lambda: _all_ok(client, idp.mint), DEADLINE, interval=0.25,
                       what="requests to succeed once /jwks is good again")
        assert wasm_failures(envoy.log_text()) == []
    finally:
        envoy.stop()
        idp.stop()


REFRESH_FAULTS = ["status-500", "hang-past-timeout", "slow-within-timeout", "malformed", "empty-key-set",
                  "huge-document", "idp-down"]


@pytest.mark.parametrize("fault", REFRESH_FAULTS)
def test_refresh_failure_keeps_last_good_keys(envoy: Envoy, idp: ScriptedIdp, fault: str) -> None:
    """While refreshes fail (or crawl), new tokens (never seen, so verified with the cached keys)
    keep being accepted on both workers, and every request is answered."""
    with _client(envoy) as client:
        wait_until(lambda: _all_ok(client, idp.mint), DEADLINE, interval=0.25, what="keys loaded on both workers")
        failed_before = envoy.counter("mcp_auth.jwks_fetch.failed")
        since = time.monotonic()
        if fault == "status-500":
            idp.set_jwks_mode("fail")
        elif fault == "hang-past-timeout":
            idp.set_jwks_mode("hang")
        elif fault == "slow-within-timeout":
            idp.delay = 0.6  # the callout's timeout is 1 s
        elif fault == "malformed":
            idp.raw = RawAnswer(200, b'{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}', {})
        elif fault == "empty-key-set":
            idp.raw = RawAnswer(200, b'{"keys":[]}', {})
        elif fault == "huge-document":
            idp.raw = RawAnswer(200, b'{"keys":[],"pad":"' + b"x" * 400_000 + b'"}', {})
        elif fault == "idp-down":
            idp.stop()

        deadline = time.monotonic() + 5  # at least two refresh periods
        statuses: list[int] = []
        while time.monotonic() < deadline:
            statuses.append(client.get("/echo", headers=bearer(idp.mint(sub=f"during-{fault}"))).status_code)
            time.sleep(0.1)
        assert set(statuses) == {200}, f"{statuses.count(200)}/{len(statuses)} succeeded during {fault}"
        if fault == "idp-down":
            assert envoy.counter("mcp_auth.jwks_fetch.failed") > failed_before
        elif fault != "slow-within-timeout":
            assert idp.fetches_since(since) >= 1, "no refresh was attempted"
            envoy.wait_for_counter("mcp_auth.jwks_fetch.failed", failed_before + 1)
    assert wasm_failures(envoy.log_text()) == []


def test_recovery_after_idp_outage_picks_up_a_rotated_key(envoy: Envoy, idp: ScriptedIdp) -> None:
    """The IdP goes away, comes back with a new key: tokens signed by it are accepted without
    restarting anything (found by the background refresh)."""
    with _client(envoy) as client:
        wait_until(lambda: _all_ok(client, idp.mint), DEADLINE, interval=0.25, what="keys loaded")
        idp.stop()
        time.sleep(2.5)
        new_kid = idp.add_rsa_key()
        idp.start()
        wait_until(lambda: _all_ok(client, lambda: idp.mint(kid=new_kid, sub="after-outage")), DEADLINE,
                   interval=0.25, what="the new key to be accepted after the outage")


def test_rotation_with_overlap_then_removal(envoy: Envoy, idp: ScriptedIdp, upstream: McpUpstream) -> None:
    with _client(envoy) as client:
        old_kid = idp.default_kid
        old_token = idp.mint(sub="old-key-user")
        wait_until(lambda: _all_ok(client, lambda: old_token), DEADLINE, interval=0.25, what="old key accepted")

        # 1. The IdP publishes the next key ahead of using it; refreshes pick it up.
        new_kid = idp.add_rsa_key()
        wait_until(lambda: _all_ok(client, lambda: idp.mint(kid=new_kid, sub="new-key-user")), DEADLINE,
                   interval=0.25, what="the new key to be accepted")
        # 2. Overlap: both keys are valid.
        for _ in range(4):
            assert client.get("/echo", headers=bearer(old_token)).status_code == 200
            assert client.get("/echo", headers=bearer(idp.mint(kid=old_kid))).status_code == 200

        # 3. The old key is withdrawn: its tokens, even the one already verified and cached, are refused.
        idp.withdraw(old_kid)

        def old_key_refused() -> bool:
            responses = [client.get("/echo", headers=bearer(t)) for t in (old_token, idp.mint(kid=old_kid)) * 3]
            return all(r.status_code == 401 for r in responses)

        wait_until(old_key_refused, DEADLINE, interval=0.25, what="the withdrawn key's tokens to be refused")
        marker = new_marker()
        response = client.get("/echo", headers=bearer(old_token, marker))
        assert challenge(response)["error_description"] == "token signing key not found"
        assert upstream.seen(marker) == []
        assert echoed(client.get("/echo", headers=bearer(idp.mint(kid=new_kid, sub="still-new"))),
                      "x-mcp-user-sub") == ["still-new"]
    assert wasm_failures(envoy.log_text()) == []
