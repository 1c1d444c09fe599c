//! ES384 (P-384, SHA-384), RFC 7518 §3.4, over the p384 crate's arithmetic (ES256 has its own,
//! in `es256`: it is the common case and worth wasm-specific code; ES384 is rare).
//!
//! The signature is r‖s, 48 bytes each, anything else is invalid. r and s must lie in
//! [1, n−1]. A high s (s > n/2) is accepted: ECDSA as JWS uses it has no low-s rule,
//! Wycheproof's P1363 vectors mark such signatures valid, and BoringSSL (behind Envoy's
//! jwt_authn) accepts them.
//!
//! The check is ECDSA's (SEC 1 §4.1.4) over `lincomb`, with the key's multiples computed when
//! the key set is parsed and the generator's once per process.

use std::sync::OnceLock;

use p384::elliptic_curve::generic_array::typenum::Unsigned;
use p384::elliptic_curve::group::{Curve as _, Group as _};
use p384::elliptic_curve::ops::{Invert, Reduce};
use p384::elliptic_curve::point::AffineCoordinates;
use p384::elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ModulusSize};
use p384::elliptic_curve::{
    AffinePoint, CurveArithmetic, FieldBytes, FieldBytesSize, PrimeField, ProjectivePoint, Scalar,
};
use p384::NistP384;
use sha2::{Digest, Sha384};

use super::lincomb::{lincomb, OddMultiples};

/// Odd multiples kept per key (NAF width 5): 16 points with the split, 2.3 KiB.
const KEY_MULTIPLES: usize = 8;
/// Odd multiples of the generator (NAF width 7), shared by every key of the curve.
const GENERATOR_MULTIPLES: usize = 32;

/// An ECDSA public key: a point of the curve (not the identity), as the odd multiples
/// `lincomb` needs.
#[derive(Debug, Clone)]
pub struct EcdsaKey<C: CurveArithmetic> {
    multiples: OddMultiples<ProjectivePoint<C>, KEY_MULTIPLES>,
}

pub type P384Key = EcdsaKey<NistP384>;

pub fn p384_key(x: &[u8], y: &[u8]) -> Option<P384Key> {
    EcdsaKey::from_coordinates(x, y)
}

pub fn verify_p384(key: &P384Key, signing_input: &[u8], signature: &[u8]) -> bool {
    static GENERATOR: OnceLock<OddMultiples<p384::ProjectivePoint, GENERATOR_MULTIPLES>> =
        OnceLock::new();
    let generator = GENERATOR.get_or_init(generator_multiples::<NistP384>);
    key.verify(generator, &Sha384::digest(signing_input), signature)
}

fn generator_multiples<C: CurveArithmetic>() -> OddMultiples<ProjectivePoint<C>, GENERATOR_MULTIPLES>
{
    OddMultiples::new(ProjectivePoint::<C>::generator(), half_bits::<C>())
}

/// Where scalars are split: half their bits (as many as a field element's on these curves).
fn half_bits<C: CurveArithmetic>() -> usize {
    FieldBytesSize::<C>::USIZE * 4
}

impl<C> EcdsaKey<C>
where
    C: CurveArithmetic,
    FieldBytesSize<C>: ModulusSize,
    AffinePoint<C>: FromEncodedPoint<C>,
{
    /// The point (x, y), each coordinate full size; `None` unless it is on the curve.
    fn from_coordinates(x: &[u8], y: &[u8]) -> Option<EcdsaKey<C>> {
        let (x, y) = (field_bytes::<C>(x)?, field_bytes::<C>(y)?);
        let encoded = EncodedPoint::<C>::from_affine_coordinates(&x, &y, false);
        // Checks that the coordinates are below p and satisfy the curve equation.
        let point = Option::<AffinePoint<C>>::from(AffinePoint::<C>::from_encoded_point(&encoded))?;
        let projective = ProjectivePoint::<C>::from(point);
        if bool::from(projective.is_identity()) {
            return None;
        }
        Some(EcdsaKey {
            multiples: OddMultiples::new(projective, half_bits::<C>()),
        })
    }
}

impl<C: CurveArithmetic> EcdsaKey<C> {
    /// SEC 1 §4.1.4 with a hash as long as the field.
    fn verify<const G: usize>(
        &self,
        generator: &OddMultiples<ProjectivePoint<C>, G>,
        digest: &FieldBytes<C>,
        signature: &[u8],
    ) -> bool {
        let size = FieldBytesSize::<C>::USIZE;
        if signature.len() != 2 * size {
            return false;
        }
        let (r, s) = signature.split_at(size);
        let (Some(r), Some(s)) = (scalar_in_range::<C>(r), scalar_in_range::<C>(s)) else {
            return false;
        };
        let Some(s_inverse) = Option::<Scalar<C>>::from(s.invert_vartime()) else {
            return false;
        };
        let z = <Scalar<C> as Reduce<C::Uint>>::reduce_bytes(digest);
        let point: ProjectivePoint<C> = lincomb(
            &(z * s_inverse),
            generator,
            &(r * s_inverse),
            &self.multiples,
        );
        // The identity's affine x is zero, which never equals r (r ≠ 0).
        let x = point.to_affine().x();
        <Scalar<C> as Reduce<C::Uint>>::reduce_bytes(&x) == r
    }
}

/// A big-endian integer in [1, n−1].
fn scalar_in_range<C: CurveArithmetic>(bytes: &[u8]) -> Option<Scalar<C>> {
    let scalar = Option::<Scalar<C>>::from(Scalar::<C>::from_repr(field_bytes::<C>(bytes)?))?;
    (!bool::from(p384::elliptic_curve::ff::Field::is_zero(&scalar))).then_some(scalar)
}

/// Exactly one field element's worth of big-endian bytes.
fn field_bytes<C: CurveArithmetic>(bytes: &[u8]) -> Option<FieldBytes<C>> {
    let mut field = FieldBytes::<C>::default();
    if field.len() != bytes.len() {
        return None;
    }
    field
        .iter_mut()
        .zip(bytes)
        .for_each(|(to, from)| *to = *from);
    Some(field)
}
