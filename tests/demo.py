"""Demo: an MCP client talks to an MCP server through Envoy + mcp-auth-filter.

Part 1 starts the test IdP, a real MCP server and Envoy (envoy/envoy.yaml, moved to free ports),
then walks through what a client sees. Part 2 adds token exchange (RFC 8693): a second Envoy from
envoy/okta-same-idp.yaml trades the client's token at a test STS for a backend token, which the
MCP server's tool uses to call a backend API as the user. Run with `make demo` (after
`make build`), or:
    .venv/bin/python tests/demo.py [--keep-running]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt

from harness import (
    BackendApi,
    Envoy,
    EnvoyFailed,
    IdentityProvider,
    McpUpstream,
    SecurityTokenService,
    WasmMissing,
    example_plugin_config,
    free_port,
    require_wasm,
    resource_url,
)
from harness.checks import bearer, new_marker, parse_challenge
from harness.exchange import okta_envoy_options, okta_plugin_config
from harness.mcp_client import mcp_session
from harness.mcp_upstream import header_values
from harness.sts import decode_issued

TIMEOUT = 10
STS_SECRET = secrets.token_urlsafe(16)  # the filter's client secret at the STS, via Envoy's environment


class DemoFailed(Exception):
    pass


def step(title: str) -> None:
    print(f"\n== {title}")


def show(label: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value, indent=2)
    print(f"   {label}: " + text.replace("\n", "\n   "))


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


class Stack:
    """Everything the demo runs: IdP, MCP server, and two Envoys (with and without exchange)."""

    idp: IdentityProvider
    upstream: McpUpstream
    envoy: Envoy  # envoy/envoy.yaml
    sts: SecurityTokenService
    backend: BackendApi
    exchange_envoy: Envoy  # envoy/okta-same-idp.yaml


def start_stack(stack: ExitStack, workdir: Path) -> Stack:
    s = Stack()
    envoy_port, exchange_port = free_port(), free_port()
    # Tokens live an hour, so one from the demo stays usable with --keep-running.
    s.idp = stack.enter_context(IdentityProvider(audience=resource_url(envoy_port), token_ttl=3600))
    # The STS trusts the IdP's tokens for the second Envoy's MCP resource; the backend trusts the STS.
    s.sts = stack.enter_context(SecurityTokenService(s.idp, subject_audiences=[resource_url(exchange_port)],
                                                     clients={"mcp-filter": STS_SECRET}))
    s.backend = stack.enter_context(BackendApi(s.sts))
    s.upstream = stack.enter_context(McpUpstream(log_path=workdir / "upstream.log", backend_url=s.backend.whoami_url))
    config = example_plugin_config(envoy_port=envoy_port, idp_port=s.idp.port)
    s.envoy = stack.enter_context(Envoy(config, workdir=workdir, upstream_port=s.upstream.port,
                                        idp_port=s.idp.port, listener_port=envoy_port))
    exchange_config = okta_plugin_config(envoy_port=exchange_port, idp_port=s.idp.port, sts_port=s.sts.port)
    s.exchange_envoy = stack.enter_context(Envoy(
        exchange_config, workdir=workdir / "okta-same-idp", upstream_port=s.upstream.port, idp_port=s.idp.port,
        listener_port=exchange_port, **okta_envoy_options(s.sts.port, STS_SECRET)))
    return s


def walkthrough(s: Stack) -> str:
    upstream, envoy = s.upstream, s.envoy
    mcp_url = f"{envoy.url}/mcp"

    step("1. MCP request without a token")
    response = httpx.post(mcp_url, timeout=TIMEOUT, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    show("status", str(response.status_code))
    show("www-authenticate", response.headers.get("www-authenticate", "(none)"))
    show("body", response.text)
    expect(response.status_code == 401, f"expected 401 without a token, got {response.status_code}")
    _, challenge = parse_challenge(response.headers["www-authenticate"])

    step("2. Protected Resource Metadata, from the challenge's resource_metadata URL")
    show("GET", challenge["resource_metadata"])
    metadata = httpx.get(challenge["resource_metadata"], timeout=TIMEOUT)
    expect(metadata.status_code == 200, f"metadata: HTTP {metadata.status_code}")
    show("document", metadata.json())

    step("3. Token from the IdP (password grant, user alice)")
    token_url = f"{metadata.json()['authorization_servers'][0]}/token"
    grant = httpx.post(token_url, timeout=TIMEOUT, data={
        "grant_type": "password", "username": "alice", "password": "alice-password", "client_id": "demo-client"})
    expect(grant.status_code == 200, f"token endpoint: HTTP {grant.status_code} {grant.text}")
    token = grant.json()["access_token"]
    show("POST", token_url)
    show("access_token", f"{token[:24]}... ({len(token)} chars)")
    show("claims", jwt.decode(token, options={"verify_signature": False}))

    step("4. MCP session through Envoy with the official MCP client")
    marker = new_marker()
    result = anyio.run(mcp_calls, mcp_url, bearer(token, marker))
    show("initialize", f"server {result['server']!r}, protocol {result['protocol']}")
    show("tools/list", ", ".join(result["tools"]))
    show("tools/call whoami", result["whoami"])
    expect(result["whoami"]["sub"] == "alice", "upstream did not receive x-mcp-user-sub: alice")
    expect(result["whoami"]["authorization_present"] is False, "upstream received the Authorization header")

    step("5. What the MCP server received (its own record, not through Envoy)")
    seen = upstream.seen(marker)
    expect(bool(seen), "the upstream recorded no request from the session")
    leaked = sum(1 for e in seen if header_values(e, "authorization"))
    subs = sorted({v for e in seen for v in header_values(e, "x-mcp-user-sub")})
    show("requests", str(len(seen)))
    show("with an Authorization header", str(leaked))
    show("x-mcp-user-sub values", ", ".join(subs))
    expect(leaked == 0 and subs == ["alice"], "upstream headers are not what the filter promises")

    step("6. The filter's counters (Envoy admin /stats?filter=mcp_auth; zeros left out)")
    for name, value in sorted(envoy.stats().items()):
        if name.startswith("mcp_auth.") and value:
            print(f"   {name}: {value}")
    audit = [a for a in envoy.audit_lines() if a.get("user") == "alice"]
    if audit:
        show("an audit line", json.dumps(audit[-1]))
    return token


async def mcp_calls(url: str, headers: dict[str, str]) -> dict[str, Any]:
    async with mcp_session(url, headers, timeout=TIMEOUT) as client:
        tools = await client.list_tools()
        whoami = await client.call_tool("whoami", {})
        return {
            "server": client.server_info.name if client.server_info else "?",
            "protocol": client.protocol_version,
            "tools": [t.name for t in tools.tools],
            "whoami": whoami.structured_content,
        }


def exchange_walkthrough(s: Stack) -> str:
    idp, upstream, sts, backend, envoy = s.idp, s.upstream, s.sts, s.backend, s.exchange_envoy
    mcp_url = f"{envoy.url}/mcp"

    step("7. Token exchange: Envoy from envoy/okta-same-idp.yaml, a test STS and a backend API")
    show("Envoy", f"{envoy.url}  (token_exchange: audience \"backend\", scope backend-api:read)")
    show("STS", f"{sts.token_endpoint}  (RFC 8693; the filter authenticates as mcp-filter)")
    show("backend API", f"{backend.whoami_url}  (accepts only STS tokens with aud \"backend\")")

    step("8. alice's token for this MCP server (password grant with resource=<MCP URL>)")
    grant = httpx.post(idp.token_endpoint, timeout=TIMEOUT, data={
        "grant_type": "password", "username": "alice", "password": "alice-password", "client_id": "demo-client",
        "resource": mcp_url})
    expect(grant.status_code == 200, f"token endpoint: HTTP {grant.status_code} {grant.text}")
    token = grant.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    show("client's token", f"iss {claims['iss']}, aud {claims['aud']}, scp {claims['scp']}")
    direct = httpx.get(backend.whoami_url, headers=bearer(token), timeout=TIMEOUT)
    show("the backend, asked with it directly", f"HTTP {direct.status_code} {direct.json().get('error_description')}")
    expect(direct.status_code == 401, "the backend accepted the client's own token")

    step("9. MCP tools/call query_backend through Envoy (the MCP server calls the backend)")
    marker = new_marker()
    answer = anyio.run(query_backend, mcp_url, bearer(token, marker))
    show("tool result", answer)
    expect(answer.get("status") == 200 and answer["body"]["user"] == "alice", "the backend did not see alice")

    step("10. What the MCP server received (its /_test/seen record): the backend token, not alice's")
    entries = upstream.seen(marker)
    seen = [v for e in entries for v in header_values(e, "authorization")]
    expect(bool(seen) and all(v.startswith("Bearer ") for v in seen), "upstream got no Bearer token")
    upstream_token = seen[-1].removeprefix("Bearer ")
    expect(not any(token in v for e in entries for _, v in e["headers"]), "the client's token reached the MCP server")
    received = decode_issued(sts, upstream_token)  # verified with the STS's key
    show("Authorization", f"Bearer {upstream_token[:24]}... ({len(upstream_token)} chars)")
    show("its claims", {k: received[k] for k in ("iss", "aud", "sub", "scp", "client_id")})
    show("client's token in any upstream header", "no")

    step("11. The backend's record")
    for call in backend.calls_by("alice"):
        show(f"{call.method} {call.path}", f"user {call.user}, audience {call.audience}, scopes {call.scopes}")

    step("12. The exchange cache: 10 more requests with alice's token on one connection")
    with httpx.Client(base_url=envoy.url, timeout=TIMEOUT) as client:
        statuses = [client.get("/echo", headers=bearer(token)).status_code for _ in range(10)]
    expect(statuses == [200] * 10, f"statuses {statuses}")
    requests = len(upstream.seen(marker)) + 10
    calls = len(sts.calls_with_subject_token(token))
    show("requests with alice's token", str(requests))
    show("STS calls for them", f"{calls} (one per Envoy worker at most; then cached until shortly before expiry)")
    expect(calls <= 2, f"{calls} STS calls: the exchange cache did not work")
    for name, value in sorted(envoy.stats().items()):
        if name.startswith("mcp_auth.exchange.") and value:
            print(f"   {name}: {value}")
    audit = [a for a in envoy.audit_lines() if a.get("user") == "alice" and a.get("exchange") == "miss"]
    if audit:
        show("an audit line", json.dumps(audit[-1]))
    return token


async def query_backend(url: str, headers: dict[str, str]) -> Any:
    async with mcp_session(url, headers, timeout=TIMEOUT) as client:
        return (await client.call_tool("query_backend", {})).structured_content


def wait_for_ctrl_c(s: Stack, token: str, exchange_token: str) -> None:
    idp, upstream, envoy = s.idp, s.upstream, s.envoy
    step("Stack is running (Ctrl-C stops it)")
    show("MCP endpoint (via Envoy)", f"{envoy.url}/mcp")
    show("Protected Resource Metadata", f"{envoy.url}/.well-known/oauth-protected-resource/mcp")
    show("IdP", f"{idp.issuer}  (token endpoint {idp.token_endpoint}; alice / alice-password)")
    show("MCP server (direct)", f"{upstream.url}/mcp  (seen headers: {upstream.url}/_test/seen)")
    show("Envoy admin", f"{envoy.admin_url}/stats?filter=mcp_auth")
    show("Envoy log", str(envoy.log_path))
    show("token for alice", token)
    show("try", f"curl -i -H \"authorization: Bearer $TOKEN\" {envoy.url}/echo   (the upstream echoes "
                "what it received)")
    show("with token exchange (via Envoy)", f"{s.exchange_envoy.url}/mcp  (admin {s.exchange_envoy.admin_url})")
    show("STS / backend API", f"{s.sts.token_endpoint} / {s.backend.whoami_url}")
    show("token for alice there", exchange_token)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print()


def main() -> int:
    parser = argparse.ArgumentParser(description="mcp-auth-filter demo")
    parser.add_argument("--keep-running", action="store_true", help="keep the stack up until Ctrl-C")
    args = parser.parse_args()

    try:
        require_wasm()
    except WasmMissing as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="mcp-auth-demo-"))
    try:
        with ExitStack() as stack:
            step("Starting IdP, STS, backend API, MCP server and two Envoys (envoy/envoy.yaml and "
                 "envoy/okta-same-idp.yaml on free ports)")
            s = start_stack(stack, workdir)
            show("Envoy", s.envoy.url)
            token = walkthrough(s)
            exchange_token = exchange_walkthrough(s)
            if args.keep_running:
                wait_for_ctrl_c(s, token, exchange_token)
            step("Stopping everything")
    except (EnvoyFailed, DemoFailed, httpx.HTTPError, TimeoutError) as e:
        print(f"\ndemo failed: {e}\n(logs in {workdir})", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the SDK raises its own types (often in exception groups)
        print(f"\ndemo failed: {type(e).__name__}: {e}\n(logs in {workdir})", file=sys.stderr)
        return 1
    print("\ndemo ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
