"""Fixtures: one MCP upstream per session; per module an IdP and an Envoy with the filter.

A module changes its stack by overriding `plugin_config` (or `idp`); tests that need several
differently configured stacks use the `make_idp` / `make_envoy` factories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness import (
    Envoy,
    IdentityProvider,
    McpUpstream,
    WasmMissing,
    free_port,
    require_wasm,
    resource_url,
    standard_plugin_config,
)

HTTP_TIMEOUT = 10  # seconds; no request in the suite may hang longer


@pytest.fixture(scope="session", autouse=True)
def built_filter() -> None:
    """Stop the whole session at once, with one clear message, when the .wasm is not built."""
    try:
        require_wasm()
    except WasmMissing as e:
        pytest.exit(str(e), returncode=1)


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstream]:
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    with McpUpstream(log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def make_idp() -> Iterator[Callable[..., IdentityProvider]]:
    """Factory: `make_idp(audience, start=True, **options)`; all are stopped at module end."""
    made: list[IdentityProvider] = []

    def make(audience: str, start: bool = True, **options: Any) -> IdentityProvider:
        idp = IdentityProvider(audience=audience, **options)
        made.append(idp)
        return idp.start() if start else idp

    yield make
    for idp in made:
        idp.stop()


@pytest.fixture(scope="module")
def make_envoy(upstream: McpUpstream, tmp_path_factory: pytest.TempPathFactory,
               request: pytest.FixtureRequest) -> Iterator[Callable[..., Envoy]]:
    """Factory: `make_envoy(plugin_config, idp_port=..., listener_port=...)` -> an Envoy, not yet
    started (call .start() or .run_expecting_exit()); all are stopped at module end."""
    made: list[Envoy] = []
    prefix = request.module.__name__.rpartition(".")[2]

    def make(plugin_config: dict[str, Any], *, idp_port: int, listener_port: int | None = None) -> Envoy:
        envoy = Envoy(plugin_config, workdir=tmp_path_factory.mktemp(f"envoy-{prefix}"),
                      upstream_port=upstream.port, idp_port=idp_port, listener_port=listener_port)
        made.append(envoy)
        return envoy

    yield make
    for envoy in made:
        envoy.stop()


# ---- the default stack of a module ---------------------------------------------------------

@pytest.fixture(scope="module")
def envoy_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def resource(envoy_port: int) -> str:
    return resource_url(envoy_port)


@pytest.fixture(scope="module")
def idp(make_idp: Callable[..., IdentityProvider], resource: str) -> IdentityProvider:
    return make_idp(resource)


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider) -> dict[str, Any]:
    return standard_plugin_config(envoy_port=envoy_port, idp_port=idp.port)


@pytest.fixture(scope="module")
def envoy(make_envoy: Callable[..., Envoy], plugin_config: dict[str, Any], idp: IdentityProvider,
          envoy_port: int) -> Envoy:
    return make_envoy(plugin_config, idp_port=idp.port, listener_port=envoy_port).start()


@pytest.fixture(scope="module")
def http(envoy: Envoy) -> Iterator[httpx.Client]:
    """Client for requests through Envoy. No keep-alive: every request opens a new connection,
    so requests spread over both Envoy workers."""
    with httpx.Client(base_url=envoy.url, timeout=HTTP_TIMEOUT,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client
