//! The P-256 arithmetic against the p256 crate: points, sums of multiples (edge scalars and
//! sums that reach the identity included) and whole verifications.

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::{LinearCombination, Reduce};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::elliptic_curve::PrimeField;
use p256::FieldBytes;
use p256::{ProjectivePoint, Scalar, U256};
use sha2::{Digest, Sha256};

use super::field::Fe;
use super::point::{Affine, Jacobian};
use super::*;
use crate::signature::mont256::{self, Limbs};
use crate::signature::straus::{sum_of_multiples, OddMultiples};

fn scalar(seed: u32) -> Scalar {
    <Scalar as Reduce<U256>>::reduce_bytes(&Sha256::digest(seed.to_be_bytes()))
}

fn limbs_of(scalar: &Scalar) -> Limbs {
    mont256::from_be_bytes(&scalar.to_repr()).unwrap()
}

fn be_bytes(limbs: &Limbs) -> Vec<u8> {
    limbs
        .iter()
        .rev()
        .flat_map(|limb| limb.to_be_bytes())
        .collect()
}

fn ours(point: &ProjectivePoint) -> Affine {
    let encoded = point.to_affine().to_encoded_point(false);
    Affine::from_coordinates(encoded.x().unwrap(), encoded.y().unwrap()).unwrap()
}

/// The p256 crate's view of our point: affine (x, y) bytes, or `None` for the identity.
fn coordinates(point: &Jacobian) -> Option<(Vec<u8>, Vec<u8>)> {
    let affine = point.to_affine()?;
    Some((
        be_bytes(&Fe::to_integer(affine.x)),
        be_bytes(&Fe::to_integer(affine.y)),
    ))
}

fn library_coordinates(point: &ProjectivePoint) -> Option<(Vec<u8>, Vec<u8>)> {
    if point == &ProjectivePoint::IDENTITY {
        return None;
    }
    let encoded = point.to_affine().to_encoded_point(false);
    Some((encoded.x().unwrap().to_vec(), encoded.y().unwrap().to_vec()))
}

#[test]
fn the_generator_and_curve_checks_agree_with_the_library() {
    assert_eq!(
        Affine::generator().unwrap(),
        ours(&ProjectivePoint::GENERATOR)
    );
    let g = ProjectivePoint::GENERATOR.to_affine();
    let x = g.x();
    let mut y = g.to_encoded_point(false).y().unwrap().to_vec();
    y[31] ^= 1;
    assert!(Affine::from_coordinates(&x, &y).is_none(), "off the curve");
    let p = be_bytes(&[u32::MAX, u32::MAX, u32::MAX, 0, 0, 0, 1, u32::MAX]);
    assert!(Affine::from_coordinates(&p, &y).is_none(), "x = p");
    assert!(Affine::from_coordinates(&x[..31], &y).is_none(), "short");
}

#[test]
fn doubling_and_addition_agree_with_the_library() {
    let g = ProjectivePoint::GENERATOR;
    for seed in 0..50 {
        let p = g * scalar(seed);
        let q = g * scalar(seed + 1000);
        let (ours_p, ours_q) = (Jacobian::from(ours(&p)), ours(&q));
        assert_eq!(
            coordinates(&ours_p.double()),
            library_coordinates(&p.double())
        );
        assert_eq!(
            coordinates(&ours_p.add_affine(&ours_q)),
            library_coordinates(&(p + q))
        );
        // P + P and P + (−P) take the special paths.
        let p_affine = ours(&p);
        assert_eq!(
            coordinates(&ours_p.add_affine(&p_affine)),
            library_coordinates(&p.double())
        );
        assert!(ours_p.add_affine(&p_affine.neg()).is_identity());
        let doubled = Jacobian::from(p_affine).double();
        assert_eq!(
            coordinates(&doubled.add_affine(&p_affine)),
            library_coordinates(&(p + p + p))
        );
        assert!(doubled
            .add_affine(&p_affine.double_affine().neg())
            .is_identity());
    }
    assert!(Jacobian::IDENTITY.double().is_identity());
    let g_affine = ours(&g);
    assert_eq!(
        coordinates(&Jacobian::IDENTITY.add_affine(&g_affine)),
        library_coordinates(&g)
    );
}

impl Affine {
    fn double_affine(self) -> Affine {
        Jacobian::from(self).double().to_affine().unwrap()
    }
}

#[test]
fn sums_of_multiples_agree_with_the_library() {
    let g = ProjectivePoint::GENERATOR;
    let q_scalar = scalar(1);
    let q = g * q_scalar;
    let g_multiples: OddMultiples<Affine, 64> =
        OddMultiples::new(Jacobian::from(ours(&g))).unwrap();
    let q_multiples: OddMultiples<Affine, 16> =
        OddMultiples::new(Jacobian::from(ours(&q))).unwrap();
    // Q = G: the two tables hold the same points, so partial sums meet equal points.
    let g_as_key: OddMultiples<Affine, 16> = OddMultiples::new(Jacobian::from(ours(&g))).unwrap();
    let mut pairs: Vec<(Scalar, Scalar)> = (0..60)
        .map(|i| (scalar(2 * i + 2), scalar(2 * i + 3)))
        .collect();
    let two = Scalar::from(2u64);
    let mut edges = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, -two];
    for bits in [63u64, 64, 65, 128, 192, 255] {
        let power = two.pow_vartime(&[bits]);
        edges.extend([power, -power, power - Scalar::ONE]);
    }
    for edge in &edges {
        pairs.extend([(*edge, scalar(9)), (scalar(9), *edge), (*edge, *edge)]);
    }
    // a·G + b·Q = identity when a = −b·q.
    for seed in 0..5 {
        let b = scalar(100 + seed);
        pairs.push((-(b * q_scalar), b));
    }
    for (a, b) in pairs {
        let library = ProjectivePoint::lincomb(&g, &a, &q, &b);
        let sum: Jacobian =
            sum_of_multiples(&limbs_of(&a), &g_multiples, &limbs_of(&b), &q_multiples);
        assert_eq!(
            coordinates(&sum),
            library_coordinates(&library),
            "{a:?} {b:?}"
        );
        let same: Jacobian =
            sum_of_multiples(&limbs_of(&a), &g_multiples, &limbs_of(&b), &g_as_key);
        assert_eq!(coordinates(&same), library_coordinates(&(g * (a + b))));
    }
    // Integers up to 2^256 − 1, beyond n: the sum is of the integers, not their residues.
    let all_ones = [u32::MAX; 8];
    let mut bytes = FieldBytes::default();
    bytes.copy_from_slice(&be_bytes(&all_ones));
    let reduced = <Scalar as Reduce<U256>>::reduce_bytes(&bytes);
    let sum: Jacobian = sum_of_multiples(&all_ones, &g_multiples, &mont256::ZERO, &q_multiples);
    assert_eq!(coordinates(&sum), library_coordinates(&(g * reduced)));
}

fn signing_key(seed: u32) -> SigningKey {
    SigningKey::from_bytes(&scalar(seed).to_repr()).unwrap()
}

fn our_key(key: &SigningKey) -> P256Key {
    let point = key.verifying_key().to_encoded_point(false);
    P256Key::from_coordinates(point.x().unwrap(), point.y().unwrap()).unwrap()
}

#[test]
fn verifications_agree_with_the_library() {
    for seed in 0..20 {
        let key = signing_key(seed);
        let ours = our_key(&key);
        let message = format!("header.payload-{seed}");
        let digest = Sha256::digest(message.as_bytes());
        let signature: Signature = key.sign_prehash(&digest).unwrap();
        let bytes = signature.to_bytes().to_vec();
        assert!(ours.verify(message.as_bytes(), &bytes));
        // The high-s twin is valid too.
        let (r, s) = signature.split_scalars();
        let high = Signature::from_scalars(r.to_repr(), (-*s).to_repr()).unwrap();
        assert!(ours.verify(message.as_bytes(), &high.to_bytes()));
        for position in [0, 17, 31, 32, 50, 63] {
            let mut bad = bytes.clone();
            bad[position] ^= 0x40;
            assert!(!ours.verify(message.as_bytes(), &bad), "byte {position}");
        }
        assert!(!ours.verify(b"another input", &bytes));
        assert!(!our_key(&signing_key(seed + 100)).verify(message.as_bytes(), &bytes));
    }
}

#[test]
fn out_of_range_signatures_are_refused() {
    let key = signing_key(1);
    let ours = our_key(&key);
    let message = b"header.payload";
    let signature: Signature = key.sign_prehash(&Sha256::digest(message)).unwrap();
    let bytes = signature.to_bytes().to_vec();
    let n = be_bytes(&scalar::N.value);
    let (r, s) = bytes.split_at(32);
    let zero = [0u8; 32];
    let ones = [0xffu8; 32];
    for (r, s) in [
        (&zero[..], s),
        (r, &zero[..]),
        (&n[..], s),
        (r, &n[..]),
        (&ones[..], s),
        (r, &ones[..]),
    ] {
        assert!(!ours.verify(message, &[r, s].concat()));
    }
    // r + n as r: the same x modulo n, but not in range.
    assert!(
        !ours.verify(message, &[&bytes[..31], &bytes[32..]].concat()),
        "short"
    );
    assert!(
        !ours.verify(message, &[bytes.as_slice(), &[0]].concat()),
        "long"
    );
    assert!(!ours.verify(message, &[]));
}
