"""Two providers: the token's `iss` picks the provider, and keys never cross providers.

The second provider uses an inline JWKS, because envoy/envoy.yaml has a single `idp` cluster.
Both IdPs name their first RSA key "rsa-1", so only the issuer tells the keys apart.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness import IdentityProvider, provider, standard_plugin_config
from harness.checks import bearer, challenge, echoed, json_body


@pytest.fixture(scope="module")
def other_idp(make_idp: Any, resource: str) -> IdentityProvider:
    return make_idp(resource, start=False)  # only its keys are used, inline in the configuration


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider, other_idp: IdentityProvider) -> dict[str, Any]:
    config = standard_plugin_config(envoy_port=envoy_port, idp_port=idp.port)
    del config["authorization_servers"]  # default: the issuer of every provider
    second = {**provider(config), "issuer": other_idp.issuer, "local_jwks": {"inline_string": other_idp.jwks_json()}}
    del second["remote_jwks"]
    config["providers"]["other_idp"] = second
    return config


def test_default_authorization_servers_are_all_issuers(http: httpx.Client, idp: IdentityProvider,
                                                       other_idp: IdentityProvider) -> None:
    metadata = json_body(http.get("/.well-known/oauth-protected-resource/mcp"))
    assert sorted(metadata["authorization_servers"]) == sorted([idp.issuer, other_idp.issuer])


@pytest.mark.parametrize("which", ["idp", "other_idp"])
def test_each_provider_accepts_its_tokens(http: httpx.Client, request: pytest.FixtureRequest, which: str) -> None:
    issuer: IdentityProvider = request.getfixturevalue(which)
    response = http.get("/echo", headers=bearer(issuer.mint(sub=f"user-of-{which}")))
    assert echoed(response, "x-mcp-user-sub") == [f"user-of-{which}"]


def test_keys_do_not_cross_providers(http: httpx.Client, idp: IdentityProvider, other_idp: IdentityProvider) -> None:
    assert idp.default_kid == other_idp.default_kid  # same kid, different keys
    for claimed, signer in ((other_idp, idp), (idp, other_idp)):
        token = signer.mint(iss=claimed.issuer)
        response = http.get("/echo", headers=bearer(token))
        assert response.status_code == 401
        assert challenge(response)["error_description"] == "token signature invalid"
