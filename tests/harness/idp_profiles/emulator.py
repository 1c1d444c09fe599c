"""One identity provider's HTTP surface for the profile tests, on one loopback port: its signing
key published in the JWKS shape that IdP uses, its OpenID configuration, and its token
endpoint(s), each answering as that IdP does (harness/idp_profiles/<idp>.py say how).

Every token-endpoint call is recorded (`calls`) with the form as received, so a test can check
what the filter sent; the answer's body is kept too (`TokenCall.issued`).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ..idp import SigningKey, b64url, new_rsa_key, sign_jws
from ..net import LOOPBACK, JsonHandler, LoopbackService, free_port


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer; `extra` holds members an IdP adds (Entra's error_codes)."""

    def __init__(self, status: int, error: str, description: str, **extra: Any) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description, self.extra = status, error, description, extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description, **self.extra}


@dataclass
class TokenCall:
    """One call to a token endpoint: what the filter sent and what the IdP answered."""

    path: str
    form: dict[str, str]
    authorization: str | None
    status: int = 0
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def issued(self) -> str | None:
        token = self.body.get("access_token") if self.status == 200 else None
        return token if isinstance(token, str) else None


# A token endpoint: reads the form (and the Authorization header), answers a JSON body or raises
# OAuthError.
TokenHandler = Callable[[dict[str, str], str | None], dict[str, Any]]


@dataclass(frozen=True)
class PublishedKey:
    """A signing key with the self-signed certificate that IdPs publish beside it (x5c, x5t)."""

    key: SigningKey
    certificate_der: bytes

    @property
    def x5t(self) -> str:
        return x5t_of(self.certificate_der)

    @property
    def x5c(self) -> list[str]:
        return [base64.b64encode(self.certificate_der).decode()]

    def rsa_members(self) -> dict[str, Any]:
        """kty, n, e of the public key."""
        jwk = self.key.jwk()
        return {"kty": jwk["kty"], "n": jwk["n"], "e": jwk["e"]}


def x5t_of(certificate_der: bytes) -> str:
    """The certificate's SHA-1 thumbprint, as RFC 7517 defines x5t."""
    return b64url(hashlib.sha1(certificate_der).digest())


def new_published_key(kid: str | None = None) -> PublishedKey:
    """An RS256 key and a self-signed certificate for it; `kid` defaults to the x5t (Entra's way)."""
    private = new_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "profile test IdP")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .sign(private, hashes.SHA256()))
    der = certificate.public_bytes(serialization.Encoding.DER)
    return PublishedKey(SigningKey(kid or x5t_of(der), "RS256", private), der)


class IdpEmulator(LoopbackService):
    """Serves what one IdP publishes. Routes are registered before `start()`: JSON documents
    (JWKS, OpenID configuration) at GET paths, token endpoints at POST paths."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.origin = f"http://{LOOPBACK}:{self.port}"
        self.calls: list[TokenCall] = []
        self._documents: dict[str, Callable[[], dict[str, Any]]] = {}
        self._token_endpoints: dict[str, TokenHandler] = {}
        self._lock = threading.Lock()

    # ---- routes ----------------------------------------------------------------------------

    def publish(self, path: str, document: Callable[[], dict[str, Any]]) -> None:
        """GET `path` answers `document()` (a key set, an OpenID configuration)."""
        self._documents[path] = document

    def serve_token_endpoint(self, path: str, handler: TokenHandler) -> None:
        self._token_endpoints[path] = handler

    # ---- records ---------------------------------------------------------------------------

    def calls_with(self, name: str, value: str) -> list[TokenCall]:
        """Token-endpoint calls whose form field `name` was `value` (e.g. the subject token)."""
        with self._lock:
            return [c for c in self.calls if c.form.get(name) == value]

    # ---- HTTP ------------------------------------------------------------------------------

    def _handle_get(self, req: JsonHandler) -> None:
        path = urllib.parse.urlsplit(req.path).path
        document = self._documents.get(path)
        if document is None:
            req.reply(404, {"error": "not_found"})
            return
        req.reply(200, document(), {"cache-control": "max-age=300"})

    def _handle_post(self, req: JsonHandler) -> None:
        path = urllib.parse.urlsplit(req.path).path
        handler = self._token_endpoints.get(path)
        if handler is None:
            req.reply(404, {"error": "not_found"})
            return
        raw = req.read_body().decode("utf-8", errors="replace")
        form = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        call = TokenCall(path, form, req.headers.get("authorization"))
        with self._lock:
            self.calls.append(call)
        try:
            call.body, call.status = handler(form, call.authorization), 200
        except OAuthError as e:
            call.body, call.status = e.body(), e.status
        req.reply(call.status, call.body, {"cache-control": "no-store", "pragma": "no-cache"})


class Signer:
    """Signs the tokens one issuer hands out and verifies them as a token endpoint would."""

    def __init__(self, published: PublishedKey | None = None) -> None:
        self.published = published or new_published_key()

    @property
    def kid(self) -> str:
        return self.published.key.kid

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """A compact JWS of `claims`; `header` replaces the default {"typ": "JWT", "kid": ...}."""
        return sign_jws(header or {"typ": "JWT", "kid": self.kid}, claims, "RS256", self.published.key.private)

    def verify(self, token: str, *, issuers: list[str]) -> dict[str, Any]:
        """Signature, expiry and issuer, as an IdP checks a token it issued itself; the
        audience is each IdP's own business (its callers check it). Raises jwt.PyJWTError."""
        claims: dict[str, Any] = jwt.decode(token, self.published.key.public, algorithms=["RS256"],
                                            options={"verify_aud": False, "require": ["exp", "iss"]})
        if claims["iss"] not in issuers:
            raise jwt.InvalidIssuerError(f"issuer {claims['iss']!r} is not one of {issuers}")
        return claims


def client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str | None, str | None]:
    """(method, client_id, secret) of a token request: client_secret_basic (RFC 6749 §2.3.1,
    form-urlencoded id and secret), client_secret_post, or none."""
    if authorization and authorization.lower().startswith("basic "):
        decoded = base64.b64decode(authorization[6:]).decode()
        raw_id, _, raw_secret = decoded.partition(":")
        return "client_secret_basic", urllib.parse.unquote_plus(raw_id), urllib.parse.unquote_plus(raw_secret)
    if "client_secret" in form:
        return "client_secret_post", form.get("client_id"), form["client_secret"]
    return "none", form.get("client_id"), None
