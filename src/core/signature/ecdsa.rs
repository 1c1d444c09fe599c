//! ECDSA verification (SEC 1 §4.1.4) as JWS uses it, for the NIST curves: what ES256 and ES384
//! share. Each curve brings its field (`weierstrass::Coordinate`), its scalar arithmetic and
//! its hash (`Curve`); the key is its precomputed multiples, the sum a `straus` one.
//!
//! The signature is r‖s, each as long as a coordinate; r and s must lie in [1, n − 1]. A high s
//! is accepted (JWS has no low-s rule; Wycheproof's P1363 vectors and BoringSSL agree).

use crate::signature::straus::{sum_of_multiples, OddMultiples};
use crate::signature::weierstrass::{Affine, Coordinate, Jacobian};

/// A curve's scalar side of the check.
pub trait Curve {
    type Fe: Coordinate;
    /// An integer below 2^(scalar bits), as limbs.
    type Scalar: AsRef<[u32]>;
    /// Bytes of r, of s (and of a coordinate).
    const BYTES: usize;
    /// A big-endian integer of `BYTES` in [1, n − 1].
    fn scalar_in_range(bytes: &[u8]) -> Option<Self::Scalar>;
    /// The hash of the signing input, as an integer (the curve's hash is as long as n).
    fn digest(signing_input: &[u8]) -> Option<Self::Scalar>;
    /// (z·s⁻¹ mod n, r·s⁻¹ mod n).
    fn u_values(
        z: &Self::Scalar,
        r: &Self::Scalar,
        s: &Self::Scalar,
    ) -> Option<(Self::Scalar, Self::Scalar)>;
    /// Whether the point's affine x, reduced modulo n, is r.
    fn x_reduces_to(point: &Jacobian<Self::Fe>, r: &Self::Scalar) -> bool;
}

/// A public key as the K odd multiples per chunk that a verification adds up.
#[derive(Debug, Clone)]
pub struct EcdsaKey<F, const K: usize> {
    multiples: OddMultiples<Affine<F>, K>,
}

impl<F: Coordinate, const K: usize> EcdsaKey<F, K> {
    /// The point (x, y), big-endian coordinates of the field's length; `None` unless it is on
    /// the curve.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<EcdsaKey<F, K>> {
        let point = Affine::from_coordinates(x, y)?;
        Some(EcdsaKey {
            multiples: OddMultiples::new(Jacobian::from(point))?,
        })
    }

    /// With z the hash of the input, u1 = z/s and u2 = r/s, the signature is valid when the x
    /// of u1·G + u2·Q is r modulo n. `generator`: G's multiples (`None` if they could not be
    /// built, which refuses every signature).
    pub fn verify_with<C: Curve<Fe = F>, const G: usize>(
        &self,
        generator: Option<&OddMultiples<Affine<F>, G>>,
        signing_input: &[u8],
        signature: &[u8],
    ) -> bool {
        let Some(generator) = generator else {
            return false;
        };
        let Some((r, s)) = signature.split_at_checked(C::BYTES) else {
            return false;
        };
        let (Some(r), Some(s)) = (C::scalar_in_range(r), C::scalar_in_range(s)) else {
            return false;
        };
        let Some(z) = C::digest(signing_input) else {
            return false;
        };
        let Some((u1, u2)) = C::u_values(&z, &r, &s) else {
            return false;
        };
        let sum: Jacobian<F> =
            sum_of_multiples(u1.as_ref(), generator, u2.as_ref(), &self.multiples);
        C::x_reduces_to(&sum, &r)
    }
}

/// The generator's multiples, for a curve's once-per-process table.
pub fn generator_multiples<F: Coordinate, const G: usize>() -> Option<OddMultiples<Affine<F>, G>> {
    OddMultiples::new(Jacobian::from(Affine::generator()?))
}
