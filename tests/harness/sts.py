"""A test Security Token Service that implements OAuth 2.0 Token Exchange (RFC 8693) for real.

It runs in-process on a background thread (ThreadingHTTPServer), like the test IdP, on a port
that stays fixed across stop()/start() (so a stop looks like an outage), and serves:

  POST /token         RFC 8693, shaped like an Okta authorization server: the client
                      authenticates (client_secret_basic with RFC 6749 §2.3.1 url-decoding, or
                      client_secret_post); the subject token must be a JWT signed by the trusted
                      IdP, for the MCP resource, unexpired; the answer is a NEW JWT signed by the
                      STS (iss = the STS, aud = the requested audience, scp = the requested
                      scopes, the same sub).
  POST /v1/token      shaped like Google's STS (https://sts.googleapis.com/v1/token): no client
                      authentication, an OIDC `id_token` as subject token, a workload identity
                      pool provider as audience, and an opaque `ya29.` access token as answer.
  GET  /v1/tokeninfo  ?access_token=ya29... -> the subject and scopes of an opaque token
                      (what a Google API resolves a token to), 400 invalid_token otherwise.
  GET  /jwks          the STS's own public key, to verify the JWTs it issues.
  GET  /.well-known/oauth-authorization-server

A subclass serves another flavour besides these by adding its path to `token_endpoints()`
(entra_obo.py: Entra ID's on-behalf-of endpoint).

Every token-endpoint call is recorded (`calls`) for assertions. `set_fault()` makes the STS
misbehave (an `StsFault`, see sts_fault.py: an error status, a late or raw answer, a good answer
with members changed, odd headers); `clear_fault()` makes it answer correctly again.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from .idp import IdentityProvider, SigningKey, new_rsa_key, sign_jws
from .net import LOOPBACK, JsonHandler, LoopbackService, free_port
from .rfc8693 import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from .sts_fault import NO_FAULT, Body, StsFault

OAUTH_TOKEN_PATH = "/token"
GOOGLE_TOKEN_PATH = "/v1/token"
GOOGLE_TOKENINFO_PATH = "/v1/tokeninfo"
JWKS_PATH = "/jwks"

# The Okta-like profile (envoy/okta-same-idp.yaml).
DEFAULT_CLIENT_ID = "mcp-filter"
DEFAULT_CLIENT_SECRET = "mcp-filter-secret"
BACKEND_AUDIENCE = "backend"
BACKEND_SCOPES = ("backend-api:read", "backend-api:write")

# The Google profile (envoy/google-sts.yaml).
GOOGLE_AUDIENCE = ("//iam.googleapis.com/projects/123456789012/locations/global/"
                   "workloadIdentityPools/mcp-pool/providers/mcp-idp")
GOOGLE_BIGQUERY_SCOPE = "https://www.googleapis.com/auth/bigquery"
GOOGLE_CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_SCOPES = (GOOGLE_BIGQUERY_SCOPE, GOOGLE_CLOUD_PLATFORM_SCOPE)
GOOGLE_TOKEN_LIFETIME = 3599

# A slow answer never holds a handler thread longer than this, even if nobody stops the STS.
MAX_DELAY_SECONDS = 30


@dataclass
class ExchangeCall:
    """One call to a token endpoint, as the STS saw and answered it."""

    path: str
    status: int = 0
    error: str | None = None
    auth_method: str = "none"  # client_secret_basic | client_secret_post | none
    client_id: str | None = None
    content_type: str | None = None
    accept: str | None = None
    grant_type: str | None = None
    subject_token: str | None = None
    subject_token_type: str | None = None
    requested_token_type: str | None = None
    audience: str | None = None
    scopes: list[str] = field(default_factory=list)
    resource: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # every other form field
    sub: str | None = None  # the verified subject token's `sub`
    issued_token: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.issued_token is not None


# One flavour of token endpoint: (the call's record, the form, the Authorization header) -> the answer.
Exchange = Callable[[ExchangeCall, dict[str, str], str | None], dict[str, Any]]


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description = status, error, description
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


class SecurityTokenService(LoopbackService):
    """The test STS. It trusts one IdP: subject tokens must carry its issuer, be signed by one
    of its published keys (read from the IdP object at each call, so rotation is seen), and be
    meant for one of `subject_audiences` (the MCP resource)."""

    def __init__(self, idp: IdentityProvider, *, subject_audiences: list[str], port: int | None = None,
                 clients: dict[str, str | None] | None = None, audiences: tuple[str, ...] = (BACKEND_AUDIENCE,),
                 scopes: tuple[str, ...] = BACKEND_SCOPES, token_lifetime: int = 300,
                 google_audience: str = GOOGLE_AUDIENCE, google_scopes: tuple[str, ...] = GOOGLE_SCOPES,
                 google_token_lifetime: int = GOOGLE_TOKEN_LIFETIME) -> None:
        self.port = port or free_port()
        self.issuer = f"http://{LOOPBACK}:{self.port}"
        self.idp = idp
        self.subject_audiences = list(subject_audiences)
        # client_id -> secret; None registers a public client (token_endpoint_auth_method none).
        self.clients: dict[str, str | None] = (
            {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET} if clients is None else dict(clients))
        self.audiences = tuple(audiences)
        self.scopes = tuple(scopes)
        self.token_lifetime = token_lifetime  # seconds; tests may change it between calls
        self.google_audience = google_audience
        self.google_scopes = tuple(google_scopes)
        self.google_token_lifetime = google_token_lifetime
        # Audiences the Google-like provider accepts in the subject token (None: subject_audiences).
        self.google_subject_audiences: list[str] | None = None

        self.key = SigningKey("sts-1", "RS256", new_rsa_key())
        self.calls: list[ExchangeCall] = []
        self.issued: list[str] = []  # every token handed out, so tests can prove none is logged
        self.tokeninfo_requests = 0
        self._google_tokens: dict[str, dict[str, Any]] = {}

        self._lock = threading.Lock()
        self._fault = NO_FAULT
        self._stopping = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    def _on_start(self) -> None:
        self._stopping = threading.Event()

    def _on_stop(self) -> None:
        self._stopping.set()  # ends every deliberately slow answer

    # ---- URLs ------------------------------------------------------------------------------

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}{OAUTH_TOKEN_PATH}"

    @property
    def google_token_endpoint(self) -> str:
        return f"{self.issuer}{GOOGLE_TOKEN_PATH}"

    @property
    def tokeninfo_url(self) -> str:
        return f"{self.issuer}{GOOGLE_TOKENINFO_PATH}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}{JWKS_PATH}"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.jwk()]}

    # ---- behaviour -------------------------------------------------------------------------

    def set_fault(self, fault: StsFault) -> None:
        """How the token endpoints (both flavours) answer from now on."""
        with self._lock:
            self._fault = fault

    def clear_fault(self) -> None:
        """Answer as RFC 8693 specifies again."""
        self.set_fault(NO_FAULT)

    # ---- records ---------------------------------------------------------------------------

    def calls_for(self, sub: str | None = None, *, path: str | None = None) -> list[ExchangeCall]:
        """Recorded calls, optionally only those whose verified subject is `sub` / on `path`."""
        with self._lock:
            return [c for c in self.calls
                    if (sub is None or c.sub == sub) and (path is None or c.path == path)]

    def calls_with_subject_token(self, token: str) -> list[ExchangeCall]:
        with self._lock:
            return [c for c in self.calls if c.subject_token == token]

    def tokeninfo(self, access_token: str) -> dict[str, Any] | None:
        """What the STS knows about an opaque token it issued (None: unknown or expired)."""
        with self._lock:
            info = self._google_tokens.get(access_token)
        if info is None or info["exp"] <= time.time():
            return None
        return {"sub": info["sub"], "email": info.get("email"), "aud": info["audience"],
                "scope": " ".join(info["scopes"]), "expires_in": int(info["exp"] - time.time())}

    # ---- HTTP ------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "token_endpoint": self.token_endpoint, "jwks_uri": self.jwks_uri,
                "grant_types_supported": [TOKEN_EXCHANGE_GRANT],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"]}

    def _handle_get(self, req: JsonHandler) -> None:
        url = urllib.parse.urlsplit(req.path)
        if url.path == JWKS_PATH:
            req.reply(200, self.jwks())
        elif url.path == "/.well-known/oauth-authorization-server":
            req.reply(200, self.metadata())
        elif url.path == GOOGLE_TOKENINFO_PATH:
            with self._lock:
                self.tokeninfo_requests += 1
            token = urllib.parse.parse_qs(url.query).get("access_token", [""])[0]
            info = self.tokeninfo(token)
            if info is None:
                req.reply(400, {"error": "invalid_token", "error_description": "Invalid Value"})
            else:
                req.reply(200, info)
        else:
            req.reply(404, {"error": "not_found"})

    def _handle_post(self, req: JsonHandler) -> None:
        with self._lock:
            fault, stopping = self._fault, self._stopping
        path = urllib.parse.urlsplit(req.path).path
        exchange = self.token_endpoints().get(path)
        if exchange is None:
            req.reply(404, {"error": "not_found"}, dict(fault.headers))
            return
        raw = req.read_body().decode("utf-8", errors="replace")
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True)
        call = ExchangeCall(path=path, content_type=req.headers.get("content-type"),
                            accept=req.headers.get("accept"))
        with self._lock:
            self.calls.append(call)

        if fault.delay and stopping.wait(min(fault.delay, MAX_DELAY_SECONDS)):
            req.close_connection = True  # stopped while waiting: no answer at all
            return
        if fault.answer is not None:
            self._reply_instead(req, call, fault.answer, fault.headers)
            return
        try:
            body = exchange(call, self._form(pairs), req.headers.get("authorization"))
        except OAuthError as e:
            call.status, call.error = e.status, e.error
            req.reply(e.status, e.body(), {"cache-control": "no-store", **e.headers, **fault.headers})
            return
        call.status = 200
        req.reply(200, fault.patch_answer(body), {"cache-control": "no-store", "pragma": "no-cache", **fault.headers})

    def token_endpoints(self) -> dict[str, Exchange]:
        """The token endpoints served, by path (a subclass adds its own flavour)."""
        return {OAUTH_TOKEN_PATH: self._oauth_exchange, GOOGLE_TOKEN_PATH: self._google_exchange}

    @staticmethod
    def _reply_instead(req: JsonHandler, call: ExchangeCall, answer: tuple[int, Body],
                       headers: Mapping[str, str]) -> None:
        """A fault's own answer, sent without looking at the request."""
        status, body = answer
        call.status = status
        if isinstance(body, bytes):
            req.reply_raw(status, body, "application/json", dict(headers))
            return
        error = body.get("error")
        call.error = error if isinstance(error, str) else None
        req.reply(status, dict(body), {"cache-control": "no-store", **headers})

    @staticmethod
    def _form(pairs: list[tuple[str, str]]) -> dict[str, str]:
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form:  # RFC 6749 §3.2: parameters MUST NOT be included more than once
                raise OAuthError(400, "invalid_request", f"repeated parameter {name}")
            form[name] = value
        return form

    # ---- the two flavours ------------------------------------------------------------------

    def _record_request(self, call: ExchangeCall, form: dict[str, str]) -> None:
        known = {"grant_type", "subject_token", "subject_token_type", "requested_token_type",
                 "audience", "scope", "resource", "client_id", "client_secret"}
        call.grant_type = form.get("grant_type")
        call.subject_token = form.get("subject_token")
        call.subject_token_type = form.get("subject_token_type")
        call.requested_token_type = form.get("requested_token_type")
        call.audience = form.get("audience")
        call.scopes = form.get("scope", "").split()
        call.resource = form.get("resource")
        call.extra = {k: v for k, v in form.items() if k not in known}

    def _authenticate_client(self, call: ExchangeCall, form: dict[str, str], authorization: str | None) -> None:
        """RFC 6749 §2.3: exactly one method; a wrong or missing credential is invalid_client."""
        challenge = {"www-authenticate": 'Basic realm="test-sts"'}
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise OAuthError(401, "invalid_client", "unsupported client authentication", challenge)
            if "client_secret" in form:
                raise OAuthError(400, "invalid_request", "more than one client authentication method")
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except ValueError:
                raise OAuthError(401, "invalid_client", "malformed Basic credentials", challenge) from None
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                raise OAuthError(401, "invalid_client", "malformed Basic credentials", challenge)
            # §2.3.1: both are application/x-www-form-urlencoded before going into Basic.
            client_id, secret = urllib.parse.unquote_plus(raw_id), urllib.parse.unquote_plus(raw_secret)
            call.auth_method, call.client_id = "client_secret_basic", client_id
            if "client_id" in form and form["client_id"] != client_id:
                raise OAuthError(400, "invalid_request", "client_id does not match the Basic credentials")
        elif "client_secret" in form:
            client_id, secret = form.get("client_id", ""), form["client_secret"]
            call.auth_method, call.client_id = "client_secret_post", client_id
            challenge = {}
        else:
            call.auth_method, call.client_id = "none", form.get("client_id")
            if call.client_id is not None and call.client_id in self.clients and self.clients[call.client_id] is None:
                return  # a registered public client
            raise OAuthError(401, "invalid_client", "client authentication required")
        expected = self.clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            raise OAuthError(401, "invalid_client", "client authentication failed", challenge)

    def _check_grant(self, form: dict[str, str]) -> None:
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            raise OAuthError(400, "unsupported_grant_type", "only token exchange is supported here")
        for name in ("subject_token", "subject_token_type"):
            if not form.get(name):
                raise OAuthError(400, "invalid_request", f"missing {name}")

    def verify_subject_token(self, token: str, audiences: list[str]) -> dict[str, Any]:
        """Signature (the IdP's published keys), issuer, audience and expiry of a subject token."""
        try:
            header = jwt.get_unverified_header(token)
            jwk = next((k for k in self.idp.jwks()["keys"] if k.get("kid") == header.get("kid")), None)
            if jwk is None:
                raise jwt.InvalidTokenError("signing key not published by the trusted issuer")
            key = jwt.PyJWK(jwk)
            return jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=audiences,
                              issuer=self.idp.issuer, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as e:
            raise OAuthError(400, "invalid_grant", f"subject token invalid: {type(e).__name__}") from None

    def _oauth_exchange(self, call: ExchangeCall, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        self._record_request(call, form)
        self._authenticate_client(call, form, authorization)
        self._check_grant(form)
        if form["subject_token_type"] not in (ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise OAuthError(400, "invalid_request", "unsupported subject_token_type")
        requested = form.get("requested_token_type", ACCESS_TOKEN_TYPE)
        if requested not in (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise OAuthError(400, "invalid_request", "unsupported requested_token_type")
        if call.audience not in self.audiences:
            raise OAuthError(400, "invalid_target", "unknown audience")
        unknown = [s for s in call.scopes if s not in self.scopes]
        if not call.scopes or unknown:
            raise OAuthError(400, "invalid_scope", "scope missing or not allowed")
        claims = self.verify_subject_token(form["subject_token"], self.subject_audiences)
        call.sub = claims["sub"]

        now = int(time.time())
        lifetime = self.token_lifetime
        payload = {"iss": self.issuer, "sub": claims["sub"], "aud": call.audience, "scp": list(call.scopes),
                   "iat": now, "nbf": now, "exp": now + lifetime, "jti": secrets.token_hex(8)}
        if call.client_id:
            payload["client_id"] = call.client_id
        if "email" in claims:
            payload["email"] = claims["email"]
        token = sign_jws({"typ": "JWT", "kid": self.key.kid}, payload, self.key.alg, self.key.private)
        with self._lock:
            self.issued.append(token)
        call.issued_token = token
        return {"access_token": token, "issued_token_type": requested, "token_type": "Bearer",
                "expires_in": lifetime, "scope": " ".join(call.scopes)}

    def _google_exchange(self, call: ExchangeCall, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """Google's STS: no client authentication, Google-style error bodies."""
        self._record_request(call, form)
        if authorization is not None:
            call.auth_method = authorization.partition(" ")[0].lower()
        elif "client_secret" in form:
            call.auth_method = "client_secret_post"
        call.client_id = form.get("client_id")
        self._check_grant(form)
        if form["subject_token_type"] not in (ID_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise OAuthError(400, "invalid_request", 'Invalid value for "subject_token_type".')
        if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            raise OAuthError(400, "invalid_request", 'Invalid value for "requested_token_type".')
        if call.audience != self.google_audience:
            raise OAuthError(400, "invalid_target",
                             'The target service indicated by the "audience" parameters is invalid.')
        if not call.scopes or any(s not in self.google_scopes for s in call.scopes):
            raise OAuthError(400, "invalid_scope", 'Invalid value for "scope".')
        if "options" in form:
            try:
                if not isinstance(json.loads(form["options"]), dict):
                    raise ValueError
            except ValueError:
                raise OAuthError(400, "invalid_request", 'Invalid value for "options".') from None
        audiences = self.google_subject_audiences or self.subject_audiences
        try:
            claims = self.verify_subject_token(form["subject_token"], audiences)
        except OAuthError:
            raise OAuthError(400, "invalid_grant", "The audience in ID Token does not match the expected "
                             "audience, or the ID Token is invalid or expired.") from None
        call.sub = claims["sub"]

        token = "ya29." + secrets.token_urlsafe(48)
        with self._lock:
            self.issued.append(token)
            self._google_tokens[token] = {"sub": claims["sub"], "email": claims.get("email"),
                                          "scopes": list(call.scopes), "audience": call.audience,
                                          "exp": time.time() + self.google_token_lifetime}
        call.issued_token = token
        return {"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer",
                "expires_in": self.google_token_lifetime}


def decode_issued(sts: SecurityTokenService, token: str | None, audience: str = BACKEND_AUDIENCE) -> dict[str, Any]:
    """Verify a JWT this STS issued (signature, issuer, audience, expiry) and return its claims.
    None (a call that issued nothing, see ExchangeCall.issued_token) fails like a bad token."""
    if token is None:
        raise jwt.InvalidTokenError("no token was issued")
    return jwt.decode(token, sts.key.public, algorithms=["RS256"], audience=audience, issuer=sts.issuer)

