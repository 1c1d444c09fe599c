"""Several filter instances in one Envoy: a listener each, built from one shipped example.

Operators put two MCP servers (two tenants) behind one Envoy by giving each listener its own
envoy.filters.http.wasm configuration, all with the same `vm_config` (so the same `vm_id`,
`mcp_auth` as shipped): the instances then share one VM per worker and, above all, one
shared-data space. This builds that Envoy from an example file: its listener is copied once per
`FilterInstance` (own name, port, stat prefix, plugin configuration and, optionally, HCM
settings); the clusters the instances name are the example's own, moved to local ports, plus
any others, added as plain-HTTP loopback clusters shaped like the example's `idp`.

Everything else is `Envoy`'s: the example's admin, wasm file, VM environment and
`config_patch`, the log, `stats()`, `audit_lines()`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .envoy import (
    EXAMPLE_CONFIG,
    IDP_CLUSTER,
    Envoy,
    http_connection_manager,
    load_example,
    wasm_filter_config,
)
from .net import LOOPBACK, free_port, port_accepts


@dataclass(frozen=True)
class FilterInstance:
    """One filter instance: a listener of its own with its own plugin configuration.

    `hcm`: HttpConnectionManager fields set on this listener only (a value of None removes the
    field, i.e. Envoy's default), e.g. {"normalize_path": None}."""

    name: str
    plugin_config: dict[str, Any]
    listener_port: int = field(default_factory=free_port)
    hcm: Mapping[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.listener_port}"


def with_clusters(plugin_config: dict[str, Any], renames: Mapping[str, str]) -> dict[str, Any]:
    """A copy of a plugin configuration whose callouts use other clusters: every `cluster`
    member named in `renames` (old -> new), e.g. {"idp": "idp_b", "sts": "sts_b"}."""

    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (renames.get(v, v) if k == "cluster" and isinstance(v, str) else rename(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return value

    return rename(copy.deepcopy(plugin_config))


def _instance_listener(template: dict[str, Any], instance: FilterInstance) -> dict[str, Any]:
    listener = copy.deepcopy(template)
    listener["name"] = f"mcp_{instance.name}"
    listener["address"]["socket_address"].update(address=LOOPBACK, port_value=instance.listener_port)
    hcm = http_connection_manager(listener)
    hcm["stat_prefix"] = f"mcp_{instance.name}"
    for name, value in instance.hcm.items():
        if value is None:
            hcm.pop(name, None)
        else:
            hcm[name] = value
    wasm_filter_config(listener)["configuration"]["value"] = json.dumps(instance.plugin_config, indent=2)
    return listener


def _loopback_cluster(template: dict[str, Any], name: str, port: int) -> dict[str, Any]:
    """A copy of the example's `idp` cluster (STATIC, plain HTTP) named `name`, at `port`."""
    cluster = copy.deepcopy(template)
    cluster["name"] = cluster["load_assignment"]["cluster_name"] = name
    cluster.pop("transport_socket", None)
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (lb_endpoint,) = endpoints["lb_endpoints"]
    lb_endpoint["endpoint"]["address"]["socket_address"].update(address=LOOPBACK, port_value=port)
    return cluster


class MultiEnvoy(Envoy):
    """One Envoy running several filter instances (`instances`, a listener each, in order; the
    first is also `url`/`listener_port`). Same VM configuration for all, hence the same `vm_id`."""

    def __init__(self, instances: Sequence[FilterInstance], *, workdir: Path, upstream_port: int,
                 clusters: Mapping[str, int], example: Path = EXAMPLE_CONFIG,
                 env: Mapping[str, str | None] | None = None, vm_env: dict[str, Any] | None = None,
                 config_patch: Callable[[dict[str, Any]], None] | None = None,
                 admin_port: int | None = None) -> None:
        """`clusters`: every cluster the instances' plugin configurations name -> local port; it
        must hold `idp` (the example's own). Those the example has are moved to their port (TLS
        removed), the others added. `config_patch` runs after the listeners are built."""
        if not instances:
            raise ValueError("a MultiEnvoy needs at least one instance")
        if len({i.name for i in instances}) != len(instances):
            raise ValueError("instance names must differ")
        self.instances = list(instances)
        own = {c["name"] for c in load_example(example)["static_resources"]["clusters"]}
        moved = {name: port for name, port in clusters.items() if name in own and name != IDP_CLUSTER}
        added = {name: port for name, port in clusters.items() if name not in own}

        def build(config: dict[str, Any]) -> None:
            resources = config["static_resources"]
            (template,) = resources["listeners"]
            resources["listeners"] = [_instance_listener(template, i) for i in self.instances]
            (idp,) = [c for c in resources["clusters"] if c["name"] == IDP_CLUSTER]
            resources["clusters"] += [_loopback_cluster(idp, name, port) for name, port in added.items()]
            if config_patch is not None:
                config_patch(config)

        first = self.instances[0]
        super().__init__(first.plugin_config, workdir=workdir, upstream_port=upstream_port,
                         idp_port=clusters[IDP_CLUSTER], listener_port=first.listener_port, admin_port=admin_port,
                         example=example, clusters=moved, env=env, vm_env=vm_env, config_patch=build)

    def instance(self, name: str) -> FilterInstance:
        (found,) = [i for i in self.instances if i.name == name]
        return found

    def url_of(self, name: str) -> str:
        return self.instance(name).url

    def is_ready(self) -> bool:
        """Admin says LIVE and every instance's listener accepts connections."""
        ready = httpx.get(f"{self.admin_url}/ready", timeout=1).status_code == 200
        return ready and all(port_accepts(i.listener_port) for i in self.instances)

