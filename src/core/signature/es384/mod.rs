//! ES384 (ECDSA over P-384 with SHA-384, RFC 7518 §3.4) on the points (`weierstrass`) and sums
//! (`straus`) that ES256 uses, over a 12-limb field with rolled loops (`montgomery`): ES384
//! tokens are rare, so this is built for size first (it replaced the p384 crate, which took
//! 120 KB of the .wasm).
//!
//! The signature is r‖s, 48 bytes each; r and s must lie in [1, n − 1]. A high s is accepted
//! (JWS has no low-s rule; Wycheproof's P1363 vectors and BoringSSL agree).

mod field;
mod scalar;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use sha2::{Digest, Sha384};

use crate::signature::montgomery;
use crate::signature::straus::{sum_of_multiples, OddMultiples};
use crate::signature::weierstrass::{self, x_reduces_to};
use field::Fe;

type Affine = weierstrass::Affine<Fe>;
type Jacobian = weierstrass::Jacobian<Fe>;

/// Odd multiples per chunk of the key (NAF width 5): 32 affine points, 3 KiB.
const KEY_MULTIPLES: usize = 8;
/// Odd multiples per chunk of the generator (NAF width 7): 128 points, 12 KiB, once.
const GENERATOR_MULTIPLES: usize = 32;

/// A P-384 public key as the multiples a verification adds up.
#[derive(Debug, Clone)]
pub struct P384Key {
    multiples: OddMultiples<Affine, KEY_MULTIPLES>,
}

impl P384Key {
    /// The point (x, y), 48 big-endian bytes each; `None` unless it is on the curve.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<P384Key> {
        let point = Affine::from_coordinates(x, y)?;
        Some(P384Key {
            multiples: OddMultiples::new(Jacobian::from(point))?,
        })
    }

    /// SEC 1 §4.1.4: with z the SHA-384 of the input, u1 = z/s and u2 = r/s, the signature is
    /// valid when the x of u1·G + u2·Q is r modulo n.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        static GENERATOR: OnceLock<Option<OddMultiples<Affine, GENERATOR_MULTIPLES>>> =
            OnceLock::new();
        let Some(generator) =
            GENERATOR.get_or_init(|| OddMultiples::new(Jacobian::from(Affine::generator()?)))
        else {
            return false;
        };
        let Some((r, s)) = signature.split_at_checked(48) else {
            return false;
        };
        let (Some(r), Some(s)) = (scalar::in_range(r), scalar::in_range(s)) else {
            return false;
        };
        let Some(z) = montgomery::from_be_bytes(&Sha384::digest(signing_input)) else {
            return false;
        };
        let Some((u1, u2)) = scalar::u_values(&z, &r, &s) else {
            return false;
        };
        let sum: Jacobian = sum_of_multiples(&u1, generator, &u2, &self.multiples);
        x_reduces_to(&sum, &r, &scalar::N.value, Fe::from_integer)
    }
}
