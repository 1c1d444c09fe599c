"""A test identity provider that signs real JWTs.

It runs in-process on a background thread (ThreadingHTTPServer) and serves:
  /.well-known/openid-configuration (and /.well-known/oauth-authorization-server)
  /jwks   public keys (RS256, PS256, ES256, ES384, EdDSA), with Cache-Control: max-age
  /token  grant_type=password (demo users) and client_credentials (demo clients); an RFC 8707
          `resource` parameter becomes the token's `aud` (else the IdP's default audience)

Tests also sign arbitrary tokens directly with `mint()`, rotate keys, count JWKS
fetches, make /jwks fail (500) or hang, and change the discovery document
(`discovery_overrides`: another issuer, a jwks_uri elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import jwt.algorithms
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .net import LOOPBACK, JsonHandler, LoopbackService, free_port

DEFAULT_SCOPES = ["mcp:tools:call"]

# Demo identities for the /token endpoint (password grant and client credentials).
DEMO_USERS = {
    "alice": {"password": "alice-password", "sub": "alice", "email": "alice@example.com"},
    "bob": {"password": "bob-password", "sub": "bob", "email": "bob@example.com"},
}
DEMO_CLIENTS = {"demo-client": "demo-secret"}

# A hanging /jwks never holds a thread longer than this, even if nobody releases it.
HANG_LIMIT_SECONDS = 60

_ALGORITHMS = jwt.algorithms.get_default_algorithms()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sign_jws(header: dict[str, Any], payload: dict[str, Any], alg: str, key: Any) -> str:
    """Sign a compact JWS by hand, so tests control every header field.

    PyJWT refuses some deliberately hostile combinations (an HMAC secret that is a
    PEM public key, alg "none" with a kid); building the token here sidesteps that.
    """
    header = {**header, "alg": alg}
    signing_input = f"{b64url(_compact(header))}.{b64url(_compact(payload))}"
    if alg == "none":
        signature = b""
    elif alg.startswith("HS"):
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        signature = hmac.new(key, signing_input.encode(), digest).digest()
    else:
        signature = _ALGORITHMS[alg].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64url(signature)}"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def public_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        jwk = _ALGORITHMS[self.alg].to_jwk(self.public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _generate(alg: str) -> Any:
    if alg in ("RS256", "PS256"):
        return new_rsa_key()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no key type for {alg}")


class IdentityProvider(LoopbackService):
    """The test IdP. `port` stays fixed across stop()/start(), so restarts look like an outage."""

    def __init__(self, port: int | None = None, audience: str = "", jwks_max_age: int | None = 300,
                 token_ttl: int = 300) -> None:
        self.port = port or free_port()
        self.issuer = f"http://{LOOPBACK}:{self.port}"
        self.audience = audience
        self.jwks_max_age = jwks_max_age
        self.token_ttl = token_ttl

        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._rsa_generation = 0
        self.default_kid = self._add_rsa_key()
        for alg, kid in (("PS256", "ps256-1"), ("ES256", "es256-1"), ("ES384", "es384-1"), ("EdDSA", "eddsa-1")):
            self._keys[kid] = SigningKey(kid, alg, _generate(alg))

        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self.token_requests = 0
        self.last_jwks_fetch: float | None = None  # time.monotonic() of the latest /jwks hit
        self.minted: list[str] = []  # every token handed out, so tests can prove none is logged
        # Members of the discovery document replaced (None removes one), e.g. another `issuer`.
        self.discovery_overrides: dict[str, Any] = {}

        self._jwks_mode = "ok"
        self._release = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    def _on_start(self) -> None:
        self._release = threading.Event()

    def _on_stop(self) -> None:
        self._release.set()  # let go of any request parked by a "hang"

    # ---- URLs ------------------------------------------------------------------------------

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    # ---- keys ------------------------------------------------------------------------------

    def _add_rsa_key(self) -> str:
        self._rsa_generation += 1
        kid = f"rsa-{self._rsa_generation}"
        self._keys[kid] = SigningKey(kid, "RS256", new_rsa_key())
        return kid

    def key(self, kid: str | None = None) -> SigningKey:
        return self._keys[kid or self.default_kid]

    def kid_for(self, alg: str) -> str:
        """The kid of the (first) key published for `alg`."""
        if alg == "RS256":
            return self.default_kid
        return next(k.kid for k in self._keys.values() if k.alg == alg)

    def rotate(self, keep_old: bool = True) -> str:
        """Publish a new RSA key under a new kid and make it the default; return the new kid."""
        with self._lock:
            old = self.default_kid
            self.default_kid = self._add_rsa_key()
            if not keep_old:
                del self._keys[old]
            return self.default_kid

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.jwk() for k in self._keys.values()]}

    def seconds_since_jwks_fetch(self) -> float:
        """Seconds since the latest /jwks request (infinite before the first)."""
        last = self.last_jwks_fetch
        return math.inf if last is None else time.monotonic() - last

    def jwks_json(self) -> str:
        return json.dumps(self.jwks())

    def set_jwks_mode(self, mode: str) -> None:
        """"ok", "fail" (500) or "hang" (no answer until the mode changes or the IdP stops).

        Requests hanging when the mode goes back to "ok" are answered then, so a hang followed
        by "ok" is a slow IdP; otherwise their connection is closed without an answer.
        """
        if mode not in ("ok", "fail", "hang"):
            raise ValueError(mode)
        with self._lock:
            self._jwks_mode = mode
            self._release.set()  # let go of any request parked by a previous "hang"
            self._release = threading.Event()

    # ---- tokens ----------------------------------------------------------------------------

    def default_claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "sub": "alice",
            "aud": self.audience,
            "exp": now + self.token_ttl,
            "iat": now,
            "nbf": now,
            "scp": list(DEFAULT_SCOPES),
            "email": "alice@example.com",
            "client_id": "demo-client",
        }

    def mint(self, *, kid: str | None = None, alg: str | None = None, key: Any = None,
             header: dict[str, Any] | None = None, omit: tuple[str, ...] = (), **claims: Any) -> str:
        """Sign a token: the default claims minus those named in `omit`, updated with `claims`.

        kid: header kid (default: current RSA key). An unknown kid is signed with the
             default RSA key, so only the kid is wrong.
        alg: default = the kid's key algorithm ("none" and "HS*" are allowed for attacks).
        key: the private key (or HMAC secret bytes) to sign with instead of the kid's key.
        header: extra header fields (e.g. {"crit": [...]}); {"kid": None} drops the kid.
        """
        kid = kid or self.default_kid
        known = self._keys.get(kid)
        alg = alg or (known.alg if known else "RS256")
        if key is None and alg != "none":
            key = (known or self.key()).private
        defaults = {k: v for k, v in self.default_claims().items() if k not in omit}
        payload = {**defaults, **claims}
        full_header = {"typ": "JWT", "kid": kid, **(header or {})}
        full_header = {k: v for k, v in full_header.items() if v is not None}
        token = sign_jws(full_header, payload, alg, key)
        with self._lock:
            self.minted.append(token)
        return token

    # ---- HTTP ------------------------------------------------------------------------------

    def discovery_document(self) -> dict[str, Any]:
        """The OpenID configuration, with `discovery_overrides` applied."""
        document = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": self.token_endpoint,
            "grant_types_supported": ["password", "client_credentials"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({k.alg for k in self._keys.values()}),
            "scopes_supported": ["mcp:tools:call", "mcp:tools:list"],
        }
        for name, value in self.discovery_overrides.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return document

    def _handle_get(self, req: JsonHandler) -> None:
        path = urllib.parse.urlsplit(req.path).path
        if path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            with self._lock:
                self.discovery_fetches += 1
            req.reply(200, self.discovery_document())
        elif path == "/jwks":
            self._serve_jwks(req)
        else:
            req.reply(404, {"error": "not_found"})

    def _serve_jwks(self, req: JsonHandler) -> None:
        with self._lock:
            self.jwks_fetches += 1
            self.last_jwks_fetch = time.monotonic()
            mode, release = self._jwks_mode, self._release
        if mode == "hang":
            release.wait(HANG_LIMIT_SECONDS)
            with self._lock:
                mode = self._jwks_mode
            if mode != "ok":
                req.close_connection = True
                return  # no answer at all: the caller's timeout must fire
            # Switched back to "ok" while this request waited: answer it late (a slow IdP).
        if mode == "fail":
            req.reply(500, {"error": "server_error"})
            return
        headers = {} if self.jwks_max_age is None else {"cache-control": f"max-age={self.jwks_max_age}"}
        req.reply(200, self.jwks(), headers)

    def _handle_post(self, req: JsonHandler) -> None:
        if urllib.parse.urlsplit(req.path).path != "/token":
            req.reply(404, {"error": "not_found"})
            return
        with self._lock:
            self.token_requests += 1
        length = int(req.headers.get("content-length") or 0)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(req.rfile.read(length).decode()).items()}
        status, body = self.token_response(form, req.headers.get("authorization"))
        req.reply(status, body, {"cache-control": "no-store"})

    def token_response(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """RFC 6749 token endpoint logic (password and client_credentials grants)."""
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, client_secret = decoded.partition(":")
        scopes = form.get("scope", " ".join(DEFAULT_SCOPES)).split()
        grant = form.get("grant_type")

        if grant == "password":
            user = DEMO_USERS.get(form.get("username", ""))
            if user is None or not hmac.compare_digest(user["password"], form.get("password", "")):
                return 400, {"error": "invalid_grant", "error_description": "bad username or password"}
            claims: dict[str, Any] = {"sub": user["sub"], "email": user["email"],
                                      "client_id": client_id or "demo-client"}
        elif grant == "client_credentials":
            expected = DEMO_CLIENTS.get(client_id or "")
            if expected is None or not hmac.compare_digest(expected, client_secret or ""):
                return 401, {"error": "invalid_client"}
            claims = {"sub": client_id, "client_id": client_id}
        else:
            return 400, {"error": "unsupported_grant_type"}

        if form.get("resource"):  # RFC 8707: the token is for the resource the client names
            claims["aud"] = form["resource"]
        omit = () if "email" in claims else ("email",)
        token = self.mint(scp=scopes, omit=omit, **claims)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl,
                     "scope": " ".join(scopes)}
