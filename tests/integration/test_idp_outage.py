"""The filter fails closed, promptly, while signing keys cannot be had, and recovers by itself."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness import Envoy, IdentityProvider, free_port, provider, resource_url, standard_plugin_config, wait_until
from harness.checks import bearer, echoed, json_body

UNAVAILABLE = {"error": "temporarily_unavailable", "error_description": "signing keys unavailable"}
RECOVERY_DEADLINE = 15  # seconds; failed_refetch_duration is 1s

pytestmark = pytest.mark.usefixtures("vm_never_fails")


def _stack(make_idp: Callable[..., IdentityProvider], make_envoy: Callable[..., Envoy], *,
           idp_running: bool, jwks_timeout: str = "5s") -> tuple[IdentityProvider, Envoy]:
    port = free_port()
    idp = make_idp(resource_url(port), start=idp_running)
    config = standard_plugin_config(envoy_port=port, idp_port=idp.port)
    provider(config)["remote_jwks"]["http_uri"]["timeout"] = jwks_timeout
    return idp, make_envoy(config, idp_port=idp.port, listener_port=port).start()


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert json_body(response) == UNAVAILABLE
    assert response.headers.get("retry-after") == "1"


def _succeeds(client: httpx.Client, token: str) -> bool:
    return client.get("/echo", headers=bearer(token)).status_code == 200


def _recovered(client: httpx.Client, token: str) -> bool:
    """Several requests in a row succeed. Each opens a new connection, so both workers are asked:
    one that has not refetched yet may still answer 503 for up to failed_refetch_duration."""
    return all(_succeeds(client, token) for _ in range(6))


def test_idp_down_at_start_fails_closed_then_recovers(make_idp: Callable[..., IdentityProvider],
                                                      make_envoy: Callable[..., Envoy]) -> None:
    # A callout deadline longer than the client's timeout: a 503 that waited for the deadline
    # would make the client time out. Refused connections must give 503 without waiting.
    idp, envoy = _stack(make_idp, make_envoy, idp_running=False, jwks_timeout="30s")
    token = idp.mint(sub="patient-user")  # signing works without the IdP serving

    with httpx.Client(base_url=envoy.url, timeout=15, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(3):
            _assert_unavailable(client.get("/echo", headers=bearer(token)))
        envoy.wait_for_counter("mcp_auth.denied.jwks_unavailable", 3)
        envoy.wait_for_counter("mcp_auth.jwks_fetch.failed", 1)

        idp.start()
        wait_until(lambda: _recovered(client, token), RECOVERY_DEADLINE, interval=0.25,
                   what="requests to succeed once the IdP is up")
        assert echoed(client.get("/echo", headers=bearer(token)), "x-mcp-user-sub") == ["patient-user"]
    assert idp.jwks_fetches >= 1


def test_request_parked_until_slow_jwks_arrives(make_idp: Callable[..., IdentityProvider],
                                                make_envoy: Callable[..., Envoy]) -> None:
    idp, envoy = _stack(make_idp, make_envoy, idp_running=True, jwks_timeout="5s")
    idp.set_jwks_mode("hang")
    token = idp.mint(sub="parked-user")

    with ThreadPoolExecutor(max_workers=1) as pool, httpx.Client(base_url=envoy.url, timeout=8) as client:
        pending = pool.submit(client.get, "/echo", headers=bearer(token))
        wait_until(lambda: idp.jwks_fetches >= 1, 5, what="the filter to ask for keys")
        assert not pending.done(), "the request must wait for the keys, not be decided without them"
        idp.set_jwks_mode("ok")  # the IdP answers the hanging fetch now
        assert echoed(pending.result(timeout=8), "x-mcp-user-sub") == ["parked-user"]


def test_hanging_jwks_times_out_into_503(make_idp: Callable[..., IdentityProvider],
                                         make_envoy: Callable[..., Envoy]) -> None:
    idp, envoy = _stack(make_idp, make_envoy, idp_running=True, jwks_timeout="1s")
    idp.set_jwks_mode("hang")
    token = idp.mint()

    # The client's own timeout is the bound: the filter must answer 503 itself, never hang.
    with httpx.Client(base_url=envoy.url, timeout=15, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        _assert_unavailable(client.get("/echo", headers=bearer(token)))

        idp.set_jwks_mode("ok")
        wait_until(lambda: _recovered(client, token), RECOVERY_DEADLINE, interval=0.25,
                   what="requests to succeed once /jwks answers")


def test_jwks_server_error_gives_503(make_idp: Callable[..., IdentityProvider],
                                     make_envoy: Callable[..., Envoy]) -> None:
    idp, envoy = _stack(make_idp, make_envoy, idp_running=True)
    idp.set_jwks_mode("fail")
    token = idp.mint()

    with httpx.Client(base_url=envoy.url, timeout=8, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        _assert_unavailable(client.get("/echo", headers=bearer(token)))
        assert idp.jwks_fetches >= 1
        idp.set_jwks_mode("ok")
        wait_until(lambda: _recovered(client, token), RECOVERY_DEADLINE, interval=0.25,
                   what="requests to succeed once /jwks answers 200")


def test_cached_keys_survive_idp_outage(make_idp: Callable[..., IdentityProvider],
                                        make_envoy: Callable[..., Envoy]) -> None:
    idp, envoy = _stack(make_idp, make_envoy, idp_running=True)
    with httpx.Client(base_url=envoy.url, timeout=8, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for worker_round in range(4):  # new connections: reach both workers while the IdP is up
            assert _succeeds(client, idp.mint(sub=f"warm-{worker_round}"))
        idp.stop()
        for _ in range(4):
            assert _succeeds(client, idp.mint(sub="during-outage")), "keys within cache_duration must keep working"
