//! Hostile input against the public core API (`mcp_auth_core`): tokens, `Authorization`
//! headers, JWKS documents, STS answers and configurations built to confuse, overflow or crash.
//! Every case must end in the right refusal (or the documented acceptance), never a panic.
//!
//! Crashes found by the fuzz targets (fuzz/, scripts/fuzz.sh) are added here as regression
//! tests with the crashing input.

use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jwt_simple::prelude::*;
use mcp_auth_core::authenticator::{
    bearer_token, Authenticator, Authorization, Decision, Keyring, Request, WaitFor,
};
use mcp_auth_core::config::{Config, FetchTarget, HttpTarget, RemoteKeys};
use mcp_auth_core::jwks::{Algorithm, KeyLookup, KeySet, MAX_JWKS_BYTES};
use mcp_auth_core::jwks_cache::{max_age, Availability, FetchOutcome, JwksCache};
use mcp_auth_core::jwt::{self, TokenError};
use mcp_auth_core::response::DenyReason;
use mcp_auth_core::token_exchange::{ExchangeFailure, TokenExchanger, MAX_RESPONSE_BYTES};
use serde_json::{json, Value};

const ISS: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const NOW_MS: u64 = 1_800_000_000_000;
const NOW: u64 = NOW_MS / 1000;
const MAX: usize = 16_384;

// ---- keys and tokens --------------------------------------------------------------------------

fn rsa() -> &'static RS256KeyPair {
    static KEY: OnceLock<RS256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        RS256KeyPair::generate(2048)
            .expect("RSA key")
            .with_key_id("rsa-1")
    })
}

fn ec() -> &'static ES256KeyPair {
    static KEY: OnceLock<ES256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| ES256KeyPair::generate().with_key_id("ec-1"))
}

fn ed() -> &'static Ed25519KeyPair {
    static KEY: OnceLock<Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(|| Ed25519KeyPair::generate().with_key_id("ed-1"))
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_jwk(kid: &str, alg: Option<&str>) -> Value {
    let c = rsa().public_key().to_components();
    let mut v = json!({"kty": "RSA", "use": "sig", "kid": kid, "n": b64(c.n), "e": b64(c.e)});
    if let Some(a) = alg {
        v["alg"] = a.into();
    }
    v
}

fn ec_jwk(kid: &str) -> Value {
    let sec1 = ec().public_key().public_key().to_bytes_uncompressed();
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": b64(&sec1[1..33]), "y": b64(&sec1[33..65])})
}

fn ed_jwk(kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(ed().public_key().to_bytes())})
}

fn jwks(keys: Vec<Value>) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}

fn all_keys() -> Vec<u8> {
    jwks(vec![
        rsa_jwk("rsa-1", Some("RS256")),
        ec_jwk("ec-1"),
        ed_jwk("ed-1"),
    ])
}

#[derive(Serialize, Deserialize, Default)]
struct Extra {
    #[serde(skip_serializing_if = "Option::is_none")]
    scp: Option<Vec<String>>,
}

fn claims() -> JWTClaims<Extra> {
    let mut c = Claims::with_custom_claims(
        Extra {
            scp: Some(vec!["mcp:tools:call".into()]),
        },
        Duration::from_secs(300).into(),
    )
    .with_issuer(ISS)
    .with_audience(RESOURCE)
    .with_subject("alice");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 300));
    c
}

/// A token whose claims are exactly `payload` (any JSON), signed with the RSA key.
fn rsa_token_with_payload(payload: Value) -> String {
    let claims = JWTClaims {
        issued_at: None,
        expires_at: None,
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: payload,
    };
    rsa().sign(claims).expect("signed")
}

fn standard_payload() -> Value {
    json!({"iss": ISS, "aud": RESOURCE, "sub": "alice", "exp": NOW + 300, "iat": NOW - 10,
           "nbf": NOW - 10, "scp": ["mcp:tools:call"]})
}

/// A compact JWS with a hand-made header and payload and an (invalid) signature.
fn raw_token(header: &str, payload: &str) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), b64([7u8; 256]))
}

// ---- the authenticator ------------------------------------------------------------------------

fn config_doc(keys: &[u8]) -> Value {
    json!({
        "resource": RESOURCE,
        "required_scopes": ["mcp:tools:call"],
        "providers": {"idp": {
            "issuer": ISS,
            "clock_skew_seconds": 60,
            "local_jwks": {"inline_string": String::from_utf8(keys.to_vec()).expect("utf-8")},
            "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]
        }}
    })
}

fn local_setup() -> (Authenticator, Keyring) {
    let config = Config::from_json(config_doc(&all_keys()).to_string().as_bytes()).expect("config");
    let keyring = Keyring::new(&config);
    (Authenticator::new(config), keyring)
}

fn remote_setup(interval: &str) -> (Authenticator, Keyring) {
    let doc = json!({
        "resource": RESOURCE,
        "providers": {"idp": {
            "issuer": ISS,
            "remote_jwks": {
                "http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp"},
                "unknown_kid_refetch_interval": interval,
            }
        }}
    });
    let config = Config::from_json(doc.to_string().as_bytes()).expect("config");
    let keyring = Keyring::new(&config);
    (Authenticator::new(config), keyring)
}

fn decide(
    auth: &mut Authenticator,
    keyring: &Keyring,
    authorization: Authorization<'_>,
) -> Decision {
    let request = Request {
        method: "POST",
        path: "/mcp",
        authorization,
        is_cors_preflight: false,
    };
    auth.decide(&request, keyring, NOW_MS)
}

fn decide_token(token: &str) -> Decision {
    let (mut auth, keyring) = local_setup();
    let header = format!("Bearer {token}");
    decide(&mut auth, &keyring, Authorization::Present(&header))
}

fn reason(d: &Decision) -> Option<DenyReason> {
    match d {
        Decision::Deny { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[track_caller]
fn assert_refused(token: &str, expected: TokenError) {
    let d = decide_token(token);
    assert_eq!(
        reason(&d),
        Some(DenyReason::Token(expected)),
        "{:.120}: {d:?}",
        token
    );
    assert_no_echo(&d, token);
}

/// A denial's body and headers never carry any part of the token.
#[track_caller]
fn assert_no_echo(d: &Decision, token: &str) {
    let Decision::Deny { response, .. } = d else {
        return;
    };
    let body = String::from_utf8_lossy(&response.body);
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!body.contains(part), "token part echoed in the body");
        for (name, value) in &response.headers {
            assert!(!value.contains(part), "token part echoed in {name}");
        }
    }
}

#[track_caller]
fn assert_allowed(token: &str) {
    let d = decide_token(token);
    assert!(matches!(d, Decision::Allow { .. }), "{d:?}");
}

#[test]
fn well_formed_tokens_of_every_key_type_are_allowed() {
    assert_allowed(&rsa().sign(claims()).expect("rs256"));
    assert_allowed(&ec().sign(claims()).expect("es256"));
    assert_allowed(&ed().sign(claims()).expect("eddsa"));
}

// ---- algorithms and keys ----------------------------------------------------------------------

#[test]
fn alg_none_in_every_spelling_is_not_allowed() {
    let payload = standard_payload().to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": "rsa-1"}).to_string();
        // Unsigned, as alg none is meant, and with a signature appended.
        assert_refused(
            &format!("{}.{}.", b64(&header), b64(&payload)),
            TokenError::AlgorithmNotAllowed,
        );
        assert_refused(
            &raw_token(&header, &payload),
            TokenError::AlgorithmNotAllowed,
        );
    }
}

#[test]
fn hmac_signed_with_the_rsa_public_key_is_not_allowed() {
    let c = rsa().public_key().to_components();
    let secrets: Vec<Vec<u8>> = vec![
        rsa().public_key().to_pem().expect("pem").into_bytes(),
        rsa().public_key().to_der().expect("der"),
        c.n.clone(),
        serde_json::to_vec(&rsa_jwk("rsa-1", None)).expect("jwk"),
    ];
    for secret in secrets {
        for token in [
            HS256Key::from_bytes(&secret)
                .with_key_id("rsa-1")
                .authenticate(claims())
                .expect("hs256"),
            HS384Key::from_bytes(&secret)
                .with_key_id("rsa-1")
                .authenticate(claims())
                .expect("hs384"),
            HS512Key::from_bytes(&secret)
                .authenticate(claims())
                .expect("hs512"),
        ] {
            assert_refused(&token, TokenError::AlgorithmNotAllowed);
        }
    }
}

#[test]
fn unknown_or_missing_alg() {
    let payload = standard_payload().to_string();
    for alg in ["RS1", "", "rs256", "ES512", "EdDSA25519", "RSA-OAEP", "dir"] {
        let header = json!({"alg": alg, "kid": "rsa-1"}).to_string();
        assert_refused(
            &raw_token(&header, &payload),
            TokenError::AlgorithmNotAllowed,
        );
    }
    for header in [
        r#"{"kid":"rsa-1"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":["RS256"]}"#,
    ] {
        assert_refused(&raw_token(header, &payload), TokenError::Malformed);
    }
}

#[test]
fn header_alg_that_does_not_fit_the_jwk() {
    let real = rsa().sign(claims()).expect("token");
    let mut parts = real.split('.');
    let (_, payload, signature) = (
        parts.next(),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    for (alg, kid) in [
        ("ES256", "rsa-1"), // EC algorithm on an RSA key
        ("EdDSA", "rsa-1"), // EdDSA on an RSA key
        ("PS256", "rsa-1"), // RSA-PSS on a key pinned to RS256
        ("RS512", "rsa-1"), // another RSA hash on a key pinned to RS256
        ("RS256", "ec-1"),  // RSA algorithm on an EC key
        ("ES384", "ec-1"),  // P-384 algorithm on a P-256 key
        ("ES256", "ed-1"),  // EC algorithm on an Ed25519 key
    ] {
        let header = b64(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
        assert_refused(
            &format!("{header}.{payload}.{signature}"),
            TokenError::AlgorithmMismatch,
        );
    }
}

#[test]
fn unknown_kid_and_no_fitting_key() {
    let other = RS256KeyPair::generate(2048)
        .expect("key")
        .with_key_id("nope");
    assert_refused(
        &other.sign(claims()).expect("token"),
        TokenError::KeyNotFound,
    );
    // No kid at all, and no key of the token's type: nothing to try.
    let payload = standard_payload().to_string();
    assert_refused(
        &raw_token(r#"{"alg":"PS384"}"#, &payload),
        TokenError::KeyNotFound,
    );
    // No kid, a key of the right type: it is tried, and the signature does not match.
    let unnamed = other.clone().with_key_id("");
    let token = unnamed.sign(claims()).expect("token");
    let stripped = format!(
        "{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        token.split_once('.').map_or("", |(_, rest)| rest)
    );
    assert_refused(&stripped, TokenError::SignatureInvalid);
    // A kid of 8 KiB.
    let header = json!({"alg": "RS256", "kid": "k".repeat(8192)}).to_string();
    assert_refused(&raw_token(&header, &payload), TokenError::KeyNotFound);
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
            &raw_token(&header, &payload),
            TokenError::UnsupportedCriticalHeader,
        );
    }
}

#[test]
fn a_relabelled_or_tampered_signature_never_verifies() {
    let real = rsa().sign(claims()).expect("token");
    let (head, sig) = real.rsplit_once('.').unwrap_or_default();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).expect("signature");
    bytes[10] ^= 1;
    assert_refused(
        &format!("{head}.{}", b64(&bytes)),
        TokenError::SignatureInvalid,
    );
    // Truncated, empty-ish and oversized signatures.
    assert_refused(
        &format!("{head}.{}", b64(&bytes[..255])),
        TokenError::SignatureInvalid,
    );
    assert_refused(&format!("{head}.AA"), TokenError::SignatureInvalid);
    let long = [bytes.clone(), bytes].concat();
    assert_refused(
        &format!("{head}.{}", b64(long)),
        TokenError::SignatureInvalid,
    );
    // An ES256 signature (64 bytes) from another key under the EC kid.
    let other = ES256KeyPair::generate().with_key_id("ec-1");
    assert_refused(
        &other.sign(claims()).expect("token"),
        TokenError::SignatureInvalid,
    );
}

// ---- shape and encoding -----------------------------------------------------------------------

#[test]
fn jwe_shaped_and_wrong_part_counts() {
    let real = rsa().sign(claims()).expect("token");
    let parts: Vec<&str> = real.split('.').collect();
    let jwe_header = b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
    for token in [
        format!(
            "{jwe_header}.{}.{}.{}.{}",
            b64([1u8; 256]),
            b64([2u8; 12]),
            b64([3u8; 40]),
            b64([4u8; 16])
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
    let real = rsa().sign(claims()).expect("token");
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
        assert!(!matches!(d, Decision::Allow { .. }));
    }
}

#[test]
fn tokens_of_16_kib_and_more() {
    // Exactly at the limit: parsed (and refused for its bad signature, not its size).
    let payload = standard_payload().to_string();
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let base = raw_token(header, &payload);
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
    let mut big = claims();
    big.subject = Some("x".repeat(20_000));
    assert_refused(&rsa().sign(big).expect("token"), TokenError::TooLarge);
}

#[test]
fn non_utf8_and_odd_json() {
    let header = b64(r#"{"alg":"RS256","kid":"rsa-1"}"#);
    let sig = b64([7u8; 256]);
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
        let token = format!("{header}.{}.{sig}", b64(&payload));
        assert_eq!(
            jwt::parse(&token, MAX).err(),
            Some(TokenError::Malformed),
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
    let bad_header = format!("{}.{}.{sig}", b64([0xc0u8, 0x80]), b64(r#"{"exp":1}"#));
    assert_eq!(
        jwt::parse(&bad_header, MAX).err(),
        Some(TokenError::Malformed)
    );
}

#[test]
fn duplicate_members_are_refused() {
    let sig = b64([7u8; 256]);
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
        let token = format!("{}.{}.{sig}", b64(header), b64(payload));
        assert_eq!(
            jwt::parse(&token, MAX).err(),
            Some(TokenError::Malformed),
            "{header} {payload}"
        );
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let sig = b64([7u8; 256]);
    for depth in [200, 10_000, 100_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let payload = format!(r#"{{"exp":1,"x":{deep}}}"#);
        let token = format!("{}.{}.{sig}", b64(r#"{"alg":"RS256"}"#), b64(&payload));
        assert!(matches!(
            jwt::parse(&token, usize::MAX).err(),
            Some(TokenError::Malformed)
        ));
        let header = format!(r#"{{"alg":"RS256","x":{deep}}}"#);
        let token = format!("{}.{}.{sig}", b64(&header), b64(r#"{"exp":1}"#));
        assert!(matches!(
            jwt::parse(&token, usize::MAX).err(),
            Some(TokenError::Malformed)
        ));
        let objects = format!(
            r#"{{"exp":1,"x":{}{}}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        );
        let token = format!("{}.{}.{sig}", b64(r#"{"alg":"RS256"}"#), b64(&objects));
        assert!(jwt::parse(&token, usize::MAX).is_err());
    }
}

// ---- claims -----------------------------------------------------------------------------------

#[test]
fn time_claims_of_the_wrong_type_are_malformed() {
    for name in ["exp", "nbf", "iat"] {
        for value in [
            json!("1800000300"),
            json!(-1),
            json!(-0.5),
            json!(true),
            json!(null),
            json!([NOW + 300]),
            json!({"t": NOW}),
        ] {
            let mut payload = standard_payload();
            payload[name] = value.clone();
            let token = rsa_token_with_payload(payload);
            assert_refused(&token, TokenError::Malformed);
        }
    }
}

#[test]
fn huge_time_values_saturate_and_are_judged_by_meaning() {
    // exp far in the future (beyond u64 seconds, as a float): valid.
    for exp in [
        json!(1e300),
        json!(18_446_744_073_709_551_616_f64),
        json!(u64::MAX),
        json!(1.7e308),
    ] {
        let mut payload = standard_payload();
        payload["exp"] = exp.clone();
        let parsed = jwt::parse(&rsa_token_with_payload(payload.clone()), MAX).expect("parsed");
        assert_eq!(parsed.claims.exp, Some(u64::MAX), "{exp}");
        assert_allowed(&rsa_token_with_payload(payload));
    }
    // nbf and iat far in the future: not yet valid / issued in the future.
    let mut payload = standard_payload();
    payload["nbf"] = json!(1e300);
    assert_refused(&rsa_token_with_payload(payload), TokenError::NotYetValid);
    let mut payload = standard_payload();
    payload["iat"] = json!(u64::MAX);
    assert_refused(&rsa_token_with_payload(payload), TokenError::IssuedInFuture);
    // exp at zero, and fractions (RFC 7519 NumericDate allows them): truncated.
    let mut payload = standard_payload();
    payload["exp"] = json!(0);
    assert_refused(&rsa_token_with_payload(payload), TokenError::Expired);
    let mut payload = standard_payload();
    payload["exp"] = json!((NOW + 300) as f64 + 0.75);
    payload["iat"] = json!((NOW - 10) as f64 + 0.5);
    payload["nbf"] = json!(-0.0);
    assert_allowed(&rsa_token_with_payload(payload));
    // Time checks themselves never overflow.
    let parsed = jwt::parse(&rsa_token_with_payload(standard_payload()), MAX).expect("parsed");
    for (now, skew) in [(u64::MAX, u64::MAX), (0, u64::MAX), (u64::MAX, 0)] {
        let _ = parsed.claims.check_time(now, skew);
    }
}

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
        format!("{ISS}/"),
        ISS.to_uppercase(),
        format!(" {ISS}"),
        format!("{ISS}\u{0000}"),
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
    payload["iss"] = json!([ISS]);
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
        let Decision::Allow { identity, .. } = d else {
            panic!("allowed, without the header: {d:?}")
        };
        assert!(identity.headers.is_empty(), "{:?}", identity.headers);
    }
}

// ---- the Authorization header -----------------------------------------------------------------

#[test]
fn bearer_scheme_spacing_and_case() {
    let token = rsa().sign(claims()).expect("token");
    for header in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("BeArEr {token}"),
        format!("Bearer   {token}"),
        format!("Bearer\t{token}"),
        format!("  Bearer {token}  "),
        format!("Bearer {token}\t"),
    ] {
        assert_eq!(bearer_token(&header), Some(token.as_str()), "{header:.20}");
        let (mut auth, keyring) = local_setup();
        let d = decide(&mut auth, &keyring, Authorization::Present(&header));
        assert!(matches!(d, Decision::Allow { .. }), "{header:.20}: {d:?}");
    }
    for header in [
        format!("Bearer{token}"),
        format!("Bearer,{token}"),
        format!("Bearer: {token}"),
        format!("Bearer {token} {token}"),
        format!("Bearer \"{token}\""),
        format!("Bearer {token}\r\n"),
        format!("Bearer\u{00a0}{token}"),
        format!("Bearer\u{3000}{token}"),
        format!("Bearer\n{token}"),
        format!("Basic {token}"),
        format!("DPoP {token}"),
        format!("Bearer {token}é"),
        format!("Bearer {}", STANDARD.encode("user:password")).replace('=', "=x"),
        token.clone(),
        String::new(),
        "Bearer".into(),
        "Bearer \t ".into(),
    ] {
        let (mut auth, keyring) = local_setup();
        let d = decide(&mut auth, &keyring, Authorization::Present(&header));
        assert_eq!(
            reason(&d),
            Some(DenyReason::InvalidRequest),
            "{header:.30}: {d:?}"
        );
        assert_no_echo(&d, &token);
    }
    let (mut auth, keyring) = local_setup();
    let d = decide(&mut auth, &keyring, Authorization::Repeated);
    assert_eq!(reason(&d), Some(DenyReason::InvalidRequest));
}

// ---- JWKS ---------------------------------------------------------------------------------------

#[test]
fn malformed_jwks_keys_are_skipped_and_an_empty_set_refused() {
    let good = rsa_jwk("good", None);
    let with = |field: &str, value: Value| {
        let mut k = rsa_jwk("bad", None);
        k[field] = value;
        k
    };
    let without = |field: &str| {
        let mut k = rsa_jwk("bad", None);
        k.as_object_mut().map(|o| o.remove(field));
        k
    };
    let c = rsa().public_key().to_components();
    let bad_keys = vec![
        with("n", json!("!!!")),
        with("n", json!("")),
        with("n", json!(7)),
        with("n", json!(b64([0xffu8; 128]))),    // 1024 bits
        with("n", json!(b64([0xffu8; 1025]))),   // 8200 bits
        with("n", json!(STANDARD.encode(&c.n))), // standard alphabet with padding
        with("e", json!("")),
        with("e", json!(b64([0u8]))),
        with("e", json!(b64([1u8]))),
        with("e", json!(b64([1u8; 9]))),
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
        json!({"kty": "oct", "k": b64("secret"), "kid": "hmac"}),
        json!({"kty": "EC", "crv": "P-521", "x": b64([1u8; 66]), "y": b64([1u8; 66])}),
        json!({"kty": "EC", "crv": "P-256", "x": b64([0u8; 32]), "y": b64([0u8; 32])}),
        json!({"kty": "EC", "crv": "P-256", "x": b64([1u8; 31]), "y": b64([1u8; 33])}),
        json!({"kty": "OKP", "crv": "X25519", "x": b64([9u8; 32])}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64([9u8; 31])}),
        json!({"kty": "OKP", "crv": "Ed448", "x": b64([9u8; 57])}),
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
        rsa_jwk("k", None),
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
    let mut keys: Vec<Value> = (0..200).map(|i| rsa_jwk(&format!("k{i}"), None)).collect();
    keys.push(rsa_jwk("last", None));
    let set = KeySet::parse(&jwks(keys)).expect("keys");
    assert_eq!(set.len(), 64);
    assert!(!set.contains_kid("last"));
    // Two keys under one kid: both are candidates, the right one verifies.
    let other = RS256KeyPair::generate(2048).expect("key");
    let oc = other.public_key().to_components();
    let impostor = json!({"kty": "RSA", "kid": "rsa-1", "n": b64(oc.n), "e": b64(oc.e)});
    let set = KeySet::parse(&jwks(vec![impostor, rsa_jwk("rsa-1", None)])).expect("keys");
    let KeyLookup::Candidates(keys) = set.lookup(Some("rsa-1"), Algorithm::RS256) else {
        panic!("candidates expected")
    };
    let token = rsa().sign(claims()).expect("token");
    assert!(keys
        .iter()
        .any(|k| k.verify(Algorithm::RS256, &token).is_ok()));
}

fn remote(cache_duration: Duration) -> JwksCache {
    JwksCache::new(RemoteKeys {
        cluster: "idp".into(),
        start: FetchTarget::Jwks(HttpTarget {
            authority: "idp".into(),
            path: "/jwks".into(),
        }),
        timeout: Duration::from_secs(5),
        cache_duration,
        failed_refetch_duration: Duration::from_secs(1),
        unknown_kid_refetch_interval: Duration::from_secs(30),
    })
}

#[test]
fn a_malformed_jwks_answer_keeps_the_last_good_keys() {
    let mut cache = remote(Duration::from_secs(2));
    cache.due_fetch(NOW_MS).expect("first fetch");
    assert_eq!(
        cache.on_response(NOW_MS, false, Some(200), None, &all_keys()),
        FetchOutcome::KeysUpdated
    );
    let bad_answers: Vec<(Option<u16>, Option<&str>, Vec<u8>)> = vec![
        (Some(500), None, b"oops".to_vec()),
        (Some(200), None, b"not json".to_vec()),
        (Some(200), None, br#"{"keys":[]}"#.to_vec()),
        (Some(200), None, jwks(vec![json!({"kty": "XYZ"})])),
        (
            Some(200),
            Some("max-age=-5"),
            vec![b'{'; MAX_JWKS_BYTES + 1],
        ),
        (Some(204), None, Vec::new()),
        (Some(304), None, Vec::new()),
        (None, None, Vec::new()),
    ];
    let mut t = cache.refresh_at();
    for (status, cache_control, body) in bad_answers {
        cache.due_fetch(t).expect("refresh due");
        let outcome = cache.on_response(t, false, status, cache_control, &body);
        assert!(matches!(outcome, FetchOutcome::Failed(_)), "{status:?}");
        assert_eq!(cache.availability(t), Availability::Ready);
        assert!(cache.keys().is_some_and(|k| k.contains_kid("rsa-1")));
        assert_eq!(cache.due_fetch(t + 999), None, "the backoff holds");
        t += 1_000;
    }
    // A good answer after all that is installed.
    cache.due_fetch(t).expect("refresh");
    let rotated = jwks(vec![ec_jwk("ec-2")]);
    assert_eq!(
        cache.on_response(t, false, Some(200), None, &rotated),
        FetchOutcome::KeysUpdated
    );
    assert!(cache
        .keys()
        .is_some_and(|k| k.contains_kid("ec-2") && !k.contains_kid("rsa-1")));
}

#[test]
fn hostile_cache_control_values_are_clamped() {
    let min = Duration::from_secs(30);
    let max = Duration::from_secs(24 * 3600);
    for (value, expected) in [
        ("max-age=0", Some(min)),
        ("max-age=18446744073709551615", Some(max)),
        ("max-age=18446744073709551616", None),
        ("max-age=-1", None),
        ("max-age=1e9", None),
        ("max-age=\"60\"", Some(Duration::from_secs(60))),
        ("MAX-AGE=60", Some(Duration::from_secs(60))),
        ("max-age=60, max-age=1", Some(min)),
        ("no-cache, max-age=600", Some(min)),
        ("max-age", None),
        ("", None),
        (",,,,", None),
        ("max-age=٣٠", None),
    ] {
        assert_eq!(max_age(Some(value)), expected, "{value}");
    }
}

#[test]
fn hostile_discovery_documents_fail_the_fetch() {
    let too_big = format!(
        r#"{{"jwks_uri":"https://idp/keys","pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    for doc in [
        b"{}".to_vec(),
        br#"{"jwks_uri":7}"#.to_vec(),
        br#"{"jwks_uri":"/relative/keys"}"#.to_vec(),
        br#"{"jwks_uri":"ftp://idp/keys"}"#.to_vec(),
        br#"{"jwks_uri":"https://user:pw@idp/keys"}"#.to_vec(),
        br#"{"jwks_uri":"https://idp/keys#frag"}"#.to_vec(),
        br#"{"jwks_uri":"https://idp:99999/keys"}"#.to_vec(),
        br#"{"jwks_uri":"https://[zz]/keys"}"#.to_vec(),
        "{\"jwks_uri\":\"https://idp/k\u{00e9}ys\"}"
            .as_bytes()
            .to_vec(),
        b"{\"jwks_uri\":\"https://idp/keys\r\nx: y\"}".to_vec(),
        too_big.into_bytes(),
    ] {
        let mut cache = JwksCache::new(RemoteKeys {
            cluster: "idp".into(),
            start: FetchTarget::Discovery(HttpTarget {
                authority: "idp".into(),
                path: "/.well-known/openid-configuration".into(),
            }),
            timeout: Duration::from_secs(5),
            cache_duration: Duration::from_secs(600),
            failed_refetch_duration: Duration::from_secs(1),
            unknown_kid_refetch_interval: Duration::from_secs(30),
        });
        let fetch = cache.due_fetch(NOW_MS).expect("discovery");
        assert!(fetch.is_discovery);
        let outcome = cache.on_response(NOW_MS, true, Some(200), None, &doc);
        assert!(
            matches!(outcome, FetchOutcome::Failed(_)),
            "{:.60}: {outcome:?}",
            String::from_utf8_lossy(&doc)
        );
        assert_eq!(cache.availability(NOW_MS + 10), Availability::Unavailable);
    }
}

#[test]
fn a_flood_of_distinct_unknown_kids_refetches_at_most_once_per_interval() {
    let (mut auth, mut keyring) = remote_setup("30s");
    let fetch = keyring
        .fetch_for(0, WaitFor::FirstKeys, NOW_MS)
        .expect("first fetch");
    assert!(!fetch.is_discovery);
    keyring.remote_mut(0).expect("remote").on_response(
        NOW_MS,
        false,
        Some(200),
        None,
        &jwks(vec![rsa_jwk("rsa-1", None)]),
    );
    let payload = standard_payload().to_string();
    let mut fetches = 0;
    let mut refused = 0;
    // 10,000 tokens with distinct unknown kids over 95 simulated seconds.
    for i in 0..10_000u64 {
        let now = NOW_MS + i * 9_500 / 1_000;
        // No signature is checked for a kid nobody published: a hand-made token is enough.
        let header_json = json!({"alg": "RS256", "kid": format!("unknown-{i}")}).to_string();
        let token = raw_token(&header_json, &payload);
        let header = format!("Bearer {token}");
        let request = Request {
            method: "POST",
            path: "/mcp",
            authorization: Authorization::Present(&header),
            is_cors_preflight: false,
        };
        match auth.decide(&request, &keyring, now) {
            Decision::Wait {
                wait_for: WaitFor::UnknownKid,
                ..
            } => {
                if keyring.fetch_for(0, WaitFor::UnknownKid, now).is_some() {
                    fetches += 1;
                    // The IdP answers at once with the same keys: the kid stays unknown.
                    keyring.remote_mut(0).expect("remote").on_response(
                        now,
                        false,
                        Some(200),
                        None,
                        &jwks(vec![rsa_jwk("rsa-1", None)]),
                    );
                }
            }
            d => {
                assert_eq!(reason(&d), Some(DenyReason::Token(TokenError::KeyNotFound)));
                refused += 1;
            }
        }
    }
    // 95 s with a 30 s interval: refetches at 30, 60 and 90 s at most.
    assert!(fetches <= 3, "{fetches} refetches");
    assert!(refused >= 9_990);
}

// ---- STS answers ------------------------------------------------------------------------------

fn exchanger() -> TokenExchanger {
    let doc = json!({
        "resource": RESOURCE,
        "providers": {"p": {"issuer": ISS,
            "remote_jwks": {"http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}}}},
        "token_exchange": {
            "token_endpoint": {"uri": "https://sts.example.com/token", "cluster": "sts"},
            "audience": "backend",
            "client_auth": {"client_id": "c", "client_secret_env": "SECRET"},
            "cache": {"expiry_margin": "30s", "default_ttl": "300s"}
        }
    });
    let env = |name: &str| (name == "SECRET").then(|| "sts-secret-value".to_string());
    let config = Config::from_json_with_env(doc.to_string().as_bytes(), &env).expect("config");
    TokenExchanger::new(config.token_exchange.expect("exchange"))
}

#[test]
fn malformed_sts_answers_fail_the_exchange() {
    let subject_exp = NOW + 3600;
    let oversized = format!(
        r#"{{"access_token":"t","token_type":"Bearer","pad":"{}"}}"#,
        "x".repeat(MAX_RESPONSE_BYTES)
    );
    let long_token = format!(
        r#"{{"access_token":"{}","token_type":"Bearer"}}"#,
        "t".repeat(16 * 1024 + 1)
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(Option<u16>, Vec<u8>, ExchangeFailure)> = vec![
        (Some(200), b"".to_vec(), ExchangeFailure::Failed),
        (
            Some(200),
            b"<html>not json</html>".to_vec(),
            ExchangeFailure::Failed,
        ),
        (Some(200), b"null".to_vec(), ExchangeFailure::Failed),
        (
            Some(200),
            br#"[{"access_token":"t","token_type":"Bearer"}]"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"token_type":"Bearer","expires_in":300}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":null,"token_type":"Bearer"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":7,"token_type":"Bearer"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":["t"],"token_type":"Bearer"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"a b","token_type":"Bearer"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"a\u0000b","token_type":"Bearer"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            "{\"access_token\":\"t\u{00e9}\",\"token_type\":\"Bearer\"}"
                .as_bytes()
                .to_vec(),
            ExchangeFailure::Failed,
        ),
        (Some(200), long_token.into_bytes(), ExchangeFailure::Failed),
        (
            Some(200),
            br#"{"access_token":"t","token_type":"Bearer","expires_in":-1}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"t","token_type":"Bearer","expires_in":-1e300}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"t","token_type":"Bearer","expires_in":"300"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"t","token_type":"Bearer","expires_in":true}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"t","token_type":"Bearer","expires_in":{}}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"t","token_type":"Bearer","expires_in":1e400}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"t","token_type":"N_A"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"t","token_type":7}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (
            Some(200),
            br#"{"access_token":"t"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (Some(200), oversized.into_bytes(), ExchangeFailure::Failed),
        (Some(200), deep.into_bytes(), ExchangeFailure::Failed),
        (Some(200), vec![0xff; 64], ExchangeFailure::Failed),
        (
            Some(201),
            br#"{"access_token":"t","token_type":"Bearer"}"#.to_vec(),
            ExchangeFailure::Failed,
        ),
        (Some(302), b"".to_vec(), ExchangeFailure::Failed),
        (Some(0), b"".to_vec(), ExchangeFailure::Failed),
        (Some(999), b"".to_vec(), ExchangeFailure::Failed),
        (
            Some(400),
            b"not json".to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (
            Some(400),
            br#"{"error":["invalid_grant"]}"#.to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (
            Some(400),
            br#"{"error":"INVALID_GRANT"}"#.to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (
            Some(400),
            br#"{"error":"invalid_grant\r\nx"}"#.to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (
            Some(401),
            br#"{"error":"invalid_client"}"#.to_vec(),
            ExchangeFailure::Refused(Some("invalid_client")),
        ),
        (
            Some(400),
            br#"{"error":"invalid_grant","error":"x"}"#.to_vec(),
            ExchangeFailure::Refused(None),
        ),
        (Some(503), b"".to_vec(), ExchangeFailure::Unavailable),
        (Some(504), b"".to_vec(), ExchangeFailure::Timeout),
        (None, b"".to_vec(), ExchangeFailure::Unavailable),
    ];
    for (status, body, expected) in cases {
        let mut x = exchanger();
        let key = x.key(&mcp_auth_core::token_cache::token_hash("subject"));
        let got = x.accept(key, status, &body, NOW_MS, subject_exp);
        assert_eq!(
            got,
            Err(expected),
            "{status:?} {:.60}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(x.cached(&key, NOW_MS), None, "a failure is never cached");
    }
}

#[test]
fn expires_in_extremes_are_bounded() {
    let subject_exp = NOW + 3600;
    let margin = 30_000;
    for (expires_in, until) in [
        ("1e300", Some(subject_exp * 1000 - margin)),
        ("18446744073709551615", Some(subject_exp * 1000 - margin)),
        ("1.7976931348623157e308", Some(subject_exp * 1000 - margin)),
        ("0", None),
        ("0.5", None),
        ("30", None),
        ("31", Some(NOW_MS + 1_000)),
        ("null", Some(NOW_MS + 300_000 - margin)),
    ] {
        let mut x = exchanger();
        let key = x.key(&mcp_auth_core::token_cache::token_hash("subject"));
        let body =
            format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{expires_in}}}"#);
        let got = x
            .accept(key, Some(200), body.as_bytes(), NOW_MS, subject_exp)
            .expect(expires_in);
        assert_eq!(got.cached_until, until, "{expires_in}");
    }
    // A subject token already past its exp (or at u64::MAX): never cached beyond it.
    let mut x = exchanger();
    let key = x.key(&mcp_auth_core::token_cache::token_hash("s"));
    let body = br#"{"access_token":"t","token_type":"Bearer","expires_in":300}"#;
    assert_eq!(
        x.accept(key, Some(200), body, NOW_MS, NOW - 1)
            .map(|e| e.cached_until),
        Ok(None)
    );
    let got = x
        .accept(key, Some(200), body, NOW_MS, u64::MAX)
        .expect("accepted");
    assert_eq!(got.cached_until, Some(NOW_MS + 300_000 - margin));
}

// ---- configuration ----------------------------------------------------------------------------

#[test]
fn hostile_configurations_are_refused_with_a_path_and_never_echo_the_secret() {
    let base = json!({
        "resource": RESOURCE,
        "providers": {"p": {"issuer": ISS,
            "remote_jwks": {"http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}}}},
        "token_exchange": {
            "token_endpoint": {"uri": "https://sts.example.com/token", "cluster": "sts"},
            "audience": "backend",
            "client_auth": {"client_id": "c", "client_secret_env": "SECRET"}
        }
    });
    let secret = "top-secret-value-\u{1F511}";
    let env = |name: &str| (name == "SECRET").then(|| secret.to_string());
    assert!(Config::from_json_with_env(base.to_string().as_bytes(), &env).is_ok());
    let set = |pointer: &str, value: Value| {
        let mut doc = base.clone();
        let (parent, name) = pointer.rsplit_once('/').expect("a pointer");
        let target = doc.pointer_mut(parent).expect("parent exists");
        target[name] = value;
        doc
    };
    let remote = "/providers/p/remote_jwks";
    let mut cases = vec![
        set("/resource", json!("not a url")),
        set("/resource", json!("https://user:pw@mcp.example.com/mcp")),
        set("/resource", json!("https://mcp.example.com/mcp#frag")),
        set("/resource", json!("https://mcp.example.com:0/mcp")),
        set("/resource", json!("https://mcp.example.com:65536/mcp")),
        set("/resource", json!("https://[::1/mcp")),
        set("/resource", json!("https://mcp.example.com/m cp")),
        set("/resource", json!(7)),
        set(&format!("{remote}/http_uri/timeout"), json!("-1s")),
        set(&format!("{remote}/http_uri/timeout"), json!("1e3s")),
        set(&format!("{remote}/http_uri/timeout"), json!("NaNs")),
        set(&format!("{remote}/http_uri/timeout"), json!("infs")),
        set(&format!("{remote}/http_uri/timeout"), json!("1..5s")),
        set(
            &format!("{remote}/http_uri/timeout"),
            json!("999999999999999999999h"),
        ),
        set(&format!("{remote}/http_uri/timeout"), json!("61s")),
        set(&format!("{remote}/http_uri/timeout"), json!("0s")),
        set(&format!("{remote}/cache_duration"), json!("5")),
        set("/providers/p/clock_skew_seconds", json!(-1)),
        set("/providers/p/clock_skew_seconds", json!(1e30)),
        set("/providers/p/clock_skew_seconds", json!(1.5)),
        set("/providers/p/clock_skew_seconds", json!(3601)),
        set(
            "/token_exchange/client_auth/client_secret_env",
            json!("MISSING"),
        ),
        set(
            "/token_exchange/token_endpoint/uri",
            json!("https://sts.example.com/token\r\nx: y"),
        ),
    ];
    let mut deep = base.clone();
    deep["resource_name"] =
        serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100)))
            .unwrap_or(Value::Null);
    cases.push(deep);
    let mut unknown = base.clone();
    unknown["providers"]["p"]["remote_jwks"]["cache_durationn"] = json!("5s");
    cases.push(unknown);
    for doc in cases {
        let e = Config::from_json_with_env(doc.to_string().as_bytes(), &env)
            .expect_err(&doc.to_string());
        let text = e.to_string();
        assert!(
            !text.contains(secret) && !text.contains("top-secret"),
            "{text}"
        );
    }
    for bytes in [
        b"".to_vec(),
        b"null".to_vec(),
        vec![0xff; 10],
        format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)).into_bytes(),
    ] {
        assert!(Config::from_json_with_env(&bytes, &env).is_err());
    }
    // The secret never shows in the configuration's Debug output.
    let config = Config::from_json_with_env(base.to_string().as_bytes(), &env).expect("config");
    assert!(!format!("{config:?}").contains("top-secret"));
}
