"""Mints tokens.json for the verify-wasm benchmark: one JWKS and one token per algorithm.

Run once with the project's venv (`.venv/bin/python tests/bench/verify-wasm/mint.py`); the
output is committed so that every run verifies the same tokens.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

OUT = Path(__file__).resolve().parent / "tokens.json"
CLAIMS = {"iss": "https://idp.bench.example", "aud": "https://mcp.bench.example/mcp", "sub": "bench"}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def int_b64(value: int, size: int) -> str:
    return b64(value.to_bytes(size, "big"))


def main() -> None:
    keys: list[dict[str, Any]] = []
    tokens: dict[str, str] = {}

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = rsa_key.public_key().public_numbers()
    keys.append({"kty": "RSA", "kid": "rsa", "n": int_b64(numbers.n, 256), "e": int_b64(numbers.e, 3)})
    tokens["RS256"] = jwt.encode(CLAIMS, rsa_key, algorithm="RS256", headers={"kid": "rsa"})

    for alg, curve, size, crv in [("ES256", ec.SECP256R1(), 32, "P-256"), ("ES384", ec.SECP384R1(), 48, "P-384")]:
        ec_key = ec.generate_private_key(curve)
        point = ec_key.public_key().public_numbers()
        kid = alg.lower()
        keys.append({"kty": "EC", "crv": crv, "kid": kid, "x": int_b64(point.x, size), "y": int_b64(point.y, size)})
        tokens[alg] = jwt.encode(CLAIMS, ec_key, algorithm=alg, headers={"kid": kid})

    ed_key = ed25519.Ed25519PrivateKey.generate()
    raw = ed_key.public_key().public_bytes_raw()
    keys.append({"kty": "OKP", "crv": "Ed25519", "kid": "eddsa", "x": b64(raw)})
    tokens["EdDSA"] = jwt.encode(CLAIMS, ed_key, algorithm="EdDSA", headers={"kid": "eddsa"})

    OUT.write_text(json.dumps({"jwks": {"keys": keys}, "tokens": tokens}, indent=1) + "\n")


if __name__ == "__main__":
    main()
