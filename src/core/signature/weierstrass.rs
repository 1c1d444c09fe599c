//! Points of the NIST prime curves y² = x³ − 3x + b (P-256, P-384): affine for stored
//! multiples, Jacobian (X/Z², Y/Z³) while summing. One implementation over each curve's field;
//! the additions handle every case (equal points, opposite points, the identity), so they are
//! correct for any input, not only for the ones a verification usually meets.

use std::fmt::Debug;

use crate::signature::montgomery;
use crate::signature::straus::Point;

/// A curve's base field element (in whatever form its arithmetic keeps it), and the curve's
/// constants.
pub trait Coordinate: Copy + PartialEq + Debug {
    const ZERO: Self;
    const ONE: Self;
    /// The bit length of the group order n (the scalars a verification multiplies by).
    const SCALAR_BITS: usize;
    /// From big-endian bytes of the field's length; `None` unless below p.
    fn from_be_bytes(bytes: &[u8]) -> Option<Self>;
    /// The curve's b.
    fn curve_b() -> Option<Self>;
    /// The generator's affine (x, y).
    fn generator() -> Option<(Self, Self)>;
    fn mul(self, other: Self) -> Self;
    fn square(self) -> Self;
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
    fn is_zero(self) -> bool;
    /// a⁻¹; `None` for zero.
    fn invert(self) -> Option<Self>;

    #[inline(always)]
    fn double(self) -> Self {
        self.add(self)
    }

    #[inline(always)]
    fn neg(self) -> Self {
        Self::ZERO.sub(self)
    }
}

/// A point of the curve other than the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affine<F> {
    pub x: F,
    pub y: F,
}

/// (X, Y, Z) for the affine (X/Z², Y/Z³); Z = 0 is the identity.
#[derive(Debug, Clone, Copy)]
pub struct Jacobian<F> {
    pub x: F,
    pub y: F,
    pub z: F,
}

impl<F: Coordinate> Affine<F> {
    /// The point (x, y) from big-endian coordinates; `None` unless both are below p and the
    /// point is on the curve (these curves have prime order: every such point generates the
    /// group).
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Affine<F>> {
        let point = Affine {
            x: F::from_be_bytes(x)?,
            y: F::from_be_bytes(y)?,
        };
        point.is_on_curve().then_some(point)
    }

    pub fn generator() -> Option<Affine<F>> {
        let (x, y) = F::generator()?;
        Some(Affine { x, y })
    }

    fn is_on_curve(self) -> bool {
        let Some(b) = F::curve_b() else {
            return false;
        };
        let x_squared_minus_3 = self.x.square().sub(F::ONE.double().add(F::ONE));
        self.y.square() == x_squared_minus_3.mul(self.x).add(b)
    }

    pub fn neg(self) -> Affine<F> {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }
}

impl<F: Coordinate> From<Affine<F>> for Jacobian<F> {
    fn from(point: Affine<F>) -> Jacobian<F> {
        Jacobian {
            x: point.x,
            y: point.y,
            z: F::ONE,
        }
    }
}

impl<F: Coordinate> Jacobian<F> {
    pub const IDENTITY: Jacobian<F> = Jacobian {
        x: F::ONE,
        y: F::ONE,
        z: F::ZERO,
    };

    pub fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    /// 2·P ("dbl-2001-b", a = −3): 3M + 5S. The identity doubles to itself (Z stays 0); these
    /// curves have no point of order 2.
    pub fn double(&self) -> Jacobian<F> {
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
    pub fn add_affine(&self, other: &Affine<F>) -> Jacobian<F> {
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

    /// Whether the affine x of the point is `x`, without an inversion (x = X/Z²); never for
    /// the identity.
    pub fn has_affine_x(&self, x: F) -> bool {
        !self.is_identity() && x.mul(self.z.square()) == self.x
    }

    /// The affine point; `None` for the identity.
    #[cfg(test)]
    pub fn to_affine(self) -> Option<Affine<F>> {
        let z_inverse = self.z.invert()?;
        let z_inverse_squared = z_inverse.square();
        Some(Affine {
            x: self.x.mul(z_inverse_squared),
            y: self.y.mul(z_inverse_squared).mul(z_inverse),
        })
    }
}

/// ECDSA's final check: whether the affine x of `point`, reduced modulo n, is r (r in [1, n − 1]),
/// without an inversion. x is below p < 2n, so x mod n = r means x = r or x = r + n (when that
/// is below p); `from_integer` refuses values not below p.
pub fn x_reduces_to<F: Coordinate, const L: usize>(
    point: &Jacobian<F>,
    r: &[u32; L],
    n: &[u32; L],
    from_integer: fn(&[u32; L]) -> Option<F>,
) -> bool {
    let matches = |candidate: Option<F>| candidate.is_some_and(|x| point.has_affine_x(x));
    let mut r_plus_n = *r;
    let fits = !montgomery::add_in_place(&mut r_plus_n, n);
    matches(from_integer(r)) || (fits && matches(from_integer(&r_plus_n)))
}

/// Every point affine with one field inversion (Montgomery's trick); `None` if one is the
/// identity.
pub fn batch_to_affine<F: Coordinate>(points: &[Jacobian<F>]) -> Option<Vec<Affine<F>>> {
    // prefix[i] = z_0·…·z_(i−1); the inverse of the whole product then peels off one z at a time.
    let mut prefix = Vec::with_capacity(points.len());
    let mut product = F::ONE;
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

impl<F: Coordinate> Point for Jacobian<F> {
    type Stored = Affine<F>;
    const IDENTITY: Jacobian<F> = Jacobian::IDENTITY;
    const SCALAR_BITS: usize = F::SCALAR_BITS;

    fn double(self) -> Jacobian<F> {
        Jacobian::double(&self)
    }

    fn add_stored(self, other: &Affine<F>) -> Jacobian<F> {
        self.add_affine(other)
    }

    fn neg_stored(stored: &Affine<F>) -> Affine<F> {
        stored.neg()
    }

    fn to_stored(points: &[Jacobian<F>]) -> Option<Vec<Affine<F>>> {
        batch_to_affine(points)
    }
}
