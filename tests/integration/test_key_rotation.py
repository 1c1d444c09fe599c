"""Key rotation at the IdP: a token signed with a new kid is accepted after one JWKS refetch."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from harness import Envoy, IdentityProvider, provider, standard_plugin_config, wait_until
from harness.checks import bearer, echoed

REFETCH_INTERVAL = 1.0  # seconds, unknown_kid_refetch_interval below
# No unknown-kid refetch sooner than this after any fetch (jwks_cache::MIN_REFETCH_SPACING).
REFETCH_SPACING = 2.0


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider) -> dict[str, Any]:
    config = standard_plugin_config(envoy_port=envoy_port, idp_port=idp.port)
    provider(config)["remote_jwks"]["unknown_kid_refetch_interval"] = "1s"
    return config


def test_rotated_key_accepted_after_one_refetch(http: httpx.Client, envoy: Envoy, idp: IdentityProvider) -> None:
    old_token = idp.mint(sub="before-rotation")
    assert echoed(http.get("/echo", headers=bearer(old_token)), "x-mcp-user-sub") == ["before-rotation"]

    # Let the refetch rate limit expire, so the unknown kid below is allowed one refetch.
    wait_until(lambda: idp.seconds_since_jwks_fetch() > max(REFETCH_INTERVAL, REFETCH_SPACING) + 0.2, timeout=5,
               what="refetch interval to pass")
    fetches_before = idp.jwks_fetches
    new_kid = idp.rotate(keep_old=True)

    new_token = idp.mint(sub="after-rotation")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    response = http.get("/echo", headers=bearer(new_token))
    assert echoed(response, "x-mcp-user-sub") == ["after-rotation"]

    refetches = idp.jwks_fetches - fetches_before
    # One refetch for the whole Envoy: the workers coordinate through shared data.
    assert refetches == 1, f"{refetches} JWKS fetches for one new kid"
    # The old key was kept at the IdP: its tokens stay valid.
    assert http.get("/echo", headers=bearer(old_token)).status_code == 200
