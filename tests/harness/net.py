"""Small networking helpers shared by the harness: free ports and bounded polling."""

from __future__ import annotations

import ctypes
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

T = TypeVar("T")


class GaveUp(Exception):
    """Raised by a polled check when waiting longer is pointless (e.g. the process died)."""

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it; tiny reuse race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], T | None], timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; raise TimeoutError after `timeout` seconds.

    Exceptions raised by `check` count as "not yet" (the thing polled may not be up),
    except GaveUp, which ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except GaveUp:
            raise
        except Exception as e:  # noqa: BLE001 - "not ready yet" comes in many shapes
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def die_with_parent() -> None:
    """Popen preexec_fn: the child gets SIGTERM if the test process dies (even by SIGKILL),
    so no Envoy or MCP server outlives a killed run. Linux only; a no-op elsewhere."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


class QuietHttpServer(ThreadingHTTPServer):
    """The test services' HTTP server."""

    # Don't join handler threads on close: a deliberately slow answer must not block stop().
    block_on_close = False
    # One connection per request (HTTP/1.0): under load, the default listen backlog of 5 would
    # refuse connections, and Envoy would answer a callout 503 itself.
    request_queue_size = 256
    service: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Envoy may give up on a slow answer before it is written: expected, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class JsonHandler(BaseHTTPRequestHandler):
    """Hands GET and POST to the service's `_handle_get` / `_handle_post`, and answers JSON."""

    # One request per connection: once a service stops, Envoy cannot keep talking to a
    # still-open keep-alive connection, so "down" really means down.
    protocol_version = "HTTP/1.0"
    server: QuietHttpServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's parameter name
        pass

    def do_GET(self) -> None:
        self.server.service._handle_get(self)

    def do_POST(self) -> None:
        self.server.service._handle_post(self)

    def read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def reply_raw(self, status: int, data: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.reply_raw(status, json.dumps(body).encode(), "application/json", headers)


class LoopbackService:
    """A test service on its own thread, on a port that stays fixed across stop()/start(), so a
    restart looks like an outage. Subclasses set `port` (and `host`), and may hook `_on_start`
    (before serving) and `_on_stop` (to release deliberately slow answers)."""

    host: str = LOOPBACK
    port: int
    _server: QuietHttpServer | None = None
    _thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def _on_start(self) -> None:
        pass

    def _on_stop(self) -> None:
        pass

    def start(self) -> Self:
        if self._server is None:
            self._on_start()
            server = QuietHttpServer((self.host, self.port), JsonHandler)  # reuses the address
            server.service = self
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"{type(self).__name__}-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._on_stop()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
