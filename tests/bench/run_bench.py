"""`make bench`: every case side by side in one Envoy, one run, ratios printed.

One Envoy (`--concurrency 1`) holds a listener per case; all forward to the same origin, a
`direct_response` listener of the same Envoy, so the only difference between cases is the
authentication filter. The STS of the exchange cases is another listener of the same Envoy (a
fault filter adds its fixed delay), so STS calls are counted by Envoy itself. wrk (one thread,
32 connections) loads each case with a Lua script that cycles through pre-minted tokens.
Cases are interleaved within each round so that drift on a shared machine hits all of them;
each measurement follows a warm-up, and the median of the rounds is reported.

Cases (issue 5), plus a floor:
  0 wasm_noop        a proxy-wasm filter that does nothing (tests/bench/noop-filter): what any
                     wasm filter costs in Envoy, before it does any work
  1 plain            plain Envoy proxy, no authentication (the physical limit)
  2 jwt_authn        Envoy jwt_authn, same JWKS, no JWT cache
  3 jwt_authn_cache  Envoy jwt_authn with jwt_cache_config
  4 cold             our filter, verification only, verified-token cache off, a pool of
                     distinct tokens: every request pays a full RS256 verification
  5 warm             our filter, verification only, one token (verified-token cache hit)
  6 exchange_warm    our filter with token exchange, one token (exchanged token cached)
  7 exchange_cold    our filter with token exchange, distinct users, STS answering after a
                     fixed delay: STS calls vs requests are reported

Then the memory phase: 100,000 distinct users' tokens through the exchange listener (both
caches at their default bounds), Envoy's resident memory sampled as they go.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the rig's `harness` package (this file runs as a script)
from harness.faults import memory_kib  # noqa: E402 - importable only once tests/ is on the path
from harness.process import ManagedProcess  # noqa: E402 - as above

WASM = REPO / "target/wasm32-wasip1/release/mcp_auth_filter.wasm"
NOOP_WASM = REPO / "tests/bench/noop-filter/target/wasm32-wasip1/release/noop_filter.wasm"
ENVOY = REPO / ".venv/bin/envoy"
ISSUER = "https://idp.bench.example"
RESOURCE = "https://mcp.bench.example/mcp"
CASES = ["wasm_noop", "plain", "jwt_authn", "jwt_authn_cache", "cold", "warm", "exchange_warm", "exchange_cold"]
LABELS = {
    "wasm_noop": "0 wasm filter that does nothing",
    "plain": "1 plain Envoy proxy",
    "jwt_authn": "2 Envoy jwt_authn, no cache",
    "jwt_authn_cache": "3 Envoy jwt_authn, jwt_cache_config",
    "cold": "4 ours, cold (every request verified)",
    "warm": "5 ours, warm (verified-token cache)",
    "exchange_warm": "6 ours + exchange, warm",
    "exchange_cold": "7 ours + exchange, cold, STS delay",
}
WRK_SCRIPT = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "/", {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


# --- tokens ------------------------------------------------------------------------------

_KEY: rsa.RSAPrivateKey | None = None  # each minting worker's copy of the signing key


def _init_worker(pem: bytes) -> None:
    global _KEY
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("the bench signs with an RSA key")
    _KEY = key


def _mint_range(args: tuple[str, int, int]) -> list[str]:
    prefix, start, count = args
    if _KEY is None:
        raise RuntimeError("minting worker started without its key")
    key = _KEY
    exp = int(time.time()) + 3 * 3600
    return [
        jwt.encode({"iss": ISSUER, "aud": RESOURCE, "sub": f"{prefix}-{i}", "exp": exp, "iat": exp - 3 * 3600},
                   key, algorithm="RS256", headers={"kid": "bench-rsa"})
        for i in range(start, start + count)
    ]


def mint(pem: bytes, prefix: str, count: int) -> list[str]:
    """Distinct RS256 tokens, minted on every core."""
    workers = os.cpu_count() or 1
    chunk = max(1, -(-count // (workers * 8)))
    jobs = [(prefix, start, min(chunk, count - start)) for start in range(0, count, chunk)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(pem,)) as pool:
        return [t for part in pool.map(_mint_range, jobs) for t in part]


# --- Envoy configuration -------------------------------------------------------------------

def jwks_of(key: rsa.RSAPrivateKey) -> str:
    import base64

    numbers = key.public_key().public_numbers()

    def b64(n: int) -> str:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return json.dumps({"keys": [{"kty": "RSA", "kid": "bench-rsa", "alg": "RS256", "use": "sig",
                                 "n": b64(numbers.n), "e": b64(numbers.e)}]})


def cluster(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def listener(name: str, port: int, filters: list[dict[str, Any]], route: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": HCM_TYPE,
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, **route}]}]},
                "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}


def ours(vm_id: str, plugin: dict[str, Any], wasm: Path = WASM) -> dict[str, Any]:
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": vm_id, "root_id": "mcp_auth", "fail_open": False,
                   "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(wasm)}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": json.dumps(plugin)}}}}


def jwt_authn(jwks: str, cache: bool) -> dict[str, Any]:
    provider = {"issuer": ISSUER, "audiences": [RESOURCE], "local_jwks": {"inline_string": jwks}, "forward": False}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 10000}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def envoy_config(ports: dict[str, int], jwks: str, sts_delay_ms: int) -> dict[str, Any]:
    def plugin(cache: int, exchange: bool, sts: str = "sts") -> dict[str, Any]:
        doc = {"resource": RESOURCE,
               "providers": {"bench": {"issuer": ISSUER, "local_jwks": {"inline_string": jwks}}},
               "jwt_cache_config": {"jwt_cache_size": cache}}
        if exchange:
            doc["token_exchange"] = {
                "token_endpoint": {"uri": "http://sts.bench/token", "cluster": sts, "timeout": "5s"},
                "audience": "backend", "scopes": ["backend-api:read"], "client_auth": {"method": "none"}}
        return doc

    to_origin = {"route": {"cluster": "origin"}}
    sts_answer = json.dumps({"access_token": "backend-token", "token_type": "Bearer",
                             "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                             "expires_in": 3600})
    sts_route = {"direct_response": {"status": 200, "body": {"inline_string": sts_answer}}}
    fault = {"name": "envoy.filters.http.fault", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
        "delay": {"fixed_delay": f"{sts_delay_ms / 1000:.3f}s", "percentage": {"numerator": 100}}}}
    listeners = [
        listener("origin", ports["origin"], [], {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}}),
        listener("sts", ports["sts"], [fault], sts_route),
        # The memory phase's STS answers at once: 100,000 users behind a delayed STS would take minutes.
        listener("sts_fast", ports["sts_fast"], [], sts_route),
        listener("wasm_noop", ports["wasm_noop"], [ours("wasm_noop", {}, NOOP_WASM)], to_origin),
        listener("plain", ports["plain"], [], to_origin),
        listener("jwt_authn", ports["jwt_authn"], [jwt_authn(jwks, cache=False)], to_origin),
        listener("jwt_authn_cache", ports["jwt_authn_cache"], [jwt_authn(jwks, cache=True)], to_origin),
        listener("cold", ports["cold"], [ours("cold", plugin(0, False))], to_origin),
        listener("warm", ports["warm"], [ours("warm", plugin(10000, False))], to_origin),
        listener("exchange_warm", ports["exchange_warm"], [ours("exchange_warm", plugin(10000, True))], to_origin),
        listener("exchange_cold", ports["exchange_cold"], [ours("exchange_cold", plugin(10000, True))], to_origin),
        listener("memory", ports["memory"], [ours("memory", plugin(10000, True, "sts_fast"))], to_origin),
    ]
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ports["admin"]}}},
            "static_resources": {"listeners": listeners,
                                 "clusters": [cluster("origin", ports["origin"]), cluster("sts", ports["sts"]),
                                              cluster("sts_fast", ports["sts_fast"])]}}


# --- running -------------------------------------------------------------------------------

class BenchEnvoy(ManagedProcess):
    """The one Envoy that holds every case's listener, the origin and the STS."""

    name = "Envoy"
    start_timeout_seconds = 30
    stop_grace_seconds = 10

    def __init__(self, config: Path, admin_port: int, log_path: Path) -> None:
        super().__init__(log_path=log_path)
        self.config = config
        self.admin_port = admin_port

    def command(self) -> list[str]:
        return [str(ENVOY), "-c", str(self.config), "--concurrency", "1", "--base-id", str(os.getpid() % 60000),
                "--log-level", "warn"]

    def is_ready(self) -> bool:
        return http_get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1)[0] == 200

    def running_pid(self) -> int:
        if self.pid is None:
            raise RuntimeError("Envoy is not running")
        return self.pid


def free_ports(names: list[str]) -> dict[str, int]:
    import socket

    socks, ports = [], {}
    for name in names:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports[name] = s.getsockname()[1]
    for s in socks:
        s.close()
    return ports


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def stats(admin: int) -> dict[str, int]:
    _, body = http_get(f"http://127.0.0.1:{admin}/stats?format=json")
    return {s["name"]: s.get("value", 0) for s in json.loads(body)["stats"] if "value" in s}


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    memory = memory_kib(pid)
    return memory["VmRSS"], memory["VmHWM"]


def wrk(port: int, tokens_file: Path, script: Path, seconds: float, connections: int = 32) -> dict[str, Any]:
    out = subprocess.run(
        # wrk takes whole seconds.
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/"],
        env={**os.environ, "BENCH_TOKENS": str(tokens_file)}, capture_output=True, text=True, timeout=seconds + 60,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50"), "p99": ms("99"),
            "requests": int(requests.group(1)) if requests else 0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5, help="measured seconds per case and round")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sts-delay-ms", type=int, default=50)
    parser.add_argument("--users", type=int, default=1000, help="distinct users in the cold exchange case")
    parser.add_argument("--memory-tokens", type=int, default=100_000)
    args = parser.parse_args()

    for path, hint in [(WASM, "run make build"), (NOOP_WASM, "run make bench"), (ENVOY, "run make setup")]:
        if not path.exists():
            print(f"bench: {path} is missing; {hint}", file=sys.stderr)
            return 1

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    work = Path(tempfile.mkdtemp(prefix="mcp-auth-bench-"))
    script = work / "tokens.lua"
    script.write_text(WRK_SCRIPT)

    started = time.monotonic()
    print(f"minting tokens (RS256, 2048-bit) on {os.cpu_count()} cores ...", flush=True)
    one = work / "one.txt"
    one.write_text(mint(pem, "warm-user", 1)[0] + "\n")
    cold = work / "cold.txt"
    cold.write_text("\n".join(mint(pem, "cold-user", 2000)) + "\n")
    users = work / "users.txt"
    users.write_text("\n".join(mint(pem, "exchange-user", args.users)) + "\n")
    memory_slices = []
    slice_size = max(1, -(-args.memory_tokens // 4))
    for start in range(0, args.memory_tokens, slice_size):
        batch = work / f"memory-{start}.txt"
        count = min(slice_size, args.memory_tokens - start)
        batch.write_text("\n".join(mint(pem, f"memory-{start}", count)) + "\n")
        memory_slices.append((batch, count))
    print(f"minted in {time.monotonic() - started:.0f}s", flush=True)

    ports = free_ports(["admin", "origin", "sts", "sts_fast", "memory"] + CASES)
    config = work / "envoy.json"
    config.write_text(json.dumps(envoy_config(ports, jwks_of(key), args.sts_delay_ms)))
    with BenchEnvoy(config, ports["admin"], work / "envoy.log") as envoy:
        tokens_for = {"wasm_noop": one, "plain": one, "jwt_authn": one, "jwt_authn_cache": one, "cold": cold,
                      "warm": one, "exchange_warm": one, "exchange_cold": users}
        for case in CASES:  # every case must answer 200 before it is measured
            first = tokens_for[case].read_text().split("\n", 1)[0]
            status, body = http_get(f"http://127.0.0.1:{ports[case]}/", {"Authorization": f"Bearer {first}"})
            if status != 200:
                raise RuntimeError(f"case {case} answers {status}: {body[:200]!r}")

        sts_before = stats(ports["admin"]).get("http.sts.downstream_rq_total", 0)
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in CASES}
        cold_exchange_requests = 0
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds} ...", flush=True)
            for case in CASES:
                wrk(ports[case], tokens_for[case], script, args.warmup)
                results[case].append(wrk(ports[case], tokens_for[case], script, args.seconds))
                if case == "exchange_cold":
                    cold_exchange_requests += results[case][-1]["requests"]
        # Warm-ups of exchange_cold also sent requests; count everything that reached it.
        st = stats(ports["admin"])
        sts_calls = st.get("http.sts.downstream_rq_total", 0) - sts_before
        cold_listener_requests = st.get("http.exchange_cold.downstream_rq_total", 0)

        print(f"memory phase: {args.memory_tokens} distinct users ...", flush=True)
        memory = memory_phase(memory_slices, script, ports, envoy.running_pid())

    report(results, args, sts_calls, cold_listener_requests, memory, time.monotonic() - started)
    return 0


def memory_phase(slices: list[tuple[Path, int]], script: Path, ports: dict[str, int],
                 pid: int) -> list[tuple[int, ...]]:
    """Sends distinct users' tokens slice by slice, sampling Envoy's memory after each."""
    samples: list[tuple[int, ...]] = [(0, *rss_kib(pid))]
    sent = 0
    for batch, n in slices:
        # Long enough for every token of the slice to be sent at least once at ~1,000 req/s;
        # tokens sent again after that are cache hits.
        result = wrk(ports["memory"], batch, script, 2.0 + n / 1000)
        sent += min(n, result["requests"])
        samples.append((sent, *rss_kib(pid), result["requests"], result["non2xx"]))
    return samples


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, sts_calls: int, cold_requests: int,
           memory: list[tuple[int, ...]], elapsed: float) -> None:
    med = {c: {k: statistics.median(r[k] for r in results[c]) for k in ("rps", "p50", "p99")} for c in CASES}
    bad = {c: sum(r["non2xx"] for r in results[c]) for c in CASES}
    print()
    print(f"Envoy 1.40 --concurrency 1, wrk -t1 -c32, {args.rounds} rounds x {args.seconds:g}s after "
          f"{args.warmup:g}s warm-up, medians; machine: {os.cpu_count()} cores")
    print(f"{'case':44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for c in CASES:
        m = med[c]
        print(f"{LABELS[c]:44} {m['rps']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f} {bad[c]:8d}")
    print()
    print(f"exchange_cold: {sts_calls} STS calls for {cold_requests} requests from {args.users} distinct users "
          f"(STS delay {args.sts_delay_ms} ms)")
    print("memory (Envoy process, KiB): distinct tokens sent, VmRSS, VmHWM, requests, non-2xx")
    for sample in memory:
        print("  " + ", ".join(str(v) for v in sample))
    print(f"bench took {elapsed:.0f}s")
    print()
    for c in CASES:
        m = med[c]
        print(f"BENCH {c} rps={m['rps']:.0f} p50_ms={m['p50']:.2f} p99_ms={m['p99']:.2f}")

    def ratio(a: str, b: str) -> float:
        return med[a]["rps"] / med[b]["rps"] if med[b]["rps"] else float("nan")

    print(f"RATIO wasm_noop_vs_plain {ratio('wasm_noop', 'plain'):.2f}")
    print(f"RATIO warm_vs_jwt_authn_cache {ratio('warm', 'jwt_authn_cache'):.2f}")
    print(f"RATIO exchange_warm_vs_jwt_authn_cache {ratio('exchange_warm', 'jwt_authn_cache'):.2f}")
    print(f"RATIO cold_vs_jwt_authn {ratio('cold', 'jwt_authn'):.2f}")
    print(f"RATIO exchange_warm_vs_plain {ratio('exchange_warm', 'plain'):.2f}")
    print(f"RATIO sts_calls_per_user {sts_calls / args.users:.2f}")


if __name__ == "__main__":
    sys.exit(main())
