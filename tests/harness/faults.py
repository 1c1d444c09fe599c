"""Fault injection and hostile-input helpers for the hardening tests.

  ScriptedIdp   the test IdP, whose /jwks can also answer any raw body and headers, answer late,
                or leave keys out (publish a key later, withdraw one)
  TunedEnvoy    Envoy with a chosen log level and extra command-line options, and hot restart
                (`--restart-epoch`, same `--base-id`)
  raw_request   one HTTP/1.1 request written byte for byte (odd spacing, repeated or non-UTF-8
                headers) on its own connection
  abandoned_request  one request whose client resets the connection (when the test says)
  wasm_failures the lines of Envoy's log that show the VM panicked or a proxy_on_* call failed

The test STS's faults are `StsFault` values (sts_fault.py), which it reads itself.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt.algorithms

from .envoy import Envoy, EnvoyFailed, envoy_binary
from .idp import IdentityProvider, b64url
from .net import LOOPBACK, wait_until
from .process import terminate

_ALGORITHMS = jwt.algorithms.get_default_algorithms()

# A panic (proxy-wasm's hook logs it at critical), a trap, or a failed VM call.
_WASM_FAILURE = re.compile(r"panicked at|Function: proxy_on_\w+ failed|Uncaught \w*Error|\[critical\]\[wasm\]"
                           r"|Plugin configured to fail closed failed to load|wasm vm failed")


def wasm_failures(log_text: str) -> list[str]:
    """Lines of an Envoy log that show the filter's VM failing."""
    return [line for line in log_text.splitlines() if _WASM_FAILURE.search(line)]


def sign_raw(header: bytes, payload: bytes, key: Any, alg: str = "RS256") -> str:
    """A compact JWS over exact header and payload bytes (duplicate members, odd JSON, non-UTF-8)."""
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    return f"{signing_input}.{b64url(_ALGORITHMS[alg].sign(signing_input.encode(), key))}"


# ---- IdP ----------------------------------------------------------------------------------------

@dataclass
class RawAnswer:
    status: int
    body: bytes
    headers: dict[str, str]


class ScriptedIdp(IdentityProvider):
    """The test IdP with more ways to misbehave on /jwks (set the attributes at any time):

    raw         a RawAnswer served instead of the key set (malformed JWKS, odd headers)
    delay       seconds to wait before answering (a slow IdP; the mode "hang" still exists)
    hidden      kids left out of the key set (a key minted with but not yet published)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw: RawAnswer | None = None
        self.delay = 0.0
        self.hidden: set[str] = set()
        self.fetch_times: list[float] = []  # time.monotonic() of every /jwks request

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.jwk() for k in self._keys.values() if k.kid not in self.hidden]}

    def add_rsa_key(self, publish: bool = True) -> str:
        """A new RSA key (not made the default); `publish=False` keeps it out of /jwks."""
        with self._lock:
            kid = self._add_rsa_key()
            if not publish:
                self.hidden.add(kid)
        return kid

    def publish(self, kid: str) -> None:
        with self._lock:
            self.hidden.discard(kid)

    def withdraw(self, kid: str) -> None:
        """Leave `kid` out of /jwks from now on (the key can still sign, as an attacker's copy)."""
        with self._lock:
            self.hidden.add(kid)

    def _serve_jwks(self, req: Any) -> None:
        with self._lock:
            self.fetch_times.append(time.monotonic())
            raw, delay, stopping = self.raw, self.delay, self._release
        if delay:
            stopping.wait(delay)
        if raw is None:
            super()._serve_jwks(req)
            return
        with self._lock:
            self.jwks_fetches += 1
            self.last_jwks_fetch = time.monotonic()
        req.send_response(raw.status)
        req.send_header("content-length", str(len(raw.body)))
        for name, value in raw.headers.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(raw.body)

    def fetches_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for f in self.fetch_times if f >= t)


# ---- Envoy --------------------------------------------------------------------------------------

class TunedEnvoy(Envoy):
    """Envoy with `log_level` and `extra_args` of its own, and hot restart: `hot_restart()` starts
    the next epoch with the same configuration and base id, the way Envoy's hot-restarter does,
    and returns once the new epoch is ready (the old one drains, then exits by itself)."""

    def __init__(self, *args: Any, log_level: str = "info", extra_args: tuple[str, ...] = (),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.base_id = self.admin_port
        self.epoch = 0
        self.previous: list[subprocess.Popen[bytes]] = []

    def command(self) -> list[str]:
        return [envoy_binary(), "-c", str(self.config_path), "--concurrency", "2", "--base-id", str(self.base_id),
                "--restart-epoch", str(self.epoch), "--log-level", self.log_level, *self.extra_args]

    def serving_epoch(self) -> int:
        info = httpx.get(f"{self.admin_url}/server_info", timeout=2).json()
        return int(info["command_line_options"]["restart_epoch"])

    def hot_restart(self, timeout: float = 30) -> subprocess.Popen[bytes]:
        """Start epoch N+1; returns the process of epoch N (still draining)."""
        if self._proc is None:
            raise EnvoyFailed("hot restart of an Envoy that is not running")
        old = self._proc
        self.previous.append(old)
        self.epoch += 1
        self.spawn()
        wait_until(lambda: self.returncode is None and self.serving_epoch() == self.epoch and self.is_ready(),
                   timeout, interval=0.1, what=f"Envoy epoch {self.epoch} to serve")
        return old

    def stop(self) -> None:
        for proc in self.previous:
            terminate(proc, self.stop_grace_seconds)
        self.previous = []
        super().stop()


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


# ---- raw HTTP -----------------------------------------------------------------------------------

@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, headers: list[tuple[bytes, bytes]], *, path: bytes = b"/echo", method: bytes = b"GET",
                timeout: float = 10) -> RawResponse:
    """One request on a new connection, header lines written exactly as given."""
    lines = [method + b" " + path + b" HTTP/1.1", b"host: " + LOOPBACK.encode(), b"connection: close"]
    lines += [name + b":" + value for name, value in headers]
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines)]
    response = RawResponse(int(status_line.split()[1]), parsed, body)
    if "chunked" in ",".join(response.header("transfer-encoding")).lower():
        response.body = _dechunk(body)
    return response


@contextmanager
def abandoned_request(port: int, headers: list[tuple[bytes, bytes]], *, path: bytes = b"/echo") -> Iterator[None]:
    """One request whose client goes away: the request is written on entry; when the block ends
    the connection is reset (RST, no answer read), as a client that gives up or an attacker does.
    The block is where the test waits for what the request started (e.g. a key refetch)."""
    lines = [b"GET " + path + b" HTTP/1.1", b"host: " + LOOPBACK.encode()]
    lines += [name + b":" + value for name, value in headers]
    with socket.create_connection((LOOPBACK, port), timeout=5) as s:
        s.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        yield
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset


def _complete(data: bytes) -> bool:
    """Whether `data` holds a whole response, so reading can stop before Envoy closes the
    connection (it may wait a second to close after an error answer)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    fields = [line.partition(b":") for line in head.lower().split(b"\r\n")[1:]]
    values = {name.strip(): value.strip() for name, _, value in fields}
    if b"chunked" in values.get(b"transfer-encoding", b""):
        return body.endswith(b"0\r\n\r\n")
    length = values.get(b"content-length")
    return length is not None and length.isdigit() and len(body) >= int(length)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def in_background(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run fn in a thread; the dict gets "result" or "error" when it ends."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - reported to the test
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome
