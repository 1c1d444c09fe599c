//! Integers modulo the P-384 group order n, for an ECDSA verification's u1 = z·s⁻¹ and
//! u2 = r·s⁻¹.

use super::field::LIMBS;
use crate::signature::montgomery::{self, Limbs, Modulus};

pub const N: Modulus<LIMBS> = Modulus::from_hex(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf\
     581a0db248b0a77aecec196accc52973",
);

/// A 48-byte big-endian integer in [1, n − 1], as ECDSA requires of r and s.
pub fn in_range(bytes: &[u8]) -> Option<Limbs<LIMBS>> {
    let value = montgomery::from_be_bytes(bytes)?;
    (value != montgomery::zero() && montgomery::less_than(&value, &N.value)).then_some(value)
}

/// (z·s⁻¹ mod n, r·s⁻¹ mod n) for s in [1, n − 1] and any z, r below 2^384.
pub fn u_values(
    z: &Limbs<LIMBS>,
    r: &Limbs<LIMBS>,
    s: &Limbs<LIMBS>,
) -> Option<(Limbs<LIMBS>, Limbs<LIMBS>)> {
    let w = montgomery::to_montgomery(&montgomery::invert(s, &N.value)?, &N);
    // A Montgomery product with one factor in Montgomery form is the plain product.
    Some((montgomery::mul(z, &w, &N), montgomery::mul(r, &w, &N)))
}
