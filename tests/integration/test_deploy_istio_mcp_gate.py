"""deploy/istio/envoyfilter-mcp-gate.yaml: the filter with its MCP gate on Istio, where the
WasmPlugin API cannot set `allow_on_headers_stop_iteration`.

- The manifest holds together with the WasmPlugin it replaces: the same workload, inbound only,
  the same module, secret path and plugin configuration plus the `mcp` block, fail closed, and an
  HTTP filter whose ECDS name is the extension's. No WasmPlugin carries an `mcp` block: without
  the flag, it could not work (the last test shows what would happen).
- Run for real: the EXTENSION_CONFIG's typed config (its code the built module instead of the
  OCI image, its URLs moved to this run's IdP and STS, harness/shipped_stack.py) is served to Envoy
  by ECDS, from a file, under the extension's name, and the HTTP_FILTER patch's filter, inserted
  first as INSERT_FIRST does, finds it by that name (config_discovery, the manifest's type_urls),
  in front of an MCP server: an allowed tools/call reaches the server, a tools/call the rules deny
  is refused with 403 and never reaches it, and the same denied tool is allowed for a caller in
  the "dba" group.
- The same typed config without the flag: an MCP POST waits for a body that never reaches the
  filter, times out (408, after mcp.body_timeout, here shortened to 2 s), and Envoy's log carries
  the filter's warning naming the missing setting.
Schema validation of the manifest: test_manifest_schemas.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness import McpUpstream
from harness.checks import new_marker
from harness.envoy import REPO, WASM_FILTER, example_hcm
from harness.mcp_policy import modern_post, tool_call
from harness.raw_post import post_in_pieces
from harness.shipped import WASM_TYPE, ShippedConfig, plugin_configuration, shipped_configs, wasm_extensions
from harness.shipped_stack import ShippedStack

ISTIO = REPO / "deploy" / "istio"
MANIFEST = ISTIO / "envoyfilter-mcp-gate.yaml"
NO_BODY_WARNING = "an MCP request body never reached the filter"
ECDS_RESOURCE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
SHORT_BODY_TIMEOUT = "2s"


def istio_documents() -> list[dict[str, Any]]:
    return [d for path in sorted(ISTIO.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def envoy_filter() -> dict[str, Any]:
    (document,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert document["kind"] == "EnvoyFilter"
    return document


def patches(apply_to: str) -> list[dict[str, Any]]:
    return [p for p in envoy_filter()["spec"]["configPatches"] if p["applyTo"] == apply_to]


def extension() -> dict[str, Any]:
    (found,) = wasm_extensions(envoy_filter())
    return found


def http_filter_patch() -> dict[str, Any]:
    (found,) = patches("HTTP_FILTER")
    return found


def wasm_plugin() -> dict[str, Any]:
    (found,) = [d for d in yaml.safe_load_all((ISTIO / "wasmplugin.yaml").read_text()) if d]
    return found


def shipped() -> ShippedConfig:
    (found,) = [c for c in shipped_configs() if c.source == MANIFEST]
    return found


# ---- the manifest ---------------------------------------------------------------------------

def test_it_replaces_the_wasm_plugin_for_the_same_inbound_workload() -> None:
    spec, plugin = envoy_filter()["spec"], wasm_plugin()["spec"]
    assert envoy_filter()["metadata"]["namespace"] == wasm_plugin()["metadata"]["namespace"]
    assert spec["workloadSelector"]["labels"] == plugin["selector"]["matchLabels"]
    assert plugin["match"] == [{"mode": "SERVER"}]
    assert [p["match"]["context"] for p in spec["configPatches"]] == ["SIDECAR_INBOUND", "SIDECAR_INBOUND"]
    assert [p["applyTo"] for p in spec["configPatches"]] == ["EXTENSION_CONFIG", "HTTP_FILTER"]
    config = extension()["typed_config"]["config"]
    assert config["vm_config"]["code"]["remote"]["http_uri"]["uri"] == plugin["url"]
    host_keys = [e["name"] for e in plugin["vmConfig"]["env"] if e["valueFrom"] == "HOST"]
    assert config["vm_config"]["environment_variables"] == {"host_env_keys": host_keys}  # no inline value
    gate = plugin_configuration(extension()["typed_config"])
    assert "mcp" in gate and {k: v for k, v in gate.items() if k != "mcp"} == plugin["pluginConfig"]


def test_it_holds_headers_for_the_body_and_fails_closed() -> None:
    config = extension()["typed_config"]["config"]
    assert config["allow_on_headers_stop_iteration"] is True
    assert config["failure_policy"] == "FAIL_CLOSED" and "fail_open" not in config
    assert extension()["typed_config"]["@type"] == WASM_TYPE


def test_the_http_filter_finds_the_extension_by_name_first_in_the_chain() -> None:
    patch = http_filter_patch()
    hcm = patch["match"]["listener"]["filterChain"]["filter"]["name"]
    assert hcm == "envoy.filters.network.http_connection_manager"
    assert patch["patch"]["operation"] == "INSERT_FIRST"
    discovery = patch["patch"]["value"]["config_discovery"]
    assert patch["patch"]["value"]["name"] == extension()["name"]
    assert discovery["type_urls"] == [extension()["typed_config"]["@type"]]
    assert discovery["config_source"]["initial_fetch_timeout"] == "0s"  # wait for it: no listener without it
    assert "default_config" not in discovery  # nothing to fall back to


def test_no_wasm_plugin_carries_an_mcp_gate() -> None:
    plugins = [d for d in istio_documents() if d["kind"] == "WasmPlugin"]
    assert plugins and all("mcp" not in p["spec"]["pluginConfig"] for p in plugins)


# ---- run for real ---------------------------------------------------------------------------

ConfigEdit = Callable[[dict[str, Any]], None]


def through_ecds(ecds_file: Path, edit: ConfigEdit | None = None) -> ConfigEdit:
    """A `config_patch` that moves the wasm filter's typed config (the manifest's, as the stack
    patched it) into an ECDS resource named like the extension, in a file, and puts the manifest's
    HTTP filter first in the chain, its config source that file instead of istiod's ADS."""

    def patch(config: dict[str, Any]) -> None:
        filters = example_hcm(config)["http_filters"]
        (static,) = [f for f in filters if f["name"] == WASM_FILTER]
        typed_config = copy.deepcopy(static["typed_config"])
        if edit is not None:
            edit(typed_config)
        resource = {"@type": ECDS_RESOURCE, "name": extension()["name"], "typed_config": typed_config}
        ecds_file.write_text(yaml.safe_dump({"version_info": "1", "resources": [resource]}, sort_keys=False))
        dynamic = copy.deepcopy(http_filter_patch()["patch"]["value"])
        source = dynamic["config_discovery"]["config_source"]
        assert source.pop("ads") == {}
        source["path_config_source"] = {"path": str(ecds_file)}
        filters.remove(static)
        filters.insert(0, dynamic)
        # An xDS subscription needs a node identity (a sidecar has Istio's).
        config["node"] = {"id": "sidecar~127.0.0.1~mcp-server.mcp~mcp.svc.cluster.local", "cluster": "mcp-server.mcp"}

    return patch


def without_the_flag(typed_config: dict[str, Any]) -> None:
    """What a WasmPlugin would give Envoy: no allow_on_headers_stop_iteration (and a short body
    timeout, so the test waits 2 s, not 10)."""
    config = typed_config["config"]
    assert config.pop("allow_on_headers_stop_iteration") is True
    plugin = json.loads(config["configuration"]["value"])
    plugin["mcp"]["body_timeout"] = SHORT_BODY_TIMEOUT
    config["configuration"]["value"] = json.dumps(plugin)


@pytest.fixture
def gate(upstream: McpUpstream, tmp_path: Path) -> Iterator[ShippedStack]:
    with ExitStack() as stack:
        yield ShippedStack(shipped(), upstream, tmp_path, stack, config_patch=through_ecds(tmp_path / "ecds.yaml"))


@pytest.fixture
def flagless(upstream: McpUpstream, tmp_path: Path) -> Iterator[ShippedStack]:
    with ExitStack() as stack:
        yield ShippedStack(shipped(), upstream, tmp_path, stack,
                           config_patch=through_ecds(tmp_path / "ecds.yaml", without_the_flag))


def call(stack: ShippedStack, token: str, name: str, arguments: dict[str, Any] | None = None) -> tuple[int, str]:
    marker = new_marker()
    body, headers = modern_post(token, tool_call(name, arguments), marker)
    response = httpx.post(stack.endpoint, content=body, headers=headers, timeout=15)
    return response.status_code, marker


def test_ecds_served_gate_lets_allowed_tools_through_and_refuses_denied_ones(gate: ShippedStack,
                                                                             upstream: McpUpstream) -> None:
    analyst = gate.mint(sub="analyst", groups=["analysts"])
    dba = gate.mint(sub="dba-user", groups=["dba"])

    allowed, allowed_marker = call(gate, analyst, "whoami")
    denied, denied_marker = call(gate, analyst, "drop_table", {"table": "users"})
    admin, admin_marker = call(gate, dba, "drop_table", {"table": "users"})

    assert (allowed, denied, admin) == (200, 403, 200)
    assert len(upstream.seen(allowed_marker)) == 1 and len(upstream.seen(admin_marker)) == 1
    assert upstream.seen(denied_marker) == []
    assert gate.envoy.counter("mcp_auth.mcp.denied.admins-only") == 1
    assert gate.envoy.counter("mcp_auth.mcp.allowed.admins-only") == 1
    assert NO_BODY_WARNING not in gate.envoy.log_text()


def test_without_the_flag_an_mcp_post_times_out_with_the_warning(flagless: ShippedStack,
                                                                 upstream: McpUpstream) -> None:
    marker = new_marker()
    body, headers = modern_post(flagless.mint(sub="analyst"), tool_call("whoami"), marker)

    answer = post_in_pieces(flagless.envoy.listener_port, httpx.URL(flagless.endpoint).path, headers, [body])

    assert answer.status == 408, answer.body
    assert answer.seconds >= float(SHORT_BODY_TIMEOUT.removesuffix("s")) - 0.1
    assert upstream.seen(marker) == []
    log = flagless.envoy.log_text()
    assert NO_BODY_WARNING in log and "allow_on_headers_stop_iteration" in log
