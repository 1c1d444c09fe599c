"""Unknown-kid refetches belong to the Envoy, not to a request (security review, issue 9, items 5
and 6), with the standard configuration's unknown_kid_refetch_interval of 30 s:

- a client that triggers a refetch and goes away at once neither cancels it nor wastes the
  rate limit: the refetched keys are used (before: tokens of the new key refused for 31 s);
- a key published right after a fetch (the first load here) is accepted within a few seconds on
  every worker: a scheduled fetch does not start the 30 s clock, only a ~2 s floor;
- workers that see the unknown kid while another's refetch is under way wait for it, and the
  whole Envoy fetches once.
Each test has an Envoy of its own, so that what it measures starts from a known state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness import Envoy, free_port, resource_url, standard_plugin_config, wait_until
from harness.checks import bearer, echoed
from harness.faults import ScriptedIdp, abandoned_request

FLOOR_SECONDS = 2.0  # no unknown-kid refetch sooner than this after any fetch (jwks_cache.rs)
FEW_SECONDS = 5  # "accepted within a few seconds" (the interval is 30 s)
SLOW_ANSWER = 1.5  # seconds the IdP takes to answer the refetch, so that it is seen in flight
ROUNDS = 6  # requests on fresh connections: both workers
TIMEOUT = 10

pytestmark = pytest.mark.usefixtures("vm_never_fails")


@pytest.fixture
def stack(make_envoy: Callable[..., Envoy]) -> Iterator[Callable[[], tuple[ScriptedIdp, Envoy]]]:
    made: list[ScriptedIdp] = []

    def build() -> tuple[ScriptedIdp, Envoy]:
        port = free_port()
        idp = ScriptedIdp(audience=resource_url(port)).start()
        made.append(idp)
        config = standard_plugin_config(envoy_port=port, idp_port=idp.port)
        assert config["providers"]["test_idp"]["remote_jwks"]["unknown_kid_refetch_interval"] == "30s"
        return idp, make_envoy(config, idp_port=idp.port, listener_port=port).start()

    yield build
    for idp in made:
        idp.stop()


def _get(envoy: Envoy, token: str) -> httpx.Response:
    """On a new connection, so on either worker."""
    return httpx.get(f"{envoy.url}/echo", headers=bearer(token), timeout=TIMEOUT)


def _all_accepted(envoy: Envoy, token: str, rounds: int = ROUNDS) -> bool:
    return all(_get(envoy, token).status_code == 200 for _ in range(rounds))


def _keys_loaded(envoy: Envoy, idp: ScriptedIdp) -> None:
    assert _all_accepted(envoy, idp.mint(sub="first-load"))


def test_refetch_outlives_the_client_that_triggered_it(stack: Callable[[], tuple[ScriptedIdp, Envoy]]) -> None:
    idp, envoy = stack()
    _keys_loaded(envoy, idp)
    new_kid = idp.add_rsa_key(publish=False)
    wait_until(lambda: idp.seconds_since_jwks_fetch() > FLOOR_SECONDS + 0.3, 5, what="the refetch floor to pass")

    idp.delay = SLOW_ANSWER
    since = time.monotonic()
    with abandoned_request(envoy.listener_port, [(b"authorization", f"Bearer {idp.mint(kid=new_kid)}".encode())]):
        wait_until(lambda: idp.fetches_since(since) >= 1, 3, what="the unknown kid's refetch to start")
        idp.delay = 0.0
        idp.publish(new_kid)  # while the refetch is in flight: its answer carries the new key
    # The client is gone, and Envoy dropped the callout it owned: the worker sends the refetch
    # again (its rate-limit slot kept), and tokens of the new key are accepted within a few
    # seconds, on both workers, with no other fetch.
    token = idp.mint(kid=new_kid, sub="after-rotation")
    wait_until(lambda: _all_accepted(envoy, token), FEW_SECONDS, interval=0.2, what="the new key to be accepted")
    assert echoed(_get(envoy, token), "x-mcp-user-sub") == ["after-rotation"]
    assert idp.fetches_since(since) == 2, "the refetch and its one resend"


def test_key_published_right_after_the_first_load_is_accepted_within_seconds(
        stack: Callable[[], tuple[ScriptedIdp, Envoy]]) -> None:
    idp, envoy = stack()
    _keys_loaded(envoy, idp)
    fetches_at_load = idp.jwks_fetches
    new_kid = idp.add_rsa_key()  # published, and signed with at once
    token = idp.mint(kid=new_kid, sub="fresh-key")

    wait_until(lambda: _get(envoy, token).status_code == 200, FEW_SECONDS, interval=0.2,
               what="a token of the just-published key to be accepted")
    for _ in range(ROUNDS):  # every worker, not only the one that refetched
        assert echoed(_get(envoy, token), "x-mcp-user-sub") == ["fresh-key"]
    assert idp.jwks_fetches - fetches_at_load == 1, "one refetch for the whole Envoy"


def test_workers_wait_for_a_refetch_under_way(stack: Callable[[], tuple[ScriptedIdp, Envoy]]) -> None:
    """Concurrent requests on both workers while one refetch is slow: all wait for it, none is
    refused, and the IdP is asked once."""
    idp, envoy = stack()
    _keys_loaded(envoy, idp)
    wait_until(lambda: idp.seconds_since_jwks_fetch() > FLOOR_SECONDS + 0.3, 5, what="the refetch floor to pass")
    fetches_before = idp.jwks_fetches
    new_kid = idp.add_rsa_key()
    idp.delay = SLOW_ANSWER
    tokens = [idp.mint(kid=new_kid, sub=f"concurrent-{i}") for i in range(8)]

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        responses = list(pool.map(lambda t: _get(envoy, t), tokens))

    assert [r.status_code for r in responses] == [200] * len(tokens), [r.text for r in responses]
    assert idp.jwks_fetches - fetches_before == 1
