"""A provider that introspects (RFC 7662) instead of checking signatures: opaque tokens are judged
by asking the IdP, whose answer is checked like a JWT's claims, cached, asked once for the whole
Envoy, bounded per worker, and refused closed when the IdP cannot answer.

The stack: envoy/envoy.yaml whose provider introspects at the test introspection endpoint (the
`idp` cluster), with client_secret_basic and the secret passed into the VM from Envoy's
environment. The last test scans every Envoy's log for tokens and the secret, so it stays last.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import (
    Envoy,
    IdentityProvider,
    McpUpstream,
    free_port,
    resource_url,
    standard_plugin_config,
    wait_until,
    with_key_source,
)
from harness.checks import bearer, challenge, json_body, new_marker, token_fingerprint
from harness.config import CLUSTER_IDP
from harness.envoy import AUDIT_MARK
from harness.exchange import upstream_authorization
from harness.introspection import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, IntrospectionServer
from harness.mcp_upstream import header_values
from harness.raw_post import post_in_pieces
from harness.sts_fault import StsFault

SECRET_ENV = "INTROSPECTION_CLIENT_SECRET"
TIMEOUT = "1s"  # the introspection deadline of the module's Envoy
RECOVERY_DEADLINE = 15
FLOOD = 300
FLOOD_CONCURRENCY = 32
BOUND_PER_WORKER = 128  # src/filter/introspection.rs MAX_IN_FLIGHT
WORKERS = 2  # Envoy runs with --concurrency 2
OVER_BOUND = 400  # distinct tokens in flight at once, beyond both workers' bound

UNAVAILABLE = ("temporarily_unavailable", "token introspection unavailable")
TIMED_OUT = ("temporarily_unavailable", "token introspection timed out")

pytestmark = pytest.mark.usefixtures("vm_never_fails", "introspection_restored")

SENT: list[str] = []  # every junk token sent, for the log scan of the last test


def introspecting_config(envoy_port: int, server: IntrospectionServer, *, method: str = "client_secret_basic",
                         timeout: str = TIMEOUT) -> dict[str, Any]:
    """The standard configuration whose one provider (issuer: the server) introspects there."""
    config = standard_plugin_config(envoy_port=envoy_port, idp_port=server.port)
    return with_key_source(config, introspection={
        "endpoint": {"uri": server.endpoint, "cluster": CLUSTER_IDP, "timeout": timeout},
        "client_auth": {"method": method, "client_id": DEFAULT_CLIENT_ID, "client_secret_env": SECRET_ENV},
        "cache_duration": "300s",
        "negative_cache_duration": "60s",
    })


def secret_options(secret: str = DEFAULT_CLIENT_SECRET) -> dict[str, Any]:
    """The secret in Envoy's environment, passed into the VM (and nowhere in the configuration)."""
    return {"vm_env": {"host_env_keys": [SECRET_ENV]}, "env": {SECRET_ENV: secret}}


@pytest.fixture(scope="module")
def introspection(resource: str) -> Iterator[IntrospectionServer]:
    with IntrospectionServer(audience=resource) as server:
        yield server


@pytest.fixture
def introspection_restored(introspection: IntrospectionServer) -> Iterator[IntrospectionServer]:
    """After the test, the endpoint serves again, without a fault."""
    yield introspection
    introspection.start()
    introspection.clear_fault()


@pytest.fixture(scope="module")
def envoy(make_envoy: Callable[..., Envoy], envoy_port: int, introspection: IntrospectionServer) -> Envoy:
    config = introspecting_config(envoy_port, introspection)
    return make_envoy(config, idp_port=introspection.port, listener_port=envoy_port, **secret_options()).start()


def _client(envoy: Envoy) -> httpx.Client:
    """New connection per request, so requests spread over both workers."""
    return httpx.Client(base_url=envoy.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def _expect_refusal(http: httpx.Client, envoy: Envoy, upstream: McpUpstream, token: str, *, status: int,
                    reason: str, body: tuple[str, str] | None = None) -> httpx.Response:
    """One request, refused as described, not forwarded, audited with the token's fingerprint."""
    marker = new_marker()
    response = http.get("/echo", headers=bearer(token, marker))
    assert response.status_code == status, response.text
    if body is not None:
        answer = json_body(response)
        assert (answer.get("error"), answer.get("error_description")) == body, answer
    assert upstream.seen(marker) == [], "a refused request was forwarded"
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["status"], line["reason"]) == ("deny", status, reason), line
    return response


# ---- active tokens ----------------------------------------------------------------------------

def test_active_token_reaches_upstream_as_claims_never_as_token(http: httpx.Client, envoy: Envoy,
                                                               introspection: IntrospectionServer,
                                                               upstream: McpUpstream) -> None:
    before = envoy.counter("mcp_auth.introspection.active")
    token, marker = introspection.issue("intro-alice"), new_marker()

    response = http.get("/echo", headers=bearer(token, marker))

    assert response.status_code == 200, response.text
    (seen,) = upstream.seen(marker)
    assert header_values(seen, "x-mcp-user-sub") == ["intro-alice"]
    assert header_values(seen, "x-mcp-user-email") == ["intro-alice@example.com"]
    assert upstream_authorization(upstream, marker) == [], "the client's token went upstream"
    assert not any(token in v for _, v in seen["headers"])
    (call,) = introspection.calls_for(token)
    assert (call.auth_method, call.client_id, call.token_type_hint) == (
        "client_secret_basic", DEFAULT_CLIENT_ID, "access_token")
    assert call.content_type == "application/x-www-form-urlencoded"
    assert (call.status, call.active) == (200, True)
    envoy.wait_for_counter("mcp_auth.introspection.active", before + 1)
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["user"], line["issuer"]) == ("allow", "intro-alice", introspection.issuer)


def test_scp_array_and_no_exp_are_accepted(http: httpx.Client, introspection: IntrospectionServer) -> None:
    """RFC 7662 makes every member but `active` optional; `scp` is read like `scope`."""
    token = introspection.issue("intro-scp", omit=("scope", "exp", "iss"), scp=["mcp:tools:call"])
    response = http.get("/echo", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert [v for k, v in response.json()["headers"] if k == "x-mcp-user-sub"] == ["intro-scp"]


def test_answer_is_cached_across_workers(envoy: Envoy, introspection: IntrospectionServer) -> None:
    token = introspection.issue("intro-cached")
    with _client(envoy) as client:
        statuses = [client.get("/echo", headers=bearer(token)).status_code for _ in range(8)]
    assert statuses == [200] * 8
    assert len(introspection.calls_for(token)) == 1, "a cached answer was asked for again"


def test_concurrent_requests_for_one_token_make_one_call(envoy: Envoy, introspection: IntrospectionServer) -> None:
    """Both workers, 40 requests at once, the IdP slow enough that they all overlap: one call."""
    introspection.set_fault(StsFault.slow(0.5))
    token = introspection.issue("intro-single-flight")
    with _client(envoy) as client, ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(lambda _: client.get("/echo", headers=bearer(token)).status_code, range(40)))
    assert statuses == [200] * 40
    assert len(introspection.calls_for(token)) == 1


def test_jwt_of_the_introspecting_issuer_is_introspected(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                                        introspection: IntrospectionServer,
                                                        upstream: McpUpstream) -> None:
    """A JWT naming the introspecting provider is judged by the IdP, not by its signature (the
    one here is by a key the filter has never seen)."""
    unknown = idp.mint(iss=introspection.issuer, sub="jwt-unknown")
    _expect_refusal(http, envoy, upstream, unknown, status=401, reason="token_inactive")
    assert len(introspection.calls_for(unknown)) == 1

    known = idp.mint(iss=introspection.issuer, sub="jwt-known")
    introspection.register(known, "jwt-known")
    response = http.get("/echo", headers=bearer(known))
    assert response.status_code == 200, response.text
    assert len(introspection.calls_for(known)) == 1


def test_request_body_arriving_during_introspection_waits_with_it(envoy: Envoy, introspection: IntrospectionServer,
                                                                 upstream: McpUpstream) -> None:
    """A POST whose body comes while the IdP is being asked goes upstream only once decided,
    rewritten: the claim headers in, the client's token out."""
    introspection.set_fault(StsFault.slow(0.8))
    token, marker = introspection.issue("intro-body"), new_marker()
    answer = post_in_pieces(envoy.listener_port, "/echo", {**bearer(token, marker), "content-type": "text/plain"},
                            [b"one,", b"two,", b"three"], pause=0.2)
    assert answer.status == 200, answer.body
    (seen,) = upstream.seen(marker)
    assert header_values(seen, "x-mcp-user-sub") == ["intro-body"]
    assert header_values(seen, "authorization") == []


# ---- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case, reason, description", [
    ("unknown", "token_inactive", "token not active"),
    ("revoked", "token_inactive", "token not active"),
    ("expired", "token_expired", "token expired"),
    ("wrong_audience", "audience_not_accepted", "token audience not accepted"),
    ("wrong_issuer", "issuer_not_trusted", "token issuer not trusted"),
])
def test_token_the_idp_does_not_vouch_for_is_401(http: httpx.Client, envoy: Envoy,
                                                 introspection: IntrospectionServer, upstream: McpUpstream,
                                                 case: str, reason: str, description: str) -> None:
    now = int(time.time())
    token = {
        "unknown": lambda: "opaque-never-issued-" + secrets.token_urlsafe(16),
        "revoked": lambda: introspection.issue("intro-revoked"),
        # Past exp + the provider's 60 s skew: the IdP says active, the filter checks exp itself.
        "expired": lambda: introspection.issue("intro-expired", exp=now - 120, iat=now - 600),
        "wrong_audience": lambda: introspection.issue("intro-aud", aud="https://other.example.com/mcp"),
        "wrong_issuer": lambda: introspection.issue("intro-iss", iss="https://evil.example.com"),
    }[case]()
    if case == "revoked":
        introspection.revoke(token)
    before = envoy.stats()

    response = _expect_refusal(http, envoy, upstream, token, status=401, reason=reason)

    params = challenge(response)
    assert (params.get("error"), params.get("error_description")) == ("invalid_token", description)
    for name in ("mcp_auth.introspection.refused", f"mcp_auth.denied.{reason}"):
        envoy.wait_for_counter(name, before.get(name, 0) + 1)
    # Remembered (negative_cache_duration): the same token again costs no call.
    assert http.get("/echo", headers=bearer(token)).status_code == 401
    assert len(introspection.calls_for(token)) == 1


def test_missing_required_scope_is_403(http: httpx.Client, envoy: Envoy, introspection: IntrospectionServer,
                                       upstream: McpUpstream) -> None:
    token = introspection.issue("intro-scope", scope="mcp:tools:list")
    response = _expect_refusal(http, envoy, upstream, token, status=403, reason="insufficient_scope")
    assert json_body(response)["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


# ---- the IdP cannot answer ----------------------------------------------------------------------

@pytest.mark.parametrize("fault, status, reason, body", [
    ("down", 503, "introspection_unavailable", UNAVAILABLE),
    ("slow", 504, "introspection_timeout", TIMED_OUT),
    ("garbage", 503, "introspection_unavailable", UNAVAILABLE),
    ("invalid_client", 503, "introspection_unavailable", UNAVAILABLE),
    ("duplicate_active", 503, "introspection_unavailable", UNAVAILABLE),
    ("active_not_boolean", 503, "introspection_unavailable", UNAVAILABLE),
    ("server_error", 503, "introspection_unavailable", UNAVAILABLE),
])
def test_idp_without_an_answer_is_refused_closed(http: httpx.Client, envoy: Envoy,
                                                 introspection: IntrospectionServer, upstream: McpUpstream,
                                                 fault: str, status: int, reason: str,
                                                 body: tuple[str, str]) -> None:
    token = introspection.issue(f"intro-{fault}")
    if fault == "down":
        introspection.stop()
    else:
        introspection.set_fault({
            "slow": StsFault.slow(3),  # beyond the 1 s deadline
            "garbage": StsFault.garbage(),
            "invalid_client": StsFault.refuse(401, "invalid_client"),
            # Two parsers could read this two ways: no answer at all.
            "duplicate_active": StsFault.raw(200, b'{"active":false,"sub":"x","active":true}'),
            "active_not_boolean": StsFault(answer=(200, {"active": "true", "sub": "x"})),
            "server_error": StsFault.fail(),
        }[fault])
    failed_before = envoy.counter("mcp_auth.introspection.failed")
    started = time.monotonic()

    response = _expect_refusal(http, envoy, upstream, token, status=status, reason=reason, body=body)

    assert time.monotonic() - started < 5, "the refusal waited far beyond the deadline"
    if status == 503:
        assert response.headers.get("retry-after") == "1"
    envoy.wait_for_counter("mcp_auth.introspection.failed", failed_before + 1)


def test_failure_is_not_remembered(envoy: Envoy, introspection: IntrospectionServer) -> None:
    """An unanswered introspection is not a refusal: the same token works once the IdP answers."""
    token = introspection.issue("intro-retry")
    introspection.stop()
    with _client(envoy) as client:
        assert client.get("/echo", headers=bearer(token)).status_code == 503
        introspection.start()
        wait_until(lambda: all(client.get("/echo", headers=bearer(token)).status_code == 200 for _ in range(4)),
                   RECOVERY_DEADLINE, interval=0.25, what="the same token to pass once the IdP is back")


def test_client_secret_post(make_envoy: Callable[..., Envoy], introspection: IntrospectionServer) -> None:
    port = free_port()
    config = introspecting_config(port, introspection, method="client_secret_post")
    envoy = make_envoy(config, idp_port=introspection.port, listener_port=port, **secret_options()).start()
    token = introspection.issue("intro-post", aud=resource_url(port))
    with _client(envoy) as client:
        assert client.get("/echo", headers=bearer(token)).status_code == 200
    (call,) = introspection.calls_for(token)
    assert (call.auth_method, call.client_id) == ("client_secret_post", DEFAULT_CLIENT_ID)


def test_wrong_client_secret_is_503_and_logged_without_it(make_envoy: Callable[..., Envoy],
                                                          introspection: IntrospectionServer) -> None:
    port = free_port()
    wrong = "not-the-introspection-secret"
    config = introspecting_config(port, introspection)
    envoy = make_envoy(config, idp_port=introspection.port, listener_port=port, **secret_options(wrong)).start()
    token = introspection.issue("intro-wrong-secret", aud=resource_url(port))
    with _client(envoy) as client:
        response = client.get("/echo", headers=bearer(token))
    assert response.status_code == 503, response.text
    (call,) = introspection.calls_for(token)
    assert call.status == 401
    wait_until(lambda: "token introspection failed: introspection_unavailable (IdP status 401)" in envoy.log_text(),
               5, what="the failure's log line")
    assert wrong not in envoy.log_text()


def test_secret_only_from_the_vm_environment(tmp_path: Path, introspection: IntrospectionServer,
                                             upstream: McpUpstream) -> None:
    """Envoy's own environment has the secret, but it is not passed into the VM: no start.
    (Not one of the module's Envoys: its VM failing to load is the point.)"""
    port = free_port()
    config = introspecting_config(port, introspection)
    envoy = Envoy(config, workdir=tmp_path, upstream_port=upstream.port, idp_port=introspection.port,
                  listener_port=port, vm_env={}, env={SECRET_ENV: DEFAULT_CLIENT_SECRET})
    try:
        assert envoy.run_expecting_exit(timeout=30) != 0
    finally:
        envoy.stop()
    assert (f"mcp_auth_filter: invalid configuration: providers.test_idp.introspection.client_auth."
            f"client_secret_env: environment variable {SECRET_ENV} is not set in the VM") in envoy.log_text()


# ---- floods -------------------------------------------------------------------------------------

def _junk(n: int) -> list[str]:
    tokens = ["junk-" + secrets.token_urlsafe(24) for _ in range(n)]
    SENT.extend(tokens)
    return tokens


def _statuses(envoy: Envoy, tokens: list[str], concurrency: int) -> list[int]:
    with _client(envoy) as client, ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda t: client.get("/echo", headers=bearer(t)).status_code, tokens))


def test_flood_of_junk_tokens_costs_one_call_each_then_none(envoy: Envoy, introspection: IntrospectionServer,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """N distinct junk tokens: each refused, each asked about once. Repeated, a worker never asks
    again about a token it was told of (negative cache); the other worker learns the refusals
    through shared data, whose slots are bounded (2048, src/filter/shared.rs), so a few are lost
    there and asked about once more."""
    tokens = _junk(FLOOD)
    calls_before = introspection.call_count()

    started = time.monotonic()
    first = _statuses(envoy, tokens, FLOOD_CONCURRENCY)
    first_seconds = time.monotonic() - started
    first_calls = introspection.call_count() - calls_before

    assert first == [401] * FLOOD, sorted(set(first))
    assert first_calls <= FLOOD
    assert all(len(introspection.calls_for(t)) <= 1 for t in tokens), "a junk token was asked for twice"

    started = time.monotonic()
    again = _statuses(envoy, tokens, FLOOD_CONCURRENCY)
    again_seconds = time.monotonic() - started
    again_calls = introspection.call_count() - calls_before - first_calls

    assert again == [401] * FLOOD
    assert all(len(introspection.calls_for(t)) <= WORKERS for t in tokens), "a worker asked twice about a token"
    assert again_calls < first_calls / 4, "the refusals were not shared with the other worker"

    # One keep-alive connection stays on one worker: once it has seen every token, none costs a call.
    with httpx.Client(base_url=envoy.url, timeout=10) as one_worker:
        for token in tokens:
            assert one_worker.get("/echo", headers=bearer(token)).status_code == 401
        learned = introspection.call_count()
        for token in tokens:
            assert one_worker.get("/echo", headers=bearer(token)).status_code == 401
        assert introspection.call_count() == learned, "a worker asked again about a token it had refused"
    one_worker_calls = learned - calls_before - first_calls - again_calls

    healthy = introspection.issue("intro-after-flood")
    assert httpx.get(f"{envoy.admin_url}/ready", timeout=2).status_code == 200
    with _client(envoy) as client:
        assert client.get("/echo", headers=bearer(healthy)).status_code == 200
    with capsys.disabled():
        print(f"\nFLOOD {FLOOD} junk tokens: {first_calls} introspection calls in {first_seconds:.2f}s; "
              f"repeat on new connections: {again_calls} calls in {again_seconds:.2f}s; "
              f"twice more on one worker: {one_worker_calls} calls, then 0")


async def _all_at_once(url: str, tokens: list[str]) -> list[int]:
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=20, limits=limits) as client:
        responses = await asyncio.gather(*(client.get("/echo", headers=bearer(t)) for t in tokens))
    return [r.status_code for r in responses]


def test_in_flight_introspections_are_bounded_per_worker(make_envoy: Callable[..., Envoy],
                                                         introspection: IntrospectionServer,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """More distinct tokens at once than both workers may introspect: the rest are refused 503
    at once, the IdP never sees more than the bound, and Envoy serves normally afterwards."""
    port = free_port()
    config = introspecting_config(port, introspection, timeout="10s")
    envoy = make_envoy(config, idp_port=introspection.port, listener_port=port, **secret_options()).start()
    introspection.set_fault(StsFault.slow(3))
    introspection.peak_concurrency = 0
    tokens = _junk(OVER_BOUND)
    calls_before = introspection.call_count()

    started = time.monotonic()
    statuses = asyncio.run(_all_at_once(envoy.url, tokens))
    seconds = time.monotonic() - started
    calls = introspection.call_count() - calls_before

    assert set(statuses) <= {401, 503}, sorted(set(statuses))
    refused_busy = statuses.count(503)
    assert calls <= BOUND_PER_WORKER * WORKERS
    assert introspection.peak_concurrency <= BOUND_PER_WORKER * WORKERS
    assert refused_busy >= OVER_BOUND - BOUND_PER_WORKER * WORKERS
    assert statuses.count(401) == calls, "every introspected junk token is refused as inactive"
    assert "introspections under way: refusing another" in envoy.log_text()
    introspection.clear_fault()
    healthy = introspection.issue("intro-after-bound", aud=resource_url(port))
    with _client(envoy) as client:
        assert client.get("/echo", headers=bearer(healthy)).status_code == 200
    with capsys.disabled():
        print(f"\nBOUND {OVER_BOUND} junk tokens at once, IdP 3 s slow: {calls} calls (peak "
              f"{introspection.peak_concurrency} at once), {statuses.count(401)} x 401, {refused_busy} x 503, "
              f"in {seconds:.2f}s")


# ---- last: what the logs show -------------------------------------------------------------------

def test_no_token_or_secret_in_any_envoy_log(envoys_made: list[Envoy], introspection: IntrospectionServer) -> None:
    logs = [e.log_text() for e in envoys_made]
    assert all(AUDIT_MARK in log for log in logs)
    for log in logs:
        for token in [*introspection.issued, *SENT]:
            assert token not in log
        assert DEFAULT_CLIENT_SECRET not in log
