"""Token-exchange stacks: the plugin configurations and Envoy options of the two shipped profiles
(envoy/okta-same-idp.yaml, envoy/google-sts.yaml) moved to this run's servers, and helpers to
read what went upstream."""

from __future__ import annotations

from typing import Any

import jwt

from .checks import new_marker
from .envoy import GOOGLE_EXAMPLE, GOOGLE_STS_CLUSTER, OKTA_EXAMPLE, STS_CLUSTER, example_plugin_config
from .idp import IdentityProvider
from .mcp_upstream import McpUpstream, header_values

SECRET_ENV = "STS_CLIENT_SECRET"  # the variable envoy/okta-same-idp.yaml passes into the VM


def okta_plugin_config(*, envoy_port: int, idp_port: int, sts_port: int) -> dict[str, Any]:
    """envoy/okta-same-idp.yaml's own plugin configuration, URLs moved to this run's ports."""
    return example_plugin_config(envoy_port=envoy_port, idp_port=idp_port, example=OKTA_EXAMPLE,
                                 clusters={STS_CLUSTER: sts_port})


def okta_envoy_options(sts_port: int, secret: str | None) -> dict[str, Any]:
    """Envoy from envoy/okta-same-idp.yaml, its STS cluster at `sts_port`, and the client secret in
    Envoy's own environment (the file passes it into the VM with host_env_keys); None: unset."""
    return {"example": OKTA_EXAMPLE, "clusters": {STS_CLUSTER: sts_port}, "env": {SECRET_ENV: secret}}


def google_plugin_config(*, envoy_port: int, idp_port: int, sts_port: int) -> dict[str, Any]:
    """envoy/google-sts.yaml's own plugin configuration; https://sts.googleapis.com becomes the
    test STS (plain HTTP)."""
    return example_plugin_config(envoy_port=envoy_port, idp_port=idp_port, example=GOOGLE_EXAMPLE,
                                 clusters={GOOGLE_STS_CLUSTER: sts_port})


def google_envoy_options(sts_port: int) -> dict[str, Any]:
    """Envoy from envoy/google-sts.yaml, its google_sts cluster moved to `sts_port` (plain HTTP)."""
    return {"example": GOOGLE_EXAMPLE, "clusters": {GOOGLE_STS_CLUSTER: sts_port}}


def mint(idp: IdentityProvider, sub: str, **claims: Any) -> str:
    """A token for `sub` that no other test sends (tokens are cache keys: a unique jti keeps
    tests from sharing cached exchanges)."""
    return idp.mint(sub=sub, jti=new_marker(), **claims)


def upstream_authorization(upstream: McpUpstream, marker: str) -> list[str]:
    """Every Authorization value the upstream received on requests carrying `marker`."""
    return [v for entry in upstream.seen(marker) for v in header_values(entry, "authorization")]


def unverified_claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})
