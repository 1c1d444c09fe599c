"""How the test STS misbehaves: one value, `StsFault`, that the STS reads at the start of every
token-endpoint call (every flavour). `StsFault()` is no fault: the answer RFC 8693 calls for.
The test introspection endpoint (introspection.py) reads the same faults.

  delay    seconds to wait before answering; stopping the STS meanwhile ends the call with no
           answer at all
  answer   (status, body) sent instead of any exchange: a dict as JSON with
           `cache-control: no-store`, bytes exactly as given (as application/json)
  patch    members merged into a successful answer (a value of None removes the member)
  headers  extra response headers on every answer (values may hold any latin-1 byte)

The named constructors are the faults the suites use most; combine fields for anything else,
e.g. `StsFault(delay=2, answer=(503, {...}))`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .rfc8693 import ACCESS_TOKEN_TYPE

OVERSIZED_PADDING = 256 * 1024  # bytes added by `oversized()`: far beyond any token response

Body = Mapping[str, Any] | bytes


@dataclass(frozen=True)
class StsFault:
    delay: float = 0.0
    answer: tuple[int, Body] | None = None
    patch: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    # ---- the usual faults ------------------------------------------------------------------

    @classmethod
    def fail(cls) -> StsFault:
        """500 server_error."""
        return cls(answer=(500, {"error": "server_error", "error_description": "the STS failed"}))

    @classmethod
    def unavailable(cls) -> StsFault:
        """503 temporarily_unavailable."""
        return cls(answer=(503, {"error": "temporarily_unavailable", "error_description": "try again later"}))

    @classmethod
    def gateway_timeout(cls) -> StsFault:
        """504, as a gateway in front of a stuck STS answers."""
        return cls(answer=(504, {"error": "gateway_timeout"}))

    @classmethod
    def reject(cls) -> StsFault:
        """400 invalid_grant for every call: the subject token is refused."""
        return cls(answer=(400, {"error": "invalid_grant", "error_description": "subject token rejected"}))

    @classmethod
    def refuse(cls, status: int = 400, error: str = "invalid_scope") -> StsFault:
        """`status` with OAuth error `error` for every call (e.g. 400 invalid_scope)."""
        return cls(answer=(status, {"error": error, "error_description": "refused by policy"}))

    @classmethod
    def slow(cls, delay: float = 3.0) -> StsFault:
        """The correct answer, `delay` seconds late."""
        return cls(delay=delay)

    @classmethod
    def garbage(cls) -> StsFault:
        """200 with a body that is not JSON."""
        return cls.raw(200, b"<html><body>this is not JSON</body></html>")

    @classmethod
    def no_access_token(cls) -> StsFault:
        """200 JSON without access_token."""
        return cls(answer=(200, {"issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer", "expires_in": 300}))

    @classmethod
    def non_bearer(cls) -> StsFault:
        """The correct answer with token_type "N_A"."""
        return cls.patched(token_type="N_A")

    @classmethod
    def oversized(cls) -> StsFault:
        """The correct answer padded with a 256 KiB extra member."""
        return cls.patched(padding="x" * OVERSIZED_PADDING)

    @classmethod
    def raw(cls, status: int, body: bytes) -> StsFault:
        """Exactly `status` and `body` for every call (malformed JSON, odd statuses)."""
        return cls(answer=(status, body))

    @classmethod
    def patched(cls, **members: Any) -> StsFault:
        """The correct answer with `members` merged in (None removes one), e.g. expires_in=-5."""
        return cls(patch=members)

    # ---- applying it -----------------------------------------------------------------------

    def patch_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """A successful answer with `patch` merged in."""
        patched = dict(body)
        for name, value in self.patch.items():
            if value is None:
                patched.pop(name, None)
            else:
                patched[name] = value
        return patched


NO_FAULT = StsFault()
