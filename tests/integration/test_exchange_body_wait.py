"""A request with a body waits for its token exchange whole: a body chunk (or trailers) arriving
while the STS is being asked must not resume the request with the client's own token. It goes
upstream once, after the exchange, with `Authorization: Bearer <backend token>`.

Regression: a body chunk arriving while the request waited resumed it unrewritten.
The stack: envoy/okta-same-idp.yaml (5 s exchange deadline) with an STS that answers after 1 s.
"""

from __future__ import annotations

import httpx
import pytest

from harness import Envoy, IdentityProvider, McpUpstream, SecurityTokenService
from harness.checks import bearer, new_marker
from harness.exchange import OKTA, ExchangeProfile, mint, upstream_authorization
from harness.h2_post import post_with_trailers
from harness.raw_post import Answer, post_in_pieces
from harness.sts_fault import StsFault

STS_DELAY = 1.0  # seconds; the body's pieces all arrive before the STS answers
PIECES = [b'{"query":', b'"select 1",', b'"limit":', b"10}"]
PAUSE = 0.2

pytestmark = pytest.mark.usefixtures("sts_restored", "vm_never_fails")


@pytest.fixture(scope="module")
def exchange() -> ExchangeProfile:
    return OKTA


def _assert_forwarded_with_backend_token(answer: Answer, upstream: McpUpstream, sts: SecurityTokenService,
                                         token: str, marker: str) -> None:
    (seen,) = upstream.seen(marker)
    assert not any(token in value for _, value in seen["headers"]), "the client's token went upstream"
    (call,) = sts.calls_with_subject_token(token)
    assert upstream_authorization(upstream, marker) == [f"Bearer {call.issued_token}"]
    assert seen["method"] == "POST"
    assert answer.status == 200, answer.body
    assert answer.seconds >= STS_DELAY * 0.9, "the request did not wait for the exchange"


@pytest.mark.parametrize("framing", ["content-length-at-once", "content-length-in-pieces", "chunked"])
def test_http1_body_during_exchange(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService,
                                    upstream: McpUpstream, framing: str) -> None:
    sts.set_fault(StsFault.slow(STS_DELAY))
    token, marker = mint(idp, f"body-wait-{framing}"), new_marker()
    pieces = [b"".join(PIECES)] if framing == "content-length-at-once" else PIECES

    answer = post_in_pieces(envoy.listener_port, "/echo", {**bearer(token, marker), "content-type": "application/json"},
                            pieces, pause=0.0 if framing == "content-length-at-once" else PAUSE,
                            chunked=framing == "chunked")

    _assert_forwarded_with_backend_token(answer, upstream, sts, token, marker)


@pytest.mark.parametrize("pieces", [PIECES, []], ids=["body-and-trailers", "trailers-only"])
def test_http2_trailers_during_exchange(envoy: Envoy, idp: IdentityProvider, sts: SecurityTokenService,
                                        upstream: McpUpstream, pieces: list[bytes]) -> None:
    sts.set_fault(StsFault.slow(STS_DELAY))
    token, marker = mint(idp, f"body-wait-h2-{len(pieces)}"), new_marker()

    answer = post_with_trailers(envoy.listener_port, "/echo",
                                {**bearer(token, marker), "content-type": "application/json"}, pieces,
                                {"x-body-checksum": "0123abcd"}, pause=PAUSE)

    _assert_forwarded_with_backend_token(answer, upstream, sts, token, marker)


def test_body_without_wait_still_forwarded(http: httpx.Client, idp: IdentityProvider, sts: SecurityTokenService,
                                           upstream: McpUpstream) -> None:
    """The exchanged token cached: the same request, its body included, goes straight on."""
    token, marker = mint(idp, "body-cached"), new_marker()
    assert http.get("/echo", headers=bearer(token)).status_code == 200
    response = http.post("/echo", headers=bearer(token, marker), content=b"".join(PIECES))
    assert response.status_code == 200, response.text
    (call,) = sts.calls_with_subject_token(token)
    assert upstream_authorization(upstream, marker) == [f"Bearer {call.issued_token}"]
