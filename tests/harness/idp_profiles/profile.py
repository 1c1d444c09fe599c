"""What every IdP profile gives the profile tests (tests/integration/test_idp_profiles.py).

A profile is a shipped plugin configuration, envoy/profiles/<name>.json, plus an emulation of
that IdP: the keys and documents it publishes, the tokens it issues (their claim shapes), its
token endpoint with its error answers, and the misconfigurations operators most often make,
each with what the filter then does (it refuses to start, or refuses a request).

The configuration runs in envoy/okta-same-idp.yaml, whose clusters `idp` and `sts` the file's
callouts name; the tests move every public origin the file uses to the emulators.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..config import rebase_urls
from ..net import LOOPBACK
from .emulator import IdpEmulator, TokenCall

REPO = Path(__file__).resolve().parents[3]
PROFILES_DIR = REPO / "envoy" / "profiles"
# The public origin of the MCP server in every profile file.
RESOURCE_ORIGIN = "https://mcp.example.com"
# The variable envoy/okta-same-idp.yaml passes into the VM (host_env_keys), read by client_auth.
SECRET_ENV = "STS_CLIENT_SECRET"
TOKEN_LIFETIME_SECONDS = 3600

Config = dict[str, Any]


@dataclass(frozen=True)
class LoadError:
    """A misconfiguration the filter refuses at load: Envoy exits and logs
    `mcp_auth_filter: invalid configuration: <path>: <problem>`."""

    name: str
    change: Callable[[Config], None]
    path: str
    problem: str
    secret_in_vm: bool = True


@dataclass(frozen=True)
class Refusal:
    """A misconfiguration the filter starts with; the client sees `status` and
    `error_description` = `description`, the audit line `reason`, and Envoy's log `log`.

    `change`: the operator's mistake in the plugin configuration (run in an Envoy of its own);
    `idp_side`: the IdP administrator's mistake, in force while the context is open;
    `token`: what the client sends (default: the profile's good token)."""

    name: str
    status: int
    description: str
    reason: str
    change: Callable[[Config], None] | None = None
    idp_side: Callable[[IdpProfile], AbstractContextManager[None]] | None = None
    token: Callable[[IdpProfile, str], str] | None = None
    log: str | None = None


class IdpProfile(ABC):
    """One IdP, emulated. `configure` reads the moved configuration and registers the routes;
    the token methods mint tokens of that IdP's shape for a user name."""

    name: ClassVar[str]
    # Public origins the file names: the IdP's (keys, discovery, token endpoint) and, when the
    # token endpoint lives elsewhere (Google STS), that one.
    idp_origin: ClassVar[str]
    sts_origin: ClassVar[str | None] = None
    client_secret: ClassVar[str] = "profile-client-secret"

    def __init__(self) -> None:
        self.idp = IdpEmulator()
        self.sts = IdpEmulator() if self.sts_origin else self.idp
        self.config: Config = {}

    @property
    def example(self) -> Path:
        return PROFILES_DIR / f"{self.name}.json"

    @property
    def required_scopes(self) -> list[str]:
        return list(self.config.get("required_scopes", []))

    def plugin_config(self, envoy_port: int) -> Config:
        """The shipped file with its public origins moved to the emulators and the listener."""
        origins = {RESOURCE_ORIGIN: f"http://{LOOPBACK}:{envoy_port}", self.idp_origin: self.idp.origin}
        if self.sts_origin:
            origins[self.sts_origin] = self.sts.origin
        config: Config = rebase_urls(json.loads(self.example.read_text()), origins)
        return config

    def start(self, config: Config) -> None:
        self.config = config
        self.configure(config)
        self.idp.start()
        self.sts.start()

    def stop(self) -> None:
        self.idp.stop()
        self.sts.stop()

    # ---- what each IdP defines -------------------------------------------------------------

    @abstractmethod
    def configure(self, config: Config) -> None:
        """Register the emulator's routes from the moved configuration."""

    @abstractmethod
    def token(self, user: str, **changes: Any) -> str:
        """An access token of this IdP's shape for the MCP server; `changes` replace claims
        (None removes one)."""

    @abstractmethod
    def token_without_required_scope(self, user: str) -> str | None:
        """The same token as `token`, minus the scope the profile requires (None: the profile
        requires no scope)."""

    @abstractmethod
    def claim_headers(self, user: str) -> dict[str, str]:
        """The headers the MCP server must receive for `user`'s token (claim_to_headers)."""

    @abstractmethod
    def exchange_of(self, subject_token: str) -> list[TokenCall]:
        """The token-endpoint calls made for this client token."""

    @abstractmethod
    def check_exchange(self, call: TokenCall, subject_token: str) -> None:
        """Assert the call is the request this IdP expects (grant, parameters, client auth)."""

    def load_errors(self) -> list[LoadError]:
        return []

    def refusals(self) -> list[Refusal]:
        return []


def shaped(claims: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`claims` updated with `changes`; a change to None removes the claim."""
    merged = {**claims, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def lifetime() -> dict[str, int]:
    """iat and exp of a token issued now."""
    now = int(time.time())
    return {"iat": now, "exp": now + TOKEN_LIFETIME_SECONDS}


def path_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path


@contextmanager
def toggled(target: object, attribute: str, value: object) -> Iterator[None]:
    """`target.attribute` is `value` while the context is open."""
    before = getattr(target, attribute)
    setattr(target, attribute, value)
    try:
        yield
    finally:
        setattr(target, attribute, before)
