"""Counters on Envoy's admin and audit lines on Envoy's log; no token ever in the log.

The last test scans the log for every token this module's IdP minted, so it stays last.
"""

from __future__ import annotations

import time

import httpx

from harness import Envoy, IdentityProvider
from harness.checks import bearer, new_marker, token_fingerprint
from harness.envoy import AUDIT_MARK
from harness.idp import new_rsa_key

# Every field the README documents for the audit line of an allowed request (`reason` is only
# on denials).
AUDIT_FIELDS = {"audit", "outcome", "status", "user", "client_id", "issuer", "method", "path",
                "latency_ms", "auth_ms", "token_sha256", "cache"}


def test_allowed_request_audit_line(http: httpx.Client, envoy: Envoy, idp: IdentityProvider) -> None:
    token = idp.mint(sub="audited-user", client_id="audit-client")
    assert http.get("/echo", headers=bearer(token)).status_code == 200

    fingerprint = token_fingerprint(token)
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == fingerprint)
    missing = AUDIT_FIELDS - line.keys()
    assert not missing, f"audit line lacks {sorted(missing)}: {line}"
    assert line["audit"] == "mcp_auth_filter"
    assert (line["outcome"], line["status"]) == ("allow", 200), line
    assert "reason" not in line, line
    assert line["user"] == "audited-user"
    assert line["client_id"] == "audit-client"
    assert line["issuer"] == idp.issuer
    assert (line["method"], line["path"]) == ("GET", "/echo")
    assert isinstance(line["latency_ms"], int) and line["latency_ms"] >= line["auth_ms"] >= 0
    assert line["cache"] in ("hit", "miss")


def test_denied_request_audit_line(http: httpx.Client, envoy: Envoy, idp: IdentityProvider) -> None:
    now = int(time.time())
    token = idp.mint(sub="expired-user", exp=now - 3600, iat=now - 7200, nbf=now - 7200)
    assert http.get("/echo", headers=bearer(token)).status_code == 401

    fingerprint = token_fingerprint(token)
    line = envoy.wait_for_audit(lambda a: a.get("token_sha256") == fingerprint)
    assert (line["outcome"], line["status"], line["reason"]) == ("deny", 401, "token_expired")


def test_missing_token_bypass_and_metadata_audit_lines(http: httpx.Client, envoy: Envoy) -> None:
    path = f"/echo/{new_marker()}"  # unique, so this request's line can be found
    assert http.get(path).status_code == 401
    line = envoy.wait_for_audit(lambda a: a.get("path") == path)
    assert (line["outcome"], line["status"], line["reason"]) == ("deny", 401, "missing_token")

    bypass_path = f"/public/{new_marker()}"
    assert http.get(bypass_path).status_code == 200
    assert http.get("/.well-known/oauth-protected-resource/mcp").status_code == 200
    bypass = envoy.wait_for_audit(lambda a: a.get("path") == bypass_path)
    metadata = envoy.wait_for_audit(lambda a: a.get("outcome") == "metadata")
    assert (bypass["outcome"], bypass["status"]) == ("bypass", 200), bypass
    assert metadata["status"] == 200, metadata


def test_counters(http: httpx.Client, envoy: Envoy, idp: IdentityProvider) -> None:
    before = envoy.stats()

    assert http.get("/echo", headers=bearer(idp.mint())).status_code == 200
    assert http.get("/echo").status_code == 401
    assert http.get("/healthz").status_code == 200
    assert http.get("/.well-known/oauth-protected-resource").status_code == 200

    for name in ("mcp_auth.allowed", "mcp_auth.denied.missing_token",
                 "mcp_auth.bypassed", "mcp_auth.metadata_served"):
        envoy.wait_for_counter(name, before.get(name, 0) + 1)
    after = envoy.stats()
    assert after["mcp_auth.jwks_fetch.ok"] >= 1
    assert after.get("mcp_auth.jwks_fetch.failed", 0) == 0


def test_jwt_cache_hit_on_repeated_token(envoy: Envoy, idp: IdentityProvider) -> None:
    token = idp.mint(sub="cached-user")
    before = envoy.stats()
    # One keep-alive connection: all three requests land on the same worker and its cache.
    with httpx.Client(base_url=envoy.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/echo", headers=bearer(token)).status_code == 200
    envoy.wait_for_counter("mcp_auth.jwt_cache.miss", before.get("mcp_auth.jwt_cache.miss", 0) + 1)
    envoy.wait_for_counter("mcp_auth.jwt_cache.hit", before.get("mcp_auth.jwt_cache.hit", 0) + 2)
    caches = [a["cache"] for a in envoy.audit_lines() if a.get("token_sha256") == token_fingerprint(token)]
    assert caches == ["miss", "hit", "hit"]


def test_no_raw_token_in_envoy_log(http: httpx.Client, envoy: Envoy, idp: IdentityProvider) -> None:
    """Neither accepted nor refused tokens (of any kind) may be written to Envoy's log."""
    now = int(time.time())
    for token in (idp.mint(), idp.mint(exp=now - 3600), idp.mint(key=new_rsa_key()), idp.mint(kid="nope"),
                  idp.mint(aud="http://127.0.0.1:1/x"), idp.mint(scp=[]), idp.mint(padding="p" * 20000)):
        assert http.get("/echo", headers=bearer(token)).status_code in (200, 401, 403)
    envoy.wait_for_audit(lambda a: a.get("token_sha256") == token_fingerprint(idp.minted[-1]))

    log = envoy.log_text()
    assert AUDIT_MARK in log  # the log really was captured
    for token in idp.minted:  # every token this module's tests sent
        signature = token.rsplit(".", 1)[1]
        assert token not in log
        assert signature not in log, "a token's signature appears in Envoy's log"
