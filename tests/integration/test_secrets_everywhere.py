"""No raw token (the client's or the backend's) and no client secret in any log line or any
answer, and the client's token never upstream, on every path: allowed (exchange miss and hit),
each kind of denial, each kind of exchange failure, bypass, CORS preflight, metadata. Run with
the filter's component at debug (`--component-log-level wasm:debug`) and with all of Envoy at
debug (`--log-level debug`; there only the filter's `[wasm]` lines are the filter's to answer
for: Envoy's own debug lines print request headers, see the report at the end)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from harness import IdentityProvider, McpUpstream, SecurityTokenService, free_port, resource_url
from harness.checks import new_marker
from harness.exchange import mint, okta_envoy_options, okta_plugin_config
from harness.faults import TunedEnvoy, wasm_failures
from harness.idp import new_rsa_key
from harness.mcp_upstream import MARKER_HEADER, header_values
from harness.sts_fault import StsFault

SECRET = "okta-client-secret-never-logged-7f3a"
BASIC = base64.b64encode(f"mcp-filter:{SECRET}".encode()).decode()


@dataclass
class Run:
    envoy: TunedEnvoy
    inbound: list[str] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)


def _secrets(run: Run, sts: SecurityTokenService) -> dict[str, str]:
    """Every secret string that must never appear, by a label for messages."""
    found: dict[str, str] = {"client secret": SECRET, "basic credential": BASIC}
    for i, token in enumerate(run.inbound):
        found[f"inbound token {i}"] = token
        if token.count(".") == 2 and len(token.rsplit(".", 1)[1]) >= 16:
            found[f"inbound signature {i}"] = token.rsplit(".", 1)[1]
    for i, token in enumerate(sts.issued):
        found[f"backend token {i}"] = token
        found[f"backend signature {i}"] = token.rsplit(".", 1)[1]
    return found


def _exercise(run: Run, idp: IdentityProvider, sts: SecurityTokenService) -> None:
    envoy = run.envoy

    def send(method: str, path: str, token: str | None, *, extra: dict[str, str] | None = None,
             raw_authorization: list[str] | None = None) -> httpx.Response:
        marker = new_marker()
        headers: list[tuple[str, str]] = [(MARKER_HEADER, marker)]
        if token is not None:
            run.inbound.append(token)
            headers.append(("authorization", f"Bearer {token}"))
        for value in raw_authorization or []:
            headers.append(("authorization", value))
        headers += list((extra or {}).items())
        with httpx.Client(base_url=envoy.url, timeout=10) as client:
            response = client.request(method, path, headers=headers)
        run.markers.append(marker)
        run.responses.append(response)
        return response

    now = int(time.time())
    # Allowed: an exchange miss, then a hit on the same connection's worker.
    token = mint(idp, "sec-allowed")
    run.inbound.append(token)
    with httpx.Client(base_url=envoy.url, timeout=10) as client:
        for _ in range(2):
            marker = new_marker()
            run.markers.append(marker)
            response = client.get("/echo", headers={"authorization": f"Bearer {token}", MARKER_HEADER: marker})
            run.responses.append(response)
            assert response.status_code == 200, response.text
    # Every kind of denial.
    for bad, status in [
        (mint(idp, "sec-expired", exp=now - 3600, iat=now - 7200, nbf=now - 7200), 401),
        (mint(idp, "sec-forged", key=new_rsa_key()), 401),
        (mint(idp, "sec-kid", kid="no-such-kid"), 401),
        (mint(idp, "sec-none", alg="none"), 401),
        (mint(idp, "sec-big", padding="p" * 20_000), 401),
        (mint(idp, "sec-aud", aud="http://127.0.0.1:1/other"), 401),
        (mint(idp, "sec-scope", scp=["other"]), 403),
        (mint(idp, "sec-iss", iss="http://127.0.0.1:1/evil"), 401),
        ("not-a-jwt-but-a-secretive-string-123456", 401),
    ]:
        assert send("GET", "/echo", bad).status_code == status
    assert send("GET", "/echo", None).status_code == 401
    both = mint(idp, "sec-repeated")
    run.inbound.append(both)
    assert send("GET", "/echo", None, raw_authorization=[f"Bearer {both}", f"Bearer {both}"]).status_code == 401
    # Every kind of exchange failure.
    failures = [("reject", StsFault.reject(), 401), ("refuse", StsFault.refuse(400, "invalid_scope"), 403),
                ("fail", StsFault.fail(), 502), ("garbage", StsFault.garbage(), 502),
                ("unavailable", StsFault.unavailable(), 503), ("gateway_timeout", StsFault.gateway_timeout(), 504),
                ("slow", StsFault.slow(2.5), 504)]
    for mode, fault, status in failures:
        sts.set_fault(fault)
        assert send("GET", "/echo", mint(idp, f"sec-{mode}")).status_code == status, mode
    sts.clear_fault()
    # Bypass, CORS preflight and metadata, each carrying a valid token that must not go upstream.
    assert send("GET", "/healthz", mint(idp, "sec-bypass")).status_code == 200
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    assert send("OPTIONS", "/mcp", mint(idp, "sec-preflight"), extra=preflight).status_code < 500
    assert send("GET", "/.well-known/oauth-protected-resource/mcp", mint(idp, "sec-metadata")).status_code == 200
    # One more allowed request last, so its audit line marks the end of the log to read.
    assert send("GET", "/echo", mint(idp, "sec-last")).status_code == 200
    envoy.wait_for_audit(lambda a: a.get("user") == "sec-last")


@pytest.fixture(scope="module")
def sts_secret() -> str:
    return SECRET


LOG_MODES = {
    "wasm-debug": ("info", ("--component-log-level", "wasm:debug")),
    "all-debug": ("debug", ()),
}


@pytest.fixture(scope="module", params=list(LOG_MODES))
def run(request: pytest.FixtureRequest, idp: IdentityProvider, sts: SecurityTokenService, upstream: McpUpstream,
        envoy_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    level, extra = LOG_MODES[request.param]
    port = free_port() if request.param != "wasm-debug" else envoy_port
    config = okta_plugin_config(envoy_port=port, idp_port=idp.port, sts_port=sts.port)
    config["resource"] = resource_url(envoy_port)  # the IdP mints for the module's resource
    config["providers"]["okta"]["audiences"] = [resource_url(envoy_port)]
    config["token_exchange"]["token_endpoint"]["timeout"] = "1s"
    envoy = TunedEnvoy(config, workdir=tmp_path_factory.mktemp(f"envoy-secrets-{request.param}"),
                       upstream_port=upstream.port, idp_port=idp.port, listener_port=port, log_level=level,
                       extra_args=extra, **okta_envoy_options(sts.port, SECRET)).start()
    result = Run(envoy)
    try:
        _exercise(result, idp, sts)
        yield result
    finally:
        envoy.stop()


def test_no_secret_in_the_filters_log_lines(run: Run, sts: SecurityTokenService) -> None:
    log = run.envoy.log_text()
    filter_lines = [line for line in log.splitlines() if "][wasm]" in line]
    assert any('"audit":"mcp_auth_filter"' in line for line in filter_lines)
    # At info, only the filter logs at debug: the whole log must be clean.
    lines = log.splitlines() if run.envoy.log_level == "info" else filter_lines
    text = "\n".join(lines)
    leaks = [label for label, value in _secrets(run, sts).items() if value in text]
    assert not leaks, f"found in the log: {leaks[:8]}"
    assert wasm_failures(log) == []
    if run.envoy.log_level == "debug":
        others = [label for label, value in _secrets(run, sts).items() if value in log]
        print(f"\n[secrets] with --log-level debug, Envoy's own (non-wasm) debug lines carry "
              f"{len(others)} of {len(_secrets(run, sts))} secret strings (request/callout headers)")


def test_no_secret_in_any_answer(run: Run, sts: SecurityTokenService) -> None:
    secrets = _secrets(run, sts)
    for response in run.responses:
        # Bodies the filter wrote (denials, metadata); an allowed request's body is the upstream's
        # own echo of what it received (checked in the next test), its headers still count.
        own_body = response.status_code >= 400 or "oauth-protected-resource" in response.request.url.path
        text = (response.text if own_body else "") + "\n" + "\n".join(
            f"{k}: {v}" for k, v in response.headers.items())
        leaks = [label for label, value in secrets.items() if value in text]
        assert not leaks, f"{response.request.method} {response.request.url.path} -> {response.status_code}: {leaks}"


def test_client_token_never_reaches_the_upstream(run: Run, sts: SecurityTokenService, upstream: McpUpstream) -> None:
    inbound = {label: value for label, value in _secrets(run, sts).items() if label.startswith("inbound")}
    backend = set(sts.issued)
    forwarded = 0
    for marker in run.markers:
        for entry in upstream.seen(marker):
            forwarded += 1
            for name, value in entry["headers"]:
                leaks = [label for label, secret in inbound.items() if secret in value]
                assert not leaks, f"{entry['path']}: {name} carries {leaks}"
                assert SECRET not in value and BASIC not in value
            for value in header_values(entry, "authorization"):
                assert value.removeprefix("Bearer ") in backend, f"{entry['path']}: unexpected Authorization upstream"
    assert forwarded >= 5  # allowed x3, bypass, preflight
