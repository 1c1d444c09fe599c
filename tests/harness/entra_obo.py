"""The test STS shaped like Microsoft Entra ID's v2.0 token endpoint, for the on-behalf-of flow
(Entra does not implement RFC 8693):

  POST /<tenant>/oauth2/v2.0/token
       grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, assertion=<the user's token>,
       requested_token_use=on_behalf_of, scope=<backend>/.default (or one of its permissions),
       and the confidential client's credentials (client_secret_post, as Entra documents, or
       client_secret_basic). The assertion must be a JWT of the trusted IdP for the MCP app
       (`subject_audiences`), unexpired. The answer is a NEW v2.0-shaped access token signed by
       the STS: iss <issuer>/<tenant>/v2.0, aud the backend app, scp its delegated permissions,
       azp the calling client, the user's sub and oid.

Refusals have Entra's shape: the OAuth `error`, an `error_description` starting "AADSTS<n>: ",
`error_codes` [n], timestamp, trace and correlation ids, error_uri. They come from the request
itself (a foreign assertion is AADSTS50013, an unknown scope AADSTS70011, a wrong secret
AADSTS7000215, a user whom conditional access sends to MFA, `mfa_required`, AADSTS50076) or from
a fault: `entra_fault(code)` answers any of `ENTRA_ERRORS` whatever was asked.
Everything else (recorded calls, faults, `issued`, the STS's keys) is SecurityTokenService's.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt

from .idp import IdentityProvider, sign_jws
from .sts import Exchange, ExchangeCall, OAuthError, SecurityTokenService
from .sts_fault import StsFault

TENANT = "11111111-2222-3333-4444-555555555555"
ENTRA_TOKEN_PATH = f"/{TENANT}/oauth2/v2.0/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
BACKEND_APP = "api://backend"
BACKEND_DEFAULT_SCOPE = f"{BACKEND_APP}/.default"
BACKEND_PERMISSIONS = ("Data.Read",)  # the delegated permissions consented for the filter's app
OBO_TOKEN_LIFETIME = 3599

# AADSTS code -> (OAuth error, HTTP status, the start of Entra's description).
ENTRA_ERRORS: dict[int, tuple[str, int, str]] = {
    50013: ("invalid_grant", 400, "Assertion failed signature validation. [Reason - The provided signature "
                                  "value did not match the expected signature value.]"),
    50076: ("interaction_required", 400, "Due to a configuration change made by your administrator, or because "
                                         "you moved to a new location, you must use multi-factor authentication "
                                         f"to access '{BACKEND_APP}'."),
    70011: ("invalid_scope", 400, "The provided request must include a 'scope' input parameter. The provided "
                                  "value for the input parameter 'scope' is not valid."),
    700016: ("unauthorized_client", 400, "Application with identifier 'mcp-filter' was not found in the "
                                         f"directory '{TENANT}'."),
    7000215: ("invalid_client", 401, "Invalid client secret provided. Ensure the secret being sent in the "
                                     "request is the client secret value, not the client secret ID."),
    70003: ("unsupported_grant_type", 400, "The app requested an unsupported grant type."),
    90014: ("invalid_request", 400, "A required field is missing from the request body."),
}


class EntraError(OAuthError):
    """A refusal with the body Entra sends."""

    def __init__(self, code: int) -> None:
        error, status, text = ENTRA_ERRORS[code]
        headers = {"www-authenticate": 'Basic realm="entra"'} if status == 401 else {}
        super().__init__(status, error, f"AADSTS{code}: {text}", headers)
        self.code = code

    def body(self) -> dict[str, Any]:
        return entra_error_body(self.code)


def entra_error_body(code: int) -> dict[str, Any]:
    error, _, text = ENTRA_ERRORS[code]
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body: dict[str, Any] = {
        "error": error,
        "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} "
                             f"Timestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    if error == "interaction_required":  # conditional access: the claims challenge the client must meet
        body["suberror"] = "basic_action"
        body["claims"] = json.dumps({"access_token": {"capolids": {"essential": True, "values": [str(uuid.uuid4())]}}})
    return body


def entra_fault(code: int) -> StsFault:
    """Every call answered with Entra's refusal `code` (an AADSTS number of ENTRA_ERRORS)."""
    return StsFault(answer=(ENTRA_ERRORS[code][1], entra_error_body(code)))


class EntraTokenService(SecurityTokenService):
    """SecurityTokenService with Entra's on-behalf-of endpoint besides the others."""

    def __init__(self, idp: IdentityProvider, **options: Any) -> None:
        super().__init__(idp, **options)
        self.entra_scopes: tuple[str, ...] = (BACKEND_DEFAULT_SCOPE,) + tuple(
            f"{BACKEND_APP}/{p}" for p in BACKEND_PERMISSIONS)
        self.mfa_required: set[str] = set()  # subs whom conditional access sends to MFA

    @property
    def entra_token_endpoint(self) -> str:
        return f"{self.issuer}{ENTRA_TOKEN_PATH}"

    @property
    def entra_issuer(self) -> str:
        return f"{self.issuer}/{TENANT}/v2.0"

    def token_endpoints(self) -> dict[str, Exchange]:
        return {**super().token_endpoints(), ENTRA_TOKEN_PATH: self._entra_obo}

    def _entra_obo(self, call: ExchangeCall, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        self._record_request(call, form)
        call.subject_token = form.get("assertion")
        try:
            self._authenticate_client(call, form, authorization)
        except OAuthError as e:
            raise EntraError(90014 if e.status == 400 else 7000215) from None
        if form.get("grant_type") != JWT_BEARER_GRANT:
            raise EntraError(70003)
        if not form.get("assertion") or form.get("requested_token_use") != "on_behalf_of":
            raise EntraError(90014)
        if not call.scopes or any(s not in self.entra_scopes for s in call.scopes):
            raise EntraError(70011)
        try:
            claims = self.verify_subject_token(form["assertion"], self.subject_audiences)
        except OAuthError:
            raise EntraError(50013) from None
        call.sub = claims["sub"]
        if claims["sub"] in self.mfa_required:
            raise EntraError(50076)

        now = int(time.time())
        payload = {"aud": BACKEND_APP, "iss": self.entra_issuer, "iat": now, "nbf": now,
                   "exp": now + OBO_TOKEN_LIFETIME, "azp": call.client_id, "azpacr": "1", "sub": claims["sub"],
                   "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.idp.issuer}/{claims['sub']}")),
                   "tid": TENANT, "scp": " ".join(BACKEND_PERMISSIONS), "ver": "2.0",
                   "uti": secrets.token_urlsafe(16)}
        if "email" in claims:
            payload["preferred_username"] = claims["email"]
        token = sign_jws({"typ": "JWT", "kid": self.key.kid}, payload, self.key.alg, self.key.private)
        with self._lock:
            self.issued.append(token)
        call.issued_token = token
        return {"token_type": "Bearer", "scope": " ".join(f"{BACKEND_APP}/{p}" for p in BACKEND_PERMISSIONS),
                "expires_in": OBO_TOKEN_LIFETIME, "ext_expires_in": OBO_TOKEN_LIFETIME, "access_token": token}


def decode_obo(sts: EntraTokenService, token: str | None) -> dict[str, Any]:
    """Verify an on-behalf-of token this STS issued (signature, issuer, audience, expiry)."""
    if token is None:
        raise jwt.InvalidTokenError("no token was issued")
    return jwt.decode(token, sts.key.public, algorithms=["RS256"], audience=BACKEND_APP, issuer=sts.entra_issuer)
