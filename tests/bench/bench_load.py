"""wrk, the load generator of `make bench`: one thread, a Lua script that cycles through tokens."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

GET_SCRIPT = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "/", {["Authorization"] = "Bearer " .. tokens[i]})
end
"""

# An MCP tools/call of about 1 KB, the gate's typical request.
POST_SCRIPT = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local padding = string.rep("x", 900)
local body = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"query_users",' ..
  '"arguments":{"sql":"select name from users where note = \\'' .. padding .. '\\'"}}}'
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("POST", "/mcp", {["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json", ["Accept"] = "application/json, text/event-stream"}, body)
end
"""


def write_scripts(work: Path) -> dict[str, Path]:
    scripts = {"GET": work / "get.lua", "POST": work / "post.lua"}
    scripts["GET"].write_text(GET_SCRIPT)
    scripts["POST"].write_text(POST_SCRIPT)
    return scripts


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
