"""The Envoy configurations of `make bench`: listeners per case, clusters, the filters compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench_tokens import ISSUER, RESOURCE

REPO = Path(__file__).resolve().parents[2]
WASM = REPO / "target/wasm32-wasip1/release/mcp_auth_filter.wasm"
NOOP_WASM = REPO / "tests/bench/noop-filter/target/wasm32-wasip1/release/noop_filter.wasm"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
STS_ANSWER = json.dumps({"access_token": "backend-token", "token_type": "Bearer",
                         "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "expires_in": 3600})


def cluster(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def listener(name: str, port: int, filters: list[dict[str, Any]], route: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": HCM_TYPE,
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, **route}]}]},
                "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}


def wasm_filter(vm_id: str, configuration: str, wasm: Path = WASM) -> dict[str, Any]:
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": vm_id, "root_id": "mcp_auth", "fail_open": False,
                   "allow_on_headers_stop_iteration": True,
                   "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(wasm)}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": configuration}}}}


def ours(vm_id: str, plugin: dict[str, Any]) -> dict[str, Any]:
    return wasm_filter(vm_id, json.dumps(plugin))


def probe(vm_id: str, probes: str) -> dict[str, Any]:
    """The no-op filter doing only the named host calls (tests/bench/noop-filter)."""
    return wasm_filter(vm_id, probes, NOOP_WASM)


def jwt_authn(jwks: str, cache: bool) -> dict[str, Any]:
    provider: dict[str, Any] = {"issuer": ISSUER, "audiences": [RESOURCE], "local_jwks": {"inline_string": jwks},
                                "forward": False}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 10000}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def plugin(jwks: str | None = None, cache: int = 10000, sts: str | None = None,
           remote_jwks_cluster: str | None = None, mcp: dict[str, Any] | None = None) -> dict[str, Any]:
    """Our plugin configuration: local keys (or remote through a cluster), optional exchange and MCP gate."""
    # The shipped claim headers; the bench's tokens have a sub and no email.
    provider: dict[str, Any] = {"issuer": ISSUER, "claim_to_headers": [
        {"header_name": "x-mcp-user-sub", "claim_name": "sub"},
        {"header_name": "x-mcp-user-email", "claim_name": "email"}]}
    if remote_jwks_cluster:
        provider["remote_jwks"] = {"http_uri": {"uri": "http://jwks.bench/keys", "cluster": remote_jwks_cluster,
                                                "timeout": "5s"}, "cache_duration": "600s"}
    else:
        provider["local_jwks"] = {"inline_string": jwks}
    doc: dict[str, Any] = {"resource": RESOURCE, "providers": {"bench": provider},
                           "jwt_cache_config": {"jwt_cache_size": cache}}
    if sts:
        doc["token_exchange"] = {
            "token_endpoint": {"uri": "http://sts.bench/token", "cluster": sts, "timeout": "5s"},
            "audience": "backend", "scopes": ["backend-api:read"], "client_auth": {"method": "none"}}
    if mcp:
        doc["mcp"] = mcp
    return doc


def mcp_rules(count: int) -> dict[str, Any]:
    """An MCP block with `count` rules; the benchmark's call is decided by the last one."""
    rules: list[dict[str, Any]] = [
        {"name": f"team-{i}", "methods": ["tools/call"], "names": [f"team{i}_*"],
         "claims": [{"claim": "groups", "contains": f"team-{i}"}], "required_scopes": ["bigquery:write"]}
        for i in range(count - 1)
    ]
    rules.append({"name": "read", "methods": ["tools/call"], "names": ["query_*", "list_*"],
                  "required_scopes": ["bigquery:read"]})
    return {"default_action": "deny", "rules": rules}


def sts_listener(name: str, port: int, delay_ms: int) -> dict[str, Any]:
    """An STS answering every exchange, after a fixed delay when `delay_ms` > 0."""
    filters = []
    if delay_ms:
        filters.append({"name": "envoy.filters.http.fault", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "delay": {"fixed_delay": f"{delay_ms / 1000:.3f}s", "percentage": {"numerator": 100}}}})
    return listener(name, port, filters, {"direct_response": {"status": 200, "body": {"inline_string": STS_ANSWER}}})


def origin_listener(port: int) -> dict[str, Any]:
    return listener("origin", port, [], {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}})


def envoy_doc(admin: int, listeners: list[dict[str, Any]], clusters: dict[str, int]) -> dict[str, Any]:
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": listeners,
                                 "clusters": [cluster(name, port) for name, port in clusters.items()]}}
