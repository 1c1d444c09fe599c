"""Two MCP servers behind one Envoy, told apart by path: envoy/multi-server.yaml as shipped (only
ports, addresses and the wasm path patched, harness/multi_server.py), on two workers.

  github     /github/mcp     IdP G, STS G, MCP server G
  bigquery   /bigquery/mcp   IdP B, STS B, MCP server B (and per-tool rules)

Each server's filter instance judges its own routes only: its tokens work there and nowhere
else, its metadata document and its challenges are its own, its MCP server gets backend tokens
of its own STS only, and a path of no server reaches no instance and no MCP server. A variant of
the file (the BigQuery server without token exchange) runs one server that exchanges beside one
that does not. The last test scans the log for every token and secret, so it stays last.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, SecurityTokenService, free_port, wait_until
from harness.checks import challenge, json_body, new_marker, token_fingerprint
from harness.envoy import AUDIT_MARK, load_example
from harness.exchange import mint, upstream_authorization
from harness.faults import RawResponse, raw_request
from harness.mcp_client import mcp_session
from harness.mcp_policy import BQ_READ, MCP_CALL, modern_post, tool_call
from harness.mcp_upstream import MARKER_HEADER, header_values
from harness.multi_server import MULTI_SERVER_EXAMPLE, MultiServerEnvoy, PluginPatch, plugin_configs
from harness.net import LOOPBACK
from harness.sts import decode_issued

SERVERS = ("github", "bigquery")
PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
NO_SERVER = {"error": "not_found", "error_description": "no MCP server at this path"}  # the file's 404
TIMEOUT = 10
ROUNDS = 6  # requests on fresh connections: both workers see each case

pytestmark = pytest.mark.usefixtures("vm_never_fails")


def instance_of(server: str) -> str:
    """The filter name of a server's instance in envoy/multi-server.yaml."""
    return f"mcp_auth_{server}"


@dataclass(frozen=True)
class Server:
    """One MCP server of the file, with the test servers behind its clusters."""

    name: str
    plugin: dict[str, Any]  # its instance's plugin configuration, as it runs
    idp: IdentityProvider
    sts: SecurityTokenService
    upstream: McpUpstream
    envoy_url: str

    @property
    def resource(self) -> str:
        resource: str = self.plugin["resource"]
        return resource

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.resource).path

    @property
    def endpoint(self) -> str:
        return f"{self.envoy_url}{self.path}"

    @property
    def metadata_url(self) -> str:
        """The path-inserted RFC 9728 URL, on this run's listener."""
        return f"{self.envoy_url}{PRM_WELL_KNOWN}{self.path}"

    @property
    def backend_audience(self) -> str:
        audience: str = self.plugin["token_exchange"]["audience"]
        return audience

    def mint(self, sub: str, **claims: Any) -> str:
        """A token of this server's IdP for this server (its audience, the required scopes)."""
        claims.setdefault("scp", list(self.plugin["required_scopes"]))
        return mint(self.idp, sub, **claims)


@dataclass(frozen=True)
class Stack:
    envoy: MultiServerEnvoy
    servers: dict[str, Server]
    secrets: dict[str, str]  # environment variable -> the client secret this run gave it

    def other(self, name: str) -> Server:
        (other,) = [s for n, s in self.servers.items() if n != name]
        return other


def _backend_scopes(plugin: dict[str, Any]) -> tuple[str, ...]:
    """Every scope the instance asks its STS for, per-tool narrowing included."""
    scopes = list(plugin["token_exchange"]["scopes"])
    for rule in plugin.get("mcp", {}).get("rules", []):
        scopes += rule.get("exchange", {}).get("scopes", [])
    return tuple(dict.fromkeys(scopes))


def _running_plugins(plugin_patch: PluginPatch | None) -> dict[str, dict[str, Any]]:
    """The file's plugin configurations, by filter name, with `plugin_patch` applied."""
    plugins = plugin_configs(load_example(MULTI_SERVER_EXAMPLE))
    for name, plugin in plugins.items():
        if plugin_patch is not None:
            plugin_patch(name, plugin)
    return plugins


def _start_stack(make_idp: Callable[..., IdentityProvider], make_sts: Callable[..., SecurityTokenService],
                 upstreams: dict[str, McpUpstream], workdir: Path, envoys_made: list[Envoy],
                 plugin_patch: PluginPatch | None = None) -> Stack:
    """Envoy from the file with an IdP, STS and MCP server per server. An instance that exchanges
    gets its client at its STS and a fresh secret in Envoy's environment; one that does not,
    neither."""
    env = {plugin["token_exchange"]["client_auth"]["client_secret_env"]: secrets.token_urlsafe(24)
           for plugin in _running_plugins(plugin_patch).values() if "token_exchange" in plugin}
    idps = {name: make_idp("") for name in SERVERS}
    sts_ports = {name: free_port() for name in SERVERS}
    clusters = {cluster: port for name in SERVERS for cluster, port in (
        (f"{name}_idp", idps[name].port), (f"{name}_sts", sts_ports[name]), (f"{name}_mcp", upstreams[name].port))}
    envoy = MultiServerEnvoy(workdir=workdir, clusters=clusters, env=env, plugin_patch=plugin_patch)
    envoys_made.append(envoy)

    servers = {}
    for name in SERVERS:
        plugin = envoy.plugins[instance_of(name)]
        idp = idps[name]
        idp.audience = plugin["resource"]
        options: dict[str, Any] = {"clients": {}}
        if "token_exchange" in plugin:
            client = plugin["token_exchange"]["client_auth"]
            options = {"clients": {client["client_id"]: env[client["client_secret_env"]]},
                       "audiences": (plugin["token_exchange"]["audience"],), "scopes": _backend_scopes(plugin)}
        sts = make_sts(idp, port=sts_ports[name], subject_audiences=[plugin["resource"]], **options)
        servers[name] = Server(name, plugin, idp, sts, upstreams[name], envoy.url)
    envoy.start()
    return Stack(envoy, servers, env)


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, McpUpstream]]:
    """An MCP server of its own behind each server's cluster (shared by the module's Envoys).
    Started from this thread: a child gets SIGTERM when the thread that spawned it ends."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(McpUpstream(log_path=tmp_path_factory.mktemp(name) / "upstream.log"))
               for name in SERVERS}


@pytest.fixture(scope="module")
def stack(make_idp: Callable[..., IdentityProvider], make_sts: Callable[..., SecurityTokenService],
          upstreams: dict[str, McpUpstream], tmp_path_factory: pytest.TempPathFactory,
          envoys_made: list[Envoy]) -> Stack:
    return _start_stack(make_idp, make_sts, upstreams, tmp_path_factory.mktemp("envoy-multi-server"), envoys_made)


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, stack: Stack) -> Server:
    return stack.servers[request.param]


# ---- requests --------------------------------------------------------------------------------

def _call(url: str, token: str | None, marker: str, tool: str = "whoami",
          arguments: dict[str, Any] | None = None) -> httpx.Response:
    """A 2026-07-28 tools/call POST on a new connection (so on either worker)."""
    body, headers = modern_post(token or "", tool_call(tool, arguments), marker)
    if token is None:
        del headers["authorization"]
    return httpx.post(url, content=body, headers=headers, timeout=TIMEOUT)


def _tool_result(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = json_body(response)["result"]["structuredContent"]
    return result


def _token_error(response: httpx.Response, server: Server) -> str:
    """The error_description of a 401 invalid_token challenge that points at `server`."""
    assert response.status_code == 401, response.text
    params = challenge(response)
    assert params.get("error") == "invalid_token", params
    assert params["resource_metadata"] == server.metadata_url, params
    return params["error_description"]


def _no_sts_saw(stack: Stack, *tokens: str) -> None:
    for server in stack.servers.values():
        for token in tokens:
            assert server.sts.calls_with_subject_token(token) == [], f"{server.name}'s STS got a refused token"


def _reached_nobody(stack: Stack, marker: str) -> None:
    for server in stack.servers.values():
        assert server.upstream.seen(marker) == [], f"{server.name}'s MCP server got the request"


def _audit_lines_of(envoy: Envoy, token: str, count: int) -> list[dict[str, Any]]:
    """The audit lines of `count` requests made with `token`, once all are written."""
    fingerprint = token_fingerprint(token)

    def written() -> list[dict[str, Any]] | None:
        lines = [a for a in envoy.audit_lines() if a.get("token_sha256") == fingerprint]
        return lines if len(lines) >= count else None

    return wait_until(written, 5, what=f"{count} audit lines")


# ---- each server's own tokens ------------------------------------------------------------------

async def _session(url: str, headers: dict[str, str]) -> dict[str, Any]:
    async with mcp_session(url, headers) as client:
        tools = await client.list_tools()
        whoami = await client.call_tool("whoami", {})
        rows = await client.call_tool("query_users", {"limit": 1})
        return {"protocol_version": client.protocol_version, "tools": {t.name for t in tools.tools},
                "whoami": whoami.structured_content, "query_users": rows.structured_content}


def test_each_server_runs_an_mcp_session_with_its_own_token(stack: Stack, server: Server) -> None:
    """The official SDK client, through the server's path: its instance verifies, exchanges at
    its own STS, and its MCP server gets the backend token and the caller's identity."""
    user, marker = f"{server.name}-session-user", new_marker()
    token = server.mint(user, email=f"{user}@example.com", scp=[MCP_CALL, BQ_READ])
    headers = {"authorization": f"Bearer {token}", MARKER_HEADER: marker}

    result = anyio.run(_session, server.endpoint, headers)

    assert result["protocol_version"]  # initialize completed
    assert {"whoami", "query_users"} <= result["tools"]
    assert result["whoami"] == {"sub": user, "email": f"{user}@example.com", "authorization_present": True}
    backend = result["query_users"]["backend_token"]
    assert (backend["iss"], backend["aud"], backend["sub"]) == (server.sts.issuer, server.backend_audience, user)
    (call,) = server.sts.calls_with_subject_token(token)  # one exchange for the whole session
    seen = server.upstream.seen(marker)
    assert len([e for e in seen if e["method"] == "POST"]) >= 4, seen  # initialize ... tools/call
    for entry in seen:
        assert entry["path"] == "/mcp", entry  # the route's prefix_rewrite
        assert header_values(entry, "authorization") == [f"Bearer {call.issued_token}"], entry
        assert header_values(entry, "x-mcp-user-sub") == [user], entry
    other = stack.other(server.name)
    assert other.upstream.seen(marker) == []
    assert other.sts.calls_with_subject_token(token) == []


@pytest.mark.parametrize(("signer", "target"), [("github", "bigquery"), ("bigquery", "github")],
                         ids=["github-token-on-bigquery", "bigquery-token-on-github"])
def test_a_token_of_one_server_is_refused_by_the_other(stack: Stack, signer: str, target: str) -> None:
    """The other server's genuine token (another issuer), and a token of the target's own IdP for
    the other server (another audience): both 401 from the target's instance."""
    own, other = stack.servers[signer], stack.servers[target]
    foreign_issuer = own.mint("mallory")
    foreign_audience = mint(other.idp, "mallory", aud=own.resource, scp=[MCP_CALL])
    marker = new_marker()
    for _ in range(ROUNDS // 2):
        assert _token_error(_call(other.endpoint, foreign_issuer, marker), other) == "token issuer not trusted"
        assert _token_error(_call(other.endpoint, foreign_audience, marker), other) == "token audience not accepted"
    _reached_nobody(stack, marker)
    _no_sts_saw(stack, foreign_issuer, foreign_audience)
    # Where it belongs, the same token works.
    assert _tool_result(_call(own.endpoint, foreign_issuer, new_marker()))["sub"] == "mallory"


def test_per_tool_rules_are_the_bigquery_servers_own(stack: Stack) -> None:
    """query_users needs bigquery:read on the BigQuery server only: the step-up challenge names
    the BigQuery metadata; the GitHub server, which has no rules, runs the same tool."""
    bigquery, github = stack.servers["bigquery"], stack.servers["github"]
    marker = new_marker()
    for _ in range(ROUNDS // 2):
        refused = _call(bigquery.endpoint, bigquery.mint("reader"), marker, "query_users")
        assert refused.status_code == 403, refused.text
        params = challenge(refused)
        assert params["error"] == "insufficient_scope" and BQ_READ in params["scope"].split(), params
        assert params["resource_metadata"] == bigquery.metadata_url, params
    assert bigquery.upstream.seen(marker) == []
    assert _tool_result(_call(github.endpoint, github.mint("reader"), new_marker(), "query_users"))["rows"]


# ---- discovery ----------------------------------------------------------------------------------

def test_each_metadata_document_is_its_own_servers(stack: Stack, server: Server) -> None:
    for _ in range(ROUNDS // 2):
        response = httpx.get(server.metadata_url, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        document = json_body(response)
        assert document["resource"] == server.resource
        assert document["authorization_servers"] == [server.idp.issuer]
        assert document["scopes_supported"] == server.plugin["scopes_supported"]
        assert document["resource_name"] == server.plugin["resource_name"]
    other = stack.other(server.name)
    assert other.resource != server.resource and other.idp.issuer != server.idp.issuer
    for upstream in (server.upstream, other.upstream):  # answered by the instance, never forwarded
        assert not [e for e in upstream.seen() if PRM_WELL_KNOWN in e["path"]]


def test_each_challenge_names_its_own_metadata(stack: Stack, server: Server) -> None:
    """A client without a token is pointed at the server's own metadata, which names the server."""
    marker = new_marker()
    for _ in range(ROUNDS // 2):
        refused = _call(server.endpoint, None, marker)
        assert refused.status_code == 401, refused.text
        params = challenge(refused)
        assert params["resource_metadata"] == server.metadata_url, params
        assert params["scope"] == " ".join(server.plugin["required_scopes"]), params
        assert "error" not in params, params
    _reached_nobody(stack, marker)
    followed = httpx.get(params["resource_metadata"], timeout=TIMEOUT)
    assert json_body(followed)["resource"] == server.resource


NO_SERVER_PATHS = [
    PRM_WELL_KNOWN,  # the root form: it would have to name two resources
    f"{PRM_WELL_KNOWN}/mcp",
    f"{PRM_WELL_KNOWN}/github",
    f"{PRM_WELL_KNOWN}/github/mcp/extra",
    f"{PRM_WELL_KNOWN}/bigquery/other",
    "/mcp",
    "/github",
    "/GITHUB/mcp",
    "/other/mcp",
]


@pytest.mark.parametrize("path", NO_SERVER_PATHS)
def test_paths_of_no_server_reach_no_instance(stack: Stack, path: str) -> None:
    """Envoy's own 404 (not an instance's "no protected resource" or challenge), even with a
    valid token: no instance ran (no counter moved, no audit line), nothing was forwarded."""
    token, marker = stack.servers["github"].mint("prober"), new_marker()
    before = stack.envoy.stats()
    for method in ("GET", "POST"):
        response = httpx.request(method, f"{stack.envoy.url}{path}", timeout=TIMEOUT,
                                 headers={"authorization": f"Bearer {token}", MARKER_HEADER: marker})
        assert response.status_code == 404, response.text
        assert json_body(response) == NO_SERVER
        assert "www-authenticate" not in response.headers
    _reached_nobody(stack, marker)
    # The instances are the only writers of these counters and lines.
    assert stack.envoy.stats() == before
    assert [a for a in stack.envoy.audit_lines() if a["path"] == path] == []


# ---- backend tokens, audit ------------------------------------------------------------------------

def test_backend_tokens_come_from_each_servers_own_sts(stack: Stack) -> None:
    """The same user on both servers, interleaved over both workers: each MCP server only ever
    gets the token its own STS issued for it, never the other's, never the client's."""
    tokens = {name: server.mint("same-user") for name, server in stack.servers.items()}
    markers = {name: new_marker() for name in SERVERS}
    allowed_before = stack.envoy.counter("mcp_auth.allowed")
    for _ in range(ROUNDS):
        for name, server in stack.servers.items():
            assert _tool_result(_call(server.endpoint, tokens[name], markers[name]))["sub"] == "same-user"
    # One VM: the instances count into the same counters (docs/deploying.md says so).
    assert stack.envoy.wait_for_counter("mcp_auth.allowed", allowed_before + 2 * ROUNDS) == allowed_before + 2 * ROUNDS

    for name, server in stack.servers.items():
        other = stack.other(name)
        (call,) = server.sts.calls_with_subject_token(tokens[name])  # cached across both workers
        assert call.client_id == server.plugin["token_exchange"]["client_auth"]["client_id"]
        assert set(upstream_authorization(server.upstream, markers[name])) == {f"Bearer {call.issued_token}"}
        claims = decode_issued(server.sts, call.issued_token, audience=server.backend_audience)
        assert (claims["sub"], claims["scp"]) == ("same-user", server.plugin["token_exchange"]["scopes"])
        with pytest.raises(jwt.InvalidTokenError):
            decode_issued(other.sts, call.issued_token, audience=server.backend_audience)
        assert call.issued_token not in other.sts.issued
        assert call.issued_token not in tokens.values()
        assert other.sts.calls_with_subject_token(tokens[name]) == []
        assert upstream_authorization(other.upstream, markers[name]) == []


def _audit_by_writer(envoy: Envoy) -> list[tuple[str, dict[str, Any]]]:
    """Every audit line so far, with the filter name in Envoy's prefix of it ("wasm log <name>
    <root_id> <vm_id>: "): the instance that wrote it."""
    decoder, found = json.JSONDecoder(), []
    for line in envoy.log_text().splitlines():
        start = line.find(AUDIT_MARK)
        if start >= 0:
            writer = line[:start].partition("wasm log ")[2].split(" ")[0]
            found.append((writer, decoder.raw_decode(line[start:])[0]))
    return found


def test_audit_lines_name_each_servers_path_and_issuer(stack: Stack, server: Server) -> None:
    """Each line says which server: the path, the issuer, the backend audience, and Envoy's
    prefix names the instance that wrote it."""
    other = stack.other(server.name)
    token = server.mint(f"{server.name}-audited")
    assert _call(server.endpoint, token, new_marker()).status_code == 200
    assert _call(other.endpoint, token, new_marker()).status_code == 401

    allowed, denied = sorted(_audit_lines_of(stack.envoy, token, 2), key=lambda a: a["outcome"])
    assert (allowed["outcome"], allowed["status"], allowed["path"]) == ("allow", 200, server.path), allowed
    assert (allowed["issuer"], allowed["user"]) == (server.idp.issuer, f"{server.name}-audited"), allowed
    assert (allowed["exchange"], allowed["backend_audience"]) == ("miss", server.backend_audience), allowed
    assert (denied["outcome"], denied["status"], denied["path"]) == ("deny", 401, other.path), denied
    assert denied["reason"] == "issuer_not_trusted", denied
    fingerprint = token_fingerprint(token)
    writers = {r["outcome"]: w for w, r in _audit_by_writer(stack.envoy) if r.get("token_sha256") == fingerprint}
    assert writers == {"allow": instance_of(server.name), "deny": instance_of(other.name)}

    # Every metadata line of the server's metadata path, this one included, is its own instance's.
    metadata_path = urllib.parse.urlsplit(server.metadata_url).path

    def metadata_writers() -> list[str]:
        return [w for w, r in _audit_by_writer(stack.envoy) if (r["outcome"], r["path"]) == ("metadata", metadata_path)]

    served = len(metadata_writers())
    assert httpx.get(server.metadata_url, timeout=TIMEOUT).status_code == 200
    wait_until(lambda: len(metadata_writers()) > served, 5, what="the metadata audit line")
    assert set(metadata_writers()) == {instance_of(server.name)}


# ---- paths as routing sees them ---------------------------------------------------------------------

def _raw(stack: Stack, path: bytes, token: str, marker: str) -> RawResponse:
    """A GET of `path` exactly as written (httpx would resolve the dot segments itself)."""
    return raw_request(stack.envoy.listener_port, [(b"authorization", b"Bearer " + token.encode()),
                                                   (MARKER_HEADER.encode(), marker.encode())], path=path)


@pytest.mark.parametrize("path", [b"/github/../bigquery/echo", b"/github/%2e%2e/bigquery/echo",
                                  b"/github/./../bigquery//echo"])
def test_a_path_naming_the_other_server_is_judged_by_it(stack: Stack, path: bytes) -> None:
    """Envoy normalises the path before routing, so the route, the instance that runs and the
    upstream all agree: a GitHub token on a path that resolves to /bigquery/ is BigQuery's to judge."""
    bigquery = stack.servers["bigquery"]
    token, marker = stack.servers["github"].mint("path-tricks"), new_marker()
    for _ in range(ROUNDS // 2):
        response = _raw(stack, path, token, marker)
        assert response.status == 401, (response.status, response.body)
        (value,) = response.header("www-authenticate")
        assert f'resource_metadata="{bigquery.metadata_url}"' in value and "token issuer not trusted" in value
    _reached_nobody(stack, marker)
    _no_sts_saw(stack, token)


def test_a_normalised_path_reaches_its_own_server(stack: Stack) -> None:
    github = stack.servers["github"]
    token, marker = github.mint("merged-slashes"), new_marker()
    response = _raw(stack, b"/bigquery/..//github//echo", token, marker)
    assert response.status == 200, response.body
    (seen,) = github.upstream.seen(marker)
    assert seen["path"] == "/echo"
    assert header_values(seen, "x-mcp-user-sub") == ["merged-slashes"]


def test_an_escaped_slash_is_refused_before_any_route(stack: Stack) -> None:
    token, marker = stack.servers["github"].mint("escaped"), new_marker()
    response = _raw(stack, b"/github%2Fecho", token, marker)
    assert response.status == 400, response.body
    _reached_nobody(stack, marker)


# ---- one server with token exchange, one without ----------------------------------------------------

def _without_bigquery_exchange(name: str, plugin: dict[str, Any]) -> None:
    if name == instance_of("bigquery"):
        del plugin["token_exchange"]
        for rule in plugin["mcp"]["rules"]:
            rule.pop("exchange", None)  # a per-tool exchange needs token_exchange


@pytest.fixture(scope="module")
def mixed(make_idp: Callable[..., IdentityProvider], make_sts: Callable[..., SecurityTokenService],
          upstreams: dict[str, McpUpstream], tmp_path_factory: pytest.TempPathFactory,
          envoys_made: list[Envoy]) -> Stack:
    """The file with the BigQuery server's token exchange (and per-tool exchange) removed, and
    its client secret not set: the one change the file's comments describe."""
    return _start_stack(make_idp, make_sts, upstreams, tmp_path_factory.mktemp("envoy-multi-server-mixed"),
                        envoys_made, plugin_patch=_without_bigquery_exchange)


def test_one_server_exchanges_beside_one_that_does_not(mixed: Stack) -> None:
    github, bigquery = mixed.servers["github"], mixed.servers["bigquery"]
    assert list(mixed.secrets) == [github.plugin["token_exchange"]["client_auth"]["client_secret_env"]]
    tokens = {"github": github.mint("mixed-user"), "bigquery": bigquery.mint("mixed-user")}
    markers = {name: new_marker() for name in SERVERS}
    for _ in range(ROUNDS // 2):
        assert _tool_result(_call(github.endpoint, tokens["github"], markers["github"]))["authorization_present"]
        assert _tool_result(_call(bigquery.endpoint, tokens["bigquery"], markers["bigquery"])) == {
            "sub": "mixed-user", "email": "alice@example.com", "authorization_present": False}

    (call,) = github.sts.calls_with_subject_token(tokens["github"])
    assert set(upstream_authorization(github.upstream, markers["github"])) == {f"Bearer {call.issued_token}"}
    # Without an exchange the caller's identity goes upstream, its token never does.
    seen = bigquery.upstream.seen(markers["bigquery"])
    assert seen and all(header_values(e, "authorization") == [] for e in seen), seen
    assert all(header_values(e, "x-mcp-user-sub") == ["mixed-user"] for e in seen), seen
    assert bigquery.sts.calls == [] and github.sts.calls_with_subject_token(tokens["bigquery"]) == []


# ---- last: the log ------------------------------------------------------------------------------------

def test_no_token_or_secret_in_envoy_log(stack: Stack) -> None:
    token = stack.servers["github"].mint("log-check")
    assert _call(stack.servers["github"].endpoint, token, new_marker()).status_code == 200
    stack.envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    log = stack.envoy.log_text()
    assert AUDIT_MARK in log
    issued = [t for s in stack.servers.values() for t in (*s.idp.minted, *s.sts.issued)]
    assert issued and not [t for t in issued if t in log], "a token is in the Envoy log"
    assert not [s for s in stack.secrets.values() if s in log], "a client secret is in the Envoy log"
    assert LOOPBACK in log  # the log is the real one, with addresses in it
