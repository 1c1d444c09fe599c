"""Hostile POST bodies at the MCP endpoint: the filter must judge exactly what the MCP server would
execute, or refuse. Parser differentials (a duplicate `name` read as the first member by one
parser and the last by another, a `\\u`-escaped name that a naive matcher misses), bodies that
are not JSON-RPC, too large, too slow, never finished, compressed or of another media type,
batches mixing allowed and denied calls, and Mcp-Method / Mcp-Name / MCP-Protocol-Version
mirrors that disagree with the body (including the `=?base64?...?=` form).

For every refused body: the status and JSON-RPC code, the upstream never saw the request (its
/_test/seen marker), and the filter's VM never failed (every test). Envoy runs envoy/envoy.yaml
(authentication only) with the BigQuery `mcp` block, a body_timeout of 2 s and max_body_bytes of
256 KiB; the caller is an
analyst (mcp:tools:call bigquery:read, not in the dba group), so query_* is allowed, drop_* is
denied by the claim condition, and tools without a rule are allowed by default.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, free_port, resource_url, standard_plugin_config
from harness.checks import new_marker
from harness.mcp_policy import (
    BQ_READ,
    FORBIDDEN,
    HEADER_MISMATCH,
    MCP_CALL,
    MODERN_VERSION,
    PROTOCOL_VERSION_META,
    bigquery_mcp,
    jsonrpc_error,
    mirrors,
    post_headers,
    with_mcp,
)
from harness.raw_post import post_in_pieces

pytestmark = pytest.mark.usefixtures("vm_never_fails")

BODY_TIMEOUT_SECONDS = 2
# Below Envoy's default per_connection_buffer_limit_bytes (1 MiB), so that the filter, not Envoy,
# answers an over-limit body (see test_a_chunked_body_over_the_default_limit_is_refused).
MAX_BODY_BYTES = 256 * 1024
PARSE_ERROR, INVALID_REQUEST = -32700, -32600
META = f'{{"{PROTOCOL_VERSION_META}":"{MODERN_VERSION}","io.modelcontextprotocol/clientCapabilities":{{}}}}'


@pytest.fixture(scope="module")
def plugin_config(envoy_port: int, idp: IdentityProvider) -> dict[str, Any]:
    config = standard_plugin_config(envoy_port=envoy_port, idp_port=idp.port)
    mcp = bigquery_mcp(body_timeout=f"{BODY_TIMEOUT_SECONDS}s", max_body_bytes=MAX_BODY_BYTES,
                       reports_audience=None)
    # Batches are refused by default; this module judges them (see the default-config tests).
    return with_mcp(config, {**mcp, "allow_batches": True})


@pytest.fixture(scope="module")
def token(idp: IdentityProvider) -> str:
    return idp.mint(sub="hostile", scp=[MCP_CALL, BQ_READ], groups=["analysts"])


@pytest.fixture
def send(envoy: Envoy, token: str, upstream: McpUpstream) -> Callable[..., tuple[httpx.Response, bool]]:
    """POST a body to /mcp with the analyst's token; returns the answer and whether the MCP
    server saw the request."""

    def post(body: bytes, *, headers: dict[str, str] | None = None, path: str = "/mcp",
             header_list: list[tuple[str, str]] | None = None) -> tuple[httpx.Response, bool]:
        marker = new_marker()
        sent = [*{**post_headers(token, marker), **(headers or {})}.items(), *(header_list or [])]
        response = httpx.post(f"{envoy.url}{path}", content=body, headers=sent, timeout=15)
        return response, bool(upstream.seen(marker))

    return post


def call_text(name_member: str = '"name":"query_users"', *, method: str = "tools/call", extra: str = "",
              request_id: str = "1", meta: bool = True) -> str:
    """A tools/call body as text, so members can be duplicated or escaped exactly."""
    meta_member = f',"_meta":{META}' if meta else ""
    return (f'{{"jsonrpc":"2.0","id":{request_id},"method":"{method}",'
            f'"params":{{{name_member},"arguments":{{}}{meta_member}}}{extra}}}')


def assert_refused(response: httpx.Response, reached: bool, status: int, code: int) -> Any:
    """The answer is the JSON-RPC error `code` with `status`, and the server never saw it."""
    assert not reached, "a refused body reached the MCP server"
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    request_id, got, _ = jsonrpc_error(response.content)
    assert got == code, response.text
    return request_id


# ---- duplicate members, in every position -----------------------------------------------------

def escaped(member: str) -> str:
    """A member name with its first character written as a \\u escape ("name" -> "\\u006eame")."""
    return f"\\u{ord(member[0]):04x}{member[1:]}"


DUPLICATES = {
    # envelope members: which method / which id / which params the server reads
    "method": call_text(extra=',"method":"tools/list"'),
    "id": call_text(extra=',"id":2'),
    "jsonrpc": call_text(extra=',"jsonrpc":"2.0"'),
    "params": call_text(extra=',"params":{"name":"drop_table","arguments":{}}'),
    # the name itself, both orders: the allowed tool first or the denied one first
    "name, allowed first": call_text('"name":"query_users","name":"drop_table"'),
    "name, denied first": call_text('"name":"drop_table","name":"query_users"'),
    "uri": call_text('"uri":"file:///data/report.txt","uri":"file:///etc/passwd"', method="resources/read"),
    # deeper: arguments, _meta, and nested objects of the arguments
    "arguments": call_text('"name":"query_users","arguments":{"limit":1},"arguments":{"limit":2}'),
    "_meta": call_text(f'"name":"query_users","_meta":{META}'),
    "argument member": call_text('"name":"query_users","arguments":{"limit":1,"limit":2}').replace(
        ',"arguments":{}', "", 1),
    "nested member": call_text('"name":"query_users","arguments":{"a":{"b":{"c":1,"c":2}}}').replace(
        ',"arguments":{}', "", 1),
    "protocol version": call_text(
        f'"name":"query_users","_meta":{{"{PROTOCOL_VERSION_META}":"2025-11-25",'
        f'"{PROTOCOL_VERSION_META}":"{MODERN_VERSION}"}}', meta=False),
}
ESCAPED_DUPLICATES = {
    "name": call_text(f'"name":"query_users","{escaped("name")}":"drop_table"'),
    "name, escaped first": call_text(f'"{escaped("name")}":"drop_table","name":"query_users"'),
    "method": call_text(extra=f',"{escaped("method")}":"tools/list"'),
    "id": call_text(extra=f',"{escaped("id")}":2'),
    "params": call_text(extra=f',"{escaped("params")}":{{"name":"drop_table"}}'),
    "uri": call_text(f'"uri":"file:///data/report.txt","{escaped("uri")}":"file:///etc/passwd"',
                     method="resources/read"),
    "fully escaped name": call_text('"name":"query_users","\\u006e\\u0061\\u006d\\u0065":"drop_table"'),
}


@pytest.mark.parametrize("body", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_duplicate_members_are_refused(send: Callable[..., tuple[httpx.Response, bool]], body: str) -> None:
    response, reached = send(body.encode(), headers=mirrors("tools/call", "query_users"))
    assert_refused(response, reached, 400, PARSE_ERROR)


@pytest.mark.parametrize("body", ESCAPED_DUPLICATES.values(), ids=ESCAPED_DUPLICATES.keys())
def test_escaped_duplicate_members_are_refused(send: Callable[..., tuple[httpx.Response, bool]], body: str) -> None:
    response, reached = send(body.encode(), headers=mirrors("tools/call", "query_users"))
    assert_refused(response, reached, 400, PARSE_ERROR)


def test_duplicates_in_a_batch_element_are_refused(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    first = call_text(meta=False)
    second = call_text('"name":"query_users","name":"drop_table"', request_id="2", meta=False)
    response, reached = send(f"[{first},{second}]".encode())
    assert_refused(response, reached, 400, PARSE_ERROR)


# ---- escaped names are judged unescaped, as the server reads them -----------------------------

def test_an_escaped_allowed_name_is_allowed(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    response, reached = send(call_text('"name":"query\\u005fusers"').encode(),
                             headers=mirrors("tools/call", "query_users"))
    assert response.status_code == 200 and reached, response.text
    assert json.loads(response.content)["result"]["structuredContent"]["tool"] == "query_users"


@pytest.mark.parametrize("spelling", ["dr\\u006fp_table", "drop\\u005ftable", "\\u0064\\u0072\\u006f\\u0070_table"])
def test_an_escaped_denied_name_is_still_denied(send: Callable[..., tuple[httpx.Response, bool]],
                                                spelling: str) -> None:
    response, reached = send(call_text(f'"name":"{spelling}"', request_id="11").encode(),
                             headers=mirrors("tools/call", "drop_table"))
    assert assert_refused(response, reached, 403, FORBIDDEN) == 11
    assert jsonrpc_error(response.content)[2] == 'Forbidden: tools/call "drop_table" is not allowed for this caller'


def test_an_escaped_name_outside_every_glob_gets_the_default(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    """drop\\u002dtable is "drop-table": no rule's glob (drop_*) matches, so default_action
    (allow) decides, and the server is asked for a tool it does not have."""
    response, reached = send(call_text('"name":"drop\\u002dtable"').encode(),
                             headers=mirrors("tools/call", "drop-table"))
    assert reached and response.status_code == 200, response.text
    assert "drop-table" in response.text  # the server's "unknown tool" answer


def test_an_escaped_name_needing_a_scope_is_challenged(idp: IdentityProvider, envoy: Envoy,
                                                       upstream: McpUpstream) -> None:
    """list\\u005fdatasets is list_datasets, named exactly by the read rule: without bigquery:read
    the caller is asked to step up."""
    token = idp.mint(sub="hostile-no-read", scp=[MCP_CALL], groups=["analysts"])
    marker = new_marker()
    headers = {**post_headers(token, marker), **mirrors("tools/call", "list_datasets")}
    response = httpx.post(f"{envoy.url}/mcp", content=call_text('"name":"list\\u005fdatasets"').encode(),
                          headers=headers, timeout=15)
    assert_refused(response, bool(upstream.seen(marker)), 403, FORBIDDEN)
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_a_header_cannot_smuggle_the_name_the_body_hides(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    response, reached = send(call_text('"name":"dr\\u006fp_table"', request_id="12").encode(),
                             headers=mirrors("tools/call", "query_users"))
    assert assert_refused(response, reached, 400, HEADER_MISMATCH) == 12


# ---- not JSON, not UTF-8, not JSON-RPC -----------------------------------------------------------

NOT_JSON = {
    "invalid UTF-8 in the name": call_text().replace("query_users", "query_users\udcff").encode(
        "utf-8", "surrogateescape"),
    "overlong UTF-8": call_text().encode().replace(b"query_users", b"query\xc0\xdfusers"),
    "lone surrogate escape": call_text('"name":"query_users\\ud800"').encode(),
    "byte order mark": b"\xef\xbb\xbf" + call_text().encode(),
    "deep nesting": call_text('"name":"query_users","arguments":' + "[" * 5000 + "]" * 5000).replace(
        ',"arguments":{}', "", 1).encode(),
    "trailing bytes": (call_text() + call_text()).encode(),
    "truncated": call_text().encode()[:-1],
    "empty body": b"",
    "single quotes": call_text().replace('"', "'").encode(),
}
NOT_JSONRPC = {
    "no jsonrpc member": call_text().replace('"jsonrpc":"2.0",', "").encode(),
    "jsonrpc 1.0": call_text().replace('"2.0"', '"1.0"').encode(),
    "null id": call_text(request_id="null").encode(),
    "object id": call_text(request_id='{"a":1}').encode(),
    "positional params": b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["drop_table"]}',
    "name not a string": call_text('"name":["drop_table"]').encode(),
    "no name": call_text('"title":"query_users"').encode(),
    "a bare string": b'"tools/call"',
    "empty batch": b"[]",
    "batch with a non-message": f"[{call_text(meta=False)},42]".encode(),
}


@pytest.mark.parametrize("body", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_bodies_that_are_not_json_are_refused(send: Callable[..., tuple[httpx.Response, bool]], body: bytes) -> None:
    response, reached = send(body, headers=mirrors("tools/call", "query_users"))
    assert_refused(response, reached, 400, PARSE_ERROR)


@pytest.mark.parametrize("body", NOT_JSONRPC.values(), ids=NOT_JSONRPC.keys())
def test_bodies_that_are_not_json_rpc_are_refused(send: Callable[..., tuple[httpx.Response, bool]],
                                                  body: bytes) -> None:
    response, reached = send(body)
    assert_refused(response, reached, 400, INVALID_REQUEST)


def test_nesting_within_bounds_is_allowed(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    """The bound refuses attacks, not ordinary arguments: 20 levels pass."""
    nested = call_text('"name":"whoami","arguments":{"x":' + "[" * 20 + "]" * 20 + "}").replace(
        ',"arguments":{}', "", 1)
    response, reached = send(nested.encode(), headers=mirrors("tools/call", "whoami"))
    assert reached and response.status_code == 200, response.text


# ---- size, media type, encoding ------------------------------------------------------------------

def big_call(size: int) -> bytes:
    padding = "x" * size
    return call_text(f'"name":"query_users","arguments":{{"padding":"{padding}"}}').replace(
        ',"arguments":{}', "", 1).encode()


def test_a_body_over_the_limit_is_refused_from_its_length(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    response, reached = send(big_call(2 * 1024 * 1024), headers=mirrors("tools/call", "query_users"))
    assert_refused(response, reached, 413, INVALID_REQUEST)


def post_two_mebibytes_chunked(port: int, token: str, pause: float = 0.0) -> tuple[Any, str]:
    marker = new_marker()
    body = big_call(2 * 1024 * 1024)
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    answer = post_in_pieces(port, "/mcp", {**post_headers(token, marker), **mirrors("tools/call", "query_users")},
                            pieces, chunked=True, pause=pause)
    return answer, marker


def assert_too_large(answer: Any, *, by_the_filter: bool) -> None:
    """413 in every case. When the client sends faster than Envoy hands the body over, one read
    can carry Envoy past its own buffer limit, and Envoy's text/plain 413 goes out before the
    filter's (which Envoy sends only once the filter's callback has returned): closed either way."""
    assert answer.status == 413, (answer.status, answer.headers, answer.body[:300])
    if by_the_filter or answer.header("content-type") == ["application/json"]:
        assert answer.header("content-type") == ["application/json"]
        assert json.loads(answer.body)["error"]["code"] == INVALID_REQUEST


def test_a_chunked_body_over_the_limit_is_refused(envoy: Envoy, token: str, upstream: McpUpstream) -> None:
    """No Content-Length: the filter counts what it buffers, and answers as soon as it is over."""
    answer, marker = post_two_mebibytes_chunked(envoy.listener_port, token, pause=0.01)
    assert_too_large(answer, by_the_filter=True)
    assert not upstream.seen(marker)
    answer, marker = post_two_mebibytes_chunked(envoy.listener_port, token)
    assert_too_large(answer, by_the_filter=False)
    assert not upstream.seen(marker)


@pytest.fixture(scope="module")
def default_limit_envoy(make_envoy: Callable[..., Envoy], idp: IdentityProvider) -> Envoy:
    """The same stack with max_body_bytes at its default (512 KiB, half of Envoy's default
    per-connection buffer limit)."""
    port = free_port()
    config = with_mcp(standard_plugin_config(envoy_port=port, idp_port=idp.port), bigquery_mcp(reports_audience=None))
    assert "max_body_bytes" not in config["mcp"]
    return make_envoy(config, idp_port=idp.port, listener_port=port).start()


def test_batches_are_refused_by_default(default_limit_envoy: Envoy, idp: IdentityProvider,
                                        upstream: McpUpstream) -> None:
    """A batch would be one request for Envoy's rate limiters, however many calls it holds."""
    token = idp.mint(sub="batcher", aud=resource_url(default_limit_envoy.listener_port), scp=[MCP_CALL, BQ_READ])
    marker = new_marker()
    batch = f"[{call_text(meta=False)},{call_text(request_id='2', meta=False)}]".encode()
    answer = post_in_pieces(default_limit_envoy.listener_port, "/mcp", post_headers(token, marker), [batch])
    assert answer.status == 400, (answer.status, answer.body[:300])
    assert json.loads(answer.body)["error"]["code"] == INVALID_REQUEST
    assert not upstream.seen(marker)
    default_limit_envoy.wait_for_audit(lambda a: a.get("user") == "batcher" and a.get("reason") == "mcp_batch_refused")


def test_a_chunked_body_over_the_default_limit_is_refused(
        default_limit_envoy: Envoy, idp: IdentityProvider, upstream: McpUpstream) -> None:
    """Refused, never forwarded; by the filter's JSON-RPC error when the body arrives as a
    client's body does, in pieces (the default limit is half of Envoy's own buffer limit)."""
    token = idp.mint(sub="hostile", aud=resource_url(default_limit_envoy.listener_port), scp=[MCP_CALL, BQ_READ])
    for pause in (0.01, 0.01, 0.0, 0.0):
        answer, marker = post_two_mebibytes_chunked(default_limit_envoy.listener_port, token, pause=pause)
        assert_too_large(answer, by_the_filter=pause > 0)
        assert not upstream.seen(marker), "an over-limit body reached the MCP server"


@pytest.mark.parametrize("headers", [
    {"content-type": "text/plain"},
    {"content-type": "application/jsonx"},
    {"content-type": "application/x-www-form-urlencoded"},
    {"content-type": "multipart/form-data; boundary=x"},
    {"content-encoding": "identity, gzip"},
    {"content-encoding": "br"},
])
def test_other_media_types_and_encodings_are_refused(send: Callable[..., tuple[httpx.Response, bool]],
                                                     headers: dict[str, str]) -> None:
    response, reached = send(call_text().encode(), headers={**mirrors("tools/call", "query_users"), **headers})
    assert_refused(response, reached, 415, INVALID_REQUEST)


def test_a_gzip_body_is_refused(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    """The filter cannot read it, so it cannot judge it: the gzip of a denied call."""
    body = gzip.compress(call_text('"name":"drop_table"').encode())
    response, reached = send(body, headers={**mirrors("tools/call", "query_users"), "content-encoding": "gzip"})
    assert_refused(response, reached, 415, INVALID_REQUEST)


def test_a_body_without_content_type_is_refused(envoy: Envoy, token: str, upstream: McpUpstream) -> None:
    marker = new_marker()
    headers = {"authorization": f"Bearer {token}", "x-test-marker": marker, **mirrors("tools/call", "query_users")}
    answer = post_in_pieces(envoy.listener_port, "/mcp", headers, [call_text().encode()])
    assert answer.status == 415 and not upstream.seen(marker)


def test_json_with_parameters_and_identity_encoding_is_accepted(
        send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    response, reached = send(call_text().encode(), headers={
        **mirrors("tools/call", "query_users"), "content-type": "Application/JSON; charset=utf-8",
        "content-encoding": "identity"})
    assert reached and response.status_code == 200, response.text


# ---- slow, split and unfinished bodies ----------------------------------------------------------

@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_in_many_small_slow_pieces_is_judged_whole(envoy: Envoy, token: str, upstream: McpUpstream,
                                                          chunked: bool) -> None:
    """Three bytes at a time, the tool name split across pieces: the denied tool is denied and
    the allowed one allowed, each only once the body is complete."""
    for name, status in (("drop_table", 403), ("query_users", 200)):
        marker = new_marker()
        body = call_text(f'"name":"{name}"').encode()
        pieces = [body[i:i + 3] for i in range(0, len(body), 3)]
        answer = post_in_pieces(envoy.listener_port, "/mcp", {**post_headers(token, marker),
                                **mirrors("tools/call", name)}, pieces, pause=0.005, chunked=chunked)
        assert answer.status == status, answer.body
        assert bool(upstream.seen(marker)) == (status == 200)
        assert answer.seconds >= len(pieces) * 0.005


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_that_never_ends_is_refused_after_the_body_timeout(envoy: Envoy, token: str, upstream: McpUpstream,
                                                                  chunked: bool) -> None:
    marker = new_marker()
    body = call_text().encode()
    before = envoy.counter("mcp_auth.mcp.body_refused")
    answer = post_in_pieces(envoy.listener_port, "/mcp", {**post_headers(token, marker),
                            **mirrors("tools/call", "query_users")}, [body[:40]], chunked=chunked, finish=False,
                            declared_length=len(body))
    assert answer.status == 408, answer.body
    assert json.loads(answer.body)["error"]["code"] == INVALID_REQUEST
    assert BODY_TIMEOUT_SECONDS - 0.2 <= answer.seconds < BODY_TIMEOUT_SECONDS + 4, answer.seconds
    assert not upstream.seen(marker)
    envoy.wait_for_counter("mcp_auth.mcp.body_refused", before + 1)


def test_an_unfinished_body_without_a_token_is_challenged_at_once(envoy: Envoy, upstream: McpUpstream) -> None:
    """Authentication comes first: no body is awaited for a caller without a token."""
    marker = new_marker()
    answer = post_in_pieces(envoy.listener_port, "/mcp", {"content-type": "application/json",
                            "x-test-marker": marker}, [b'{"jsonrpc"'], finish=False, declared_length=500)
    assert answer.status == 401 and answer.seconds < BODY_TIMEOUT_SECONDS
    assert not upstream.seen(marker)


# ---- batches -------------------------------------------------------------------------------------

def test_a_batch_mixing_allowed_and_denied_calls_is_refused(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    batch = [call_text(meta=False), call_text('"name":"drop_table"', request_id="2", meta=False)]
    response, reached = send(f"[{','.join(batch)}]".encode())
    assert_refused(response, reached, 403, FORBIDDEN)
    request_id, _, message = jsonrpc_error(response.content)
    assert request_id == 2, "the id of the denied element"
    assert message == 'Forbidden: tools/call "drop_table" is not allowed for this caller'


def test_a_batch_with_a_denied_resource_is_refused(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    read = '{"jsonrpc":"2.0","id":"r","method":"resources/read","params":{"uri":"file:///etc/passwd"}}'
    response, reached = send(f"[{call_text(meta=False)},{read}]".encode())
    assert_refused(response, reached, 403, FORBIDDEN)
    assert jsonrpc_error(response.content)[0] == "r"


def test_a_batch_of_allowed_calls_goes_through(send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    batch = [call_text(meta=False), call_text('"name":"list_datasets"', request_id="2", meta=False),
             '{"jsonrpc":"2.0","method":"notifications/initialized"}']
    response, reached = send(f"[{','.join(batch)}]".encode())
    assert reached, (response.status_code, response.text)


@pytest.mark.parametrize(("label", "headers", "meta"), [
    ("mirrors on a batch", mirrors("tools/call", "query_users"), False),
    ("a 2026-07-28 element", {}, True),
])
def test_batches_cannot_carry_2026_requests(send: Callable[..., tuple[httpx.Response, bool]], label: str,
                                            headers: dict[str, str], meta: bool) -> None:
    """2026-07-28 has no batches: a mirror cannot describe several messages."""
    batch = [call_text(meta=meta), call_text('"name":"list_datasets"', request_id="2", meta=meta)]
    response, reached = send(f"[{','.join(batch)}]".encode(), headers=headers)
    assert_refused(response, reached, 400, HEADER_MISMATCH)


# ---- mirrors that disagree with the body ----------------------------------------------------------

def b64(value: str) -> str:
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


MODERN = {"mcp-protocol-version": MODERN_VERSION}
INVALID_UTF8_B64 = "=?base64?" + base64.b64encode(b"query_users\xff").decode() + "?="
MISMATCHES: dict[str, tuple[str, dict[str, str]]] = {
    "method": (call_text(), {**MODERN, "mcp-method": "tools/list", "mcp-name": "query_users"}),
    "name": (call_text('"name":"drop_table"'), {**MODERN, "mcp-method": "tools/call", "mcp-name": "query_users"}),
    "name in base64": (call_text('"name":"drop_table"'),
                       {**MODERN, "mcp-method": "tools/call", "mcp-name": b64("query_users")}),
    "base64 of another non-ASCII name": (call_text('"name":"grüße"'),
                                         {**MODERN, "mcp-method": "tools/call", "mcp-name": b64("grüsse")}),
    "non-canonical base64": (call_text('"name":"grüße"'),
                             {**MODERN, "mcp-method": "tools/call", "mcp-name": "=?base64?Z3LDvMOfZQ?="}),
    "base64 of invalid UTF-8": (call_text(), {**MODERN, "mcp-method": "tools/call", "mcp-name": INVALID_UTF8_B64}),
    "protocol version": (call_text(), {"mcp-protocol-version": "2025-11-25", "mcp-method": "tools/call",
                                       "mcp-name": "query_users"}),
    "missing Mcp-Name": (call_text(), {**MODERN, "mcp-method": "tools/call"}),
    "missing Mcp-Method": (call_text(), {**MODERN, "mcp-name": "query_users"}),
    "missing MCP-Protocol-Version": (call_text(), {"mcp-method": "tools/call", "mcp-name": "query_users"}),
    "all mirrors missing": (call_text(), {}),
    "Mcp-Name on a method without a name": (
        '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":' + META + "}}",
        {**MODERN, "mcp-method": "tools/list", "mcp-name": "query_users"}),
    "a 2026 header on a legacy body": (call_text(meta=False), {**MODERN, "mcp-method": "tools/call",
                                                              "mcp-name": "query_users"}),
    "uri of resources/read": (
        '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd","_meta":'
        + META + "}}", {**MODERN, "mcp-method": "resources/read", "mcp-name": "file:///data/report.txt"}),
}


@pytest.mark.parametrize(("body", "headers"), MISMATCHES.values(), ids=MISMATCHES.keys())
def test_mirror_mismatches_are_refused(envoy: Envoy, send: Callable[..., tuple[httpx.Response, bool]], body: str,
                                       headers: dict[str, str]) -> None:
    before = envoy.counter("mcp_auth.mcp.header_mismatch")
    response, reached = send(body.encode(), headers=headers)
    assert assert_refused(response, reached, 400, HEADER_MISMATCH) == 1
    envoy.wait_for_counter("mcp_auth.mcp.header_mismatch", before + 1)


@pytest.mark.parametrize("name", ["mcp-name", "mcp-method", "mcp-protocol-version"])
def test_a_repeated_mirror_is_refused(send: Callable[..., tuple[httpx.Response, bool]], name: str) -> None:
    headers = mirrors("tools/call", "query_users")
    value = headers.pop(name)
    repeated = [(name, value), (name, value)]  # even the same value twice: which one is meant?
    response, reached = send(call_text().encode(), headers=headers, header_list=repeated)
    assert_refused(response, reached, 400, HEADER_MISMATCH)


@pytest.mark.parametrize(("body_name", "header"), [
    ("grüße", b64("grüße")),  # what the SDKs send for a non-ASCII name
    ("query_users", b64("query_users")),  # the sentinel form of a plain name decodes to it too
])
def test_matching_base64_mirrors_are_accepted(send: Callable[..., tuple[httpx.Response, bool]], body_name: str,
                                              header: str) -> None:
    response, reached = send(call_text(f'"name":"{body_name}"').encode(),
                             headers={**MODERN, "mcp-method": "tools/call", "mcp-name": header})
    assert reached, (response.status_code, response.text)
    assert response.status_code == 200


def test_refusals_are_counted(envoy: Envoy, send: Callable[..., tuple[httpx.Response, bool]]) -> None:
    before = envoy.stats()
    send(b"{not json", headers=mirrors("tools/call", "query_users"))
    send(call_text().encode(), headers={"content-type": "text/plain"})
    send(call_text('"name":"drop_table"').encode(), headers=mirrors("tools/call", "drop_table"))
    for name, delta in (("mcp_auth.mcp.body_refused", 2), ("mcp_auth.mcp.denied.admins-only", 1),
                        ("mcp_auth.denied.mcp_body_not_json", 1), ("mcp_auth.denied.mcp_unsupported_media", 1),
                        ("mcp_auth.denied.mcp_forbidden", 1)):
        envoy.wait_for_counter(name, before.get(name, 0) + delta)
