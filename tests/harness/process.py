"""The lifecycle every child process of the rig shares: Envoy, the MCP upstream, the development
authorization servers, the compose services, the benchmark's Envoy.

A `ManagedProcess` is spawned with its output appended to a log file, polled until it serves,
and stopped with SIGTERM, then SIGKILL after a grace period. It gets SIGTERM when the test
process dies (even by SIGKILL), so no child outlives a killed run.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Self, TypeVar

from .net import GaveUp, die_with_parent, wait_until

T = TypeVar("T")

# tests/: the working directory of the rig's own Python services (`python -m harness.<module>`).
TESTS_DIR = Path(__file__).resolve().parents[1]

KILL_WAIT_SECONDS = 5  # after SIGKILL: the kernel reaps at once, so this only bounds a stuck wait
POLL_INTERVAL_SECONDS = 0.1


class ProcessFailed(RuntimeError):
    """A child process exited, or did not become ready in time. The message ends with the last
    lines of its log."""


def terminate(proc: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM, then SIGKILL if `proc` is still running `grace_seconds` later."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=KILL_WAIT_SECONDS)


class ManagedProcess(ABC):
    """One child process. A subclass says what to run (`command`) and when it serves
    (`is_ready`); `name` is what messages call it, `failure` the exception `start()` raises."""

    name = "process"
    failure: type[Exception] = ProcessFailed
    start_timeout_seconds: float = 20
    stop_grace_seconds: float = 5

    def __init__(self, *, log_path: Path | None = None, cwd: Path | None = None,
                 environment: Mapping[str, str] | None = None) -> None:
        """`log_path`: where stdout and stderr are appended (None discards them); `cwd`: the
        working directory; `environment`: the child's whole environment (None: this process's)."""
        self.log_path = log_path
        self._cwd = cwd
        self._environment = dict(environment) if environment is not None else None
        self._proc: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def command(self) -> list[str]:
        """The command line, run on each spawn (so it may change between spawns)."""

    @abstractmethod
    def is_ready(self) -> bool:
        """Whether the process serves; polled while `start()` waits, exceptions mean "not yet"."""

    # ---- lifecycle -------------------------------------------------------------------------

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it; it becomes the one `stop()` ends."""
        if self.log_path is None:
            return self._popen(subprocess.DEVNULL)
        with open(self.log_path, "ab") as log:  # the child holds its own copy
            return self._popen(log)

    def _popen(self, output: IO[bytes] | int) -> subprocess.Popen[bytes]:
        self._proc = subprocess.Popen(self.command(), cwd=self._cwd, env=self._environment,
                                      stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                      preexec_fn=die_with_parent)
        return self._proc

    def start(self, timeout: float | None = None) -> Self:
        """Spawn and wait until `is_ready()`; if it exits or times out first, stop it and raise
        `failure` with the last lines of its log."""
        self.spawn()
        self.wait_for(self._serving, timeout or self.start_timeout_seconds, what=f"{self.name} to be ready")
        return self

    def wait_for(self, check: Callable[[], T], timeout: float, *, what: str) -> T:
        """Poll `check` like `wait_until`; on a timeout or GaveUp, stop the process and raise
        `failure` with the last lines of its log."""
        try:
            return wait_until(check, timeout, interval=POLL_INTERVAL_SECONDS, what=what)
        except (TimeoutError, GaveUp) as e:
            self.stop()
            raise self.failure(self._with_log_tail(str(e))) from None

    def _serving(self) -> bool:
        code = self.returncode
        if code is not None:
            raise GaveUp(f"{self.name} exited with code {code}")
        return self.is_ready()

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc, self.stop_grace_seconds)
            self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- observation -----------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit code once it has exited."""
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _with_log_tail(self, message: str) -> str:
        if self.log_path is None:
            return message
        return f"{message}\n--- last lines of {self.log_path} ---\n{self.log_tail()}"
