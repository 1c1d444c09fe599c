"""The other two key sources: OIDC discovery and an inline local JWKS."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from harness import Envoy, IdentityProvider, free_port, resource_url, standard_plugin_config, with_key_source
from harness.checks import bearer, echoed


def _get(envoy: Envoy, token: str) -> httpx.Response:
    return httpx.get(f"{envoy.url}/echo", headers=bearer(token), timeout=10)


def test_oidc_discovery(make_idp: Callable[..., IdentityProvider], make_envoy: Callable[..., Envoy]) -> None:
    port = free_port()
    idp = make_idp(resource_url(port))
    config = with_key_source(standard_plugin_config(envoy_port=port, idp_port=idp.port), oidc_discovery={
        "cluster": "idp", "timeout": "5s", "cache_duration": "600s", "failed_refetch_duration": "1s",
        "unknown_kid_refetch_interval": "30s"})
    envoy = make_envoy(config, idp_port=idp.port, listener_port=port).start()

    for alg in ("RS256", "ES256"):
        token = idp.mint(kid=idp.kid_for(alg), sub=f"discovered-{alg}")
        assert echoed(_get(envoy, token), "x-mcp-user-sub") == [f"discovered-{alg}"]
    assert idp.discovery_fetches >= 1  # keys were found through the discovery document
    assert idp.jwks_fetches >= 1
    assert _get(envoy, idp.mint(kid="not-published")).status_code == 401


def test_local_jwks_inline(make_idp: Callable[..., IdentityProvider], make_envoy: Callable[..., Envoy]) -> None:
    port = free_port()
    idp = make_idp(resource_url(port), start=False)  # keys come from the configuration only
    config = with_key_source(standard_plugin_config(envoy_port=port, idp_port=idp.port),
                             local_jwks={"inline_string": idp.jwks_json()})
    envoy = make_envoy(config, idp_port=idp.port, listener_port=port).start()

    for alg in ("RS256", "PS256", "EdDSA"):
        token = idp.mint(kid=idp.kid_for(alg), sub=f"local-{alg}")
        assert echoed(_get(envoy, token), "x-mcp-user-sub") == [f"local-{alg}"]
    response = _get(envoy, idp.mint(kid="not-published"))
    assert response.status_code == 401
    assert idp.jwks_fetches == 0
