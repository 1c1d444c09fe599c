"""Google Cloud (envoy/profiles/google.json): the caller's OIDC ID token, issued by the IdP a
workforce identity pool trusts (Okta here, as in the seed articles), exchanged at Google's STS
(https://sts.googleapis.com/v1/token) for a Google access token.

What is emulated, from the STS v1 reference (ExchangeTokenRequest): no client authentication
(the reference says not to send an Authorization header); `subject_token_type`
`urn:ietf:params:oauth:token-type:id_token` or `…:jwt`; `requested_token_type` `…:access_token`;
the audience is the provider's full resource name; the subject JWT must have a `kid`, RS256 or
ES256, an `exp` less than 48 hours after `iat`, and (workforce pools) an `aud` equal to the
client id configured in the provider; `options` is a JSON object (`userProject`); the answer is
an opaque access token with `token_type: Bearer`, `issued_token_type` and `expires_in`.
The ID token has the Okta shape: `sub` the user id (00u…), `aud` the OIDC app's client id,
`ver`, `jti: "ID.…"`, `amr`, `idp`, `auth_time`, `email`. Error descriptions are this
emulation's own: Google's exact wording was not available.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import jwt

from ..rfc8693 import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from .emulator import OAuthError, Signer, TokenCall, new_published_key
from .okta import ORG, okta_jwks, okta_user_id
from .profile import Config, IdpProfile, LoadError, Refusal, lifetime, path_of, shaped, toggled

STS = "https://sts.googleapis.com"
GOOGLE_TOKEN_LIFETIME = 3599
MAX_SUBJECT_LIFETIME_SECONDS = 48 * 3600


class Google(IdpProfile):
    name = "google"
    idp_origin = ORG
    sts_origin = STS

    def configure(self, config: Config) -> None:
        provider = config["providers"]["okta"]
        self.issuer: str = provider["issuer"]
        self.client_id: str = provider["audiences"][0]
        self.signer = Signer(new_published_key("okta-" + secrets.token_hex(8)))
        self.idp.publish(path_of(provider["remote_jwks"]["http_uri"]["uri"]), lambda: okta_jwks(self.signer))
        exchange = config["token_exchange"]
        self.pool_provider: str = exchange["audience"]
        # IAM > Workforce Identity Federation > <pool> > <provider>: issuer and client ID.
        self.provider_client_id = self.client_id
        self.sts.serve_token_endpoint(path_of(exchange["token_endpoint"]["uri"]), self.exchange_token)

    # ---- tokens ----------------------------------------------------------------------------

    def token(self, user: str, **changes: Any) -> str:
        now = int(time.time())
        claims = {"sub": okta_user_id(user), "name": f"{user} Test", "email": f"{user}@example.com", "ver": 1,
                  "iss": self.issuer, "aud": self.client_id, **lifetime(), "jti": "ID." + secrets.token_urlsafe(32),
                  "amr": ["pwd"], "idp": "00o1okta0idp0000697", "nonce": secrets.token_hex(8),
                  "preferred_username": f"{user}@example.com", "auth_time": now,
                  "at_hash": secrets.token_urlsafe(16)}
        return self.signer.sign(shaped(claims, changes), {"kid": self.signer.kid})

    def token_without_required_scope(self, user: str) -> None:
        return None  # ID tokens carry no scopes: the profile requires none

    def claim_headers(self, user: str) -> dict[str, str]:
        return {"x-mcp-user-sub": okta_user_id(user), "x-mcp-user-email": f"{user}@example.com"}

    # ---- Google's STS ----------------------------------------------------------------------

    def exchange_token(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        if authorization is not None:
            raise OAuthError(400, "invalid_request", "Do not send an Authorization header.")
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            raise OAuthError(400, "unsupported_grant_type", "Invalid grant_type.")
        if form.get("subject_token_type") not in (ID_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise OAuthError(400, "invalid_request", "Invalid subject_token_type.")
        if form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            raise OAuthError(400, "invalid_request", "Invalid requested_token_type.")
        if form.get("audience") != self.pool_provider:
            raise OAuthError(400, "invalid_target", "Invalid audience.")
        if not form.get("scope"):
            raise OAuthError(400, "invalid_scope", "scope is required for external credentials.")
        options = json.loads(form.get("options", "{}"))
        if not isinstance(options, dict) or "userProject" not in options:
            raise OAuthError(400, "invalid_request", "Workforce pools need options.userProject.")
        header = jwt.get_unverified_header(form.get("subject_token", ""))
        try:
            subject = self.signer.verify(form.get("subject_token", ""), issuers=[self.issuer])
        except jwt.PyJWTError:
            raise OAuthError(400, "invalid_grant", "The subject token is invalid or expired.") from None
        if ("kid" not in header or header.get("alg") not in ("RS256", "ES256")
                or subject["exp"] - subject["iat"] >= MAX_SUBJECT_LIFETIME_SECONDS
                or subject.get("aud") != self.provider_client_id):
            raise OAuthError(400, "invalid_grant", "The subject token does not match the provider configuration.")
        return {"access_token": "ya29." + secrets.token_urlsafe(96), "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer", "expires_in": GOOGLE_TOKEN_LIFETIME}

    def exchange_of(self, subject_token: str) -> list[TokenCall]:
        return self.sts.calls_with("subject_token", subject_token)

    def check_exchange(self, call: TokenCall, subject_token: str) -> None:
        assert call.authorization is None
        assert call.form == {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject_token,
                             "subject_token_type": ID_TOKEN_TYPE, "requested_token_type": ACCESS_TOKEN_TYPE,
                             "audience": self.pool_provider, "scope": "https://www.googleapis.com/auth/cloud-platform",
                             "options": '{"userProject":"123456789012"}'}, call.form
        assert (call.issued or "").startswith("ya29.")

    # ---- misconfigurations -----------------------------------------------------------------

    def load_errors(self) -> list[LoadError]:
        # Without `client_auth` the filter would authenticate with HTTP Basic, which Google's
        # STS does not take: the block must say `{"method": "none"}`.
        return [LoadError("client-auth-left-out", lambda config: config["token_exchange"].pop("client_auth"),
                          "token_exchange.client_auth.client_id", "required with client_secret_basic")]

    def refusals(self) -> list[Refusal]:
        return [
            # The workforce provider was set up with another OIDC app's client id.
            Refusal("workforce-provider-expects-another-client-id", 401, "token exchange rejected the token",
                    "exchange_rejected", idp_side=lambda p: toggled(p, "provider_client_id", "0oaotherapp000000697"),
                    log="token exchange failed: exchange_rejected (STS status 400: invalid_grant)"),
        ]
