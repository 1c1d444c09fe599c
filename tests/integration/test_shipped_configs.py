"""Every shipped Envoy configuration has run: each one harness/shipped.py finds under envoy/ and
deploy/ (bootstraps, the Kubernetes ConfigMap's envoy.yaml, Istio WasmPlugins and EnvoyFilters;
docker-compose.yml mounts deploy/compose/envoy.yaml), found by glob, so a new file is picked up
without a change here.

- `envoy --mode validate` loads each one (with the built module; Envoy loads the filter, which
  parses its plugin configuration).
- Each one is started (harness/shipped_stack.py: its own plugin configuration, its clusters moved
  to this run's IdP, STS where it exchanges tokens, and MCP server) and gets one allowed request
  (a tools/call with a valid token reaches the MCP server as the token's user, with an exchanged
  token where the file exchanges) and one denied request (no token: the filter's 401 challenge,
  nothing reaches the MCP server).
- A file this start cannot run (another filter in front decides, another kind of server is
  needed) is named in STARTED_ELSEWHERE with the suite that starts it, and that suite must exist:
  a new file neither started here nor mapped fails the start test with what to do.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness import McpUpstream
from harness.checks import new_marker
from harness.envoy import REPO, validate_config
from harness.mcp_policy import modern_post, post_headers, tool_call
from harness.mcp_upstream import header_values
from harness.shipped import ShippedConfig, environment_names, shipped_configs
from harness.shipped_stack import ShippedStack, Unsupported, write_bootstrap

INTEGRATION = Path(__file__).parent
COMPOSE = REPO / "docker-compose.yml"

# name -> the test that starts it with an allowed and a denied request, and why not here.
STARTED_ELSEWHERE: dict[str, tuple[str, str]] = {
    "envoy/browser-login.yaml": (
        "test_browser_login.py::test_mcp_client_with_its_own_oauth_still_logs_in",
        "Envoy's OAuth2 filter answers a request without a session before mcp-auth-filter sees it; "
        "that suite logs a browser in at the dev AS and runs an OAuth MCP client"),
    "envoy/rate-limits-global.yaml": (
        "test_rate_limits.py::test_the_global_user_limit_holds_across_envoys_and_workers",
        "its ratelimit filter asks a rate-limit service (gRPC, Redis counters) and refuses with 503 without one; "
        "that suite runs a stand-in service shared by two Envoys: calls under the limit pass, over it get 429"),
    "envoy/multi-server.yaml": (
        "test_multi_server.py::test_a_token_of_one_server_is_refused_by_the_other",
        "two MCP servers by path, a wasm instance each (each route disables the other's), two IdPs and two STSs; "
        "that suite runs both: each server's token is refused by the other's instance and works on its own"),
}

SHIPPED = shipped_configs()
STARTED_HERE = [s for s in SHIPPED if s.name not in STARTED_ELSEWHERE]


def ids(configs: list[ShippedConfig]) -> list[str]:
    return [c.name for c in configs]


def placeholder_environment(config: ShippedConfig) -> dict[str, str | None]:
    return {name: f"validate-only-{name.lower()}" for name in environment_names(config.bootstrap)}


# ---- found -----------------------------------------------------------------------------------

def test_every_shipped_configuration_is_found() -> None:
    names = ids(SHIPPED)
    assert len(names) == len(set(names)), names
    assert {"envoy/envoy.yaml", "envoy/okta-same-idp.yaml", "envoy/google-sts.yaml", "envoy/browser-login.yaml",
            "deploy/compose/envoy.yaml", "deploy/kubernetes/envoy-configmap.yaml#envoy.yaml",
            "deploy/istio/wasmplugin.yaml#WasmPlugin/mcp-auth-filter",
            "deploy/istio/wasmplugin-google-sts.yaml#WasmPlugin/mcp-auth-filter",
            "deploy/istio/envoyfilter-mcp-gate.yaml#EnvoyFilter/mcp-auth-filter-mcp-gate"} <= set(names)
    # Every YAML file under envoy/ holding typed Envoy configuration ("@type") is found as one
    # (envoy/ratelimit/ holds the rate-limit service's own configuration, which has none).
    typed = {p for p in (REPO / "envoy").rglob("*.yaml") if '"@type"' in p.read_text()}
    assert typed and typed <= {s.source for s in SHIPPED}


def test_compose_runs_a_shipped_configuration() -> None:
    envoy = yaml.safe_load(COMPOSE.read_text())["services"]["envoy"]
    mounted = {v.split(":")[1]: v.split(":")[0].removeprefix("./") for v in envoy["volumes"]}
    config_file = envoy["command"][envoy["command"].index("-c") + 1]
    assert mounted[config_file] in ids(SHIPPED)


def test_started_elsewhere_names_real_tests_of_shipped_files() -> None:
    for name, (where, why) in STARTED_ELSEWHERE.items():
        assert name in ids(SHIPPED), f"{name} is mapped but no longer shipped"
        module, _, function = where.partition("::")
        tree = ast.parse((INTEGRATION / module).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert function in defined, f"{name}: {where} does not exist"
        assert Path(name.split("#")[0]).name in (INTEGRATION / module).read_text(), f"{where} does not run {name}"
        assert why


# ---- validate ----------------------------------------------------------------------------------

@pytest.mark.parametrize("config", SHIPPED, ids=ids(SHIPPED))
def test_envoy_validates(config: ShippedConfig, tmp_path: Path) -> None:
    path = write_bootstrap(config.bootstrap, tmp_path / "envoy.yaml")
    result = validate_config(path, env=placeholder_environment(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configured for resource" in result.stdout + result.stderr, "the filter did not load its configuration"


# ---- start: one allowed request, one denied ----------------------------------------------------

@pytest.fixture
def started(request: pytest.FixtureRequest, upstream: McpUpstream, tmp_path: Path) -> Iterator[ShippedStack]:
    config: ShippedConfig = request.param
    with ExitStack() as stack:
        try:
            running = ShippedStack(config, upstream, tmp_path, stack)
        except (Unsupported, KeyError) as e:
            pytest.fail(f"{config.name}: no test starts it ({type(e).__name__}: {e}). Make the start in "
                        "tests/integration/test_shipped_configs.py run it, or start it with an allowed and a denied "
                        "request in a suite of its own and name that test in STARTED_ELSEWHERE.")
        yield running


@pytest.mark.parametrize("started", STARTED_HERE, ids=ids(STARTED_HERE), indirect=True)
def test_started_config_allows_and_denies(started: ShippedStack, upstream: McpUpstream) -> None:
    token = started.mint(sub="shipped-user", email="shipped@example.com")
    allowed_marker = new_marker()
    body, headers = modern_post(token, tool_call("whoami"), allowed_marker)
    allowed = httpx.post(started.endpoint, content=body, headers=headers, timeout=15)

    denied_marker = new_marker()
    denied_headers = post_headers("", denied_marker)
    del denied_headers["authorization"]
    denied = httpx.post(started.endpoint, content=body, headers=denied_headers, timeout=15)

    assert allowed.status_code == 200, allowed.text
    (seen,) = upstream.seen(allowed_marker)
    assert header_values(seen, "x-mcp-user-sub") == ["shipped-user"]
    authorization = header_values(seen, "authorization")
    if started.sts is None:
        assert authorization in ([], [f"Bearer {token}"])
    else:
        assert len(authorization) == 1 and token not in authorization[0], "the backend token is not the client's"
        assert [c.ok for c in started.sts.calls] == [True]
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Bearer resource_metadata=")
    assert upstream.seen(denied_marker) == []


def _endpoint_ports(cluster: dict[str, Any]) -> list[int]:
    endpoints = (cluster.get("load_assignment") or {}).get("endpoints") or []
    return [lb["endpoint"]["address"]["socket_address"]["port_value"]
            for group in endpoints for lb in group.get("lb_endpoints") or []]


def _clusters_to_443(config: ShippedConfig) -> list[dict[str, Any]]:
    """The file's own clusters (as shipped, not as patched to run here) that reach port 443."""
    documents = [d for d in yaml.safe_load_all(config.source.read_text()) if isinstance(d, dict)]
    bootstraps = [d for d in documents if "static_resources" in d] + [
        yaml.safe_load(d["data"]["envoy.yaml"]) for d in documents
        if d.get("kind") == "ConfigMap" and "envoy.yaml" in (d.get("data") or {})]
    return [c for b in bootstraps for c in b["static_resources"].get("clusters") or []
            if 443 in _endpoint_ports(c)]


WITH_CLUSTERS = [s for s in SHIPPED if "static_resources" in s.bootstrap]


def test_the_shipped_remote_idps_and_stss_are_reached_on_443() -> None:
    """The TLS check below is not vacuous: the Google STS and the Kubernetes IdP clusters are in it."""
    names = {(c.source.name, cluster["name"]) for c in WITH_CLUSTERS for cluster in _clusters_to_443(c)}
    assert ("google-sts.yaml", "google_sts") in names, names
    assert any(source == "envoy-configmap.yaml" for source, _ in names), names


@pytest.mark.parametrize("config", WITH_CLUSTERS, ids=ids(WITH_CLUSTERS))
def test_every_cluster_to_port_443_is_tls_with_sni_and_validation(config: ShippedConfig) -> None:
    """`https://` in a callout URI is not TLS: the cluster is (security review, issue 9, item 8)."""
    for cluster in _clusters_to_443(config):
        socket = cluster.get("transport_socket") or {}
        assert socket.get("name") == "envoy.transport_sockets.tls", (config.name, cluster["name"])
        tls = socket["typed_config"]
        assert tls.get("sni"), (config.name, cluster["name"], "no SNI")
        validation = (tls.get("common_tls_context") or {}).get("validation_context") or {}
        assert validation.get("trusted_ca"), (config.name, cluster["name"], "certificates not validated")
