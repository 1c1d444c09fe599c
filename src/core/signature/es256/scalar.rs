//! Integers modulo the P-256 group order n, for an ECDSA verification's u1 = z·s⁻¹ and
//! u2 = r·s⁻¹.

use crate::signature::mont256::{self, Limbs, Modulus};

pub const N: Modulus = Modulus {
    value: [
        0xfc63_2551,
        0xf3b9_cac2,
        0xa717_9e84,
        0xbce6_faad,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0xffff_ffff,
    ],
    neg_inverse: 0xee00_bc4f,
    r_squared: [
        0xbe79_eea2,
        0x8324_4c95,
        0x49bd_6fa6,
        0x4699_799c,
        0x2b6b_ec59,
        0x2845_b239,
        0xf3d9_5620,
        0x66e1_2d94,
    ],
};

/// A 32-byte big-endian integer in [1, n − 1], as ECDSA requires of r and s.
pub fn in_range(bytes: &[u8]) -> Option<Limbs> {
    let value = mont256::from_be_bytes(bytes)?;
    (value != mont256::ZERO && mont256::less_than(&value, &N.value)).then_some(value)
}

/// (z·s⁻¹ mod n, r·s⁻¹ mod n) for s in [1, n − 1] and any z, r below 2^256.
pub fn u_values(z: &Limbs, r: &Limbs, s: &Limbs) -> Option<(Limbs, Limbs)> {
    let w = mont256::to_montgomery(&mont256::invert(s, &N)?, &N);
    // A Montgomery product with one factor in Montgomery form is the plain product.
    Some((mont256::mul(z, &w, &N), mont256::mul(r, &w, &N)))
}
