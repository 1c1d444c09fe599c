#!/usr/bin/env python3
"""Writes seed corpora for the cargo-fuzz targets in fuzz/ (see scripts/fuzz.sh).

Seeds are real artefacts, made fresh with new keys each time: signed tokens of every accepted
algorithm and the classic hostile ones, JWKS documents good and broken, STS answers, and the
plugin configurations of envoy/*.yaml. Nothing here is committed: the corpora live in
fuzz/corpus/ (git-ignored).

  .venv/bin/python scripts/fuzz_seeds.py [fuzz/corpus]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

import jwt.algorithms
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

REPO = Path(__file__).resolve().parents[1]
# Must match the constants in fuzz/fuzz_targets/authenticator_decide.rs.
ISSUER = "https://idp.fuzz.example"
RESOURCE = "https://mcp.fuzz.example/mcp"
NOW = 1_800_000_000

ALGS = jwt.algorithms.get_default_algorithms()

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def jws(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, alg: str, key: Any) -> str:
    h = header if isinstance(header, bytes) else compact({**header, "alg": alg})
    p = payload if isinstance(payload, bytes) else compact(payload)
    signing_input = f"{b64url(h)}.{b64url(p)}"
    if alg == "none":
        sig = b""
    elif alg.startswith("HS"):
        sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    else:
        sig = ALGS[alg].sign(signing_input.encode(), key)
    return f"{signing_input}.{b64url(sig)}"


class Keys:
    def __init__(self) -> None:
        self.private: dict[str, tuple[str, PrivateKey]] = {
            "rsa-1": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "ps-1": ("PS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "ec-1": ("ES256", ec.generate_private_key(ec.SECP256R1())),
            "ec384-1": ("ES384", ec.generate_private_key(ec.SECP384R1())),
            "ed-1": ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
        }

    def jwk(self, kid: str, pin_alg: bool = True) -> dict[str, Any]:
        alg, key = self.private[kid]
        jwk = ALGS[alg].to_jwk(key.public_key(), as_dict=True)
        jwk.update(kid=kid, use="sig")
        if pin_alg:
            jwk["alg"] = alg
        return jwk

    def jwks(self, kids: list[str] | None = None) -> dict[str, Any]:
        return {"keys": [self.jwk(k) for k in (kids or list(self.private))]}

    def sign(self, kid: str, **claims: Any) -> str:
        alg, key = self.private[kid]
        return jws({"typ": "JWT", "kid": kid}, {**claims_at(), **claims}, alg, key)

    def pem(self, kid: str) -> bytes:
        return self.private[kid][1].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def claims_at(now: int = NOW) -> dict[str, Any]:
    return {"iss": ISSUER, "sub": "alice", "aud": RESOURCE, "exp": now + 300, "iat": now - 10, "nbf": now - 10,
            "scp": ["mcp:tools:call"], "client_id": "fuzz-client", "org": {"id": "o1"}}


def tokens(keys: Keys) -> list[str]:
    good = [keys.sign(kid) for kid in keys.private]
    rsa_token = good[0]
    h, p, s = rsa_token.split(".")
    out = [
        *good,
        keys.sign("rsa-1", aud=["x", RESOURCE], scope="mcp:tools:call extra"),
        keys.sign("rsa-1", iss=ISSUER + "/"),
        keys.sign("rsa-1", exp=NOW - 1000),
        keys.sign("rsa-1", exp=1e300, nbf=0, iat=0.5),
        keys.sign("rsa-1", exp=18446744073709551616),
        keys.sign("rsa-1", exp="1800000300"),
        keys.sign("rsa-1", aud=7),
        keys.sign("rsa-1", scp=[]),
        keys.sign("rsa-1", sub="a\r\nx-injected: 1"),
        keys.sign("rsa-1", deep=json.loads("[" * 100 + "]" * 100)),
        jws({"kid": "rsa-1"}, claims_at(), "none", None),
        jws({"kid": "rsa-1"}, claims_at(), "HS256", keys.pem("rsa-1")),
        jws({"kid": "rsa-1", "crit": ["b64"], "b64": False}, claims_at(), "RS256", keys.private["rsa-1"][1]),
        jws({"kid": "ec-1"}, claims_at(), "RS256", keys.private["rsa-1"][1]),
        jws({"kid": "unknown"}, claims_at(), "RS256", keys.private["rsa-1"][1]),
        jws({"kid": "rsa-1", "typ": "JOSE"}, claims_at(), "RS256", keys.private["rsa-1"][1]),
        jws(b'{"alg":"RS256","kid":"rsa-1","alg":"none"}', claims_at(), "RS256", keys.private["rsa-1"][1]),
        jws({"kid": "rsa-1"}, b'{"exp":1,"exp":99999999999,"iss":"' + ISSUER.encode() + b'"}', "RS256",
            keys.private["rsa-1"][1]),
        f"{h}.{p}",
        f"{h}.{p}.{s}.{s}.{s}",
        f"{h}=.{p}.{s}",
        f"{h}.{p}.{s}==",
        f"{h} .{p}.{s}",
        f"{h}.{p}.{s[:-4]}",
        f"{h}.{b64url(b'{' * 2000)}.{s}",
        f"{h}.{b64url(bytes([0xff, 0xfe, 0x7b]))}.{s}",
        keys.sign("rsa-1", padding="x" * 17000),
    ]
    return out


def bearer_headers(token: str) -> list[str]:
    return [f"Bearer {token}", f"bearer   {token}", f"BEARER\t{token}", f"Bearer {token} extra", f"Basic {token}",
            f"Bearer  {token}  "]


def jwks_documents(keys: Keys) -> list[bytes]:
    full = keys.jwks()
    rsa_jwk = keys.jwk("rsa-1")
    variants: list[Any] = [
        full,
        {"keys": [keys.jwk("rsa-1", pin_alg=False)]},
        {"keys": [keys.jwk("ec-1")]},
        {"keys": [keys.jwk("ed-1")]},
        {"keys": []},
        {"keys": {}},
        {"keys": [{**rsa_jwk, "n": "!!!"}]},
        {"keys": [{**rsa_jwk, "e": ""}]},
        {"keys": [{**rsa_jwk, "e": b64url(b"\x00" * 9 + b"\x01")}]},
        {"keys": [{**rsa_jwk, "n": b64url(b"\xff" * 64)}]},
        {"keys": [{**rsa_jwk, "n": b64url(b"\xff" * 1100)}]},
        {"keys": [{**rsa_jwk, "kty": "oct", "k": b64url(b"secret")}]},
        {"keys": [{**rsa_jwk, "kty": "XYZ"}]},
        {"keys": [{**rsa_jwk, "alg": "ES256"}]},
        {"keys": [{**rsa_jwk, "use": "enc"}]},
        {"keys": [{**rsa_jwk, "key_ops": ["encrypt"]}]},
        {"keys": [{**keys.jwk("ec-1"), "crv": "P-521"}]},
        {"keys": [{**keys.jwk("ec-1"), "x": b64url(b"\x00" * 32)}]},
        {"keys": [rsa_jwk, {**rsa_jwk, "kid": "rsa-1"}]},
        {"keys": [rsa_jwk] * 70},
        [],
        "keys",
    ]
    docs = [compact(v) for v in variants]
    docs.append(b'{"keys":[' + compact(rsa_jwk) + b"]," + b'"pad":"' + b"x" * 300_000 + b'"}')
    docs.append(b"not json")
    return docs


def sts_bodies() -> list[bytes]:
    ok = {"access_token": "backend.jwt.token", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
          "token_type": "Bearer", "expires_in": 300}
    variants: list[Any] = [
        ok, {**ok, "token_type": "bearer"}, {**ok, "expires_in": -5}, {**ok, "expires_in": 1e300},
        {**ok, "expires_in": "300"}, {**ok, "expires_in": None}, {**ok, "expires_in": 0.5},
        {**ok, "access_token": ""}, {**ok, "access_token": "a\r\nb"}, {**ok, "access_token": 7},
        {**ok, "access_token": "x" * 20000}, {**ok, "token_type": "N_A"},
        {k: v for k, v in ok.items() if k != "token_type"},
        {"error": "invalid_grant"}, {"error": "invalid_scope"}, {"error": "<script>"}, [ok],
    ]
    bodies = [compact(v) for v in variants]
    bodies += [b"", b"not json", b'{"access_token":"t","token_type":"Bearer"', compact({**ok, "pad": "x" * 70_000})]
    return bodies


def configs() -> list[bytes]:
    out = []
    for name in ("envoy.yaml", "okta-same-idp.yaml", "google-sts.yaml"):
        doc = yaml.safe_load((REPO / "envoy" / name).read_text())
        (listener,) = doc["static_resources"]["listeners"]
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        for f in hcm["http_filters"]:
            if f["name"] == "envoy.filters.http.wasm":
                out.append(f["typed_config"]["config"]["configuration"]["value"].encode())
    base = json.loads(out[0]) if out else {}
    if base:
        prov = next(iter(base["providers"].values()))
        variants = [
            {**base, "max_token_bytes": 1},
            {**base, "bypass_paths": [{"prefix": "/public/"}, {"exact": "/healthz"}]},
            {**base, "resource": "http://[::1]:8080/mcp?x=1"},
            {**base, "providers": {"p": {**prov, "remote_jwks": None}}},
            {**base, "providers": {"p": {k: v for k, v in prov.items() if k != "remote_jwks"}}},
            {**base, "providers": {"p": {**{k: v for k, v in prov.items() if k != "remote_jwks"},
                                         "oidc_discovery": {"cluster": "idp", "timeout": "1.5s"}}}},
            {**base, "providers": {"p": {**{k: v for k, v in prov.items() if k != "remote_jwks"},
                                         "local_jwks": {"inline_string": json.dumps(Keys().jwks(["ec-1"]))}}}},
            {**base, "unknown": 1},
        ]
        out += [compact(v) for v in variants]
    out += [b"{}", b"[]", b"null", b'{"resource":"http://x/mcp","providers":{}}']
    return out


def write(corpus: Path, target: str, seeds: list[bytes]) -> None:
    directory = corpus / target
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (directory / f"seed-{hashlib.sha256(seed).hexdigest()[:16]}").write_bytes(seed)


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "fuzz" / "corpus"
    keys = Keys()
    toks = tokens(keys)
    jwks_doc = compact(keys.jwks())
    headers = [h for t in toks for h in bearer_headers(t)]
    write(corpus, "jwt_parse", [t.encode() for t in toks] + [h.encode() for h in headers[:40]])
    write(corpus, "authenticator_decide",
          [jwks_doc + b"\x00" + f"Bearer {t}".encode() for t in toks]
          + [jwks_doc + b"\x00" + h.encode() for h in headers[:30]])
    docs = jwks_documents(keys)
    write(corpus, "jwks_parse", docs)
    discovery = compact({"issuer": ISSUER, "jwks_uri": "https://idp.fuzz.example/keys?v=1"})
    write(corpus, "jwks_cache", [bytes([flags]) + cc + b"\x00" + body
                                 for flags, cc, body in [(0, b"max-age=300", jwks_doc), (0, b"no-store", jwks_doc),
                                                         (0, b"public, max-age=\"99999999999\"", jwks_doc),
                                                         (1, b"", discovery), (2, b"", b"oops"), (0, b"", docs[6])]])
    exp = (NOW + 3600).to_bytes(8, "big")
    write(corpus, "sts_accept", [bytes([status]) + exp + body for body in sts_bodies() for status in (1, 134)]
          + [bytes([0]) + exp, bytes([168]) + exp])
    write(corpus, "config_parse", configs())
    print(f"fuzz seeds written under {corpus}")


if __name__ == "__main__":
    main()
