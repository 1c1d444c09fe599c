//! P-256's curve (y² = x³ − 3x + b over its field): the constants, and its points as the
//! shared short-Weierstrass arithmetic (`weierstrass`) over `Fe`.

use super::field::Fe;
use crate::signature::mont256::Limbs;
use crate::signature::weierstrass::{self, Coordinate};

const B: Limbs = [
    0x27d2_604b,
    0x3bce_3c3e,
    0xcc53_b0f6,
    0x651d_06b0,
    0x7698_86bc,
    0xb3eb_bd55,
    0xaa3a_93e7,
    0x5ac6_35d8,
];
const GENERATOR_X: Limbs = [
    0xd898_c296,
    0xf4a1_3945,
    0x2deb_33a0,
    0x7703_7d81,
    0x63a4_40f2,
    0xf8bc_e6e5,
    0xe12c_4247,
    0x6b17_d1f2,
];
const GENERATOR_Y: Limbs = [
    0x37bf_51f5,
    0xcbb6_4068,
    0x6b31_5ece,
    0x2bce_3357,
    0x7c0f_9e16,
    0x8ee7_eb4a,
    0xfe1a_7f9b,
    0x4fe3_42e2,
];

pub type Affine = weierstrass::Affine<Fe>;
pub type Jacobian = weierstrass::Jacobian<Fe>;

impl Coordinate for Fe {
    const ZERO: Fe = Fe::ZERO;
    const ONE: Fe = Fe::ONE;
    const SCALAR_BITS: usize = 256;

    fn from_be_bytes(bytes: &[u8]) -> Option<Fe> {
        Fe::from_be_bytes(bytes)
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

    #[inline(always)]
    fn mul(self, other: Fe) -> Fe {
        Fe::mul(self, other)
    }

    #[inline(always)]
    fn square(self) -> Fe {
        Fe::square(self)
    }

    #[inline(always)]
    fn add(self, other: Fe) -> Fe {
        Fe::add(self, other)
    }

    #[inline(always)]
    fn sub(self, other: Fe) -> Fe {
        Fe::sub(self, other)
    }

    #[inline(always)]
    fn is_zero(self) -> bool {
        Fe::is_zero(self)
    }

    fn invert(self) -> Option<Fe> {
        Fe::invert(self)
    }
}
