"""Signing keys, their JWKS, and tokens minted on every core, for `make bench`."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://idp.bench.example"
RESOURCE = "https://mcp.bench.example/mcp"


@dataclass(frozen=True)
class SigningKey:
    """One algorithm's key: its PEM (to hand to minting workers) and its public JWKS."""

    alg: str
    kid: str
    pem: bytes
    jwks: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _int_bytes(n: int, size: int | None = None) -> bytes:
    return n.to_bytes(size or (n.bit_length() + 7) // 8, "big")


def new_key(alg: str) -> SigningKey:
    """A fresh key for RS256, ES256 or EdDSA, with the JWK Envoy and the filter both read."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    kid = f"bench-{alg.lower()}"
    jwk: dict[str, Any]
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = private.public_key().public_numbers()
        jwk = {"kty": "RSA", "n": _b64(_int_bytes(numbers.n)), "e": _b64(_int_bytes(numbers.e))}
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        point = private.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": _b64(_int_bytes(point.x, 32)), "y": _b64(_int_bytes(point.y, 32))}
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}
    else:
        raise ValueError(f"no bench key for {alg}")
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    jwks = json.dumps({"keys": [{**jwk, "kid": kid, "alg": alg, "use": "sig"}]})
    return SigningKey(alg=alg, kid=kid, pem=pem, jwks=jwks)


_WORKER_KEY: tuple[Any, str, str] | None = None  # (private key, alg, kid) of a minting worker


def _init_worker(pem: bytes, alg: str, kid: str) -> None:
    global _WORKER_KEY
    _WORKER_KEY = (serialization.load_pem_private_key(pem, password=None), alg, kid)


def _mint_range(args: tuple[str, int, int, dict[str, Any]]) -> list[str]:
    prefix, start, count, extra = args
    if _WORKER_KEY is None:
        raise RuntimeError("minting worker started without its key")
    key, alg, kid = _WORKER_KEY
    exp = int(time.time()) + 3 * 3600
    return [
        jwt.encode({"iss": ISSUER, "aud": RESOURCE, "sub": f"{prefix}-{i}", "exp": exp, "iat": exp - 3 * 3600,
                    **extra}, key, algorithm=alg, headers={"kid": kid})
        for i in range(start, start + count)
    ]


def mint(key: SigningKey, prefix: str, count: int, extra: dict[str, Any] | None = None) -> list[str]:
    """`count` distinct tokens (one per user `<prefix>-<n>`), minted on every core."""
    workers = os.cpu_count() or 1
    chunk = max(1, -(-count // (workers * 8)))
    jobs = [(prefix, start, min(chunk, count - start), extra or {}) for start in range(0, count, chunk)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(key.pem, key.alg, key.kid)) as pool:
        return [t for part in pool.map(_mint_range, jobs) for t in part]
