"""A real MCP server (official `mcp` SDK, streamable HTTP at /mcp) used as Envoy's upstream.

Run as a subprocess (`python -m harness.mcp_upstream --port N` in tests/); `McpUpstream` starts
and stops it.

Tools: `whoami` (the identity headers the server received), `add(a, b)`, and
`query_backend(url=None, method="GET")`, which calls a backend API with the `Authorization` header
this server received (with token exchange: the backend token the filter put there) and returns
the backend's answer; `url` defaults to `--backend-url`.
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
from pathlib import Path
from typing import Any

import httpx
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


def build_app(backend_url: str | None = None, allowed_hosts: list[str] | None = None) -> Any:
    """The Starlette app: MCP endpoint + test routes, wrapped by a header recorder.

    `allowed_hosts`: Host header values accepted besides loopback ones (the SDK's DNS-rebinding
    protection), e.g. ["mcp.example.com"] when Envoy forwards a public host name."""
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
    app = server.streamable_http_app(streamable_http_path="/mcp", host=LOOPBACK, transport_security=security)

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
                 backend_url: str | None = None, allowed_hosts: list[str] | None = None) -> None:
        self.port = port or free_port()
        self.backend_url = backend_url
        self.allowed_hosts = allowed_hosts or []
        self.url = f"http://{LOOPBACK}:{self.port}"
        super().__init__(log_path=log_path, cwd=TESTS_DIR, environment={**os.environ, "PYTHONUNBUFFERED": "1"})

    def command(self) -> list[str]:
        backend = ["--backend-url", self.backend_url] if self.backend_url else []
        backend += [arg for host in self.allowed_hosts for arg in ("--allowed-host", host)]
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
    args = parser.parse_args()
    uvicorn.run(build_app(args.backend_url, args.allowed_host), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
