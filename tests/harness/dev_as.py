"""The development authorization servers (dev-as/server.js, on the npm package oidc-provider),
started as a Node.js subprocess: an MCP AS (authorization code + PKCE, registration, resource
indicators, refresh tokens, automatic login as one demo user) and a backend AS (RFC 8693 token
exchange for the filter, trusting the MCP AS). `make setup` installs its packages (npm ci)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .net import LOOPBACK, free_port
from .process import ManagedProcess

DEV_AS_DIR = Path(__file__).resolve().parents[2] / "dev-as"
SERVER_JS = DEV_AS_DIR / "server.js"
BACKEND_AUDIENCE = "backend"
STS_CLIENT_ID = "mcp-filter"


class DevAsMissing(RuntimeError):
    pass


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise DevAsMissing("no node binary: install Node.js 20.19+ (see scripts/setup.sh)")
    if not (DEV_AS_DIR / "node_modules" / "oidc-provider").is_dir():
        raise DevAsMissing(f"{DEV_AS_DIR}/node_modules is missing: run make setup (npm ci in dev-as/)")
    return node


@dataclass(frozen=True)
class Issuer:
    """One of the two authorization servers: what a verifier needs to trust its tokens."""

    issuer: str
    port: int

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/oauth-authorization-server"

    # BackendApi reads a Google tokeninfo URL from its STS; the backend AS has none.
    tokeninfo_url = ""


class DevAuthorizationServer(ManagedProcess):
    """dev-as/server.js on free ports (or the given ones). `env` adds to or overrides its
    environment (see the header of server.js), e.g. issuers with paths and Okta-style routes."""

    name = "the dev authorization servers"

    def __init__(self, *, mcp_resources: list[str], sts_client_secret: str, demo_user: str = "alice",
                 mcp_port: int | None = None, backend_port: int | None = None,
                 log_path: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.mcp_port = mcp_port or free_port()
        self.backend_port = backend_port or free_port()
        self.mcp_resources = list(mcp_resources)
        self.sts_client_secret = sts_client_secret
        self.demo_user = demo_user
        self.env = {
            "DEV_AS_HOST": LOOPBACK,
            "MCP_AS_PORT": str(self.mcp_port),
            "BACKEND_AS_PORT": str(self.backend_port),
            "MCP_RESOURCES": ",".join(self.mcp_resources),
            "DEMO_USER": demo_user,
            "STS_CLIENT_ID": STS_CLIENT_ID,
            "STS_CLIENT_SECRET": sts_client_secret,
            **(env or {}),
        }
        super().__init__(log_path=log_path, cwd=DEV_AS_DIR, environment={**os.environ, **self.env})
        self.mcp = Issuer(self.env.get("MCP_AS_ISSUER", f"http://{LOOPBACK}:{self.mcp_port}"), self.mcp_port)
        self.backend = Issuer(self.env.get("BACKEND_AS_ISSUER", f"http://{LOOPBACK}:{self.backend_port}"),
                              self.backend_port)

    def command(self) -> list[str]:
        return [node_binary(), str(SERVER_JS)]

    def is_ready(self) -> bool:
        for port in {self.mcp_port, self.backend_port}:
            # Any answer means the port is served; the issuers' paths may not be at the root.
            httpx.get(f"http://{LOOPBACK}:{port}/", timeout=1)
        return True

    def metadata(self, issuer: Issuer) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(issuer.metadata_url, timeout=5).json()
        return answer
