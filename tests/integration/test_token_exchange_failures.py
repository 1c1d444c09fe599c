"""When the exchange fails, the request is refused (never forwarded without a backend token, never
left hanging) with the status the STS's answer calls for, and counted and audited as a denial.

The stack is envoy/okta-same-idp.yaml with a 1 s exchange deadline. Every test sends a token of
its own, so no cached exchange hides the STS's behaviour. The last test scans the log for every
token and the secret, so it stays last.
"""

from __future__ import annotations

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, SecurityTokenService, prm_url, wait_until
from harness.checks import bearer, json_body, new_marker, token_fingerprint
from harness.envoy import AUDIT_MARK
from harness.exchange import OKTA, ExchangeProfile, mint, upstream_authorization
from harness.sts_fault import StsFault

SECRET = "okta-client-secret-for-failure-tests"
CLIENT_TIMEOUT = 10  # the bound for "never hangs": the filter must answer well before it
RECOVERY_DEADLINE = 15

REJECTED = ("invalid_token", "token exchange rejected the token")
FAILED = ("temporarily_unavailable", "token exchange failed")
UNAVAILABLE = ("temporarily_unavailable", "token exchange unavailable")
TIMED_OUT = ("temporarily_unavailable", "token exchange timed out")


def refused(code: str | None) -> tuple[str, str]:
    return ("access_denied", f"token exchange refused ({code})" if code else "token exchange refused")


pytestmark = pytest.mark.usefixtures("sts_restored", "vm_never_fails")


@pytest.fixture(scope="module")
def exchange() -> ExchangeProfile:
    return OKTA.with_timeout("1s")


@pytest.fixture(scope="module")
def sts_secret() -> str:
    return SECRET


def _expect_denial(http: httpx.Client, envoy: Envoy, idp: IdentityProvider, upstream: McpUpstream, *,
                   status: int, body: tuple[str, str], reason: str, sub: str) -> httpx.Response:
    """One request with a fresh token: refused as described, not forwarded, counted, audited."""
    before = envoy.stats()
    token, marker = mint(idp, sub), new_marker()

    response = http.get("/echo", headers=bearer(token, marker))

    assert response.status_code == status, response.text
    answer = json_body(response)
    assert (answer.get("error"), answer.get("error_description")) == body, answer
    assert upstream.seen(marker) == [], "the request was forwarded without a backend token"
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(token))
    assert (line["outcome"], line["status"], line["reason"]) == ("deny", status, reason), line
    for name in (f"mcp_auth.denied.{reason}", "mcp_auth.exchange.failed"):
        envoy.wait_for_counter(name, before.get(name, 0) + 1)
    assert envoy.counter("mcp_auth.allowed") == before.get("mcp_auth.allowed", 0)
    return response


@pytest.mark.parametrize("fault", [
    StsFault.reject(),
    # RFC 8693 §2.2.2: an invalid or unacceptable subject token is `invalid_request` (Keycloak
    # answers an ended user session so).
    StsFault.refuse(400, "invalid_request"),
], ids=["invalid_grant", "invalid_request"])
def test_a_refused_subject_token_is_401_with_challenge(http: httpx.Client, envoy: Envoy, envoy_port: int,
                                                       idp: IdentityProvider, sts: SecurityTokenService,
                                                       upstream: McpUpstream, fault: StsFault) -> None:
    sts.set_fault(fault)
    response = _expect_denial(http, envoy, idp, upstream, status=401, body=REJECTED, reason="exchange_rejected",
                              sub="tf-rejected")
    assert response.headers.get_list("www-authenticate") == [
        f'Bearer resource_metadata="{prm_url(envoy_port)}", scope="mcp:tools:call", error="invalid_token", '
        'error_description="token exchange rejected the token"']


@pytest.mark.parametrize("status, code, expected", [
    (400, "invalid_scope", refused("invalid_scope")),
    (400, "invalid_target", refused("invalid_target")),
    (400, "unauthorized_client", refused("unauthorized_client")),
    (401, "invalid_client", refused("invalid_client")),
    (403, "policy_says_no", refused(None)),  # not a standard OAuth code: not echoed
])
def test_other_4xx_is_403_refused(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                  sts: SecurityTokenService, upstream: McpUpstream,
                                  status: int, code: str, expected: tuple[str, str]) -> None:
    sts.set_fault(StsFault.refuse(status, code))
    response = _expect_denial(http, envoy, idp, upstream, status=403, body=expected, reason="exchange_refused",
                              sub=f"tf-refused-{code}")
    # A refusal is about the filter's standing at the STS, not the client's token: no token challenge.
    assert 'error="invalid_token"' not in response.headers.get("www-authenticate", "")


@pytest.mark.parametrize("mode, fault", [
    ("fail", StsFault.fail()),  # 500
    ("refuse", StsFault.refuse(502, "bad_gateway")),  # another 5xx
    ("garbage", StsFault.garbage()),  # 200, not JSON
    ("no_access_token", StsFault.no_access_token()),  # 200 JSON without access_token
    ("non_bearer", StsFault.non_bearer()),  # 200 with token_type N_A
    ("oversized", StsFault.oversized()),  # 200 with a valid token in a 256 KiB body
], ids=["fail", "refuse", "garbage", "no_access_token", "non_bearer", "oversized"])
def test_unusable_answer_is_502(http: httpx.Client, envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService,
                                upstream: McpUpstream, mode: str, fault: StsFault) -> None:
    sts.set_fault(fault)
    _expect_denial(http, envoy, idp, upstream, status=502, body=FAILED, reason="exchange_failed", sub=f"tf-{mode}")


def test_sts_503_is_503_with_retry_after(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                         sts: SecurityTokenService, upstream: McpUpstream) -> None:
    sts.set_fault(StsFault.unavailable())
    response = _expect_denial(http, envoy, idp, upstream, status=503, body=UNAVAILABLE,
                              reason="exchange_unavailable", sub="tf-503")
    assert response.headers.get("retry-after") == "1"


def test_sts_504_is_504(http: httpx.Client, envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService,
                        upstream: McpUpstream) -> None:
    sts.set_fault(StsFault.gateway_timeout())
    _expect_denial(http, envoy, idp, upstream, status=504, body=TIMED_OUT, reason="exchange_timeout", sub="tf-504")


def test_slow_sts_times_out_into_504(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                     sts: SecurityTokenService, upstream: McpUpstream) -> None:
    # The deadline is 1 s, the STS answers after 3 s; the client gives up after CLIENT_TIMEOUT
    # (http's timeout), so a hung request fails the test with a ReadTimeout.
    sts.set_fault(StsFault.slow(3))
    _expect_denial(http, envoy, idp, upstream, status=504, body=TIMED_OUT, reason="exchange_timeout",
                   sub="tf-slow")


def test_sts_down_is_503_then_recovers(http: httpx.Client, envoy: Envoy, idp: IdentityProvider,
                                       sts: SecurityTokenService, upstream: McpUpstream) -> None:
    sts.stop()
    response = _expect_denial(http, envoy, idp, upstream, status=503, body=UNAVAILABLE,
                              reason="exchange_unavailable", sub="tf-down")
    assert response.headers.get("retry-after") == "1"

    token = mint(idp, "tf-down-then-up")
    assert http.get("/echo", headers=bearer(token)).status_code == 503
    sts.start()
    marker = new_marker()
    # New connections each time: both workers must have recovered.
    wait_until(lambda: all(http.get("/echo", headers=bearer(token, marker)).status_code == 200 for _ in range(4)),
               RECOVERY_DEADLINE, interval=0.25, what="requests to succeed once the STS is back")
    issued = {c.issued_token for c in sts.calls_with_subject_token(token) if c.ok}
    seen = upstream_authorization(upstream, marker)
    assert seen and {v.removeprefix("Bearer ") for v in seen} <= issued


def test_token_type_compared_case_insensitively(http: httpx.Client, idp: IdentityProvider,
                                                sts: SecurityTokenService, upstream: McpUpstream) -> None:
    sts.set_fault(StsFault.patched(token_type="bearer"))
    token, marker = mint(idp, "tf-lowercase-bearer"), new_marker()
    assert http.get("/echo", headers=bearer(token, marker)).status_code == 200
    (call,) = sts.calls_with_subject_token(token)
    assert upstream_authorization(upstream, marker) == [f"Bearer {call.issued_token}"]


def test_failure_is_not_remembered(http: httpx.Client, idp: IdentityProvider, sts: SecurityTokenService) -> None:
    """A failed exchange is not cached as a failure: the same token works once the STS does."""
    token = mint(idp, "tf-retry")
    sts.set_fault(StsFault.fail())
    assert http.get("/echo", headers=bearer(token)).status_code == 502
    sts.clear_fault()
    wait_until(lambda: all(http.get("/echo", headers=bearer(token)).status_code == 200 for _ in range(4)),
               RECOVERY_DEADLINE, interval=0.25, what="the same token to succeed once the STS answers")


def test_no_token_or_secret_in_envoy_log(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService) -> None:
    """Failed exchanges (whatever the STS answered) log neither tokens nor the secret."""
    log = envoy.log_text()
    assert AUDIT_MARK in log
    for token in [*idp.minted, *sts.issued]:
        assert token not in log
        assert token.rsplit(".", 1)[-1] not in log, "a token's signature appears in Envoy's log"
    assert SECRET not in log
