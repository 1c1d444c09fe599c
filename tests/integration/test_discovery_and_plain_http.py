"""Where the filter fetches keys and exchanges tokens (security review, issue 9, items 7 and 8).

OIDC discovery is checked (OpenID Connect Discovery 1.0 §4.3): a document naming another
`issuer` is a failed fetch (its keys are never used), and a `jwks_uri` on another origin than the
issuer's is refused unless `oidc_discovery.allowed_jwks_origins` lists it. And since TLS is the
Envoy cluster's business, never the URI's, a callout URI saying plain `http://` to a host other
than this machine is named in a warning at load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from harness import (
    Envoy,
    IdentityProvider,
    McpUpstream,
    SecurityTokenService,
    free_port,
    resource_url,
    standard_plugin_config,
    wait_until,
    with_key_source,
)
from harness.checks import bearer, echoed, json_body, new_marker
from harness.exchange import OKTA, mint

UNAVAILABLE = {"error": "temporarily_unavailable", "error_description": "signing keys unavailable"}
ISSUER_MISMATCH = "OpenID configuration names another issuer"
FOREIGN_JWKS = "jwks_uri is on another origin"
PLAIN_HTTP = "is plain http to another host"
RECOVERY_DEADLINE = 15  # seconds; failed_refetch_duration is 1 s
SECRET = "client-secret-for-plain-http-tests"
TIMEOUT = 10

pytestmark = pytest.mark.usefixtures("vm_never_fails")


def _discovery_config(port: int, idp: IdentityProvider, **settings: Any) -> dict[str, Any]:
    return with_key_source(standard_plugin_config(envoy_port=port, idp_port=idp.port), oidc_discovery={
        "cluster": "idp", "timeout": "5s", "cache_duration": "600s", "failed_refetch_duration": "1s", **settings})


IdpChanges = Callable[[IdentityProvider], Any]
Stack = Callable[..., tuple[IdentityProvider, Envoy]]


@pytest.fixture
def discovering(make_idp: Callable[..., IdentityProvider], make_envoy: Callable[..., Envoy]) -> Stack:
    """`discovering(overrides, allowed=None)`: an IdP whose discovery document has
    `overrides(idp)`, and an Envoy that finds its keys through it (with `allowed(idp)` as
    allowed_jwks_origins)."""

    def build(overrides: IdpChanges, allowed: IdpChanges | None = None) -> tuple[IdentityProvider, Envoy]:
        port = free_port()
        idp = make_idp(resource_url(port))
        idp.discovery_overrides = dict(overrides(idp))
        settings = {} if allowed is None else {"allowed_jwks_origins": allowed(idp)}
        config = _discovery_config(port, idp, **settings)
        return idp, make_envoy(config, idp_port=idp.port, listener_port=port).start()

    return build


def _get(envoy: Envoy, token: str, marker: str | None = None) -> httpx.Response:
    return httpx.get(f"{envoy.url}/echo", headers=bearer(token, marker), timeout=TIMEOUT)


def _keys_refused(envoy: Envoy, idp: IdentityProvider, upstream: McpUpstream, log_line: str) -> None:
    """Requests wait for keys, get 503, are not forwarded; the log says why; no JWKS was fetched."""
    marker = new_marker()
    response = _get(envoy, idp.mint(), marker)
    assert response.status_code == 503, response.text
    assert json_body(response) == UNAVAILABLE
    assert upstream.seen(marker) == []
    wait_until(lambda: log_line in envoy.log_text(), 5, what=f"the log line {log_line!r}")
    (line, *_) = [line for line in envoy.log_text().splitlines() if log_line in line]
    assert "JWKS fetch for provider test_idp failed" in line, line
    assert idp.discovery_fetches >= 1 and idp.jwks_fetches == 0


ISSUERS: list[tuple[str, IdpChanges]] = [
    ("other-path", lambda idp: f"{idp.issuer}/other"),
    ("trailing-slash", lambda idp: f"{idp.issuer}/"),
    ("other-host-name", lambda idp: f"http://localhost:{idp.port}"),
    ("missing", lambda idp: None),
]


@pytest.mark.parametrize("issuer", [i[1] for i in ISSUERS], ids=[i[0] for i in ISSUERS])
def test_discovery_naming_another_issuer_is_not_used(discovering: Stack, upstream: McpUpstream,
                                                     issuer: IdpChanges) -> None:
    idp, envoy = discovering(lambda idp: {"issuer": issuer(idp)})
    _keys_refused(envoy, idp, upstream, ISSUER_MISMATCH)

    idp.discovery_overrides = {}  # the IdP's document is right again: keys load without a restart
    wait_until(lambda: _get(envoy, idp.mint()).status_code == 200, RECOVERY_DEADLINE, interval=0.25,
               what="keys from the corrected document")


# A jwks_uri on another origin than the issuer's. Whatever it names, the callout goes through the
# provider's cluster (to this IdP): only the check can refuse it. Port 9 never answers anyway.
ELSEWHERE: list[tuple[str, IdpChanges]] = [
    ("other-port", lambda idp: "http://127.0.0.1:9/jwks"),
    ("other-host", lambda idp: f"http://keys.example.test:{idp.port}/jwks"),
    ("other-scheme", lambda idp: f"https://127.0.0.1:{idp.port}/jwks"),
]


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


@pytest.mark.parametrize("jwks_uri", [e[1] for e in ELSEWHERE], ids=[e[0] for e in ELSEWHERE])
def test_jwks_uri_on_another_origin_is_refused(discovering: Stack, upstream: McpUpstream,
                                               jwks_uri: IdpChanges) -> None:
    idp, envoy = discovering(lambda idp: {"jwks_uri": jwks_uri(idp)})
    _keys_refused(envoy, idp, upstream, FOREIGN_JWKS)


@pytest.mark.parametrize("jwks_uri", [e[1] for e in ELSEWHERE], ids=[e[0] for e in ELSEWHERE])
def test_jwks_uri_on_an_allowed_origin_is_used(discovering: Stack, jwks_uri: IdpChanges) -> None:
    idp, envoy = discovering(lambda idp: {"jwks_uri": jwks_uri(idp)}, allowed=lambda idp: [_origin(jwks_uri(idp))])
    assert echoed(_get(envoy, idp.mint(sub="allowed-origin")), "x-mcp-user-sub") == ["allowed-origin"]
    assert idp.jwks_fetches >= 1
    assert FOREIGN_JWKS not in envoy.log_text()


# ---- plain http to another host ---------------------------------------------------------------

def test_plain_http_to_another_host_is_a_warning_at_load(make_idp: Callable[..., IdentityProvider],
                                                         make_sts: Callable[..., SecurityTokenService],
                                                         make_envoy: Callable[..., Envoy]) -> None:
    """The URIs name hosts on the internet, the clusters are this machine's test servers: the
    filter never resolves a host itself (the cluster decides where a callout goes, and whether
    over TLS), so everything works, and the load says which URIs promise nothing."""
    port = free_port()
    resource = resource_url(port)
    idp = make_idp(resource)
    sts = make_sts(idp, subject_audiences=[resource], clients=OKTA.sts_clients(SECRET))
    config = OKTA.plugin_config(envoy_port=port, idp_port=idp.port, sts_port=sts.port)
    config["providers"]["okta"]["remote_jwks"]["http_uri"]["uri"] = "http://idp.invalid:9000/jwks"
    config["providers"]["discovered"] = {"issuer": "http://issuer.invalid:9001",
                                         "oidc_discovery": {"cluster": "idp", "timeout": "5s"}}
    config["providers"]["tls_promised"] = {"issuer": "https://tls.invalid",
                                           "remote_jwks": {"http_uri": {"uri": "https://tls.invalid/jwks",
                                                                        "cluster": "idp", "timeout": "5s"}}}
    config["token_exchange"]["token_endpoint"]["uri"] = "http://sts.invalid:9100/token"
    envoy = make_envoy(config, idp_port=idp.port, listener_port=port, **OKTA.envoy_options(sts.port, SECRET)).start()

    log = envoy.log_text()
    for path, origin in [("providers.okta.remote_jwks.http_uri.uri", "http://idp.invalid:9000"),
                         ("providers.discovered.issuer", "http://issuer.invalid:9001"),
                         ("token_exchange.token_endpoint.uri", "http://sts.invalid:9100")]:
        assert f"{path}: {origin} {PLAIN_HTTP}" in log, path
    assert "tls.invalid" not in "\n".join(line for line in log.splitlines() if PLAIN_HTTP in line)
    # The JWKS at idp.invalid and the STS at sts.invalid were reached through their clusters.
    token = mint(idp, "over-plain-http")
    assert _get(envoy, token).status_code == 200
    assert sts.calls_with_subject_token(token)[0].ok


def test_loopback_uris_are_not_warned_about(envoy: Envoy, http: httpx.Client, idp: IdentityProvider) -> None:
    """The standard configuration's URIs are all http://127.0.0.1: no warning."""
    assert http.get("/echo", headers=bearer(idp.mint())).status_code == 200
    assert PLAIN_HTTP not in envoy.log_text()
