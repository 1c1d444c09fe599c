"""Token-exchange stacks: the two shipped profiles (envoy/okta-same-idp.yaml, envoy/google-sts.yaml)
as `ExchangeProfile`s (OKTA, GOOGLE), whose plugin configurations and Envoy options are moved to
this run's servers, and helpers to read what went upstream."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt

from .checks import new_marker
from .envoy import GOOGLE_EXAMPLE, GOOGLE_STS_CLUSTER, OKTA_EXAMPLE, STS_CLUSTER, example_plugin_config
from .idp import IdentityProvider
from .mcp_upstream import McpUpstream, header_values
from .sts import DEFAULT_CLIENT_ID

SECRET_ENV = "STS_CLIENT_SECRET"  # the variable envoy/okta-same-idp.yaml passes into the VM


@dataclass(frozen=True)
class ExchangeProfile:
    """A shipped token-exchange example as the rig runs it: its own plugin configuration and
    Envoy, with the STS cluster moved to this run's test STS."""

    example: Path
    sts_cluster: str
    backend_profile: str  # what the backend accepts (BackendApi's profile): "jwt" or "google"
    client_secret_env: str | None  # the variable the file reads the STS client secret from; None: no client auth
    exchange_timeout: str | None = None  # token_exchange.token_endpoint.timeout, if not the file's own

    def with_timeout(self, timeout: str) -> ExchangeProfile:
        return replace(self, exchange_timeout=timeout)

    def plugin_config(self, *, envoy_port: int, idp_port: int, sts_port: int) -> dict[str, Any]:
        """The example's own plugin configuration, URLs moved to this run's ports."""
        config = example_plugin_config(envoy_port=envoy_port, idp_port=idp_port, example=self.example,
                                       clusters={self.sts_cluster: sts_port})
        if self.exchange_timeout is not None:
            config["token_exchange"]["token_endpoint"]["timeout"] = self.exchange_timeout
        return config

    def envoy_options(self, sts_port: int, secret: str | None) -> dict[str, Any]:
        """`Envoy` options: the example file, its STS cluster at `sts_port`, and the client secret
        in Envoy's own environment (the file passes it into the VM with host_env_keys); None: unset."""
        options: dict[str, Any] = {"example": self.example, "clusters": {self.sts_cluster: sts_port}}
        if self.client_secret_env is not None:
            options["env"] = {self.client_secret_env: secret}
        return options

    def sts_clients(self, secret: str) -> dict[str, str | None]:
        """The clients the test STS registers: the filter, unless the STS takes no client auth."""
        return {} if self.client_secret_env is None else {DEFAULT_CLIENT_ID: secret}


OKTA = ExchangeProfile(OKTA_EXAMPLE, STS_CLUSTER, backend_profile="jwt", client_secret_env=SECRET_ENV)
# https://sts.googleapis.com becomes the test STS (plain HTTP); Google's STS needs no client.
GOOGLE = ExchangeProfile(GOOGLE_EXAMPLE, GOOGLE_STS_CLUSTER, backend_profile="google", client_secret_env=None)


def okta_plugin_config(*, envoy_port: int, idp_port: int, sts_port: int) -> dict[str, Any]:
    """envoy/okta-same-idp.yaml's own plugin configuration, URLs moved to this run's ports."""
    return OKTA.plugin_config(envoy_port=envoy_port, idp_port=idp_port, sts_port=sts_port)


def okta_envoy_options(sts_port: int, secret: str | None) -> dict[str, Any]:
    """Envoy from envoy/okta-same-idp.yaml, its STS cluster at `sts_port`, and the client secret in
    Envoy's own environment (the file passes it into the VM with host_env_keys); None: unset."""
    return OKTA.envoy_options(sts_port, secret)


def google_plugin_config(*, envoy_port: int, idp_port: int, sts_port: int) -> dict[str, Any]:
    """envoy/google-sts.yaml's own plugin configuration; https://sts.googleapis.com becomes the
    test STS (plain HTTP)."""
    return GOOGLE.plugin_config(envoy_port=envoy_port, idp_port=idp_port, sts_port=sts_port)


def google_envoy_options(sts_port: int) -> dict[str, Any]:
    """Envoy from envoy/google-sts.yaml, its google_sts cluster moved to `sts_port` (plain HTTP)."""
    return GOOGLE.envoy_options(sts_port, None)


def mint(idp: IdentityProvider, sub: str, **claims: Any) -> str:
    """A token for `sub` that no other test sends (tokens are cache keys: a unique jti keeps
    tests from sharing cached exchanges)."""
    return idp.mint(sub=sub, jti=new_marker(), **claims)


def upstream_authorization(upstream: McpUpstream, marker: str) -> list[str]:
    """Every Authorization value the upstream received on requests carrying `marker`."""
    return [v for entry in upstream.seen(marker) for v in header_values(entry, "authorization")]


def unverified_claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})
