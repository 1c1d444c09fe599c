"""Identity headers forged with underscores (security review, issue 9, item 4).

A CGI-style server (WSGI, PHP, Rack) reads `x_mcp_user_sub` and `X-MCP-USER-SUB` as the same
variable as `x-mcp-user-sub` (HTTP_X_MCP_USER_SUB), so a client that sends `x_mcp_user_sub: admin`
beside the filter's real header makes the upstream read "admin,alice". Two defences:
  - every shipped Envoy configuration refuses header names with underscores
    (`headers_with_underscores_action: REJECT_REQUEST`: HTTP/1 answers 400);
  - the filter itself removes every spelling of each header it sets (claim headers, the
    exchanged-token header), tested here with that Envoy setting patched to ALLOW.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import Envoy, IdentityProvider, McpUpstream, SecurityTokenService, free_port, standard_plugin_config
from harness.checks import new_marker
from harness.envoy import REPO, example_hcm, http_connection_manager
from harness.exchange import OKTA, mint
from harness.faults import RawResponse, raw_request
from harness.mcp_upstream import MARKER_HEADER, header_values

SECRET = "client-secret-for-underscore-tests"
BACKEND_HEADER = "x-backend-token"  # the exchange below puts the backend token here
# Spellings a CGI-style server maps onto x-mcp-user-sub.
SUB_SPELLINGS = [b"x_mcp_user_sub", b"X_MCP_USER_SUB", b"x-mcp_user-sub", b"X_Mcp-User_Sub"]

SHIPPED = [*sorted((REPO / "envoy").glob("*.yaml")), REPO / "deploy" / "compose" / "envoy.yaml",
           REPO / "deploy" / "kubernetes" / "envoy-configmap.yaml"]

pytestmark = pytest.mark.usefixtures("vm_never_fails")


def _envoy_document(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if document.get("kind") == "ConfigMap":
        return yaml.safe_load(document["data"]["envoy.yaml"])
    return document


def _allow_underscores(config: dict[str, Any]) -> None:
    """The shipped defence off, so only the filter's own is left."""
    example_hcm(config)["common_http_protocol_options"] = {"headers_with_underscores_action": "ALLOW"}


def _cgi_name(name: str) -> str:
    return name.lower().replace("_", "-")


def _spellings_of(entry: dict[str, Any], header: str) -> list[tuple[str, str]]:
    """Every header of a /_test/seen entry that a CGI-style server reads as `header`."""
    return [(k, v) for k, v in entry["headers"] if _cgi_name(k) == header]


def _send(port: int, token: str, marker: str, extra: list[tuple[bytes, bytes]], path: bytes = b"/echo") -> RawResponse:
    headers = [(b"authorization", b"Bearer " + token.encode()), (MARKER_HEADER.encode(), marker.encode()), *extra]
    return raw_request(port, headers, path=path)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_envoy_refuses_underscore_header_names(path: Path) -> None:
    for listener in _envoy_document(path)["static_resources"]["listeners"]:
        options = http_connection_manager(listener).get("common_http_protocol_options", {})
        assert options.get("headers_with_underscores_action") == "REJECT_REQUEST", (path, listener["name"])


@pytest.mark.parametrize("name", SUB_SPELLINGS[:3], ids=[n.decode() for n in SUB_SPELLINGS[:3]])
def test_shipped_envoy_answers_400_to_an_underscore_header(envoy: Envoy, idp: IdentityProvider,
                                                           upstream: McpUpstream, name: bytes) -> None:
    marker = new_marker()
    response = _send(envoy.listener_port, idp.mint(sub="alice"), marker, [(name, b"admin")])
    assert response.status == 400, (response.status, response.body)
    assert upstream.seen(marker) == []


@pytest.fixture(scope="module")
def lenient(make_idp: Callable[..., IdentityProvider],
            make_envoy: Callable[..., Envoy]) -> tuple[Envoy, IdentityProvider]:
    """envoy/envoy.yaml with the standard configuration, underscores allowed; and its IdP."""
    port = free_port()
    idp = make_idp(f"http://127.0.0.1:{port}/mcp")
    envoy = make_envoy(standard_plugin_config(envoy_port=port, idp_port=idp.port), idp_port=idp.port,
                       listener_port=port, config_patch=_allow_underscores).start()
    return envoy, idp


@pytest.mark.parametrize("path", [b"/echo", b"/healthz"], ids=["verified", "bypass"])
def test_filter_removes_every_spelling_of_its_claim_headers(lenient: tuple[Envoy, IdentityProvider],
                                                            upstream: McpUpstream, path: bytes) -> None:
    envoy, idp = lenient
    marker = new_marker()
    forged = [(name, b"admin") for name in SUB_SPELLINGS] + [
        (b"x_mcp_user_email", b"admin@evil.example"), (b"X-MCP-USER-EMAIL", b"admin@evil.example"),
        (b"x-mcp-user-sub", b"forged-with-dashes"), (b"x-mcp-user-sub", b"forged-twice"),
        (b"x_unrelated_header", b"kept")]
    response = _send(envoy.listener_port, idp.mint(sub="alice"), marker, forged, path=path)
    assert response.status == 200, (response.status, response.body)
    (entry,) = upstream.seen(marker)
    # Envoy forwarded the underscore header the filter does not own: the removal is the filter's.
    assert header_values(entry, "x_unrelated_header") == ["kept"]
    verified = path == b"/echo"  # a bypass path gets no identity at all
    for header, value in {"x-mcp-user-sub": "alice", "x-mcp-user-email": "alice@example.com"}.items():
        expected = [(header, value)] if verified else []
        assert _spellings_of(entry, header) == expected, (header, entry["headers"])


@pytest.fixture(scope="module")
def lenient_exchange(make_idp: Callable[..., IdentityProvider], make_sts: Callable[..., SecurityTokenService],
                     make_envoy: Callable[..., Envoy]) -> tuple[Envoy, IdentityProvider, SecurityTokenService]:
    """envoy/okta-same-idp.yaml, the backend token in x-backend-token, underscores allowed."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    idp = make_idp(resource)
    sts = make_sts(idp, subject_audiences=[resource], clients=OKTA.sts_clients(SECRET))
    config = OKTA.plugin_config(envoy_port=port, idp_port=idp.port, sts_port=sts.port)
    config["token_exchange"]["upstream_header"] = {"name": BACKEND_HEADER, "prefix": "Bearer "}
    envoy = make_envoy(config, idp_port=idp.port, listener_port=port, config_patch=_allow_underscores,
                       **OKTA.envoy_options(sts.port, SECRET)).start()
    return envoy, idp, sts


def test_filter_removes_every_spelling_of_the_exchanged_token_header(
        lenient_exchange: tuple[Envoy, IdentityProvider, SecurityTokenService], upstream: McpUpstream) -> None:
    envoy, idp, sts = lenient_exchange
    token, marker = mint(idp, "alice"), new_marker()
    forged = [(b"x_backend_token", b"Bearer forged"), (b"X_BACKEND_TOKEN", b"Bearer forged"),
              (b"X-Backend-Token", b"Bearer forged"), (b"x-backend_token", b"Bearer forged")]
    response = _send(envoy.listener_port, token, marker, forged)
    assert response.status == 200, (response.status, response.body)
    (call,) = sts.calls_with_subject_token(token)
    (entry,) = upstream.seen(marker)
    assert _spellings_of(entry, BACKEND_HEADER) == [(BACKEND_HEADER, f"Bearer {call.issued_token}")], entry
    assert not any(token in value for _, value in entry["headers"]), "the client's token went upstream"
