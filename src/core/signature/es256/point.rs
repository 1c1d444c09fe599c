//! Points of P-256 (y² = x³ − 3x + b): affine for stored multiples, Jacobian (X/Z², Y/Z³) while
//! summing. The additions handle every case (equal points, opposite points, the identity), so
//! they are correct for any input, not only for the ones a verification usually meets.

use super::field::Fe;
use crate::signature::mont256::Limbs;
use crate::signature::straus::Point;

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

/// A point of the curve other than the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affine {
    pub x: Fe,
    pub y: Fe,
}

/// (X, Y, Z) for the affine (X/Z², Y/Z³); Z = 0 is the identity.
#[derive(Debug, Clone, Copy)]
pub struct Jacobian {
    pub x: Fe,
    pub y: Fe,
    pub z: Fe,
}

impl Affine {
    /// The point (x, y) from 32-byte big-endian coordinates; `None` unless both are below p and
    /// the point is on the curve (P-256 has prime order: every such point generates the group).
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Affine> {
        let point = Affine {
            x: Fe::from_be_bytes(x)?,
            y: Fe::from_be_bytes(y)?,
        };
        point.is_on_curve().then_some(point)
    }

    pub fn generator() -> Option<Affine> {
        Some(Affine {
            x: Fe::from_integer(&GENERATOR_X)?,
            y: Fe::from_integer(&GENERATOR_Y)?,
        })
    }

    fn is_on_curve(self) -> bool {
        let Some(b) = Fe::from_integer(&B) else {
            return false;
        };
        let x_squared_minus_3 = self.x.square().sub(Fe::ONE.double().add(Fe::ONE));
        self.y.square() == x_squared_minus_3.mul(self.x).add(b)
    }

    pub fn neg(self) -> Affine {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }
}

impl From<Affine> for Jacobian {
    fn from(point: Affine) -> Jacobian {
        Jacobian {
            x: point.x,
            y: point.y,
            z: Fe::ONE,
        }
    }
}

impl Jacobian {
    pub const IDENTITY: Jacobian = Jacobian {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    pub fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    /// 2·P ("dbl-2001-b", a = −3): 3M + 5S. The identity doubles to itself (Z stays 0); P-256
    /// has no point of order 2.
    pub fn double(&self) -> Jacobian {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(gamma);
        let t = self.x.sub(delta).mul(self.x.add(delta));
        let alpha = t.double().add(t);
        let beta4 = beta.double().double();
        let x = alpha.square().sub(beta4.double());
        let z = self.y.add(self.z).square().sub(gamma).sub(delta);
        let gamma_squared8 = gamma.square().double().double().double();
        let y = alpha.mul(beta4.sub(x)).sub(gamma_squared8);
        Jacobian { x, y, z }
    }

    /// P + Q for an affine Q ("madd-2007-bl"): 7M + 4S, with the identity, P = Q and P = −Q
    /// handled apart.
    pub fn add_affine(&self, other: &Affine) -> Jacobian {
        if self.is_identity() {
            return Jacobian::from(*other);
        }
        let z1z1 = self.z.square();
        let u2 = other.x.mul(z1z1);
        let s2 = other.y.mul(self.z).mul(z1z1);
        let h = u2.sub(self.x);
        let r = s2.sub(self.y).double();
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h.mul(i);
        let v = self.x.mul(i);
        let x = r.square().sub(j).sub(v.double());
        let y = r.mul(v.sub(x)).sub(self.y.mul(j).double());
        let z = self.z.add(h).square().sub(z1z1).sub(hh);
        Jacobian { x, y, z }
    }

    /// The affine point; `None` for the identity.
    #[cfg(test)]
    pub fn to_affine(self) -> Option<Affine> {
        let z_inverse = self.z.invert()?;
        let z_inverse_squared = z_inverse.square();
        Some(Affine {
            x: self.x.mul(z_inverse_squared),
            y: self.y.mul(z_inverse_squared).mul(z_inverse),
        })
    }
}

/// Every point affine with one field inversion (Montgomery's trick); `None` if one is the
/// identity.
pub fn batch_to_affine(points: &[Jacobian]) -> Option<Vec<Affine>> {
    // prefix[i] = z_0·…·z_(i−1); the inverse of the whole product then peels off one z at a time.
    let mut prefix = Vec::with_capacity(points.len());
    let mut product = Fe::ONE;
    for point in points {
        prefix.push(product);
        product = product.mul(point.z);
    }
    let mut inverse = product.invert()?;
    let mut affine = Vec::with_capacity(points.len());
    for (point, before) in points.iter().zip(prefix).rev() {
        let z_inverse = inverse.mul(before);
        inverse = inverse.mul(point.z);
        let z_inverse_squared = z_inverse.square();
        affine.push(Affine {
            x: point.x.mul(z_inverse_squared),
            y: point.y.mul(z_inverse_squared).mul(z_inverse),
        });
    }
    affine.reverse();
    Some(affine)
}

impl Point for Jacobian {
    type Stored = Affine;
    const IDENTITY: Jacobian = Jacobian::IDENTITY;

    fn double(self) -> Jacobian {
        Jacobian::double(&self)
    }

    fn add_stored(self, other: &Affine) -> Jacobian {
        self.add_affine(other)
    }

    fn neg_stored(stored: &Affine) -> Affine {
        stored.neg()
    }

    fn to_stored(points: &[Jacobian]) -> Option<Vec<Affine>> {
        batch_to_affine(points)
    }
}
