"""RFC 9728 Protected Resource Metadata served by the filter, and bypass paths."""

from __future__ import annotations

from http.client import HTTPConnection
from typing import Any

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream
from harness.checks import bearer, challenge, json_body, new_marker
from harness.mcp_upstream import MARKER_HEADER, header_values

PRM_PATHS = ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]


@pytest.fixture(scope="module")
def expected_metadata(resource: str, idp: IdentityProvider) -> dict[str, Any]:
    return {
        "resource": resource,
        "authorization_servers": [idp.issuer],
        "scopes_supported": ["mcp:tools:call", "mcp:tools:list"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Demo MCP server",
    }


@pytest.mark.parametrize("path", PRM_PATHS, ids=["root", "path-inserted"])
def test_metadata_document(http: httpx.Client, envoy: Envoy, upstream: McpUpstream, path: str,
                           expected_metadata: dict[str, Any]) -> None:
    before = envoy.counter("mcp_auth.metadata_served")
    marker = new_marker()
    response = http.get(path, headers={MARKER_HEADER: marker})
    assert response.status_code == 200
    assert response.headers.get("access-control-allow-origin") == "*"
    assert json_body(response) == expected_metadata
    assert upstream.seen(marker) == []  # answered by the filter itself
    envoy.wait_for_counter("mcp_auth.metadata_served", before + 1)


def test_metadata_url_in_challenge_serves_metadata(http: httpx.Client, expected_metadata: dict[str, Any]) -> None:
    """What an MCP client does on 401: follow resource_metadata from the challenge."""
    url = challenge(http.post("/mcp", json={}))["resource_metadata"]
    assert json_body(httpx.get(url, timeout=5)) == expected_metadata


@pytest.mark.parametrize("path", PRM_PATHS, ids=["root", "path-inserted"])
def test_metadata_head(http: httpx.Client, path: str) -> None:
    response = http.head(path)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers.get("access-control-allow-origin") == "*"


@pytest.mark.parametrize("path", PRM_PATHS, ids=["root", "path-inserted"])
def test_metadata_cors_preflight(http: httpx.Client, path: str) -> None:
    response = http.options(path, headers={"origin": "http://app.example",
                                           "access-control-request-method": "GET"})
    assert response.status_code == 204
    assert response.headers.get("access-control-allow-origin") == "*"
    assert "GET" in response.headers.get("access-control-allow-methods", "")


def test_metadata_needs_no_token_even_when_a_bad_one_is_sent(http: httpx.Client,
                                                            expected_metadata: dict[str, Any]) -> None:
    response = http.get(PRM_PATHS[1], headers={"authorization": "Bearer garbage"})
    assert response.status_code == 200
    assert json_body(response) == expected_metadata


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource/other",
                                  "/.well-known/oauth-protected-resource/mcp/extra"])
def test_unknown_metadata_subpath_is_404(http: httpx.Client, upstream: McpUpstream, path: str) -> None:
    marker = new_marker()
    response = http.get(path, headers={MARKER_HEADER: marker})
    assert response.status_code == 404
    assert upstream.seen(marker) == []  # the upstream would have answered 200


def test_bypass_exact_path_without_token(http: httpx.Client, envoy: Envoy, upstream: McpUpstream) -> None:
    before = envoy.counter("mcp_auth.bypassed")
    marker = new_marker()
    response = http.get("/healthz", headers={MARKER_HEADER: marker})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    (entry,) = upstream.seen(marker)
    assert header_values(entry, "authorization") == []
    envoy.wait_for_counter("mcp_auth.bypassed", before + 1)


@pytest.mark.parametrize("path", ["/healthz", "/public/docs/index.html"])
def test_bypass_strips_credentials_and_identity_headers(http: httpx.Client, idp: IdentityProvider,
                                                        upstream: McpUpstream, path: str) -> None:
    marker = new_marker()
    headers = {**bearer(idp.mint(), marker), "x-mcp-user-sub": "forged", "x-mcp-user-email": "forged@x"}
    response = http.get(path, headers=headers)
    assert response.status_code == 200
    (entry,) = upstream.seen(marker)
    for name in ("authorization", "x-mcp-user-sub", "x-mcp-user-email"):
        assert header_values(entry, name) == [], (name, entry)


@pytest.mark.parametrize("path", ["/healthz/extra", "/healthzz", "/public", "/publicity"])
def test_near_miss_of_bypass_path_needs_token(http: httpx.Client, path: str) -> None:
    assert http.get(path).status_code == 401


def test_dot_segments_cannot_escape_bypass_prefix(envoy: Envoy, upstream: McpUpstream) -> None:
    """/public/../echo is normalised by Envoy to /echo before the filter matches bypass paths."""
    marker = new_marker()
    conn = HTTPConnection("127.0.0.1", envoy.listener_port, timeout=10)
    try:
        conn.request("GET", "/public/../echo", headers={MARKER_HEADER: marker})  # sent verbatim
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status == 401
    assert upstream.seen(marker) == []
