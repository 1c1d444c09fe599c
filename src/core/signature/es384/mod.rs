//! ES384 (ECDSA over P-384 with SHA-384, RFC 7518 §3.4) on the points and check that ES256
//! uses (`weierstrass`, `ecdsa`), over a 12-limb field with rolled loops (`montgomery`): ES384
//! tokens are rare, so this is built for size first (it replaced the p384 crate, which took
//! 120 KB of the .wasm).

mod field;
mod scalar;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use sha2::{Digest, Sha384};

use crate::signature::ecdsa::{generator_multiples, Curve, EcdsaKey};
use crate::signature::montgomery::{self, Limbs};
use crate::signature::straus::OddMultiples;
use crate::signature::weierstrass::{self, x_reduces_to};
use field::{Fe, LIMBS};

type Affine = weierstrass::Affine<Fe>;
type Jacobian = weierstrass::Jacobian<Fe>;

/// Odd multiples per chunk of the key (NAF width 5): 32 affine points, 3 KiB.
const KEY_MULTIPLES: usize = 8;
/// Odd multiples per chunk of the generator (NAF width 7): 128 points, 12 KiB, once.
const GENERATOR_MULTIPLES: usize = 32;

/// A P-384 public key as the multiples a verification adds up.
pub type P384Key = EcdsaKey<Fe, KEY_MULTIPLES>;

/// P-384's scalar side, with SHA-384.
pub struct P384;

impl Curve for P384 {
    type Fe = Fe;
    type Scalar = Limbs<LIMBS>;
    const BYTES: usize = 48;

    fn scalar_in_range(bytes: &[u8]) -> Option<Limbs<LIMBS>> {
        scalar::in_range(bytes)
    }

    fn digest(signing_input: &[u8]) -> Option<Limbs<LIMBS>> {
        montgomery::from_be_bytes(&Sha384::digest(signing_input))
    }

    fn u_values(
        z: &Limbs<LIMBS>,
        r: &Limbs<LIMBS>,
        s: &Limbs<LIMBS>,
    ) -> Option<(Limbs<LIMBS>, Limbs<LIMBS>)> {
        scalar::u_values(z, r, s)
    }

    fn x_reduces_to(point: &Jacobian, r: &Limbs<LIMBS>) -> bool {
        x_reduces_to(point, r, &scalar::N.value, Fe::from_integer)
    }
}

impl P384Key {
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        static GENERATOR: OnceLock<Option<OddMultiples<Affine, GENERATOR_MULTIPLES>>> =
            OnceLock::new();
        let generator = GENERATOR.get_or_init(generator_multiples).as_ref();
        self.verify_with::<P384, GENERATOR_MULTIPLES>(generator, signing_input, signature)
    }
}
