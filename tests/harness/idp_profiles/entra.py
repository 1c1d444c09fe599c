"""Microsoft Entra ID (envoy/profiles/entra.json for v2.0 access tokens, entra-v1.json for v1.0),
with the on-behalf-of flow (jwt-bearer grant, `requested_token_use=on_behalf_of`) for the backend.

Shapes emulated, from Microsoft's "Access token claims reference" and "Access tokens" pages and
the sample tokens there: v2.0 `iss` https://login.microsoftonline.com/{tid}/v2.0, `aud` always
the API's client id (a GUID), `azp`; v1.0 `iss` https://sts.windows.net/{tid}/, `aud` the App ID
URI or the client id, `appid`, `unique_name`; both: `scp` a space-separated string of bare scope
names, `roles` an array, `oid`, `tid`, `ver`. Keys at /{tid}/discovery/v2.0/keys (v1.0:
/{tid}/discovery/keys) without `alg`, with `x5t`, `x5c` and (v2.0) `issuer`; v1.0 token headers
carry `x5t` beside `kid`.
On-behalf-of, from "Microsoft identity platform and OAuth 2.0 On-Behalf-Of flow": the assertion
must have the presenting app as `aud`; errors carry `error_codes` (AADSTS numbers): 500131
(assertion audience does not match the client app), 65001 (no consent, `suberror`
consent_required), 70011 (invalid scope).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

import jwt

from .emulator import OAuthError, Signer, TokenCall, client_credentials
from .profile import Config, IdpProfile, LoadError, Refusal, lifetime, path_of, shaped, toggled

LOGIN = "https://login.microsoftonline.com"
TENANT = "4b1f8e5a-3c2d-4e6f-9a0b-1c2d3e4f5a6b"
API_APP = "6f1d2c3b-4a59-4e8d-b7c6-a5f4e3d2c1b0"  # the MCP server's app registration
BACKEND_APP = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"  # the API the MCP server calls
CLIENT_APP = "0d9c8b7a-6e5f-4d3c-a2b1-f0e9d8c7b6a5"  # the MCP client's app registration
OTHER_APP = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"  # a second registration made for the filter
V1_ISSUER = f"https://sts.windows.net/{TENANT}/"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def user_oid(user: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"entra-user:{user}"))


def pairwise_sub(user: str, app: str) -> str:
    """`sub` differs per application for the same user (the claims reference)."""
    return hashlib.sha256(f"{user}:{app}".encode()).hexdigest()[:43]


def aadsts(status: int, error: str, code: int, description: str, **extra: Any) -> OAuthError:
    """An Entra error answer: the AADSTS number leads the description and is in error_codes."""
    trace = str(uuid.uuid4())
    return OAuthError(status, error, f"AADSTS{code}: {description} Trace ID: {trace}", error_codes=[code],
                      timestamp=time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()), trace_id=trace,
                      correlation_id=str(uuid.uuid4()), **extra)


class EntraTenant(IdpProfile):
    """One tenant: its keys at both key URLs, the v2.0 OpenID configuration, the v2.0 token
    endpoint with on-behalf-of. Subclasses say which token version the API accepts."""

    idp_origin = LOGIN
    provider: str
    version: str

    def configure(self, config: Config) -> None:
        self.signer = Signer()
        base = f"{self.idp.origin}/{TENANT}"
        self.v2_issuer = f"{base}/v2.0"
        self.idp.publish(f"/{TENANT}/discovery/v2.0/keys", lambda: self.jwks(self.v2_issuer))
        self.idp.publish(f"/{TENANT}/discovery/keys", lambda: self.jwks(None))
        self.idp.publish(f"/{TENANT}/v2.0/.well-known/openid-configuration", lambda: {
            "issuer": self.v2_issuer, "jwks_uri": f"{base}/discovery/v2.0/keys",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize", "token_endpoint": f"{base}/oauth2/v2.0/token",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "EU"})
        exchange = config["token_exchange"]
        # App registrations and their client secrets (Certificates & secrets).
        self.secrets = {API_APP: self.client_secret, OTHER_APP: self.client_secret}
        self.consented = True  # API permissions > Grant admin consent
        self.idp.serve_token_endpoint(path_of(exchange["token_endpoint"]["uri"]), self.on_behalf_of)

    def jwks(self, issuer: str | None) -> dict[str, Any]:
        published = self.signer.published
        key = {**published.rsa_members(), "use": "sig", "kid": self.signer.kid, "x5t": published.x5t,
               "x5c": published.x5c}
        return {"keys": [{**key, "issuer": issuer} if issuer else key]}

    # ---- tokens ----------------------------------------------------------------------------

    def v2_token(self, user: str, **changes: Any) -> str:
        claims = {"aud": API_APP, "iss": self.v2_issuer, **lifetime(), "nbf": int(time.time()),
                  "aio": secrets.token_urlsafe(40), "azp": CLIENT_APP, "azpacr": "0", "name": f"{user} (test)",
                  "oid": user_oid(user), "preferred_username": f"{user}@contoso.example", "rh": "0.AX",
                  "roles": ["Mcp.Reader"], "scp": "mcp.access User.Read", "sub": pairwise_sub(user, API_APP),
                  "tid": TENANT, "uti": secrets.token_urlsafe(16), "ver": "2.0"}
        return self.signer.sign(shaped(claims, changes), {"typ": "JWT", "kid": self.signer.kid})

    def v1_token(self, user: str, **changes: Any) -> str:
        claims = {"aud": f"api://{API_APP}", "iss": V1_ISSUER, **lifetime(), "nbf": int(time.time()), "acr": "1",
                  "aio": secrets.token_urlsafe(40), "amr": ["pwd"], "appid": CLIENT_APP, "appidacr": "0",
                  "idp": V1_ISSUER, "name": f"{user} (test)", "oid": user_oid(user), "rh": "0.AX",
                  "scp": "mcp.access User.Read", "sub": pairwise_sub(user, API_APP), "tid": TENANT,
                  "unique_name": f"{user}@contoso.example", "uti": secrets.token_urlsafe(16), "ver": "1.0"}
        header = {"typ": "JWT", "x5t": self.signer.published.x5t, "kid": self.signer.kid}
        return self.signer.sign(shaped(claims, changes), header)

    def token_without_required_scope(self, user: str) -> str:
        return self.token(user, scp="User.Read")

    def claim_headers(self, user: str) -> dict[str, str]:
        return {"x-mcp-user-sub": pairwise_sub(user, API_APP), "x-mcp-user-oid": user_oid(user),
                "x-mcp-tenant-id": TENANT}

    # ---- the tenant's token endpoint: on-behalf-of -----------------------------------------

    def on_behalf_of(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        _, client_id, secret = client_credentials(form, authorization)
        if client_id is None or secret is None or self.secrets.get(client_id) != secret:
            raise OAuthError(401, "invalid_client", "Invalid client secret provided.")
        if form.get("grant_type") != JWT_BEARER_GRANT or form.get("requested_token_use") != "on_behalf_of":
            raise OAuthError(400, "unsupported_grant_type", "The provided grant type is not supported.")
        try:
            assertion = self.signer.verify(form.get("assertion", ""), issuers=[self.v2_issuer, V1_ISSUER])
        except jwt.PyJWTError:
            raise aadsts(400, "invalid_grant", 50013, "Assertion failed signature validation.") from None
        if assertion["aud"] not in (client_id, f"api://{client_id}"):
            raise aadsts(400, "invalid_grant", 500131, "Assertion audience does not match the Client app presenting "
                         f"the assertion. The audience in the assertion was '{assertion['aud']}' and the expected "
                         f"audience is '{client_id}' or one of the Application Uris of this application.")
        if not self.consented:
            raise aadsts(400, "invalid_grant", 65001, "The user or administrator has not consented to use the "
                         f"application with ID '{client_id}'.", suberror="consent_required")
        if form.get("scope") != f"api://{BACKEND_APP}/.default":
            raise aadsts(400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' isn't valid.")
        user_claims: dict[str, Any] = {k: assertion[k] for k in ("oid", "tid", "name") if k in assertion}
        issued = self.signer.sign({"aud": BACKEND_APP, "iss": self.v2_issuer, **lifetime(), "nbf": int(time.time()),
                                   "azp": client_id, "azpacr": "1", **user_claims, "scp": "records.read",
                                   "sub": hashlib.sha256(f"{assertion['oid']}:{BACKEND_APP}".encode()).hexdigest()[:43],
                                   "uti": secrets.token_urlsafe(16), "ver": "2.0"},
                                  {"typ": "JWT", "kid": self.signer.kid})
        return {"token_type": "Bearer", "scope": f"api://{BACKEND_APP}/records.read", "expires_in": 3599,
                "ext_expires_in": 3599, "access_token": issued}

    def exchange_of(self, subject_token: str) -> list[TokenCall]:
        return self.sts.calls_with("assertion", subject_token)

    def check_exchange(self, call: TokenCall, subject_token: str) -> None:
        assert call.authorization is None, "client_secret_post: no Authorization header"
        assert call.form == {"grant_type": JWT_BEARER_GRANT, "assertion": subject_token,
                             "requested_token_use": "on_behalf_of", "scope": f"api://{BACKEND_APP}/.default",
                             "client_id": API_APP, "client_secret": self.client_secret}, call.form
        issued = jwt.decode(call.issued or "", self.signer.published.key.public, algorithms=["RS256"],
                            audience=BACKEND_APP, issuer=self.v2_issuer)
        assert (issued["azp"], issued["scp"]) == (API_APP, "records.read")

    # ---- misconfigurations shared by both versions -----------------------------------------

    def refusals(self) -> list[Refusal]:
        return [
            # A second app registration for the filter: Entra redeems only assertions issued
            # for the app that presents them.
            Refusal("on-behalf-of-by-another-app-registration", 401, "token exchange rejected the token",
                    "exchange_rejected",
                    change=lambda config: config["token_exchange"]["client_auth"].update(client_id=OTHER_APP),
                    log="token exchange failed: exchange_rejected (STS status 400: invalid_grant (AADSTS500131))"),
            # Signing in again cannot grant consent: a refusal, not a 401.
            Refusal("admin-consent-not-granted", 403, "token exchange refused (consent_required)", "exchange_refused",
                    idp_side=lambda p: toggled(p, "consented", False),
                    log="(STS status 400: invalid_grant (AADSTS65001))"),
        ]


class EntraV2(EntraTenant):
    """The API's manifest says `accessTokenAcceptedVersion: 2` (Token formats, Access tokens)."""

    name = "entra"
    provider = "entra"

    def token(self, user: str, **changes: Any) -> str:
        return self.v2_token(user, **changes)

    def claim_headers(self, user: str) -> dict[str, str]:
        return {**super().claim_headers(user), "x-mcp-user-email": f"{user}@contoso.example",
                "x-mcp-user-roles": "Mcp.Reader"}

    def load_errors(self) -> list[LoadError]:
        # RFC 8707 `resource` is a v1.0 habit; on-behalf-of names the backend by scope only.
        return [LoadError("resource-sent-to-on-behalf-of",
                          lambda config: config["token_exchange"].update(resource="https://backend.example.com/"),
                          "token_exchange.resource", "not used with grant jwt_bearer_obo")]

    def refusals(self) -> list[Refusal]:
        return [
            # accessTokenAcceptedVersion left at null: Entra issues v1.0 tokens (sts.windows.net).
            Refusal("api-still-issues-v1-tokens", 401, "token issuer not trusted", "issuer_not_trusted",
                    token=lambda p, user: tenant_of(p).v1_token(user)),
            # v2.0 tokens carry the client id in `aud`, never the App ID URI.
            Refusal("app-id-uri-as-audience", 401, "token audience not accepted", "audience_not_accepted",
                    change=lambda config: config["providers"]["entra"].update(audiences=[f"api://{API_APP}"])),
            *super().refusals(),
        ]


class EntraV1(EntraTenant):
    """The API's manifest leaves `accessTokenAcceptedVersion` at null (or 1): v1.0 tokens."""

    name = "entra-v1"
    provider = "entra_v1"

    def token(self, user: str, **changes: Any) -> str:
        return self.v1_token(user, **changes)

    def claim_headers(self, user: str) -> dict[str, str]:
        return {**super().claim_headers(user), "x-mcp-user-email": f"{user}@contoso.example",
                "x-mcp-client-id": CLIENT_APP}

    def refusals(self) -> list[Refusal]:
        return [
            # v1.0 `aud` is what the client asked for: here the App ID URI, which is not listed.
            Refusal("only-the-client-id-as-audience", 401, "token audience not accepted", "audience_not_accepted",
                    change=lambda config: config["providers"]["entra_v1"].update(audiences=[API_APP])),
            Refusal("api-switched-to-v2-tokens", 401, "token issuer not trusted", "issuer_not_trusted",
                    token=lambda p, user: tenant_of(p).v2_token(user)),
            *super().refusals(),
        ]


def tenant_of(profile: IdpProfile) -> EntraTenant:
    assert isinstance(profile, EntraTenant)
    return profile
