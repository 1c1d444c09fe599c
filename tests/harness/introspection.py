"""A test RFC 7662 token introspection endpoint: the IdP of opaque tokens.

It runs in-process on a background thread, like the test IdP, on a port that stays fixed across
stop()/start() (so a stop looks like an outage), and serves:

  POST /introspect   token=<opaque token>[&token_type_hint=...]; the caller must authenticate
                     (RFC 7662 §2.1) with client_secret_basic (RFC 6749 §2.3.1 url-decoding) or
                     client_secret_post, else 401 invalid_client. The answer is
                     {"active": true, <the token's claims>} for a token `issue()` handed out (or
                     `register()` named), {"active": false} for anything else or a revoked one.

Every call is recorded (`calls`), with how many were being answered at once (`peak_concurrency`).
Faults are `StsFault` values (sts_fault.py), read at the start of every call: `delay` (slow),
`answer` (an error status, garbage, a body with duplicate members), `patch` (members merged
into an active answer), `headers`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .net import LOOPBACK, JsonHandler, LoopbackService, free_port
from .sts import MAX_DELAY_SECONDS
from .sts_fault import NO_FAULT, StsFault

INTROSPECTION_PATH = "/introspect"
DEFAULT_CLIENT_ID = "mcp-filter"
DEFAULT_CLIENT_SECRET = "introspection-client-secret"
DEFAULT_SCOPE = "mcp:tools:call"


@dataclass
class IntrospectionCall:
    """One call to the introspection endpoint, as the server saw and answered it."""

    status: int = 0
    auth_method: str = "none"  # client_secret_basic | client_secret_post | none
    client_id: str | None = None
    content_type: str | None = None
    token: str | None = None
    token_type_hint: str | None = None
    active: bool | None = None  # what it answered, when it answered about the token


class ClientRefused(Exception):
    """The caller did not authenticate as a registered client."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"{status} {error}")
        self.status, self.error = status, error


def authenticate_client(form: dict[str, str], authorization: str | None,
                        clients: dict[str, str]) -> tuple[str, str]:
    """RFC 6749 §2.3: exactly one method; returns (method, client_id) of a known client."""
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise ClientRefused(401, "invalid_client")
        if "client_secret" in form:
            raise ClientRefused(400, "invalid_request")  # more than one method
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ClientRefused(401, "invalid_client") from None
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise ClientRefused(401, "invalid_client")
        method = "client_secret_basic"
        client_id, secret = urllib.parse.unquote_plus(raw_id), urllib.parse.unquote_plus(raw_secret)
    elif "client_secret" in form:
        method, client_id, secret = "client_secret_post", form.get("client_id", ""), form["client_secret"]
    else:
        raise ClientRefused(401, "invalid_client")
    expected = clients.get(client_id)
    if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
        raise ClientRefused(401, "invalid_client")
    return method, client_id


class IntrospectionServer(LoopbackService):
    """The test introspection endpoint. Its `issuer` is its own origin: active answers carry it
    as `iss` unless a token's claims say otherwise."""

    def __init__(self, *, audience: str, port: int | None = None, clients: dict[str, str] | None = None,
                 token_ttl: int = 300) -> None:
        self.port = port or free_port()
        self.issuer = f"http://{LOOPBACK}:{self.port}"
        self.audience = audience
        self.token_ttl = token_ttl
        self.clients = {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET} if clients is None else dict(clients)
        self.calls: list[IntrospectionCall] = []
        self.issued: list[str] = []  # every token handed out, so tests can prove none is logged
        self.peak_concurrency = 0

        self._tokens: dict[str, dict[str, Any]] = {}  # token -> the claims of its active answer
        self._answering = 0
        self._lock = threading.Lock()
        self._fault = NO_FAULT
        self._stopping = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    def _on_start(self) -> None:
        self._stopping = threading.Event()

    def _on_stop(self) -> None:
        self._stopping.set()  # ends every deliberately slow answer

    @property
    def endpoint(self) -> str:
        return f"{self.issuer}{INTROSPECTION_PATH}"

    # ---- tokens ----------------------------------------------------------------------------

    def default_claims(self, sub: str) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.issuer, "sub": sub, "aud": self.audience, "exp": now + self.token_ttl, "iat": now,
                "scope": DEFAULT_SCOPE, "client_id": "demo-client", "email": f"{sub}@example.com",
                "token_type": "Bearer"}

    def issue(self, sub: str = "alice", *, omit: tuple[str, ...] = (), **claims: Any) -> str:
        """A new opaque token, active with the default claims minus `omit`, updated with `claims`."""
        token = "opaque-" + secrets.token_urlsafe(24)
        self.register(token, sub, omit=omit, **claims)
        return token

    def register(self, token: str, sub: str = "alice", *, omit: tuple[str, ...] = (), **claims: Any) -> None:
        """Make `token` (any string, e.g. a JWT) active with these claims."""
        answer = {k: v for k, v in self.default_claims(sub).items() if k not in omit}
        with self._lock:
            self._tokens[token] = {**answer, **claims}
            self.issued.append(token)

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def answer_for(self, token: str) -> dict[str, Any]:
        with self._lock:
            claims = self._tokens.get(token)
        return {"active": False} if claims is None else {"active": True, **claims}

    # ---- behaviour and records -------------------------------------------------------------

    def set_fault(self, fault: StsFault) -> None:
        with self._lock:
            self._fault = fault

    def clear_fault(self) -> None:
        self.set_fault(NO_FAULT)

    def calls_for(self, token: str) -> list[IntrospectionCall]:
        with self._lock:
            return [c for c in self.calls if c.token == token]

    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)

    # ---- HTTP ------------------------------------------------------------------------------

    def _handle_get(self, req: JsonHandler) -> None:
        req.reply(404, {"error": "not_found"})

    def _handle_post(self, req: JsonHandler) -> None:
        if urllib.parse.urlsplit(req.path).path != INTROSPECTION_PATH:
            req.reply(404, {"error": "not_found"})
            return
        raw = req.read_body().decode("utf-8", errors="replace")
        call = IntrospectionCall(content_type=req.headers.get("content-type"))
        with self._lock:
            self.calls.append(call)
            fault, stopping = self._fault, self._stopping
            self._answering += 1
            self.peak_concurrency = max(self.peak_concurrency, self._answering)
        try:
            self._answer(req, call, raw, fault, stopping)
        finally:
            with self._lock:
                self._answering -= 1

    def _answer(self, req: JsonHandler, call: IntrospectionCall, raw: str, fault: StsFault,
                stopping: threading.Event) -> None:
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True)
        form = dict(pairs)
        call.token, call.token_type_hint = form.get("token"), form.get("token_type_hint")
        call.client_id = form.get("client_id")
        if fault.delay and stopping.wait(min(fault.delay, MAX_DELAY_SECONDS)):
            req.close_connection = True  # stopped while waiting: no answer at all
            return
        headers = {"cache-control": "no-store", **fault.headers}
        if fault.answer is not None:
            status, body = fault.answer
            call.status = status
            if isinstance(body, bytes):
                req.reply_raw(status, body, "application/json", headers)
            else:
                req.reply(status, dict(body), headers)
            return
        try:
            call.auth_method, call.client_id = authenticate_client(form, req.headers.get("authorization"),
                                                                   self.clients)
        except ClientRefused as e:
            call.status = e.status
            req.reply(e.status, {"error": e.error}, {**headers, "www-authenticate": 'Basic realm="introspection"'})
            return
        if len(pairs) != len(form) or not call.token:
            call.status = 400
            req.reply(400, {"error": "invalid_request"}, headers)
            return
        answer = self.answer_for(call.token)
        if answer["active"]:
            answer = fault.patch_answer(answer)
        call.status, call.active = 200, bool(answer["active"])
        req.reply(200, answer, headers)
