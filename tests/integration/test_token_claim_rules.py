"""Claim rules that hold the same for every token (security review, issue 9, items 9 to 11):

- `max_lifetime` (as Envoy's jwt_authn names it) bounds `exp - iat`; with it, `iat` is required;
- one header and claim validator for every algorithm: what an RS256 token may carry (a numeric
  `jti`, `typ: "JOSE"`) an ES256, ES384, PS256 or EdDSA token may carry too, and what is refused
  is refused alike;
- a token without `kid` that is cached stays valid only while the key that verified it is
  published: once the IdP replaces that key, the cached token is refused.
(Dates outside the NumericDate range are covered by test_hostile_tokens.py.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from harness import (
    Envoy,
    IdentityProvider,
    McpUpstream,
    free_port,
    provider,
    resource_url,
    standard_plugin_config,
    wait_until,
)
from harness.checks import bearer, challenge, echoed, new_marker
from harness.faults import RawAnswer, ScriptedIdp
from harness.idp import SigningKey, new_rsa_key

MAX_LIFETIME = 60  # seconds, the provider's max_lifetime below
ALGORITHMS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
ROUNDS = 6  # requests on fresh connections: both workers
REFRESH_DEADLINE = 15  # seconds; the keys below live 2 s
TIMEOUT = 10

pytestmark = pytest.mark.usefixtures("vm_never_fails")


@pytest.fixture(scope="module")
def idp(make_idp: Callable[..., IdentityProvider], resource: str) -> IdentityProvider:
    """Tokens live exactly max_lifetime: the default ones are within the bound."""
    return make_idp(resource, token_ttl=MAX_LIFETIME)


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider) -> dict[str, Any]:
    config = standard_plugin_config(envoy_port=envoy_port, idp_port=idp.port)
    provider(config)["max_lifetime"] = f"{MAX_LIFETIME}s"
    return config


def _refusal(http: httpx.Client, upstream: McpUpstream, token: str) -> str:
    """The error description of a refused token (which was never forwarded)."""
    marker = new_marker()
    response = http.get("/echo", headers=bearer(token, marker))
    assert response.status_code == 401, response.text
    assert upstream.seen(marker) == []
    params = challenge(response)
    assert params.get("error") == "invalid_token", params
    return params["error_description"]


# ---- max_lifetime -------------------------------------------------------------------------------

@pytest.mark.parametrize(("lifetime", "refusal"), [(3600, "token lifetime too long"),
                                                    (MAX_LIFETIME + 1, "token lifetime too long"),
                                                    (None, "token has no issue time")],
                         ids=["an-hour", "one-second-too-long", "no-iat"])
def test_max_lifetime_bounds_exp_minus_iat(http: httpx.Client, idp: IdentityProvider, upstream: McpUpstream,
                                           lifetime: int | None, refusal: str) -> None:
    now = int(time.time())
    token = (idp.mint(omit=("iat",)) if lifetime is None else idp.mint(iat=now, exp=now + lifetime))
    assert _refusal(http, upstream, token) == refusal


def test_lifetime_within_max_lifetime_is_accepted(http: httpx.Client, idp: IdentityProvider) -> None:
    now = int(time.time())
    token = idp.mint(sub="short-lived", iat=now - 10, exp=now + MAX_LIFETIME - 10)
    assert echoed(http.get("/echo", headers=bearer(token)), "x-mcp-user-sub") == ["short-lived"]


# ---- the same rules for every algorithm -----------------------------------------------------------

@pytest.mark.parametrize("alg", ALGORITHMS)
def test_numeric_jti_and_typ_jose_accepted_for_every_algorithm(http: httpx.Client, idp: IdentityProvider,
                                                               alg: str) -> None:
    cases: list[tuple[dict[str, Any], Any]] = [({"typ": "JOSE"}, 4_242), ({"typ": None}, 1.5), ({"typ": "JWT"}, "j")]
    for header, jti in cases:
        token = idp.mint(kid=idp.kid_for(alg), sub=f"parity-{alg}", jti=jti, header=header)
        assert echoed(http.get("/echo", headers=bearer(token)), "x-mcp-user-sub") == [f"parity-{alg}"], (header, jti)


REFUSED_ALIKE: list[tuple[str, Callable[[IdentityProvider], dict[str, Any]], str]] = [
    ("expired", lambda idp: {"iat": int(time.time()) - 3600, "exp": int(time.time()) - 3600 + MAX_LIFETIME},
     "token expired"),
    ("not-yet-valid", lambda idp: {"nbf": int(time.time()) + 600}, "token not yet valid"),
    ("other-issuer", lambda idp: {"iss": "http://127.0.0.1:1/other"}, "token issuer not trusted"),
    ("other-audience", lambda idp: {"aud": "http://127.0.0.1:1/other"}, "token audience not accepted"),
    ("exp-1e30", lambda idp: {"exp": 1e30}, "token malformed"),
    ("aud-number", lambda idp: {"aud": 7}, "token malformed"),
]


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize(("claims", "refusal"), [c[1:] for c in REFUSED_ALIKE], ids=[c[0] for c in REFUSED_ALIKE])
def test_claims_refused_alike_for_every_algorithm(http: httpx.Client, idp: IdentityProvider, upstream: McpUpstream,
                                                  alg: str, claims: Callable[[IdentityProvider], dict[str, Any]],
                                                  refusal: str) -> None:
    token = idp.mint(kid=idp.kid_for(alg), **claims(idp))
    assert _refusal(http, upstream, token) == refusal


# ---- a cached token without kid -------------------------------------------------------------------

def _jwks_without_kids(*keys: SigningKey) -> RawAnswer:
    body = {"keys": [{k: v for k, v in key.jwk().items() if k != "kid"} for key in keys]}
    return RawAnswer(200, json.dumps(body).encode(), {"content-type": "application/json"})


def test_cached_token_without_kid_is_refused_once_its_key_is_replaced(make_envoy: Callable[..., Envoy],
                                                                      upstream: McpUpstream) -> None:
    port = free_port()
    idp = ScriptedIdp(audience=resource_url(port), jwks_max_age=None).start()
    try:
        key, replacement = idp.key(), SigningKey("replacement", "RS256", new_rsa_key())
        idp.raw = _jwks_without_kids(key)
        config = standard_plugin_config(envoy_port=port, idp_port=idp.port)
        provider(config)["remote_jwks"]["cache_duration"] = "2s"  # a refresh about every 1.8 s
        envoy = make_envoy(config, idp_port=idp.port, listener_port=port).start()
        with httpx.Client(base_url=envoy.url, timeout=TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            token = idp.mint(sub="no-kid", header={"kid": None}, key=key.private)
            for _ in range(ROUNDS):  # verified, then cached, on both workers
                assert echoed(c.get("/echo", headers=bearer(token)), "x-mcp-user-sub") == ["no-kid"]

            idp.raw = _jwks_without_kids(replacement)  # K' replaces K, neither has a kid
            successor = idp.mint(sub="successor", header={"kid": None}, key=replacement.private)
            wait_until(lambda: all(c.get("/echo", headers=bearer(successor)).status_code == 200
                                   for _ in range(ROUNDS)), REFRESH_DEADLINE, interval=0.25,
                       what="the replacement key in use")
            # Fresh connections land on either worker, so the rounds above may all have met one;
            # the other refuses the cached token once it holds the new key set (its own refresh
            # or adoption, within one refresh). Wait for that, then it must stay refused.
            wait_until(lambda: all(c.get("/echo", headers=bearer(token)).status_code == 401
                                   for _ in range(ROUNDS)), REFRESH_DEADLINE, interval=0.25,
                       what="the cached token refused on both workers")
            marker = new_marker()
            for _ in range(3 * ROUNDS):
                response = c.get("/echo", headers=bearer(token, marker))
                assert response.status_code == 401, response.text
                assert challenge(response)["error_description"] == "token signature invalid"
            assert upstream.seen(marker) == []
    finally:
        idp.stop()
