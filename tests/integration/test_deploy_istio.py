"""deploy/istio/ and deploy/kubernetes/, checked without a cluster:

- the manifests parse and hold together: the WasmPlugin runs at AUTHN, fails closed, on inbound
  traffic only, on the MCP server's pods; the client secret goes Secret -> istio-proxy container
  environment -> VM (vmConfig.env valueFrom HOST), never written in a manifest; each cluster the
  plugin configuration names is Istio's outbound cluster of a ServiceEntry with TLS origination;
  the plain-Envoy ConfigMap carries the same plugin configuration;
- both run for real: the WasmPlugin's pluginConfig exactly as written, loaded into Envoy with a
  cluster named like Istio's ("outbound|443||example.okta.com"), and the Kubernetes ConfigMap's
  envoy.yaml, each in front of an MCP server, with an Okta look-alike behind the cluster: the
  dev authorization servers under Okta's issuer URLs and paths (/oauth2/<id>/v1/keys, ...,
  aud "mcpserver"). The official MCP SDK client logs in at https://mcp.example.com/mcp (a
  transport maps the two public origins to this run's ports) and calls the backend as alice.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
import yaml

from harness import BackendApi, Envoy, McpUpstream, free_port
from harness.backend import StaticIssuer
from harness.dev_as import DevAuthorizationServer
from harness.envoy import OKTA_EXAMPLE, REPO, WASM_PATH, load_example, plugin_config_of, validate_config
from harness.net import LOOPBACK
from harness.oauth_login import MappedTransport, new_login, oauth_mcp_session, structured

ISTIO = REPO / "deploy" / "istio"
KUBERNETES = REPO / "deploy" / "kubernetes"
OKTA = "https://example.okta.com"
MCP_ISSUER = f"{OKTA}/oauth2/aus1mcpserver"
BACKEND_ISSUER = f"{OKTA}/oauth2/aus2backend"
RESOURCE = "https://mcp.example.com/mcp"
SECRET = secrets.token_urlsafe(24)


def documents(*paths: Path) -> list[dict[str, Any]]:
    found = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            found += [d for d in yaml.safe_load_all(file.read_text()) if d]
    return found


def one(kind: str, name: str | None = None, where: Path = ISTIO) -> dict[str, Any]:
    matches = [d for d in documents(where) if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def wasm_plugins() -> dict[str, dict[str, Any]]:
    return {f.name: next(d for d in documents(f) if d["kind"] == "WasmPlugin")
            for f in sorted(ISTIO.glob("wasmplugin*.yaml"))}


def plugin_clusters(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(cluster, URL) of every callout the plugin configuration makes."""
    pairs = [(p["remote_jwks"]["http_uri"]["cluster"], p["remote_jwks"]["http_uri"]["uri"])
             for p in config["providers"].values()]
    if "token_exchange" in config:
        endpoint = config["token_exchange"]["token_endpoint"]
        pairs.append((endpoint["cluster"], endpoint["uri"]))
    return pairs


def configmap_envoy_yaml() -> str:
    return one("ConfigMap", "mcp-envoy", KUBERNETES)["data"]["envoy.yaml"]


# ---- the manifests -------------------------------------------------------------------------

def test_every_manifest_parses_into_the_mcp_namespace() -> None:
    docs = documents(ISTIO, KUBERNETES)
    assert {d["kind"] for d in docs} >= {"Namespace", "Secret", "Deployment", "Service", "ServiceEntry",
                                         "DestinationRule", "WasmPlugin", "Gateway", "VirtualService", "ConfigMap"}
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "mcp", d["metadata"]


@pytest.mark.parametrize("name", ["wasmplugin.yaml", "wasmplugin-google-sts.yaml"])
def test_wasm_plugin_fails_closed_at_authn_on_inbound_traffic(name: str) -> None:
    spec = wasm_plugins()[name]["spec"]
    assert spec["phase"] == "AUTHN" and spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["match"] == [{"mode": "SERVER"}]
    assert spec["url"].startswith("oci://")
    pods = one("Deployment", "mcp-server")["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pods.items()


def test_client_secret_reaches_the_vm_from_a_kubernetes_secret() -> None:
    spec = wasm_plugins()["wasmplugin.yaml"]["spec"]
    secret_env = spec["pluginConfig"]["token_exchange"]["client_auth"]["client_secret_env"]
    assert spec["vmConfig"]["env"] == [{"name": secret_env, "valueFrom": "HOST"}]  # no inline value
    pod = one("Deployment", "mcp-server")["spec"]["template"]["spec"]
    (proxy,) = [c for c in pod["containers"] if c["name"] == "istio-proxy"]
    (env,) = [e for e in proxy["env"] if e["name"] == secret_env]
    ref = env["valueFrom"]["secretKeyRef"]
    secret = one("Secret", ref["name"])
    assert ref["key"] in secret["stringData"]
    # Plain Envoy: the same Secret into Envoy's environment, and the VM reads it from there.
    (envoy,) = one("Deployment", "mcp-envoy", KUBERNETES)["spec"]["template"]["spec"]["containers"]
    (k8s_env,) = [e for e in envoy["env"] if e["name"] == secret_env]
    assert k8s_env["valueFrom"]["secretKeyRef"] == ref
    assert f"host_env_keys: [{secret_env}]" in configmap_envoy_yaml()


@pytest.mark.parametrize("name", ["wasmplugin.yaml", "wasmplugin-google-sts.yaml"])
def test_callout_clusters_are_istio_clusters_of_service_entries(name: str) -> None:
    entries = [d for d in documents(ISTIO) if d["kind"] == "ServiceEntry"]
    rules = [d for d in documents(ISTIO) if d["kind"] == "DestinationRule"]
    for cluster, url in plugin_clusters(wasm_plugins()[name]["spec"]["pluginConfig"]):
        direction, port, subset, host = cluster.split("|")
        assert (direction, subset) == ("outbound", ""), cluster
        parsed = httpx.URL(url)
        assert parsed.host == host and parsed.scheme == "https" and (parsed.port or 443) == int(port)
        (entry,) = [e for e in entries if host in e["spec"]["hosts"]]
        assert entry["spec"]["location"] == "MESH_EXTERNAL"
        (entry_port,) = [p for p in entry["spec"]["ports"] if p["number"] == int(port)]
        # HTTP here: the callout is plain HTTP, and the sidecar originates TLS (DestinationRule).
        assert entry_port["protocol"] == "HTTP"
        (rule,) = [r for r in rules if r["spec"]["host"] == host]
        # TLS origination that verifies the server: SNI, a CA bundle, and the host's name.
        assert rule["spec"]["trafficPolicy"]["tls"] == {"mode": "SIMPLE", "sni": host,
                                                        "caCertificates": "/etc/ssl/certs/ca-certificates.crt",
                                                        "subjectAltNames": [host]}


def test_gateway_routes_the_resource_host_to_the_mcp_server() -> None:
    resource = httpx.URL(wasm_plugins()["wasmplugin.yaml"]["spec"]["pluginConfig"]["resource"])
    gateway, route = one("Gateway"), one("VirtualService")
    assert resource.host in gateway["spec"]["servers"][0]["hosts"] and resource.host in route["spec"]["hosts"]
    (http_route,) = route["spec"]["http"]
    assert "match" not in http_route, "every path, including the metadata under /.well-known, must be routed"
    service = one("Service", "mcp-server")
    destination = http_route["route"][0]["destination"]
    assert destination["host"].startswith(f"{service['metadata']['name']}.mcp.")
    assert destination["port"]["number"] == service["spec"]["ports"][0]["port"]


def test_kubernetes_envoy_has_the_istio_plugin_configuration() -> None:
    istio = copy.deepcopy(wasm_plugins()["wasmplugin.yaml"]["spec"]["pluginConfig"])
    (provider,) = istio["providers"].values()
    provider["remote_jwks"]["http_uri"]["cluster"] = "idp"
    istio["token_exchange"]["token_endpoint"]["cluster"] = "sts"
    envoy = yaml.safe_load(configmap_envoy_yaml())
    (listener,) = envoy["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (wasm,) = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
    assert json.loads(wasm["typed_config"]["config"]["configuration"]["value"]) == istio
    deployment = one("Deployment", "mcp-envoy", KUBERNETES)["spec"]["template"]["spec"]
    (container,) = deployment["containers"]
    (mount,) = container["volumeMounts"]
    assert container["args"][1] == f"{mount['mountPath']}/envoy.yaml"
    (volume,) = deployment["volumes"]
    assert volume["configMap"]["name"] == "mcp-envoy" and volume["name"] == mount["name"]
    wasm_file = wasm["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
    assert f"{wasm_file}\n" in (KUBERNETES / "Dockerfile").read_text().replace(" /", "\n/") + "\n"


def test_envoy_validates_the_kubernetes_configuration(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(configmap_envoy_yaml().replace("/etc/envoy/filter/plugin.wasm", str(WASM_PATH)))
    result = validate_config(config, env={"STS_CLIENT_SECRET": "validate-only"})
    assert result.returncode == 0, result.stdout + result.stderr


# ---- run for real --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def okta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevAuthorizationServer]:
    """The dev authorization servers dressed as one Okta org: two authorization servers under
    /oauth2/<id>, Okta's endpoint paths, a fixed audience, on one port (one cluster)."""
    port = free_port()
    spec = wasm_plugins()["wasmplugin.yaml"]["spec"]["pluginConfig"]
    env = {"MCP_AS_ISSUER": MCP_ISSUER, "BACKEND_AS_ISSUER": BACKEND_ISSUER, "DEV_AS_ROUTES": "okta",
           "MCP_AS_AUDIENCE": spec["providers"]["okta"]["audiences"][0],
           "STS_CLIENT_ID": spec["token_exchange"]["client_auth"]["client_id"]}
    with DevAuthorizationServer(mcp_resources=[RESOURCE], sts_client_secret=SECRET, mcp_port=port, backend_port=port,
                                log_path=tmp_path_factory.mktemp("okta") / "dev-as.log", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def backend_issuer(okta: DevAuthorizationServer) -> StaticIssuer:
    return StaticIssuer(issuer=BACKEND_ISSUER, jwks_uri=f"http://{LOOPBACK}:{okta.mcp_port}/oauth2/aus2backend/v1/keys")


@pytest.fixture(scope="module")
def tool_server(backend: BackendApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpUpstream]:
    """The MCP server behind the public host name mcp.example.com (the SDK's DNS-rebinding
    protection must accept it)."""
    log = tmp_path_factory.mktemp("istio-upstream") / "upstream.log"
    with McpUpstream(log_path=log, backend_url=backend.whoami_url,
                     allowed_hosts=[httpx.URL(RESOURCE).host]) as server:
        yield server


def istio_shaped_example(tmp: Path, cluster_names: list[str]) -> Path:
    """envoy/okta-same-idp.yaml plus clusters named as Istio names them."""
    config = load_example(OKTA_EXAMPLE)
    sts = next(c for c in config["static_resources"]["clusters"] if c["name"] == "sts")
    for name in cluster_names:
        cluster = copy.deepcopy(sts)
        cluster["name"] = cluster["load_assignment"]["cluster_name"] = name
        config["static_resources"]["clusters"].append(cluster)
    path = tmp / "istio-shaped.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_login(envoy: Envoy, okta: DevAuthorizationServer) -> tuple[Any, Any]:
    transport = MappedTransport({"https://mcp.example.com": envoy.url, OKTA: f"http://{LOOPBACK}:{okta.mcp_port}"})
    login = new_login(RESOURCE, transport=transport)

    async def session() -> Any:
        async with oauth_mcp_session(login, RESOURCE, transport=transport) as client:
            return structured(await client.call_tool("query_backend", {}))

    return login, anyio.run(session)


def check_flow(login: Any, answer: Any, envoy: Envoy) -> None:
    assert answer["status"] == 200, answer
    assert answer["body"] == {"user": "alice", "audience": "backend", "scopes": ["backend-api:read"],
                              "token_kind": "jwt"}
    hops = [(h.method, h.url, h.status) for h in login.hops[:4]]
    assert hops == [("POST", RESOURCE, 401),
                    ("GET", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", 200),
                    ("GET", f"{OKTA}/.well-known/oauth-authorization-server/oauth2/aus1mcpserver", 200),
                    ("POST", f"{MCP_ISSUER}/v1/clients", 201)], hops
    token = jwt.decode(login.access_token, options={"verify_signature": False})
    assert (token["iss"], token["aud"], token["sub"]) == (MCP_ISSUER, "mcpserver", "alice")
    assert envoy.counter("mcp_auth.exchange.ok") >= 1 and envoy.counter("mcp_auth.jwks_fetch.ok") >= 1


def test_istio_plugin_config_serves_a_logged_in_client(okta: DevAuthorizationServer, tool_server: McpUpstream,
                                                       tmp_path: Path) -> None:
    plugin = wasm_plugins()["wasmplugin.yaml"]["spec"]
    (cluster,) = {c for c, _ in plugin_clusters(plugin["pluginConfig"])}
    example = istio_shaped_example(tmp_path, [cluster])
    secret_env = plugin["vmConfig"]["env"][0]["name"]
    with Envoy(plugin["pluginConfig"], workdir=tmp_path / "envoy", upstream_port=tool_server.port,
               idp_port=okta.mcp_port, example=example, clusters={cluster: okta.mcp_port, "sts": okta.mcp_port},
               env={secret_env: SECRET}) as envoy:
        login, answer = run_login(envoy, okta)
        check_flow(login, answer, envoy)


def test_kubernetes_envoy_serves_a_logged_in_client(okta: DevAuthorizationServer, tool_server: McpUpstream,
                                                    tmp_path: Path) -> None:
    example = tmp_path / "envoy.yaml"
    example.write_text(configmap_envoy_yaml())
    with Envoy(plugin_config_of(example), workdir=tmp_path / "envoy", upstream_port=tool_server.port,
               idp_port=okta.mcp_port, example=example, clusters={"idp": okta.mcp_port, "sts": okta.mcp_port},
               env={"STS_CLIENT_SECRET": SECRET}) as envoy:
        login, answer = run_login(envoy, okta)
        check_flow(login, answer, envoy)


def test_google_profile_plugin_config_loads(okta: DevAuthorizationServer, tool_server: McpUpstream,
                                            tmp_path: Path) -> None:
    """Google's STS cannot be reached from here: the configuration is loaded by the filter and
    answers the discovery protocol (the exchange itself is covered by test_token_exchange_google)."""
    plugin = wasm_plugins()["wasmplugin-google-sts.yaml"]["spec"]["pluginConfig"]
    clusters = sorted({c for c, _ in plugin_clusters(plugin)})
    example = istio_shaped_example(tmp_path, clusters)
    with Envoy(plugin, workdir=tmp_path / "envoy", upstream_port=tool_server.port, idp_port=okta.mcp_port,
               example=example, clusters={c: okta.mcp_port for c in [*clusters, "sts"]},
               env={"STS_CLIENT_SECRET": "unused"}) as envoy:
        metadata = httpx.get(f"{envoy.url}/.well-known/oauth-protected-resource/mcp", timeout=5).json()
        assert metadata["resource"] == RESOURCE and metadata["authorization_servers"] == [MCP_ISSUER]
        challenge = httpx.post(f"{envoy.url}/mcp", timeout=5, json={})
        assert challenge.status_code == 401
        assert 'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"' in \
            challenge.headers["www-authenticate"]
