//! JSON Web Key Sets: parsing the IdP's keys and checking a token's signature against them.
//!
//! A key is only ever used with the algorithms its type allows (RSA: RS*/PS*, EC P-256: ES256,
//! EC P-384: ES384, OKP Ed25519: EdDSA), and with its own `alg` when the JWK names one. HMAC and
//! `none` are never accepted, so a public key can never be used as an HMAC secret.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use jwt_simple::JWTError;

use crate::rsa::{HashAlg, RsaPublicKey};
use serde_json::Value;

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

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    /// Verified by `core::rsa` (fast in wasm); the Montgomery constants are computed here, once.
    Rsa(RsaPublicKey),
    P256 {
        sec1: Vec<u8>,
    },
    P384 {
        sec1: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<Algorithm>,
    material: KeyMaterial,
}

impl Jwk {
    pub fn allows(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|pinned| pinned != alg) {
            return false;
        }
        matches!(
            (&self.material, alg),
            (
                KeyMaterial::Rsa(_),
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (KeyMaterial::P256 { .. }, Algorithm::ES256)
                | (KeyMaterial::P384 { .. }, Algorithm::ES384)
                | (KeyMaterial::Ed25519 { .. }, Algorithm::EdDSA)
        )
    }

    /// Checks the signature of a compact JWS. The caller has parsed the token and chosen this
    /// key for `alg`; claims are validated by the caller, not here.
    pub fn verify(&self, alg: Algorithm, token: &str) -> Result<(), SignatureError> {
        if !self.allows(alg) {
            return Err(SignatureError::KeyMismatch);
        }
        if let KeyMaterial::Rsa(key) = &self.material {
            return verify_rsa(key, alg, token);
        }
        // EC and EdDSA: jwt-simple re-checks the header's `alg` and the signature; its own claim
        // checks are switched off (time pinned to 0, future accepted): ours are stricter and
        // say why.
        let options = VerificationOptions {
            accept_future: true,
            artificial_time: Some(UnixTimeStamp::from_secs(0)),
            time_tolerance: None,
            max_token_length: None,
            ..Default::default()
        };
        let result = match (&self.material, alg) {
            (KeyMaterial::P256 { sec1 }, Algorithm::ES256) => ES256PublicKey::from_bytes(sec1)
                .and_then(|k| k.verify_token::<NoCustomClaims>(token, Some(options))),
            (KeyMaterial::P384 { sec1 }, Algorithm::ES384) => ES384PublicKey::from_bytes(sec1)
                .and_then(|k| k.verify_token::<NoCustomClaims>(token, Some(options))),
            (KeyMaterial::Ed25519 { x }, Algorithm::EdDSA) => Ed25519PublicKey::from_bytes(x)
                .and_then(|k| k.verify_token::<NoCustomClaims>(token, Some(options))),
            _ => return Err(SignatureError::KeyMismatch),
        };
        result
            .map(|_| ())
            .map_err(|e| match e.downcast_ref::<JWTError>() {
                Some(JWTError::InvalidSignature) => SignatureError::Invalid,
                // Claims jwt-simple cannot read (odd types) surface here after a good signature.
                _ => SignatureError::Unreadable,
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Invalid,
    KeyMismatch,
    /// The token could not be checked (malformed parts or claims).
    Unreadable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError(pub String);

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

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
            return Err(JwksError(format!(
                "JWKS larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| JwksError(format!("JWKS is not JSON ({e})")))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError("JWKS has no \"keys\" array".into()))?;
        let mut set = KeySet::default();
        for key in keys.iter().take(MAX_KEYS) {
            match parse_jwk(key) {
                Some(jwk) => set.keys.push(jwk),
                None => set.skipped += 1,
            }
        }
        set.skipped += keys.len().saturating_sub(MAX_KEYS);
        if set.keys.is_empty() {
            return Err(JwksError("JWKS has no usable signing key".into()));
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

/// RS*/PS* over the token's signing input (`header.payload`).
fn verify_rsa(key: &RsaPublicKey, alg: Algorithm, token: &str) -> Result<(), SignatureError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(SignatureError::Unreadable)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| SignatureError::Unreadable)?;
    let (hash, pss) = match alg {
        Algorithm::RS256 => (HashAlg::Sha256, false),
        Algorithm::RS384 => (HashAlg::Sha384, false),
        Algorithm::RS512 => (HashAlg::Sha512, false),
        Algorithm::PS256 => (HashAlg::Sha256, true),
        Algorithm::PS384 => (HashAlg::Sha384, true),
        Algorithm::PS512 => (HashAlg::Sha512, true),
        _ => return Err(SignatureError::KeyMismatch),
    };
    let digest = hash.digest(signing_input.as_bytes());
    let valid = if pss {
        key.verify_pss(hash, &digest, &signature)
    } else {
        key.verify_pkcs1v15(hash, &digest, &signature)
    };
    if valid {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
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
    let material = match key.get("kty")?.as_str()? {
        "RSA" => {
            let key = RsaPublicKey::new(&b64_field(key, "n")?, &b64_field(key, "e")?)?;
            // RFC 7518 §3.3: 2048 bits at least; beyond 8192 bits is a cost attack, not a key.
            if !(2048..=8192).contains(&key.bits()) {
                return None;
            }
            KeyMaterial::Rsa(key)
        }
        "EC" => {
            let (x, y) = (b64_field(key, "x")?, b64_field(key, "y")?);
            let crv = key.get("crv")?.as_str()?;
            let size = match crv {
                "P-256" => 32,
                "P-384" => 48,
                _ => return None,
            };
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut sec1 = Vec::with_capacity(1 + 2 * size);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            if size == 32 {
                ES256PublicKey::from_bytes(&sec1).ok()?;
                KeyMaterial::P256 { sec1 }
            } else {
                ES384PublicKey::from_bytes(&sec1).ok()?;
                KeyMaterial::P384 { sec1 }
            }
        }
        "OKP" => {
            if key.get("crv")?.as_str()? != "Ed25519" {
                return None;
            }
            let x = b64_field(key, "x")?;
            Ed25519PublicKey::from_bytes(&x).ok()?;
            KeyMaterial::Ed25519 { x }
        }
        _ => return None,
    };
    let jwk = Jwk { kid, alg, material };
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

    fn claims() -> JWTClaims<NoCustomClaims> {
        Claims::create(Duration::from_mins(5)).with_issuer("iss")
    }

    #[test]
    fn rsa_keys_verify_rs_and_ps_tokens() {
        let set = KeySet::parse(&jwks(vec![rsa_jwk(rsa(), "rsa-1", None)])).unwrap();
        let token = rsa().sign(claims()).unwrap();
        let KeyLookup::Candidates(keys) = set.lookup(Some("rsa-1"), Algorithm::RS256) else {
            panic!("key not found")
        };
        assert_eq!(keys[0].verify(Algorithm::RS256, &token), Ok(()));

        // PS256 with the same RSA key.
        let ps = PS256KeyPair::from_der(&rsa().to_der().unwrap()).unwrap();
        let token = ps.sign(claims()).unwrap();
        assert_eq!(keys[0].verify(Algorithm::PS256, &token), Ok(()));
    }

    #[test]
    fn a_token_signed_by_another_key_is_invalid() {
        let set = KeySet::parse(&jwks(vec![rsa_jwk(rsa(), "rsa-1", None)])).unwrap();
        let token = rsa_other().sign(claims()).unwrap();
        let KeyLookup::Candidates(keys) = set.lookup(None, Algorithm::RS256) else {
            panic!("no candidate")
        };
        assert_eq!(
            keys[0].verify(Algorithm::RS256, &token),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn ec_and_eddsa_keys() {
        let es256 = ES256KeyPair::generate().with_key_id("ec");
        let es384 = ES384KeyPair::generate().with_key_id("ec384");
        let ed = Ed25519KeyPair::generate().with_key_id("ed");
        let set = KeySet::parse(&jwks(vec![
            ec256_jwk(&es256, "ec"),
            ec384_jwk(&es384, "ec384"),
            ed25519_jwk(&ed, "ed"),
        ]))
        .unwrap();
        assert_eq!(set.len(), 3);
        for (kid, alg, token) in [
            ("ec", Algorithm::ES256, es256.sign(claims()).unwrap()),
            ("ec384", Algorithm::ES384, es384.sign(claims()).unwrap()),
            ("ed", Algorithm::EdDSA, ed.sign(claims()).unwrap()),
        ] {
            let KeyLookup::Candidates(keys) = set.lookup(Some(kid), alg) else {
                panic!("{kid} not found")
            };
            assert_eq!(keys[0].verify(alg, &token), Ok(()), "{kid}");
        }
        // An EC key is never used for RSA, nor the reverse.
        assert!(matches!(
            set.lookup(Some("ec"), Algorithm::RS256),
            KeyLookup::AlgorithmMismatch
        ));
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
        short["n"] = URL_SAFE_NO_PAD.encode([0xffu8; 64]).into();
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
    fn algorithm_names() {
        for name in ["none", "HS256", "HS512", "RS1", "", "rs256"] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
        for name in ["RS256", "PS512", "ES384", "EdDSA"] {
            assert_eq!(Algorithm::from_name(name).map(Algorithm::name), Some(name));
        }
    }
}
