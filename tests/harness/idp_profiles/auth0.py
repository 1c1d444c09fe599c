"""Auth0 (envoy/profiles/auth0.json): an API whose identifier is the MCP server's URL, RBAC with
"Add Permissions in the Access Token", and the On-Behalf-Of Token Exchange (RFC 8693) of a
Custom API client for the backend.

Shapes emulated: `iss` the tenant URL with a trailing slash, `aud` an array of the API
identifier and `<tenant>/userinfo` (when `openid` was requested), `azp`, `scope` a
space-separated string, `permissions` an array (Auth0's RBAC docs), `org_id` (Organizations),
and a namespaced custom claim (`https://mcp.example.com/roles`, added by an Action); keys at
`/.well-known/jwks.json` with `x5c`, `x5t`. Without an `audience` at /authorize Auth0 hands out
an opaque token, not a JWT (Auth0 blog "Five Reasons Why Your Auth0 Permissions Are Not in your
Access Token"). The exchange's answer carries an `act` claim naming the Custom API client (the
OBO reference says the chain is tracked in `act`; its exact content is this emulation's guess).
"""

from __future__ import annotations

import secrets
from typing import Any

import jwt

from ..rfc8693 import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from .emulator import OAuthError, Signer, TokenCall, client_credentials
from .profile import TOKEN_LIFETIME_SECONDS, Config, IdpProfile, Refusal, lifetime, shaped

TENANT = "https://example.us.auth0.com"
LOGIN_CLIENT = "vsCodeMcpClient0000000000000000"  # the MCP client's application (`azp`)
ROLES_CLAIM = "https://mcp.example.com/roles"  # a namespaced custom claim set by an Action
ORG_ID = "org_mcp0example0org"


class Auth0(IdpProfile):
    name = "auth0"
    idp_origin = TENANT

    def configure(self, config: Config) -> None:
        provider = config["providers"]["auth0"]
        self.issuer: str = provider["issuer"]
        self.api: str = provider["audiences"][0]
        exchange = config["token_exchange"]
        self.custom_api_client: str = exchange["client_auth"]["client_id"]
        self.backend_api: str = exchange["audience"]
        self.signer = Signer()
        published = self.signer.published
        self.idp.publish("/.well-known/jwks.json", lambda: {"keys": [{
            "kty": "RSA", "use": "sig", **published.rsa_members(), "kid": self.signer.kid, "x5t": published.x5t,
            "x5c": published.x5c, "alg": "RS256"}]})
        self.idp.publish("/.well-known/openid-configuration", lambda: {
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}authorize",
            "token_endpoint": f"{self.issuer}oauth/token", "userinfo_endpoint": f"{self.issuer}userinfo",
            "jwks_uri": f"{self.issuer}.well-known/jwks.json", "scopes_supported": ["openid", "profile", "email"],
            "id_token_signing_alg_values_supported": ["HS256", "RS256", "PS256"]})
        self.idp.serve_token_endpoint("/oauth/token", self.on_behalf_of)

    # ---- tokens ----------------------------------------------------------------------------

    def token(self, user: str, **changes: Any) -> str:
        claims = {ROLES_CLAIM: ["analyst"], "iss": self.issuer, "sub": f"auth0|{user}",
                  "aud": [self.api, f"{self.issuer}userinfo"], **lifetime(),
                  "scope": "openid profile email mcp:tools:call", "org_id": ORG_ID, "azp": LOGIN_CLIENT,
                  "permissions": ["mcp:tools:call", "records:read"]}
        return self.signer.sign(shaped(claims, changes), {"alg": "RS256", "typ": "JWT", "kid": self.signer.kid})

    def token_without_required_scope(self, user: str) -> str:
        return self.token(user, scope="openid profile email", permissions=["records:read"])

    def claim_headers(self, user: str) -> dict[str, str]:
        return {"x-mcp-user-sub": f"auth0|{user}", "x-mcp-client-id": LOGIN_CLIENT, "x-mcp-org-id": ORG_ID}

    # ---- the tenant's token endpoint: On-Behalf-Of token exchange ---------------------------

    def on_behalf_of(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        _, client_id, secret = client_credentials(form, authorization)
        if client_id != self.custom_api_client or secret != self.client_secret:
            raise OAuthError(401, "access_denied", "Unauthorized")
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT or form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise OAuthError(400, "invalid_request", "Unsupported subject_token_type")
        try:
            subject = self.signer.verify(form.get("subject_token", ""), issuers=[self.issuer])
        except jwt.PyJWTError:
            raise OAuthError(400, "invalid_grant", "Invalid subject_token") from None
        if form.get("audience") != self.backend_api:
            raise OAuthError(403, "access_denied", "Service not enabled within domain")
        issued = self.signer.sign({
            "iss": self.issuer, "sub": subject["sub"], "aud": self.backend_api, **lifetime(),
            "scope": form.get("scope", ""), "azp": client_id, "act": {"sub": client_id},
            "jti": secrets.token_hex(8)}, {"alg": "RS256", "typ": "JWT", "kid": self.signer.kid})
        return {"access_token": issued, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECONDS, "scope": form.get("scope", "")}

    def exchange_of(self, subject_token: str) -> list[TokenCall]:
        return self.sts.calls_with("subject_token", subject_token)

    def check_exchange(self, call: TokenCall, subject_token: str) -> None:
        assert call.authorization is None, "client_secret_post: no Authorization header"
        assert call.form == {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject_token,
                             "subject_token_type": ACCESS_TOKEN_TYPE, "requested_token_type": ACCESS_TOKEN_TYPE,
                             "audience": self.backend_api, "scope": "read:records",
                             "client_id": self.custom_api_client, "client_secret": self.client_secret}, call.form
        issued = jwt.decode(call.issued or "", self.signer.published.key.public, algorithms=["RS256"],
                            audience=self.backend_api, issuer=self.issuer)
        assert issued["act"] == {"sub": self.custom_api_client}

    # ---- misconfigurations -----------------------------------------------------------------

    def refusals(self) -> list[Refusal]:
        return [
            # The MCP client's /authorize had no `audience` (nor `resource`): an opaque token.
            Refusal("authorize-without-audience", 401, "token malformed", "token_malformed",
                    token=lambda p, user: secrets.token_urlsafe(24)),
            # The issuer copied from the dashboard's domain, without Auth0's trailing slash.
            Refusal("issuer-without-trailing-slash", 401, "token issuer not trusted", "issuer_not_trusted",
                    change=lambda config: config["providers"]["auth0"].update(
                        issuer=config["providers"]["auth0"]["issuer"].rstrip("/"))),
        ]
