"""The whole MCP authorization flow by the official MCP client SDK, through Envoy running
envoy/okta-same-idp.yaml as shipped (ports moved), against the development authorization servers
(dev-as/, oidc-provider): 401 + WWW-Authenticate -> Protected Resource Metadata -> AS metadata ->
dynamic registration -> authorization code + PKCE (automatic login as alice) -> token (aud = the
MCP resource) -> initialize -> tools/list -> tools/call. The filter exchanges the token at the
backend AS (RFC 8693) and the MCP server's tool calls the backend API with the exchanged token;
the backend records alice. Then a refresh (refresh_token grant) and a second login.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import jwt
import pytest

from harness import BackendApi, Envoy, McpUpstream, resource_url
from harness.dev_as import DevAuthorizationServer, Issuer
from harness.exchange import okta_envoy_options, okta_plugin_config
from harness.mcp_upstream import header_values
from harness.oauth_login import REDIRECT_URI, OAuthLogin, new_login, oauth_mcp_session, structured

SECRET = secrets.token_urlsafe(24)


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture(scope="module")
def sts_secret() -> str:
    return SECRET


@pytest.fixture(scope="module")
def backend_issuer(dev_as: DevAuthorizationServer) -> Issuer:
    return dev_as.backend


@pytest.fixture(scope="module")
def envoy(dev_as: DevAuthorizationServer, tool_server: McpUpstream, envoy_port: int,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Envoy]:
    config = okta_plugin_config(envoy_port=envoy_port, idp_port=dev_as.mcp_port, sts_port=dev_as.backend_port)
    with Envoy(config, workdir=tmp_path_factory.mktemp("envoy-oauth"), upstream_port=tool_server.port,
               idp_port=dev_as.mcp_port, listener_port=envoy_port,
               **okta_envoy_options(dev_as.backend_port, SECRET)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def first_login(envoy: Envoy, resource: str) -> dict[str, Any]:
    """One complete login and session, shared by the tests that read what it did."""
    login = new_login(resource)

    async def session() -> dict[str, Any]:
        async with oauth_mcp_session(login, resource) as client:
            tools = await client.list_tools()
            whoami = await client.call_tool("whoami", {})
            backend_answer = await client.call_tool("query_backend", {})
            return {"tools": [t.name for t in tools.tools], "whoami": structured(whoami),
                    "backend": structured(backend_answer), "server": client.server_info}

    result = anyio.run(session)
    return {"login": login, **result}


def test_the_plugin_configuration_is_the_shipped_one(dev_as: DevAuthorizationServer, resource: str,
                                                      envoy_port: int) -> None:
    config = okta_plugin_config(envoy_port=envoy_port, idp_port=dev_as.mcp_port, sts_port=dev_as.backend_port)
    (provider,) = config["providers"].values()
    assert provider["issuer"] == dev_as.mcp.issuer
    assert provider["remote_jwks"]["http_uri"]["uri"] == dev_as.mcp.jwks_uri
    assert config["token_exchange"]["token_endpoint"]["uri"] == dev_as.backend.token_endpoint
    assert config["resource"] == resource


def test_dev_as_publishes_rfc8414_and_oidc_metadata(dev_as: DevAuthorizationServer) -> None:
    rfc8414 = dev_as.metadata(dev_as.mcp)
    oidc = httpx.get(f"{dev_as.mcp.issuer}/.well-known/openid-configuration", timeout=5).json()
    assert rfc8414 == oidc
    assert rfc8414["issuer"] == dev_as.mcp.issuer
    assert rfc8414["code_challenge_methods_supported"] == ["S256"]
    assert rfc8414["registration_endpoint"].endswith("/register")
    assert {"authorization_code", "refresh_token"} <= set(rfc8414["grant_types_supported"])
    assert rfc8414["authorization_response_iss_parameter_supported"] is True
    backend = dev_as.metadata(dev_as.backend)
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in backend["grant_types_supported"]


def test_sdk_client_runs_the_whole_flow(first_login: dict[str, Any], envoy: Envoy, dev_as: DevAuthorizationServer,
                                        resource: str) -> None:
    hops = first_login["login"].hops
    steps = [(h.actor, h.method, h.url, h.status) for h in hops]
    prm = f"{envoy.url}/.well-known/oauth-protected-resource/mcp"
    mcp = dev_as.mcp.issuer
    # The first request, without a token, is challenged; the SDK follows the challenge.
    assert steps[0] == ("client", "POST", resource, 401), steps
    assert 'resource_metadata="' + prm + '"' in hops[0].detail
    expected_prefix = [
        ("client", "POST", resource, 401),
        ("client", "GET", prm, 200),
        ("client", "GET", f"{mcp}/.well-known/oauth-authorization-server", 200),
        ("client", "POST", f"{mcp}/register", 201),
    ]
    assert steps[:4] == expected_prefix, steps
    browser = [h for h in hops if h.actor == "browser"]
    assert browser[0].url == f"{mcp}/authorize" and browser[-1].detail.startswith(f"Location: {REDIRECT_URI}")
    token_hops = [h for h in hops if h.url == f"{mcp}/token"]
    assert token_hops[0].status == 200 and "grant_type=authorization_code" in token_hops[0].detail
    assert f"resource={resource}" in token_hops[0].detail
    mcp_calls = [h.detail.split()[0] for h in hops if h.url == resource and h.status == 200 and h.detail]
    assert mcp_calls[:1] == ["initialize"] and "tools/list" in mcp_calls and "tools/call" in mcp_calls
    assert first_login["tools"] and {"whoami", "query_backend"} <= set(first_login["tools"])


def test_pkce_and_resource_indicator_on_the_authorization_request(first_login: dict[str, Any], resource: str) -> None:
    login: OAuthLogin = first_login["login"]
    query = dict(httpx.URL(login.browser.authorization_url).params)
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["resource"] == resource
    assert "mcp:tools:call" in query["scope"].split()
    assert login.storage.client_info is not None and login.storage.client_info.client_id


def test_client_token_is_for_the_mcp_resource(first_login: dict[str, Any], dev_as: DevAuthorizationServer,
                                              resource: str) -> None:
    login: OAuthLogin = first_login["login"]
    token = claims(login.access_token)
    assert token["iss"] == dev_as.mcp.issuer and token["aud"] == resource
    assert token["sub"] == "alice" and token["email"] == "alice@example.com"
    assert "mcp:tools:call" in token["scope"].split()
    assert login.storage.tokens is not None and login.storage.tokens.refresh_token


def test_mcp_server_gets_identity_and_the_backend_token_only(first_login: dict[str, Any], tool_server: McpUpstream,
                                                             dev_as: DevAuthorizationServer) -> None:
    assert first_login["whoami"] == {"sub": "alice", "email": "alice@example.com", "authorization_present": True}
    client_token = first_login["login"].access_token
    entries = [e for e in tool_server.seen() if e["path"] == "/mcp"]
    assert entries
    assert not any(client_token in v for e in entries for _, v in e["headers"]), "client token reached the server"
    upstream = {v.removeprefix("Bearer ") for e in entries for v in header_values(e, "authorization")}
    assert upstream
    for token in upstream:
        exchanged = claims(token)
        assert exchanged["iss"] == dev_as.backend.issuer and exchanged["aud"] == "backend"
        assert exchanged["sub"] == "alice" and exchanged["scope"] == "backend-api:read"
        assert exchanged["client_id"] == "mcp-filter"


def test_backend_records_alice(first_login: dict[str, Any], backend: BackendApi) -> None:
    answer = first_login["backend"]
    assert answer["status"] == 200, answer
    assert answer["body"] == {"user": "alice", "audience": "backend", "scopes": ["backend-api:read"],
                              "token_kind": "jwt"}
    (call,) = backend.calls_by("alice")[:1]
    assert call.status == 200 and call.audience == "backend"


def test_filter_counted_the_flow(first_login: dict[str, Any], envoy: Envoy) -> None:
    stats = envoy.stats()
    assert stats.get("mcp_auth.denied.missing_token", 0) >= 1
    assert stats.get("mcp_auth.metadata_served", 0) >= 1
    assert stats.get("mcp_auth.allowed", 0) >= 3
    assert stats.get("mcp_auth.exchange.ok", 0) >= 1
    audit = [a for a in envoy.audit_lines() if a.get("user") == "alice" and a.get("outcome") == "allow"]
    assert audit and audit[-1]["backend_audience"] == "backend"


def test_refresh_token_keeps_the_session_going(first_login: dict[str, Any], resource: str,
                                               dev_as: DevAuthorizationServer, backend: BackendApi) -> None:
    login: OAuthLogin = first_login["login"]
    before = login.access_token
    login.expire_access_token()
    hops_before = len(login.hops)

    async def session() -> Any:
        async with oauth_mcp_session(login, resource) as client:
            return structured(await client.call_tool("query_backend", {}))

    answer = anyio.run(session)
    new_hops = login.hops[hops_before:]
    refresh = [h for h in new_hops if h.url == f"{dev_as.mcp.issuer}/token"]
    assert refresh and "grant_type=refresh_token" in refresh[0].detail and refresh[0].status == 200
    assert not any(h.status == 401 for h in new_hops), "the refreshed token was refused"
    assert login.access_token != before and claims(login.access_token)["sub"] == "alice"
    assert answer["status"] == 200 and answer["body"]["user"] == "alice"


def test_token_for_another_resource_is_refused(envoy: Envoy, dev_as: DevAuthorizationServer) -> None:
    """The dev AS only issues tokens for the resources it was given."""
    query = {"response_type": "code", "client_id": "mcp-client", "redirect_uri": "http://127.0.0.1:33418",
             "code_challenge": "x" * 43, "code_challenge_method": "S256", "scope": "mcp:tools:call",
             "resource": "https://other.example.com/mcp"}
    response = httpx.get(f"{dev_as.mcp.issuer}/authorize", params=query, timeout=5)
    assert response.status_code in (302, 303)
    assert "error=invalid_target" in response.headers["location"]


def test_backend_as_refuses_other_subject_tokens(dev_as: DevAuthorizationServer, first_login: dict[str, Any]) -> None:
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "audience": "backend", "scope": "backend-api:read"}
    auth = ("mcp-filter", SECRET)
    forged = jwt.encode({"iss": dev_as.mcp.issuer, "sub": "mallory", "aud": "x", "exp": 2**31}, "k" * 32)
    bad = httpx.post(dev_as.backend.token_endpoint, data={**form, "subject_token": forged}, auth=auth, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    write = httpx.post(dev_as.backend.token_endpoint, auth=auth, timeout=5,
                       data={**form, "scope": "backend-api:write", "subject_token": first_login["login"].access_token})
    assert write.status_code == 400 and write.json()["error"] == "invalid_scope"
    wrong_secret = httpx.post(dev_as.backend.token_endpoint, auth=("mcp-filter", "nope"), timeout=5,
                              data={**form, "subject_token": first_login["login"].access_token})
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"


def test_resource_url_is_the_envoy_listener(resource: str, envoy_port: int) -> None:
    assert resource == resource_url(envoy_port)



def test_browser_based_clients_can_register_and_redeem_codes(dev_as: DevAuthorizationServer) -> None:
    """MCP Inspector runs the OAuth flow from a web page: registration and token need CORS."""
    origin = {"origin": "http://localhost:6274"}
    for path in ("/register", "/token"):
        preflight = httpx.options(f"{dev_as.mcp.issuer}{path}", timeout=5,
                                  headers={**origin, "access-control-request-method": "POST"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] in ("*", origin["origin"])
    registered = httpx.post(f"{dev_as.mcp.issuer}/register", headers=origin, timeout=5, json={
        "redirect_uris": ["http://localhost:6274/oauth/callback"], "token_endpoint_auth_method": "none"})
    assert registered.status_code == 201 and registered.headers["access-control-allow-origin"] == "*"
