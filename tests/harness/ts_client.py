"""The official MCP TypeScript SDK as a client (tests/ts/mcp_client.mjs, run with Node.js):
one connection (initialize at the SDK's protocol, 2025-11-25), a list of steps, and what each
step returned or raised. `make setup` installs the SDK (npm ci in tests/ts/)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dev_as import node_binary

TS_DIR = Path(__file__).resolve().parents[1] / "ts"
CLIENT_JS = TS_DIR / "mcp_client.mjs"
RUN_TIMEOUT_SECONDS = 60


class TsClientMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class StepResult:
    ok: bool
    value: Any = None
    error: dict[str, Any] | None = None

    @property
    def error_message(self) -> str:
        return str((self.error or {}).get("message", ""))


@dataclass(frozen=True)
class TsRun:
    """What one run of the TypeScript client did."""

    protocol_version: str | None
    session_id: bool
    connect_error: dict[str, Any] | None
    results: list[StepResult]
    exchanges: list[dict[str, Any]]  # {method, jsonrpc, status, content_type, www_authenticate} per request

    def content_types(self, jsonrpc_method: str) -> list[str]:
        """The media types of the answers to the POSTs of `jsonrpc_method`."""
        return [str(e["content_type"] or "").split(";")[0] for e in self.exchanges if e["jsonrpc"] == jsonrpc_method]


def step(op: str, **fields: Any) -> dict[str, Any]:
    """A step of the plan: list_tools, list_prompts, list_resources, call_tool(name, arguments),
    get_prompt(name, arguments), read_resource(uri)."""
    return {"op": op, **fields}


def run_ts_client(url: str, headers: dict[str, str], steps: list[dict[str, Any]]) -> TsRun:
    """Run the TypeScript SDK client against `url`, sending `headers` on every request."""
    if not (TS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        raise TsClientMissing(f"{TS_DIR}/node_modules is missing: run make setup (npm ci in tests/ts/)")
    plan = json.dumps({"headers": headers, "steps": steps})
    done = subprocess.run([node_binary(), str(CLIENT_JS), url], input=plan, capture_output=True, text=True,
                          cwd=TS_DIR, timeout=RUN_TIMEOUT_SECONDS, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the TypeScript client failed ({done.returncode}): {done.stderr[-2000:]}")
    output = json.loads(done.stdout)
    return TsRun(protocol_version=output["protocol_version"], session_id=output["session_id"],
                 connect_error=output["connect_error"], exchanges=output["exchanges"],
                 results=[StepResult(r["ok"], r.get("value"), r.get("error")) for r in output["results"]])
