"""Plugin configurations for the filter: the contract's standard one, and envoy.yaml's own."""

from __future__ import annotations

import copy
from typing import Any

from .net import LOOPBACK

PROVIDER = "test_idp"  # provider name in the standard configuration
CLUSTER_IDP = "idp"  # Envoy cluster the filter's JWKS callouts use (as in envoy/envoy.yaml)


def resource_url(envoy_port: int) -> str:
    return f"http://{LOOPBACK}:{envoy_port}/mcp"


def prm_url(envoy_port: int) -> str:
    """The path-inserted RFC 9728 metadata URL of the resource."""
    return f"http://{LOOPBACK}:{envoy_port}/.well-known/oauth-protected-resource/mcp"


def standard_plugin_config(*, envoy_port: int, idp_port: int) -> dict[str, Any]:
    """The configuration from docs/contract.md, with this run's ports."""
    issuer = f"http://{LOOPBACK}:{idp_port}"
    resource = resource_url(envoy_port)
    return {
        "resource": resource,
        "resource_name": "Demo MCP server",
        "authorization_servers": [issuer],
        "scopes_supported": ["mcp:tools:call", "mcp:tools:list"],
        "required_scopes": ["mcp:tools:call"],
        "bypass_paths": [{"exact": "/healthz"}, {"prefix": "/public/"}],
        "jwt_cache_config": {"jwt_cache_size": 10000},
        "max_token_bytes": 16384,
        "providers": {
            PROVIDER: {
                "issuer": issuer,
                "audiences": [resource],
                "remote_jwks": {
                    "http_uri": {"uri": f"{issuer}/jwks", "cluster": CLUSTER_IDP, "timeout": "5s"},
                    "cache_duration": "600s",
                    "failed_refetch_duration": "1s",
                    "unknown_kid_refetch_interval": "30s",
                },
                "clock_skew_seconds": 60,
                "claim_to_headers": [
                    {"header_name": "x-mcp-user-sub", "claim_name": "sub"},
                    {"header_name": "x-mcp-user-email", "claim_name": "email"},
                ],
            }
        },
    }


def provider(config: dict[str, Any], name: str = PROVIDER) -> dict[str, Any]:
    return config["providers"][name]


def with_key_source(config: dict[str, Any], **source: Any) -> dict[str, Any]:
    """A copy of `config` whose provider uses exactly the given key source
    (remote_jwks=..., local_jwks=... or oidc_discovery=...)."""
    config = copy.deepcopy(config)
    prov = provider(config)
    for name in ("remote_jwks", "local_jwks", "oidc_discovery"):
        prov.pop(name, None)
    prov.update(source)
    return config


def rebase_urls(value: Any, origins: dict[str, str]) -> Any:
    """Rewrite every string starting with one of `origins`' keys to start with its value."""
    if isinstance(value, dict):
        return {k: rebase_urls(v, origins) for k, v in value.items()}
    if isinstance(value, list):
        return [rebase_urls(v, origins) for v in value]
    if isinstance(value, str):
        for old, new in origins.items():
            if value == old or value.startswith(old + "/"):
                return new + value[len(old):]
    return value
