//! ES256 (ECDSA over P-256 with SHA-256, RFC 7518 §3.4) on arithmetic of its own, written for
//! wasm: 32-bit limbs (`mont256`), Jacobian points, precomputed multiples of the key (when the
//! key set is parsed) and of the generator (once per process).
//!
//! The signature is r‖s, 32 bytes each; r and s must lie in [1, n − 1]. A high s is accepted
//! (JWS has no low-s rule; Wycheproof's P1363 vectors and BoringSSL agree).

pub(super) mod field;
mod point;
mod scalar;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::signature::mont256;
use crate::signature::straus::{sum_of_multiples, OddMultiples};
use crate::signature::weierstrass::x_reduces_to;
use field::Fe;
use point::{Affine, Jacobian};

/// Odd multiples per chunk of the key (NAF width 6): 64 affine points, 4 KiB.
const KEY_MULTIPLES: usize = 16;
/// Odd multiples per chunk of the generator (NAF width 8): 256 points, 16 KiB, once.
const GENERATOR_MULTIPLES: usize = 64;

/// A P-256 public key as the multiples a verification adds up.
#[derive(Debug, Clone)]
pub struct P256Key {
    multiples: OddMultiples<Affine, KEY_MULTIPLES>,
}

impl P256Key {
    /// The point (x, y), 32 big-endian bytes each; `None` unless it is on the curve.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<P256Key> {
        let point = Affine::from_coordinates(x, y)?;
        Some(P256Key {
            multiples: OddMultiples::new(Jacobian::from(point))?,
        })
    }

    /// SEC 1 §4.1.4: with z the SHA-256 of the input, u1 = z/s and u2 = r/s, the signature is
    /// valid when the x of u1·G + u2·Q is r modulo n.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        static GENERATOR: OnceLock<Option<OddMultiples<Affine, GENERATOR_MULTIPLES>>> =
            OnceLock::new();
        let Some(generator) =
            GENERATOR.get_or_init(|| OddMultiples::new(Jacobian::from(Affine::generator()?)))
        else {
            return false;
        };
        let Some((r, s)) = signature.split_at_checked(32) else {
            return false;
        };
        let (Some(r), Some(s)) = (scalar::in_range(r), scalar::in_range(s)) else {
            return false;
        };
        let Some(z) = mont256::from_be_bytes(&Sha256::digest(signing_input)) else {
            return false;
        };
        let Some((u1, u2)) = scalar::u_values(&z, &r, &s) else {
            return false;
        };
        let sum: Jacobian = sum_of_multiples(&u1, generator, &u2, &self.multiples);
        x_reduces_to(&sum, &r, &scalar::N.value, Fe::from_integer)
    }
}
