//! ES256 (ECDSA over P-256 with SHA-256, RFC 7518 §3.4) on arithmetic of its own, written for
//! wasm: 32-bit limbs, unrolled (`mont256`), the shared points and check (`weierstrass`,
//! `ecdsa`), precomputed multiples of the key (when the key set is parsed) and of the generator
//! (once per process).

pub(super) mod field;
mod point;
mod scalar;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::signature::ecdsa::{generator_multiples, Curve, EcdsaKey};
use crate::signature::mont256::{self, Limbs};
use crate::signature::straus::OddMultiples;
use crate::signature::weierstrass::x_reduces_to;
use field::Fe;
use point::{Affine, Jacobian};

/// Odd multiples per chunk of the key (NAF width 6): 64 affine points, 4 KiB.
const KEY_MULTIPLES: usize = 16;
/// Odd multiples per chunk of the generator (NAF width 8): 256 points, 16 KiB, once.
const GENERATOR_MULTIPLES: usize = 64;

/// A P-256 public key as the multiples a verification adds up.
pub type P256Key = EcdsaKey<Fe, KEY_MULTIPLES>;

/// P-256's scalar side, with SHA-256.
pub struct P256;

impl Curve for P256 {
    type Fe = Fe;
    type Scalar = Limbs;
    const BYTES: usize = 32;

    fn scalar_in_range(bytes: &[u8]) -> Option<Limbs> {
        scalar::in_range(bytes)
    }

    fn digest(signing_input: &[u8]) -> Option<Limbs> {
        mont256::from_be_bytes(&Sha256::digest(signing_input))
    }

    fn u_values(z: &Limbs, r: &Limbs, s: &Limbs) -> Option<(Limbs, Limbs)> {
        scalar::u_values(z, r, s)
    }

    fn x_reduces_to(point: &Jacobian, r: &Limbs) -> bool {
        x_reduces_to(point, r, &scalar::N.value, Fe::from_integer)
    }
}

impl P256Key {
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        static GENERATOR: OnceLock<Option<OddMultiples<Affine, GENERATOR_MULTIPLES>>> =
            OnceLock::new();
        let generator = GENERATOR.get_or_init(generator_multiples).as_ref();
        self.verify_with::<P256, GENERATOR_MULTIPLES>(generator, signing_input, signature)
    }
}
