"""The shipped token-exchange configurations are valid Envoy configurations as written, and a bad
token_exchange block stops Envoy from starting, naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness import GOOGLE_EXAMPLE, OKTA_EXAMPLE, Envoy, free_port
from harness.envoy import validate_config
from harness.exchange import SECRET_ENV, okta_envoy_options, okta_plugin_config

IDP_PORT = 9  # never contacted: the configuration is rejected first
STS_PORT = 11  # never contacted either
INVALID = "mcp_auth_filter: invalid configuration: "


def test_okta_example_validates_as_shipped() -> None:
    """`envoy --mode validate` on the file itself (wasm path relative to the repository, TLS-free
    local clusters): Envoy loads the filter, which reads the secret from the VM environment."""
    result = validate_config(OKTA_EXAMPLE, env={SECRET_ENV: "any-secret"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"configuration '{OKTA_EXAMPLE}' OK" in result.stdout + result.stderr


def test_okta_example_without_secret_fails_validation() -> None:
    result = validate_config(OKTA_EXAMPLE, env={SECRET_ENV: None})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f"{INVALID}token_exchange.client_auth.client_secret_env: " in output, output[-3000:]


def test_google_example_validates_as_shipped() -> None:
    """The Google file as shipped, with its TLS transport socket and DNS cluster for
    sts.googleapis.com (which the other tests replace by the local test STS)."""
    result = validate_config(GOOGLE_EXAMPLE, env={SECRET_ENV: None})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(exchange: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = exchange
        for name in parents:
            target = target[name]
        target[last] = value
    return change


def _delete(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda exchange: exchange.pop(name)


CASES = [
    ("relative-uri", _set("token_endpoint.uri", "not-a-url"), "token_exchange.token_endpoint.uri: ", None),
    ("bad-timeout", _set("token_endpoint.timeout", "soon"), "token_exchange.token_endpoint.timeout: ", None),
    ("bad-method", _set("client_auth.method", "magic"), "token_exchange.client_auth.method", None),
    ("bad-subject-type", _set("subject_token_type", "saml9"), "token_exchange.subject_token_type", None),
    ("bad-requested-type", _set("requested_token_type", "jwt token"), "token_exchange.requested_token_type", None),
    ("bad-expiry-margin", _set("cache.expiry_margin", "soon"), "token_exchange.cache.expiry_margin: ", None),
    ("unknown-field", _set("audeince", "backend"), "token_exchange", "audeince"),
    ("no-endpoint", _delete("token_endpoint"), "token_exchange", "token_endpoint"),
]


@pytest.mark.parametrize(("change", "path", "mentions"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_token_exchange_refused(make_envoy: Callable[..., Envoy], change: Callable[[dict[str, Any]], None],
                                        path: str, mentions: str | None) -> None:
    port = free_port()
    config = okta_plugin_config(envoy_port=port, idp_port=IDP_PORT, sts_port=STS_PORT)
    change(config["token_exchange"])
    envoy = make_envoy(config, idp_port=IDP_PORT, listener_port=port, **okta_envoy_options(STS_PORT, "a-secret"))

    assert envoy.run_expecting_exit(timeout=30) != 0
    errors = [line for line in envoy.log_text().splitlines() if INVALID in line]
    assert any(f"{INVALID}{path}" in line and (mentions is None or mentions in line) for line in errors), errors
