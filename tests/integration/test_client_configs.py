"""deploy/clients/: the VS Code and Claude Code configurations name exactly the MCP resources the
shipped configurations serve (an MCP client refuses metadata whose `resource` differs from the
URL it was given), over the streamable HTTP transport."""

from __future__ import annotations

import json
import re

import yaml

from harness.envoy import OKTA_EXAMPLE, REPO, plugin_config_of

CLIENTS = REPO / "deploy" / "clients"


def served_resources() -> set[str]:
    istio = next(d for d in yaml.safe_load_all((REPO / "deploy" / "istio" / "wasmplugin.yaml").read_text())
                 if d and d["kind"] == "WasmPlugin")
    return {plugin_config_of(OKTA_EXAMPLE)["resource"],  # tests/demo.py --keep-running
            plugin_config_of(REPO / "deploy" / "compose" / "envoy.yaml")["resource"],
            istio["spec"]["pluginConfig"]["resource"]}


def test_vscode_servers_are_http_and_served() -> None:
    config = json.loads((CLIENTS / "vscode-mcp.json").read_text())
    servers = config["servers"]
    assert {s["type"] for s in servers.values()} == {"http"}
    assert {s["url"] for s in servers.values()} == served_resources()


def test_claude_code_commands_use_http_transport_and_served_urls() -> None:
    commands = [line.lstrip("# ") for line in (CLIENTS / "claude-code.sh").read_text().splitlines()
                if line.lstrip("# ").startswith("claude mcp add")]
    assert commands and all("--transport http" in c for c in commands)
    urls = {re.search(r"(https?://\S+/mcp)", c).group(1) for c in commands}  # type: ignore[union-attr]  # no URL: the test fails
    assert urls == served_resources()
