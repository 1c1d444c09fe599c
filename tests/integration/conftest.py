"""Fixtures: one MCP upstream per session; per module an IdP and an Envoy with the filter.

A module changes its stack by overriding the fixture that says what it needs:
  exchange       token exchange through a shipped example (OKTA or GOOGLE from harness.exchange,
                 optionally `.with_timeout("1s")`); `plugin_config`, `envoy_options`, `sts` and
                 `backend` follow it. Default None: envoy/envoy.yaml, authentication only.
  sts_secret     the filter's client secret at the STS or the dev AS, for modules that look for it
  backend_issuer who issues the tokens the backend accepts (default: the module's STS)
  plugin_config  / `idp` / `envoy_options`, for anything else.
Tests that need several differently configured stacks use the `make_idp` / `make_envoy` /
`make_sts` / `make_backend` factories; several filter instances in one Envoy (same `vm_id`),
`make_multi_envoy`. Modules whose tests break things opt into the after-test checks with
`pytestmark = pytest.mark.usefixtures("sts_restored")` (or "vm_never_fails", which checks every
Envoy the module made).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
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
from harness.backend import TokenIssuer
from harness.dev_as import DevAuthorizationServer
from harness.envoy_multi import FilterInstance, MultiEnvoy
from harness.exchange import OKTA, ExchangeProfile
from harness.faults import wasm_failures
from harness.sts import DEFAULT_CLIENT_SECRET

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
def envoys_made() -> Iterator[list[Envoy]]:
    """Every Envoy the module's factories made (in order); all are stopped at module end."""
    made: list[Envoy] = []
    yield made
    for envoy in made:
        envoy.stop()


def _envoy_workdir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(f"envoy-{request.module.__name__.rpartition('.')[2]}")


@pytest.fixture(scope="module")
def make_envoy(upstream: McpUpstream, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
               envoys_made: list[Envoy]) -> Callable[..., Envoy]:
    """Factory: `make_envoy(plugin_config, idp_port=..., listener_port=..., **options)` -> an
    Envoy, not yet started (call .start() or .run_expecting_exit()); all are stopped at module
    end. `options` go to `Envoy` (example=, clusters=, env=, vm_env=, config_patch=)."""

    def make(plugin_config: dict[str, Any], *, idp_port: int, listener_port: int | None = None,
             **options: Any) -> Envoy:
        envoy = Envoy(plugin_config, workdir=_envoy_workdir(tmp_path_factory, request),
                      upstream_port=upstream.port, idp_port=idp_port, listener_port=listener_port, **options)
        envoys_made.append(envoy)
        return envoy

    return make


@pytest.fixture(scope="module")
def make_multi_envoy(upstream: McpUpstream, tmp_path_factory: pytest.TempPathFactory,
                     request: pytest.FixtureRequest, envoys_made: list[Envoy]) -> Callable[..., MultiEnvoy]:
    """Factory: `make_multi_envoy(instances, clusters={...}, **options)` -> one Envoy running
    every `FilterInstance` on a listener of its own, same vm_id (harness/envoy_multi.py); not yet
    started; all are stopped at module end. `options` go to `MultiEnvoy` (example=, env=, ...)."""

    def make(instances: list[FilterInstance], *, clusters: dict[str, int], **options: Any) -> MultiEnvoy:
        envoy = MultiEnvoy(instances, workdir=_envoy_workdir(tmp_path_factory, request),
                           upstream_port=upstream.port, clusters=clusters, **options)
        envoys_made.append(envoy)
        return envoy

    return make


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
def exchange() -> ExchangeProfile | None:
    """The token exchange of the module's stack: None runs envoy/envoy.yaml (authentication only)."""
    return None


@pytest.fixture(scope="module")
def sts_secret() -> str:
    """The filter's client secret at the module's STS (or dev AS)."""
    return DEFAULT_CLIENT_SECRET


@pytest.fixture(scope="module")
def plugin_config(request: pytest.FixtureRequest, envoy_port: int, idp: IdentityProvider,
                  exchange: ExchangeProfile | None) -> dict[str, Any]:
    """The contract's standard configuration, or with `exchange` the example file's own."""
    if exchange is None:
        return standard_plugin_config(envoy_port=envoy_port, idp_port=idp.port)
    sts: SecurityTokenService = request.getfixturevalue("sts")  # only stacks with an exchange have one
    return exchange.plugin_config(envoy_port=envoy_port, idp_port=idp.port, sts_port=sts.port)


@pytest.fixture(scope="module")
def envoy_options(request: pytest.FixtureRequest, exchange: ExchangeProfile | None,
                  sts_secret: str) -> dict[str, Any]:
    """More arguments for the module's Envoy (see `Envoy`): none, i.e. envoy/envoy.yaml, or the
    exchange's example file with its STS cluster on the module's STS."""
    if exchange is None:
        return {}
    sts: SecurityTokenService = request.getfixturevalue("sts")
    return exchange.envoy_options(sts.port, sts_secret)


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


# ---- token exchange: the STS, the backend behind the MCP server ----------------------------

@pytest.fixture(scope="module")
def sts(make_sts: Callable[..., SecurityTokenService], idp: IdentityProvider, resource: str,
        exchange: ExchangeProfile | None, sts_secret: str) -> SecurityTokenService:
    """The module's test STS: it exchanges `idp`'s tokens for the module's resource, and its one
    client is the filter (Okta-like, with `sts_secret`), or none (Google-like)."""
    clients = (exchange or OKTA).sts_clients(sts_secret)
    return make_sts(idp, subject_audiences=[resource], clients=clients)


@pytest.fixture
def sts_restored(sts: SecurityTokenService) -> Iterator[SecurityTokenService]:
    """After the test, the module's STS serves again, without a fault, with the token lifetime
    and Google subject audiences it had before."""
    lifetime, google_audiences = sts.token_lifetime, sts.google_subject_audiences
    yield sts
    sts.start()
    sts.clear_fault()
    sts.token_lifetime, sts.google_subject_audiences = lifetime, google_audiences


@pytest.fixture(scope="module")
def backend_issuer(sts: SecurityTokenService) -> TokenIssuer:
    """Who issues the tokens the module's backend accepts: its STS (the dev AS's backend issuer
    in the modules that log in at dev-as/)."""
    return sts


@pytest.fixture(scope="module")
def backend(make_backend: Callable[..., BackendApi], backend_issuer: TokenIssuer,
            exchange: ExchangeProfile | None) -> BackendApi:
    """The backend API the MCP server's query_backend tool calls; it takes only tokens of
    `backend_issuer` (JWTs, or Google's opaque tokens with the GOOGLE exchange)."""
    return make_backend(backend_issuer, profile=(exchange or OKTA).backend_profile)


@pytest.fixture(scope="module")
def tool_server(backend: BackendApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstream]:
    """An MCP server of the module's own whose query_backend tool calls the module's backend."""
    log = tmp_path_factory.mktemp("tool-server") / "upstream.log"
    with McpUpstream(log_path=log, backend_url=backend.whoami_url) as server:
        yield server


@pytest.fixture(scope="module")
def dev_as(resource: str, sts_secret: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevAuthorizationServer]:
    """The development authorization servers (dev-as/): the MCP AS logs alice in and issues tokens
    for the module's resource; the backend AS exchanges them for the filter (`sts_secret`)."""
    log = tmp_path_factory.mktemp("dev-as") / "dev-as.log"
    with DevAuthorizationServer(mcp_resources=[resource], sts_client_secret=sts_secret, log_path=log) as server:
        yield server


# ---- after-test checks -----------------------------------------------------------------------

@pytest.fixture
def vm_never_fails(envoys_made: list[Envoy]) -> Iterator[None]:
    """After the test, what the test added to the log of every Envoy the module made (its
    `envoy` included) shows no VM panic and no failed proxy_on_* call."""
    seen = {id(envoy): len(envoy.log_text()) for envoy in envoys_made}
    yield
    for envoy in envoys_made:
        failures = wasm_failures(envoy.log_text()[seen.get(id(envoy), 0):])
        assert not failures, f"the filter's VM failed in {envoy.log_path}:\n" + "\n".join(failures[:5])
