"""A flood of tokens with unknown kids cannot make the filter hammer the IdP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from harness import Envoy, IdentityProvider
from harness.checks import bearer, challenge, echoed

# The standard configuration has unknown_kid_refetch_interval "30s".
FLOOD = 20


def test_unknown_kid_flood_refetches_at_most_a_couple_of_times(http: httpx.Client, envoy: Envoy,
                                                               idp: IdentityProvider) -> None:
    assert http.get("/echo", headers=bearer(idp.mint())).status_code == 200  # keys loaded
    fetches_before = idp.jwks_fetches
    tokens = [idp.mint(kid=f"unknown-kid-{i}") for i in range(FLOOD)]

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda t: http.get("/echo", headers=bearer(t)), tokens))

    for response in responses:
        assert response.status_code == 401
        assert challenge(response)["error_description"] == "token signing key not found"
    refetches = idp.jwks_fetches - fetches_before
    assert refetches <= 2, f"{FLOOD} unknown kids caused {refetches} JWKS fetches"
    # Known keys still work afterwards.
    assert echoed(http.get("/echo", headers=bearer(idp.mint(sub="still-fine"))), "x-mcp-user-sub") == ["still-fine"]
