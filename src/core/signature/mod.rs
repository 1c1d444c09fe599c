//! Signature checks over a JWS signing input (`header.payload`), against public keys decoded
//! once, when the key set is read. Only the signature is judged here: the header and the claims
//! are read by `jwt`, the same way for every algorithm.
//!
//! The signature is JWS's raw form (RFC 7518 §3.3–3.5, RFC 8037 §3.1): the modulus-sized
//! integer for RSA, the fixed-size r‖s for ECDSA, 64 bytes for Ed25519. Any other length is an
//! invalid signature, never an error of another kind.

mod ecdsa;
mod eddsa;
mod lincomb;
mod rsa;

use crate::jwks::Algorithm;
use crate::rsa::RsaPublicKey;

/// Why a signature check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature is not one this key made over this input (wrong length included).
    Invalid,
    /// The key cannot be used with the algorithm.
    KeyMismatch,
}

/// A public key ready to verify: points on the curve checked, RSA constants computed.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Rsa(RsaPublicKey),
    /// Boxed: the precomputed multiples are 1.5 KiB (P-256) and 2.3 KiB (P-384).
    P256(Box<ecdsa::P256Key>),
    P384(Box<ecdsa::P384Key>),
    Ed25519(ed25519_compact::PublicKey),
}

impl PublicKey {
    /// A P-256 key from a JWK's `x` and `y` (32 bytes each); `None` off the curve.
    pub fn p256(x: &[u8], y: &[u8]) -> Option<PublicKey> {
        ecdsa::p256_key(x, y).map(|key| PublicKey::P256(Box::new(key)))
    }

    /// A P-384 key from a JWK's `x` and `y` (48 bytes each); `None` off the curve.
    pub fn p384(x: &[u8], y: &[u8]) -> Option<PublicKey> {
        ecdsa::p384_key(x, y).map(|key| PublicKey::P384(Box::new(key)))
    }

    /// An Ed25519 key from a JWK's `x`; `None` unless it is a canonical point of large order.
    pub fn ed25519(x: &[u8]) -> Option<PublicKey> {
        eddsa::ed25519_key(x).map(PublicKey::Ed25519)
    }

    /// Whether the key's type allows the algorithm (RSA: RS*/PS*; each curve its own).
    pub fn allows(&self, alg: Algorithm) -> bool {
        match self {
            PublicKey::Rsa(_) => rsa::scheme(alg).is_some(),
            PublicKey::P256(_) => alg == Algorithm::ES256,
            PublicKey::P384(_) => alg == Algorithm::ES384,
            PublicKey::Ed25519(_) => alg == Algorithm::EdDSA,
        }
    }

    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if !self.allows(alg) {
            return Err(SignatureError::KeyMismatch);
        }
        let valid = match self {
            PublicKey::Rsa(key) => rsa::verify(key, alg, signing_input, signature),
            PublicKey::P256(key) => ecdsa::verify_p256(key, signing_input, signature),
            PublicKey::P384(key) => ecdsa::verify_p384(key, signing_input, signature),
            PublicKey::Ed25519(key) => eddsa::verify_ed25519(key, signing_input, signature),
        };
        if valid {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}
