"""Test rig for mcp-auth-filter: a signing IdP, a real MCP upstream, and Envoy from envoy/envoy.yaml."""

from .config import PROVIDER, prm_url, provider, resource_url, standard_plugin_config, with_key_source
from .envoy import Envoy, EnvoyFailed, WasmMissing, example_plugin_config, require_wasm
from .idp import IdentityProvider
from .mcp_upstream import MARKER_HEADER, McpUpstream
from .net import free_port, wait_until

__all__ = [
    "MARKER_HEADER", "PROVIDER", "Envoy", "EnvoyFailed", "IdentityProvider", "McpUpstream", "WasmMissing",
    "example_plugin_config", "free_port", "prm_url", "provider", "require_wasm", "resource_url",
    "standard_plugin_config", "wait_until", "with_key_source",
]
