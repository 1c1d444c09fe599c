"""Token exchange (RFC 8693) with envoy/okta-same-idp.yaml as shipped (ports moved, the STS cluster
pointed at the test STS, the client secret in Envoy's environment): the backend token goes
upstream, the client's token never does, and the exchange is cached.

The last test scans the log for every token and the secret, so it stays last.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import anyio
import httpx
import pytest

from harness import BackendApi, Envoy, IdentityProvider, McpUpstream, SecurityTokenService, wait_until
from harness.checks import bearer, new_marker, token_fingerprint
from harness.envoy import AUDIT_MARK
from harness.exchange import OKTA, ExchangeProfile, mint, upstream_authorization
from harness.mcp_client import mcp_session
from harness.mcp_upstream import header_values
from harness.net import GaveUp
from harness.rfc8693 import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from harness.sts import decode_issued
from harness.sts_fault import StsFault

SECRET = "okta-client-secret-for-tests"
HTTP_TIMEOUT = 10
REEXCHANGE_DEADLINE = 20  # seconds; the cached exchanges below live about 3 s


pytestmark = pytest.mark.usefixtures("sts_restored")


@pytest.fixture(scope="module")
def exchange() -> ExchangeProfile:
    return OKTA


@pytest.fixture(scope="module")
def sts_secret() -> str:
    return SECRET


def _issued_for(sts: SecurityTokenService, sub: str) -> list[str]:
    return [c.issued_token for c in sts.calls_for(sub) if c.issued_token]


def _audit_for(envoy: Envoy, token: str, count: int) -> list[dict[str, Any]]:
    """The audit lines of `count` requests made with `token`, once all are written."""
    fingerprint = token_fingerprint(token)

    def written() -> list[dict[str, Any]] | None:
        lines = [a for a in envoy.audit_lines() if a.get("token_sha256") == fingerprint]
        return lines if len(lines) >= count else None

    return wait_until(written, 5, what=f"{count} audit lines")


def test_backend_token_goes_upstream_instead_of_client_token(http: httpx.Client, idp: IdentityProvider,
                                                            sts: SecurityTokenService, upstream: McpUpstream) -> None:
    token = mint(idp, "te-alice", email="te-alice@example.com")
    marker = new_marker()

    response = http.get("/echo", headers=bearer(token, marker))

    assert response.status_code == 200, response.text
    (call,) = sts.calls_with_subject_token(token)
    assert call.ok, call
    (entry,) = upstream.seen(marker)
    assert header_values(entry, "authorization") == [f"Bearer {call.issued_token}"]
    assert not any(token in value for _, value in entry["headers"]), "the client's token reached the upstream"
    assert header_values(entry, "x-mcp-user-sub") == ["te-alice"]
    claims = decode_issued(sts, call.issued_token)  # signature, iss = STS, aud = backend, exp
    assert claims["sub"] == "te-alice" and claims["aud"] == "backend"
    assert "backend-api:read" in claims["scp"]


def test_exchange_request_is_rfc8693(http: httpx.Client, idp: IdentityProvider, sts: SecurityTokenService) -> None:
    token = mint(idp, "te-shape")
    assert http.get("/echo", headers=bearer(token)).status_code == 200

    (call,) = sts.calls_with_subject_token(token)
    assert call.path == "/token"
    assert (call.content_type or "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"
    assert call.accept == "application/json"
    assert call.grant_type == TOKEN_EXCHANGE_GRANT
    assert call.subject_token_type == ACCESS_TOKEN_TYPE
    assert call.requested_token_type == ACCESS_TOKEN_TYPE
    assert (call.audience, call.scopes, call.resource) == ("backend", ["backend-api:read"], None)
    assert (call.auth_method, call.client_id) == ("client_secret_basic", "mcp-filter")
    assert call.extra == {}


def test_mcp_tool_calls_backend_as_the_user(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService,
                                            backend: BackendApi, upstream: McpUpstream) -> None:
    token = mint(idp, "te-bob", email="te-bob@example.com")
    marker = new_marker()

    async def session() -> dict[str, Any]:
        async with mcp_session(f"{envoy.url}/mcp", bearer(token, marker)) as client:
            whoami = await client.call_tool("whoami", {})
            answer = await client.call_tool("query_backend", {"url": backend.whoami_url})
            return {"whoami": whoami.structured_content, "answer": answer.structured_content}

    result = anyio.run(session)

    assert result["whoami"] == {"sub": "te-bob", "email": "te-bob@example.com", "authorization_present": True}
    assert result["answer"] == {"status": 200, "authorization_sent": True, "body": {
        "user": "te-bob", "audience": "backend", "scopes": ["backend-api:read"], "token_kind": "jwt"}}
    assert [c.status for c in backend.calls_by("te-bob")] == [200]
    issued = _issued_for(sts, "te-bob")
    assert 1 <= len(issued) <= 2, "an MCP session is one user's token: at most one exchange per worker"
    seen = upstream_authorization(upstream, marker)
    assert len(seen) >= 4 and all(v.removeprefix("Bearer ") in issued for v in seen), seen
    # Without the exchange the backend would refuse: it does not take the client's own token.
    direct = httpx.get(backend.whoami_url, headers=bearer(token), timeout=HTTP_TIMEOUT)
    assert direct.status_code == 401


def test_sequential_requests_on_one_connection_exchange_once(envoy: Envoy, idp: IdentityProvider,
                                                             sts: SecurityTokenService) -> None:
    token = mint(idp, "te-sequential")
    before = envoy.stats()

    # One keep-alive connection: one worker serves all ten.
    with httpx.Client(base_url=envoy.url, timeout=HTTP_TIMEOUT) as client:
        statuses = [client.get("/echo", headers=bearer(token)).status_code for _ in range(10)]

    assert statuses == [200] * 10
    assert len(sts.calls_with_subject_token(token)) == 1
    assert [a.get("exchange") for a in _audit_for(envoy, token, 10)] == ["miss"] + ["hit"] * 9
    for name, delta in (("mcp_auth.exchange.ok", 1), ("mcp_auth.exchange.cache_miss", 1),
                        ("mcp_auth.exchange.cache_hit", 9), ("mcp_auth.allowed", 10)):
        envoy.wait_for_counter(name, before.get(name, 0) + delta)


def test_concurrent_burst_on_separate_connections(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService,
                                                  upstream: McpUpstream) -> None:
    """Ten connections at once, spread over both workers, while the exchange is in flight: one
    call for the whole Envoy (a claim in shared data), every other request waits for it."""
    token = mint(idp, "te-burst")
    marker = new_marker()
    sts.set_fault(StsFault.slow(0.5))
    start = threading.Barrier(10)
    statuses: list[int] = []

    def one() -> None:
        with httpx.Client(base_url=envoy.url, timeout=HTTP_TIMEOUT) as client:
            start.wait(timeout=HTTP_TIMEOUT)
            statuses.append(client.get("/echo", headers=bearer(token, marker)).status_code)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=2 * HTTP_TIMEOUT)

    assert statuses == [200] * 10
    calls = sts.calls_with_subject_token(token)
    assert len(calls) == 1, f"{len(calls)} exchanges for one token on 2 workers"
    issued = {c.issued_token for c in calls}
    assert {v.removeprefix("Bearer ") for v in upstream_authorization(upstream, marker)} <= issued


def test_concurrent_burst_on_one_http2_connection(envoy: Envoy, idp: IdentityProvider,
                                                  sts: SecurityTokenService) -> None:
    """Ten concurrent streams on one HTTP/2 connection: one worker, one exchange for all."""
    token = mint(idp, "te-h2")
    sts.set_fault(StsFault.slow(0.5))

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=envoy.url, http1=False, http2=True, limits=limits,
                                     timeout=HTTP_TIMEOUT) as client:
            assert (await client.get("/healthz")).http_version == "HTTP/2"  # connection is up
            responses: list[httpx.Response] = []

            async def one() -> None:
                responses.append(await client.get("/echo", headers=bearer(token)))

            async with anyio.create_task_group() as group:
                for _ in range(10):
                    group.start_soon(one)
            return responses

    responses = anyio.run(burst)

    assert [r.status_code for r in responses] == [200] * 10
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert len(sts.calls_with_subject_token(token)) == 1


def test_two_users_two_exchanges(idp: IdentityProvider, envoy: Envoy, sts: SecurityTokenService,
                                 upstream: McpUpstream) -> None:
    tokens = {"te-carol": mint(idp, "te-carol"), "te-dave": mint(idp, "te-dave")}
    markers = {sub: new_marker() for sub in tokens}
    with httpx.Client(base_url=envoy.url, timeout=HTTP_TIMEOUT) as client:
        for _ in range(3):
            for sub, token in tokens.items():
                assert client.get("/echo", headers=bearer(token, markers[sub])).status_code == 200

    for sub in tokens:
        (issued,) = _issued_for(sts, sub)
        assert decode_issued(sts, issued)["sub"] == sub
        assert upstream_authorization(upstream, markers[sub]) == [f"Bearer {issued}"] * 3


def _poll_until_reexchanged(envoy: Envoy, sts: SecurityTokenService, token: str) -> None:
    """Send requests with `token` on one connection until the STS has been asked twice."""
    with httpx.Client(base_url=envoy.url, timeout=HTTP_TIMEOUT) as client:
        assert client.get("/echo", headers=bearer(token)).status_code == 200

        def exchanged_again() -> bool:
            status = client.get("/echo", headers=bearer(token)).status_code
            if status != 200:
                raise GaveUp(f"request failed with {status} while waiting for a re-exchange")
            return len(sts.calls_with_subject_token(token)) >= 2

        wait_until(exchanged_again, REEXCHANGE_DEADLINE, interval=0.5, what="a second exchange")


def test_expired_backend_token_is_exchanged_again(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService,
                                                  upstream: McpUpstream) -> None:
    # 33 s lifetime, 30 s expiry margin: the exchanged token is reused for about 3 s.
    sts.token_lifetime = 33
    token = mint(idp, "te-expiry")

    _poll_until_reexchanged(envoy, sts, token)

    first, second = sts.calls_with_subject_token(token)[:2]
    assert first.issued_token != second.issued_token
    marker = new_marker()
    assert httpx.get(f"{envoy.url}/echo", headers=bearer(token, marker), timeout=HTTP_TIMEOUT).status_code == 200
    latest = sts.calls_with_subject_token(token)[-1].issued_token
    assert upstream_authorization(upstream, marker) == [f"Bearer {latest}"]


def test_subject_token_expiry_bounds_the_cache(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService) -> None:
    """The backend token lives 300 s, but the client's token only 33 s: the cached exchange must
    not outlive the client's token (minus the margin)."""
    token = idp.mint(sub="te-short-subject", jti=new_marker(), exp=int(time.time()) + 33)

    _poll_until_reexchanged(envoy, sts, token)

    assert len(sts.calls_with_subject_token(token)) >= 2


def test_audit_fields_and_counters(envoy: Envoy, idp: IdentityProvider) -> None:
    token = mint(idp, "te-audit", client_id="audit-client")
    before = envoy.stats()
    with httpx.Client(base_url=envoy.url, timeout=HTTP_TIMEOUT) as client:
        for _ in range(2):
            assert client.get("/echo", headers=bearer(token)).status_code == 200

    miss, hit = _audit_for(envoy, token, 2)
    for line in (miss, hit):
        assert (line["outcome"], line["status"], line["user"]) == ("allow", 200, "te-audit"), line
        assert line["backend_audience"] == "backend", line
        assert "reason" not in line, line
    assert miss["exchange"] == "miss" and isinstance(miss["sts_ms"], int) and miss["sts_ms"] >= 0, miss
    assert hit["exchange"] == "hit" and "sts_ms" not in hit, hit
    for name, delta in (("mcp_auth.exchange.ok", 1), ("mcp_auth.exchange.cache_miss", 1),
                        ("mcp_auth.exchange.cache_hit", 1)):
        envoy.wait_for_counter(name, before.get(name, 0) + delta)
    assert envoy.counter("mcp_auth.exchange.failed") == before.get("mcp_auth.exchange.failed", 0)


def test_no_token_or_secret_in_envoy_log(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                         sts: SecurityTokenService) -> None:
    """Neither the clients' tokens, nor the backend tokens, nor the client secret (raw or as a
    Basic credential) may be written to Envoy's log."""
    sts.set_fault(StsFault.reject())  # a refused exchange is logged too
    assert http.get("/echo", headers=bearer(mint(idp, "te-log-rejected"))).status_code == 401
    sts.clear_fault()
    last = mint(idp, "te-log")
    assert http.get("/echo", headers=bearer(last)).status_code == 200
    envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(last))

    log = envoy.log_text()
    assert AUDIT_MARK in log  # the log really was captured
    assert sts.issued, "no exchange happened in this module"
    for token in [*idp.minted, *sts.issued]:
        assert token not in log
        assert token.rsplit(".", 1)[-1] not in log, "a token's signature appears in Envoy's log"
    assert SECRET not in log
    assert base64.b64encode(f"mcp-filter:{SECRET}".encode()).decode() not in log
