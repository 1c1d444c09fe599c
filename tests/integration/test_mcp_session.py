"""A real MCP client session through Envoy, and what the upstream receives."""

from __future__ import annotations

from typing import Any

import anyio
import httpx

from harness import MARKER_HEADER, Envoy, IdentityProvider, McpUpstream
from harness.checks import bearer, echoed, new_marker
from harness.mcp_client import mcp_session
from harness.mcp_upstream import header_values


async def _run_session(url: str, headers: dict[str, str]) -> dict[str, Any]:
    async with mcp_session(url, headers) as client:
        tools = await client.list_tools()
        whoami = await client.call_tool("whoami", {})
        added = await client.call_tool("add", {"a": 2, "b": 40})
        return {
            "protocol_version": client.protocol_version,
            "tools": {t.name for t in tools.tools},
            "whoami": whoami.structured_content,
            "add": added.structured_content,
        }


def test_mcp_session_with_valid_token(envoy: Envoy, idp: IdentityProvider, upstream: McpUpstream) -> None:
    marker = new_marker()
    token = idp.mint(sub="session-user-1", email="session-user-1@example.com")
    headers = {**bearer(token, marker), "x-mcp-user-sub": "forged-admin"}

    result = anyio.run(_run_session, f"{envoy.url}/mcp", headers)

    assert result["protocol_version"]  # initialize completed
    assert result["tools"] == {"whoami", "add", "query_backend", "query_users", "list_datasets", "drop_table"}
    assert result["whoami"] == {"sub": "session-user-1", "email": "session-user-1@example.com",
                                "authorization_present": False}
    assert result["add"] == {"result": 42}

    seen = upstream.seen(marker)
    methods = [e["method"] for e in seen]
    assert methods.count("POST") >= 4, methods  # initialize, initialized, tools/list, 2x tools/call
    for entry in seen:
        assert header_values(entry, "authorization") == [], entry
        assert header_values(entry, "x-mcp-user-sub") == ["session-user-1"], entry


def test_mcp_session_with_token_from_idp_endpoint(envoy: Envoy, idp: IdentityProvider) -> None:
    """The whole flow a client does: password grant at the IdP, then MCP with that token."""
    response = httpx.post(idp.token_endpoint, timeout=5, data={
        "grant_type": "password", "username": "alice", "password": "alice-password", "client_id": "demo-client"})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]

    result = anyio.run(_run_session, f"{envoy.url}/mcp", bearer(token))

    assert result["whoami"] == {"sub": "alice", "email": "alice@example.com", "authorization_present": False}


def test_spoofed_identity_headers_are_replaced(http: httpx.Client, idp: IdentityProvider) -> None:
    token = idp.mint(sub="real-user", email="real@example.com")
    response = http.get("/echo", headers={**bearer(token), "x-mcp-user-sub": "forged-admin",
                                          "x-mcp-user-email": "forged@example.com"})
    assert echoed(response, "x-mcp-user-sub") == ["real-user"]
    assert echoed(response, "x-mcp-user-email") == ["real@example.com"]
    assert echoed(response, "authorization") == []


def test_spoofed_header_removed_when_claim_absent(http: httpx.Client, idp: IdentityProvider) -> None:
    """A token without `email` must not let a client-supplied x-mcp-user-email through."""
    token = idp.mint(sub="no-email-user", omit=("email",))
    response = http.get("/echo", headers={**bearer(token), "x-mcp-user-email": "forged@example.com"})
    assert echoed(response, "x-mcp-user-sub") == ["no-email-user"]
    assert echoed(response, "x-mcp-user-email") == []


def test_client_credentials_token_reaches_upstream_as_client(http: httpx.Client, idp: IdentityProvider,
                                                             upstream: McpUpstream) -> None:
    response = httpx.post(idp.token_endpoint, timeout=5, auth=("demo-client", "demo-secret"),
                          data={"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    marker = new_marker()
    echo = http.get("/echo", headers=bearer(response.json()["access_token"], marker))
    assert echoed(echo, "x-mcp-user-sub") == ["demo-client"]
    (entry,) = upstream.seen(marker)
    assert header_values(entry, MARKER_HEADER) == [marker]
    assert header_values(entry, "authorization") == []
