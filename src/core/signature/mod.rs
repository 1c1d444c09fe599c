//! Signature checks over a JWS signing input (`header.payload`), against public keys decoded
//! once, when the key set is read. Only the signature is judged here: the header and the claims
//! are read by `jwt`, the same way for every algorithm.
//!
//! The signature is JWS's raw form (RFC 7518 §3.3–3.5, RFC 8037 §3.1): the modulus-sized
//! integer for RSA, the fixed-size r‖s for ECDSA, 64 bytes for Ed25519. Any other length is an
//! invalid signature, never an error of another kind.

/// `unrolled!(I in [0, 1, …] { body })`: the body once per listed value, with I a constant.
/// The crate is built for size (opt-level "s"), which leaves loops rolled; the limb loops of
/// the curve arithmetic are the hot path of every verification, and unrolled, their indices
/// are constants (no bounds checks) and a modulus' limbs fold into the code.
macro_rules! unrolled {
    ($i:ident in [$($n:literal),*] $body:block) => {
        $( { const $i: usize = $n; $body } )*
    };
}

mod ecdsa;
mod ed25519;
mod es256;
mod es384;
mod mont256;
mod montgomery;
mod naf;
mod rsa;
mod straus;
mod weierstrass;

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

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Invalid => "signature invalid",
            SignatureError::KeyMismatch => "key does not allow the algorithm",
        })
    }
}

impl std::error::Error for SignatureError {}

/// A public key ready to verify: points on the curve checked, RSA constants computed.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Rsa(RsaPublicKey),
    /// Boxed: the precomputed multiples are 4 KiB (P-256) and 3 KiB (P-384).
    P256(Box<es256::P256Key>),
    P384(Box<es384::P384Key>),
    /// Boxed: the precomputed multiples are 7.5 KiB.
    Ed25519(Box<ed25519::Ed25519Key>),
}

impl PublicKey {
    /// A P-256 key from a JWK's `x` and `y` (32 bytes each); `None` off the curve.
    pub fn p256(x: &[u8], y: &[u8]) -> Option<PublicKey> {
        es256::P256Key::from_coordinates(x, y).map(|key| PublicKey::P256(Box::new(key)))
    }

    /// A P-384 key from a JWK's `x` and `y` (48 bytes each); `None` off the curve.
    pub fn p384(x: &[u8], y: &[u8]) -> Option<PublicKey> {
        es384::P384Key::from_coordinates(x, y).map(|key| PublicKey::P384(Box::new(key)))
    }

    /// An Ed25519 key from a JWK's `x`; `None` unless it is a canonical point of large order.
    pub fn ed25519(x: &[u8]) -> Option<PublicKey> {
        ed25519::Ed25519Key::from_bytes(x).map(|key| PublicKey::Ed25519(Box::new(key)))
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
            PublicKey::P256(key) => key.verify(signing_input, signature),
            PublicKey::P384(key) => key.verify(signing_input, signature),
            PublicKey::Ed25519(key) => key.verify(signing_input, signature),
        };
        if valid {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}
