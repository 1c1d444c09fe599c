"""Microsoft Entra ID's on-behalf-of grant (`token_exchange.grant: jwt_bearer_obo`): the filter
asks Entra's v2.0 token endpoint, with the jwt-bearer grant and the client's token as assertion,
for a token of the backend app, and sends that upstream; Entra's refusals become the answers
the client can act on, and the log names Entra's AADSTS codes, never its descriptions.

The stack: envoy/okta-same-idp.yaml's Envoy (its `sts` cluster, the secret passed into the VM)
with the exchange turned into on-behalf-of at the test STS's Entra endpoint (harness/entra_obo.py),
client_secret_post as Entra documents. Every test sends a token of its own, so no cached
exchange hides Entra's behaviour. The last test scans the logs, so it stays last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, free_port, prm_url, wait_until
from harness.checks import bearer, json_body, new_marker, token_fingerprint
from harness.entra_obo import (
    BACKEND_DEFAULT_SCOPE,
    ENTRA_ERRORS,
    JWT_BEARER_GRANT,
    EntraTokenService,
    decode_obo,
    entra_fault,
)
from harness.envoy import AUDIT_MARK
from harness.exchange import OKTA, mint, okta_plugin_config, upstream_authorization
from harness.sts import DEFAULT_CLIENT_ID
from harness.sts_fault import StsFault

SECRET = "entra-client-secret-for-obo-tests"
MCP_APP = "api://mcp-server"  # the MCP server's app ID URI: the audience of the client's tokens
OTHER_APP = "api://another-mcp-app"  # an audience the filter accepts but Entra's app registration does not

REJECTED = ("invalid_token", "token exchange rejected the token")

pytestmark = pytest.mark.usefixtures("vm_never_fails", "entra_restored")


def obo_config(*, envoy_port: int, idp_port: int, sts: EntraTokenService,
               method: str = "client_secret_post") -> dict[str, Any]:
    """envoy/okta-same-idp.yaml's configuration with its exchange made Entra on-behalf-of (and
    without its MCP policy, whose per-tool scopes are Okta's)."""
    config = okta_plugin_config(envoy_port=envoy_port, idp_port=idp_port, sts_port=sts.port)
    config.pop("mcp")
    (provider,) = config["providers"].values()
    provider["audiences"] = [MCP_APP, OTHER_APP]
    exchange = config["token_exchange"]
    for name in ("audience", "subject_token_type", "requested_token_type"):
        exchange.pop(name)
    exchange["grant"] = "jwt_bearer_obo"
    exchange["token_endpoint"]["uri"] = sts.entra_token_endpoint
    exchange["scopes"] = [BACKEND_DEFAULT_SCOPE]
    exchange["client_auth"]["method"] = method
    return config


@pytest.fixture(scope="module")
def sts(idp: IdentityProvider) -> Iterator[EntraTokenService]:
    with EntraTokenService(idp, subject_audiences=[MCP_APP], clients={DEFAULT_CLIENT_ID: SECRET}) as service:
        yield service


@pytest.fixture
def entra_restored(sts: EntraTokenService) -> Iterator[EntraTokenService]:
    scopes = sts.entra_scopes
    yield sts
    sts.start()
    sts.clear_fault()
    sts.entra_scopes = scopes
    sts.mfa_required.clear()


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider, sts: EntraTokenService) -> dict[str, Any]:
    return obo_config(envoy_port=envoy_port, idp_port=idp.port, sts=sts)


@pytest.fixture(scope="module")
def envoy_options(sts: EntraTokenService) -> dict[str, Any]:
    return OKTA.envoy_options(sts.port, SECRET)


def _another_envoy(make_envoy: Callable[..., Envoy], idp: IdentityProvider, sts: EntraTokenService, *,
                   method: str = "client_secret_post", secret: str = SECRET) -> Envoy:
    port = free_port()
    config = obo_config(envoy_port=port, idp_port=idp.port, sts=sts, method=method)
    return make_envoy(config, idp_port=idp.port, listener_port=port, **OKTA.envoy_options(sts.port, secret)).start()


def _token(idp: IdentityProvider, sub: str, aud: str = MCP_APP) -> str:
    """A token for the MCP app that no other test sends."""
    return mint(idp, sub, aud=aud)


def _client(envoy: Envoy) -> httpx.Client:
    return httpx.Client(base_url=envoy.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def _expect_denial(http: httpx.Client, envoy: Envoy, upstream: McpUpstream, token: str, *, status: int,
                   body: tuple[str, str], reason: str) -> httpx.Response:
    """One request: refused as described, not forwarded, audited."""
    marker = new_marker()
    response = http.get("/echo", headers=bearer(token, marker))
    assert response.status_code == status, response.text
    answer = json_body(response)
    assert (answer.get("error"), answer.get("error_description")) == body, answer
    assert upstream.seen(marker) == [], "the request was forwarded without a backend token"
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["status"], line["reason"]) == ("deny", status, reason), line
    return response


def _wait_logged(envoy: Envoy, text: str) -> None:
    wait_until(lambda: text in envoy.log_text(), 5, what=f"{text!r} in Envoy's log")


# ---- success ----------------------------------------------------------------------------------

def test_on_behalf_of_token_goes_upstream_and_is_cached(envoy: Envoy, idp: IdentityProvider,
                                                        sts: EntraTokenService, upstream: McpUpstream) -> None:
    token, marker = _token(idp, "obo-alice"), new_marker()

    with _client(envoy) as client:
        first = client.get("/echo", headers=bearer(token, marker))
        assert first.status_code == 200, first.text
        (call,) = sts.calls_with_subject_token(token)
        # The same token again, on new connections (both workers): the exchanged token is reused.
        assert [client.get("/echo", headers=bearer(token, marker)).status_code for _ in range(5)] == [200] * 5

    assert len(sts.calls_with_subject_token(token)) == 1, "a cached on-behalf-of token was asked for again"
    assert upstream_authorization(upstream, marker) == [f"Bearer {call.issued_token}"] * 6
    assert (call.grant_type, call.scopes) == (JWT_BEARER_GRANT, [BACKEND_DEFAULT_SCOPE])
    assert call.extra == {"assertion": token, "requested_token_use": "on_behalf_of"}
    assert (call.audience, call.resource, call.subject_token_type, call.requested_token_type) == (None,) * 4
    assert (call.auth_method, call.client_id) == ("client_secret_post", DEFAULT_CLIENT_ID)
    assert call.content_type == "application/x-www-form-urlencoded"
    claims = decode_obo(sts, call.issued_token)
    assert (claims["sub"], claims["azp"], claims["scp"]) == ("obo-alice", DEFAULT_CLIENT_ID, "Data.Read")
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["exchange"]) == ("allow", "miss"), line


def test_client_secret_basic(make_envoy: Callable[..., Envoy], idp: IdentityProvider, sts: EntraTokenService,
                             upstream: McpUpstream) -> None:
    envoy = _another_envoy(make_envoy, idp, sts, method="client_secret_basic")
    token, marker = _token(idp, "obo-basic"), new_marker()
    with _client(envoy) as client:
        assert client.get("/echo", headers=bearer(token, marker)).status_code == 200
    (call,) = sts.calls_with_subject_token(token)
    assert (call.auth_method, call.client_id) == ("client_secret_basic", DEFAULT_CLIENT_ID)
    assert "client_secret" not in call.extra
    assert upstream_authorization(upstream, marker) == [f"Bearer {call.issued_token}"]


# ---- refusals the client must act on: 401, sign in again ------------------------------------------

def test_invalid_grant_is_401_with_challenge(http: httpx.Client, envoy: Envoy, envoy_port: int,
                                             idp: IdentityProvider, sts: EntraTokenService,
                                             upstream: McpUpstream) -> None:
    """A token the filter accepts but Entra will not take as assertion (another app's)."""
    token = _token(idp, "obo-foreign", aud=OTHER_APP)
    response = _expect_denial(http, envoy, upstream, token, status=401, body=REJECTED, reason="exchange_rejected")
    assert response.headers.get_list("www-authenticate") == [
        f'Bearer resource_metadata="{prm_url(envoy_port)}", scope="mcp:tools:call", error="invalid_token", '
        'error_description="token exchange rejected the token"']
    (call,) = sts.calls_with_subject_token(token)
    assert (call.status, call.error) == (400, "invalid_grant")
    _wait_logged(envoy, "token exchange failed: exchange_rejected (STS status 400: invalid_grant (AADSTS50013))")


def test_interaction_required_is_401_with_challenge(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                                    sts: EntraTokenService, upstream: McpUpstream) -> None:
    """Conditional access wants MFA: the client must sign the user in again, interactively."""
    sts.mfa_required.add("obo-needs-mfa")
    token = _token(idp, "obo-needs-mfa")
    response = _expect_denial(http, envoy, upstream, token, status=401, body=REJECTED, reason="exchange_rejected")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    (call,) = sts.calls_with_subject_token(token)
    assert (call.status, call.error) == (400, "interaction_required")
    _wait_logged(envoy, "exchange_rejected (STS status 400: interaction_required (AADSTS50076))")


# ---- refusals about the filter's standing at Entra: 403, and Entra's outages -----------------------

def test_invalid_scope_is_403(http: httpx.Client, envoy: Envoy, idp: IdentityProvider, sts: EntraTokenService,
                              upstream: McpUpstream) -> None:
    sts.entra_scopes = ("api://some-other-backend/.default",)
    token = _token(idp, "obo-scope")
    response = _expect_denial(http, envoy, upstream, token, status=403, reason="exchange_refused",
                              body=("access_denied", "token exchange refused (invalid_scope)"))
    assert 'error="invalid_token"' not in response.headers.get("www-authenticate", "")
    _wait_logged(envoy, "exchange_refused (STS status 400: invalid_scope (AADSTS70011))")


def test_wrong_client_secret_is_403_invalid_client(make_envoy: Callable[..., Envoy], idp: IdentityProvider,
                                                   sts: EntraTokenService, upstream: McpUpstream) -> None:
    envoy = _another_envoy(make_envoy, idp, sts, secret="not-the-entra-secret")
    token = _token(idp, "obo-wrong-secret")
    with _client(envoy) as client:
        _expect_denial(client, envoy, upstream, token, status=403, reason="exchange_refused",
                       body=("access_denied", "token exchange refused (invalid_client)"))
    _wait_logged(envoy, "exchange_refused (STS status 401: invalid_client (AADSTS7000215))")
    assert "not-the-entra-secret" not in envoy.log_text()


@pytest.mark.parametrize("fault, status, body, reason, logged", [
    (entra_fault(700016), 403, ("access_denied", "token exchange refused (unauthorized_client)"),
     "exchange_refused", "STS status 400: unauthorized_client (AADSTS700016)"),
    (entra_fault(70003), 403, ("access_denied", "token exchange refused (unsupported_grant_type)"),
     "exchange_refused", "STS status 400: unsupported_grant_type (AADSTS70003)"),
    (entra_fault(50013), 401, REJECTED, "exchange_rejected", "STS status 400: invalid_grant (AADSTS50013)"),
    (StsFault(answer=(500, {"error": "server_error", "error_codes": [50000]})), 502,
     ("temporarily_unavailable", "token exchange failed"), "exchange_failed", "STS status 500"),
    (StsFault(answer=(503, {"error": "temporarily_unavailable", "error_codes": [50196]})), 503,
     ("temporarily_unavailable", "token exchange unavailable"), "exchange_unavailable", "STS status 503"),
], ids=["unauthorized_client", "unsupported_grant_type", "invalid_grant", "server_error", "unavailable"])
def test_entra_answer_is_mapped(http: httpx.Client, envoy: Envoy, idp: IdentityProvider, sts: EntraTokenService,
                                upstream: McpUpstream, fault: StsFault, status: int, body: tuple[str, str],
                                reason: str, logged: str) -> None:
    sts.set_fault(fault)
    token = _token(idp, f"obo-mapped-{reason}")
    _expect_denial(http, envoy, upstream, token, status=status, body=body, reason=reason)
    _wait_logged(envoy, f"token exchange failed: {reason} ({logged}")


# ---- last: what the logs show -------------------------------------------------------------------

def test_log_names_aadsts_codes_never_descriptions_tokens_or_secret(envoys_made: list[Envoy],
                                                                    idp: IdentityProvider,
                                                                    sts: EntraTokenService) -> None:
    logs = "\n".join(e.log_text() for e in envoys_made)
    assert AUDIT_MARK in logs
    for code in (50013, 50076, 70011, 7000215, 700016):
        assert f"AADSTS{code})" in logs, f"AADSTS{code} is not named in the log"
    for _, _, description in ENTRA_ERRORS.values():
        assert description[:40] not in logs, "Entra's error_description reached the log"
    assert "Trace ID" not in logs and "Correlation ID" not in logs
    for token in [*idp.minted, *sts.issued]:
        assert token not in logs
        assert token.rsplit(".", 1)[-1] not in logs, "a token's signature appears in Envoy's log"
    assert SECRET not in logs
