//! Wycheproof's ES256, ES384 and Ed25519 vectors through the filter's own verification path:
//! each vector's public key is written as a JWK, read by `KeySet::parse`, found by
//! `KeySet::lookup`, and the vector's message and signature checked with
//! `Jwk::verify_signature` (the raw-signature half of `Jwk::verify`).
//!
//! Every "valid" vector must verify and every "invalid" one must be refused. These sets have no
//! "acceptable" vectors; the tests fail if one appears, so that its handling is decided, not
//! inherited. Of note: the P1363 sets mark high-s signatures valid (no low-s rule), and every
//! signature that is not exactly 2 × the curve size is invalid.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mcp_auth_core::jwks::{Algorithm, Jwk, KeyLookup, KeySet, SignatureError};
use serde_json::{json, Value};
use wycheproof::TestResult;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The one key of a single-key JWKS, as a token naming `kid: "tv"` would find it.
fn key_from_jwk(jwk: Value, alg: Algorithm) -> Jwk {
    let doc = json!({ "keys": [jwk] }).to_string();
    let set = KeySet::parse(doc.as_bytes()).expect("the vector's public key is usable");
    match set.lookup(Some("tv"), alg) {
        KeyLookup::Candidates(keys) if keys.len() == 1 => keys[0].clone(),
        _ => panic!("no {alg:?} key in {doc}"),
    }
}

/// Counts of the vectors checked, by expected result.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    valid: usize,
    invalid: usize,
}

impl Tally {
    fn check(&mut self, key: &Jwk, alg: Algorithm, test: &Test<'_>) {
        let outcome = key.verify_signature(alg, test.msg, test.sig);
        let what = format!("{alg:?} tc {} ({})", test.tc_id, test.comment);
        match test.result {
            TestResult::Valid => {
                assert_eq!(outcome, Ok(()), "{what} must verify");
                self.valid += 1;
            }
            TestResult::Invalid => {
                assert_eq!(
                    outcome,
                    Err(SignatureError::Invalid),
                    "{what} must be refused"
                );
                self.invalid += 1;
            }
            TestResult::Acceptable => panic!("{what}: an acceptable vector, decide its fate"),
        }
    }
}

/// The fields the check needs, common to the ECDSA and EdDSA test types.
struct Test<'a> {
    tc_id: usize,
    comment: &'a str,
    msg: &'a [u8],
    sig: &'a [u8],
    result: TestResult,
}

fn ecdsa_vectors(name: wycheproof::ecdsa::TestName, alg: Algorithm, crv: &str) -> Tally {
    let set = wycheproof::ecdsa::TestSet::load(name).expect("test set");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        // SEC1 uncompressed: 0x04 ‖ x ‖ y, each coordinate full size as a JWK needs them.
        let point: &[u8] = &group.key.key;
        let (tag, xy) = point.split_first().expect("a point");
        assert_eq!(*tag, 0x04);
        let (x, y) = xy.split_at(xy.len() / 2);
        let jwk = json!({"kty": "EC", "crv": crv, "kid": "tv", "x": b64(x), "y": b64(y)});
        let key = key_from_jwk(jwk, alg);
        for test in &group.tests {
            tally.check(
                &key,
                alg,
                &Test {
                    tc_id: test.tc_id,
                    comment: &test.comment,
                    msg: &test.msg,
                    sig: &test.sig,
                    result: test.result,
                },
            );
        }
    }
    assert_eq!(tally.valid + tally.invalid, set.number_of_tests);
    tally
}

#[test]
fn wycheproof_es256_p1363() {
    let tally = ecdsa_vectors(
        wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363,
        Algorithm::ES256,
        "P-256",
    );
    assert!(tally.valid > 100 && tally.invalid > 50, "{tally:?}");
}

#[test]
fn wycheproof_es384_p1363() {
    let tally = ecdsa_vectors(
        wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384P1363,
        Algorithm::ES384,
        "P-384",
    );
    assert!(tally.valid > 100 && tally.invalid > 50, "{tally:?}");
}

#[test]
fn wycheproof_ed25519() {
    let set =
        wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).expect("test set");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "tv", "x": b64(&group.key.pk)});
        let key = key_from_jwk(jwk, Algorithm::EdDSA);
        for test in &group.tests {
            tally.check(
                &key,
                Algorithm::EdDSA,
                &Test {
                    tc_id: test.tc_id,
                    comment: &test.comment,
                    msg: &test.msg,
                    sig: &test.sig,
                    result: test.result,
                },
            );
        }
    }
    assert_eq!(tally.valid + tally.invalid, set.number_of_tests);
    assert!(tally.valid > 50 && tally.invalid > 50, "{tally:?}");
}
