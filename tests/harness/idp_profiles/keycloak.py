"""Keycloak (envoy/profiles/keycloak.json): a realm whose client scope `mcp:tools` carries two
Audience mappers (the MCP server's URL, as Keycloak's "Integrating with Model Context Protocol"
guide shows, and the filter's client `mcp-gateway`), and standard token exchange (V2, Keycloak
26.2 and later) for the backend.

Shapes emulated: `aud` an array, `azp` the client that logged the user in, `scope` a
space-separated string, `realm_access.roles`, `resource_access.<client>.roles`,
`preferred_username`, `typ: Bearer`; the realm's JWKS also lists an RSA-OAEP key with
`use: enc`. Token exchange errors, as in Keycloak's StandardTokenExchangeProvider and
AbstractTokenExchangeProvider: 400 invalid_request "Standard token exchange is not enabled for
the requested client", 400 invalid_request "Invalid token", 403 access_denied "Client is not
within the token audience", 400 invalid_client "Audience not found", 400 invalid_scope.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from typing import Any

import jwt

from ..rfc8693 import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from .emulator import OAuthError, PublishedKey, Signer, TokenCall, client_credentials, new_published_key
from .profile import TOKEN_LIFETIME_SECONDS, Config, IdpProfile, Refusal, lifetime, shaped, toggled

HOST = "https://keycloak.example.com"
GATEWAY = "mcp-gateway"  # the filter's client: confidential, "Standard token exchange" switched on
BACKEND = "backend-api"  # the backend's client
LOGIN_CLIENT = "vscode-mcp"  # the client the user logged in with


def keycloak_jwk(published: PublishedKey, use: str, alg: str) -> dict[str, Any]:
    der = published.certificate_der
    return {"kid": published.key.kid, "kty": "RSA", "alg": alg, "use": use, **published.rsa_members(),
            "x5c": published.x5c, "x5t": published.x5t,
            "x5t#S256": base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()}


def user_id(user: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"keycloak-user:{user}"))


class Keycloak(IdpProfile):
    name = "keycloak"
    idp_origin = HOST

    def configure(self, config: Config) -> None:
        provider = config["providers"]["keycloak"]
        self.issuer: str = provider["issuer"]
        self.resource: str = config["resource"]
        realm_path = self.issuer.removeprefix(self.idp.origin)
        self.signer = Signer(new_published_key(secrets.token_urlsafe(32)))
        encryption_key = new_published_key(secrets.token_urlsafe(32))
        oidc = f"{self.issuer}/protocol/openid-connect"
        self.idp.publish(f"{realm_path}/protocol/openid-connect/certs", lambda: {"keys": [
            keycloak_jwk(self.signer.published, "sig", "RS256"), keycloak_jwk(encryption_key, "enc", "RSA-OAEP")]})
        self.idp.publish(f"{realm_path}/.well-known/openid-configuration", lambda: {
            "issuer": self.issuer, "authorization_endpoint": f"{oidc}/auth", "token_endpoint": f"{oidc}/token",
            "introspection_endpoint": f"{oidc}/token/introspect", "jwks_uri": f"{oidc}/certs",
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
                                      TOKEN_EXCHANGE_GRANT],
            "id_token_signing_alg_values_supported": ["RS256"], "subject_types_supported": ["public", "pairwise"]})
        self.standard_token_exchange = True  # Clients > mcp-gateway > Capability config
        self.sessions_active = True  # False: every user session ended (logout, admin, idle timeout)
        self.idp.serve_token_endpoint(f"{realm_path}/protocol/openid-connect/token", self.token_exchange)

    # ---- tokens ----------------------------------------------------------------------------

    def token(self, user: str, **changes: Any) -> str:
        now = int(time.time())
        claims = {**lifetime(), "auth_time": now, "jti": str(uuid.uuid4()), "iss": self.issuer,
                  "aud": [self.resource, GATEWAY], "sub": user_id(user), "typ": "Bearer", "azp": LOGIN_CLIENT,
                  "sid": str(uuid.uuid4()), "acr": "1", "allowed-origins": ["http://127.0.0.1:33418"],
                  "realm_access": {"roles": ["default-roles-mcp", "offline_access", "mcp-user"]},
                  "resource_access": {GATEWAY: {"roles": ["tools-caller"]}, "account": {"roles": ["view-profile"]}},
                  "scope": "openid email profile mcp:tools", "email_verified": True, "name": f"{user} Test",
                  "preferred_username": user, "given_name": user, "family_name": "Test",
                  "email": f"{user}@example.com"}
        return self.signer.sign(shaped(claims, changes), {"alg": "RS256", "typ": "JWT", "kid": self.signer.kid})

    def token_without_required_scope(self, user: str) -> str:
        return self.token(user, scope="openid email profile")

    def claim_headers(self, user: str) -> dict[str, str]:
        return {"x-mcp-user-sub": user_id(user), "x-mcp-user-email": f"{user}@example.com",
                "x-mcp-user-name": user, "x-mcp-user-roles": "default-roles-mcp,offline_access,mcp-user",
                "x-mcp-client-id": LOGIN_CLIENT}

    # ---- the realm's token endpoint: standard token exchange (V2) --------------------------

    def token_exchange(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        _, client_id, secret = client_credentials(form, authorization)
        if client_id != GATEWAY or secret != self.client_secret:
            raise OAuthError(401, "unauthorized_client", "Invalid client or Invalid client credentials")
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            raise OAuthError(400, "unsupported_grant_type", "Unsupported grant_type")
        if not self.standard_token_exchange:
            raise OAuthError(400, "invalid_request", "Standard token exchange is not enabled for the requested client")
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise OAuthError(400, "invalid_request", "Parameter 'subject_token' supports access tokens only")
        try:
            subject = self.signer.verify(form.get("subject_token", ""), issuers=[self.issuer])
        except jwt.PyJWTError:
            raise OAuthError(400, "invalid_request", "Invalid token") from None
        if not self.sessions_active:  # the subject token must belong to an active user session
            raise OAuthError(400, "invalid_request", "Invalid token")
        audiences = subject["aud"] if isinstance(subject["aud"], list) else [subject["aud"]]
        if subject.get("azp") != GATEWAY and GATEWAY not in audiences:
            raise OAuthError(403, "access_denied", "Client is not within the token audience")
        if form.get("audience") != BACKEND:
            raise OAuthError(400, "invalid_client", "Audience not found")
        scope = form.get("scope", "")
        if scope not in ("", "backend:read"):
            raise OAuthError(400, "invalid_scope", f"Invalid scopes: {scope}")
        issued = self.signer.sign({
            **lifetime(), "jti": str(uuid.uuid4()), "iss": self.issuer, "aud": BACKEND, "sub": subject["sub"],
            "typ": "Bearer", "azp": GATEWAY, "sid": subject.get("sid"), "scope": f"{scope} email profile".strip(),
            "resource_access": {BACKEND: {"roles": ["reader"]}},
            "preferred_username": subject.get("preferred_username")},
            {"alg": "RS256", "typ": "JWT", "kid": self.signer.kid})
        return {"access_token": issued, "expires_in": TOKEN_LIFETIME_SECONDS, "refresh_expires_in": 0,
                "token_type": "Bearer", "not-before-policy": 0, "session_state": subject.get("sid"),
                "scope": f"{scope} email profile".strip(), "issued_token_type": ACCESS_TOKEN_TYPE}

    def exchange_of(self, subject_token: str) -> list[TokenCall]:
        return self.sts.calls_with("subject_token", subject_token)

    def check_exchange(self, call: TokenCall, subject_token: str) -> None:
        assert client_credentials(call.form, call.authorization) == (
            "client_secret_basic", GATEWAY, self.client_secret)
        assert call.form == {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject_token,
                             "subject_token_type": ACCESS_TOKEN_TYPE, "requested_token_type": ACCESS_TOKEN_TYPE,
                             "audience": BACKEND, "scope": "backend:read"}, call.form
        issued = jwt.decode(call.issued or "", self.signer.published.key.public, algorithms=["RS256"],
                            audience=BACKEND, issuer=self.issuer)
        assert (issued["azp"], issued["resource_access"]) == (GATEWAY, {BACKEND: {"roles": ["reader"]}})

    # ---- misconfigurations -----------------------------------------------------------------

    def refusals(self) -> list[Refusal]:
        return [
            # No Audience mapper: Keycloak's default `aud` names the account console only.
            Refusal("no-audience-mapper-for-the-mcp-server", 401, "token audience not accepted",
                    "audience_not_accepted", token=lambda p, user: p.token(user, aud="account")),
            # The mapper for the MCP server's URL exists, the one naming mcp-gateway does not:
            # the filter accepts the token, Keycloak refuses to exchange it.
            Refusal("no-audience-mapper-for-the-gateway", 403, "token exchange refused (access_denied)",
                    "exchange_refused", token=lambda p, user: p.token(user, aud=p.config["resource"]),
                    log="token exchange failed: exchange_refused (STS status 403: access_denied)"),
            # Not an operator's mistake but what a Keycloak logout does to unexpired tokens: the
            # filter still accepts the token, Keycloak calls it invalid_request (RFC 8693 §2.2.2),
            # and the client gets 401, which sends it to log in again.
            Refusal("user-session-ended-before-the-token-expired", 401, "token exchange rejected the token",
                    "exchange_rejected", idp_side=lambda p: toggled(p, "sessions_active", False),
                    log="(STS status 400: invalid_request)"),
            # Keycloak spells this misconfiguration invalid_request too: the client is sent to log
            # in again, which cannot fix it; Envoy's log names the answer.
            Refusal("standard-token-exchange-switched-off", 401, "token exchange rejected the token",
                    "exchange_rejected", idp_side=lambda p: toggled(p, "standard_token_exchange", False),
                    log="(STS status 400: invalid_request)"),
        ]
