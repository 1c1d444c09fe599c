"""Several filter instances in one Envoy (two workers), as operators run two MCP servers or two
tenants behind one proxy: a listener each, each with its own envoy.filters.http.wasm
configuration (envoy/okta-same-idp.yaml's, token exchange included), all with the same `vm_id`
(`mcp_auth`, as shipped) and the same provider name (`okta`), hence one shared-data space.

  a   IdP A, STS A (answers)
  b   IdP B (other keys, other issuer, the same kid names), STS B (refuses every exchange)
  c   a provider identical to a's (IdP A, same cluster and timings), STS B

Nothing written to shared data by one instance may be used by an instance configured otherwise:
B never trusts A's keys (security review, issue 9, item 1), c is never served a's exchanged
tokens (item 2); a and c, whose providers are identical, may share keys. Later shared-data
features extend this module (the stack is `make_multi_envoy`, harness/envoy_multi.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness import IdentityProvider, McpUpstream, SecurityTokenService, free_port, resource_url
from harness.checks import bearer, challenge, json_body, new_marker
from harness.envoy import OKTA_EXAMPLE
from harness.envoy_multi import FilterInstance, MultiEnvoy, with_clusters
from harness.exchange import OKTA, SECRET_ENV, mint, upstream_authorization

SECRET = "client-secret-shared-by-both-tenants"
PROVIDER = "okta"  # envoy/okta-same-idp.yaml's provider name, in every instance
REFUSAL = ("access_denied", "token exchange refused (invalid_target)")  # what STS B's answer becomes
FOREIGN_KEY = {"token signature invalid", "token signing key not found"}
TIMEOUT = 10
ROUNDS = 6  # requests on fresh connections: both workers see each case

pytestmark = pytest.mark.usefixtures("vm_never_fails")


@dataclass(frozen=True)
class Tenants:
    envoy: MultiEnvoy
    idp_a: IdentityProvider
    idp_b: IdentityProvider
    sts_a: SecurityTokenService
    sts_b: SecurityTokenService

    def resource(self, name: str) -> str:
        return resource_url(self.envoy.instance(name).listener_port)

    def get(self, name: str, token: str, marker: str | None = None) -> httpx.Response:
        """One request to instance `name` on a new connection (so on either worker)."""
        return httpx.get(f"{self.envoy.url_of(name)}/echo", headers=bearer(token, marker), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def tenants(make_idp: Callable[..., IdentityProvider], make_sts: Callable[..., SecurityTokenService],
            make_multi_envoy: Callable[..., MultiEnvoy]) -> Tenants:
    port_a, port_b, port_c = free_port(), free_port(), free_port()
    res_a, res_b, res_c = (resource_url(p) for p in (port_a, port_b, port_c))
    idp_a, idp_b = make_idp(res_a), make_idp(res_b)
    clients = OKTA.sts_clients(SECRET)
    sts_a = make_sts(idp_a, subject_audiences=[res_a, res_c], clients=clients)
    # STS B knows no backend the filter asks for: it refuses every exchange (invalid_target), after
    # recording the request, so the tests see which subject tokens reached it.
    sts_b = make_sts(idp_b, subject_audiences=[res_b, res_c], clients=clients, audiences=("another-backend",))

    config_a = OKTA.plugin_config(envoy_port=port_a, idp_port=idp_a.port, sts_port=sts_a.port)
    config_b = with_clusters(OKTA.plugin_config(envoy_port=port_b, idp_port=idp_b.port, sts_port=sts_b.port),
                             {"idp": "idp_b", "sts": "sts_b"})
    config_c = with_clusters(OKTA.plugin_config(envoy_port=port_c, idp_port=idp_a.port, sts_port=sts_b.port),
                             {"sts": "sts_b"})
    for config in (config_a, config_b, config_c):
        assert list(config["providers"]) == [PROVIDER]  # the collision the namespaces must survive
    envoy = make_multi_envoy(
        [FilterInstance("a", config_a, port_a), FilterInstance("b", config_b, port_b),
         FilterInstance("c", config_c, port_c)],
        clusters={"idp": idp_a.port, "sts": sts_a.port, "idp_b": idp_b.port, "sts_b": sts_b.port},
        example=OKTA_EXAMPLE, env={SECRET_ENV: SECRET}).start()
    return Tenants(envoy, idp_a, idp_b, sts_a, sts_b)


def _refused_by_sts_b(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    answer = json_body(response)
    assert (answer["error"], answer["error_description"]) == REFUSAL, answer


def _token_error(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    params = challenge(response)
    assert params.get("error") == "invalid_token", params
    return params["error_description"]


def test_each_instance_verifies_its_own_issuers_tokens(tenants: Tenants, upstream: McpUpstream) -> None:
    token_a, marker = mint(tenants.idp_a, "alice-of-a"), new_marker()
    assert tenants.get("a", token_a, marker).status_code == 200
    (call,) = tenants.sts_a.calls_with_subject_token(token_a)
    assert upstream_authorization(upstream, marker) == [f"Bearer {call.issued_token}"]

    # B's genuine token passes verification on b: only then is STS B asked, and its refusal is
    # what the client gets (not a token error).
    token_b, marker = mint(tenants.idp_b, "bob-of-b"), new_marker()
    for _ in range(ROUNDS):
        _refused_by_sts_b(tenants.get("b", token_b, marker))
    assert tenants.sts_b.calls_with_subject_token(token_b), "b never exchanged its own issuer's token"
    assert upstream.seen(marker) == []


def _no_kid(idp: IdentityProvider) -> dict[str, Any]:
    return {"header": {"kid": None}}


FORGERIES: list[tuple[str, Callable[[IdentityProvider], dict[str, Any]]]] = [
    # Both IdPs publish a key named rsa-1: the kid alone says nothing about whose key it is.
    ("same-kid-name", lambda idp: {"kid": idp.default_kid}),
    ("ec-key", lambda idp: {"kid": idp.kid_for("ES256")}),
    ("no-kid", _no_kid),
]


@pytest.mark.parametrize("forge", [f[1] for f in FORGERIES], ids=[f[0] for f in FORGERIES])
def test_issuer_b_token_signed_with_a_key_is_refused_on_b(tenants: Tenants, upstream: McpUpstream,
                                                          forge: Callable[[IdentityProvider], dict[str, Any]]) -> None:
    # Both key sets are loaded and in shared data, the precondition of the attack.
    assert tenants.get("a", mint(tenants.idp_a, "primes-a")).status_code == 200
    _refused_by_sts_b(tenants.get("b", mint(tenants.idp_b, "primes-b")))

    forged = mint(tenants.idp_a, "admin", iss=tenants.idp_b.issuer, aud=tenants.resource("b"),
                  **forge(tenants.idp_a))
    marker = new_marker()
    for _ in range(ROUNDS):
        assert _token_error(tenants.get("b", forged, marker)) in FOREIGN_KEY
    assert upstream.seen(marker) == []
    assert tenants.sts_b.calls_with_subject_token(forged) == [], "the forged token passed verification"


@pytest.mark.parametrize(("signer", "target"), [("a", "b"), ("b", "a")], ids=["a-token-on-b", "b-token-on-a"])
def test_tokens_of_one_issuer_never_pass_on_the_other(tenants: Tenants, upstream: McpUpstream,
                                                      signer: str, target: str) -> None:
    idp = tenants.idp_a if signer == "a" else tenants.idp_b
    other = tenants.idp_b if signer == "a" else tenants.idp_a
    audience = [tenants.resource(signer), tenants.resource(target)]
    marker = new_marker()
    own_issuer = mint(idp, "mallory", aud=audience)
    claimed_issuer = mint(idp, "mallory", aud=audience, iss=other.issuer)
    for _ in range(ROUNDS // 2):
        assert _token_error(tenants.get(target, own_issuer, marker)) == "token issuer not trusted"
        assert _token_error(tenants.get(target, claimed_issuer, marker)) in FOREIGN_KEY
    assert upstream.seen(marker) == []
    for sts in (tenants.sts_a, tenants.sts_b):
        assert sts.calls_with_subject_token(own_issuer) == sts.calls_with_subject_token(claimed_issuer) == []


def test_backend_token_of_one_instance_is_not_served_by_another(tenants: Tenants, upstream: McpUpstream) -> None:
    """a and c accept the same user token (same IdP, both audiences) but exchange it at different
    STSs: c must ask STS B, and pass on STS B's refusal, not a's cached backend token."""
    token = mint(tenants.idp_a, "carol", aud=[tenants.resource("a"), tenants.resource("c")])
    marker_a, marker_c = new_marker(), new_marker()
    for _ in range(ROUNDS):
        assert tenants.get("a", token, marker_a).status_code == 200
    (call,) = tenants.sts_a.calls_with_subject_token(token)  # one exchange, cached and shared
    backend_token = f"Bearer {call.issued_token}"
    assert set(upstream_authorization(upstream, marker_a)) == {backend_token}

    for _ in range(ROUNDS):
        _refused_by_sts_b(tenants.get("c", token, marker_c))
    assert tenants.sts_b.calls_with_subject_token(token), "c served a's exchange without asking its own STS"
    assert upstream.seen(marker_c) == []

    # a's cached exchange is untouched by c's failures.
    assert tenants.get("a", token, marker_a).status_code == 200
    assert len(tenants.sts_a.calls_with_subject_token(token)) == 1
    assert set(upstream_authorization(upstream, marker_a)) == {backend_token}


def test_identical_provider_definitions_share_keys(tenants: Tenants) -> None:
    """a and c define the same provider: the whole Envoy fetched A's keys once, and B's once."""
    for _ in range(ROUNDS):
        assert tenants.get("a", mint(tenants.idp_a, "shares-a")).status_code == 200
        token_c = mint(tenants.idp_a, "shares-c", aud=tenants.resource("c"))
        _refused_by_sts_b(tenants.get("c", token_c))
        assert tenants.sts_b.calls_with_subject_token(token_c), "c did not verify A's token"
    # The keys last 300 s (the IdP's max-age): no refresh can have run during this module.
    assert (tenants.idp_a.jwks_fetches, tenants.idp_b.jwks_fetches) == (1, 1)
