"""Per-tool authorization with real MCP SDK clients: the official Python SDK (protocol 2026-07-28,
`Client` in mode "auto") and the official TypeScript SDK (1.32.2, protocol 2025-11-25), each with
a pre-obtained token, through Envoy running envoy/okta-same-idp.yaml (token exchange at the test
STS) with the `mcp` block of harness/mcp_policy.py (the seed's BigQuery scenario), in front of an
MCP server from the official SDK. Every SDK test runs twice: against a server answering JSON
(`json_response=True`) and one answering SSE (the SDK's default, which the TypeScript client gets
for every request; the Python client in 2026 mode gets JSON from both).

Covered: an allowed tool returns its result with the rule's backend token; a missing scope gets
one 403 step-up challenge naming every scope the tool needs; a claims-denied tool fails with an
error naming it; tools/list, prompts/list and resources/list show only what the caller may use;
the backend sees a read-scoped token for query_* and a write-scoped one for drop_* for the same
user, each exchanged once and then cached; audit lines and counters name the operation and rule.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from harness import Envoy, IdentityProvider, McpUpstream, SecurityTokenService, free_port, prm_url, resource_url
from harness.checks import bearer, challenge, new_marker, parse_challenge
from harness.exchange import OKTA, ExchangeProfile, unverified_claims, upstream_authorization
from harness.mcp_client import Exchange, mcp_session
from harness.mcp_policy import (
    BQ_ADMIN,
    BQ_READ,
    BQ_READONLY_SCOPE,
    BQ_WRITE,
    BQ_WRITE_SCOPE,
    FORBIDDEN,
    MCP_CALL,
    REPORTS_AUDIENCE,
    bigquery_mcp,
    jsonrpc_error,
    modern_post,
    request,
    tool_call,
    with_mcp,
)
from harness.sts import BACKEND_AUDIENCE, BACKEND_SCOPES
from harness.ts_client import TsRun, run_ts_client, step

pytestmark = pytest.mark.usefixtures("vm_never_fails")

DEFAULT_BACKEND_SCOPE = "backend-api:read"  # envoy/okta-same-idp.yaml's token_exchange.scopes
EVERY_TOOL = ["whoami", "add", "query_backend", "query_users", "list_datasets", "drop_table"]
ANALYST_TOOLS = ["whoami", "add", "query_backend", "query_users", "list_datasets"]
# query_backend matches query_*: without bigquery:read it is hidden like the other read tools.
MINIMAL_TOOLS = ["whoami", "add"]


@dataclass(frozen=True)
class Stack:
    """One Envoy with the filter in front of one MCP server."""

    kind: str  # "json" or "sse": how the MCP server answers
    envoy: Envoy
    upstream: McpUpstream

    @property
    def resource(self) -> str:
        return resource_url(self.envoy.listener_port)


def mcp_plugin_config(*, envoy_port: int, idp_port: int, sts_port: int) -> dict[str, Any]:
    config = OKTA.plugin_config(envoy_port=envoy_port, idp_port=idp_port, sts_port=sts_port)
    return with_mcp(config, bigquery_mcp(read_exchange=[BQ_READONLY_SCOPE], write_exchange=[BQ_WRITE_SCOPE]))


@pytest.fixture(scope="module")
def exchange() -> ExchangeProfile:
    return OKTA


@pytest.fixture(scope="module")
def json_envoy_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def sts(make_sts: Callable[..., SecurityTokenService], idp: IdentityProvider, resource: str, json_envoy_port: int,
        sts_secret: str) -> SecurityTokenService:
    """The STS issues the default backend scopes, the per-tool BigQuery ones, and tokens for the
    reports audience, for the tokens of both stacks."""
    return make_sts(idp, subject_audiences=[resource, resource_url(json_envoy_port)],
                    clients=OKTA.sts_clients(sts_secret), scopes=BACKEND_SCOPES + (BQ_READONLY_SCOPE, BQ_WRITE_SCOPE),
                    audiences=(BACKEND_AUDIENCE, REPORTS_AUDIENCE))


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider, sts: SecurityTokenService) -> dict[str, Any]:
    return mcp_plugin_config(envoy_port=envoy_port, idp_port=idp.port, sts_port=sts.port)


@pytest.fixture(scope="module")
def json_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstream]:
    log = tmp_path_factory.mktemp("json-upstream") / "upstream.log"
    with McpUpstream(log_path=log, json_response=True) as server:
        yield server


@pytest.fixture(scope="module")
def json_envoy(json_upstream: McpUpstream, json_envoy_port: int, idp: IdentityProvider, sts: SecurityTokenService,
               envoy_options: dict[str, Any], envoys_made: list[Envoy],
               tmp_path_factory: pytest.TempPathFactory) -> Envoy:
    """The same configuration in front of the MCP server answering JSON."""
    config = mcp_plugin_config(envoy_port=json_envoy_port, idp_port=idp.port, sts_port=sts.port)
    proxy = Envoy(config, workdir=tmp_path_factory.mktemp("envoy-mcp-json"), upstream_port=json_upstream.port,
                  idp_port=idp.port, listener_port=json_envoy_port, **envoy_options)
    envoys_made.append(proxy)
    return proxy.start()


@pytest.fixture(scope="module", params=["json", "sse"])
def stack(request: pytest.FixtureRequest, envoy: Envoy, upstream: McpUpstream) -> Stack:
    """The stack whose MCP server answers JSON, or SSE (the session's upstream, the SDK default)."""
    if request.param == "json":
        return Stack("json", request.getfixturevalue("json_envoy"), request.getfixturevalue("json_upstream"))
    return Stack("sse", envoy, upstream)


def mint_for(idp: IdentityProvider, stack: Stack, sub: str, scopes: list[str], groups: list[str]) -> str:
    """A token for the stack's resource with mcp:tools:call and `scopes` (a fresh jti: tokens
    are exchange-cache keys)."""
    return idp.mint(sub=sub, aud=stack.resource, jti=new_marker(), scp=[MCP_CALL, *scopes], groups=groups)


def analyst(idp: IdentityProvider, stack: Stack, sub: str = "ana") -> str:
    return mint_for(idp, stack, sub, [BQ_READ], ["analysts"])


def dba(idp: IdentityProvider, stack: Stack, sub: str = "dora") -> str:
    return mint_for(idp, stack, sub, [BQ_READ, BQ_WRITE], ["analysts", "dba"])


def python_run(stack: Stack, token: str, body: Callable[[Any], Any], marker: str | None = None,
               exchanges: list[Exchange] | None = None) -> Any:
    """Run `body(client)` in a Python SDK session (mode auto: 2026-07-28 with this server)."""

    async def session() -> Any:
        async with mcp_session(stack.resource, bearer(token, marker), mode="auto", exchanges=exchanges) as client:
            assert client.protocol_version == "2026-07-28"
            return await body(client)

    return anyio.run(session)


def ts_run(stack: Stack, token: str, steps: list[dict[str, Any]], marker: str | None = None) -> TsRun:
    run = run_ts_client(stack.resource, bearer(token, marker), steps)
    assert run.connect_error is None, run.connect_error
    assert run.protocol_version == "2025-11-25"
    return run


def posts_seen(stack: Stack, marker: str) -> int:
    """How many POSTs carrying `marker` reached the MCP server."""
    return len([e for e in stack.upstream.seen(marker) if e["method"] == "POST"])


def tool_names(result: Any) -> list[str]:
    return [t.name for t in result.tools]


# ---- an allowed tool -------------------------------------------------------------------------

def test_python_sdk_allowed_tool_returns_its_result(stack: Stack, idp: IdentityProvider) -> None:
    token = analyst(idp, stack, "py-allowed")

    async def body(client: Any) -> Any:
        return (await client.call_tool("query_users", {"limit": 1})).structured_content

    result = python_run(stack, token, body)

    assert result["tool"] == "query_users" and result["rows"] == [{"id": 1, "name": "ada"}]
    assert result["backend_token"] == {"present": True, "iss": result["backend_token"]["iss"], "aud": BACKEND_AUDIENCE,
                                       "sub": "py-allowed", "scopes": [BQ_READONLY_SCOPE]}


def test_typescript_sdk_allowed_tool_returns_its_result(stack: Stack, idp: IdentityProvider) -> None:
    token = analyst(idp, stack, "ts-allowed")

    run = ts_run(stack, token, [step("call_tool", name="list_datasets")])

    (result,) = run.results
    assert result.ok, result.error
    assert result.value["structured"]["datasets"] == ["analytics", "sales"]
    assert result.value["structured"]["backend_token"]["scopes"] == [BQ_READONLY_SCOPE]
    expected = "text/event-stream" if stack.kind == "sse" else "application/json"
    assert run.content_types("tools/call") == [expected]


# ---- a missing scope: the step-up challenge ----------------------------------------------------

def test_missing_scope_gets_one_challenge_naming_every_scope_the_tool_needs(
        stack: Stack, idp: IdentityProvider) -> None:
    token = mint_for(idp, stack, "no-read", [], ["analysts"])
    body, headers = modern_post(token, tool_call("query_users", request_id=41))
    before = stack.envoy.stats()

    response = httpx.post(stack.resource, content=body, headers=headers, timeout=10)

    assert response.status_code == 403
    params = challenge(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == f"{MCP_CALL} {BQ_READ}"  # the top-level required scope and the rule's
    assert params["resource_metadata"] == prm_url(stack.envoy.listener_port)
    assert params["error_description"]
    assert jsonrpc_error(response.content)[:2] == (41, FORBIDDEN)
    assert stack.upstream.seen(headers["x-test-marker"]) == [], "a refused call reached the MCP server"
    stack.envoy.wait_for_counter("mcp_auth.mcp.denied.read", before.get("mcp_auth.mcp.denied.read", 0) + 1)
    reason = "mcp_auth.denied.mcp_insufficient_scope"
    stack.envoy.wait_for_counter(reason, before.get(reason, 0) + 1)


def test_sdk_clients_get_the_challenge_when_a_scope_is_missing(stack: Stack, idp: IdentityProvider) -> None:
    """Without an OAuth provider neither SDK can step up: the 403 reaches the caller."""
    token = mint_for(idp, stack, "no-write", [BQ_READ], ["analysts", "dba"])
    python_marker, ts_marker = new_marker(), new_marker()
    exchanges: list[Exchange] = []

    async def body(client: Any) -> Any:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("drop_table", {"table": "users"})
        return raised.value

    error = python_run(stack, token, body, python_marker, exchanges)
    run = ts_run(stack, token, [step("call_tool", name="drop_table", arguments={"table": "users"})], ts_marker)

    assert error.code == FORBIDDEN and "insufficient scope" in str(error)
    (result,) = run.results
    assert not result.ok and result.error is not None and result.error["code"] == 403
    assert "insufficient scope" in result.error_message
    # The MCP server saw every POST of both sessions but the refused ones.
    assert [e.status for e in exchanges if e.jsonrpc == "tools/call"] == [403]
    assert posts_seen(stack, python_marker) == len([e for e in exchanges if e.status != 403])
    (refused,) = [e for e in run.exchanges if e["jsonrpc"] == "tools/call"]
    assert refused["status"] == 403
    assert parse_challenge(refused["www_authenticate"])[1]["scope"] == f"{MCP_CALL} {BQ_WRITE}"
    assert posts_seen(stack, ts_marker) == len([e for e in run.exchanges if e["method"] == "POST"
                                                and e["status"] != 403])


# ---- a claims-denied tool ------------------------------------------------------------------------

def test_claims_denied_tool_is_refused_naming_it(stack: Stack, idp: IdentityProvider) -> None:
    """An analyst with every scope is still no dba: the rule's claim condition fails. No
    challenge: no scope would help."""
    token = mint_for(idp, stack, "not-dba", [BQ_READ, BQ_WRITE], ["analysts"])
    body, headers = modern_post(token, tool_call("drop_table", {"table": "users"}, request_id=7))

    response = httpx.post(stack.resource, content=body, headers=headers, timeout=10)

    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"jsonrpc": "2.0", "id": 7, "error": {
        "code": FORBIDDEN, "message": 'Forbidden: tools/call "drop_table" is not allowed for this caller'}}
    assert stack.upstream.seen(headers["x-test-marker"]) == []


def test_sdk_clients_report_the_denied_tool_by_name(stack: Stack, idp: IdentityProvider) -> None:
    token = mint_for(idp, stack, "not-dba-sdk", [BQ_READ, BQ_WRITE], ["analysts"])

    async def body(client: Any) -> Any:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("drop_table", {"table": "users"})
        return raised.value

    error = python_run(stack, token, body)
    run = ts_run(stack, token, [step("call_tool", name="drop_table", arguments={"table": "users"}),
                                step("call_tool", name="query_users")])

    assert error.code == FORBIDDEN and '"drop_table" is not allowed' in str(error)
    denied, allowed = run.results
    assert not denied.ok and denied.error is not None and denied.error["code"] == 403
    assert '\\"drop_table\\" is not allowed for this caller' in denied.error_message
    assert allowed.ok, "the session goes on after a denied call"


def test_an_explicit_deny_rule_refuses_the_resource(stack: Stack, idp: IdentityProvider) -> None:
    token = dba(idp, stack, "reader")
    run = ts_run(stack, token, [step("read_resource", uri="file:///etc/passwd"),
                                step("read_resource", uri="file:///data/report.txt")])

    denied, allowed = run.results
    assert not denied.ok and 'resources/read \\"file:///etc/passwd\\" is not allowed' in denied.error_message
    assert allowed.ok and allowed.value == ["quarterly report"]


def test_a_claims_rule_guards_a_prompt(stack: Stack, idp: IdentityProvider) -> None:
    steps = [step("get_prompt", name="admin_runbook"), step("get_prompt", name="summarize_dataset",
                                                             arguments={"dataset": "sales"})]
    analyst_run = ts_run(stack, analyst(idp, stack, "prompt-user"), steps)
    dba_run = ts_run(stack, dba(idp, stack, "prompt-admin"), steps)

    denied, allowed = analyst_run.results
    assert not denied.ok and 'prompts/get \\"admin_runbook\\" is not allowed' in denied.error_message
    assert allowed.ok and "Summarize the dataset sales." in json.dumps(allowed.value)
    assert [r.ok for r in dba_run.results] == [True, True]
    assert "Runbook" in json.dumps(dba_run.results[0].value)


# ---- lists show only what the caller may use ------------------------------------------------------

@pytest.mark.parametrize(("who", "expected"), [
    ("minimal", MINIMAL_TOOLS), ("analyst", ANALYST_TOOLS), ("dba", EVERY_TOOL)])
def test_tools_list_shows_only_permitted_tools(stack: Stack, idp: IdentityProvider, who: str,
                                               expected: list[str]) -> None:
    token = {"minimal": mint_for(idp, stack, "lister", [], ["analysts"]),
             "analyst": analyst(idp, stack, "lister"), "dba": dba(idp, stack, "lister")}[who]
    exchanges: list[Exchange] = []

    async def body(client: Any) -> Any:
        return tool_names(await client.list_tools())

    python_tools = python_run(stack, token, body, exchanges=exchanges)
    run = ts_run(stack, token, [step("list_tools")])

    assert python_tools == expected
    (ts_tools,) = run.results
    assert ts_tools.ok and ts_tools.value == expected
    # The TypeScript client (2025-11-25) gets SSE from the SDK server; the Python client JSON.
    assert run.content_types("tools/list") == ["text/event-stream" if stack.kind == "sse" else "application/json"]
    assert [e.content_type for e in exchanges if e.jsonrpc == "tools/list"] == ["application/json"]


def test_filtered_lists_are_counted_and_unfiltered_ones_are_not(stack: Stack, idp: IdentityProvider) -> None:
    before = stack.envoy.counter("mcp_auth.mcp.lists_filtered")
    ts_run(stack, dba(idp, stack, "counted"), [step("list_tools")])  # nothing hidden from a dba
    unchanged = stack.envoy.counter("mcp_auth.mcp.lists_filtered")
    ts_run(stack, analyst(idp, stack, "counted"), [step("list_tools")])

    assert unchanged == before
    stack.envoy.wait_for_counter("mcp_auth.mcp.lists_filtered", before + 1)


@pytest.mark.parametrize(("who", "prompts", "resources"), [
    ("analyst", ["summarize_dataset"], ["file:///data/report.txt"]),
    ("dba", ["summarize_dataset", "admin_runbook"], ["file:///data/report.txt"])])
def test_prompts_and_resources_lists_are_filtered(stack: Stack, idp: IdentityProvider, who: str,
                                                  prompts: list[str], resources: list[str]) -> None:
    token = analyst(idp, stack, "prompt-lister") if who == "analyst" else dba(idp, stack, "prompt-lister")

    async def body(client: Any) -> Any:
        listed_prompts = [p.name for p in (await client.list_prompts()).prompts]
        listed_resources = [str(r.uri) for r in (await client.list_resources()).resources]
        return listed_prompts, listed_resources

    python_lists = python_run(stack, token, body)
    run = ts_run(stack, token, [step("list_prompts"), step("list_resources")])

    assert python_lists == (prompts, resources)
    assert [r.value for r in run.results] == [prompts, resources]
    expected = "text/event-stream" if stack.kind == "sse" else "application/json"
    assert run.content_types("prompts/list") == run.content_types("resources/list") == [expected]


# ---- per-tool backend tokens ---------------------------------------------------------------------

def test_backend_gets_a_read_token_for_query_and_a_write_token_for_drop(
        stack: Stack, idp: IdentityProvider, sts: SecurityTokenService) -> None:
    """One user, one session (one connection: one worker): query_* reaches the backend with a
    read-only token, drop_* with a write token, other tools with the default one; each is
    exchanged once, then served from the cache."""
    sub = f"per-tool-{stack.kind}"
    token = dba(idp, stack, sub)
    rounds: list[dict[str, list[str]]] = []
    calls_after_each_round: list[Counter[str]] = []

    def scopes_exchanged() -> Counter[str]:
        return Counter(" ".join(c.scopes) for c in sts.calls_with_subject_token(token) if c.ok)

    async def body(client: Any) -> None:
        for _ in range(3):
            query = (await client.call_tool("query_users", {})).structured_content
            drop = (await client.call_tool("drop_table", {"table": "tmp"})).structured_content
            rounds.append({"query": query["backend_token"]["scopes"], "drop": drop["backend_token"]["scopes"]})
            calls_after_each_round.append(scopes_exchanged())

    python_run(stack, token, body)

    assert rounds == [{"query": [BQ_READONLY_SCOPE], "drop": [BQ_WRITE_SCOPE]}] * 3
    first = calls_after_each_round[0]
    assert first[BQ_READONLY_SCOPE] == 1 and first[BQ_WRITE_SCOPE] == 1, first
    # server/discover (the SDK's probe) got the default backend token.
    assert first[DEFAULT_BACKEND_SCOPE] == 1, first
    assert calls_after_each_round[1] == calls_after_each_round[2] == first, "a repeated call was exchanged again"


def test_a_rule_can_change_the_backend_audience(stack: Stack, idp: IdentityProvider,
                                                sts: SecurityTokenService) -> None:
    token = analyst(idp, stack, "report-reader")
    marker = new_marker()
    body, headers = modern_post(token, request("resources/read", {"uri": "file:///data/report.txt"}), marker)

    response = httpx.post(stack.resource, content=body, headers=headers, timeout=10)

    assert response.status_code == 200, response.text
    (authorization,) = upstream_authorization(stack.upstream, marker)
    claims = unverified_claims(authorization.removeprefix("Bearer "))
    assert claims["aud"] == REPORTS_AUDIENCE and claims["sub"] == "report-reader"
    assert claims["scp"] == [DEFAULT_BACKEND_SCOPE]  # the rule changes the audience only
    assert [c.audience for c in sts.calls_with_subject_token(token)] == [REPORTS_AUDIENCE]


def test_a_broader_scope_implies_the_narrower_ones(stack: Stack, idp: IdentityProvider) -> None:
    """scope_implies: bigquery:admin -> bigquery:read, bigquery:write."""
    token = mint_for(idp, stack, "bq-admin", [BQ_ADMIN], ["dba"])

    async def body(client: Any) -> Any:
        listed = tool_names(await client.list_tools())
        drop = (await client.call_tool("drop_table", {"table": "t"})).structured_content
        return listed, drop

    listed, drop = python_run(stack, token, body)

    assert listed == EVERY_TOOL
    assert drop["dropped"] == "t" and drop["backend_token"]["scopes"] == [BQ_WRITE_SCOPE]


# ---- methods without a name, audit and counters --------------------------------------------------

def test_methods_without_a_name_need_only_authentication(stack: Stack, idp: IdentityProvider) -> None:
    """initialize, notifications, ping, tools/list: no rule applies, only the token."""
    token = mint_for(idp, stack, "plain", [], [])
    run = ts_run(stack, token, [step("list_tools"), step("call_tool", name="whoami")])

    assert [r.ok for r in run.results] == [True, True]
    assert run.results[1].value["structured"]["sub"] == "plain"
    assert {e["status"] for e in run.exchanges if e["jsonrpc"] in ("initialize", "notifications/initialized")} <= {
        200, 202}
    no_token = httpx.post(stack.resource, json=request("tools/list", request_id=1), timeout=10)
    assert no_token.status_code == 401


def test_audit_lines_and_counters_name_the_operation_and_the_rule(stack: Stack, idp: IdentityProvider) -> None:
    token = mint_for(idp, stack, f"audited-{stack.kind}", [BQ_READ, BQ_WRITE], ["analysts"])
    envoy = stack.envoy
    before = envoy.stats()

    allowed_body, allowed_headers = modern_post(token, tool_call("query_users", request_id=5))
    allowed = httpx.post(stack.resource, content=allowed_body, headers=allowed_headers, timeout=10)
    denied_body, denied_headers = modern_post(token, tool_call("drop_table", {"table": "secret-arg"},
                                                               request_id="audit-7"))
    denied = httpx.post(stack.resource, content=denied_body, headers=denied_headers, timeout=10)
    default_body, default_headers = modern_post(token, tool_call("whoami", request_id=9))
    by_default = httpx.post(stack.resource, content=default_body, headers=default_headers, timeout=10)

    assert (allowed.status_code, denied.status_code, by_default.status_code) == (200, 403, 200)
    user = f"audited-{stack.kind}"
    deny_line = envoy.wait_for_audit(lambda a: a.get("user") == user and a.get("outcome") == "deny")
    assert {k: deny_line.get(k) for k in ("status", "reason", "mcp_method", "mcp_name", "jsonrpc_id", "rule")} == {
        "status": 403, "reason": "mcp_forbidden", "mcp_method": "tools/call", "mcp_name": "drop_table",
        "jsonrpc_id": "audit-7", "rule": "admins-only"}
    assert "secret-arg" not in json.dumps(envoy.audit_lines()), "a tool argument reached the audit log"
    allow_line = envoy.wait_for_audit(lambda a: a.get("user") == user and a.get("mcp_name") == "query_users")
    assert (allow_line["outcome"], allow_line["rule"], allow_line["mcp_method"]) == ("allow", "read", "tools/call")
    default_line = envoy.wait_for_audit(lambda a: a.get("user") == user and a.get("mcp_name") == "whoami")
    assert (default_line["rule"], default_line["jsonrpc_id"]) == ("default", "9")
    for name in ("mcp_auth.mcp.allowed.read", "mcp_auth.mcp.denied.admins-only", "mcp_auth.mcp.allowed.default",
                 "mcp_auth.denied.mcp_forbidden"):
        envoy.wait_for_counter(name, before.get(name, 0) + 1)


def test_the_sse_upstream_really_answers_sse(upstream: McpUpstream) -> None:
    """The premise of the "sse" runs: asked directly (legacy request), the SDK server streams."""
    init = request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "probe", "version": "0"}}, modern=False)
    response = httpx.post(f"{upstream.url}/mcp", json=init, timeout=10,
                          headers={"accept": "application/json, text/event-stream"})
    assert response.headers["content-type"].startswith("text/event-stream")
