"""The rig's own STS and backend API, without Envoy: they must implement RFC 8693 (and Google's
variant) faithfully, or the token-exchange tests would prove nothing about the filter."""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import jwt
import pytest

from harness import BackendApi, IdentityProvider, McpUpstream, SecurityTokenService
from harness.checks import new_marker
from harness.idp import new_rsa_key
from harness.mcp_client import mcp_session
from harness.rfc8693 import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from harness.sts import GOOGLE_AUDIENCE, GOOGLE_SCOPES, decode_issued
from harness.sts_fault import StsFault

RESOURCE = "http://127.0.0.1:1/mcp"  # the MCP resource the subject tokens are for (never contacted)
SECRET = "s3cret: with/special+chars%&="


@pytest.fixture(scope="module")
def idp(make_idp: Callable[..., IdentityProvider]) -> IdentityProvider:
    return make_idp(RESOURCE)


@pytest.fixture(scope="module")
def sts(idp: IdentityProvider) -> Iterator[SecurityTokenService]:
    with SecurityTokenService(idp, subject_audiences=[RESOURCE],
                              clients={"mcp-filter": SECRET, "public-client": None}) as server:
        yield server


pytestmark = pytest.mark.usefixtures("sts_restored")


def _basic(client_id: str, secret: str) -> str:
    quote = urllib.parse.quote_plus
    return "Basic " + base64.b64encode(f"{quote(client_id)}:{quote(secret)}".encode()).decode()


def _form(subject_token: str, **overrides: Any) -> dict[str, str]:
    form = {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE, "requested_token_type": ACCESS_TOKEN_TYPE,
            "audience": "backend", "scope": "backend-api:read"}
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def _exchange(sts: SecurityTokenService, form: dict[str, str], headers: dict[str, str] | None = None,
              path: str = "/token") -> httpx.Response:
    return httpx.post(f"{sts.issuer}{path}", data=form, headers=headers or {}, timeout=10)


def test_exchange_with_basic_auth_issues_backend_jwt(sts: SecurityTokenService, idp: IdentityProvider) -> None:
    subject = idp.mint(sub="rig-basic", jti=new_marker())
    response = _exchange(sts, _form(subject, scope="backend-api:read backend-api:write", resource="http://b/"),
                         {"authorization": _basic("mcp-filter", SECRET)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["expires_in"] == sts.token_lifetime and body["scope"] == "backend-api:read backend-api:write"
    claims = decode_issued(sts, body["access_token"])
    assert claims["iss"] == sts.issuer and claims["aud"] == "backend" and claims["sub"] == "rig-basic"
    assert claims["scp"] == ["backend-api:read", "backend-api:write"] and claims["client_id"] == "mcp-filter"
    (call,) = sts.calls_with_subject_token(subject)
    assert (call.auth_method, call.client_id, call.sub, call.resource) == (
        "client_secret_basic", "mcp-filter", "rig-basic", "http://b/")


def test_exchange_with_post_auth(sts: SecurityTokenService, idp: IdentityProvider) -> None:
    subject = idp.mint(sub="rig-post", jti=new_marker())
    form = _form(subject, client_id="mcp-filter", client_secret=SECRET, extra_param="x")
    assert _exchange(sts, form).status_code == 200
    (call,) = sts.calls_with_subject_token(subject)
    assert (call.auth_method, call.extra) == ("client_secret_post", {"extra_param": "x"})


def test_public_client_without_secret(sts: SecurityTokenService, idp: IdentityProvider) -> None:
    subject = idp.mint(sub="rig-public", jti=new_marker())
    assert _exchange(sts, _form(subject, client_id="public-client")).status_code == 200
    assert _exchange(sts, _form(subject)).json()["error"] == "invalid_client"


@pytest.mark.parametrize("headers, extra", [
    ({"authorization": _basic("mcp-filter", "wrong")}, {}),
    ({"authorization": _basic("nobody", SECRET)}, {}),
    # Not url-encoded: '+' and '%' decode to something else (RFC 6749 §2.3.1).
    ({"authorization": "Basic " + base64.b64encode(f"mcp-filter:{SECRET}".encode()).decode()}, {}),
    ({}, {"client_id": "mcp-filter", "client_secret": "wrong"}),
    ({}, {}),
], ids=["wrong-secret", "unknown-client", "not-urlencoded", "post-wrong-secret", "no-credentials"])
def test_bad_client_credentials_are_invalid_client(sts: SecurityTokenService, idp: IdentityProvider,
                                                   headers: dict[str, str], extra: dict[str, str]) -> None:
    response = _exchange(sts, _form(idp.mint(), **extra), headers)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("make_subject, expected", [
    (lambda idp: idp.mint(exp=int(time.time()) - 10), "invalid_grant"),
    (lambda idp: idp.mint(aud="http://127.0.0.1:2/other"), "invalid_grant"),
    (lambda idp: idp.mint(iss="http://127.0.0.1:3"), "invalid_grant"),
    (lambda idp: idp.mint(key=new_rsa_key()), "invalid_grant"),
    (lambda idp: "not-a-jwt", "invalid_grant"),
], ids=["expired", "wrong-audience", "wrong-issuer", "forged-signature", "garbage"])
def test_bad_subject_token_is_invalid_grant(sts: SecurityTokenService, idp: IdentityProvider,
                                            make_subject: Callable[[IdentityProvider], str], expected: str) -> None:
    response = _exchange(sts, _form(make_subject(idp)), {"authorization": _basic("mcp-filter", SECRET)})
    assert response.status_code == 400 and response.json()["error"] == expected


@pytest.mark.parametrize("overrides, expected", [
    ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ({"subject_token_type": None}, "invalid_request"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request"),
    ({"audience": "other"}, "invalid_target"),
    ({"scope": "admin"}, "invalid_scope"),
])
def test_bad_request_parameters(sts: SecurityTokenService, idp: IdentityProvider,
                                overrides: dict[str, Any], expected: str) -> None:
    response = _exchange(sts, _form(idp.mint(), **overrides), {"authorization": _basic("mcp-filter", SECRET)})
    assert response.status_code == 400 and response.json()["error"] == expected


@pytest.mark.parametrize("mode, fault, status", [
    ("fail", StsFault.fail(), 500), ("unavailable", StsFault.unavailable(), 503),
    ("gateway_timeout", StsFault.gateway_timeout(), 504), ("reject", StsFault.reject(), 400),
    ("garbage", StsFault.garbage(), 200), ("no_access_token", StsFault.no_access_token(), 200),
], ids=["fail-500", "unavailable-503", "gateway_timeout-504", "reject-400", "garbage-200", "no_access_token-200"])
def test_failure_modes(sts: SecurityTokenService, idp: IdentityProvider, mode: str, fault: StsFault,
                       status: int) -> None:
    sts.set_fault(fault)
    response = _exchange(sts, _form(idp.mint()), {"authorization": _basic("mcp-filter", SECRET)})
    assert response.status_code == status
    if mode == "garbage":
        with pytest.raises(ValueError):
            response.json()
    elif mode == "no_access_token":
        assert "access_token" not in response.json()


def test_slow_and_non_bearer_modes(sts: SecurityTokenService, idp: IdentityProvider) -> None:
    sts.set_fault(StsFault.slow(3))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sts.token_endpoint, data=_form(idp.mint()), timeout=1,
                   headers={"authorization": _basic("mcp-filter", SECRET)})
    sts.set_fault(StsFault.non_bearer())
    response = _exchange(sts, _form(idp.mint()), {"authorization": _basic("mcp-filter", SECRET)})
    assert response.status_code == 200 and response.json()["token_type"] == "N_A"
    sts.set_fault(StsFault.oversized())
    response = _exchange(sts, _form(idp.mint()), {"authorization": _basic("mcp-filter", SECRET)})
    assert response.status_code == 200 and len(response.content) > 256 * 1024 and response.json()["access_token"]


def test_stopped_sts_refuses_connections(idp: IdentityProvider) -> None:
    sts = SecurityTokenService(idp, subject_audiences=[RESOURCE]).start()
    sts.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.post(sts.token_endpoint, data={}, timeout=2)
    sts.start()
    try:
        assert httpx.get(sts.jwks_uri, timeout=2).status_code == 200
    finally:
        sts.stop()


def _google_form(subject: str, **overrides: Any) -> dict[str, str]:
    google = {"subject_token_type": ID_TOKEN_TYPE, "audience": GOOGLE_AUDIENCE, "scope": " ".join(GOOGLE_SCOPES)}
    return _form(subject, **{**google, **overrides})


def test_google_flavour_issues_opaque_token_and_tokeninfo_resolves_it(sts: SecurityTokenService,
                                                                      idp: IdentityProvider) -> None:
    subject = idp.mint(sub="rig-google", jti=new_marker())
    response = _exchange(sts, _google_form(subject, options='{"userProject":"123"}'), path="/v1/token")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["access_token"].startswith("ya29.")
    assert {k: v for k, v in body.items() if k != "access_token"} == {
        "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer", "expires_in": 3599}
    info = httpx.get(sts.tokeninfo_url, params={"access_token": body["access_token"]}, timeout=5).json()
    assert info["sub"] == "rig-google" and info["scope"] == " ".join(GOOGLE_SCOPES)
    assert httpx.get(sts.tokeninfo_url, params={"access_token": "ya29.nope"}, timeout=5).status_code == 400
    (call,) = sts.calls_with_subject_token(subject)
    assert (call.auth_method, call.extra) == ("none", {"options": '{"userProject":"123"}'})


@pytest.mark.parametrize("overrides, expected", [
    ({"subject_token_type": ACCESS_TOKEN_TYPE}, "invalid_request"),
    ({"audience": "backend"}, "invalid_target"),
    ({"scope": "https://www.googleapis.com/auth/drive"}, "invalid_scope"),
    ({"options": "not json"}, "invalid_request"),
])
def test_google_flavour_errors(sts: SecurityTokenService, idp: IdentityProvider, overrides: dict[str, Any],
                               expected: str) -> None:
    response = _exchange(sts, _google_form(idp.mint(), **overrides), path="/v1/token")
    assert response.status_code == 400
    assert set(response.json()) == {"error", "error_description"} and response.json()["error"] == expected


def test_google_flavour_rejects_foreign_id_token(sts: SecurityTokenService, idp: IdentityProvider) -> None:
    response = _exchange(sts, _google_form(idp.mint(aud="someone-else")), path="/v1/token")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_backend_accepts_only_sts_tokens(sts: SecurityTokenService, idp: IdentityProvider) -> None:
    subject = idp.mint(sub="rig-backend", jti=new_marker())
    backend_token = _exchange(sts, _form(subject), {"authorization": _basic("mcp-filter", SECRET)}).json()[
        "access_token"]
    wrong_audience = _exchange(sts, _form(idp.mint(), audience="backend", scope="backend-api:write"),
                               {"authorization": _basic("mcp-filter", SECRET)}).json()["access_token"]
    with BackendApi(sts) as backend:
        ok = httpx.get(backend.whoami_url, headers={"authorization": f"Bearer {backend_token}"}, timeout=10)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"user": "rig-backend", "audience": "backend",
                             "scopes": ["backend-api:read"], "token_kind": "jwt"}
        for token in (subject, wrong_audience, jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")):
            refused = httpx.get(backend.whoami_url, headers={"authorization": f"Bearer {token}"}, timeout=10)
            assert refused.status_code == 401
        assert httpx.get(backend.whoami_url, timeout=10).status_code == 401
        assert [c.user for c in backend.calls if c.status == 200] == ["rig-backend"]


def test_google_backend_resolves_opaque_token(sts: SecurityTokenService, idp: IdentityProvider) -> None:
    subject = idp.mint(sub="rig-bq", jti=new_marker())
    token = _exchange(sts, _google_form(subject), path="/v1/token").json()["access_token"]
    with BackendApi(sts, profile="google") as backend:
        url = f"{backend.url}/bigquery/v2/projects/p/queries"
        answer = httpx.post(url, json={"query": "SELECT 1"}, headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["rows"] == [{"f": [{"v": "rig-bq"}]}]
        assert httpx.post(url, headers={"authorization": "Bearer ya29.unknown"}, timeout=10).status_code == 401


def test_mcp_tool_forwards_its_authorization_to_the_backend(sts: SecurityTokenService, idp: IdentityProvider,
                                                           upstream: McpUpstream) -> None:
    """Directly against the MCP server (no Envoy): query_backend sends what the server received."""
    subject = idp.mint(sub="rig-tool", jti=new_marker())
    backend_token = _exchange(sts, _form(subject), {"authorization": _basic("mcp-filter", SECRET)}).json()[
        "access_token"]

    async def call(token: str, url: str) -> Any:
        async with mcp_session(f"{upstream.url}/mcp", {"authorization": f"Bearer {token}"}) as client:
            return (await client.call_tool("query_backend", {"url": url})).structured_content

    with BackendApi(sts) as backend:
        assert anyio.run(call, backend_token, backend.whoami_url) == {
            "status": 200, "authorization_sent": True,
            "body": {"user": "rig-tool", "audience": "backend", "scopes": ["backend-api:read"], "token_kind": "jwt"}}
        refused = anyio.run(call, subject, backend.whoami_url)
        assert refused["status"] == 401 and refused["authorization_sent"] is True
