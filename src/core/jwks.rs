//! JSON Web Key Sets: parsing the IdP's keys and checking a token's signature against them.
//!
//! A key is only ever used with the algorithms its type allows (RSA: RS*/PS*, EC P-256: ES256,
//! EC P-384: ES384, OKP Ed25519: EdDSA), and with its own `alg` when the JWK names one. HMAC and
//! `none` are never accepted, so a public key can never be used as an HMAC secret.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::rsa::RsaPublicKey;
use crate::signature::PublicKey;
use serde_json::Value;

pub use crate::signature::SignatureError;
pub use thumbprint::Thumbprint;

mod thumbprint;

/// Signature algorithms the filter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    /// `None` for `none`, HMAC and anything unknown: those are never accepted.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Some(match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<Algorithm>,
    key: PublicKey,
    thumbprint: Thumbprint,
}

impl Jwk {
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|pinned| pinned == alg) && self.key.allows(alg)
    }

    /// The key's identity (RFC 7638), computed when the key set was parsed.
    pub fn thumbprint(&self) -> Thumbprint {
        self.thumbprint
    }

    /// Checks the signature of a compact JWS and answers with the key that verified it (this
    /// one), so the caller can record which key that was. The caller has parsed the token and
    /// chosen this key for `alg`; the header and claims are judged by the caller, not here.
    pub fn verify(&self, alg: Algorithm, token: &str) -> Result<&Jwk, SignatureError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(SignatureError::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| SignatureError::Invalid)?;
        self.verify_signature(alg, signing_input.as_bytes(), &signature)?;
        Ok(self)
    }

    /// Checks a raw signature (JWS form: r‖s for ECDSA) over a signing input.
    pub fn verify_signature(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if !self.allows(alg) {
            return Err(SignatureError::KeyMismatch);
        }
        self.key.verify(alg, signing_input, signature)
    }
}

/// Why a JWKS document gave no key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// Over `MAX_JWKS_BYTES`.
    TooLarge,
    /// Not JSON; where the parser stopped.
    NotJson { line: usize, column: usize },
    /// No `keys` array at the top.
    NoKeysArray,
    /// Keys, but none this filter can use (type, `use`, curve, size).
    NoUsableKey,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge => write!(f, "JWKS larger than {MAX_JWKS_BYTES} bytes"),
            JwksError::NotJson { line, column } => {
                write!(f, "JWKS is not JSON (line {line}, column {column})")
            }
            JwksError::NoKeysArray => write!(f, "JWKS has no \"keys\" array"),
            JwksError::NoUsableKey => write!(f, "JWKS has no usable signing key"),
        }
    }
}

impl std::error::Error for JwksError {}

/// Largest JWKS document accepted (a real one is a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
const MAX_KEYS: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
    /// Keys present in the document but not usable (unknown type, wrong `use`, bad numbers).
    pub skipped: usize,
}

/// What a key lookup for a token found.
pub enum KeyLookup<'a> {
    /// Keys to try, in order (one when the token names a `kid`).
    Candidates(Vec<&'a Jwk>),
    /// No key has the token's `kid` (or, without a `kid`, none fits the algorithm).
    UnknownKey,
    /// A key has the `kid`, but its type or pinned `alg` does not allow the token's algorithm.
    AlgorithmMismatch,
}

impl KeySet {
    pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| JwksError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeysArray)?;
        let mut set = KeySet::default();
        for key in keys.iter().take(MAX_KEYS) {
            match parse_jwk(key) {
                Some(jwk) => set.keys.push(jwk),
                None => set.skipped += 1,
            }
        }
        set.skipped += keys.len().saturating_sub(MAX_KEYS);
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether the key with this RFC 7638 thumbprint is still in the set.
    pub fn contains_thumbprint(&self, thumbprint: &Thumbprint) -> bool {
        self.keys.iter().any(|k| &k.thumbprint == thumbprint)
    }

    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup<'_> {
        match kid {
            Some(kid) => {
                let named: Vec<&Jwk> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    return KeyLookup::UnknownKey;
                }
                let fitting: Vec<&Jwk> = named.into_iter().filter(|k| k.allows(alg)).collect();
                if fitting.is_empty() {
                    KeyLookup::AlgorithmMismatch
                } else {
                    KeyLookup::Candidates(fitting)
                }
            }
            None => {
                let fitting: Vec<&Jwk> = self.keys.iter().filter(|k| k.allows(alg)).collect();
                if fitting.is_empty() {
                    KeyLookup::UnknownKey
                } else {
                    KeyLookup::Candidates(fitting)
                }
            }
        }
    }
}

fn b64_field(key: &Value, name: &str) -> Option<Vec<u8>> {
    let s = key.get(name)?.as_str()?;
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Reads one JWK; `None` when it is not a usable signature-verification key.
fn parse_jwk(key: &Value) -> Option<Jwk> {
    if let Some(u) = key.get("use") {
        if u.as_str() != Some("sig") {
            return None;
        }
    }
    if let Some(ops) = key.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return None;
        }
    }
    let kid = match key.get("kid") {
        None => None,
        Some(v) => Some(v.as_str()?.to_string()),
    };
    let alg = match key.get("alg") {
        None => None,
        Some(v) => Some(Algorithm::from_name(v.as_str()?)?),
    };
    let (key, thumbprint) = match key.get("kty")?.as_str()? {
        "RSA" => {
            let (n, e) = (b64_field(key, "n")?, b64_field(key, "e")?);
            let rsa = RsaPublicKey::new(&n, &e)?;
            // RFC 7518 §3.3: 2048 bits at least; beyond 8192 bits is a cost attack, not a key.
            if !(2048..=8192).contains(&rsa.bits()) {
                return None;
            }
            (PublicKey::Rsa(rsa), thumbprint::rsa(&n, &e))
        }
        "EC" => {
            let (x, y) = (b64_field(key, "x")?, b64_field(key, "y")?);
            let crv = key.get("crv")?.as_str()?;
            let public = match crv {
                "P-256" => PublicKey::p256(&x, &y)?,
                "P-384" => PublicKey::p384(&x, &y)?,
                _ => return None,
            };
            (public, thumbprint::ec(crv, &x, &y))
        }
        "OKP" => {
            let crv = key.get("crv")?.as_str()?;
            if crv != "Ed25519" {
                return None;
            }
            let x = b64_field(key, "x")?;
            (PublicKey::ed25519(&x)?, thumbprint::okp(crv, &x))
        }
        _ => return None,
    };
    let jwk = Jwk {
        kid,
        alg,
        key,
        thumbprint,
    };
    // A JWK whose pinned `alg` does not fit its own type is unusable.
    if let Some(a) = jwk.alg {
        if !jwk.allows(a) {
            return None;
        }
    }
    Some(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use jwt_simple::prelude::*;

    fn claims() -> JWTClaims<NoCustomClaims> {
        Claims::create(Duration::from_mins(5)).with_issuer("iss")
    }

    fn only_candidate(set: &KeySet, kid: &str, alg: Algorithm) -> Jwk {
        match set.lookup(Some(kid), alg) {
            KeyLookup::Candidates(keys) if keys.len() == 1 => keys[0].clone(),
            _ => panic!("{kid}: not exactly one candidate"),
        }
    }

    fn ec_and_ed_set() -> KeySet {
        KeySet::parse(&jwks(vec![
            ec256_jwk(es256(), "ec-256"),
            ec384_jwk(es384(), "ec-384"),
            ed25519_jwk(ed25519(), "ed-1"),
        ]))
        .unwrap()
    }

    /// A token of each EC/Ed algorithm, signed by its fixture key.
    fn ec_and_ed_tokens() -> [(&'static str, Algorithm, String); 3] {
        [
            ("ec-256", Algorithm::ES256, es256().sign(claims()).unwrap()),
            ("ec-384", Algorithm::ES384, es384().sign(claims()).unwrap()),
            ("ed-1", Algorithm::EdDSA, ed25519().sign(claims()).unwrap()),
        ]
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn rsa_keys_verify_rs_and_ps_tokens() {
        let set = KeySet::parse(&jwks(vec![rsa_jwk(rsa(), "rsa-1", None)])).unwrap();
        let key = only_candidate(&set, "rsa-1", Algorithm::RS256);
        let token = rsa().sign(claims()).unwrap();
        let verified = key.verify(Algorithm::RS256, &token).unwrap();
        assert_eq!(verified.kid.as_deref(), Some("rsa-1"));

        // PS256 with the same RSA key.
        let ps = PS256KeyPair::from_der(&rsa().to_der().unwrap()).unwrap();
        let token = ps.sign(claims()).unwrap();
        assert!(key.verify(Algorithm::PS256, &token).is_ok());
        assert_eq!(
            key.verify(Algorithm::RS256, &token).unwrap_err(),
            SignatureError::Invalid
        );
    }

    #[test]
    fn a_token_signed_by_another_key_is_invalid() {
        let set = KeySet::parse(&jwks(vec![rsa_jwk(rsa(), "rsa-1", None)])).unwrap();
        let token = rsa_other().sign(claims()).unwrap();
        let KeyLookup::Candidates(keys) = set.lookup(None, Algorithm::RS256) else {
            panic!("no candidate")
        };
        assert_eq!(
            keys[0].verify(Algorithm::RS256, &token).unwrap_err(),
            SignatureError::Invalid
        );
    }

    #[test]
    fn ec_and_eddsa_keys_verify_their_tokens_and_say_which_key() {
        let set = ec_and_ed_set();
        assert_eq!(set.len(), 3);
        for (kid, alg, token) in ec_and_ed_tokens() {
            let key = only_candidate(&set, kid, alg);
            let verified = key.verify(alg, &token).unwrap();
            assert_eq!(verified.kid.as_deref(), Some(kid));
            assert!(set.contains_thumbprint(&verified.thumbprint()), "{kid}");
        }
        // An EC key is never used for RSA, nor the reverse.
        assert!(matches!(
            set.lookup(Some("ec-256"), Algorithm::RS256),
            KeyLookup::AlgorithmMismatch
        ));
        assert!(matches!(
            set.lookup(Some("ec-256"), Algorithm::ES384),
            KeyLookup::AlgorithmMismatch
        ));
    }

    #[test]
    fn a_key_refuses_an_algorithm_it_does_not_allow() {
        let set = ec_and_ed_set();
        let tokens = ec_and_ed_tokens();
        let p256 = only_candidate(&set, "ec-256", Algorithm::ES256);
        for (_, alg, token) in &tokens {
            if *alg != Algorithm::ES256 {
                assert_eq!(
                    p256.verify(*alg, token).unwrap_err(),
                    SignatureError::KeyMismatch
                );
            }
        }
        assert_eq!(
            p256.verify(Algorithm::RS256, &tokens[0].2).unwrap_err(),
            SignatureError::KeyMismatch
        );
    }

    #[test]
    fn tampered_payloads_are_invalid() {
        let set = ec_and_ed_set();
        for (kid, alg, token) in ec_and_ed_tokens() {
            let key = only_candidate(&set, kid, alg);
            let parts: Vec<&str> = token.split('.').collect();
            let other_payload = b64(br#"{"iss":"iss","sub":"mallory","exp":99999999999}"#);
            let tampered = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
            assert_eq!(
                key.verify(alg, &tampered).unwrap_err(),
                SignatureError::Invalid,
                "{kid}"
            );
            // One flipped bit anywhere in the signing input is enough.
            let mut input = format!("{}.{}", parts[0], parts[1]).into_bytes();
            let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            assert!(key.verify_signature(alg, &input, &signature).is_ok());
            let last = input.len() - 1;
            input[last] ^= 1;
            assert_eq!(
                key.verify_signature(alg, &input, &signature).unwrap_err(),
                SignatureError::Invalid,
                "{kid}"
            );
        }
    }

    #[test]
    fn signatures_of_the_wrong_length_are_invalid() {
        let set = ec_and_ed_set();
        for (kid, alg, token) in ec_and_ed_tokens() {
            let key = only_candidate(&set, kid, alg);
            let (input, signature) = token.rsplit_once('.').unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            let expected_len = match alg {
                Algorithm::ES384 => 96,
                _ => 64,
            };
            assert_eq!(signature.len(), expected_len, "{kid}");
            let mut longer = signature.clone();
            longer.push(0);
            let mut zero_prefixed = vec![0];
            zero_prefixed.extend_from_slice(&signature);
            let wrong = [
                Vec::new(),
                signature[..signature.len() - 1].to_vec(),
                longer,
                zero_prefixed,
                [signature.as_slice(), signature.as_slice()].concat(),
            ];
            for bad in wrong {
                assert_eq!(
                    key.verify_signature(alg, input.as_bytes(), &bad)
                        .unwrap_err(),
                    SignatureError::Invalid,
                    "{kid}: {} bytes",
                    bad.len()
                );
                let token = format!("{input}.{}", b64(&bad));
                assert_eq!(
                    key.verify(alg, &token).unwrap_err(),
                    SignatureError::Invalid
                );
            }
        }
    }

    #[test]
    fn unreadable_signatures_are_invalid() {
        let set = ec_and_ed_set();
        let key = only_candidate(&set, "ed-1", Algorithm::EdDSA);
        for token in ["", "no-dots", "a.b.!!!", "a.b.c=", "a.b.c d"] {
            assert_eq!(
                key.verify(Algorithm::EdDSA, token).unwrap_err(),
                SignatureError::Invalid,
                "{token}"
            );
        }
    }

    #[test]
    fn high_s_ecdsa_signatures_are_accepted() {
        use p256::ecdsa::Signature;
        let set = ec_and_ed_set();
        let key = only_candidate(&set, "ec-256", Algorithm::ES256);
        let token = es256().sign(claims()).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
        // (r, s) and (r, n − s) are both valid ECDSA signatures of the same input.
        let (r, s) = signature.split_scalars();
        let negated = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let (low, high) = match signature.normalize_s() {
            None => (signature, negated),
            Some(_) => (negated, signature),
        };
        assert!(low.normalize_s().is_none() && high.normalize_s().is_some());
        for sig in [low, high] {
            assert!(key
                .verify_signature(Algorithm::ES256, input.as_bytes(), &sig.to_bytes())
                .is_ok());
        }
    }

    #[test]
    fn pinned_alg_must_match() {
        let set = KeySet::parse(&jwks(vec![rsa_jwk(rsa(), "rsa-1", Some("RS256"))])).unwrap();
        assert!(matches!(
            set.lookup(Some("rsa-1"), Algorithm::PS256),
            KeyLookup::AlgorithmMismatch
        ));
        assert!(matches!(
            set.lookup(Some("nope"), Algorithm::RS256),
            KeyLookup::UnknownKey
        ));
    }

    #[test]
    fn unusable_keys_are_skipped_and_an_empty_set_is_an_error() {
        let mut bad_n = rsa_jwk(rsa(), "bad", None);
        bad_n["n"] = "!!!".into();
        let mut short = rsa_jwk(rsa(), "short", None);
        short["n"] = b64(&[0xffu8; 64]).into();
        let enc = {
            let mut k = rsa_jwk(rsa(), "enc", None);
            k["use"] = "enc".into();
            k
        };
        let hmac = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"});
        let doc = jwks(vec![bad_n, short, enc, hmac, rsa_jwk(rsa(), "good", None)]);
        let set = KeySet::parse(&doc).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.skipped, 4);
        assert!(set.contains_kid("good"));

        assert!(KeySet::parse(b"{\"keys\": []}").is_err());
        assert!(KeySet::parse(b"not json").is_err());
        assert!(KeySet::parse(b"{\"keys\": {}}").is_err());
        assert!(KeySet::parse(b"[]").is_err());
        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        assert!(KeySet::parse(&huge).is_err());
    }

    #[test]
    fn ec_and_ed_keys_that_are_not_points_of_the_curve_are_skipped() {
        let good = ec256_jwk(es256(), "good");
        let with = |member: &str, value: String| {
            let mut k = good.clone();
            k[member] = value.into();
            k
        };
        let mut one = [0u8; 32];
        one[31] = 1;
        let mut y_one = [0u8; 32];
        y_one[0] = 1;
        let bad = vec![
            with("x", b64(&one)),            // (1, y) is not on P-256
            with("x", b64(&[0u8; 31])),      // short coordinate
            with("y", b64(&[0xffu8; 32])),   // y ≥ p
            with("crv", "P-384".into()),     // P-256 coordinates as P-384
            with("crv", "secp256k1".into()), // unsupported curve
            ed_jwk_with_x(&[0u8; 32]),       // small order (order 4)
            ed_jwk_with_x(&y_one),           // the identity
            ed_jwk_with_x(&[0xffu8; 31]),    // short
            serde_json::json!({"kty": "OKP", "crv": "X25519", "x": b64(&[9u8; 32])}),
        ];
        let count = bad.len();
        let mut keys = bad;
        keys.push(good);
        let set = KeySet::parse(&jwks(keys)).unwrap();
        assert_eq!((set.len(), set.skipped), (1, count));
    }

    fn ed_jwk_with_x(x: &[u8]) -> serde_json::Value {
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(x)})
    }

    fn thumbprint_of(jwk: serde_json::Value) -> String {
        let set = KeySet::parse(&jwks(vec![jwk])).unwrap();
        assert_eq!(set.len(), 1);
        b64(&set.keys[0].thumbprint())
    }

    fn sha256_b64(canonical_json: &str) -> String {
        use sha2::Digest;
        b64(&sha2::Sha256::digest(canonical_json.as_bytes()))
    }

    /// RFC 7638 §3.1.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn thumbprints_are_rfc7638() {
        let rsa = serde_json::json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB",
                                     "alg": "RS256", "kid": "2011-04-29"});
        assert_eq!(
            thumbprint_of(rsa),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // RFC 8037 Appendix A.3.
        let okp = serde_json::json!({"kty": "OKP", "crv": "Ed25519",
                                     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            thumbprint_of(okp),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        // EC: the required members, in order, as RFC 7638 §3.2 spells them.
        for (jwk, crv) in [
            (ec256_jwk(es256(), "a"), "P-256"),
            (ec384_jwk(es384(), "b"), "P-384"),
        ] {
            let (x, y) = (jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap());
            let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
            assert_eq!(thumbprint_of(jwk.clone()), sha256_b64(&canonical), "{crv}");
        }
    }

    #[test]
    fn a_thumbprint_names_the_key_not_the_jwk() {
        let plain = serde_json::json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"});
        let dressed = serde_json::json!({"e": "AQAB", "use": "sig", "kid": "other",
                                         "key_ops": ["verify"], "n": RFC7638_N, "kty": "RSA"});
        let mut n = vec![0u8];
        n.extend(URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap());
        let zero_padded = serde_json::json!({"kty": "RSA", "n": b64(&n), "e": "AAEAAQ"});
        let expected = thumbprint_of(plain);
        assert_eq!(thumbprint_of(dressed), expected);
        assert_eq!(thumbprint_of(zero_padded), expected);
        assert_ne!(thumbprint_of(rsa_jwk(rsa(), "x", None)), expected);
    }

    #[test]
    fn a_key_set_knows_its_thumbprints() {
        let set = ec_and_ed_set();
        let rsa_only = KeySet::parse(&jwks(vec![rsa_jwk(rsa(), "rsa-1", None)])).unwrap();
        let mut seen = Vec::new();
        for key in &set.keys {
            let thumbprint = key.thumbprint();
            assert!(set.contains_thumbprint(&thumbprint));
            assert!(!rsa_only.contains_thumbprint(&thumbprint));
            assert!(!seen.contains(&thumbprint));
            seen.push(thumbprint);
        }
        assert!(!set.contains_thumbprint(&[0u8; 32]));
    }

    #[test]
    fn algorithm_names() {
        for name in [
            "none", "HS256", "HS512", "RS1", "", "rs256", "ES512", "Ed25519",
        ] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
        assert_eq!(Algorithm::from_name("RS256"), Some(Algorithm::RS256));
        assert_eq!(Algorithm::from_name("PS512"), Some(Algorithm::PS512));
        assert_eq!(Algorithm::from_name("ES384"), Some(Algorithm::ES384));
        assert_eq!(Algorithm::from_name("EdDSA"), Some(Algorithm::EdDSA));
    }
}
