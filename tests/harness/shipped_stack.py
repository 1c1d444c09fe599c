"""A shipped Envoy configuration (harness/shipped.py) started in front of the MCP test server,
with a test IdP, and a test STS where it exchanges tokens.

The plugin configuration is the file's own; only its URLs follow the servers: the listener's
origin moves to this run's port, the issuer and JWKS URI become the test IdP's, the token
endpoint the test STS's endpoint of the same flavour (`/token` for a client that authenticates,
RFC 8693 as Okta speaks it; `/v1/token` without client authentication, as Google's STS). Every
callout cluster goes to the server behind it. Where one cluster carries both the JWKS and the
token endpoint (one Okta org, as in Istio), the token endpoint gets a cluster of its own, since
the test IdP and STS listen on different ports.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml

from .envoy import WASM_FILTER, Envoy, example_plugin_config, plugin_config_of
from .idp import IdentityProvider
from .mcp_upstream import McpUpstream
from .net import free_port
from .shipped import WASM_TYPE, ShippedConfig, callout_clusters, environment_names
from .sts import GOOGLE_TOKEN_PATH, OAUTH_TOKEN_PATH, SecurityTokenService

SPLIT_TOKEN_CLUSTER = "test_token_endpoint"


class Unsupported(Exception):
    """This start cannot run the configuration (another suite must)."""


def write_bootstrap(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def check_one_filter(bootstrap: dict[str, Any]) -> None:
    """This start runs one listener whose HTTP filters hold one wasm filter, `envoy.filters.http.wasm`."""
    listeners = bootstrap.get("static_resources", {}).get("listeners", [])
    wasm = [f for listener in listeners for chain in listener.get("filter_chains", [])
            for network in chain.get("filters", []) for f in network.get("typed_config", {}).get("http_filters", [])
            if f.get("typed_config", {}).get("@type") == WASM_TYPE]
    if len(listeners) != 1 or [f["name"] for f in wasm] != [WASM_FILTER]:
        raise Unsupported(f"{len(listeners)} listener(s) with wasm filters {[f['name'] for f in wasm]}; "
                          f"this start runs one listener with one {WASM_FILTER}")


def single_provider(plugin: dict[str, Any]) -> dict[str, Any]:
    providers = list(plugin.get("providers", {}).values())
    if len(providers) != 1 or "remote_jwks" not in providers[0]:
        raise Unsupported("not exactly one provider with remote_jwks")
    provider: dict[str, Any] = providers[0]
    return provider


def token_path(plugin: dict[str, Any]) -> str | None:
    """The test STS endpoint that speaks like the configured one; None without token exchange."""
    exchange = plugin.get("token_exchange")
    if exchange is None:
        return None
    if exchange.get("grant", "token_exchange") != "token_exchange":
        raise Unsupported(f"grant {exchange['grant']}")
    no_client = exchange.get("client_auth", {}).get("method") == "none"
    return GOOGLE_TOKEN_PATH if no_client else OAUTH_TOKEN_PATH


def exchange_scopes(plugin: dict[str, Any]) -> tuple[str, ...]:
    """Every backend scope the configuration asks the STS for (per-tool narrowing included)."""
    scopes = list(plugin["token_exchange"].get("scopes", []))
    for rule in plugin.get("mcp", {}).get("rules", []):
        scopes += rule.get("exchange", {}).get("scopes", [])
    return tuple(dict.fromkeys(scopes))


def with_cluster_copy(bootstrap: dict[str, Any], name: str, copy_name: str) -> dict[str, Any]:
    config = copy.deepcopy(bootstrap)
    clusters = config["static_resources"]["clusters"]
    (cluster,) = [c for c in clusters if c["name"] == name]
    twin = copy.deepcopy(cluster)
    twin["name"] = twin["load_assignment"]["cluster_name"] = copy_name
    clusters.append(twin)
    return config


class ShippedStack:
    """`config` running in Envoy in front of `upstream`; everything it starts is stopped by
    `stack`. `config_patch` edits the patched Envoy configuration before it is written (harness
    Envoy's option of that name)."""

    def __init__(self, config: ShippedConfig, upstream: McpUpstream, workdir: Path, stack: ExitStack,
                 config_patch: Callable[[dict[str, Any]], None] | None = None) -> None:
        bootstrap = config.bootstrap
        check_one_filter(bootstrap)
        original = plugin_config_of(write_bootstrap(bootstrap, workdir / "as-shipped.yaml"))
        path = token_path(original)
        jwks_cluster = single_provider(original)["remote_jwks"]["http_uri"]["cluster"]
        token_cluster = original["token_exchange"]["token_endpoint"]["cluster"] if path else None
        if token_cluster is not None and token_cluster == jwks_cluster:
            bootstrap = with_cluster_copy(bootstrap, jwks_cluster, SPLIT_TOKEN_CLUSTER)
            token_cluster = SPLIT_TOKEN_CLUSTER
        example = write_bootstrap(bootstrap, workdir / "shipped.yaml")

        self.idp = IdentityProvider()
        stack.callback(self.idp.stop)
        self.idp.start()
        listener_port = free_port()
        plugin = example_plugin_config(envoy_port=listener_port, idp_port=self.idp.port, example=example)
        provider = single_provider(plugin)
        self.audience: str = provider.get("audiences", [plugin["resource"]])[0]
        self.idp.audience = self.audience
        provider["issuer"] = self.idp.issuer
        provider["remote_jwks"]["http_uri"]["uri"] = self.idp.jwks_uri
        ports = {name: self.idp.port for name in callout_clusters(original) | {"idp"}}
        env: dict[str, str | None] = {name: secrets.token_urlsafe(16) for name in environment_names(bootstrap)}
        self.sts: SecurityTokenService | None = None
        if path is not None and token_cluster is not None:
            self.sts = self._start_sts(plugin, stack, env)
            plugin["token_exchange"]["token_endpoint"].update(cluster=token_cluster, uri=f"{self.sts.issuer}{path}")
            ports[token_cluster] = self.sts.port
        self.plugin = plugin
        self.envoy = Envoy(plugin, workdir=workdir / "envoy", upstream_port=upstream.port, idp_port=self.idp.port,
                           listener_port=listener_port, example=example, clusters=ports, env=env,
                           config_patch=config_patch)
        stack.callback(self.envoy.stop)
        self.envoy.start()

    def _start_sts(self, plugin: dict[str, Any], stack: ExitStack, env: dict[str, str | None]) -> SecurityTokenService:
        """The test STS, knowing the configured client; its secret goes where the file reads it."""
        exchange = plugin["token_exchange"]
        client = exchange.get("client_auth", {})
        secret = secrets.token_urlsafe(24)
        audience = exchange.get("audience", "")
        sts = SecurityTokenService(self.idp, subject_audiences=[self.audience],
                                   clients={client["client_id"]: secret} if "client_id" in client else {},
                                   audiences=(audience,), scopes=exchange_scopes(plugin),
                                   google_audience=audience, google_scopes=exchange_scopes(plugin))
        stack.callback(sts.stop)
        sts.start()
        if "client_secret_env" in client:
            env[client["client_secret_env"]] = secret
        return sts

    @property
    def endpoint(self) -> str:
        """The MCP endpoint (the resource's path) on this run's listener."""
        return f"{self.envoy.url}{httpx.URL(self.plugin['resource']).path}"

    def mint(self, **claims: Any) -> str:
        """A token the configuration accepts: its audience, its required scopes."""
        return self.idp.mint(scp=list(self.plugin.get("required_scopes", [])), **claims)
