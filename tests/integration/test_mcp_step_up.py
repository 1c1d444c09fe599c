"""Per-tool step-up, end to end: the official Python SDK (protocol 2026-07-28) logs in by itself
through Envoy (envoy/okta-same-idp.yaml with the BigQuery `mcp` block) at the development
authorization servers (dev-as/, oidc-provider), gets a token with the scope of the 401 challenge
(mcp:tools:call), and when a tool needs more, the filter's 403 `insufficient_scope` challenge
makes the SDK re-authorize for exactly the scopes the tool needs and retry, which succeeds.

alice is an analyst: query_users steps her up to bigquery:read; drop_table is refused by the
rule's claim condition (groups contains "dba"), naming the tool, with no step-up (no scope would
help). bob is a dba: drop_table steps him up to bigquery:write and reaches the backend with a
write token from the backend AS (the rule's exchange scopes); query_users then steps him up
again, to the union of what he had and bigquery:read.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from harness import Envoy, McpUpstream, free_port, resource_url
from harness.checks import new_marker, parse_challenge
from harness.dev_as import DevAuthorizationServer
from harness.exchange import okta_envoy_options, okta_plugin_config, unverified_claims
from harness.mcp_policy import BQ_READ, BQ_WRITE, FORBIDDEN, MCP_CALL, bigquery_mcp, with_mcp
from harness.mcp_upstream import MARKER_HEADER
from harness.oauth_login import Hop, OAuthLogin, new_login, oauth_mcp_session

pytestmark = pytest.mark.usefixtures("vm_never_fails")

SECRET = secrets.token_urlsafe(24)
BACKEND_READ, BACKEND_WRITE = "backend-api:read", "backend-api:write"


@dataclass(frozen=True)
class LoginStack:
    user: str
    dev_as: DevAuthorizationServer
    envoy: Envoy
    resource: str


@pytest.fixture(scope="module")
def make_login_stack(upstream: McpUpstream, envoys_made: list[Envoy],
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], LoginStack]]:
    """Factory: a dev AS logging everyone in as `user` (its backend AS may issue write tokens
    too), and Envoy from envoy/okta-same-idp.yaml with the BigQuery rules, drop_* exchanging for
    backend-api:write."""
    servers: list[DevAuthorizationServer] = []

    def make(user: str) -> LoginStack:
        port = free_port()
        resource = resource_url(port)
        workdir = tmp_path_factory.mktemp(f"step-up-{user}")
        dev_as = DevAuthorizationServer(mcp_resources=[resource], sts_client_secret=SECRET, demo_user=user,
                                        log_path=workdir / "dev-as.log",
                                        env={"STS_ALLOWED_SCOPES": f"{BACKEND_READ} {BACKEND_WRITE}"})
        servers.append(dev_as)
        dev_as.start()
        config = okta_plugin_config(envoy_port=port, idp_port=dev_as.mcp_port, sts_port=dev_as.backend_port)
        config = with_mcp(config, bigquery_mcp(write_exchange=[BACKEND_WRITE], reports_audience=None))
        envoy = Envoy(config, workdir=workdir, upstream_port=upstream.port, idp_port=dev_as.mcp_port,
                      listener_port=port, **okta_envoy_options(dev_as.backend_port, SECRET))
        envoys_made.append(envoy)
        return LoginStack(user, dev_as, envoy.start(), resource)

    yield make
    for server in servers:
        server.stop()


@dataclass
class Session:
    login: OAuthLogin
    marker: str
    outcomes: dict[str, Any]
    tokens: list[str]  # the client's access token after each step


def run_session(stack: LoginStack, steps: list[tuple[str, str, dict[str, Any]]]) -> Session:
    """Log in and run `steps` ((label, tool or "list", arguments)) in one SDK session; each
    outcome is the tool's structured result, the tool names listed, or the MCPError raised."""
    login = new_login(stack.resource)
    marker = new_marker()
    outcomes: dict[str, Any] = {}
    tokens: list[str] = []

    async def session() -> None:
        async with oauth_mcp_session(login, stack.resource, headers={MARKER_HEADER: marker}, mode="auto") as client:
            assert client.protocol_version == "2026-07-28"
            for label, tool, arguments in steps:
                try:
                    if tool == "list":
                        outcomes[label] = [t.name for t in (await client.list_tools()).tools]
                    else:
                        outcomes[label] = (await client.call_tool(tool, arguments)).structured_content
                except MCPError as e:
                    outcomes[label] = e
                tokens.append(login.access_token)

    anyio.run(session)
    return Session(login, marker, outcomes, tokens)


@pytest.fixture(scope="module")
def alice(make_login_stack: Callable[[str], LoginStack]) -> tuple[LoginStack, Session]:
    stack = make_login_stack("alice")
    return stack, run_session(stack, [
        ("tools before", "list", {}),
        ("query_users", "query_users", {}),
        ("tools after", "list", {}),
        ("drop_table", "drop_table", {"table": "users"}),
    ])


@pytest.fixture(scope="module")
def bob(make_login_stack: Callable[[str], LoginStack]) -> tuple[LoginStack, Session]:
    stack = make_login_stack("bob")
    return stack, run_session(stack, [
        ("drop_table", "drop_table", {"table": "staging"}),
        ("query_users", "query_users", {"limit": 1}),
    ])


def challenges(hops: list[Hop], status: int) -> list[dict[str, str]]:
    """The Bearer challenges the client got on MCP requests answered with `status`."""
    found = []
    for hop in hops:
        if hop.actor == "client" and hop.status == status and "Bearer " in hop.detail:
            found.append(parse_challenge(hop.detail[hop.detail.index("Bearer "):])[1])
    return found


def scopes(token: str) -> set[str]:
    return set(unverified_claims(token)["scope"].split())


def test_alice_first_gets_a_token_for_the_challenge_scope_only(alice: tuple[LoginStack, Session]) -> None:
    stack, session = alice
    (first_challenge,) = challenges(session.login.hops, 401)
    assert first_challenge["scope"] == MCP_CALL
    first_token = unverified_claims(session.tokens[0])
    assert first_token["sub"] == "alice" and first_token["groups"] == ["analysts"]
    assert scopes(session.tokens[0]) == {MCP_CALL}
    # Before the step-up the read tools (query_* covers query_backend) are not listed.
    assert session.outcomes["tools before"] == ["whoami", "add"]


def test_a_tool_needing_a_scope_steps_the_sdk_up_and_succeeds(alice: tuple[LoginStack, Session]) -> None:
    stack, session = alice
    hops = session.login.hops
    (step_up,) = challenges(hops, 403)
    assert step_up["error"] == "insufficient_scope"
    assert step_up["scope"] == f"{MCP_CALL} {BQ_READ}"
    assert step_up["resource_metadata"].endswith("/.well-known/oauth-protected-resource/mcp")
    # 403 -> authorization again (the headless browser) -> token -> the same call, now 200.
    index = next(i for i, h in enumerate(hops) if h.status == 403)
    after = hops[index + 1:]
    authorize = next(i for i, h in enumerate(after) if h.actor == "browser" and h.url.endswith("/authorize"))
    token = next(i for i, h in enumerate(after) if h.url == f"{stack.dev_as.mcp.issuer}/token")
    retried = next(i for i, h in enumerate(after) if h.url == stack.resource)
    assert authorize < token < retried, [h.line() for h in after]
    assert after[token].status == 200 and "grant_type=authorization_code" in after[token].detail
    assert after[retried].status == 200 and after[retried].detail.startswith("tools/call query_users")
    assert scopes(session.tokens[1]) == {MCP_CALL, BQ_READ}
    result = session.outcomes["query_users"]
    assert result["tool"] == "query_users" and result["rows"]
    assert result["backend_token"]["sub"] == "alice" and result["backend_token"]["scopes"] == [BACKEND_READ]
    assert session.outcomes["tools after"] == ["whoami", "add", "query_backend", "query_users", "list_datasets"]


def test_a_claims_denied_tool_fails_naming_it_without_a_step_up(alice: tuple[LoginStack, Session],
                                                               upstream: McpUpstream) -> None:
    stack, session = alice
    hops = session.login.hops
    error = session.outcomes["drop_table"]
    assert isinstance(error, MCPError) and error.code == FORBIDDEN
    assert str(error) == 'Forbidden: tools/call "drop_table" is not allowed for this caller'
    assert len(challenges(hops, 403)) == 1, "the denial must not ask for a step-up"
    assert len([h for h in hops if h.actor == "browser" and h.url.endswith("/authorize")]) == 2
    assert session.tokens[-1] == session.tokens[1], "no new token for a denied tool"
    # The MCP server saw every POST but the refused ones (the 401, the 403 step-up, the denial).
    posts = [h for h in hops if h.actor == "client" and h.url == stack.resource and h.method == "POST"]
    refused = [h for h in posts if h.status in (401, 403)]
    assert len(refused) == 3
    assert len([e for e in upstream.seen(session.marker) if e["method"] == "POST"]) == len(posts) - len(refused)


def test_bob_steps_up_for_the_write_tool_and_the_backend_gets_a_write_token(
        bob: tuple[LoginStack, Session]) -> None:
    stack, session = bob
    step_ups = challenges(session.login.hops, 403)
    assert [c["scope"] for c in step_ups] == [f"{MCP_CALL} {BQ_WRITE}", f"{MCP_CALL} {BQ_READ}"]
    drop = session.outcomes["drop_table"]
    assert drop["dropped"] == "staging"
    assert drop["backend_token"]["sub"] == "bob" and drop["backend_token"]["scopes"] == [BACKEND_WRITE]
    query = session.outcomes["query_users"]
    assert query["rows"] == [{"id": 1, "name": "ada"}] and query["backend_token"]["scopes"] == [BACKEND_READ]
    # The SDK asks for the union of what it had and what the challenge names.
    assert scopes(session.tokens[0]) == {MCP_CALL, BQ_WRITE}
    assert scopes(session.tokens[1]) == {MCP_CALL, BQ_WRITE, BQ_READ}
    assert unverified_claims(session.tokens[1])["groups"] == ["analysts", "dba"]
