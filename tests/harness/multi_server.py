"""Envoy from envoy/multi-server.yaml: several MCP servers on one listener, told apart by path,
each behind a wasm filter instance of its own (every route disables the instances that are not
its own).

Patched for a test run, and only this, so the file keeps being exercised as written:
  - the admin and listener addresses/ports;
  - every wasm instance's module path (made absolute);
  - the ports of the clusters named in `clusters` (name -> local port), and the plugin
    configurations' URLs that point at them or at the listener, moved along;
  - optionally, an instance's plugin configuration (`plugin_patch`), for a variant of the file.
`harness.envoy.Envoy` does the rest: the command line, readiness, the log and audit lines.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .config import rebase_urls
from .envoy import REPO, Envoy, http_connection_manager, load_example, require_wasm
from .net import LOOPBACK, free_port
from .process import ManagedProcess

MULTI_SERVER_EXAMPLE = REPO / "envoy" / "multi-server.yaml"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"

# Edits one instance's plugin configuration in place: (filter name, configuration).
PluginPatch = Callable[[str, dict[str, Any]], None]


def _only_listener(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    return listener


def wasm_instances(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `config` block of every wasm filter in the listener's chain, by filter name."""
    filters = http_connection_manager(_only_listener(config))["http_filters"]
    return {f["name"]: f["typed_config"]["config"] for f in filters if f["typed_config"]["@type"] == WASM_TYPE}


def plugin_configs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every instance's plugin configuration (the JSON document), by filter name."""
    return {name: json.loads(block["configuration"]["value"]) for name, block in wasm_instances(config).items()}


def _cluster_address(config: dict[str, Any], name: str) -> dict[str, Any]:
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (lb_endpoint,) = endpoints["lb_endpoints"]
    address: dict[str, Any] = lb_endpoint["endpoint"]["address"]["socket_address"]
    return address


def _origin(address: Mapping[str, Any]) -> str:
    return f"http://{address['address']}:{address['port_value']}"


def multi_server_config(*, listener_port: int, admin_port: int, clusters: Mapping[str, int],
                        example: Path = MULTI_SERVER_EXAMPLE,
                        plugin_patch: PluginPatch | None = None) -> dict[str, Any]:
    """`example` patched as the module docstring says."""
    config = copy.deepcopy(load_example(example))
    config["admin"]["address"]["socket_address"].update(address=LOOPBACK, port_value=admin_port)
    listener_address = _only_listener(config)["address"]["socket_address"]
    origins = {_origin(listener_address): f"http://{LOOPBACK}:{listener_port}"}
    listener_address.update(address=LOOPBACK, port_value=listener_port)
    for name, port in clusters.items():
        address = _cluster_address(config, name)
        origins[_origin(address)] = f"http://{LOOPBACK}:{port}"
        address.update(address=LOOPBACK, port_value=port)
    wasm = str(require_wasm().resolve())
    for name, block in wasm_instances(config).items():
        # A copy per instance: the file shares one vm_config by YAML alias.
        block["vm_config"] = copy.deepcopy(block["vm_config"])
        block["vm_config"]["code"]["local"]["filename"] = wasm
        plugin = rebase_urls(json.loads(block["configuration"]["value"]), origins)
        if plugin_patch is not None:
            plugin_patch(name, plugin)
        block["configuration"]["value"] = json.dumps(plugin, indent=2)
    return config


class MultiServerEnvoy(Envoy):
    """One Envoy running envoy/multi-server.yaml, patched (module docstring); not yet started.
    `plugins`: each instance's plugin configuration as it runs, by filter name."""

    def __init__(self, *, workdir: Path, clusters: Mapping[str, int], env: Mapping[str, str],
                 listener_port: int | None = None, example: Path = MULTI_SERVER_EXAMPLE,
                 plugin_patch: PluginPatch | None = None) -> None:
        self.listener_port = listener_port or free_port()
        self.admin_port = free_port()
        self.url = f"http://{LOOPBACK}:{self.listener_port}"
        self.admin_url = f"http://{LOOPBACK}:{self.admin_port}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "envoy.yaml"
        # Not Envoy.__init__: it patches a file with exactly one wasm filter; this one has several.
        ManagedProcess.__init__(self, log_path=self.workdir / "envoy.stderr.log",
                                environment={**os.environ, **env})
        config = multi_server_config(listener_port=self.listener_port, admin_port=self.admin_port,
                                     clusters=clusters, example=example, plugin_patch=plugin_patch)
        self.plugins = plugin_configs(config)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
