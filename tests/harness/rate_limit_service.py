"""A stand-in for envoyproxy/ratelimit, Envoy's global rate-limit service (RLS): the gRPC API
`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, with limits read from a
configuration in that service's format (harness/rls_limits.py) and fixed-window counters in Redis,
so every Envoy that asks it shares the counts. The real service cannot be installed here (it is a
Go program, and this machine reaches no Go module proxy), so the tests of
envoy/rate-limits-global.yaml run against this one.

What it does, as envoyproxy/ratelimit does: for each descriptor of a request, the limit its
entries reach in the configuration; if there is one, it adds the request's hits (hits_addend, at
least 1) to the counter of that descriptor's exact entries in the current window of the limit's
unit (the window starts on a multiple of the unit since the epoch), and answers OVER_LIMIT when
the count is past requests_per_unit, with the limit, what remains and the time until the window
ends. The answer is OVER_LIMIT when any descriptor is. A descriptor with no limit is OK. When
Redis fails the call fails, and Envoy decides (envoy/rate-limits-global.yaml: refuse).
Not implemented: shadow mode, unlimited, replaces, per-descriptor hits_addend, limit overrides,
local caches, statsd.

Run as a subprocess (`python -m harness.rate_limit_service --port N --config FILE --redis-port P`
in tests/); `RateLimitService` starts and stops it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import redis

from .net import LOOPBACK, free_port, port_accepts
from .process import TESTS_DIR, ManagedProcess
from .rls_limits import Limit, Limits, load_limits
from .rls_wire import METHOD, SERVICE, Code, DescriptorStatus, RateLimitRequest, Unit, encode_response, parse_request


class Counters:
    """Fixed-window counters in Redis, one key per domain, descriptor entries and window."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def add(self, domain: str, entries: list[tuple[str, str]], limit: Limit, hits: int,
            now: float) -> tuple[int, float]:
        """The count after adding `hits`, and the seconds until the window ends."""
        window = limit.window_seconds
        start = int(now // window) * window
        key = "rls|" + json.dumps([domain, entries, start])  # JSON: no value can fake another key
        pipe = self._redis.pipeline(transaction=True)
        pipe.incrby(key, hits)
        pipe.expire(key, window)
        count, _ = pipe.execute()
        return int(count), start + window - now


def judge(limits: Limits, counters: Counters, request: RateLimitRequest, now: float) -> bytes:
    """The RateLimitResponse to a RateLimitRequest."""
    hits = max(1, request.hits_addend)
    statuses: list[DescriptorStatus] = []
    for entries in request.descriptors:
        limit = limits.limit_for(entries) if request.domain == limits.domain else None
        if limit is None:
            statuses.append(DescriptorStatus(Code.OK))
            continue
        count, seconds_left = counters.add(limits.domain, entries, limit, hits, now)
        statuses.append(DescriptorStatus(
            code=Code.OVER_LIMIT if count > limit.requests_per_unit else Code.OK,
            current_limit=(limit.requests_per_unit, Unit[limit.unit.upper()]),
            limit_remaining=max(0, limit.requests_per_unit - count),
            seconds_until_reset=math.ceil(seconds_left),
        ))
    over = any(s.code == Code.OVER_LIMIT for s in statuses)
    return encode_response(Code.OVER_LIMIT if over else Code.OK, statuses)


def serve(port: int, limits: Limits, counters: Counters) -> None:
    def should_rate_limit(request: RateLimitRequest, context: grpc.ServicerContext) -> bytes:
        return judge(limits, counters, request, time.time())

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        METHOD: grpc.unary_unary_rpc_method_handler(should_rate_limit, request_deserializer=parse_request),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    server.start()
    server.wait_for_termination()


class RateLimitService(ManagedProcess):
    """The stand-in as a subprocess on `port`, with the limits of `config` and the Redis on
    `redis_port` (`start()` waits until the gRPC port accepts connections)."""

    name = "rate-limit service"

    def __init__(self, config: Path, redis_port: int, *, port: int | None = None,
                 log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.config = config
        self.redis_port = redis_port
        super().__init__(log_path=log_path, cwd=TESTS_DIR)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "harness.rate_limit_service", "--port", str(self.port),
                "--config", str(self.config), "--redis-port", str(self.redis_port)]

    def is_ready(self) -> bool:
        return port_accepts(self.port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="gRPC port on the loopback address")
    parser.add_argument("--config", type=Path, required=True, help="limits, in envoyproxy/ratelimit's format")
    parser.add_argument("--redis-port", type=int, required=True, help="the Redis on the loopback address")
    args = parser.parse_args()
    client = redis.Redis(host=LOOPBACK, port=args.redis_port, socket_timeout=1)
    serve(args.port, load_limits(args.config), Counters(client))


if __name__ == "__main__":
    main()
