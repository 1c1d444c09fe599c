//! Points of edwards25519 (−x² + y² = 1 + d·x²·y²) in extended coordinates (X : Y : Z : T),
//! x = X/Z, y = Y/Z, x·y = T/Z, and stored multiples in affine "Niels" form
//! (y + x, y − x, 2d·x·y). With a = −1 a square and d not, the addition formulas are complete:
//! right for every pair of points, equal, opposite or of small order.

use super::field::Fe;

#[derive(Debug, Clone, Copy)]
pub struct Extended {
    x: Fe,
    y: Fe,
    z: Fe,
    t: Fe,
}

/// An affine point as an addition wants it.
#[derive(Debug, Clone, Copy)]
pub struct Niels {
    y_plus_x: Fe,
    y_minus_x: Fe,
    xy2d: Fe,
}

/// The encoding of the base point: y = 4/5, x positive.
const BASE_ENCODING: [u8; 32] = [
    0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
    0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
];

impl Extended {
    pub const IDENTITY: Extended = Extended {
        x: Fe::ZERO,
        y: Fe::ONE,
        z: Fe::ONE,
        t: Fe::ZERO,
    };

    pub fn base() -> Option<Extended> {
        Extended::decode(&BASE_ENCODING)
    }

    /// RFC 8032 §5.1.3, strictly: `None` unless y (the low 255 bits) is below p, x exists, and
    /// the sign bit is clear when x = 0 (the encoding of a point is unique).
    pub fn decode(bytes: &[u8; 32]) -> Option<Extended> {
        let y = Fe::from_bytes(bytes);
        let mut low = *bytes;
        low[31] &= 0x7f;
        if y.to_bytes() != low {
            return None;
        }
        let sign = bytes[31] >> 7 == 1;
        // x² = u/v with u = y² − 1 and v = d·y² + 1 (never zero: −1/d is not a square).
        let y_squared = y.square();
        let u = y_squared.sub(Fe::ONE);
        let v = y_squared.mul(Fe::D).add(Fe::ONE);
        // x = u·(u·v)^((p−5)/8) is a root of x²·v = ±u; of −u, sqrt(−1) fixes it.
        let mut x = u.mul(v).pow_p58().mul(u);
        let v_x_squared = x.square().mul(v);
        if !v_x_squared.sub(u).is_zero() {
            if !v_x_squared.add(u).is_zero() {
                return None;
            }
            x = x.mul(Fe::SQRT_M1);
        }
        if x.is_zero() && sign {
            return None;
        }
        if x.is_negative() != sign {
            x = x.neg();
        }
        Some(Extended {
            x,
            y,
            z: Fe::ONE,
            t: x.mul(y),
        })
    }

    pub fn neg(self) -> Extended {
        Extended {
            x: self.x.neg(),
            y: self.y,
            z: self.z,
            t: self.t.neg(),
        }
    }

    /// 2·P ("dbl-2008-hwcd", a = −1): 4M + 4S.
    pub fn double(self) -> Extended {
        let a = self.x.square();
        let b = self.y.square();
        let c = self.z.square();
        let c = c.add(c);
        let e = self.x.add(self.y).square().sub(a).sub(b);
        let g = b.sub(a);
        let f = g.sub(c);
        let h = a.neg().sub(b);
        Extended {
            x: e.mul(f),
            y: g.mul(h),
            z: f.mul(g),
            t: e.mul(h),
        }
    }

    /// P + Q for an affine Q ("madd-2008-hwcd-3", a = −1): 7M.
    pub fn add_niels(self, other: &Niels) -> Extended {
        let a = self.y.sub(self.x).mul(other.y_minus_x);
        let b = self.y.add(self.x).mul(other.y_plus_x);
        let c = self.t.mul(other.xy2d);
        let d = self.z.add(self.z);
        let (e, f, g, h) = (b.sub(a), d.sub(c), d.add(c), b.add(a));
        Extended {
            x: e.mul(f),
            y: g.mul(h),
            z: f.mul(g),
            t: e.mul(h),
        }
    }

    /// Whether 8·P is the identity: 4·P then has x = 0 (it is (0, ±1)).
    pub fn has_small_order(self) -> bool {
        self.double().double().x.is_zero()
    }
}

impl Niels {
    pub fn neg(&self) -> Niels {
        Niels {
            y_plus_x: self.y_minus_x,
            y_minus_x: self.y_plus_x,
            xy2d: self.xy2d.neg(),
        }
    }

    /// An affine point (Z = 1) as a Niels point.
    pub fn from_affine(point: &Extended) -> Niels {
        Niels {
            y_plus_x: point.y.add(point.x),
            y_minus_x: point.y.sub(point.x),
            xy2d: point.t.mul(Fe::D2),
        }
    }
}

/// Every point as a Niels point, with one field inversion (Montgomery's trick).
pub fn batch_to_niels(points: &[Extended]) -> Vec<Niels> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut product = Fe::ONE;
    for point in points {
        prefix.push(product);
        product = product.mul(point.z);
    }
    let mut inverse = product.invert();
    let mut niels = Vec::with_capacity(points.len());
    for (point, before) in points.iter().zip(prefix).rev() {
        let z_inverse = inverse.mul(before);
        inverse = inverse.mul(point.z);
        let (x, y) = (point.x.mul(z_inverse), point.y.mul(z_inverse));
        niels.push(Niels::from_affine(&Extended {
            x,
            y,
            z: Fe::ONE,
            t: x.mul(y),
        }));
    }
    niels.reverse();
    niels
}

#[cfg(test)]
impl Extended {
    /// The canonical encoding (for tests: verification never encodes a point).
    pub fn encode(self) -> [u8; 32] {
        let z_inverse = self.z.invert();
        let mut bytes = self.y.mul(z_inverse).to_bytes();
        if self.x.mul(z_inverse).is_negative() {
            bytes[31] |= 0x80;
        }
        bytes
    }
}
