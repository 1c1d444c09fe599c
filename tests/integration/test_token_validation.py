"""Every way a bearer token can be bad gets 401 invalid_token with the contract's description;
every supported algorithm is accepted."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, prm_url
from harness.checks import bearer, challenge, echoed, json_body, new_marker
from harness.idp import b64url, new_rsa_key

HOUR = 3600


def _hs256_with_rsa_public_key(idp: IdentityProvider) -> str:
    # The classic key-confusion attack: HMAC keyed with the RSA public key's PEM.
    return idp.mint(alg="HS256", key=idp.key().public_pem())


def _alg_mismatch(idp: IdentityProvider) -> str:
    # RS256 signature, but the kid names the published ES256 key.
    return idp.mint(kid=idp.kid_for("ES256"), alg="RS256", key=idp.key().private)


def _now() -> int:
    return int(time.time())


# (id, token maker, error_description, counter reason)
BAD_TOKENS: list[tuple[str, Callable[[IdentityProvider], str], str, str]] = [
    ("expired", lambda idp: idp.mint(exp=_now() - HOUR, iat=_now() - 2 * HOUR, nbf=_now() - 2 * HOUR),
     "token expired", "token_expired"),
    ("not-yet-valid", lambda idp: idp.mint(nbf=_now() + HOUR), "token not yet valid", "token_not_yet_valid"),
    ("issued-in-future", lambda idp: idp.mint(iat=_now() + HOUR), "token issued in the future",
     "token_issued_in_future"),
    ("wrong-issuer", lambda idp: idp.mint(iss="http://127.0.0.1:1/evil"), "token issuer not trusted",
     "issuer_not_trusted"),
    ("wrong-audience", lambda idp: idp.mint(aud="http://127.0.0.1:1/other"), "token audience not accepted",
     "audience_not_accepted"),
    ("bad-signature", lambda idp: idp.mint(key=new_rsa_key()), "token signature invalid", "signature_invalid"),
    ("alg-none", lambda idp: idp.mint(alg="none"), "token algorithm not allowed", "algorithm_not_allowed"),
    ("hs256-rsa-public-key", _hs256_with_rsa_public_key, "token algorithm not allowed", "algorithm_not_allowed"),
    ("alg-does-not-match-key", _alg_mismatch, "token algorithm does not match key", "algorithm_mismatch"),
    ("unknown-kid", lambda idp: idp.mint(kid="no-such-kid"), "token signing key not found", "key_not_found"),
    ("no-exp", lambda idp: idp.mint(omit=("exp",)), "token has no expiry", "missing_expiry"),
    ("unknown-crit", lambda idp: idp.mint(header={"crit": ["urn:example:unknown"], "urn:example:unknown": 1}),
     "token has unsupported critical header", "unsupported_critical_header"),
    ("too-large", lambda idp: idp.mint(padding="x" * 20000), "token too large", "token_too_large"),
    ("not-a-jwt", lambda idp: "not-a-jwt", "token malformed", "token_malformed"),
    ("bad-json", lambda idp: f"{b64url(b'{not json')}.{b64url(b'{}')}.{b64url(b'sig')}", "token malformed",
     "token_malformed"),
]


@pytest.mark.parametrize(("make_token", "description", "reason"), [c[1:] for c in BAD_TOKENS],
                         ids=[c[0] for c in BAD_TOKENS])
def test_bad_token(http: httpx.Client, envoy: Envoy, envoy_port: int, idp: IdentityProvider,
                   upstream: McpUpstream, make_token: Callable[[IdentityProvider], str],
                   description: str, reason: str) -> None:
    before = envoy.counter(f"mcp_auth.denied.{reason}")
    marker = new_marker()

    response = http.get("/echo", headers=bearer(make_token(idp), marker))

    assert response.status_code == 401, response.text
    params = challenge(response)
    assert params.get("error") == "invalid_token", params
    assert params.get("error_description") == description, params
    assert params.get("resource_metadata") == prm_url(envoy_port), params
    assert json_body(response) == {"error": "invalid_token", "error_description": description}
    assert upstream.seen(marker) == []
    envoy.wait_for_counter(f"mcp_auth.denied.{reason}", before + 1)


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_supported_algorithm_accepted(http: httpx.Client, idp: IdentityProvider, alg: str) -> None:
    token = idp.mint(kid=idp.kid_for(alg), sub=f"user-{alg}")
    response = http.get("/echo", headers=bearer(token))
    assert echoed(response, "x-mcp-user-sub") == [f"user-{alg}"]


TOLERATED: list[tuple[str, Callable[[IdentityProvider, str], str]]] = [
    # clock_skew_seconds is 60 in the standard configuration
    ("expired-within-skew", lambda idp, resource: idp.mint(sub="tolerated", exp=_now() - 30)),
    ("nbf-within-skew", lambda idp, resource: idp.mint(sub="tolerated", nbf=_now() + 30)),
    ("audience-in-list", lambda idp, resource: idp.mint(sub="tolerated", aud=["http://127.0.0.1:1/x", resource])),
]


@pytest.mark.parametrize("make_token", [c[1] for c in TOLERATED], ids=[c[0] for c in TOLERATED])
def test_tolerated_token(http: httpx.Client, idp: IdentityProvider, resource: str,
                         make_token: Callable[[IdentityProvider, str], str]) -> None:
    response = http.get("/echo", headers=bearer(make_token(idp, resource)))
    assert echoed(response, "x-mcp-user-sub") == ["tolerated"]
