//! Hostile tokens against the token reader (`jwt::parse`, and through the authenticator): bad
//! algorithms and `crit`, wrong shapes and encodings, odd or duplicate JSON, oversized input and
//! NumericDates that are not numbers or not dates. Every case must end in the right refusal (or
//! the documented acceptance), never a panic.
//!
//! Crashes found by the `jwt_parse` fuzz target are added here with the crashing input.

mod common;

use std::time::Duration;

use common::{assert_allowed, assert_refused, decide_token, reason};
use jwt_simple::prelude::RSAKeyPairLike;
use mcp_auth_core::authenticator::Decision;
use mcp_auth_core::jwt::{self, TokenError, MAX_NUMERIC_DATE};
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::testing::{
    b64url, rsa, rsa_token_with_payload, standard_claims, standard_payload, unsigned_token, NOW,
};
use mcp_auth_core::time::UnixSeconds;
use serde_json::json;

/// The standard configuration's `max_token_bytes`.
const MAX: usize = 16_384;

// ---- algorithms and crit ------------------------------------------------------------------------

#[test]
fn alg_none_in_every_spelling_is_not_allowed() {
    let payload = standard_payload().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": "rsa-1"}).to_string();
        // Unsigned, as alg none is meant, and with a signature appended.
        assert_refused(
            &format!("{}.{}.", b64url(&header), b64url(&payload)),
            TokenError::AlgorithmNotAllowed,
        );
        assert_refused(
            &unsigned_token(&header, &payload),
            TokenError::AlgorithmNotAllowed,
        );
    }
}

#[test]
fn unknown_or_missing_alg() {
    let payload = standard_payload().to_string();
    for alg in ["RS1", "", "rs256", "ES512", "EdDSA25519", "RSA-OAEP", "dir"] {
        let header = json!({"alg": alg, "kid": "rsa-1"}).to_string();
        assert_refused(
            &unsigned_token(&header, &payload),
            TokenError::AlgorithmNotAllowed,
        );
    }
    for header in [
        r#"{"kid":"rsa-1"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":["RS256"]}"#,
    ] {
        assert_refused(&unsigned_token(header, &payload), TokenError::Malformed);
    }
}

#[test]
fn crit_in_any_form_is_refused() {
    let payload = standard_payload().to_string();
    for crit in [
        json!(["b64"]),
        json!([]),
        json!("b64"),
        json!(null),
        json!(["exp"]),
    ] {
        let header =
            json!({"alg": "RS256", "kid": "rsa-1", "crit": crit, "b64": false}).to_string();
        assert_refused(
            &unsigned_token(&header, &payload),
            TokenError::UnsupportedCriticalHeader,
        );
    }
}

// ---- shape and encoding -------------------------------------------------------------------------

#[test]
fn jwe_shaped_and_wrong_part_counts() {
    let real = rsa().sign(standard_claims()).expect("token");
    let parts: Vec<&str> = real.split('.').collect();
    let jwe_header = b64url(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
    for token in [
        format!(
            "{jwe_header}.{}.{}.{}.{}",
            b64url([1u8; 256]),
            b64url([2u8; 12]),
            b64url([3u8; 40]),
            b64url([4u8; 16])
        ),
        format!(
            "{}.{}.{}.{}.{}",
            parts[0], parts[1], parts[2], parts[2], parts[2]
        ),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        parts[0].to_string(),
        "..".to_string(),
        format!("{}..{}", parts[0], parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
    ] {
        let d = decide_token(&token);
        assert!(
            matches!(
                reason(&d),
                Some(DenyReason::Token(
                    TokenError::Malformed | TokenError::AlgorithmNotAllowed
                ))
            ),
            "{token:.60}: {d:?}"
        );
    }
    // A JWE header names a key-management algorithm: never a signature algorithm.
    let d = decide_token(&format!("{jwe_header}.{}.{}", parts[1], parts[2]));
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(TokenError::AlgorithmNotAllowed))
    );
}

#[test]
fn bad_base64url_padding_and_whitespace() {
    let real = rsa().sign(standard_claims()).expect("token");
    let (h, rest) = real.split_once('.').unwrap_or_default();
    let (p, s) = rest.split_once('.').unwrap_or_default();
    let standard_alphabet = |part: &str| part.replace('-', "+").replace('_', "/");
    let mut cases = vec![
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}==.{s}"),
        format!("{h}.{p}.{s}="),
        format!("{h} .{p}.{s}"),
        format!("{h}.{p}.{s}\n"),
        format!("{h}.\t{p}.{s}"),
        format!("{h}.{p}.{}", &s[..s.len() - 1]), // a length that is not base64
        format!("{h}.{p}!.{s}"),
        format!("{h}.{p}.{s}%3D"),
        format!("{}.{p}.{s}", &h[..h.len() - 1]),
    ];
    if p.contains(['-', '_']) || s.contains(['-', '_']) {
        cases.push(format!(
            "{h}.{}.{}",
            standard_alphabet(p),
            standard_alphabet(s)
        ));
    }
    for token in cases {
        let d = decide_token(&token);
        assert!(
            matches!(
                reason(&d),
                Some(DenyReason::Token(
                    TokenError::Malformed | TokenError::SignatureInvalid
                )) | Some(DenyReason::InvalidRequest)
            ),
            "{token:.60}: {d:?}"
        );
        assert!(!matches!(d, Decision::Allow(_)));
    }
}

#[test]
fn tokens_of_16_kib_and_more() {
    // Exactly at the limit: parsed (and refused for its bad signature, not its size).
    let payload = standard_payload().to_string();
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let base = unsigned_token(header, &payload);
    let pad = MAX - base.len();
    let token = format!("{}{}", base, "A".repeat(pad - pad % 4));
    assert!(token.len() <= MAX);
    assert_ne!(jwt::parse(&token, MAX).err(), Some(TokenError::TooLarge));
    for size in [MAX + 1, 64 * 1024, 1 << 20, 8 << 20] {
        let token = format!("{base}{}", "A".repeat(size - base.len()));
        assert_eq!(
            jwt::parse(&token, MAX).err(),
            Some(TokenError::TooLarge),
            "{size}"
        );
        assert_refused(&token, TokenError::TooLarge);
    }
    // Correctly signed, but over the limit.
    let mut big = standard_claims();
    big.subject = Some("x".repeat(20_000));
    assert_refused(&rsa().sign(big).expect("token"), TokenError::TooLarge);
}

// ---- JSON ---------------------------------------------------------------------------------------

#[test]
fn non_utf8_and_odd_json() {
    let header = b64url(r#"{"alg":"RS256","kid":"rsa-1"}"#);
    let sig = b64url([7u8; 256]);
    let payloads: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0xfd],
        b"{\"exp\":1,\"sub\":\"\xc3\x28\"}".to_vec(),
        br#"{"exp":1,"sub":"\ud800"}"#.to_vec(),
        b"\xef\xbb\xbf{\"exp\":1}".to_vec(), // a byte-order mark
        br#"{"exp":1}{"exp":2}"#.to_vec(),
        br#"{"exp":1,}"#.to_vec(),
        br#"{'exp':1}"#.to_vec(),
        b"{\"exp\":1\x00}".to_vec(),
        br#"{"exp":NaN}"#.to_vec(),
        br#"{"exp":Infinity}"#.to_vec(),
        br#"{"exp":0x10}"#.to_vec(),
        br#"{"exp":1e400}"#.to_vec(),
        b"".to_vec(),
        b"null".to_vec(),
        b"\"string\"".to_vec(),
    ];
    for payload in payloads {
        let token = format!("{header}.{}.{sig}", b64url(&payload));
        assert_eq!(
            jwt::parse(&token, MAX).err(),
            Some(TokenError::Malformed),
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
    let bad_header = format!(
        "{}.{}.{sig}",
        b64url([0xc0u8, 0x80]),
        b64url(r#"{"exp":1}"#)
    );
    assert_eq!(
        jwt::parse(&bad_header, MAX).err(),
        Some(TokenError::Malformed)
    );
}

#[test]
fn duplicate_members_are_refused() {
    let sig = b64url([7u8; 256]);
    for (header, payload) in [
        (r#"{"alg":"RS256","alg":"none"}"#, r#"{"exp":1}"#),
        (r#"{"alg":"none","alg":"RS256"}"#, r#"{"exp":1}"#),
        (r#"{"alg":"RS256","kid":"a","kid":"rsa-1"}"#, r#"{"exp":1}"#),
        (r#"{"alg":"RS256"}"#, r#"{"exp":1,"exp":99999999999}"#),
        (r#"{"alg":"RS256"}"#, r#"{"aud":"a","aud":"b","exp":1}"#),
        (
            r#"{"alg":"RS256"}"#,
            r#"{"iss":"a","iss":"https://idp.example.com","exp":1}"#,
        ),
        (
            r#"{"alg":"RS256"}"#,
            r#"{"sub":"a","\u0073ub":"b","exp":1}"#,
        ),
    ] {
        let token = format!("{}.{}.{sig}", b64url(header), b64url(payload));
        assert_eq!(
            jwt::parse(&token, MAX).err(),
            Some(TokenError::Malformed),
            "{header} {payload}"
        );
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let sig = b64url([7u8; 256]);
    for depth in [200, 10_000, 100_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let payload = format!(r#"{{"exp":1,"x":{deep}}}"#);
        let token = format!(
            "{}.{}.{sig}",
            b64url(r#"{"alg":"RS256"}"#),
            b64url(&payload)
        );
        assert!(matches!(
            jwt::parse(&token, usize::MAX).err(),
            Some(TokenError::Malformed)
        ));
        let header = format!(r#"{{"alg":"RS256","x":{deep}}}"#);
        let token = format!("{}.{}.{sig}", b64url(&header), b64url(r#"{"exp":1}"#));
        assert!(matches!(
            jwt::parse(&token, usize::MAX).err(),
            Some(TokenError::Malformed)
        ));
        let objects = format!(
            r#"{{"exp":1,"x":{}{}}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        );
        let token = format!(
            "{}.{}.{sig}",
            b64url(r#"{"alg":"RS256"}"#),
            b64url(&objects)
        );
        assert!(jwt::parse(&token, usize::MAX).is_err());
    }
}

// ---- NumericDates -------------------------------------------------------------------------------

#[test]
fn time_claims_of_the_wrong_type_are_malformed() {
    for name in ["exp", "nbf", "iat"] {
        for value in [
            json!("1800000300"),
            json!(-1),
            json!(-0.5),
            json!(true),
            json!(null),
            json!([NOW.0 + 300]),
            json!({"t": NOW.0}),
        ] {
            let mut payload = standard_payload();
            payload[name] = value.clone();
            let token = rsa_token_with_payload(payload);
            assert_refused(&token, TokenError::Malformed);
        }
    }
}

/// Security review: NumericDates past 9999-12-31T23:59:59Z used to saturate to u64::MAX, which
/// made `exp: 1e300` a token that never expires (and was accepted). They are malformed now, in
/// `exp`, `nbf` and `iat` alike; dates up to the bound are still judged by their meaning.
#[test]
fn numeric_dates_beyond_year_9999_are_malformed() {
    for name in ["exp", "nbf", "iat"] {
        for value in [
            json!(1e300),
            json!(18_446_744_073_709_551_616_f64),
            json!(u64::MAX),
            json!(1.7e308),
            json!(MAX_NUMERIC_DATE + 1),
            json!(MAX_NUMERIC_DATE as f64 + 1.0),
        ] {
            let mut payload = standard_payload();
            payload[name] = value.clone();
            let token = rsa_token_with_payload(payload);
            assert_eq!(
                jwt::parse(&token, MAX).err(),
                Some(TokenError::Malformed),
                "{name}: {value}"
            );
            assert_refused(&token, TokenError::Malformed);
        }
    }
    // The last second of year 9999 is a date: as exp, far in the future and valid...
    let mut payload = standard_payload();
    payload["exp"] = json!(MAX_NUMERIC_DATE);
    let parsed = jwt::parse(&rsa_token_with_payload(payload.clone()), MAX).expect("parsed");
    assert_eq!(parsed.claims.exp, Some(UnixSeconds(MAX_NUMERIC_DATE)));
    assert_allowed(&rsa_token_with_payload(payload));
    // ...and as nbf or iat, not yet valid / issued in the future.
    let mut payload = standard_payload();
    payload["nbf"] = json!(MAX_NUMERIC_DATE);
    assert_refused(&rsa_token_with_payload(payload), TokenError::NotYetValid);
    let mut payload = standard_payload();
    payload["iat"] = json!(MAX_NUMERIC_DATE);
    assert_refused(&rsa_token_with_payload(payload), TokenError::IssuedInFuture);
}

#[test]
fn numeric_dates_at_zero_and_with_fractions() {
    // exp at zero, and fractions (RFC 7519 NumericDate allows them): truncated.
    let mut payload = standard_payload();
    payload["exp"] = json!(0);
    assert_refused(&rsa_token_with_payload(payload), TokenError::Expired);
    let mut payload = standard_payload();
    payload["exp"] = json!((NOW.0 + 300) as f64 + 0.75);
    payload["iat"] = json!((NOW.0 - 10) as f64 + 0.5);
    payload["nbf"] = json!(-0.0);
    let parsed = jwt::parse(&rsa_token_with_payload(payload.clone()), MAX).expect("parsed");
    assert_eq!(parsed.claims.exp, Some(NOW.plus(300)));
    assert_eq!(parsed.claims.nbf, Some(UnixSeconds(0)));
    assert_allowed(&rsa_token_with_payload(payload));
}

#[test]
fn time_checks_never_overflow() {
    let mut payload = standard_payload();
    payload["exp"] = json!(MAX_NUMERIC_DATE);
    for payload in [standard_payload(), payload] {
        let parsed = jwt::parse(&rsa_token_with_payload(payload), MAX).expect("parsed");
        for (now, skew) in [(u64::MAX, u64::MAX), (0, u64::MAX), (u64::MAX, 0)] {
            for max_lifetime in [None, Some(Duration::ZERO), Some(Duration::MAX)] {
                let _ = parsed
                    .claims
                    .check_time(UnixSeconds(now), skew, max_lifetime);
            }
        }
        // At the end of time nothing is valid any more, whatever the skew says.
        assert_eq!(
            parsed.claims.check_time(UnixSeconds(u64::MAX), 0, None),
            Err(TokenError::Expired)
        );
    }
}
