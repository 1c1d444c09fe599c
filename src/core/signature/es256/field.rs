//! The P-256 base field, p = 2^256 − 2^224 + 2^192 + 2^96 − 1, in Montgomery form.
//!
//! −p⁻¹ ≡ 1 (mod 2^32) and half of p's limbs are 0 or 1, so the reduction's multiplications by
//! p mostly fold away once `mont256` is inlined with this constant.

use crate::signature::mont256::{self, Limbs, Modulus};

pub(in crate::signature) const P: Modulus = Modulus {
    value: [
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0,
        0,
        1,
        0xffff_ffff,
    ],
    neg_inverse: 1,
    r_squared: [
        0x0000_0003,
        0x0000_0000,
        0xffff_ffff,
        0xffff_fffb,
        0xffff_fffe,
        0xffff_ffff,
        0xffff_fffd,
        0x0000_0004,
    ],
};

/// A field element a, held as a·R mod p.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fe(Limbs);

impl Fe {
    pub const ZERO: Fe = Fe(mont256::ZERO);
    /// R mod p = 2^256 − p.
    pub const ONE: Fe = Fe([
        1,
        0,
        0,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_fffe,
        0,
    ]);

    /// From 32 big-endian bytes; `None` unless below p.
    pub fn from_be_bytes(bytes: &[u8]) -> Option<Fe> {
        Fe::from_integer(&mont256::from_be_bytes(bytes)?)
    }

    /// From an integer; `None` unless below p.
    pub fn from_integer(value: &Limbs) -> Option<Fe> {
        mont256::less_than(value, &P.value).then(|| Fe(mont256::to_montgomery(value, &P)))
    }

    /// The element's integer value in [0, p).
    #[cfg(test)]
    pub fn to_integer(self) -> Limbs {
        mont256::from_montgomery(&self.0, &P)
    }

    pub fn is_zero(self) -> bool {
        self.0 == mont256::ZERO
    }

    #[inline(never)]
    pub fn mul(self, other: Fe) -> Fe {
        Fe(mont256::mul(&self.0, &other.0, &P))
    }

    #[inline(never)]
    pub fn square(self) -> Fe {
        Fe(mont256::square(&self.0, &P))
    }

    #[inline(always)]
    pub fn add(self, other: Fe) -> Fe {
        Fe(mont256::add(&self.0, &other.0, &P))
    }

    #[inline(always)]
    pub fn sub(self, other: Fe) -> Fe {
        Fe(mont256::sub(&self.0, &other.0, &P))
    }

    /// a⁻¹; `None` for zero.
    pub fn invert(self) -> Option<Fe> {
        // The inverse of a·R is a⁻¹·R⁻¹; two conversions bring it to a⁻¹·R.
        let inverse = mont256::invert(&self.0, &P)?;
        let once = mont256::to_montgomery(&inverse, &P);
        Some(Fe(mont256::to_montgomery(&once, &P)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::mont256::tests::{below, hex, values};
    use crate::signature::weierstrass::Coordinate;

    fn elements(seed: u64) -> Vec<Fe> {
        values(seed, 200)
            .into_iter()
            .map(|v| Fe::from_integer(&below(v, &P)).unwrap())
            .collect()
    }

    #[test]
    fn constants_are_what_they_claim() {
        assert_eq!(
            hex(&P.value),
            "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
        );
        assert_eq!(P.value[0].wrapping_mul(P.neg_inverse), u32::MAX);
        assert_eq!(Fe::from_integer(&mont256::ONE), Some(Fe::ONE));
        assert_eq!(Fe::ONE.to_integer(), mont256::ONE);
        let mut p_minus_one = P.value;
        p_minus_one[0] -= 1;
        let minus_one = Fe::from_integer(&p_minus_one).unwrap();
        assert_eq!(minus_one.add(Fe::ONE), Fe::ZERO);
        assert!(Fe::from_integer(&P.value).is_none());
    }

    #[test]
    fn ring_laws_hold() {
        for ((a, b), c) in elements(1).into_iter().zip(elements(2)).zip(elements(3)) {
            assert_eq!(a.mul(b.add(c)), a.mul(b).add(a.mul(c)));
            assert_eq!(a.mul(b), b.mul(a));
            assert_eq!(a.square(), a.mul(a));
            assert_eq!(a.sub(b).add(b), a);
            assert_eq!(a.add(a.neg()), Fe::ZERO);
            assert_eq!(Fe::from_integer(&a.to_integer()), Some(a));
            if !a.is_zero() {
                assert_eq!(a.mul(a.invert().unwrap()), Fe::ONE);
            }
        }
        assert_eq!(Fe::ZERO.invert(), None);
    }
}
