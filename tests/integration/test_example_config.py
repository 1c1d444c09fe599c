"""envoy/envoy.yaml exactly as shipped (only ports moved): its own plugin configuration works,
including the defaults it relies on (audiences = [resource], authorization_servers = issuers)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from harness import Envoy, IdentityProvider, example_plugin_config, prm_url
from harness.checks import bearer, json_body
from harness.mcp_client import mcp_session


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider) -> dict[str, Any]:
    return example_plugin_config(envoy_port=envoy_port, idp_port=idp.port)


def test_example_challenge_and_metadata(http: httpx.Client, envoy_port: int, resource: str,
                                        idp: IdentityProvider) -> None:
    response = http.get("/mcp")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{prm_url(envoy_port)}", scope="mcp:tools:call"')
    metadata = json_body(http.get("/.well-known/oauth-protected-resource/mcp"))
    assert metadata == {"resource": resource, "authorization_servers": [idp.issuer],
                        "scopes_supported": ["mcp:tools:call"], "bearer_methods_supported": ["header"],
                        "resource_name": "Demo MCP server"}


def test_example_mcp_session(envoy: Envoy, idp: IdentityProvider) -> None:
    token = idp.mint(sub="example-user", email="example@example.com")

    async def whoami() -> Any:
        async with mcp_session(f"{envoy.url}/mcp", bearer(token)) as client:
            return (await client.call_tool("whoami", {})).structured_content

    assert anyio.run(whoami) == {"sub": "example-user", "email": "example@example.com",
                                 "authorization_present": False}


def test_example_bypass(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
