//! RFC 7638 JWK thumbprints: SHA-256 over the JSON object of a key's required members, in
//! lexicographic order, without whitespace. Two JWKs of the same key have the same thumbprint
//! whatever their `kid`, `alg`, `use` or member order.
//!
//! The members are re-encoded from the decoded key, with an RSA `n` and `e` stripped of leading
//! zero octets (RFC 7518 §6.3.1 forbids them), so a JWK that carries them anyway still gets
//! the key's one thumbprint.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// SHA-256 JWK thumbprint (RFC 7638).
pub type Thumbprint = [u8; 32];

pub fn rsa(n: &[u8], e: &[u8]) -> Thumbprint {
    let (n, e) = (b64(without_leading_zeros(n)), b64(without_leading_zeros(e)));
    sha256(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#))
}

/// `crv` is one of the names `KeySet::parse` accepts ("P-256", "P-384"): no JSON escaping needed.
pub fn ec(crv: &str, x: &[u8], y: &[u8]) -> Thumbprint {
    let (x, y) = (b64(x), b64(y));
    sha256(&format!(
        r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#
    ))
}

/// RFC 8037 §2: the required members of an OKP key are `crv`, `kty` and `x`.
pub fn okp(crv: &str, x: &[u8]) -> Thumbprint {
    let x = b64(x);
    sha256(&format!(r#"{{"crv":"{crv}","kty":"OKP","x":"{x}"}}"#))
}

fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(canonical_json: &str) -> Thumbprint {
    Sha256::digest(canonical_json.as_bytes()).into()
}
