"""The official MCP SDK client, set up for the rig: extra headers, bounded timeouts, initialize."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2  # the SDK's own HTTP client
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


@asynccontextmanager
async def mcp_session(url: str, headers: dict[str, str], timeout: float = 10) -> AsyncIterator[Client]:
    """An initialized MCP session over streamable HTTP, sending `headers` on every request.

    mode="legacy" makes the SDK open with the classic `initialize` handshake.
    """
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy", read_timeout_seconds=timeout) as client:
            yield client
