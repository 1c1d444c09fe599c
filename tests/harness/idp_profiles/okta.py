"""Okta (envoy/profiles/okta.json): a custom authorization server for the MCP server, and token
exchange at a second one, the backend's, which lists the first as a trusted server (the seed
articles' profile 1; Okta's guide "Set up OAuth 2.0 On-Behalf-Of Token Exchange").

Shapes emulated, from that guide's decoded token: `ver: 1`, `jti: "AT.…"`, `aud` the
authorization server's audience (a string), `cid` (client id), `uid` (user id), `scp` an
array, `sub` the user's login; JWKS at `<issuer>/v1/keys` with `alg`, `kid`, `use: sig`.
Errors: `invalid_grant` "subject token is invalid" when the subject token's issuer is not a
trusted server (Okta support article "subject token is invalid during OAuth 2.0 token exchange").
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import jwt

from ..rfc8693 import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from .emulator import OAuthError, Signer, TokenCall, client_credentials, new_published_key
from .profile import (
    SECRET_ENV,
    TOKEN_LIFETIME_SECONDS,
    Config,
    IdpProfile,
    LoadError,
    Refusal,
    lifetime,
    path_of,
    shaped,
    toggled,
)

ORG = "https://example.okta.com"
MCP_CLIENT_ID = "0oavscode00000000697"  # the MCP client's OIDC app (`cid` in its tokens)


def okta_jwks(signer: Signer) -> dict[str, Any]:
    return {"keys": [{**signer.published.rsa_members(), "alg": "RS256", "kid": signer.kid, "use": "sig"}]}


def okta_user_id(user: str) -> str:
    return "00u" + hashlib.sha256(user.encode()).hexdigest()[:17]


class OktaAuthorizationServer:
    """One Okta custom authorization server: its issuer and signing key."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.signer = Signer(new_published_key("okta-" + secrets.token_hex(8)))


class Okta(IdpProfile):
    name = "okta"
    idp_origin = ORG

    def configure(self, config: Config) -> None:
        provider = config["providers"]["okta"]
        self.mcp_as = OktaAuthorizationServer(provider["issuer"])
        self.audience: str = provider["audiences"][0]
        self.idp.publish(path_of(provider["remote_jwks"]["http_uri"]["uri"]),
                         lambda: okta_jwks(self.mcp_as.signer))

        exchange = config["token_exchange"]
        token_path = path_of(exchange["token_endpoint"]["uri"])
        self.backend_as = OktaAuthorizationServer(self.idp.origin + token_path.removesuffix("/v1/token"))
        self.client_id: str = exchange["client_auth"]["client_id"]
        self.backend_audience: str = exchange["audience"]
        self.backend_scopes: set[str] = {*exchange["scopes"], "backend-api:write"}
        # Security > API > <backend AS> > Trusted servers.
        self.trusted_servers = [self.mcp_as.issuer]
        self.idp.serve_token_endpoint(token_path, self.token_exchange)

    # ---- tokens ----------------------------------------------------------------------------

    def token(self, user: str, **changes: Any) -> str:
        claims = {"ver": 1, "jti": "AT." + secrets.token_urlsafe(32), "iss": self.mcp_as.issuer,
                  "aud": self.audience, **lifetime(), "cid": MCP_CLIENT_ID, "uid": okta_user_id(user),
                  "scp": ["mcp:tools:call", "openid", "email"], "auth_time": int(time.time()),
                  "sub": f"{user}@example.com"}
        return self.mcp_as.signer.sign(shaped(claims, changes), {"kid": self.mcp_as.signer.kid})

    def token_without_required_scope(self, user: str) -> str:
        return self.token(user, scp=["openid", "email"])

    def claim_headers(self, user: str) -> dict[str, str]:
        return {"x-mcp-user-sub": f"{user}@example.com", "x-mcp-user-id": okta_user_id(user),
                "x-mcp-client-id": MCP_CLIENT_ID}

    # ---- the token endpoint of the backend's authorization server --------------------------

    def token_exchange(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        _, client_id, secret = client_credentials(form, authorization)
        if client_id != self.client_id or secret != self.client_secret:
            raise OAuthError(401, "invalid_client", "Client authentication failed.")
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            raise OAuthError(400, "unsupported_grant_type", "The authorization grant type is not supported.")
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise OAuthError(400, "invalid_request", "The subject_token_type is not supported.")
        try:
            subject = self.mcp_as.signer.verify(form.get("subject_token", ""), issuers=self.trusted_servers)
        except jwt.PyJWTError:
            raise OAuthError(400, "invalid_grant", "subject token is invalid") from None
        scopes = form.get("scope", "").split()
        if form.get("audience") != self.backend_audience or not scopes or not set(scopes) <= self.backend_scopes:
            raise OAuthError(400, "invalid_scope", "The requested scope is invalid, unknown, or malformed.")
        issued = self.backend_as.signer.sign({
            "ver": 1, "jti": "AT." + secrets.token_urlsafe(32), "iss": self.backend_as.issuer,
            "aud": self.backend_audience, **lifetime(), "cid": client_id, "uid": subject["uid"], "scp": scopes,
            "sub": subject["sub"]}, {"kid": self.backend_as.signer.kid})
        return {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS, "access_token": issued,
                "scope": " ".join(scopes), "issued_token_type": ACCESS_TOKEN_TYPE}

    def exchange_of(self, subject_token: str) -> list[TokenCall]:
        return self.sts.calls_with("subject_token", subject_token)

    def check_exchange(self, call: TokenCall, subject_token: str) -> None:
        assert client_credentials(call.form, call.authorization) == (
            "client_secret_basic", self.client_id, self.client_secret)
        assert call.form == {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject_token,
                             "subject_token_type": ACCESS_TOKEN_TYPE, "requested_token_type": ACCESS_TOKEN_TYPE,
                             "audience": "backend", "scope": "backend-api:read"}, call.form
        issued = jwt.decode(call.issued or "", self.backend_as.signer.published.key.public, algorithms=["RS256"],
                            audience="backend", issuer=self.backend_as.issuer)
        assert (issued["scp"], issued["cid"]) == (["backend-api:read"], self.client_id)

    # ---- misconfigurations -----------------------------------------------------------------

    def load_errors(self) -> list[LoadError]:
        return [LoadError(
            "client-secret-not-passed-into-the-vm", lambda config: None,
            "token_exchange.client_auth.client_secret_env",
            f"environment variable {SECRET_ENV} is not set in the VM", secret_in_vm=False)]

    def refusals(self) -> list[Refusal]:
        return [
            # The operator kept the default audience (the resource URL); Okta puts the
            # authorization server's audience ("mcpserver") into `aud`.
            Refusal("audiences-left-to-the-default", 401, "token audience not accepted", "audience_not_accepted",
                    change=lambda config: config["providers"]["okta"].pop("audiences")),
            # The backend authorization server does not list the MCP server's as trusted.
            Refusal("backend-as-does-not-trust-the-mcp-as", 401, "token exchange rejected the token",
                    "exchange_rejected", idp_side=lambda p: toggled(p, "trusted_servers", []),
                    log="token exchange failed: exchange_rejected (STS status 400: invalid_grant)"),
        ]
