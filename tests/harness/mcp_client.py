"""The official MCP SDK client, set up for the rig: extra headers, bounded timeouts, initialize."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx2  # the SDK's own HTTP client
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


@dataclass(frozen=True)
class Exchange:
    """One POST the SDK made: its JSON-RPC method ("response" for an answer to the server), the
    HTTP status and the answer's media type."""

    jsonrpc: str
    status: int
    content_type: str


@asynccontextmanager
async def mcp_session(url: str, headers: dict[str, str], timeout: float = 10, mode: str = "legacy",
                      exchanges: list[Exchange] | None = None) -> AsyncIterator[Client]:
    """An initialized MCP session over streamable HTTP, sending `headers` on every request.

    mode="legacy" makes the SDK open with the classic `initialize` handshake (2025-11-25);
    "auto" probes `server/discover` first and speaks 2026-07-28 with a server that offers it.
    `exchanges`, if given, collects every POST the SDK makes.
    """

    async def record(response: httpx2.Response) -> None:
        if exchanges is not None and response.request.method == "POST":
            try:
                body = json.loads(response.request.content)
            except ValueError:
                body = None
            method = body.get("method", "response") if isinstance(body, dict) else "batch"
            exchanges.append(Exchange(method, response.status_code,
                                      response.headers.get("content-type", "").split(";")[0]))

    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout),
                                  event_hooks={"response": [record]}) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=timeout) as client:
            yield client
