"""Demo: a real MCP client logs in through Envoy + mcp-auth-filter and calls tools as the user.

The seed scenario on one machine: two authorization servers like the two Okta ones (dev-as/,
on oidc-provider: the MCP AS issues the client's token for the MCP resource, the backend AS
exchanges it, RFC 8693, for a backend token), an MCP server from the official SDK whose tool
calls a backend API, and Envoy from envoy/okta-same-idp.yaml (ports moved). The official MCP
client SDK logs in by itself (OAuth: 401 -> metadata -> registration -> authorization code +
PKCE -> token), with a headless browser standing in for the user (the dev AS logs in alice
without a page). Then per-tool authorization (the file's `mcp` block): an allowed call, a tool
that needs a scope the token lacks (the filter's 403 insufficient_scope challenge; the SDK steps
up at the MCP AS and retries), and a tool the user may not call at all. Run with `make demo`
(after `make build`), or:
    .venv/bin/python tests/demo.py [--keep-running]
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
from mcp.shared.exceptions import MCPError

from harness import BackendApi, Envoy, McpUpstream, WasmMissing, free_port, require_wasm, resource_url
from harness.checks import bearer
from harness.dev_as import DevAsMissing, DevAuthorizationServer
from harness.exchange import okta_envoy_options, okta_plugin_config
from harness.mcp_upstream import header_values
from harness.net import port_accepts
from harness.oauth_login import OAuthLogin, new_login, oauth_mcp_session, structured
from harness.process import ProcessFailed

TIMEOUT = 20
STS_SECRET = secrets.token_urlsafe(16)  # the filter's client secret at the backend AS, via Envoy's environment


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


def claims(token: str, *names: str) -> dict[str, Any]:
    decoded = jwt.decode(token, options={"verify_signature": False})
    return {k: decoded[k] for k in names if k in decoded}


class Stack:
    dev_as: DevAuthorizationServer
    backend: BackendApi
    upstream: McpUpstream
    envoy: Envoy

    @property
    def mcp_url(self) -> str:
        return f"{self.envoy.url}/mcp"


def pick_port(preferred: int, fixed: bool) -> int:
    """The usual port (10000, 9000, ...) when asked for and free, so client configurations from
    docs/clients.md work as written; otherwise any free port."""
    return preferred if fixed and not port_accepts(preferred) else free_port()


def start_stack(stack: ExitStack, workdir: Path, fixed_ports: bool) -> Stack:
    s = Stack()
    envoy_port = pick_port(10000, fixed_ports)
    resource = resource_url(envoy_port)
    s.dev_as = stack.enter_context(DevAuthorizationServer(
        mcp_resources=[resource], sts_client_secret=STS_SECRET, log_path=workdir / "dev-as.log",
        mcp_port=pick_port(9000, fixed_ports), backend_port=pick_port(9100, fixed_ports)))
    s.backend = stack.enter_context(BackendApi(s.dev_as.backend))
    s.upstream = stack.enter_context(McpUpstream(log_path=workdir / "upstream.log", backend_url=s.backend.whoami_url))
    config = okta_plugin_config(envoy_port=envoy_port, idp_port=s.dev_as.mcp_port, sts_port=s.dev_as.backend_port)
    s.envoy = stack.enter_context(Envoy(
        config, workdir=workdir, upstream_port=s.upstream.port, idp_port=s.dev_as.mcp_port,
        listener_port=envoy_port, admin_port=pick_port(9901, fixed_ports),
        **okta_envoy_options(s.dev_as.backend_port, STS_SECRET)))
    return s


async def first_session(login: OAuthLogin, url: str) -> dict[str, Any]:
    async with oauth_mcp_session(login, url, timeout=TIMEOUT) as client:
        tools = await client.list_tools()
        whoami = await client.call_tool("whoami", {})
        answer = await client.call_tool("query_backend", {})
        return {"server": client.server_info.name if client.server_info else "?", "protocol": client.protocol_version,
                "tools": [t.name for t in tools.tools], "whoami": structured(whoami), "backend": structured(answer)}


async def refreshed_session(login: OAuthLogin, url: str) -> Any:
    async with oauth_mcp_session(login, url, timeout=TIMEOUT) as client:
        return structured(await client.call_tool("query_backend", {}))


async def per_tool_session(login: OAuthLogin, url: str) -> dict[str, Any]:
    """Protocol 2026-07-28 this time: every request names its tool in the body and Mcp-Name."""
    async with oauth_mcp_session(login, url, timeout=TIMEOUT, mode="auto") as client:
        result: dict[str, Any] = {"protocol": client.protocol_version,
                                  "tools before": [t.name for t in (await client.list_tools()).tools],
                                  "whoami": structured(await client.call_tool("whoami", {})),
                                  "scope before": login.storage.tokens.scope if login.storage.tokens else None}
        result["query_users"] = structured(await client.call_tool("query_users", {}))
        result["list_datasets"] = structured(await client.call_tool("list_datasets", {}))
        result["tools after"] = [t.name for t in (await client.list_tools()).tools]
        try:
            await client.call_tool("drop_table", {"table": "users"})
            result["drop_table"] = "allowed"
        except MCPError as e:
            result["drop_table"] = e
        return result


def walkthrough(s: Stack) -> OAuthLogin:
    envoy = s.envoy
    step("1. The MCP client logs in: official MCP SDK (OAuthClientProvider), nothing but the server URL")
    show("server URL", s.mcp_url)
    login = new_login(s.mcp_url)
    result = anyio.run(first_session, login, s.mcp_url)
    for hop in login.hops:
        print(f"   {hop.line()}")
    expect(login.hops[0].status == 401, "the first request was not challenged")

    step("2. The MCP session")
    show("initialize", f"server {result['server']!r}, protocol {result['protocol']}")
    show("tools/list", ", ".join(result["tools"]))
    show("tools/call whoami", result["whoami"])
    show("tools/call query_backend", result["backend"])
    expect(result["whoami"]["sub"] == "alice", "the MCP server did not get x-mcp-user-sub: alice")
    expect(result["backend"]["status"] == 200 and result["backend"]["body"]["user"] == "alice",
           "the backend did not serve alice")

    step("3. The token at each hop")
    token = login.access_token
    show("client -> Envoy (from the MCP AS)", claims(token, "iss", "aud", "sub", "scope", "client_id"))
    entries = [e for e in s.upstream.seen() if e["path"] == "/mcp"]
    upstream_tokens = [v.removeprefix("Bearer ") for e in entries for v in header_values(e, "authorization")]
    expect(bool(upstream_tokens), "the MCP server received no bearer token")
    show("Envoy -> MCP server -> backend (exchanged at the backend AS)",
         claims(upstream_tokens[-1], "iss", "aud", "sub", "scope", "client_id"))
    leaked = any(token in v for e in entries for _, v in e["headers"])
    show("client's token in any header the MCP server received", "yes" if leaked else "no")
    expect(not leaked, "the client's token reached the MCP server")
    direct = httpx.get(s.backend.whoami_url, headers=bearer(token), timeout=TIMEOUT)
    show("the backend, asked with the client's token directly",
         f"HTTP {direct.status_code} {direct.json().get('error_description')}")
    expect(direct.status_code == 401, "the backend accepted the client's own token")

    step("4. The backend's record")
    for call in s.backend.calls_by("alice"):
        show(f"{call.method} {call.path}", f"user {call.user}, audience {call.audience}, scopes {call.scopes}")

    step("5. An hour later: the SDK refreshes its token (refresh_token grant) and carries on")
    login.expire_access_token()
    before = len(login.hops)
    answer = anyio.run(refreshed_session, login, s.mcp_url)
    for hop in login.hops[before:]:
        print(f"   {hop.line()}")
    expect(answer["status"] == 200 and answer["body"]["user"] == "alice", "the refreshed session failed")
    expect(any("grant_type=refresh_token" in h.detail for h in login.hops[before:]), "no refresh happened")

    per_tool_authorization(s, login)

    step("7. The filter's counters (Envoy admin /stats?filter=mcp_auth; zeros left out)")
    for name, value in sorted(envoy.stats().items()):
        if name.startswith("mcp_auth.") and value:
            print(f"   {name}: {value}")
    audit = [a for a in envoy.audit_lines() if a.get("user") == "alice" and a.get("exchange") == "miss"]
    if audit:
        show("an audit line", json.dumps(audit[-1]))
    show("exchanges at the backend AS", f"{envoy.counter('mcp_auth.exchange.cache_miss')} (one per token and Envoy "
                                        "worker at most; cached until shortly before expiry)")
    return login


def per_tool_authorization(s: Stack, login: OAuthLogin) -> None:
    step("6. Per-tool authorization (the `mcp` block): allowed, step-up, denied")
    show("rules", "query_users, list_datasets need bigquery:read; drop_* the dba group and bigquery:write; "
                  "other tools mcp:tools:call only")
    before = len(login.hops)
    result = anyio.run(per_tool_session, login, s.mcp_url)
    for hop in login.hops[before:]:
        print(f"   {hop.line()}")
    show("protocol", result["protocol"])
    show("token scope at first", result["scope before"])
    show("tools/list (filtered for alice)", ", ".join(result["tools before"]))
    show("allowed: tools/call whoami (no rule: default allow)", result["whoami"])
    challenged = [h for h in login.hops[before:] if h.status == 403 and "insufficient_scope" in h.detail]
    expect(len(challenged) == 1, "query_users was not challenged for bigquery:read")
    show("step-up: tools/call query_users was answered", f"403 {challenged[0].detail.partition('  ')[2]}")
    show("the SDK re-authorized; token scope now", login.storage.tokens.scope if login.storage.tokens else "?")
    show("tools/call query_users, retried", result["query_users"])
    expect(result["query_users"]["rows"] and result["query_users"]["backend_token"]["sub"] == "alice",
           "query_users did not run for alice after the step-up")
    show("allowed: tools/call list_datasets (rule read, no new login)", result["list_datasets"]["datasets"])
    show("tools/list now", ", ".join(result["tools after"]))
    denied = result["drop_table"]
    expect(isinstance(denied, MCPError) and "drop_table" in str(denied), "drop_table was not denied")
    show("denied: tools/call drop_table (alice is not in the dba group)", f"{denied.code} {denied}")
    leaked = [e for e in s.upstream.seen() if e["path"] == "/mcp" and "drop_table" in header_values(e, "mcp-name")]
    show("drop_table requests that reached the MCP server", str(len(leaked)))
    expect(not leaked, "a denied call reached the MCP server")
    for line in s.envoy.audit_lines():
        if line.get("mcp_name") in ("query_users", "drop_table"):
            show("audit", json.dumps({k: line.get(k) for k in ("outcome", "status", "reason", "user", "mcp_method",
                                                             "mcp_name", "jsonrpc_id", "rule")}))


def wait_for_ctrl_c(s: Stack, login: OAuthLogin) -> None:
    step("The stack keeps running (Ctrl-C stops it)")
    show("MCP endpoint (via Envoy)", s.mcp_url)
    show("Protected Resource Metadata", f"{s.envoy.url}/.well-known/oauth-protected-resource/mcp")
    show("MCP AS (logs everyone in as alice)", f"{s.dev_as.mcp.issuer}/.well-known/oauth-authorization-server")
    show("backend AS (token exchange)", s.dev_as.backend.token_endpoint)
    show("backend API", s.backend.whoami_url)
    show("Envoy admin", f"{s.envoy.admin_url}/stats?filter=mcp_auth")
    show("logs", str(s.envoy.log_path.parent))
    show("VS Code (.vscode/mcp.json)", {"servers": {"mcp-auth-demo": {"type": "http", "url": s.mcp_url}}})
    show("Claude Code", f"claude mcp add --transport http mcp-auth-demo {s.mcp_url}")
    show("MCP Inspector", f"npx @modelcontextprotocol/inspector  (Streamable HTTP, URL {s.mcp_url})")
    show("token for alice (1 h)", login.access_token)
    show("try", f"curl -i -H \"authorization: Bearer $TOKEN\" {s.envoy.url}/echo")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the stack as cleanly as Ctrl-C
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description="mcp-auth-filter demo")
    parser.add_argument("--keep-running", action="store_true",
                        help="keep the stack up until Ctrl-C, on the usual ports when free (Envoy 10000)")
    args = parser.parse_args()

    try:
        require_wasm()
    except WasmMissing as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="mcp-auth-demo-"))
    try:
        with ExitStack() as stack:
            step("Starting the MCP AS and the backend AS (dev-as/, oidc-provider), a backend API, an MCP server "
                 "(official SDK) and Envoy (envoy/okta-same-idp.yaml)")
            s = start_stack(stack, workdir, fixed_ports=args.keep_running)
            show("Envoy", s.envoy.url)
            show("MCP AS", s.dev_as.mcp.issuer)
            show("backend AS", s.dev_as.backend.issuer)
            login = walkthrough(s)
            if args.keep_running:
                wait_for_ctrl_c(s, login)
            step("Stopping everything")
    except (ProcessFailed, DemoFailed, DevAsMissing, httpx.HTTPError, TimeoutError) as e:
        print(f"\ndemo failed: {e}\n(logs in {workdir})", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the SDK raises its own types (often in exception groups)
        print(f"\ndemo failed: {type(e).__name__}: {e}\n(logs in {workdir})", file=sys.stderr)
        return 1
    print("\ndemo ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
