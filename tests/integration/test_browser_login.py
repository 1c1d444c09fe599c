"""envoy/browser-login.yaml: Envoy's OAuth2 filter logs a browser in, mcp-auth-filter verifies
and exchanges the token it forwards. Run as shipped (ports, the OAuth2 client's id and the
authorization server's URLs moved to this run's dev AS):

- a browser without a session is sent to the MCP AS (authorization code + PKCE, resource
  indicator), comes back to /oauth2/callback, and gets session cookies;
- with those cookies, a page request and an MCP session (the official SDK, no OAuth of its own)
  reach the MCP server with the exchanged backend token: the backend serves alice;
- an MCP client that does its own OAuth still works on the same listener: its first request
  gets 401 (no login redirect), it finds the metadata at the well-known URL and logs in.
"""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import yaml

from harness import BackendApi, Envoy, McpUpstream
from harness.dev_as import DevAuthorizationServer, Issuer
from harness.envoy import REPO, load_example
from harness.exchange import okta_plugin_config
from harness.mcp_client import mcp_session
from harness.oauth_login import new_login, oauth_mcp_session, structured

BROWSER_LOGIN = REPO / "envoy" / "browser-login.yaml"
STS_SECRET = secrets.token_urlsafe(24)
HMAC_SECRET = secrets.token_urlsafe(32)
OAUTH2 = "envoy.filters.http.oauth2"


def oauth2_config(config: dict[str, Any]) -> dict[str, Any]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (oauth2,) = [f for f in hcm["http_filters"] if f["name"] == OAUTH2]
    return oauth2["typed_config"]["config"]


@pytest.fixture(scope="module")
def sts_secret() -> str:
    return STS_SECRET


@pytest.fixture(scope="module")
def backend_issuer(dev_as: DevAuthorizationServer) -> Issuer:
    return dev_as.backend


@pytest.fixture(scope="module")
def oauth2_client(dev_as: DevAuthorizationServer, envoy_port: int) -> dict[str, Any]:
    """Envoy's confidential client at the MCP AS, registered as an operator would (RFC 7591)."""
    response = httpx.post(f"{dev_as.mcp.issuer}/register", timeout=5, json={
        "client_name": "Envoy browser login", "application_type": "native",
        "redirect_uris": [f"http://127.0.0.1:{envoy_port}/oauth2/callback"],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def stack(dev_as: DevAuthorizationServer, oauth2_client: dict[str, Any], envoy_port: int, resource: str,
          backend: BackendApi, tool_server: McpUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("browser-login")
    config = load_example(BROWSER_LOGIN)
    oauth2 = oauth2_config(config)
    assert oauth2["forward_bearer_token"] is True and oauth2["resources"] == ["http://127.0.0.1:10000/mcp"]
    oauth2["authorization_endpoint"] = f"{dev_as.mcp.issuer}/authorize"
    oauth2["token_endpoint"]["uri"] = dev_as.mcp.token_endpoint
    oauth2["resources"] = [resource]
    oauth2["credentials"]["client_id"] = oauth2_client["client_id"]
    example = work / "browser-login.yaml"
    example.write_text(yaml.safe_dump(config, sort_keys=False))
    plugin = okta_plugin_config(envoy_port=envoy_port, idp_port=dev_as.mcp_port, sts_port=dev_as.backend_port)
    with Envoy(plugin, workdir=work / "envoy", upstream_port=tool_server.port, idp_port=dev_as.mcp_port,
               listener_port=envoy_port, example=example, clusters={"sts": dev_as.backend_port},
               env={"STS_CLIENT_SECRET": STS_SECRET, "OAUTH2_CLIENT_SECRET": oauth2_client["client_secret"],
                    "OAUTH2_HMAC_SECRET": HMAC_SECRET}) as envoy:
        yield {"envoy": envoy, "backend": backend, "upstream": tool_server}


def browser_login(envoy: Envoy, dev_as: DevAuthorizationServer) -> tuple[dict[str, str], list[str]]:
    """A browser opening the MCP server's page: follow every redirect, keep every cookie (by
    hand: Envoy marks its cookies Secure, and this test speaks plain HTTP)."""
    cookies: dict[str, str] = {}
    visited = []
    url = f"{envoy.url}/app"
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        for _ in range(12):
            jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
            response = browser.get(url, headers={"accept": "text/html", **({"cookie": jar} if jar else {})})
            visited.append(f"{response.status_code} {url.split('?')[0]}")
            for header in response.headers.get_list("set-cookie"):
                name, _, rest = header.partition("=")
                cookies[name.strip()] = rest.split(";")[0]
            if response.status_code not in (302, 303):
                return cookies, visited
            url = urllib.parse.urljoin(url, response.headers["location"])
            if url.startswith(f"{dev_as.mcp.issuer}/authorize?"):
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
                assert query["code_challenge_method"] == "S256" and query["resource"] == envoy.url + "/mcp"
    raise AssertionError(f"no end to the redirects: {visited}")


def test_browser_login_then_page_and_mcp_session_carry_the_user(stack: dict[str, Any],
                                                                dev_as: DevAuthorizationServer) -> None:
    envoy, backend = stack["envoy"], stack["backend"]
    cookies, visited = browser_login(envoy, dev_as)
    assert visited[0].startswith("302 ") and any("/oauth2/callback" in v for v in visited), visited
    assert visited[-1] == f"200 {envoy.url}/app", visited
    assert {"BearerToken", "OauthHMAC", "OauthExpires"} <= set(cookies), cookies
    session = {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}

    page = httpx.get(f"{envoy.url}/echo", headers=session, timeout=10).json()
    headers = dict((k.lower(), v) for k, v in page["headers"])
    assert headers["x-mcp-user-sub"] == "alice"
    assert headers["authorization"].startswith("Bearer ") and cookies["BearerToken"] not in headers["authorization"]

    async def mcp() -> Any:
        async with mcp_session(f"{envoy.url}/mcp", session) as client:
            return structured(await client.call_tool("query_backend", {}))

    answer = anyio.run(mcp)
    assert answer["status"] == 200 and answer["body"]["user"] == "alice", answer
    assert backend.calls_by("alice")
    stats = envoy.stats()
    assert stats.get("mcp_auth.exchange.ok", 0) >= 1


def test_mcp_client_with_its_own_oauth_still_logs_in(stack: dict[str, Any], resource: str) -> None:
    envoy = stack["envoy"]
    login = new_login(resource)

    async def session() -> Any:
        async with oauth_mcp_session(login, resource) as client:
            return structured(await client.call_tool("whoami", {}))

    whoami = anyio.run(session)
    assert whoami["sub"] == "alice"
    first = login.hops[0]
    assert (first.method, first.url, first.status) == ("POST", resource, 401)
    prm = [h for h in login.hops if "/.well-known/oauth-protected-resource" in h.url]
    assert prm and prm[-1].status == 200
    assert envoy.counter("mcp_auth.metadata_served") >= 1


def test_unauthenticated_browser_is_redirected_not_challenged(stack: dict[str, Any]) -> None:
    response = httpx.get(f"{stack['envoy'].url}/app", headers={"accept": "text/html"}, timeout=5)
    assert response.status_code == 302 and "/authorize?" in response.headers["location"]


