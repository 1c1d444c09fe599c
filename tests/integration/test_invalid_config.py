"""An invalid plugin configuration stops Envoy from starting, naming the bad field.

The contract fixes `mcp_auth_filter: invalid configuration: <field path>: <problem>`; the problem
wording is free, so only the field path is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness import Envoy, free_port, provider, standard_plugin_config

IDP_PORT = 9  # never contacted: the configuration is rejected first


def _without_resource(config: dict[str, Any]) -> None:
    del config["resource"]


def _relative_jwks_uri(config: dict[str, Any]) -> None:
    provider(config)["remote_jwks"]["http_uri"]["uri"] = "not-a-url"


def _jwks_uri_with_spaces(config: dict[str, Any]) -> None:
    provider(config)["remote_jwks"]["http_uri"]["uri"] = "http://idp example/jwks"


def _bad_duration(config: dict[str, Any]) -> None:
    provider(config)["remote_jwks"]["cache_duration"] = "soon"


def _two_key_sources(config: dict[str, Any]) -> None:
    provider(config)["local_jwks"] = {"inline_string": '{"keys":[]}'}


def _encoded_bypass_prefix(config: dict[str, Any]) -> None:
    config["bypass_paths"] = [{"exact": "/healthz"}, {"prefix": "/public/%2e%2e/"}]


def _dotted_bypass_path(config: dict[str, Any]) -> None:
    config["bypass_paths"] = [{"exact": "/public/../healthz"}]


def _mcp_rule_with_an_unknown_method(config: dict[str, Any]) -> None:
    config["mcp"] = {"rules": [{"name": "read", "methods": ["tools/list"], "names": ["query_*"]}]}


def _duplicate_mcp_rule_names(config: dict[str, Any]) -> None:
    config["mcp"] = {"rules": [{"name": "read", "names": ["query_*"]}, {"name": "read", "names": ["list_*"]}]}


def _mcp_rule_that_never_matches(config: dict[str, Any]) -> None:
    # Shadowed: the first rule already takes every name of every method.
    config["mcp"] = {"rules": [{"name": "all", "names": ["*"]}, {"name": "late", "names": ["drop_*"]}]}


CASES = [
    ("missing-resource", _without_resource, "resource: "),
    ("relative-uri", _relative_jwks_uri, "providers.test_idp.remote_jwks.http_uri.uri: "),
    ("uri-with-spaces", _jwks_uri_with_spaces, "providers.test_idp.remote_jwks.http_uri.uri: "),
    ("bad-duration", _bad_duration, "providers.test_idp.remote_jwks.cache_duration: "),
    ("two-key-sources", _two_key_sources, "providers.test_idp"),
    # A bypass rule must be a plain path: request paths that are not never match one.
    ("encoded-bypass-prefix", _encoded_bypass_prefix, "bypass_paths[1]: "),
    ("dotted-bypass-path", _dotted_bypass_path, "bypass_paths[0]: "),
    # MCP rules (issue 11): a method a rule cannot govern, a duplicate name, a rule that can never match.
    ("mcp-unknown-method", _mcp_rule_with_an_unknown_method, "mcp.rules[0].methods[0]: "),
    ("mcp-duplicate-rule-name", _duplicate_mcp_rule_names, "mcp.rules[1].name: "),
    ("mcp-shadowed-rule", _mcp_rule_that_never_matches, "mcp.rules[1]"),
]


@pytest.mark.parametrize(("break_config", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_configuration_refused(make_envoy: Callable[..., Envoy], break_config: Callable[[dict[str, Any]], None],
                                       expected: str) -> None:
    port = free_port()
    config = standard_plugin_config(envoy_port=port, idp_port=IDP_PORT)
    break_config(config)
    envoy = make_envoy(config, idp_port=IDP_PORT, listener_port=port)

    exit_code = envoy.run_expecting_exit(timeout=30)

    assert exit_code != 0
    errors = [line for line in envoy.log_text().splitlines() if "invalid configuration" in line]
    assert any(f"mcp_auth_filter: invalid configuration: {expected}" in line for line in errors), errors
