"""Non-UTF-8 bytes in headers, from the client or from the IdP/STS, must not take the filter down.

Envoy passes header values with bytes 0x80-0xFF through (HTTP allows obs-text). proxy-wasm
0.2.5 turns header values into `String` with `String::from_utf8(..).unwrap()` (hostcalls.rs
get_map / get_map_value), so such a value panics the VM: `get_http_request_headers()` for
a client's request, `get_map_value(HttpCallResponseHeaders, "cache-control")` for a JWKS or STS
answer. A dead VM answers 503 to everything on its worker until Envoy restarts, and requests
parked on a callout whose reply panicked are never answered.

The filter reads header values as bytes (get_http_request_headers_bytes, get_map_value_bytes)
and decodes them fallibly; these tests are the regression tests for that defect, found here.
Each test gets its own Envoy, since a failing case would kill it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness import Envoy, McpUpstream, SecurityTokenService, free_port, resource_url, standard_plugin_config
from harness.checks import bearer, new_marker
from harness.exchange import okta_envoy_options, okta_plugin_config
from harness.faults import RawAnswer, ScriptedIdp, raw_request, wasm_failures
from harness.mcp_upstream import MARKER_HEADER
from harness.sts_fault import StsFault

CLIENT_TIMEOUT = 8  # the bound for "never hangs"

pytestmark = pytest.mark.usefixtures("vm_never_fails")

@pytest.fixture
def stack(make_envoy: Callable[..., Envoy]) -> Iterator[Any]:
    made: list[Any] = []

    def build(*, exchange: bool = False, idp_raw: RawAnswer | None = None) -> tuple[ScriptedIdp, Any, Envoy]:
        port = free_port()
        idp = ScriptedIdp(audience=resource_url(port)).start()
        made.append(idp)
        idp.raw = idp_raw
        sts = None
        if exchange:
            sts = SecurityTokenService(idp, subject_audiences=[resource_url(port)]).start()
            made.append(sts)
            config = okta_plugin_config(envoy_port=port, idp_port=idp.port, sts_port=sts.port)
            envoy = make_envoy(config, idp_port=idp.port, listener_port=port,
                               **okta_envoy_options(sts.port, "mcp-filter-secret"))
        else:
            config = standard_plugin_config(envoy_port=port, idp_port=idp.port)
            envoy = make_envoy(config, idp_port=idp.port, listener_port=port)
        return idp, sts, envoy.start()

    yield build
    for server in made:
        server.stop()


def _still_serving(envoy: Envoy, idp: ScriptedIdp) -> None:
    """Every worker answers a good token (new connections), and the VM never failed."""
    with httpx.Client(base_url=envoy.url, timeout=CLIENT_TIMEOUT,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        statuses = [client.get("/echo", headers=bearer(idp.mint())).status_code for _ in range(6)]
    failures = wasm_failures(envoy.log_text())
    assert not failures, "the VM failed:\n" + "\n".join(failures[:4])
    assert statuses == [200] * 6, statuses


def test_non_utf8_authorization_header(stack: Any, upstream: McpUpstream) -> None:
    idp, _, envoy = stack()
    marker = new_marker()
    token = idp.mint().encode()
    response = raw_request(envoy.listener_port, [(b"authorization", b"Bearer " + token + b"\xff"),
                                                 (MARKER_HEADER.encode(), marker.encode())], timeout=CLIENT_TIMEOUT)
    assert response.status in (400, 401), response.status
    assert upstream.seen(marker) == []
    _still_serving(envoy, idp)


def test_non_utf8_byte_in_any_other_request_header(stack: Any, upstream: McpUpstream) -> None:
    idp, _, envoy = stack()
    response = raw_request(envoy.listener_port, [(b"authorization", b"Bearer " + idp.mint().encode()),
                                                 (b"x-client-note", b"caf\xe9")], timeout=CLIENT_TIMEOUT)
    assert response.status in (200, 400), response.status
    _still_serving(envoy, idp)


def test_non_utf8_cache_control_on_the_jwks_answer(stack: Any) -> None:
    idp, _, envoy = stack()
    idp.raw = RawAnswer(200, idp.jwks_json().encode(), {"content-type": "application/json",
                                                         "cache-control": "max-age=300\xff"})
    # The request waits for the first keys: it must be answered (200 with the keys, or 503),
    # never left hanging.
    response = httpx.get(f"{envoy.url}/echo", headers=bearer(idp.mint()), timeout=CLIENT_TIMEOUT)
    assert response.status_code in (200, 503), response.text
    idp.raw = None
    _still_serving(envoy, idp)


def test_non_utf8_cache_control_on_the_sts_answer(stack: Any, upstream: McpUpstream) -> None:
    idp, sts, envoy = stack(exchange=True)
    sts.set_fault(StsFault(headers={"cache-control": "no-store\xff"}))  # a good answer, one odd header byte
    response = httpx.get(f"{envoy.url}/echo", headers=bearer(idp.mint(sub="sts-odd-header")),
                         timeout=CLIENT_TIMEOUT)
    assert response.status_code in (200, 502), response.text
    sts.clear_fault()
    _still_serving(envoy, idp)


def test_valid_utf8_in_headers_is_fine(stack: Any, upstream: McpUpstream) -> None:
    """The control case: non-ASCII but valid UTF-8 bytes do not disturb the filter."""
    idp, _, envoy = stack()
    marker = new_marker()
    response = raw_request(envoy.listener_port, [(b"authorization", b"Bearer " + idp.mint().encode()),
                                                 (b"x-client-note", "café ☕".encode()),
                                                 (MARKER_HEADER.encode(), marker.encode())], timeout=CLIENT_TIMEOUT)
    assert response.status == 200, response.body
    bad = raw_request(envoy.listener_port, [(b"authorization", "Bearer tøken".encode()),
                                            (MARKER_HEADER.encode(), b"x" + marker.encode())], timeout=CLIENT_TIMEOUT)
    assert bad.status == 401 and bad.json()["error"] == "invalid_request"
    _still_serving(envoy, idp)

