//! The P-384 base field, p = 2^384 − 2^128 − 2^96 + 2^32 − 1, in Montgomery form over the
//! rolled 12-limb arithmetic (`montgomery`).

use crate::signature::montgomery::{self, Limbs, Modulus};
use crate::signature::weierstrass::Coordinate;

pub const LIMBS: usize = 12;

pub(super) const P: Modulus<LIMBS> = Modulus::from_hex(
    "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe\
     ffffffff0000000000000000ffffffff",
);
const B: Limbs<LIMBS> = montgomery::limbs_from_hex(
    "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a\
     c656398d8a2ed19d2a85c8edd3ec2aef",
);
const GENERATOR_X: Limbs<LIMBS> = montgomery::limbs_from_hex(
    "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38\
     5502f25dbf55296c3a545e3872760ab7",
);
const GENERATOR_Y: Limbs<LIMBS> = montgomery::limbs_from_hex(
    "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0\
     0a60b1ce1d7e819d7a431d7c90ea0e5f",
);

/// A field element a, held as a·R mod p.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fe(Limbs<LIMBS>);

impl Fe {
    /// From an integer; `None` unless below p.
    pub fn from_integer(value: &Limbs<LIMBS>) -> Option<Fe> {
        montgomery::less_than(value, &P.value).then(|| Fe(montgomery::to_montgomery(value, &P)))
    }

    /// The element's integer value in [0, p).
    #[cfg(test)]
    pub fn to_integer(self) -> Limbs<LIMBS> {
        montgomery::from_montgomery(&self.0, &P)
    }
}

impl Coordinate for Fe {
    const ZERO: Fe = Fe(montgomery::zero());
    const ONE: Fe = Fe(P.one);
    const SCALAR_BITS: usize = 384;

    fn from_be_bytes(bytes: &[u8]) -> Option<Fe> {
        Fe::from_integer(&montgomery::from_be_bytes(bytes)?)
    }

    fn curve_b() -> Option<Fe> {
        Fe::from_integer(&B)
    }

    fn generator() -> Option<(Fe, Fe)> {
        Some((
            Fe::from_integer(&GENERATOR_X)?,
            Fe::from_integer(&GENERATOR_Y)?,
        ))
    }

    fn mul(self, other: Fe) -> Fe {
        Fe(montgomery::mul(&self.0, &other.0, &P))
    }

    fn square(self) -> Fe {
        self.mul(self)
    }

    fn add(self, other: Fe) -> Fe {
        Fe(montgomery::add(&self.0, &other.0, &P))
    }

    fn sub(self, other: Fe) -> Fe {
        Fe(montgomery::sub(&self.0, &other.0, &P))
    }

    fn is_zero(self) -> bool {
        self.0 == montgomery::zero()
    }

    fn invert(self) -> Option<Fe> {
        // The inverse of a·R is a⁻¹·R⁻¹; two conversions bring it to a⁻¹·R.
        let inverse = montgomery::invert(&self.0, &P.value)?;
        let once = montgomery::to_montgomery(&inverse, &P);
        Some(Fe(montgomery::to_montgomery(&once, &P)))
    }
}
