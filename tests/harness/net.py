"""Small networking helpers shared by the harness: free ports and bounded polling."""

from __future__ import annotations

import ctypes
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TypeVar

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


def wait_until(check: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "condition") -> T:
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
