"""A backend API behind the MCP server: it only accepts the tokens the STS issues for it.

It runs in-process on a background thread, like the IdP and the STS. Every request must carry
`Authorization: Bearer <token>`; what counts as valid depends on the profile:

  "jwt"     (Okta-like)  a JWT signed by the STS (keys from the STS's /jwks), iss = the STS,
                         aud = "backend", `backend-api:read` in scp, unexpired.
  "google"  (Google-like) an opaque `ya29.` token that the STS's /v1/tokeninfo resolves, with
                         a BigQuery or cloud-platform scope.

Anything else (no token, the client's own IdP token, a forged or expired token) gets 401.
Routes: `GET /api/whoami` and `POST /bigquery/v2/projects/<project>/queries` both answer with the
caller's identity as the backend resolved it. Every request is recorded (`calls`).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import jwt

from .net import LOOPBACK, JsonHandler, LoopbackService, free_port
from .sts import BACKEND_AUDIENCE, GOOGLE_SCOPES

WHOAMI_PATH = "/api/whoami"
REQUIRED_SCOPE = "backend-api:read"


@dataclass
class BackendCall:
    method: str
    path: str
    status: int = 0
    user: str | None = None  # the caller's `sub`, once the token checked out
    audience: str | None = None
    scopes: list[str] = field(default_factory=list)
    token_kind: str | None = None  # "jwt" | "google"
    reason: str | None = None  # why a request was refused
    token: str | None = None  # the bearer token received (for assertions only, never printed)


class Unauthorized(Exception):
    pass


class TokenIssuer(Protocol):
    """Whoever issues the backend's tokens, as far as the backend needs to know: a
    SecurityTokenService, the dev AS's backend `Issuer`, or a `StaticIssuer`."""

    @property
    def issuer(self) -> str: ...

    @property
    def jwks_uri(self) -> str: ...

    @property
    def tokeninfo_url(self) -> str: ...


@dataclass(frozen=True)
class StaticIssuer:
    """An issuer given by its URLs (one that is not a rig server, e.g. an Okta look-alike)."""

    issuer: str
    jwks_uri: str
    tokeninfo_url: str = ""


class BackendApi(LoopbackService):
    def __init__(self, sts: TokenIssuer, *, profile: str = "jwt", port: int | None = None,
                 audience: str = BACKEND_AUDIENCE, required_scope: str = REQUIRED_SCOPE,
                 google_scopes: tuple[str, ...] = GOOGLE_SCOPES, host: str = LOOPBACK) -> None:
        """`sts`: whoever issues the backend's tokens (only its URLs are used).
        `host`: the address to listen on."""
        if profile not in ("jwt", "google"):
            raise ValueError(profile)
        self.sts = sts
        self.profile = profile
        self.port = port or free_port()
        self.host = host
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.audience = audience
        self.required_scope = required_scope
        self.google_scopes = google_scopes
        self.calls: list[BackendCall] = []
        self._lock = threading.Lock()

    @property
    def whoami_url(self) -> str:
        return f"{self.url}{WHOAMI_PATH}"

    def _handle_get(self, h: JsonHandler) -> None:
        self._handle(h)

    def _handle_post(self, h: JsonHandler) -> None:
        h.read_body()
        self._handle(h)

    def calls_by(self, user: str) -> list[BackendCall]:
        with self._lock:
            return [c for c in self.calls if c.user == user]

    # ---- verification ----------------------------------------------------------------------

    def _verify_jwt(self, token: str, call: BackendCall) -> None:
        try:
            jwks = httpx.get(self.sts.jwks_uri, timeout=5).json()
            kid = jwt.get_unverified_header(token).get("kid")
            jwk = next((k for k in jwks["keys"] if k.get("kid") == kid), None)
            if jwk is None:
                raise Unauthorized("signing key unknown")
            key = jwt.PyJWK(jwk)
            claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=self.audience,
                                issuer=self.sts.issuer, options={"require": ["exp", "sub"]})
        except jwt.PyJWTError as e:
            raise Unauthorized(f"token invalid: {type(e).__name__}") from None
        except httpx.HTTPError:
            raise Unauthorized("STS keys unavailable") from None
        scopes = claims.get("scp", claims.get("scope", []))  # Okta's scp, or RFC 9068's scope
        scopes = scopes.split() if isinstance(scopes, str) else list(scopes)
        if self.required_scope not in scopes:
            raise Unauthorized("required scope missing")
        call.user, call.audience, call.scopes, call.token_kind = claims["sub"], claims["aud"], scopes, "jwt"

    def _verify_google(self, token: str, call: BackendCall) -> None:
        if not token.startswith("ya29."):
            raise Unauthorized("not a Google access token")
        try:
            response = httpx.get(self.sts.tokeninfo_url, params={"access_token": token}, timeout=5)
        except httpx.HTTPError:
            raise Unauthorized("tokeninfo unavailable") from None
        if response.status_code != 200:
            raise Unauthorized("token unknown or expired")
        info = response.json()
        scopes = info["scope"].split()
        if not any(s in self.google_scopes for s in scopes):
            raise Unauthorized("no BigQuery scope")
        call.user, call.audience, call.scopes, call.token_kind = info["sub"], info["aud"], scopes, "google"

    def _handle(self, req: JsonHandler) -> None:
        path = urllib.parse.urlsplit(req.path).path
        call = BackendCall(method=req.command, path=path)
        with self._lock:
            self.calls.append(call)
        authorization = req.headers.get_all("authorization") or []
        try:
            if len(authorization) != 1 or not authorization[0].startswith("Bearer "):
                raise Unauthorized("no bearer token")
            token = call.token = authorization[0][len("Bearer "):]
            if self.profile == "jwt":
                self._verify_jwt(token, call)
            else:
                self._verify_google(token, call)
        except Unauthorized as e:
            call.status, call.reason = 401, str(e)
            req.reply(401, {"error": "invalid_token", "error_description": str(e)},
                      {"www-authenticate": 'Bearer error="invalid_token"'})
            return
        if path != WHOAMI_PATH and not (path.startswith("/bigquery/v2/projects/") and path.endswith("/queries")):
            call.status = 404
            req.reply(404, {"error": "not_found"})
            return
        call.status = 200
        body: dict[str, Any] = {"user": call.user, "audience": call.audience, "scopes": call.scopes,
                                "token_kind": call.token_kind}
        if path != WHOAMI_PATH:  # BigQuery-shaped answer: one row with the caller
            body.update(kind="bigquery#queryResponse", jobComplete=True,
                        schema={"fields": [{"name": "user", "type": "STRING"}]}, rows=[{"f": [{"v": call.user}]}])
        req.reply(200, body)


def main() -> None:
    """Run the backend on its own (docker-compose): verify JWTs of one issuer, print each call."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="backend API that accepts only tokens for aud=backend")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--issuer", required=True, help="iss of the tokens it accepts (the backend AS)")
    parser.add_argument("--jwks-uri", required=True, help="where the issuer's keys are")
    parser.add_argument("--audience", default=BACKEND_AUDIENCE)
    args = parser.parse_args()
    issuer = StaticIssuer(issuer=args.issuer, jwks_uri=args.jwks_uri)
    backend = BackendApi(issuer, port=args.port, host=args.host, audience=args.audience).start()
    print(f"backend API on {args.host}:{args.port}, accepting tokens of {args.issuer} for aud={args.audience}",
          flush=True)
    seen = 0
    while True:
        time.sleep(0.5)
        with backend._lock:
            new, seen = backend.calls[seen:], len(backend.calls)
        for call in new:
            print(json.dumps({"method": call.method, "path": call.path, "status": call.status, "user": call.user,
                              "audience": call.audience, "scopes": call.scopes, "reason": call.reason}), flush=True)


if __name__ == "__main__":
    main()
