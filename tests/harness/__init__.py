"""Test rig for mcp-auth-filter: a signing IdP, a real MCP upstream, a token-exchange STS, a backend
API, and Envoy started from the shipped example configurations (envoy/*.yaml)."""

from .backend import BackendApi
from .config import PROVIDER, prm_url, provider, resource_url, standard_plugin_config, with_key_source
from .envoy import (
    GOOGLE_EXAMPLE,
    GOOGLE_STS_CLUSTER,
    OKTA_EXAMPLE,
    STS_CLUSTER,
    Envoy,
    EnvoyFailed,
    WasmMissing,
    example_plugin_config,
    require_wasm,
)
from .idp import IdentityProvider
from .mcp_upstream import MARKER_HEADER, McpUpstream
from .net import free_port, wait_until
from .sts import SecurityTokenService

__all__ = [
    "GOOGLE_EXAMPLE", "GOOGLE_STS_CLUSTER", "MARKER_HEADER", "OKTA_EXAMPLE", "PROVIDER", "STS_CLUSTER",
    "BackendApi", "Envoy", "EnvoyFailed", "IdentityProvider", "McpUpstream", "SecurityTokenService",
    "WasmMissing", "example_plugin_config", "free_port", "prm_url", "provider", "require_wasm",
    "resource_url", "standard_plugin_config", "wait_until", "with_key_source",
]
