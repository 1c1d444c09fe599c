"""envoy/google-sts.yaml: the caller's OIDC ID token is exchanged at a Google-shaped STS
(/v1/token, no client authentication) for an opaque `ya29.` access token, which the MCP server's
BigQuery-like backend resolves back to the user.

The file is used as shipped except for ports and the google_sts cluster, which the harness moves
from sts.googleapis.com:443 (TLS) to the local test STS (plain HTTP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from harness import BackendApi, Envoy, IdentityProvider, McpUpstream, SecurityTokenService, free_port, prm_url
from harness.checks import bearer, json_body, new_marker, token_fingerprint
from harness.exchange import (
    GOOGLE,
    ExchangeProfile,
    google_envoy_options,
    google_plugin_config,
    mint,
    upstream_authorization,
)
from harness.mcp_client import mcp_session
from harness.rfc8693 import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from harness.sts import GOOGLE_AUDIENCE, GOOGLE_SCOPES

TIMEOUT = 10


pytestmark = pytest.mark.usefixtures("sts_restored")


@pytest.fixture(scope="module")
def exchange() -> ExchangeProfile:
    # Google's STS needs no client: the workload identity pool provider trusts the IdP's issuer
    # and accepts ID tokens for the MCP resource. The backend resolves opaque ya29. tokens.
    return GOOGLE


def test_id_token_exchanged_for_google_token_end_to_end(envoy: Envoy, idp: IdentityProvider,
                                                        sts: SecurityTokenService, backend: BackendApi,
                                                        upstream: McpUpstream) -> None:
    token = mint(idp, "tg-erin", email="tg-erin@example.com")
    marker = new_marker()
    query_url = f"{backend.url}/bigquery/v2/projects/123456789012/queries"

    async def session() -> Any:
        async with mcp_session(f"{envoy.url}/mcp", bearer(token, marker), timeout=TIMEOUT) as client:
            return (await client.call_tool("query_backend", {"url": query_url, "method": "POST"})).structured_content

    answer = anyio.run(session)

    assert answer["status"] == 200, answer
    assert answer["body"]["rows"] == [{"f": [{"v": "tg-erin"}]}]
    assert answer["body"]["token_kind"] == "google"
    calls = [c for c in sts.calls_with_subject_token(token) if c.ok]
    assert 1 <= len(calls) <= 2, calls
    call = calls[0]
    assert call.path == "/v1/token"
    assert (call.auth_method, call.client_id) == ("none", None)  # Google's STS takes no client
    assert call.grant_type == TOKEN_EXCHANGE_GRANT
    assert (call.subject_token_type, call.requested_token_type) == (ID_TOKEN_TYPE, ACCESS_TOKEN_TYPE)
    assert (call.audience, call.scopes) == (GOOGLE_AUDIENCE, list(GOOGLE_SCOPES))
    assert (call.resource, call.extra) == (None, {})
    seen = upstream_authorization(upstream, marker)
    issued = {c.issued_token for c in calls}
    assert seen and all(v.startswith("Bearer ya29.") and v.removeprefix("Bearer ") in issued for v in seen), seen
    assert [c.user for c in backend.calls if c.status == 200][-1] == "tg-erin"


def test_google_token_cached_for_its_lifetime(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService) -> None:
    token = mint(idp, "tg-cached")
    with httpx.Client(base_url=envoy.url, timeout=TIMEOUT) as client:
        for _ in range(5):
            assert client.get("/echo", headers=bearer(token)).status_code == 200
    assert len(sts.calls_with_subject_token(token)) == 1


def test_google_invalid_grant_is_401_challenge(http: httpx.Client, envoy: Envoy, envoy_port: int,
                                               idp: IdentityProvider, sts: SecurityTokenService,
                                               upstream: McpUpstream) -> None:
    # The pool provider no longer lists the MCP resource as an allowed audience: Google answers
    # 400 {"error":"invalid_grant","error_description":"The audience in ID Token ..."}.
    sts.google_subject_audiences = ["https://someone-else.example.com"]
    token, marker = mint(idp, "tg-foreign"), new_marker()

    response = http.get("/echo", headers=bearer(token, marker))

    assert response.status_code == 401, response.text
    assert (call := sts.calls_with_subject_token(token)[0]).error == "invalid_grant", call
    body = json_body(response)
    assert (body["error"], body["error_description"]) == ("invalid_token", "token exchange rejected the token")
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{prm_url(envoy_port)}", scope="mcp:tools:call", error="invalid_token", '
        'error_description="token exchange rejected the token"')
    assert upstream.seen(marker) == []
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["reason"]) == ("deny", "exchange_rejected")


def test_workforce_pool_options_are_sent(make_envoy: Callable[..., Envoy], idp: IdentityProvider,
                                         sts: SecurityTokenService, upstream: McpUpstream) -> None:
    """extra_params (here Google's `options` for workforce pools) go into the form as given."""
    port = free_port()
    sts.subject_audiences.append(f"http://127.0.0.1:{port}/mcp")
    config = google_plugin_config(envoy_port=port, idp_port=idp.port, sts_port=sts.port)
    config["token_exchange"]["extra_params"] = {"options": '{"userProject":"123456789012"}'}
    envoy = make_envoy(config, idp_port=idp.port, listener_port=port, **google_envoy_options(sts.port)).start()
    token, marker = mint(idp, "tg-workforce", aud=f"http://127.0.0.1:{port}/mcp"), new_marker()

    assert httpx.get(f"{envoy.url}/echo", headers=bearer(token, marker), timeout=TIMEOUT).status_code == 200

    (call,) = sts.calls_with_subject_token(token)
    assert call.extra == {"options": '{"userProject":"123456789012"}'}
    assert upstream_authorization(upstream, marker) == [f"Bearer {call.issued_token}"]


def test_no_google_token_in_envoy_log(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                      sts: SecurityTokenService) -> None:
    last = mint(idp, "tg-log")
    assert http.get("/echo", headers=bearer(last)).status_code == 200
    envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(last))
    log = envoy.log_text()
    for token in [*idp.minted, *sts.issued]:
        assert token not in log
        assert token.rsplit(".", 1)[-1] not in log
