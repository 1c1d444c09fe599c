//! Integers modulo the order of the Ed25519 base point, L = 2^252 + 27742317777372353535851937790883648493.

use crate::signature::mont256::{self, Limbs, Modulus};

pub const L: Modulus = Modulus {
    value: [
        0x5cf5_d3ed,
        0x5812_631a,
        0xa2f7_9cd6,
        0x14de_f9de,
        0,
        0,
        0,
        0x1000_0000,
    ],
    neg_inverse: 0x1254_7e1b,
    r_squared: [
        0x449c_0f01,
        0xa406_11e3,
        0x6885_9347,
        0xd00e_1ba7,
        0x17f5_be65,
        0xceec_73d2,
        0x7c30_9a3d,
        0x0399_411b,
    ],
};

/// R³ mod L (R = 2^256).
const R_CUBED: Limbs = [
    0x7b83_a2db,
    0x2a9e_4968,
    0xaef7_f3ec,
    0x2783_24e6,
    0x04ec_5b65,
    0x8065_dc6c,
    0x3599_cec7,
    0x0e53_0b77,
];

/// S as RFC 8032 §5.1.7 requires it: 32 little-endian bytes encoding an integer below L.
pub fn canonical(bytes: &[u8; 32]) -> Option<Limbs> {
    let value = mont256::from_le_bytes(bytes);
    mont256::less_than(&value, &L.value).then_some(value)
}

/// A 64-byte little-endian integer (a SHA-512 digest) modulo L.
pub fn reduce_wide(bytes: &[u8; 64]) -> Limbs {
    let (low, high) = bytes.split_at(32);
    let half = |half: &[u8]| {
        let mut array = [0u8; 32];
        array.copy_from_slice(half);
        mont256::from_le_bytes(&array)
    };
    // h = low + high·R; in Montgomery form that is high·R² + low·R, which two products give,
    // and a product with 1 takes it back out.
    let high_part = mont256::mul(&half(high), &R_CUBED, &L);
    let low_part = mont256::mul(&half(low), &L.r_squared, &L);
    mont256::from_montgomery(&mont256::add(&high_part, &low_part, &L), &L)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::mont256::tests::hex;

    #[test]
    fn constants_are_what_they_claim() {
        assert_eq!(
            hex(&L.value),
            "1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed"
        );
        assert_eq!(L.value[0].wrapping_mul(L.neg_inverse), u32::MAX);
        // R² is right iff converting in and out is the identity; R³ = R²·R²·R⁻¹.
        for value in crate::signature::mont256::tests::values(3, 20) {
            let value = crate::signature::mont256::tests::below(value, &L);
            let there = mont256::to_montgomery(&value, &L);
            assert_eq!(mont256::from_montgomery(&there, &L), value);
        }
        assert_eq!(mont256::mul(&L.r_squared, &L.r_squared, &L), R_CUBED);
    }

    #[test]
    fn wide_reduction_matches_small_cases() {
        let mut bytes = [0u8; 64];
        bytes[0] = 5;
        assert_eq!(reduce_wide(&bytes), [5, 0, 0, 0, 0, 0, 0, 0]);
        // L itself, and L + 7, and 2^512 − 1 (≡ a known residue).
        let mut l_bytes = [0u8; 64];
        for (i, limb) in L.value.iter().enumerate() {
            l_bytes[4 * i..4 * i + 4].copy_from_slice(&limb.to_le_bytes());
        }
        assert_eq!(reduce_wide(&l_bytes), mont256::ZERO);
        l_bytes[0] += 7;
        assert_eq!(reduce_wide(&l_bytes), [7, 0, 0, 0, 0, 0, 0, 0]);
        // 2^512 − 1 ≡ R² − 1.
        assert_eq!(
            hex(&reduce_wide(&[0xff; 64])),
            "0399411b7c309a3dceec73d217f5be65d00e1ba768859347a40611e3449c0f00"
        );
    }
}
