"""How the filter authenticates at the STS, where the secret comes from, and what it asks for.

Each test starts its own Envoy from envoy/okta-same-idp.yaml with a variant of its
token_exchange block. The secret has characters that RFC 6749 §2.3.1's url-encoding changes,
so a filter that skipped the encoding would be refused by the STS. The last test scans every
Envoy's log for the secret and the tokens, so it stays last.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, SecurityTokenService, free_port, resource_url
from harness.checks import bearer, json_body, new_marker, token_fingerprint
from harness.exchange import SECRET_ENV, mint, okta_envoy_options, okta_plugin_config, upstream_authorization
from harness.mcp_upstream import header_values
from harness.rfc8693 import JWT_TOKEN_TYPE
from harness.sts import decode_issued

SECRET = "p@ss: w/rd+%&=ü"
TIMEOUT = 10


class Stack:
    """An IdP, an STS trusting it, and a factory of Envoys from envoy/okta-same-idp.yaml. Each
    Envoy has its own port, so its own resource URL: the STS accepts subject tokens for any of
    them, and `token()` mints one for a given Envoy."""

    def __init__(self, idp: IdentityProvider, sts: SecurityTokenService,
                 make_envoy: Callable[..., Envoy]) -> None:
        self.idp, self.sts, self._make_envoy = idp, sts, make_envoy
        self.envoys: list[Envoy] = []

    def envoy(self, change: Callable[[dict[str, Any]], None] | None = None, *, start: bool = True,
              **options: Any) -> Envoy:
        port = free_port()
        self.sts.subject_audiences.append(resource_url(port))
        config = okta_plugin_config(envoy_port=port, idp_port=self.idp.port, sts_port=self.sts.port)
        if change:
            change(config["token_exchange"])
        envoy = self._make_envoy(config, idp_port=self.idp.port, listener_port=port,
                                 **{**okta_envoy_options(self.sts.port, SECRET), **options})
        self.envoys.append(envoy)
        return envoy.start() if start else envoy

    def token(self, envoy: Envoy, sub: str) -> str:
        return mint(self.idp, sub, aud=resource_url(envoy.listener_port))


@pytest.fixture(scope="module")
def stack(make_idp: Callable[..., IdentityProvider], make_sts: Callable[..., SecurityTokenService],
          make_envoy: Callable[..., Envoy]) -> Stack:
    idp = make_idp("")  # tokens get their audience from Stack.token()
    sts = make_sts(idp, subject_audiences=[],
                   clients={"mcp-filter": SECRET, "public-filter": None})
    return Stack(idp, sts, make_envoy)


def _request(envoy: Envoy, token: str, marker: str | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{envoy.url}/echo", headers={**bearer(token, marker), **(headers or {})}, timeout=TIMEOUT)


# Both client authentication methods, with the secret from Envoy's process environment
# (host_env_keys, as the shipped file does) and given in the Envoy configuration (key_values).
SOURCES: dict[str, dict[str, Any]] = {
    "host_env_keys": {"env": {SECRET_ENV: SECRET}},
    "key_values": {"env": {SECRET_ENV: None}, "vm_env": {"key_values": {SECRET_ENV: SECRET}}},
}


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_secret_from_environment(stack: Stack, upstream: McpUpstream, method: str, source: str) -> None:
    def use_method(exchange: dict[str, Any]) -> None:
        exchange["client_auth"]["method"] = method

    envoy = stack.envoy(use_method, **SOURCES[source])
    token, marker = stack.token(envoy, f"tc-{method}-{source}"), new_marker()

    response = _request(envoy, token, marker)

    assert response.status_code == 200, response.text
    (call,) = stack.sts.calls_with_subject_token(token)
    assert (call.auth_method, call.client_id, call.status) == (method, "mcp-filter", 200)
    assert upstream_authorization(upstream, marker) == [f"Bearer {call.issued_token}"]


def test_public_client_sends_no_secret(stack: Stack) -> None:
    def public(exchange: dict[str, Any]) -> None:
        exchange["client_auth"] = {"method": "none", "client_id": "public-filter"}

    envoy = stack.envoy(public, env={SECRET_ENV: None}, vm_env={})  # no secret anywhere
    token = stack.token(envoy, "tc-public")

    assert _request(envoy, token).status_code == 200
    (call,) = stack.sts.calls_with_subject_token(token)
    assert (call.auth_method, call.client_id) == ("none", "public-filter")


def test_wrong_secret_is_403_refused(stack: Stack, upstream: McpUpstream) -> None:
    envoy = stack.envoy(env={SECRET_ENV: "not-the-secret"})
    token, marker = stack.token(envoy, "tc-wrong-secret"), new_marker()

    response = _request(envoy, token, marker)

    assert response.status_code == 403, response.text
    body = json_body(response)
    assert (body["error"], body["error_description"]) == ("access_denied", "token exchange refused (invalid_client)")
    (call,) = stack.sts.calls_with_subject_token(token)
    assert (call.status, call.error) == (401, "invalid_client")
    assert upstream.seen(marker) == []
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["status"], line["reason"]) == ("deny", 403, "exchange_refused")
    envoy.wait_for_counter("mcp_auth.denied.exchange_refused", 1)
    assert "not-the-secret" not in envoy.log_text()


@pytest.mark.parametrize("options", [
    {"env": {SECRET_ENV: None}},  # the file passes STS_CLIENT_SECRET in, but Envoy has none
    {"env": {SECRET_ENV: SECRET}, "vm_env": {}},  # Envoy has it, but nothing passes it into the VM
], ids=["unset-in-envoy", "not-passed-to-vm"])
def test_missing_secret_refuses_to_start(stack: Stack, options: dict[str, Any]) -> None:
    envoy = stack.envoy(start=False, **options)

    assert envoy.run_expecting_exit(timeout=30) != 0
    expected = "mcp_auth_filter: invalid configuration: token_exchange.client_auth.client_secret_env: "
    lines = [line for line in envoy.log_text().splitlines() if expected in line]
    assert lines, envoy.log_tail()
    assert SECRET not in envoy.log_text()


def test_request_options_and_custom_upstream_header(stack: Stack, upstream: McpUpstream) -> None:
    backend_resource = "http://127.0.0.1:9/api/"

    def everything(exchange: dict[str, Any]) -> None:
        exchange.update(
            scopes=["backend-api:read", "backend-api:write"],
            resource=backend_resource,
            subject_token_type="jwt",
            requested_token_type=JWT_TOKEN_TYPE,  # a full URN is taken as it is
            extra_params={"tenant": "acme", "options": '{"userProject":"123"}'},
            upstream_header={"name": "x-backend-token", "prefix": ""},
        )

    envoy = stack.envoy(everything)
    token, marker = stack.token(envoy, "tc-options"), new_marker()

    response = _request(envoy, token, marker, headers={"x-backend-token": "forged-by-client"})

    assert response.status_code == 200, response.text
    (call,) = stack.sts.calls_with_subject_token(token)
    assert call.scopes == ["backend-api:read", "backend-api:write"]
    assert call.resource == backend_resource
    assert (call.subject_token_type, call.requested_token_type) == (JWT_TOKEN_TYPE, JWT_TOKEN_TYPE)
    assert call.extra == {"tenant": "acme", "options": '{"userProject":"123"}'}
    (entry,) = upstream.seen(marker)
    assert header_values(entry, "x-backend-token") == [call.issued_token]
    assert header_values(entry, "authorization") == []  # the client's token is still removed
    assert decode_issued(stack.sts, call.issued_token)["scp"] == ["backend-api:read", "backend-api:write"]


def test_shipped_file_runs_unchanged_apart_from_ports(stack: Stack) -> None:
    """The file's own configuration (only ports moved) with the secret passed exactly as the file
    says: Envoy's environment, host_env_keys."""
    envoy = stack.envoy()
    assert envoy.config_path.read_text().count("host_env_keys") == 1
    assert SECRET not in envoy.config_path.read_text()
    token = stack.token(envoy, "tc-shipped")
    assert _request(envoy, token).status_code == 200
    assert stack.sts.calls_with_subject_token(token)[0].auth_method == "client_secret_basic"



def test_no_secret_or_token_in_any_envoy_log(stack: Stack) -> None:
    assert len(stack.envoys) >= 8 and stack.sts.issued
    for envoy in stack.envoys:
        log = envoy.log_text()
        assert "mcp_auth_filter" in log  # the log really was captured
        assert SECRET not in log and urllib.parse.quote_plus(SECRET) not in log
        for token in [*stack.idp.minted, *stack.sts.issued]:
            assert token not in log
            assert token.rsplit(".", 1)[-1] not in log, "a token's signature appears in Envoy's log"
