"""Fixtures: one MCP upstream per session; per module an IdP and an Envoy with the filter.

A module changes its stack by overriding `plugin_config` (or `idp`, or `envoy_options`: which
example file Envoy starts from, more clusters, its environment); tests that need several
differently configured stacks use the `make_idp` / `make_envoy` / `make_sts` / `make_backend`
factories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness import (
    BackendApi,
    Envoy,
    IdentityProvider,
    McpUpstream,
    SecurityTokenService,
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
def make_sts() -> Iterator[Callable[..., SecurityTokenService]]:
    """Factory: `make_sts(idp, subject_audiences=[...], start=True, **options)`; all are stopped
    at module end."""
    made: list[SecurityTokenService] = []

    def make(idp: IdentityProvider, *, start: bool = True, **options: Any) -> SecurityTokenService:
        sts = SecurityTokenService(idp, **options)
        made.append(sts)
        return sts.start() if start else sts

    yield make
    for sts in made:
        sts.stop()


@pytest.fixture(scope="module")
def make_backend() -> Iterator[Callable[..., BackendApi]]:
    """Factory: `make_backend(sts, profile="jwt"|"google")`, started; all stopped at module end."""
    made: list[BackendApi] = []

    def make(sts: SecurityTokenService, **options: Any) -> BackendApi:
        backend = BackendApi(sts, **options)
        made.append(backend)
        return backend.start()

    yield make
    for backend in made:
        backend.stop()


@pytest.fixture(scope="module")
def make_envoy(upstream: McpUpstream, tmp_path_factory: pytest.TempPathFactory,
               request: pytest.FixtureRequest) -> Iterator[Callable[..., Envoy]]:
    """Factory: `make_envoy(plugin_config, idp_port=..., listener_port=..., **options)` -> an
    Envoy, not yet started (call .start() or .run_expecting_exit()); all are stopped at module
    end. `options` go to `Envoy` (example=, clusters=, env=, vm_env=)."""
    made: list[Envoy] = []
    prefix = request.module.__name__.rpartition(".")[2]

    def make(plugin_config: dict[str, Any], *, idp_port: int, listener_port: int | None = None,
             **options: Any) -> Envoy:
        envoy = Envoy(plugin_config, workdir=tmp_path_factory.mktemp(f"envoy-{prefix}"),
                      upstream_port=upstream.port, idp_port=idp_port, listener_port=listener_port, **options)
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
def envoy_options() -> dict[str, Any]:
    """More arguments for the module's Envoy (see `Envoy`): none, i.e. envoy/envoy.yaml."""
    return {}


@pytest.fixture(scope="module")
def envoy(make_envoy: Callable[..., Envoy], plugin_config: dict[str, Any], idp: IdentityProvider,
          envoy_port: int, envoy_options: dict[str, Any]) -> Envoy:
    return make_envoy(plugin_config, idp_port=idp.port, listener_port=envoy_port, **envoy_options).start()


@pytest.fixture(scope="module")
def http(envoy: Envoy) -> Iterator[httpx.Client]:
    """Client for requests through Envoy. No keep-alive: every request opens a new connection,
    so requests spread over both Envoy workers."""
    with httpx.Client(base_url=envoy.url, timeout=HTTP_TIMEOUT,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client
