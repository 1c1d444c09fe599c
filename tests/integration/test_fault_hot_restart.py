"""Envoy hot restart (`--restart-epoch`, same `--base-id`) while requests are parked in the filter
waiting for a slow STS: the old epoch finishes them (or, when it is shut down under them, they fail
cleanly: a closed connection, never a forward without the backend token, never a hang), and new
requests are served by the new epoch, whose VM starts with no keys and no cache."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from harness import IdentityProvider, McpUpstream, SecurityTokenService, free_port, resource_url, wait_until
from harness.checks import bearer, new_marker
from harness.exchange import mint, okta_envoy_options, okta_plugin_config, upstream_authorization
from harness.faults import TunedEnvoy, wasm_failures
from harness.sts_fault import StsFault

SECRET = "okta-client-secret-for-hot-restart"
CLIENT_TIMEOUT = 20  # the bound for "no request left hanging"


@pytest.fixture
def stack(make_idp: Any, make_sts: Any, upstream: McpUpstream,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IdentityProvider, SecurityTokenService, Any]]:
    made: list[Any] = []

    def build(drain_s: int, parent_shutdown_s: int, exchange_timeout: str) -> TunedEnvoy:
        config["token_exchange"]["token_endpoint"]["timeout"] = exchange_timeout
        envoy = TunedEnvoy(config, workdir=tmp_path_factory.mktemp("envoy-hot-restart"), upstream_port=upstream.port,
                           idp_port=idp.port, listener_port=port,
                           extra_args=("--drain-time-s", str(drain_s), "--parent-shutdown-time-s",
                                       str(parent_shutdown_s), "--drain-strategy", "immediate"),
                           **okta_envoy_options(sts.port, SECRET))
        made.append(envoy)
        return envoy.start()

    port = free_port()
    idp = make_idp(resource_url(port))
    sts = make_sts(idp, subject_audiences=[resource_url(port)], clients={"mcp-filter": SECRET})
    config = okta_plugin_config(envoy_port=port, idp_port=idp.port, sts_port=sts.port)
    yield idp, sts, build
    for envoy in made:
        envoy.stop()


def _get(envoy: TunedEnvoy, token: str, marker: str) -> Any:
    try:
        with httpx.Client(base_url=envoy.url, timeout=CLIENT_TIMEOUT) as client:
            return client.get("/echo", headers=bearer(token, marker))
    except httpx.TimeoutException as e:
        return e  # a hang: the test fails on it below
    except httpx.TransportError as e:
        return e  # the connection was closed under the request: a clean failure


def _upstream_only_got_backend_tokens(upstream: McpUpstream, sts: SecurityTokenService, marker: str,
                                      token: str) -> None:
    issued = {c.issued_token for c in sts.calls_with_subject_token(token)}
    for value in upstream_authorization(upstream, marker):
        assert value.removeprefix("Bearer ") in issued, "something other than a backend token went upstream"
    for entry in upstream.seen(marker):
        assert not any(token in v for _, v in entry["headers"]), "the client's token reached the upstream"


def test_parked_requests_complete_across_a_hot_restart(stack: Any, upstream: McpUpstream) -> None:
    idp, sts, build = stack
    envoy = build(drain_s=3, parent_shutdown_s=10, exchange_timeout="5s")
    assert _get(envoy, mint(idp, "hr-warm"), new_marker()).status_code == 200
    assert envoy.serving_epoch() == 0

    sts.set_fault(StsFault.slow(2.0))  # requests park in epoch 0's VM for 2 s
    tokens = [(mint(idp, f"hr-inflight-{i}"), new_marker()) for i in range(6)]
    calls_before = len(sts.calls)
    with ThreadPoolExecutor(max_workers=6) as pool:
        pending = [pool.submit(_get, envoy, token, marker) for token, marker in tokens]
        wait_until(lambda: len(sts.calls) - calls_before >= 2, 10, what="the exchanges to be in flight")
        old = envoy.hot_restart()  # epoch 1 takes the listeners; epoch 0 drains
        assert envoy.serving_epoch() == 1
        sts.clear_fault()
        new_token, new_marker_ = mint(idp, "hr-new-epoch"), new_marker()
        response = _get(envoy, new_token, new_marker_)
        assert isinstance(response, httpx.Response) and response.status_code == 200, response
        results = [f.result(timeout=2 * CLIENT_TIMEOUT) for f in pending]

    for (token, marker), result in zip(tokens, results, strict=True):
        assert not isinstance(result, httpx.TimeoutException), "a request was left hanging"
        assert isinstance(result, httpx.Response), f"{result!r}"
        assert result.status_code == 200, result.text
        _upstream_only_got_backend_tokens(upstream, sts, marker, token)
    _upstream_only_got_backend_tokens(upstream, sts, new_marker_, new_token)
    wait_until(lambda: old.poll() is not None, 30, what="epoch 0 to exit after its drain")
    assert _get(envoy, mint(idp, "hr-after-parent-exit"), new_marker()).status_code == 200
    assert wasm_failures(envoy.log_text()) == []


def test_parent_shut_down_under_parked_requests_fails_them_cleanly(stack: Any, upstream: McpUpstream) -> None:
    idp, sts, build = stack
    envoy = build(drain_s=1, parent_shutdown_s=3, exchange_timeout="15s")
    assert _get(envoy, mint(idp, "hr2-warm"), new_marker()).status_code == 200

    sts.set_fault(StsFault.slow(12.0))  # longer than epoch 0 will live
    tokens = [(mint(idp, f"hr2-inflight-{i}"), new_marker()) for i in range(4)]
    calls_before = len(sts.calls)
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = [pool.submit(_get, envoy, token, marker) for token, marker in tokens]
        wait_until(lambda: len(sts.calls) - calls_before >= 1, 10, what="the exchanges to be in flight")
        old = envoy.hot_restart()
        wait_until(lambda: old.poll() is not None, 30, what="epoch 0 to be shut down")
        results = [f.result(timeout=2 * CLIENT_TIMEOUT) for f in pending]
    sts.clear_fault()

    for (token, marker), result in zip(tokens, results, strict=True):
        assert not isinstance(result, httpx.TimeoutException), "a request was left hanging"
        if isinstance(result, httpx.Response):  # answered before the end: only by the filter itself
            assert result.status_code in (502, 503, 504), result.text
        _upstream_only_got_backend_tokens(upstream, sts, marker, token)
        assert upstream.seen(marker) == []
    assert _get(envoy, mint(idp, "hr2-after"), new_marker()).status_code == 200
    assert wasm_failures(envoy.log_text()) == []
