"""`make bench`: every case side by side, one run, ratios printed.

Three Envoys, the same binary, each case a listener; every case forwards to the same origin, a
`direct_response` listener of its Envoy, so the only difference between cases is the filter.
wrk (one thread, 32 connections) loads each case with a Lua script that cycles through
pre-minted tokens. Cases are interleaved within each round so that drift on a shared machine
hits all of them; each measurement follows a warm-up, and the median of the rounds is reported.

* The main Envoy (`--concurrency 1`, log level warn: no audit lines):
    plain             plain Envoy proxy, no authentication (the physical limit)
    wasm_noop         a proxy-wasm filter that does nothing: the price of being a wasm filter
    probe_<x>         the no-op filter doing only host call <x> (map, header, remove, set,
                      metrics, sha256, time; all = what our warm path does): the warm cost by cause
    jwt_authn[_cache] Envoy jwt_authn on RS256, without / with its JWT cache
    cold / warm       ours on RS256, verified-token cache off (every request verified) / one token
    exchange_warm     ours with token exchange, the exchanged token cached
    exchange_cold     ours with token exchange, distinct users, STS answering after a delay
    jwt_authn_es256, cold_es256, jwt_authn_eddsa, cold_eddsa   the same on ES256 and EdDSA
    mcp_none / mcp_rules   a 1 KB MCP tools/call POST, without / with the MCP gate (10 rules)
* The audit Envoy (`--concurrency 1`, the wasm component at info): warm with its audit line.
* The two-worker Envoy (`--concurrency 2`), run after the others: a cold burst of distinct users
  through remote keys and an exchange (STS calls per user, key fetches for the whole Envoy), then
  a burst of tokens with an unknown `kid` (one refetch for the whole Envoy).

Then the memory phase: 100,000 distinct users' tokens through the main Envoy's exchange listener.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # the bench's own modules (this file runs as a script)
sys.path.insert(0, str(BENCH.parent))  # the rig's `harness` package
import bench_envoy as ev  # noqa: E402 - importable only once the paths are set
from bench_load import write_scripts, wrk  # noqa: E402 - as above
from bench_tokens import SigningKey, mint, new_key  # noqa: E402 - as above

from harness.faults import memory_kib  # noqa: E402 - as above
from harness.process import ManagedProcess  # noqa: E402 - as above

ENVOY = ev.REPO / ".venv/bin/envoy"
PROBES = ["map", "header", "remove", "set", "metrics", "sha256", "time"]
# What our warm path does, probe by probe (one header map read, two removals, one header set,
# two counters, the token's SHA-256, the clock).
WARM_PATH_PROBES = "map,remove,set,metrics,sha256,time"


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    filters: list[dict[str, Any]]
    tokens: str  # which token file
    method: str = "GET"
    envoy: str = "main"


def cases(keys: dict[str, SigningKey]) -> list[Case]:
    rsa, es, ed = keys["RS256"].jwks, keys["ES256"].jwks, keys["EdDSA"].jwks
    probe_cases = [Case(f"probe_{p}", f"no-op filter + {p}", [ev.probe(f"probe_{p}", p)], "one") for p in PROBES]
    return [
        Case("plain", "plain Envoy proxy", [], "one"),
        Case("wasm_noop", "wasm filter that does nothing", [ev.probe("wasm_noop", "")], "one"),
        *probe_cases,
        Case("probe_all", "no-op filter + our warm path's host calls", [ev.probe("probe_all", WARM_PATH_PROBES)],
             "one"),
        Case("jwt_authn", "Envoy jwt_authn RS256, no cache", [ev.jwt_authn(rsa, cache=False)], "one"),
        Case("jwt_authn_cache", "Envoy jwt_authn RS256, jwt_cache_config", [ev.jwt_authn(rsa, cache=True)], "one"),
        Case("cold", "ours RS256, cold (every request verified)", [ev.ours("cold", ev.plugin(rsa, cache=0))],
             "cold"),
        Case("warm", "ours, warm (verified-token cache)", [ev.ours("warm", ev.plugin(rsa))], "one"),
        Case("exchange_warm", "ours + exchange, warm", [ev.ours("exchange_warm", ev.plugin(rsa, sts="sts"))], "one"),
        Case("exchange_cold", "ours + exchange, cold, STS delay",
             [ev.ours("exchange_cold", ev.plugin(rsa, sts="sts"))], "users"),
        Case("jwt_authn_es256", "Envoy jwt_authn ES256, no cache", [ev.jwt_authn(es, cache=False)], "cold_es256"),
        Case("cold_es256", "ours ES256, cold", [ev.ours("cold_es256", ev.plugin(es, cache=0))], "cold_es256"),
        Case("jwt_authn_eddsa", "Envoy jwt_authn EdDSA, no cache", [ev.jwt_authn(ed, cache=False)], "cold_eddsa"),
        Case("cold_eddsa", "ours EdDSA, cold", [ev.ours("cold_eddsa", ev.plugin(ed, cache=0))], "cold_eddsa"),
        Case("mcp_none", "ours, 1 KB tools/call, no MCP gate", [ev.ours("mcp_none", ev.plugin(rsa))], "mcp", "POST"),
        Case("mcp_rules", "ours, 1 KB tools/call, MCP gate, 10 rules",
             [ev.ours("mcp_rules", ev.plugin(rsa, mcp=ev.mcp_rules(10)))], "mcp", "POST"),
        Case("warm_audit", "ours, warm, audit line at info", [ev.ours("warm_audit", ev.plugin(rsa))], "one",
             envoy="audit"),
    ]


class BenchEnvoy(ManagedProcess):
    """One of the bench's Envoys."""

    name = "Envoy"
    start_timeout_seconds = 30
    stop_grace_seconds = 10

    def __init__(self, config: Path, admin_port: int, log_path: Path, concurrency: int, base_id: int,
                 log_args: list[str]) -> None:
        super().__init__(log_path=log_path)
        self.config, self.admin_port = config, admin_port
        self.concurrency, self.base_id, self.log_args = concurrency, base_id, log_args

    def command(self) -> list[str]:
        return [str(ENVOY), "-c", str(self.config), "--concurrency", str(self.concurrency),
                "--base-id", str(self.base_id), *self.log_args]

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


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5, data: bytes | None = None,
             ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def stats(admin: int) -> dict[str, int]:
    _, body = http_get(f"http://127.0.0.1:{admin}/stats?format=json")
    return {s["name"]: s.get("value", 0) for s in json.loads(body)["stats"] if "value" in s}


def write_tokens(work: Path, name: str, tokens: list[str]) -> Path:
    path = work / f"{name}.txt"
    path.write_text("\n".join(tokens) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5, help="measured seconds per case and round")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sts-delay-ms", type=int, default=50)
    parser.add_argument("--users", type=int, default=1000, help="distinct users in the cold exchange cases")
    parser.add_argument("--memory-tokens", type=int, default=100_000)
    parser.add_argument("--only", nargs="*", help="measure only these cases (and skip the later phases)")
    args = parser.parse_args()

    for path, hint in [(ev.WASM, "run make build"), (ev.NOOP_WASM, "run make bench"), (ENVOY, "run make setup")]:
        if not path.exists():
            print(f"bench: {path} is missing; {hint}", file=sys.stderr)
            return 1

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mcp-auth-bench-"))
    scripts = write_scripts(work)
    print(f"minting tokens on {os.cpu_count()} cores ...", flush=True)
    keys = {alg: new_key(alg) for alg in ("RS256", "ES256", "EdDSA")}
    rsa = keys["RS256"]
    files = {
        "one": write_tokens(work, "one", mint(rsa, "warm-user", 1)),
        "cold": write_tokens(work, "cold", mint(rsa, "cold-user", 2000)),
        "users": write_tokens(work, "users", mint(rsa, "exchange-user", args.users)),
        "burst": write_tokens(work, "burst", mint(rsa, "burst-user", args.users)),
        "cold_es256": write_tokens(work, "cold_es256", mint(keys["ES256"], "es-user", 2000)),
        "cold_eddsa": write_tokens(work, "cold_eddsa", mint(keys["EdDSA"], "ed-user", 2000)),
        "mcp": write_tokens(work, "mcp", mint(rsa, "mcp-user", 1, {"scp": ["bigquery:read"]})),
    }
    # Signed by a key the IdP does not publish: every one asks for a refetch.
    stranger = new_key("RS256")
    files["unknown_kid"] = write_tokens(work, "unknown_kid", [
        t for t in mint(SigningKey("RS256", "bench-rotated", stranger.pem, stranger.jwks), "rotated-user", 200)])
    memory_slices = []
    slice_size = max(1, -(-args.memory_tokens // 4))
    for start in range(0, args.memory_tokens, slice_size):
        count = min(slice_size, args.memory_tokens - start)
        memory_slices.append((write_tokens(work, f"memory-{start}", mint(rsa, f"memory-{start}", count)), count))
    print(f"minted in {time.monotonic() - started:.0f}s", flush=True)

    all_cases = cases(keys)
    selected = [c for c in all_cases if not args.only or c.name in args.only]
    ports = free_ports(["main_admin", "main_origin", "audit_admin", "audit_origin", "sts", "sts_fast", "memory"]
                       + [c.name for c in all_cases])
    main_doc = ev.envoy_doc(
        ports["main_admin"],
        [ev.origin_listener(ports["main_origin"]), ev.sts_listener("sts", ports["sts"], args.sts_delay_ms),
         # The memory phase's STS answers at once: 100,000 users behind a delayed STS would take minutes.
         ev.sts_listener("sts_fast", ports["sts_fast"], 0),
         ev.listener("memory", ports["memory"], [ev.ours("memory", ev.plugin(rsa.jwks, sts="sts_fast"))],
                     {"route": {"cluster": "origin"}})]
        + [ev.listener(c.name, ports[c.name], c.filters, {"route": {"cluster": "origin"}})
           for c in all_cases if c.envoy == "main"],
        {"origin": ports["main_origin"], "sts": ports["sts"], "sts_fast": ports["sts_fast"]})
    audit_doc = ev.envoy_doc(
        ports["audit_admin"],
        [ev.origin_listener(ports["audit_origin"])]
        + [ev.listener(c.name, ports[c.name], c.filters, {"route": {"cluster": "origin"}})
           for c in all_cases if c.envoy == "audit"],
        {"origin": ports["audit_origin"]})
    (work / "main.json").write_text(json.dumps(main_doc))
    (work / "audit.json").write_text(json.dumps(audit_doc))
    base = os.getpid() % 20000
    quiet = ["--log-level", "warn"]
    audited = ["--log-level", "warn", "--component-log-level", "wasm:info"]
    with BenchEnvoy(work / "main.json", ports["main_admin"], work / "main.log", 1, base, quiet) as main_envoy, \
            BenchEnvoy(work / "audit.json", ports["audit_admin"], work / "audit.log", 1, base + 1, audited):
        for case in selected:  # every case must answer 200 before it is measured
            first = files[case.tokens].read_text().split("\n", 1)[0]
            status, body = probe_request(ports[case.name], case, first)
            if status != 200:
                raise RuntimeError(f"case {case.name} answers {status}: {body[:200]!r}")
        sts_before = stats(ports["main_admin"]).get("http.sts.downstream_rq_total", 0)
        results: dict[str, list[dict[str, Any]]] = {c.name: [] for c in selected}
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds} ...", flush=True)
            for case in selected:
                script = scripts[case.method]
                wrk(ports[case.name], files[case.tokens], script, args.warmup)
                results[case.name].append(wrk(ports[case.name], files[case.tokens], script, args.seconds))
        st = stats(ports["main_admin"])
        exchange = {"sts_calls": st.get("http.sts.downstream_rq_total", 0) - sts_before,
                    "requests": st.get("http.exchange_cold.downstream_rq_total", 0)}
        memory: list[tuple[int, ...]] = []
        if not args.only:
            print(f"memory phase: {args.memory_tokens} distinct users ...", flush=True)
            memory = memory_phase(memory_slices, scripts["GET"], ports["memory"], main_envoy.running_pid())
    workers = {} if args.only else two_worker_phase(work, rsa, files, scripts["GET"], args, base + 2)
    report(selected, results, args, exchange, memory, workers, time.monotonic() - started)
    return 0


def probe_request(port: int, case: Case, token: str) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    if case.method == "GET":
        return http_get(f"http://127.0.0.1:{port}/", headers)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "query_users", "arguments": {}}}).encode()
    headers |= {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    return http_get(f"http://127.0.0.1:{port}/mcp", headers, data=body)


def two_worker_phase(work: Path, rsa: SigningKey, files: dict[str, Path], script: Path, args: argparse.Namespace,
                     base_id: int) -> dict[str, float]:
    """A cold burst over two workers: STS calls per user, key fetches for the first load and for an unknown kid."""
    print("two-worker phase ...", flush=True)
    ports = free_ports(["admin", "origin", "jwks", "sts", "burst"])
    doc = ev.envoy_doc(
        ports["admin"],
        [ev.origin_listener(ports["origin"]),
         ev.listener("jwks", ports["jwks"], [], {"direct_response": {"status": 200,
                                                                     "body": {"inline_string": rsa.jwks}}}),
         ev.sts_listener("sts", ports["sts"], args.sts_delay_ms),
         ev.listener("burst", ports["burst"], [ev.ours("burst", ev.plugin(sts="sts", remote_jwks_cluster="jwks"))],
                     {"route": {"cluster": "origin"}})],
        {"origin": ports["origin"], "jwks": ports["jwks"], "sts": ports["sts"]})
    (work / "workers.json").write_text(json.dumps(doc))
    quiet = ["--log-level", "warn"]
    with BenchEnvoy(work / "workers.json", ports["admin"], work / "workers.log", 2, base_id, quiet):
        burst = wrk(ports["burst"], files["burst"], script, max(4.0, args.users / 300))
        st = stats(ports["admin"])
        first_load = st.get("http.jwks.downstream_rq_total", 0)
        sts_calls = st.get("http.sts.downstream_rq_total", 0)
        # Tokens with a kid the IdP never published: each worker wants a refetch.
        wrk(ports["burst"], files["unknown_kid"], script, 2.0)
        refetches = stats(ports["admin"]).get("http.jwks.downstream_rq_total", 0) - first_load
    return {"users": args.users, "burst_requests": burst["requests"], "burst_non2xx": burst["non2xx"],
            "sts_calls": sts_calls, "first_load_fetches": first_load, "unknown_kid_fetches": refetches}


def memory_phase(slices: list[tuple[Path, int]], script: Path, port: int, pid: int) -> list[tuple[int, ...]]:
    """Sends distinct users' tokens slice by slice, sampling Envoy's memory after each."""
    samples: list[tuple[int, ...]] = [(0, *rss_kib(pid))]
    sent = 0
    for batch, n in slices:
        # Long enough for every token of the slice to be sent at least once at ~1,000 req/s;
        # tokens sent again after that are cache hits.
        result = wrk(port, batch, script, 2.0 + n / 1000)
        sent += min(n, result["requests"])
        samples.append((sent, *rss_kib(pid), result["requests"], result["non2xx"]))
    return samples


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    memory = memory_kib(pid)
    return memory["VmRSS"], memory["VmHWM"]


def machine() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


def report(selected: list[Case], results: dict[str, list[dict[str, Any]]], args: argparse.Namespace,
           exchange: dict[str, int], memory: list[tuple[int, ...]], workers: dict[str, float],
           elapsed: float) -> None:
    med = {c: {k: statistics.median(r[k] for r in results[c]) for k in ("rps", "p50", "p99")} for c in results}
    bad = {c: sum(r["non2xx"] for r in results[c]) for c in results}
    print()
    print(f"Envoy 1.40 --concurrency 1, wrk -t1 -c32, {args.rounds} rounds x {args.seconds:g}s after "
          f"{args.warmup:g}s warm-up, medians; machine: {machine()}")
    print(f"{'case':44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for c in selected:
        m = med[c.name]
        print(f"{c.name + ': ' + c.label:44.44} {m['rps']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f} {bad[c.name]:8d}")

    def us(case: str) -> float:
        """Microseconds of the single worker per request."""
        rps = med.get(case, {}).get("rps", 0.0)
        return 1e6 / rps if rps else float("nan")

    if "wasm_noop" in med and "warm" in med:
        floor = us("wasm_noop")
        print()
        print(f"warm path over the wasm floor: {us('warm') - floor:.1f} us per request, split by cause:")
        for p in PROBES + ["all"]:
            if f"probe_{p}" in med:
                print(f"  {p:8} {us('probe_' + p) - floor:6.1f} us")
        if "probe_all" in med:
            print(f"  rest     {us('warm') - us('probe_all'):6.1f} us  (our own work: parse, hash lookup, decide, "
                  "build the rewrite)")
    if exchange.get("requests"):
        print(f"\nexchange_cold: {exchange['sts_calls']} STS calls for {exchange['requests']} requests from "
              f"{args.users} distinct users (STS delay {args.sts_delay_ms} ms)")
    if workers:
        print(f"two workers: {workers['sts_calls']} STS calls for {workers['users']} users "
              f"({workers['burst_requests']} requests, {workers['burst_non2xx']} non-2xx); JWKS fetches: "
              f"{workers['first_load_fetches']} for the first load, {workers['unknown_kid_fetches']} for the "
              "unknown-kid burst")
    if memory:
        print("memory (Envoy process, KiB): distinct tokens sent, VmRSS, VmHWM, requests, non-2xx")
        for sample in memory:
            print("  " + ", ".join(str(v) for v in sample))
    print(f"bench took {elapsed:.0f}s")
    print()
    for c in selected:
        m = med[c.name]
        print(f"BENCH {c.name} rps={m['rps']:.0f} p50_ms={m['p50']:.2f} p99_ms={m['p99']:.2f}")

    def ratio(a: str, b: str) -> float:
        if a not in med or b not in med or not med[b]["rps"]:
            return float("nan")
        return med[a]["rps"] / med[b]["rps"]

    for name, a, b in [
        ("wasm_noop_vs_plain", "wasm_noop", "plain"),
        ("warm_vs_wasm_noop", "warm", "wasm_noop"),
        ("warm_vs_jwt_authn_cache", "warm", "jwt_authn_cache"),
        ("cold_vs_jwt_authn", "cold", "jwt_authn"),
        ("cold_es256_vs_jwt_authn_es256", "cold_es256", "jwt_authn_es256"),
        ("cold_eddsa_vs_jwt_authn_eddsa", "cold_eddsa", "jwt_authn_eddsa"),
        ("exchange_warm_vs_plain", "exchange_warm", "plain"),
        ("audit_on_vs_off", "warm_audit", "warm"),
        ("mcp_rules_vs_none", "mcp_rules", "mcp_none"),
    ]:
        if a in med and b in med:  # with --only, the pairs that ran
            print(f"RATIO {name} {ratio(a, b):.2f}")
    if exchange.get("requests"):
        print(f"RATIO sts_calls_per_user {exchange['sts_calls'] / args.users:.2f}")
    if workers:
        print(f"RATIO sts_calls_per_user_2workers {workers['sts_calls'] / workers['users']:.2f}")
        fetches = (workers["first_load_fetches"] + workers["unknown_kid_fetches"]) / 2
        print(f"RATIO jwks_fetches_per_refresh_2workers {fetches:.2f}")


if __name__ == "__main__":
    sys.exit(main())
