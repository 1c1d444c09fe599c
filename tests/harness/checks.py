"""Helpers for reading the filter's answers: Bearer challenges, echoed headers, markers."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import httpx

from .mcp_upstream import MARKER_HEADER

_PARAM = re.compile(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"')


def new_marker() -> str:
    return uuid.uuid4().hex


def bearer(token: str, marker: str | None = None) -> dict[str, str]:
    headers = {"authorization": f"Bearer {token}"}
    if marker:
        headers[MARKER_HEADER] = marker
    return headers


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """`Bearer a="x", b="y"` -> ("Bearer", {"a": "x", "b": "y"})."""
    scheme, _, rest = value.partition(" ")
    return scheme, {k: v.replace('\\"', '"') for k, v in _PARAM.findall(rest)}


def challenge(response: httpx.Response) -> dict[str, str]:
    """The parameters of the response's single Bearer challenge."""
    values = response.headers.get_list("www-authenticate")
    assert len(values) == 1, f"expected one www-authenticate header, got {values}"
    scheme, params = parse_challenge(values[0])
    assert scheme == "Bearer", values[0]
    return params


def echoed(response: httpx.Response, name: str) -> list[str]:
    """Values of header `name` as the upstream's /echo route received them."""
    assert response.status_code == 200, (response.status_code, response.text)
    return [v for k, v in response.json()["headers"] if k.lower() == name.lower()]


def token_fingerprint(token: str) -> str:
    """What the audit line carries instead of the token: first 16 hex chars of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def json_body(response: httpx.Response) -> Any:
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    return response.json()
