"""Demo: an MCP client talks to an MCP server through Envoy + mcp-auth-filter.

Starts the test IdP, a real MCP server and Envoy (envoy/envoy.yaml, moved to free ports), then
walks through what a client sees. Run with `make demo` (after `make build`), or:
    .venv/bin/python tests/demo.py [--keep-running]
"""

from __future__ import annotations

import argparse
import json
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
    Envoy,
    EnvoyFailed,
    IdentityProvider,
    McpUpstream,
    WasmMissing,
    example_plugin_config,
    free_port,
    require_wasm,
    resource_url,
)
from harness.checks import bearer, new_marker, parse_challenge
from harness.mcp_client import mcp_session
from harness.mcp_upstream import header_values

TIMEOUT = 10


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


def start_stack(stack: ExitStack, workdir: Path) -> tuple[IdentityProvider, McpUpstream, Envoy]:
    envoy_port = free_port()
    # Tokens live an hour, so one from the demo stays usable with --keep-running.
    idp = stack.enter_context(IdentityProvider(audience=resource_url(envoy_port), token_ttl=3600))
    upstream = stack.enter_context(McpUpstream(log_path=workdir / "upstream.log"))
    config = example_plugin_config(envoy_port=envoy_port, idp_port=idp.port)
    envoy = Envoy(config, workdir=workdir, upstream_port=upstream.port, idp_port=idp.port,
                  listener_port=envoy_port)
    stack.enter_context(envoy)
    return idp, upstream, envoy


def walkthrough(idp: IdentityProvider, upstream: McpUpstream, envoy: Envoy) -> str:
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


def wait_for_ctrl_c(idp: IdentityProvider, upstream: McpUpstream, envoy: Envoy, token: str) -> None:
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
            step("Starting IdP, MCP server and Envoy (envoy/envoy.yaml on free ports)")
            idp, upstream, envoy = start_stack(stack, workdir)
            show("Envoy", envoy.url)
            token = walkthrough(idp, upstream, envoy)
            if args.keep_running:
                wait_for_ctrl_c(idp, upstream, envoy, token)
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
