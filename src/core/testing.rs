//! Fixtures for unit tests, hostile tests and fuzz targets: real keys (generated once per test
//! binary; RSA generation is slow) and their JWK forms. Built only with `cfg(test)` or the
//! `testing` feature, never into the filter.

// Fixtures may panic: a broken fixture should stop the test at once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::Value;

pub fn rsa() -> &'static RS256KeyPair {
    static KEY: OnceLock<RS256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| RS256KeyPair::generate(2048).unwrap().with_key_id("rsa-1"))
}

pub fn rsa_other() -> &'static RS256KeyPair {
    static KEY: OnceLock<RS256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| RS256KeyPair::generate(2048).unwrap().with_key_id("rsa-2"))
}

pub fn rsa_jwk(key: &RS256KeyPair, kid: &str, alg: Option<&str>) -> Value {
    let c = key.public_key().to_components();
    let mut v = serde_json::json!({
        "kty": "RSA", "use": "sig", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(c.n), "e": URL_SAFE_NO_PAD.encode(c.e),
    });
    if let Some(a) = alg {
        v["alg"] = a.into();
    }
    v
}

pub fn ec256_jwk(key: &ES256KeyPair, kid: &str) -> Value {
    let sec1 = key.public_key().public_key().to_bytes_uncompressed();
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&sec1[1..33]), "y": URL_SAFE_NO_PAD.encode(&sec1[33..65]),
    })
}

pub fn ec384_jwk(key: &ES384KeyPair, kid: &str) -> Value {
    let sec1 = key.public_key().public_key().to_bytes_uncompressed();
    serde_json::json!({
        "kty": "EC", "crv": "P-384", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&sec1[1..49]), "y": URL_SAFE_NO_PAD.encode(&sec1[49..97]),
    })
}

pub fn ed25519_jwk(key: &Ed25519KeyPair, kid: &str) -> Value {
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(key.public_key().to_bytes()),
    })
}

pub fn jwks(keys: Vec<Value>) -> Vec<u8> {
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}
