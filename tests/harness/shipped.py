"""The Envoy configurations the repository ships, found by glob, each made runnable here.

Found: every YAML document under envoy/ and deploy/ that is
  - an Envoy bootstrap (it has `static_resources`): envoy/*.yaml, deploy/compose/envoy.yaml, ...;
  - a ConfigMap holding one in its data (deploy/kubernetes/envoy-configmap.yaml's envoy.yaml);
  - an Istio WasmPlugin (its pluginConfig);
  - an Istio EnvoyFilter that adds a wasm EXTENSION_CONFIG (its typed config).
Runnable here: the wasm module is the build output (`vm_config.code.local`); nothing else of a
bootstrap changes. Istio resources have no bootstrap of their own, so each is put into
envoy/okta-same-idp.yaml in place of its wasm filter, as Istio puts it into a sidecar, with a
cluster for every cluster its plugin configuration names (Istio's outbound|443||<host>):
  - a WasmPlugin: pluginConfig as the JSON configuration, vmConfig.env HOST entries as
    host_env_keys, fail closed, and no allow_on_headers_stop_iteration (the API has no such field);
  - an EnvoyFilter: its typed config as written.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .envoy import OKTA_EXAMPLE, REPO, STS_CLUSTER, WASM_FILTER, WASM_PATH, load_example

ENVOY_DIR = REPO / "envoy"
DEPLOY_DIR = REPO / "deploy"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


@dataclass(frozen=True)
class ShippedConfig:
    """One shipped Envoy configuration. `name`: the file, and for a configuration inside a
    manifest, `#<data key>` or `#<kind>/<name>`."""

    name: str
    source: Path
    bootstrap: dict[str, Any]  # runnable here


def shipped_configs() -> list[ShippedConfig]:
    """Every Envoy configuration under envoy/ and deploy/, in file order."""
    found: list[ShippedConfig] = []
    for path in sorted([*ENVOY_DIR.rglob("*.yaml"), *DEPLOY_DIR.rglob("*.yaml")]):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict):
                found += list(_configs_in(path, document))
    return found


def _configs_in(path: Path, document: dict[str, Any]) -> Iterator[ShippedConfig]:
    name = str(path.relative_to(REPO))
    kind = document.get("kind")
    if "static_resources" in document:
        yield ShippedConfig(name, path, with_local_module(document))
    elif kind == "ConfigMap":
        for key, value in (document.get("data") or {}).items():
            inner = yaml.safe_load(value) if key.endswith((".yaml", ".yml")) else None
            if isinstance(inner, dict) and "static_resources" in inner:
                yield ShippedConfig(f"{name}#{key}", path, with_local_module(inner))
    elif kind == "WasmPlugin":
        spec = document["spec"]
        yield ShippedConfig(f"{name}#WasmPlugin/{document['metadata']['name']}", path,
                            istio_bootstrap(wasm_plugin_typed_config(spec), spec["pluginConfig"]))
    elif kind == "EnvoyFilter":
        for extension in wasm_extensions(document):
            typed_config = extension["typed_config"]
            yield ShippedConfig(f"{name}#EnvoyFilter/{document['metadata']['name']}", path,
                                istio_bootstrap(with_local_module(typed_config), plugin_configuration(typed_config)))


def with_local_module(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` whose every wasm VM loads the built module from disk."""
    config = copy.deepcopy(config)
    for vm_config in _values_of(config, "vm_config"):
        vm_config["code"] = {"local": {"filename": str(WASM_PATH)}}
    return config


def _values_of(value: Any, key: str) -> Iterator[dict[str, Any]]:
    """Every dict found under `key`, at any depth."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key and isinstance(v, dict):
                yield v
            yield from _values_of(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from _values_of(item, key)


def environment_names(config: dict[str, Any]) -> set[str]:
    """The process environment variables a bootstrap reads: the VMs' host_env_keys and the
    environment_variable of generic secrets (e.g. the OAuth2 filter's)."""
    names = {name for env in _values_of(config, "environment_variables") for name in env.get("host_env_keys", [])}
    for secret in _values_of(config, "secret"):
        if isinstance(secret.get("environment_variable"), str):
            names.add(secret["environment_variable"])
    return names


def callout_clusters(plugin_config: dict[str, Any]) -> set[str]:
    """Every cluster the plugin configuration sends callouts to."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("cluster"), str):
                found.add(value["cluster"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(plugin_config)
    return found


def plugin_configuration(typed_config: dict[str, Any]) -> dict[str, Any]:
    """The plugin configuration (JSON) inside a wasm filter's typed config."""
    return json.loads(typed_config["config"]["configuration"]["value"])


def wasm_extensions(envoy_filter: dict[str, Any]) -> list[dict[str, Any]]:
    """The wasm filter configurations an EnvoyFilter adds as EXTENSION_CONFIG (ECDS resources)."""
    return [p["patch"]["value"] for p in envoy_filter["spec"]["configPatches"]
            if p["applyTo"] == "EXTENSION_CONFIG" and p["patch"]["value"]["typed_config"]["@type"] == WASM_TYPE]


def wasm_plugin_typed_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The wasm filter Istio makes of a WasmPlugin, with the built module."""
    typed_config = copy.deepcopy(_okta_wasm_filter(load_example(OKTA_EXAMPLE))["typed_config"])
    config = typed_config["config"]
    config.pop("allow_on_headers_stop_iteration", None)
    config.pop("fail_open", None)
    config["failure_policy"] = "FAIL_CLOSED" if spec.get("failStrategy", "FAIL_CLOSE") == "FAIL_CLOSE" else "FAIL_OPEN"
    config["configuration"]["value"] = json.dumps(spec["pluginConfig"], indent=2)
    host_keys = [e["name"] for e in spec.get("vmConfig", {}).get("env", []) if e.get("valueFrom") == "HOST"]
    config["vm_config"].pop("environment_variables", None)
    if host_keys:
        config["vm_config"]["environment_variables"] = {"host_env_keys": host_keys}
    return with_local_module(typed_config)


def istio_bootstrap(typed_config: dict[str, Any], plugin_config: dict[str, Any]) -> dict[str, Any]:
    """envoy/okta-same-idp.yaml with `typed_config` as its wasm filter, and a cluster (shaped like
    its sts cluster) for each callout cluster it lacks."""
    config = load_example(OKTA_EXAMPLE)
    _okta_wasm_filter(config)["typed_config"] = copy.deepcopy(typed_config)
    clusters = config["static_resources"]["clusters"]
    (sts,) = [c for c in clusters if c["name"] == STS_CLUSTER]
    for name in sorted(callout_clusters(plugin_config) - {c["name"] for c in clusters}):
        cluster = copy.deepcopy(sts)
        cluster["name"] = cluster["load_assignment"]["cluster_name"] = name
        clusters.append(cluster)
    return config


def _okta_wasm_filter(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    (wasm,) = [f for f in hcm["typed_config"]["http_filters"] if f["name"] == WASM_FILTER]
    entry: dict[str, Any] = wasm  # the filter's own dict: edits reach `config`
    return entry
