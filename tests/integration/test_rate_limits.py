"""Rate limits per user and per user and tool with Envoy's own rate limiters, counting on what the
filter verified (issue 14): envoy/rate-limits.yaml (local_ratelimit) and
envoy/rate-limits-global.yaml (the ratelimit filter and a rate-limit service with Redis), each run
as shipped with smaller numbers patched in: per user USER_LIMIT tools/call a minute instead of 60,
per user and drop_* tool TOOL_LIMIT instead of 5.

The global service is the rig's stand-in for envoyproxy/ratelimit (harness/rate_limit_service.py,
Redis counters, reading envoy/ratelimit/config/mcp.yaml): the real one is a Go program this
machine cannot install.

Covered: a user over the limit gets 429 with Retry-After and a JSON-RPC error body while another
user in the same second passes; the drop_* limit trips only that tool; a forged Mcp-Name (refused,
or replaced by the body's spelling) or a forged identity header (x-mcp-user-sub; x_mcp_user_sub is
refused) moves nobody into another bucket; the filter's own refusals keep their bodies; the access
log reads the metadata header_to_metadata wrote; local limits count per Envoy process, the global
ones across two Envoys and their workers; the global limiter refuses (503) when its service is
down; the shipped files hold the documented numbers, and the stand-in refuses configuration it
does not implement.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness import Envoy, IdentityProvider, McpUpstream, free_port, resource_url, wait_until
from harness.checks import new_marker
from harness.envoy import REPO, example_hcm, example_plugin_config
from harness.mcp_policy import (
    BQ_READ,
    BQ_WRITE,
    FORBIDDEN,
    HEADER_MISMATCH,
    MCP_CALL,
    jsonrpc_error,
    modern_post,
    post_headers,
    tool_call,
)
from harness.mcp_upstream import header_values
from harness.rate_limit_service import RateLimitService
from harness.redis_server import RedisServer
from harness.rls_limits import UNIT_SECONDS, BadLimits, Limit, load_limits, parse_limits

pytestmark = pytest.mark.usefixtures("vm_never_fails")

LOCAL_EXAMPLE = REPO / "envoy" / "rate-limits.yaml"
GLOBAL_EXAMPLE = REPO / "envoy" / "rate-limits-global.yaml"
SERVICE_LIMITS = REPO / "envoy" / "ratelimit" / "config" / "mcp.yaml"
RLS_CLUSTER = "ratelimit"

USER_LIMIT = 6  # tools/call a minute per user (shipped: 60)
TOOL_LIMIT = 2  # calls a minute per user of each drop_* tool (shipped: 5)
# The descriptors of both files, by their entries' keys.
USER_DESCRIPTOR = ("mcp_method", "user")
TOOL_DESCRIPTOR = ("tool_class", "user", "tool")
LIMITS = {USER_DESCRIPTOR: USER_LIMIT, TOOL_DESCRIPTOR: TOOL_LIMIT}
WINDOW_SECONDS = UNIT_SECONDS["minute"]  # the unit of every limit in both files
RATE_LIMITED = -32005  # the JSON-RPC code of the 429 body (both files' local_reply_config)
ACCESS_LOG_WAIT = 15  # seconds; Envoy writes access-log lines when the stream ends, flushed every second or so
DBA_GROUP = "dba"


# ---- the shipped files with smaller numbers ------------------------------------------------------

def _http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [f for f in example_hcm(config)["http_filters"] if f["name"] == name]
    return found["typed_config"]


def smaller_buckets(config: dict[str, Any]) -> None:
    """config_patch: the token buckets of envoy/rate-limits.yaml's descriptors hold LIMITS,
    refilled at that rate a minute (shipped: 60 and 5); fails if the file has other descriptors."""
    local = _http_filter(config, "envoy.filters.http.local_ratelimit")
    patched = set()
    for descriptor in local["descriptors"]:
        keys = tuple(e["key"] for e in descriptor["entries"])
        bucket = descriptor["token_bucket"]
        assert bucket["fill_interval"] == f"{WINDOW_SECONDS}s", bucket
        bucket.update(max_tokens=LIMITS[keys], tokens_per_fill=LIMITS[keys])
        patched.add(keys)
    assert patched == set(LIMITS), patched


def smaller_service_limits(path: Path) -> Path:
    """A copy of envoy/ratelimit/config/mcp.yaml next to `path` with LIMITS as requests_per_unit."""
    document = yaml.safe_load(SERVICE_LIMITS.read_text())
    patched = set()

    def walk(descriptors: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
        for descriptor in descriptors:
            here = (*keys, descriptor["key"])
            if "rate_limit" in descriptor:
                assert descriptor["rate_limit"]["unit"] == "minute", descriptor
                descriptor["rate_limit"]["requests_per_unit"] = LIMITS[here]
                patched.add(here)
            walk(descriptor.get("descriptors", []), here)

    walk(document["descriptors"], ())
    assert patched == set(LIMITS), patched
    path.write_text(yaml.safe_dump(document))
    return path


# ---- stacks -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider) -> dict[str, Any]:
    return example_plugin_config(envoy_port=envoy_port, idp_port=idp.port, example=LOCAL_EXAMPLE)


@pytest.fixture(scope="module")
def envoy_options() -> dict[str, Any]:
    """The module's `envoy`: envoy/rate-limits.yaml (local limits)."""
    return {"example": LOCAL_EXAMPLE, "config_patch": smaller_buckets}


@pytest.fixture(scope="module")
def local_peer(make_envoy: Callable[..., Envoy], idp: IdentityProvider) -> Envoy:
    """A second Envoy with envoy/rate-limits.yaml: local limits are its own."""
    port = free_port()
    config = example_plugin_config(envoy_port=port, idp_port=idp.port, example=LOCAL_EXAMPLE)
    return make_envoy(config, idp_port=idp.port, listener_port=port, example=LOCAL_EXAMPLE,
                      config_patch=smaller_buckets).start()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(log_path=tmp_path_factory.mktemp("redis") / "redis.log") as server:
        yield server


@pytest.fixture(scope="module")
def rls(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RateLimitService]:
    workdir = tmp_path_factory.mktemp("rls")
    limits = smaller_service_limits(workdir / "mcp.yaml")
    with RateLimitService(limits, redis_server.port, log_path=workdir / "rls.log") as service:
        yield service


@pytest.fixture(scope="module")
def fleet(make_envoy: Callable[..., Envoy], idp: IdentityProvider, rls: RateLimitService) -> list[Envoy]:
    """Two Envoys with envoy/rate-limits-global.yaml, both asking `rls`."""
    envoys = []
    for _ in range(2):
        port = free_port()
        config = example_plugin_config(envoy_port=port, idp_port=idp.port, example=GLOBAL_EXAMPLE)
        envoys.append(make_envoy(config, idp_port=idp.port, listener_port=port, example=GLOBAL_EXAMPLE,
                                 clusters={RLS_CLUSTER: rls.port}).start())
    return envoys


# ---- requests -----------------------------------------------------------------------------------

def token_for(idp: IdentityProvider, envoys: list[Envoy], sub: str, *, dba: bool = False) -> str:
    """A token every Envoy of `envoys` accepts (its resource in `aud`); a DBA may call drop_*."""
    scopes = [MCP_CALL, BQ_READ, BQ_WRITE] if dba else [MCP_CALL, BQ_READ]
    return idp.mint(sub=sub, jti=new_marker(), aud=[resource_url(e.listener_port) for e in envoys], scp=scopes,
                    groups=[DBA_GROUP] if dba else [])


def new_user(kind: str) -> str:
    """A user no other test has: every bucket starts full."""
    return f"{kind}-{new_marker()[:12]}"


def call(envoy: Envoy, token: str, tool: str, arguments: dict[str, Any] | None = None,
         marker: str | None = None, **extra: str) -> httpx.Response:
    """A 2026-07-28 tools/call (with its mirrors) on a new connection: connections, and so
    requests, spread over both of Envoy's workers."""
    body, headers = modern_post(token, tool_call(tool, arguments or {}), marker)
    return httpx.post(f"{envoy.url}/mcp", content=body, headers={**headers, **extra}, timeout=10)


def legacy_call(envoy: Envoy, token: str, tool: str, arguments: dict[str, Any] | None = None,
                marker: str | None = None, **extra: str) -> httpx.Response:
    """A legacy (2025-11-25) tools/call: no mirrors required, only `extra` headers. (The SDK
    server answers a legacy call outside a session 400; the filter and the limiter let it by.)"""
    body = json.dumps(tool_call(tool, arguments or {}, modern=False)).encode()
    return httpx.post(f"{envoy.url}/mcp", content=body, headers=post_headers(token, marker, **extra), timeout=10)


def add(envoy: Envoy, token: str, **extra: str) -> httpx.Response:
    return call(envoy, token, "add", {"a": 1, "b": 2}, **extra)


def drop(envoy: Envoy, token: str, **extra: str) -> httpx.Response:
    return call(envoy, token, "drop_table", {"table": "t"}, **extra)


def retry_after(response: httpx.Response) -> int:
    (value,) = response.headers.get_list("retry-after")
    return int(value)


def assert_rate_limited(response: httpx.Response, limit: int) -> None:
    """The limiter's 429: Retry-After, x-ratelimit-limit `limit`, and a JSON-RPC error body."""
    assert response.status_code == 429, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    assert jsonrpc_error(response.content)[:2] == (None, RATE_LIMITED)
    assert "Retry-After" in jsonrpc_error(response.content)[2]
    assert response.headers["x-ratelimit-limit"].split(",")[0] == str(limit), response.headers
    assert retry_after(response) >= 1


def use_up(send: Callable[[], httpx.Response], count: int) -> None:
    for n in range(count):
        response = send()
        assert response.status_code == 200, (n, response.status_code, response.text)


def access_lines(envoy: Envoy) -> list[dict[str, Any]]:
    """The access-log lines of the file (stderr, like Envoy's own log)."""
    lines = []
    for line in envoy.log_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("access") == "mcp":
                lines.append(entry)
    return lines


def fresh_window(needed_seconds: float = 5) -> None:
    """Wait for the next fixed window of the global limits if this one ends within
    `needed_seconds`, so a test's counts all fall into one window."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < needed_seconds:
        time.sleep(left + 0.2)


# ---- local limits (envoy/rate-limits.yaml) -------------------------------------------------------

def test_a_user_over_the_limit_gets_429_while_another_user_passes(envoy: Envoy, idp: IdentityProvider,
                                                                  upstream: McpUpstream) -> None:
    ana, bob = new_user("ana"), new_user("bob")
    ana_token, bob_token = token_for(idp, [envoy], ana), token_for(idp, [envoy], bob)
    use_up(lambda: add(envoy, ana_token), USER_LIMIT)

    marker = new_marker()
    refused = call(envoy, ana_token, "add", {"a": 1, "b": 2}, marker)
    passed = add(envoy, bob_token)

    assert_rate_limited(refused, USER_LIMIT)
    # One token every 60/USER_LIMIT seconds: that is how long a client waits.
    assert retry_after(refused) <= WINDOW_SECONDS // USER_LIMIT
    assert upstream.seen(marker) == []
    assert passed.status_code == 200 and passed.json()["result"]["structuredContent"] == {"result": 3}
    assert passed.headers["x-ratelimit-remaining"] == str(USER_LIMIT - 1)
    # The access log reads what header_to_metadata copied from the filter's headers.
    line = wait_until(lambda: next((a for a in access_lines(envoy) if a["user"] == ana and a["status"] == 429), None),
                      ACCESS_LOG_WAIT, what="the access-log line of the refused call")
    assert (line["flags"], line["mcp_method"], line["mcp_name"]) == ("RL", "tools/call", "add")


def test_the_tool_limit_trips_only_that_tool(envoy: Envoy, idp: IdentityProvider) -> None:
    dora, dan = new_user("dora"), new_user("dan")
    dora_token, dan_token = token_for(idp, [envoy], dora, dba=True), token_for(idp, [envoy], dan, dba=True)
    use_up(lambda: drop(envoy, dora_token), TOOL_LIMIT)

    refused = drop(envoy, dora_token)

    assert_rate_limited(refused, TOOL_LIMIT)
    assert retry_after(refused) <= WINDOW_SECONDS // TOOL_LIMIT
    # Dora's other tools, and another DBA's drop_table, still pass.
    assert call(envoy, dora_token, "query_users").status_code == 200
    assert add(envoy, dora_token).status_code == 200
    assert drop(envoy, dan_token).status_code == 200


def test_a_forged_mcp_name_cannot_leave_the_tool_bucket(envoy: Envoy, idp: IdentityProvider,
                                                        upstream: McpUpstream) -> None:
    dora = new_user("dora")
    token = token_for(idp, [envoy], dora, dba=True)
    # The base64 spelling of the body's own name passes the filter's check, but is replaced by
    # the plain spelling, which the drop_ prefix matches.
    base64_name = f"=?base64?{base64.b64encode(b'drop_table').decode()}?="
    for _ in range(TOOL_LIMIT):
        marker = new_marker()
        assert legacy_call(envoy, token, "drop_table", {"table": "t"}, marker, **{"mcp-name": base64_name}
                           ).status_code != 429
        (seen,) = upstream.seen(marker)
        assert header_values(seen, "mcp-name") == ["drop_table"]

    spelled = legacy_call(envoy, token, "drop_table", {"table": "t"}, **{"mcp-name": base64_name})
    # A name that contradicts the body is refused before any limiter (400, -32020).
    marker = new_marker()
    contradicting = legacy_call(envoy, token, "drop_table", {"table": "t"}, marker, **{"mcp-name": "query_users"})
    unmirrored = legacy_call(envoy, token, "drop_table", {"table": "t"})

    assert_rate_limited(spelled, TOOL_LIMIT)
    assert contradicting.status_code == 400 and jsonrpc_error(contradicting.content)[1] == HEADER_MISMATCH
    assert upstream.seen(marker) == []
    assert_rate_limited(unmirrored, TOOL_LIMIT)


def test_a_forged_identity_header_cannot_leave_the_user_bucket(envoy: Envoy, idp: IdentityProvider,
                                                               upstream: McpUpstream) -> None:
    ana, bob = new_user("ana"), new_user("bob")
    ana_token, bob_token = token_for(idp, [envoy], ana), token_for(idp, [envoy], bob)
    use_up(lambda: add(envoy, ana_token), USER_LIMIT)

    # The filter removes the client's x-mcp-user-sub (any letter case) and sets Ana's own.
    for spelling in ("x-mcp-user-sub", "X-MCP-User-Sub"):
        assert_rate_limited(add(envoy, ana_token, **{spelling: bob}), USER_LIMIT)
    # Envoy refuses a name with '_' outright (headers_with_underscores_action: REJECT_REQUEST).
    marker = new_marker()
    underscored = call(envoy, ana_token, "add", {"a": 1, "b": 2}, marker, x_mcp_user_sub=bob)
    assert underscored.status_code == 400
    assert upstream.seen(marker) == []
    # None of it took from Bob's bucket: he still has all of it.
    use_up(lambda: add(envoy, bob_token), USER_LIMIT)
    assert_rate_limited(add(envoy, bob_token), USER_LIMIT)


def test_the_filters_own_refusals_keep_their_answers(envoy: Envoy, idp: IdentityProvider) -> None:
    analyst = token_for(idp, [envoy], new_user("ana"))

    forbidden = drop(envoy, analyst)  # drop_* needs the dba group
    unauthenticated = httpx.post(f"{envoy.url}/mcp", content=b"{}", headers={"content-type": "application/json"},
                                 timeout=10)

    assert forbidden.status_code == 403 and jsonrpc_error(forbidden.content)[1] == FORBIDDEN
    assert "retry-after" not in forbidden.headers
    assert unauthenticated.status_code == 401 and unauthenticated.headers["www-authenticate"].startswith("Bearer ")


def test_local_limits_count_per_envoy_process(envoy: Envoy, local_peer: Envoy, idp: IdentityProvider) -> None:
    ana = new_user("ana")
    token = token_for(idp, [envoy, local_peer], ana)
    use_up(lambda: add(envoy, token), USER_LIMIT)
    assert_rate_limited(add(envoy, token), USER_LIMIT)

    # The other Envoy has buckets of its own: a fleet of N allows N times the limit.
    use_up(lambda: add(local_peer, token), USER_LIMIT)
    assert_rate_limited(add(local_peer, token), USER_LIMIT)


# ---- global limits (envoy/rate-limits-global.yaml) -----------------------------------------------

def test_the_global_user_limit_holds_across_envoys_and_workers(fleet: list[Envoy], idp: IdentityProvider,
                                                               upstream: McpUpstream) -> None:
    fresh_window()
    ana, bob = new_user("ana"), new_user("bob")
    ana_token, bob_token = token_for(idp, fleet, ana), token_for(idp, fleet, bob)
    # Alternating Envoys, a new connection each time (so both workers of each).
    for n in range(USER_LIMIT):
        response = add(fleet[n % 2], ana_token)
        assert response.status_code == 200, (n, response.status_code, response.text)

    marker = new_marker()
    refused = [call(envoy, ana_token, "add", {"a": 1, "b": 2}, marker) for envoy in fleet]
    passed = [add(envoy, bob_token) for envoy in fleet]

    for response in refused:
        assert_rate_limited(response, USER_LIMIT)
        # Until the window ends: that is the service's x-ratelimit-reset.
        assert retry_after(response) == max(1, int(response.headers["x-ratelimit-reset"])) <= WINDOW_SECONDS
    assert upstream.seen(marker) == []
    assert [r.status_code for r in passed] == [200, 200]


def test_the_global_tool_limit_holds_across_envoys(fleet: list[Envoy], idp: IdentityProvider) -> None:
    fresh_window()
    dora = new_user("dora")
    token = token_for(idp, fleet, dora, dba=True)
    for n in range(TOOL_LIMIT):
        assert drop(fleet[n % 2], token).status_code == 200, n

    for envoy in fleet:
        assert_rate_limited(drop(envoy, token), TOOL_LIMIT)
    assert call(fleet[1], token, "query_users").status_code == 200


def test_the_global_limiter_refuses_while_its_service_is_down(fleet: list[Envoy], idp: IdentityProvider,
                                                              rls: RateLimitService, upstream: McpUpstream) -> None:
    token = token_for(idp, fleet, new_user("ana"))
    envoy = fleet[0]
    rls.stop()
    try:
        marker = new_marker()
        refused = call(envoy, token, "add", {"a": 1, "b": 2}, marker)
        # Requests that make no descriptor (a bypass path) do not ask the service.
        healthz = httpx.get(f"{envoy.url}/healthz", timeout=10)
    finally:
        rls.start()

    assert refused.status_code == 503, (refused.status_code, refused.text)
    assert upstream.seen(marker) == []
    assert healthz.status_code == 200
    wait_until(lambda: add(envoy, token).status_code == 200, 10, what="the limiter to reach the service again")


# ---- the shipped numbers, and what the stand-in reads -------------------------------------------

def test_the_shipped_files_hold_the_documented_limits() -> None:
    local = _http_filter(yaml.safe_load(LOCAL_EXAMPLE.read_text()), "envoy.filters.http.local_ratelimit")
    buckets = {tuple(e["key"] for e in d["entries"]): d["token_bucket"] for d in local["descriptors"]}
    assert buckets == {USER_DESCRIPTOR: {"max_tokens": 60, "tokens_per_fill": 60, "fill_interval": "60s"},
                       TOOL_DESCRIPTOR: {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "60s"}}
    service = load_limits(SERVICE_LIMITS)
    assert service.limit_for([("mcp_method", "tools/call"), ("user", "anyone")]) == Limit(60, "minute")
    assert service.limit_for([("tool_class", "destructive"), ("user", "anyone"), ("tool", "drop_x")]) == \
        Limit(5, "minute")
    # Other methods, and descriptors the file does not name, have no limit.
    assert service.limit_for([("mcp_method", "tools/list"), ("user", "anyone")]) is None
    assert service.limit_for([("tool_class", "destructive"), ("user", "anyone")]) is None
    # Both Envoy files send the same descriptors.
    global_filter = _http_filter(yaml.safe_load(GLOBAL_EXAMPLE.read_text()), "envoy.filters.http.ratelimit")
    assert global_filter["rate_limits"] == local["rate_limits"]


def test_the_stand_in_refuses_what_it_does_not_implement() -> None:
    document = yaml.safe_load(SERVICE_LIMITS.read_text())
    document["descriptors"][0]["shadow_mode"] = True
    with pytest.raises(BadLimits, match="shadow_mode"):
        parse_limits(document)
