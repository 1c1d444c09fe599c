"""Each major IdP as a shipped, tested profile: envoy/profiles/<idp>.json, docs/idp/<idp>.md.

A Python emulation of each IdP (tests/harness/idp_profiles/) publishes its keys and documents in
that IdP's shapes and answers at its token endpoint as that IdP does, errors included. Envoy
runs the profile file as shipped, inside envoy/okta-same-idp.yaml, with only its public origins
moved to the emulators. For every profile:
  - a token of that IdP's shape is accepted, its scopes are read from that IdP's claims, the
    claim headers reach the MCP server, and the backend token from that IdP's token endpoint
    (token exchange or on-behalf-of) replaces the client's;
  - the most common misconfigurations are refused at load naming the field, or per request
    with the description the client and the audit line show.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

from harness import OKTA_EXAMPLE, Envoy, free_port, wait_until
from harness.checks import bearer, challenge, echoed, json_body, token_fingerprint
from harness.idp_profiles import PROFILES, PROFILES_DIR, SECRET_ENV, IdpProfile, LoadError, Refusal
from harness.idp_profiles.auth0 import ROLES_CLAIM
from harness.mcp_client import mcp_session

TIMEOUT = 10
NAMES = sorted(PROFILES)
INVALID = "mcp_auth_filter: invalid configuration: "
DOCS = PROFILES_DIR.parents[1] / "docs" / "idp"

# The runtime tests also check that no Envoy's VM failed meanwhile (load failures do fail it).
vm_never_fails = pytest.mark.usefixtures("vm_never_fails")


@dataclass(frozen=True)
class Stack:
    profile: IdpProfile
    envoy: Envoy


def envoy_for(make_envoy: Callable[..., Envoy], profile: IdpProfile, config: dict[str, Any],
              listener_port: int | None = None, secret_in_vm: bool = True) -> Envoy:
    """envoy/okta-same-idp.yaml running `config`: its `idp` and `sts` clusters on the emulators,
    the client secret in Envoy's environment (the file passes it into the VM)."""
    return make_envoy(config, idp_port=profile.idp.port, listener_port=listener_port, example=OKTA_EXAMPLE,
                      clusters={"sts": profile.sts.port},
                      env={SECRET_ENV: profile.client_secret if secret_in_vm else None})


@pytest.fixture(scope="module")
def stacks(make_envoy: Callable[..., Envoy]) -> Iterator[Callable[[str], Stack]]:
    """Per profile, built on first use: the IdP's emulators and an Envoy running its file."""
    built: dict[str, Stack] = {}

    def stack(name: str) -> Stack:
        if name not in built:
            profile, port = PROFILES[name](), free_port()
            config = profile.plugin_config(port)
            profile.start(config)
            built[name] = Stack(profile, envoy_for(make_envoy, profile, config, port).start())
        return built[name]

    yield stack
    for built_stack in built.values():
        built_stack.envoy.stop()
        built_stack.profile.stop()


def new_user() -> str:
    return "u" + uuid.uuid4().hex[:12]


def get_echo(envoy: Envoy, token: str) -> httpx.Response:
    return httpx.get(f"{envoy.url}/echo", headers=bearer(token), timeout=TIMEOUT)


def test_every_shipped_profile_is_tested() -> None:
    assert sorted(p.stem for p in PROFILES_DIR.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_idps_page_shows_the_shipped_file(name: str) -> None:
    """docs/idp/<idp>.md carries the file as it is shipped (and so as it is tested)."""
    page = (DOCS / f"{name.split('-')[0]}.md").read_text()
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", page, re.DOTALL)]
    assert json.loads((PROFILES_DIR / f"{name}.json").read_text()) in blocks


@vm_never_fails
@pytest.mark.parametrize("name", NAMES)
def test_token_of_the_idps_shape_reaches_the_server_as_the_user(stacks: Callable[[str], Stack], name: str) -> None:
    stack = stacks(name)
    profile, user = stack.profile, new_user()
    token = profile.token(user)

    response = get_echo(stack.envoy, token)

    assert response.status_code == 200, response.text
    for header, value in profile.claim_headers(user).items():
        assert echoed(response, header) == [value], header
    (call,) = profile.exchange_of(token)
    profile.check_exchange(call, token)
    assert echoed(response, "authorization") == [f"Bearer {call.issued}"]
    line = stack.envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["status"], line["exchange"]) == ("allow", 200, "miss"), line


@vm_never_fails
@pytest.mark.parametrize("name", NAMES)
def test_mcp_tool_call_runs_as_the_user(stacks: Callable[[str], Stack], name: str) -> None:
    stack = stacks(name)
    user = new_user()
    headers = stack.profile.claim_headers(user)

    async def whoami() -> Any:
        async with mcp_session(f"{stack.envoy.url}/mcp", bearer(stack.profile.token(user)),
                               timeout=TIMEOUT) as client:
            return (await client.call_tool("whoami", {})).structured_content

    assert anyio.run(whoami) == {"sub": headers["x-mcp-user-sub"], "email": headers.get("x-mcp-user-email"),
                                 "authorization_present": True}


@vm_never_fails
@pytest.mark.parametrize("name", NAMES)
def test_scopes_are_read_from_the_idps_claims(stacks: Callable[[str], Stack], name: str) -> None:
    """The same token without the scope it needs: 403 step-up naming the scope clients request."""
    stack = stacks(name)
    token = stack.profile.token_without_required_scope(new_user())
    if token is None:
        pytest.skip(f"the {name} profile requires no scope (ID tokens carry none)")

    response = get_echo(stack.envoy, token)

    assert response.status_code == 403, response.text
    params = challenge(response)
    assert (params["error"], params["scope"]) == ("insufficient_scope", " ".join(stack.profile.required_scopes))


@vm_never_fails
@pytest.mark.parametrize("name", NAMES)
def test_metadata_names_the_idp_and_its_scopes(stacks: Callable[[str], Stack], name: str) -> None:
    stack = stacks(name)
    config = stack.profile.config
    issuers = [p["issuer"] for p in config["providers"].values()]

    metadata = json_body(httpx.get(f"{stack.envoy.url}/.well-known/oauth-protected-resource/mcp", timeout=TIMEOUT))

    assert metadata["authorization_servers"] == config.get("authorization_servers", issuers)
    assert (metadata["resource"], metadata["scopes_supported"]) == (config["resource"], config["scopes_supported"])


LOAD_ERRORS = [(name, case) for name in NAMES for case in PROFILES[name]().load_errors()]


@pytest.mark.parametrize(("name", "case"), LOAD_ERRORS, ids=[f"{n}-{c.name}" for n, c in LOAD_ERRORS])
def test_misconfiguration_is_refused_at_load(make_envoy: Callable[..., Envoy], name: str, case: LoadError) -> None:
    profile, port = PROFILES[name](), free_port()
    config = profile.plugin_config(port)
    case.change(config)
    envoy = envoy_for(make_envoy, profile, config, port, secret_in_vm=case.secret_in_vm)

    assert envoy.run_expecting_exit(timeout=30) != 0

    errors = [line for line in envoy.log_text().splitlines() if INVALID in line]
    assert any(f"{INVALID}{case.path}: {case.problem}" in line for line in errors), errors


REFUSALS = [(name, case) for name in NAMES for case in PROFILES[name]().refusals()]


@vm_never_fails
@pytest.mark.parametrize(("name", "case"), REFUSALS, ids=[f"{n}-{c.name}" for n, c in REFUSALS])
def test_misconfiguration_is_seen_by_the_client(stacks: Callable[[str], Stack], make_envoy: Callable[..., Envoy],
                                                name: str, case: Refusal) -> None:
    stack = stacks(name)
    profile, user = stack.profile, new_user()
    envoy = stack.envoy
    if case.change is not None:  # the operator's mistake: an Envoy of its own
        config = copy.deepcopy(profile.config)
        case.change(config)
        envoy = envoy_for(make_envoy, profile, config).start()
    token = case.token(profile, user) if case.token else profile.token(user)

    with case.idp_side(profile) if case.idp_side else nullcontext():
        response = get_echo(envoy, token)

    assert response.status_code == case.status, response.text
    assert json_body(response)["error_description"] == case.description
    if case.status == 401:
        assert challenge(response)["error_description"] == case.description
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["reason"]) == ("deny", case.reason), line
    if case.log is not None:
        log = case.log
        wait_until(lambda: log in envoy.log_text(), TIMEOUT, what=f"{log!r} in Envoy's log")
    if envoy is not stack.envoy:
        envoy.stop()


@vm_never_fails
def test_auth0_namespaced_claim_reaches_a_header(stacks: Callable[[str], Stack],
                                                 make_envoy: Callable[..., Envoy]) -> None:
    profile = stacks("auth0").profile
    config = copy.deepcopy(profile.config)
    config["providers"]["auth0"]["claim_to_headers"].append({"header_name": "x-mcp-user-roles",
                                                             "claim_name": ROLES_CLAIM})
    envoy = envoy_for(make_envoy, profile, config).start()
    try:
        response = get_echo(envoy, profile.token(new_user()))
        assert response.status_code == 200, response.text
        assert echoed(response, "x-mcp-user-roles") == ["analyst"]
    finally:
        envoy.stop()
