"""An MCP client that logs in by itself: the official SDK's OAuth support (`OAuthClientProvider`)
runs the whole MCP authorization flow through Envoy, and a headless "browser" follows the
authorization URL (the dev AS logs the demo user in and consents without a page), stopping at
the client's redirect URI like a browser handing the code back to a local callback server.

Every HTTP exchange is recorded as a `Hop`, so the demo can print the flow and the tests can
check it: 401 challenge -> protected resource metadata -> AS metadata -> registration ->
authorization -> token -> MCP requests with the bearer token.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2  # the SDK's own HTTP client
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from .net import LOOPBACK

# Nothing listens here: the headless browser stops at this URL and hands the code to the SDK,
# as a browser would hand it to a client's local callback server.
REDIRECT_URI = f"http://{LOOPBACK}:33418/callback"


@dataclass
class Hop:
    """One HTTP exchange of the flow, as the client side saw it."""

    actor: str  # "client" (the SDK) or "browser" (the user agent following the authorization URL)
    method: str
    url: str
    status: int
    detail: str = ""  # JSON-RPC method, grant type, challenge, redirect target...

    def line(self) -> str:
        detail = f"  {self.detail}" if self.detail else ""
        return f"{self.actor:7} {self.method:4} {self.url} -> {self.status}{detail}"


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class MappedTransport(httpx2.AsyncBaseTransport):
    """Sends requests for some origins to other (local) origins, keeping the Host header: DNS
    for tests whose configuration names real hosts (https://example.okta.com -> 127.0.0.1:port).
    A request moved off https carries `X-Forwarded-Proto: https`, as behind a TLS proxy."""

    def __init__(self, origins: Mapping[str, str]) -> None:
        self.origins = dict(origins)
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        target = self.origins.get(origin)
        if target is not None:
            # A new request, so the client keeps seeing the original URL (cookies stay with it).
            parsed = urllib.parse.urlsplit(target)
            headers = httpx2.Headers(request.headers)
            if request.url.scheme == "https":
                headers["x-forwarded-proto"] = "https"
            url = request.url.copy_with(scheme=parsed.scheme, host=parsed.hostname, port=parsed.port)
            request = httpx2.Request(request.method, url, headers=headers, stream=request.stream,
                                     extensions=request.extensions)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _form(request: httpx2.Request) -> dict[str, str]:
    try:
        return dict(urllib.parse.parse_qsl(request.content.decode()))
    except (httpx2.RequestNotRead, UnicodeDecodeError):
        return {}


def _describe(request: httpx2.Request, response: httpx2.Response) -> str:
    if request.method == "POST" and request.url.path.endswith("/mcp"):
        try:
            body = json.loads(request.content or b"{}")
        except (ValueError, httpx2.RequestNotRead):
            body = {}
        method = body.get("method", "") if isinstance(body, dict) else ""
        if method == "tools/call":
            method += f" {body.get('params', {}).get('name', '')}"
        challenge = response.headers.get("www-authenticate", "")
        return f"{method}  {challenge}".strip()
    form = _form(request) if request.method == "POST" else {}
    if form.get("grant_type"):
        return f"grant_type={form['grant_type']}" + (f" resource={form['resource']}" if form.get("resource") else "")
    if response.status_code in (301, 302, 303, 307, 308):
        return f"Location: {response.headers.get('location', '')[:90]}"
    return ""


@dataclass
class HeadlessBrowser:
    """The user agent: follows the authorization URL to the redirect URI and keeps the code."""

    hops: list[Hop]
    transport: httpx2.AsyncBaseTransport | None = None
    redirect_uri: str = REDIRECT_URI
    result: AuthorizationCodeResult | None = None
    authorization_url: str = ""

    async def redirect_handler(self, url: str) -> None:
        self.authorization_url = url
        async with httpx2.AsyncClient(transport=self.transport, timeout=10, follow_redirects=False) as browser:
            for _ in range(10):
                response = await browser.get(url)
                self.hops.append(Hop("browser", "GET", url.split("?")[0], response.status_code,
                                     _describe(response.request, response)))
                location = response.headers.get("location")
                if response.status_code not in (302, 303) or not location:
                    raise RuntimeError(f"authorization stopped at {url}: "
                                       f"HTTP {response.status_code} {response.text[:300]}")
                url = urllib.parse.urljoin(url, location)
                if url.startswith(self.redirect_uri):
                    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
                    if "error" in query:
                        raise RuntimeError(f"authorization refused: {query}")
                    self.result = AuthorizationCodeResult(code=query["code"], state=query.get("state"),
                                                          iss=query.get("iss"))
                    return
        raise RuntimeError("too many redirects during authorization")

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("no authorization code")
        return self.result


@dataclass
class OAuthLogin:
    """What one login produced: the hops, the SDK's provider (tokens, client registration)."""

    provider: OAuthClientProvider
    storage: MemoryStorage
    browser: HeadlessBrowser
    hops: list[Hop] = field(default_factory=list)

    @property
    def access_token(self) -> str:
        assert self.storage.tokens is not None, "not logged in"
        return self.storage.tokens.access_token

    def expire_access_token(self) -> None:
        """Make the SDK treat its access token as expired, so its next request refreshes it
        first (grant_type=refresh_token), as it would an hour later."""
        self.provider.context.token_expiry_time = time.time() - 1


def new_login(server_url: str, *, transport: httpx2.AsyncBaseTransport | None = None,
              client_name: str = "mcp-auth-filter demo client") -> OAuthLogin:
    hops: list[Hop] = []
    storage = MemoryStorage()
    browser = HeadlessBrowser(hops, transport)
    provider = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(
            client_name=client_name,
            redirect_uris=[AnyUrl(REDIRECT_URI)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    return OAuthLogin(provider, storage, browser, hops)


@asynccontextmanager
async def oauth_mcp_session(login: OAuthLogin, server_url: str, *, headers: dict[str, str] | None = None,
                            transport: httpx2.AsyncBaseTransport | None = None,
                            timeout: float = 20, mode: str = "legacy") -> AsyncIterator[Client]:
    """An initialized MCP session whose HTTP client authenticates with `login`'s provider
    (`mode`: the SDK's, "legacy" for the initialize handshake, "auto" for 2026-07-28)."""

    async def record(response: httpx2.Response) -> None:
        request = response.request
        login.hops.append(Hop("client", request.method, str(request.url).split("?")[0], response.status_code,
                              _describe(request, response)))

    async with (
        httpx2.AsyncClient(auth=login.provider, headers=headers or {}, transport=transport,
                           timeout=httpx2.Timeout(timeout), event_hooks={"response": [record]}) as http,
        Client(streamable_http_client(server_url, http_client=http), mode=mode,
               read_timeout_seconds=timeout) as client,
    ):
        yield client


def structured(result: Any) -> Any:
    """A tool result's structured content (the SDK's CallToolResult)."""
    return result.structured_content
