"""A Redis server (Debian's redis-server, installed by scripts/setup.sh) on a loopback port, in
memory only: the counters of the stand-in rate-limit service (harness/rate_limit_service.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from .net import LOOPBACK, free_port
from .process import ManagedProcess, ProcessFailed


class RedisServer(ManagedProcess):
    name = "Redis"

    def __init__(self, *, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        super().__init__(log_path=log_path)

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ProcessFailed("no redis-server: run scripts/setup.sh (it installs Debian's redis-server)")
        # Nothing written to disk; loopback only.
        return [binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]

    def is_ready(self) -> bool:
        return bool(redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1).ping())
