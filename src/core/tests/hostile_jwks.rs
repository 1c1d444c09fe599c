//! Hostile JWKS documents and keys against `KeySet::parse` and key lookup: keys of unknown or
//! unsafe types, bad encodings and sizes, malformed documents and very many keys.
//!
//! Crashes found by the `jwks_parse` fuzz target are added here with the crashing input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jwt_simple::prelude::RSAKeyPairLike;
use mcp_auth_core::jwks::{Algorithm, KeyLookup, KeySet, MAX_JWKS_BYTES};
use mcp_auth_core::testing::{b64url, jwks, rsa, rsa_jwk, rsa_other, standard_claims};
use serde_json::{json, Value};

#[test]
fn malformed_jwks_keys_are_skipped_and_an_empty_set_refused() {
    let good = rsa_jwk(rsa(), "good", None);
    let with = |field: &str, value: Value| {
        let mut k = rsa_jwk(rsa(), "bad", None);
        k[field] = value;
        k
    };
    let without = |field: &str| {
        let mut k = rsa_jwk(rsa(), "bad", None);
        k.as_object_mut().map(|o| o.remove(field));
        k
    };
    let c = rsa().public_key().to_components();
    let bad_keys = vec![
        with("n", json!("!!!")),
        with("n", json!("")),
        with("n", json!(7)),
        with("n", json!(b64url([0xffu8; 128]))),  // 1024 bits
        with("n", json!(b64url([0xffu8; 1025]))), // 8200 bits
        with("n", json!(STANDARD.encode(&c.n))),  // standard alphabet with padding
        with("e", json!("")),
        with("e", json!(b64url([0u8]))),
        with("e", json!(b64url([1u8]))),
        with("e", json!(b64url([1u8; 9]))),
        with("e", json!("AQAB=")),
        without("n"),
        without("e"),
        without("kty"),
        with("kty", json!("XYZ")),
        with("kty", json!("rsa")),
        with("kty", json!(null)),
        with("kty", json!("oct")),
        with("use", json!("enc")),
        with("use", json!(1)),
        with("key_ops", json!(["encrypt"])),
        with("key_ops", json!("verify")),
        with("alg", json!("none")),
        with("alg", json!("HS256")),
        with("alg", json!("ES256")),
        with("kid", json!(7)),
        json!({"kty": "oct", "k": b64url("secret"), "kid": "hmac"}),
        json!({"kty": "EC", "crv": "P-521", "x": b64url([1u8; 66]), "y": b64url([1u8; 66])}),
        json!({"kty": "EC", "crv": "P-256", "x": b64url([0u8; 32]), "y": b64url([0u8; 32])}),
        json!({"kty": "EC", "crv": "P-256", "x": b64url([1u8; 31]), "y": b64url([1u8; 33])}),
        json!({"kty": "OKP", "crv": "X25519", "x": b64url([9u8; 32])}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64url([9u8; 31])}),
        json!({"kty": "OKP", "crv": "Ed448", "x": b64url([9u8; 57])}),
        json!(null),
        json!("RSA"),
        json!([]),
    ];
    let count = bad_keys.len();
    let mut keys = bad_keys.clone();
    keys.push(good);
    let set = KeySet::parse(&jwks(keys)).expect("one good key");
    assert_eq!(set.len(), 1);
    assert_eq!(set.skipped, count);
    assert!(set.contains_kid("good"));
    assert!(!set.contains_kid("bad"));
    // Only bad keys: no key set at all.
    assert!(KeySet::parse(&jwks(bad_keys)).is_err());
}

#[test]
fn malformed_jwks_documents_are_errors() {
    let deep = format!("{{\"keys\":{}{}}}", "[".repeat(50_000), "]".repeat(50_000));
    let huge = format!(
        r#"{{"keys":[{}],"pad":"{}"}}"#,
        rsa_jwk(rsa(), "k", None),
        "x".repeat(MAX_JWKS_BYTES)
    );
    for doc in [
        b"".to_vec(),
        b"not json".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        br#"{"keys":[]}"#.to_vec(),
        br#"{"keys":{}}"#.to_vec(),
        br#"{"keys":null}"#.to_vec(),
        br#"{"Keys":[]}"#.to_vec(),
        deep.into_bytes(),
        huge.into_bytes(),
        vec![0xff; 100],
        vec![b' '; MAX_JWKS_BYTES + 1],
    ] {
        assert!(
            KeySet::parse(&doc).is_err(),
            "{:.40}",
            String::from_utf8_lossy(&doc)
        );
    }
}

#[test]
fn jwks_with_many_keys_is_bounded_and_duplicates_are_harmless() {
    let mut keys: Vec<Value> = (0..200)
        .map(|i| rsa_jwk(rsa(), &format!("k{i}"), None))
        .collect();
    keys.push(rsa_jwk(rsa(), "last", None));
    let set = KeySet::parse(&jwks(keys)).expect("keys");
    assert_eq!(set.len(), 64);
    assert!(!set.contains_kid("last"));
    // Two keys under one kid: both are candidates, the right one verifies.
    let impostor = rsa_jwk(rsa_other(), "rsa-1", None);
    let set = KeySet::parse(&jwks(vec![impostor, rsa_jwk(rsa(), "rsa-1", None)])).expect("keys");
    let KeyLookup::Candidates(keys) = set.lookup(Some("rsa-1"), Algorithm::RS256) else {
        panic!("candidates expected")
    };
    assert_eq!(keys.len(), 2);
    let token = rsa().sign(standard_claims()).expect("token");
    assert!(keys
        .iter()
        .any(|k| k.verify(Algorithm::RS256, &token).is_ok()));
}
