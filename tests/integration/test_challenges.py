"""401/403 answers for missing or malformed credentials and missing scopes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, prm_url
from harness.checks import bearer, challenge, echoed, json_body, new_marker
from harness.mcp_upstream import MARKER_HEADER


def test_missing_token(http: httpx.Client, envoy: Envoy, envoy_port: int, upstream: McpUpstream) -> None:
    marker = new_marker()
    response = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                         headers={MARKER_HEADER: marker})
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [
        f'Bearer resource_metadata="{prm_url(envoy_port)}", scope="mcp:tools:call"']
    assert json_body(response) == {"error": "unauthorized", "error_description": "bearer token required"}
    assert upstream.seen(marker) == []  # denied requests never reach the MCP server


@pytest.mark.parametrize("value", [
    "Basic dXNlcjpwYXNz",
    "Token abc.def.ghi",
    "Bearer",
    "Bearer a.b.c extra",
    "Bearer abc!def.ghi",
], ids=["basic", "other-scheme", "no-token", "two-tokens", "bad-characters"])
def test_malformed_authorization_header(http: httpx.Client, envoy: Envoy, envoy_port: int, value: str) -> None:
    before = envoy.counter("mcp_auth.denied.invalid_request")
    response = http.get("/echo", headers={"authorization": value})
    assert_invalid_request(response, envoy_port)
    envoy.wait_for_counter("mcp_auth.denied.invalid_request", before + 1)


def test_several_authorization_headers(http: httpx.Client, envoy_port: int, idp: IdentityProvider) -> None:
    token = idp.mint()
    headers = [("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")]
    response = http.get("/echo", headers=headers)
    assert_invalid_request(response, envoy_port)


def assert_invalid_request(response: httpx.Response, envoy_port: int) -> None:
    assert response.status_code == 401, response.text
    params = challenge(response)
    assert params.get("error") == "invalid_request", params
    assert params.get("resource_metadata") == prm_url(envoy_port), params
    assert json_body(response)["error"] == "invalid_request"


def test_missing_scope(http: httpx.Client, envoy: Envoy, envoy_port: int, idp: IdentityProvider,
                       upstream: McpUpstream) -> None:
    marker = new_marker()
    before = envoy.counter("mcp_auth.denied.insufficient_scope")
    response = http.get("/echo", headers=bearer(idp.mint(scp=["mcp:tools:list"]), marker))
    assert response.status_code == 403
    assert response.headers.get_list("www-authenticate") == [
        f'Bearer error="insufficient_scope", scope="mcp:tools:call", '
        f'resource_metadata="{prm_url(envoy_port)}", error_description="token lacks required scope"']
    assert json_body(response)["error"] == "insufficient_scope"
    assert upstream.seen(marker) == []
    envoy.wait_for_counter("mcp_auth.denied.insufficient_scope", before + 1)


@pytest.mark.parametrize("claims", [
    {"scp": []},
    {"scp": "mcp:tools:callx"},  # scopes are whole words, not prefixes
    {"scope": "mcp:tools:list"},
], ids=["empty-scp", "prefix-only", "other-scope"])
def test_scope_not_granted(http: httpx.Client, idp: IdentityProvider, claims: dict[str, Any]) -> None:
    token = idp.mint(omit=("scp",), **claims)
    response = http.get("/echo", headers=bearer(token))
    assert response.status_code == 403
    assert challenge(response)["error"] == "insufficient_scope"


@pytest.mark.parametrize("claims", [
    {"scope": "openid mcp:tools:call"},
    {"scp": "mcp:tools:list mcp:tools:call"},
    {"scp": ["mcp:tools:list", "mcp:tools:call"]},
], ids=["scope-string", "scp-string", "scp-array"])
def test_scope_granted(http: httpx.Client, idp: IdentityProvider, claims: dict[str, Any]) -> None:
    token = idp.mint(omit=("scp",), sub="scoped-user", **claims)
    response = http.get("/echo", headers=bearer(token))
    assert echoed(response, "x-mcp-user-sub") == ["scoped-user"]
