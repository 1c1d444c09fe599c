"""Bypass paths cannot be reached through encoded, dotted or otherwise ambiguous request paths
(security review, issue 9, item 3): a path holding `%`, `;`, `\\`, `#`, `//`, non-ASCII or a dot
segment never matches `bypass_paths`, whatever an upstream would make of it (Jetty decodes
`%u002e`, Tomcat and Spring read `..;` as `..`, a double-decoding proxy turns `%252e` into `.`).

One Envoy, three listeners with the standard configuration (`{"exact": "/healthz"}`,
`{"prefix": "/public/"}`), differing only in Envoy's own path handling:
  shipped    envoy/envoy.yaml as shipped: normalize_path, merge_slashes, escaped slashes refused
  unescaped  the same, escaped slashes decoded and forwarded (UNESCAPE_AND_FORWARD)
  raw        none of it (Envoy's defaults): the filter sees the path exactly as sent
Paths are written on the wire byte for byte (raw_request), since HTTP clients normalise them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness import IdentityProvider, McpUpstream, free_port, standard_plugin_config
from harness.checks import new_marker, parse_challenge
from harness.envoy_multi import FilterInstance, MultiEnvoy
from harness.faults import RawResponse, raw_request
from harness.mcp_upstream import MARKER_HEADER, header_values

NO_NORMALISATION = {"normalize_path": None, "merge_slashes": None, "path_with_escaped_slashes_action": None}
LISTENERS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "unescaped": {"path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD"},
    "raw": NO_NORMALISATION,
}

# Segments that some upstream reads as "..": each is tried under the prefix rule and the exact one.
DOT_SEGMENTS = ["%u002e%u002e", "..%3B", "..;", "%252e%252e", "%2e%2e", "..", ".%2e", "..%2F", "..%2f", "..\\",
                "%2e%2e%5c"]
ESCAPES = ([f"/public/{segment}/mcp" for segment in DOT_SEGMENTS]
           + [f"/healthz/{segment}/mcp" for segment in DOT_SEGMENTS]
           + ["/healthz;/../mcp", "/healthz%3B/../mcp"])
# Envoy refuses an escaped slash or backslash itself on the shipped listener (REJECT_REQUEST).
ESCAPED_SLASHES = ("%2F", "%2f", "%5c")

# Paths an upstream may well read as public, but that are not plain. On the raw listener the
# filter sees them as sent and must not bypass; where Envoy normalises, it forwards them plain.
NOT_PLAIN = ["/public//x", "/public/./x", "/public/%41", "/%68ealthz", "/public/a;b", "/public/a\\b",
             "/healthz/", "/healthz/."]
# Bytes Envoy's HTTP/1 codec refuses (400) before any filter, on every listener.
UNPARSABLE = [b"/public/caf\xe9", "/public/caf\u00e9".encode(), b"/public/a#b"]

PLAIN = ["/public/x", "/public/docs/index.html", "/healthz", "/healthz?probe=1"]


@pytest.fixture(scope="module")
def paths_envoy(make_multi_envoy: Callable[..., MultiEnvoy], idp: IdentityProvider) -> MultiEnvoy:
    instances = []
    for name, hcm in LISTENERS.items():
        port = free_port()
        instances.append(FilterInstance(name, standard_plugin_config(envoy_port=port, idp_port=idp.port), port, hcm))
    return make_multi_envoy(instances, clusters={"idp": idp.port}).start()


pytestmark = pytest.mark.usefixtures("vm_never_fails")


def _send(envoy: MultiEnvoy, listener: str, path: str, marker: str) -> RawResponse:
    """GET `path` (UTF-8 on the wire) without a token on `listener`."""
    port = envoy.instance(listener).listener_port
    return raw_request(port, [(MARKER_HEADER.encode(), marker.encode())], path=path.encode())


def _assert_needs_token(response: RawResponse) -> None:
    """The filter's own 401 for a request without a token: a Bearer challenge, no error."""
    assert response.status == 401, (response.status, response.body)
    (value,) = response.header("www-authenticate")
    scheme, params = parse_challenge(value)
    assert scheme == "Bearer" and "resource_metadata" in params and "error" not in params, value


@pytest.mark.parametrize("listener", list(LISTENERS))
@pytest.mark.parametrize("path", ESCAPES)
def test_escape_from_a_bypass_path_needs_a_token(paths_envoy: MultiEnvoy, upstream: McpUpstream,
                                                 listener: str, path: str) -> None:
    marker = new_marker()
    response = _send(paths_envoy, listener, path, marker)
    if listener == "shipped" and any(e in path for e in ESCAPED_SLASHES):
        assert response.status == 400, (response.status, response.body)  # Envoy's own refusal
    else:
        _assert_needs_token(response)
    assert upstream.seen(marker) == [], "forwarded without a token"


@pytest.mark.parametrize("path", NOT_PLAIN)
def test_path_that_is_not_plain_never_bypasses(paths_envoy: MultiEnvoy, upstream: McpUpstream, path: str) -> None:
    """Without Envoy's normalisation the filter sees the path as sent and asks for a token; with
    it, Envoy rewrites the path first, and only the plain result may bypass."""
    marker = new_marker()
    _assert_needs_token(_send(paths_envoy, "raw", path, marker))
    assert upstream.seen(marker) == []

    for listener in ("shipped", "unescaped"):
        marker = new_marker()
        response = _send(paths_envoy, listener, path, marker)
        if response.status == 401:
            _assert_needs_token(response)
            assert upstream.seen(marker) == []
            continue
        assert response.status == 200, (listener, response.status, response.body)
        (entry,) = upstream.seen(marker)
        forwarded = entry["path"]
        assert forwarded.startswith("/public/") or forwarded == "/healthz", (listener, forwarded)
        assert all(c not in forwarded for c in "%;\\#") and "//" not in forwarded, (listener, forwarded)
        assert "/." not in forwarded, (listener, forwarded)


@pytest.mark.parametrize("listener", list(LISTENERS))
@pytest.mark.parametrize("path", UNPARSABLE, ids=["latin-1-byte", "utf-8", "fragment"])
def test_unparsable_path_is_refused_before_the_filter(paths_envoy: MultiEnvoy, upstream: McpUpstream,
                                                      listener: str, path: bytes) -> None:
    marker = new_marker()
    port = paths_envoy.instance(listener).listener_port
    response = raw_request(port, [(MARKER_HEADER.encode(), marker.encode())], path=path)
    assert response.status in (400, 401), (response.status, response.body)
    assert upstream.seen(marker) == []


@pytest.mark.parametrize("listener", list(LISTENERS))
@pytest.mark.parametrize("path", PLAIN)
def test_plain_bypass_path_needs_no_token(paths_envoy: MultiEnvoy, upstream: McpUpstream,
                                          listener: str, path: str) -> None:
    marker = new_marker()
    response = _send(paths_envoy, listener, path, marker)
    assert response.status == 200, (response.status, response.body)
    (entry,) = upstream.seen(marker)
    assert entry["path"] == path.partition("?")[0]
    assert header_values(entry, "authorization") == []
