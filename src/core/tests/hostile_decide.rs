//! Hostile tokens against the authenticator end to end (`Authenticator::decide` with the
//! standard configuration and every test key): forged or relabelled signatures, algorithms that
//! do not fit the key, unknown keys, and claims built to pass the issuer, audience or header
//! checks. Every case must end in the right refusal (or the documented acceptance).
//!
//! Crashes found by the `authenticator_decide` fuzz target are added here with the crashing
//! input.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{assert_allowed, assert_refused, decide_token};
use jwt_simple::prelude::*;
use mcp_auth_core::authenticator::Decision;
use mcp_auth_core::jwt::TokenError;
use mcp_auth_core::testing::{
    b64url, ed25519, es256, rsa, rsa_jwk, rsa_other, rsa_token_with_payload, standard_claims,
    standard_payload, unsigned_token, ISSUER, RESOURCE,
};
use serde_json::json;

#[test]
fn well_formed_tokens_of_every_key_type_are_allowed() {
    assert_allowed(&rsa().sign(standard_claims()).expect("rs256"));
    assert_allowed(&es256().sign(standard_claims()).expect("es256"));
    assert_allowed(&ed25519().sign(standard_claims()).expect("eddsa"));
}

// ---- algorithms and keys ------------------------------------------------------------------------

#[test]
fn hmac_signed_with_the_rsa_public_key_is_not_allowed() {
    let c = rsa().public_key().to_components();
    let secrets: Vec<Vec<u8>> = vec![
        rsa().public_key().to_pem().expect("pem").into_bytes(),
        rsa().public_key().to_der().expect("der"),
        c.n.clone(),
        serde_json::to_vec(&rsa_jwk(rsa(), "rsa-1", None)).expect("jwk"),
    ];
    for secret in secrets {
        for token in [
            HS256Key::from_bytes(&secret)
                .with_key_id("rsa-1")
                .authenticate(standard_claims())
                .expect("hs256"),
            HS384Key::from_bytes(&secret)
                .with_key_id("rsa-1")
                .authenticate(standard_claims())
                .expect("hs384"),
            HS512Key::from_bytes(&secret)
                .authenticate(standard_claims())
                .expect("hs512"),
        ] {
            assert_refused(&token, TokenError::AlgorithmNotAllowed);
        }
    }
}

#[test]
fn header_alg_that_does_not_fit_the_jwk() {
    let real = rsa().sign(standard_claims()).expect("token");
    let mut parts = real.split('.');
    let (_, payload, signature) = (
        parts.next(),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    for (alg, kid) in [
        ("ES256", "rsa-1"),  // EC algorithm on an RSA key
        ("EdDSA", "rsa-1"),  // EdDSA on an RSA key
        ("PS256", "rsa-1"),  // RSA-PSS on a key pinned to RS256
        ("RS512", "rsa-1"),  // another RSA hash on a key pinned to RS256
        ("RS256", "ec-256"), // RSA algorithm on an EC key
        ("ES384", "ec-256"), // P-384 algorithm on a P-256 key
        ("ES256", "ed-1"),   // EC algorithm on an Ed25519 key
    ] {
        let header = b64url(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
        assert_refused(
            &format!("{header}.{payload}.{signature}"),
            TokenError::AlgorithmMismatch,
        );
    }
}

#[test]
fn unknown_kid_and_no_fitting_key() {
    // Unknown kids end as `NeedKeys(KeyNotFound)`, which the proxy-wasm layer refuses as
    // `Authenticator::refuse` says when no other worker has newer keys (common::decide).
    let other = rsa_other().clone().with_key_id("nope");
    assert_refused(
        &other.sign(standard_claims()).expect("token"),
        TokenError::KeyNotFound,
    );
    // No kid at all, and no key of the token's type: nothing to try.
    let payload = standard_payload().to_string();
    assert_refused(
        &unsigned_token(r#"{"alg":"PS384"}"#, &payload),
        TokenError::KeyNotFound,
    );
    // No kid, a key of the right type: it is tried, and the signature does not match.
    let unnamed = other.clone().with_key_id("");
    let token = unnamed.sign(standard_claims()).expect("token");
    let stripped = format!(
        "{}.{}",
        b64url(r#"{"alg":"RS256","typ":"JWT"}"#),
        token.split_once('.').map_or("", |(_, rest)| rest)
    );
    assert_refused(&stripped, TokenError::SignatureInvalid);
    // A kid of 8 KiB.
    let header = json!({"alg": "RS256", "kid": "k".repeat(8192)}).to_string();
    assert_refused(&unsigned_token(&header, &payload), TokenError::KeyNotFound);
}

#[test]
fn a_relabelled_or_tampered_signature_never_verifies() {
    let real = rsa().sign(standard_claims()).expect("token");
    let (head, sig) = real.rsplit_once('.').unwrap_or_default();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).expect("signature");
    bytes[10] ^= 1;
    assert_refused(
        &format!("{head}.{}", b64url(&bytes)),
        TokenError::SignatureInvalid,
    );
    // Truncated, empty-ish and oversized signatures.
    assert_refused(
        &format!("{head}.{}", b64url(&bytes[..255])),
        TokenError::SignatureInvalid,
    );
    assert_refused(&format!("{head}.AA"), TokenError::SignatureInvalid);
    let long = [bytes.clone(), bytes].concat();
    assert_refused(
        &format!("{head}.{}", b64url(long)),
        TokenError::SignatureInvalid,
    );
    // An ES256 signature (64 bytes) from another key under the EC kid.
    let other = ES256KeyPair::generate().with_key_id("ec-256");
    assert_refused(
        &other.sign(standard_claims()).expect("token"),
        TokenError::SignatureInvalid,
    );
}

// ---- claims -------------------------------------------------------------------------------------

#[test]
fn audience_as_string_array_and_wrong_types() {
    for aud in [
        json!(RESOURCE),
        json!(["https://other", RESOURCE]),
        json!([RESOURCE, RESOURCE]),
    ] {
        let mut payload = standard_payload();
        payload["aud"] = aud;
        assert_allowed(&rsa_token_with_payload(payload));
    }
    for aud in [
        json!([]),
        json!("https://other"),
        json!(format!("{RESOURCE}/")),
        json!(["", " "]),
    ] {
        let mut payload = standard_payload();
        payload["aud"] = aud;
        assert_refused(
            &rsa_token_with_payload(payload),
            TokenError::AudienceNotAccepted,
        );
    }
    let mut payload = standard_payload();
    payload.as_object_mut().map(|o| o.remove("aud"));
    assert_refused(
        &rsa_token_with_payload(payload),
        TokenError::AudienceNotAccepted,
    );
    for aud in [
        json!(7),
        json!([RESOURCE, null]),
        json!({"a": RESOURCE}),
        json!([[RESOURCE]]),
    ] {
        let mut payload = standard_payload();
        payload["aud"] = aud;
        assert_refused(&rsa_token_with_payload(payload), TokenError::Malformed);
    }
}

#[test]
fn issuer_must_match_exactly() {
    for iss in [
        format!("{ISSUER}/"),
        ISSUER.to_uppercase(),
        format!(" {ISSUER}"),
        format!("{ISSUER}\u{0000}"),
        "https://idp.example.com.evil.com".to_string(),
        String::new(),
    ] {
        let mut payload = standard_payload();
        payload["iss"] = json!(iss);
        assert_refused(
            &rsa_token_with_payload(payload),
            TokenError::IssuerNotTrusted,
        );
    }
    let mut payload = standard_payload();
    payload["iss"] = json!([ISSUER]);
    assert_refused(&rsa_token_with_payload(payload), TokenError::Malformed);
}

#[test]
fn control_characters_in_claims_never_reach_headers() {
    for sub in [
        "a\r\nx-injected: 1",
        "a\nb",
        "a\u{0000}b",
        "a\u{007f}b",
        &"x".repeat(5000),
    ] {
        let mut payload = standard_payload();
        payload["sub"] = json!(sub);
        let d = decide_token(&rsa_token_with_payload(payload));
        let Decision::Allow(allowed) = d else {
            panic!("allowed, without the header: {d:?}")
        };
        assert!(
            allowed.identity.headers.is_empty(),
            "{:?}",
            allowed.identity.headers
        );
    }
}
