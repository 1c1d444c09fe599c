//! One header and claim validator for every algorithm: the same header and payload, signed with
//! an RS256, ES256, ES384 and EdDSA key, are judged the same by the filter's path for a token
//! (`jwt::parse` for the header and claims, then `KeySet::lookup` and `Jwk::verify` for the
//! signature). Security review item 10: EC and Ed25519 tokens used to be re-read by jwt-simple
//! inside the signature check, which refused a numeric `jti` or `typ: "JOSE"` that RS256
//! tokens were allowed.
//!
//! Tokens are signed here over hand-written JSON, so headers and claims can be anything.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mcp_auth_core::jwks::{KeyLookup, KeySet};
use mcp_auth_core::jwt::{self, TokenError, UnverifiedToken};
use mcp_auth_core::testing::{
    ec256_jwk, ec384_jwk, ed25519, ed25519_jwk, es256, es384, jwks, rsa, rsa_jwk,
};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};

const ISS: &str = "https://idp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_000_000;
const MAX_TOKEN_BYTES: usize = 16_384;

/// The four algorithms and the kid of their key in the key set.
const ALGORITHMS: [(&str, &str); 4] = [
    ("RS256", "rsa-1"),
    ("ES256", "ec-256"),
    ("ES384", "ec-384"),
    ("EdDSA", "ed-1"),
];

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The raw JWS signature of `signing_input` with the fixture key for `alg`.
fn sign(alg: &str, signing_input: &[u8]) -> Vec<u8> {
    match alg {
        "RS256" => {
            let key = rsa::RsaPrivateKey::from_pkcs8_der(&rsa().to_der().expect("DER"))
                .expect("PKCS#8 private key");
            rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
                .sign(signing_input)
                .to_vec()
        }
        "ES256" => {
            let key = p256::ecdsa::SigningKey::from_slice(&es256().to_bytes()).expect("P-256");
            let signature: p256::ecdsa::Signature = key.sign(signing_input);
            signature.to_bytes().to_vec()
        }
        "ES384" => {
            let key = p384::ecdsa::SigningKey::from_slice(&es384().to_bytes()).expect("P-384");
            let signature: p384::ecdsa::Signature = key.sign(signing_input);
            signature.to_bytes().to_vec()
        }
        "EdDSA" => {
            let pair =
                ed25519_compact::KeyPair::from_slice(&ed25519().to_bytes()).expect("Ed25519");
            pair.sk.sign(signing_input, None).to_vec()
        }
        other => panic!("no fixture key for {other}"),
    }
}

/// A compact JWS of exactly these header and payload bytes.
fn token(alg: &str, header: &str, payload: &str) -> String {
    let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = sign(alg, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&signature))
}

fn key_set() -> KeySet {
    KeySet::parse(&jwks(vec![
        rsa_jwk(rsa(), "rsa-1", None),
        ec256_jwk(es256(), "ec-256"),
        ec384_jwk(es384(), "ec-384"),
        ed25519_jwk(ed25519(), "ed-1"),
    ]))
    .expect("key set")
}

/// The token read and its signature checked: what the claim checks (time, issuer, audience)
/// then see, or why it was refused before them.
fn judge(token: &str) -> Result<UnverifiedToken, TokenError> {
    let keys = key_set();
    let parsed = jwt::parse(token, MAX_TOKEN_BYTES)?;
    let KeyLookup::Candidates(candidates) = keys.lookup(parsed.kid.as_deref(), parsed.alg) else {
        return Err(TokenError::KeyNotFound);
    };
    let verified_by = candidates
        .iter()
        .find_map(|key| key.verify(parsed.alg, token).ok())
        .ok_or(TokenError::SignatureInvalid)?;
    assert!(keys.contains_thumbprint(&verified_by.thumbprint()));
    Ok(parsed)
}

fn header(alg: &str, kid: &str, extra: &str) -> String {
    format!(r#"{{"alg":"{alg}","kid":"{kid}"{extra}}}"#)
}

/// Claims that pass every check, with `extra` members appended.
fn payload(extra: &str) -> String {
    format!(
        r#"{{"iss":"{ISS}","aud":"{RESOURCE}","sub":"alice","iat":{},"scp":["mcp:tools:call"]{extra}}}"#,
        NOW - 10
    )
}

/// Signs `header_extra`/`payload` with every algorithm: each is accepted with the same claims,
/// or refused for the same reason.
#[track_caller]
fn assert_same_for_every_algorithm(
    header_extra: &str,
    payload: &str,
    expected: Result<(), TokenError>,
) {
    for (alg, kid) in ALGORITHMS {
        let token = token(alg, &header(alg, kid, header_extra), payload);
        let what = format!("{alg} with header extra {header_extra:?} and payload {payload}");
        match (judge(&token), expected) {
            (Ok(parsed), Ok(())) => {
                let reference = judge(&token_signed_rs256(header_extra, payload)).expect("RS256");
                assert_eq!(parsed.claims.exp, reference.claims.exp, "{what}");
                assert_eq!(parsed.claims.sub, reference.claims.sub, "{what}");
                assert_eq!(parsed.claims.scopes, reference.claims.scopes, "{what}");
                assert_eq!(parsed.claims.all, reference.claims.all, "{what}");
            }
            (Err(got), Err(want)) => assert_eq!(got, want, "{what}"),
            (got, want) => panic!("{what}: got {:?}, expected {want:?}", got.map(|_| ())),
        }
    }
}

fn token_signed_rs256(header_extra: &str, payload: &str) -> String {
    token("RS256", &header("RS256", "rsa-1", header_extra), payload)
}

fn valid_exp() -> String {
    format!(r#","exp":{}"#, NOW + 300)
}

#[test]
fn a_plain_token_is_accepted_with_every_algorithm() {
    assert_same_for_every_algorithm(r#","typ":"JWT""#, &payload(&valid_exp()), Ok(()));
}

#[test]
fn a_numeric_jti_is_judged_alike() {
    let claims = payload(&format!(r#"{},"jti":42"#, valid_exp()));
    assert_same_for_every_algorithm("", &claims, Ok(()));
}

#[test]
fn typ_jose_is_judged_alike() {
    assert_same_for_every_algorithm(r#","typ":"JOSE""#, &payload(&valid_exp()), Ok(()));
}

#[test]
fn an_unknown_header_member_is_judged_alike() {
    let extra = r#","x-vendor":{"region":"eu","n":[1,2]}"#;
    assert_same_for_every_algorithm(extra, &payload(&valid_exp()), Ok(()));
}

#[test]
fn a_fractional_exp_is_judged_alike() {
    let claims = payload(&format!(r#","exp":{}.75"#, NOW + 300));
    assert_same_for_every_algorithm("", &claims, Ok(()));
    // No expiry is for the claim checks to refuse, alike too.
    assert_same_for_every_algorithm("", &payload(""), Ok(()));
}

#[test]
fn refusals_are_judged_alike() {
    let exp = valid_exp();
    let duplicate_exp = payload(&format!(r#"{exp},"exp":1"#));
    assert_same_for_every_algorithm("", &duplicate_exp, Err(TokenError::Malformed));
    let exp_as_string = payload(&format!(r#","exp":"{}""#, NOW + 300));
    assert_same_for_every_algorithm("", &exp_as_string, Err(TokenError::Malformed));
    let numeric_aud = format!(r#"{exp},"aud":7"#);
    let numeric_aud = format!(r#"{{"iss":"{ISS}"{numeric_aud}}}"#);
    assert_same_for_every_algorithm("", &numeric_aud, Err(TokenError::Malformed));
    assert_same_for_every_algorithm(
        r#","crit":["exp"]"#,
        &payload(&exp),
        Err(TokenError::UnsupportedCriticalHeader),
    );
}

#[test]
fn a_tampered_payload_is_refused_with_every_algorithm() {
    for (alg, kid) in ALGORITHMS {
        let good = token(alg, &header(alg, kid, ""), &payload(&valid_exp()));
        assert!(judge(&good).is_ok(), "{alg}");
        let (head, rest) = good.split_once('.').expect("three parts");
        let (_, signature) = rest.split_once('.').expect("three parts");
        let forged = payload(&format!(r#"{},"admin":true"#, valid_exp()));
        let tampered = format!("{head}.{}.{signature}", b64(forged.as_bytes()));
        assert_eq!(
            judge(&tampered).unwrap_err(),
            TokenError::SignatureInvalid,
            "{alg}"
        );
    }
}
