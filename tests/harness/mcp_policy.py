"""The filter's `mcp` block for the seed's BigQuery scenario, and raw JSON-RPC requests for the
MCP endpoint (the 2026-07-28 form with its Mcp-Method / Mcp-Name / MCP-Protocol-Version mirrors,
and the legacy form without them).

The rules (first match decides; other operations: `default_action`, allow):
  read          tools/call query_*, list_datasets    bigquery:read;  backend token: BQ_READONLY
  admins-only   tools/call drop_*                    bigquery:write and groups contains "dba";
                                                     backend token: BQ_WRITE
  admin-prompts prompts/get admin_*                  groups contains "dba"
  reports       resources/read file:///data/*        backend token for the audience REPORTS_AUDIENCE
  no-secrets    resources/read file:///etc/*         deny
and bigquery:admin implies bigquery:read and bigquery:write.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from .checks import new_marker
from .mcp_upstream import MARKER_HEADER

BQ_READ = "bigquery:read"
BQ_WRITE = "bigquery:write"
BQ_ADMIN = "bigquery:admin"
MCP_CALL = "mcp:tools:call"
# The backend scopes each kind of tool gets (Google's BigQuery scopes, as in the issue).
BQ_READONLY_SCOPE = "https://www.googleapis.com/auth/bigquery.readonly"
BQ_WRITE_SCOPE = "https://www.googleapis.com/auth/bigquery"
REPORTS_AUDIENCE = "reports"

MODERN_VERSION = "2026-07-28"
PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
HEADER_MISMATCH = -32020
FORBIDDEN = -32001


def bigquery_mcp(*, body_timeout: str = "10s", max_body_bytes: int | None = None,
                 read_exchange: list[str] | None = None, write_exchange: list[str] | None = None,
                 reports_audience: str | None = REPORTS_AUDIENCE) -> dict[str, Any]:
    """The module docstring's `mcp` block. The `exchange` overrides need token_exchange: pass
    None for all three for a stack without it. `max_body_bytes` None leaves the filter's default."""
    read: dict[str, Any] = {"name": "read", "methods": ["tools/call"], "names": ["query_*", "list_datasets"],
                            "required_scopes": [BQ_READ], "action": "allow"}
    write: dict[str, Any] = {"name": "admins-only", "methods": ["tools/call"], "names": ["drop_*"],
                             "claims": [{"claim": "groups", "contains": "dba"}], "required_scopes": [BQ_WRITE],
                             "action": "allow"}
    reports: dict[str, Any] = {"name": "reports", "methods": ["resources/read"], "names": ["file:///data/*"]}
    if read_exchange is not None:
        read["exchange"] = {"scopes": read_exchange}
    if write_exchange is not None:
        write["exchange"] = {"scopes": write_exchange}
    if reports_audience is not None:
        reports["exchange"] = {"audience": reports_audience}
    limit = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
    return {
        **limit,
        "body_timeout": body_timeout,
        "default_action": "allow",
        "filter_lists": True,
        "scope_implies": {BQ_ADMIN: [BQ_READ, BQ_WRITE]},
        "rules": [
            read,
            write,
            {"name": "admin-prompts", "methods": ["prompts/get"], "names": ["admin_*"],
             "claims": [{"claim": "groups", "contains": "dba"}]},
            reports,
            {"name": "no-secrets", "methods": ["resources/read"], "names": ["file:///etc/*"], "action": "deny"},
        ],
    }


def with_mcp(plugin_config: dict[str, Any], mcp: dict[str, Any]) -> dict[str, Any]:
    """A copy of a plugin configuration with the `mcp` block, its scopes advertised."""
    config = copy.deepcopy(plugin_config)
    config["mcp"] = mcp
    supported = config.setdefault("scopes_supported", [])
    supported += [s for s in (BQ_READ, BQ_WRITE) if s not in supported]
    return config


# ---- raw JSON-RPC ------------------------------------------------------------------------------

def modern_meta() -> dict[str, Any]:
    """`params._meta` of a 2026-07-28 request."""
    return {PROTOCOL_VERSION_META: MODERN_VERSION, CAPABILITIES_META: {}}


def tool_call(name: str, arguments: dict[str, Any] | None = None, *, request_id: Any = 1,
              modern: bool = True) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
    if modern:
        params["_meta"] = modern_meta()
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def request(method: str, params: dict[str, Any] | None = None, *, request_id: Any = 1,
            modern: bool = True) -> dict[str, Any]:
    params = dict(params or {})
    if modern:
        params["_meta"] = modern_meta()
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def encode_mirror(value: str) -> str:
    """Mcp-Name as the 2026-07-28 clients send it: plain printable ASCII as is, else the
    `=?base64?...?=` sentinel form."""
    if value.isascii() and value.isprintable() and value == value.strip():
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


def mirrors(method: str, name: str | None = None) -> dict[str, str]:
    """The 2026-07-28 request headers mirroring a body."""
    headers = {"mcp-protocol-version": MODERN_VERSION, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = encode_mirror(name)
    return headers


def post_headers(token: str, marker: str | None = None, **extra: str) -> dict[str, str]:
    """Headers of a JSON POST to the MCP endpoint, with a marker (new one unless given)."""
    return {"authorization": f"Bearer {token}", "content-type": "application/json",
            "accept": "application/json, text/event-stream", MARKER_HEADER: marker or new_marker(), **extra}


def modern_post(token: str, message: dict[str, Any], marker: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a well-formed 2026-07-28 POST of `message` (mirrors included)."""
    params = message.get("params", {})
    name = params.get("uri" if message["method"] == "resources/read" else "name")
    headers = post_headers(token, marker, **mirrors(message["method"], name))
    return json.dumps(message).encode(), headers


def jsonrpc_error(body: bytes) -> tuple[Any, int, str]:
    """(id, code, message) of a JSON-RPC error answer."""
    answer = json.loads(body)
    assert answer.get("jsonrpc") == "2.0" and "error" in answer, answer
    return answer.get("id"), answer["error"]["code"], answer["error"]["message"]
