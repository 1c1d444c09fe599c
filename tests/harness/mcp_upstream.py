"""A real MCP server (official `mcp` SDK, streamable HTTP at /mcp) used as Envoy's upstream.

Run as a subprocess (`python -m harness.mcp_upstream --port N` in tests/); `McpUpstream` starts
and stops it.

Tools: `whoami` (the identity headers the server received), `add(a, b)`, and
`query_backend(url=None, method="GET")`, which calls a backend API with the `Authorization` header
this server received (with token exchange: the backend token the filter put there) and returns
the backend's answer; `url` defaults to `--backend-url`.
The BigQuery scenario (per-tool authorization): the tools `query_users`, `list_datasets` and
`drop_table(table)`, each answering with the claims of the backend token it received
(`backend_token`, see `bearer_claims`), the prompts `summarize_dataset` and `admin_runbook`, and
the resources `file:///data/report.txt` and `file:///etc/passwd`.
`--json-response` answers every POST with application/json; by default the SDK answers legacy
(2025-11-25) requests with text/event-stream, and 2026-07-28 ones with JSON unless a tool
streams.
Extra HTTP routes on the same port:
  GET /healthz      -> 200 (the filter's bypass path in the standard config)
  GET /_test/seen   -> headers of every request received so far (call it directly, not via Envoy)
  anything else     -> 200 JSON echo of the request (e.g. GET /echo), so "the filter let it
                       through" is visible in the response
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .net import LOOPBACK, free_port
from .process import TESTS_DIR, ManagedProcess

# Header carrying a per-test marker, so a test can find exactly its own requests in /_test/seen.
MARKER_HEADER = "x-test-marker"
SEEN_PATH = "/_test/seen"


def bearer_claims(headers: Mapping[str, str] | None) -> dict[str, Any]:
    """What a tool reports about the backend token it received (unverified: the filter and the
    STS vouch for it): whether there was one, its issuer, audience, subject and scopes (`scp` or
    `scope`, as a list); an opaque token has no claims."""
    authorization = (headers or {}).get("authorization")
    if authorization is None:
        return {"present": False}
    token = authorization.removeprefix("Bearer ")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {"present": True, "opaque": True}
    scopes = claims.get("scp", claims.get("scope", []))
    return {"present": True, "iss": claims.get("iss"), "aud": claims.get("aud"), "sub": claims.get("sub"),
            "scopes": scopes.split() if isinstance(scopes, str) else scopes}


def add_bigquery_scenario(server: MCPServer) -> None:
    """Tools, prompts and resources of the seed scenario: read tools, a write tool, secrets."""

    @server.tool()
    def query_users(ctx: Context, limit: int = 2) -> dict[str, Any]:
        """Read rows of the users table (a read tool)."""
        rows = [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}, {"id": 3, "name": "edsger"}]
        return {"tool": "query_users", "rows": rows[:limit], "backend_token": bearer_claims(ctx.headers)}

    @server.tool()
    def list_datasets(ctx: Context) -> dict[str, Any]:
        """List the datasets (a read tool)."""
        return {"tool": "list_datasets", "datasets": ["analytics", "sales"],
                "backend_token": bearer_claims(ctx.headers)}

    @server.tool()
    def drop_table(ctx: Context, table: str) -> dict[str, Any]:
        """Drop a table (a write tool: for database administrators)."""
        return {"tool": "drop_table", "dropped": table, "backend_token": bearer_claims(ctx.headers)}

    @server.prompt()
    def summarize_dataset(dataset: str) -> str:
        """Ask for a summary of a dataset."""
        return f"Summarize the dataset {dataset}."

    @server.prompt()
    def admin_runbook() -> str:
        """The administrators' runbook."""
        return "Runbook: rotate the service account keys."

    @server.resource("file:///data/report.txt", mime_type="text/plain")
    def report() -> str:
        return "quarterly report"

    @server.resource("file:///etc/passwd", mime_type="text/plain")
    def passwd() -> str:
        return "root:x:0:0:root:/root:/bin/sh"


def build_app(backend_url: str | None = None, allowed_hosts: list[str] | None = None,
              json_response: bool = False) -> Any:
    """The Starlette app: MCP endpoint + test routes, wrapped by a header recorder.

    `allowed_hosts`: Host header values accepted besides loopback ones (the SDK's DNS-rebinding
    protection), e.g. ["mcp.example.com"] when Envoy forwards a public host name.
    `json_response`: answer every POST with application/json, never text/event-stream."""
    server = MCPServer("mcp-auth-filter test upstream")
    seen: list[dict[str, Any]] = []
    seen_lock = threading.Lock()

    @server.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        """Identity headers as received by the MCP server (set by the auth filter)."""
        headers = ctx.headers or {}
        return {
            "sub": headers.get("x-mcp-user-sub"),
            "email": headers.get("x-mcp-user-email"),
            "authorization_present": "authorization" in headers,
        }

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    async def query_backend(ctx: Context, url: str | None = None, method: str = "GET") -> dict[str, Any]:
        """Call the backend API on the user's behalf, with the Authorization header this server got."""
        target = url or backend_url
        if not target:
            return {"status": None, "body": "no backend URL (start the server with --backend-url)",
                    "authorization_sent": False}
        authorization = (ctx.headers or {}).get("authorization")
        headers = {"authorization": authorization} if authorization else {}
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.request(method, target, headers=headers)
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return {"status": response.status_code, "body": body, "authorization_sent": authorization is not None}

    add_bigquery_scenario(server)

    @server.custom_route("/healthz", methods=["GET", "HEAD"])
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @server.custom_route(SEEN_PATH, methods=["GET"])
    async def seen_route(request: Request) -> Response:
        with seen_lock:
            return JSONResponse(list(seen))

    @server.custom_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
    async def echo(request: Request) -> Response:
        return JSONResponse({"method": request.method, "path": request.url.path,
                             "headers": [[k, v] for k, v in request.headers.items()]})

    security = None
    if allowed_hosts:
        loopback = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        security = TransportSecuritySettings(
            allowed_hosts=loopback + [h for name in allowed_hosts for h in (name, f"{name}:*")],
            allowed_origins=[f"{scheme}://{h}" for h in loopback + allowed_hosts for scheme in ("http", "https")])
    app = server.streamable_http_app(streamable_http_path="/mcp", host=LOOPBACK, transport_security=security,
                                     json_response=json_response)

    async def recording_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Record raw header pairs (duplicates kept) before anything else can alter them.
        if scope["type"] == "http" and scope["path"] != SEEN_PATH:
            entry = {
                "method": scope["method"],
                "path": scope["path"],
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            }
            with seen_lock:
                seen.append(entry)
        await app(scope, receive, send)

    return recording_app


def header_values(entry: dict[str, Any], name: str) -> list[str]:
    """All values of header `name` in a /_test/seen entry."""
    return [v for k, v in entry["headers"] if k.lower() == name.lower()]


class McpUpstream(ManagedProcess):
    """The MCP server as a subprocess on `port` (`start()` waits until it answers /healthz)."""

    name = "MCP upstream"

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 backend_url: str | None = None, allowed_hosts: list[str] | None = None,
                 json_response: bool = False) -> None:
        """`json_response`: answer with application/json only (default: the SDK's choice, SSE
        for legacy requests)."""
        self.port = port or free_port()
        self.backend_url = backend_url
        self.allowed_hosts = allowed_hosts or []
        self.json_response = json_response
        self.url = f"http://{LOOPBACK}:{self.port}"
        super().__init__(log_path=log_path, cwd=TESTS_DIR, environment={**os.environ, "PYTHONUNBUFFERED": "1"})

    def command(self) -> list[str]:
        backend = ["--backend-url", self.backend_url] if self.backend_url else []
        backend += [arg for host in self.allowed_hosts for arg in ("--allowed-host", host)]
        backend += ["--json-response"] if self.json_response else []
        return [sys.executable, "-m", "harness.mcp_upstream", "--port", str(self.port), *backend]

    def is_ready(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

    def seen(self, marker: str | None = None) -> list[dict[str, Any]]:
        """Requests the upstream received (directly from it, not through Envoy), optionally only
        those carrying `x-test-marker: <marker>`."""
        entries: list[dict[str, Any]] = httpx.get(f"{self.url}{SEEN_PATH}", timeout=5).json()
        if marker is None:
            return entries
        return [e for e in entries if marker in header_values(e, MARKER_HEADER)]


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-url", help="default URL of the query_backend tool")
    parser.add_argument("--host", default=LOOPBACK, help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--allowed-host", action="append", default=[],
                        help="a Host header value to accept besides loopback ones (repeatable)")
    parser.add_argument("--json-response", action="store_true",
                        help="answer every POST with application/json (default: SSE for legacy requests)")
    args = parser.parse_args()
    uvicorn.run(build_app(args.backend_url, args.allowed_host, args.json_response), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
