"""A flood of tokens with unknown kids cannot make the filter hammer the IdP: with the standard
unknown_kid_refetch_interval of 30 s, the whole Envoy (both workers) refetches once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness import Envoy, IdentityProvider, wait_until
from harness.checks import bearer, challenge, echoed

FLOOD = 20
FLOOR_SECONDS = 2.0  # no unknown-kid refetch sooner than this after any fetch (jwks_cache.rs)

pytestmark = pytest.mark.usefixtures("vm_never_fails")


def test_unknown_kid_flood_refetches_once_for_the_whole_envoy(http: httpx.Client, envoy: Envoy,
                                                              idp: IdentityProvider) -> None:
    assert http.get("/echo", headers=bearer(idp.mint())).status_code == 200  # keys loaded
    # Past the floor after the first load, so the flood is allowed its one refetch.
    wait_until(lambda: idp.seconds_since_jwks_fetch() > FLOOR_SECONDS + 0.3, 5, what="the refetch floor to pass")
    fetches_before = idp.jwks_fetches
    tokens = [idp.mint(kid=f"unknown-kid-{i}") for i in range(FLOOD)]

    with ThreadPoolExecutor(max_workers=10) as pool:  # new connections: both workers
        responses = list(pool.map(lambda t: http.get("/echo", headers=bearer(t)), tokens))

    for response in responses:
        assert response.status_code == 401
        assert challenge(response)["error_description"] == "token signing key not found"
    refetches = idp.jwks_fetches - fetches_before
    assert refetches == 1, f"{FLOOD} unknown kids caused {refetches} JWKS fetches"
    # Known keys still work afterwards.
    assert echoed(http.get("/echo", headers=bearer(idp.mint(sub="still-fine"))), "x-mcp-user-sub") == ["still-fine"]
