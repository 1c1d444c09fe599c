//! The P-384 arithmetic against the p384 crate: constants, points, sums of multiples (edge
//! scalars and sums that reach the identity included) and whole verifications. The Wycheproof
//! ECDSA P-384 vectors run through the public API in `tests/signature_vectors.rs`.

use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::ecdsa::{Signature, SigningKey};
use p384::elliptic_curve::group::Group;
use p384::elliptic_curve::ops::{LinearCombination, Reduce};
use p384::elliptic_curve::sec1::ToEncodedPoint;
use p384::elliptic_curve::PrimeField;
use p384::{ProjectivePoint, Scalar, U384};
use sha2::{Digest, Sha384};

use super::field::{Fe, LIMBS};
use super::*;
use crate::signature::montgomery::Limbs;
use crate::signature::straus::sum_of_multiples;
use crate::signature::weierstrass::Coordinate;

fn scalar(seed: u32) -> Scalar {
    <Scalar as Reduce<U384>>::reduce_bytes(&Sha384::digest(seed.to_be_bytes()))
}

fn limbs_of(scalar: &Scalar) -> Limbs<LIMBS> {
    montgomery::from_be_bytes(&scalar.to_repr()).unwrap()
}

fn be_bytes(limbs: &Limbs<LIMBS>) -> Vec<u8> {
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

/// The p384 crate's view of our point: affine (x, y) bytes, or `None` for the identity.
fn coordinates(point: &Jacobian) -> Option<(Vec<u8>, Vec<u8>)> {
    let affine = point.to_affine()?;
    Some((
        be_bytes(&affine.x.to_integer()),
        be_bytes(&affine.y.to_integer()),
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
fn constants_and_curve_checks_agree_with_the_library() {
    assert_eq!(
        Affine::generator().unwrap(),
        ours(&ProjectivePoint::GENERATOR)
    );
    // n is the order: the library's n − 1 is our n − 1, and n·G is the identity.
    let mut n_minus_one = scalar::N.value;
    n_minus_one[0] -= 1;
    assert_eq!(limbs_of(&-Scalar::ONE), n_minus_one);
    assert_eq!(Fe::ONE.to_integer(), montgomery::one());
    let mut p_minus_one = field::P.value;
    p_minus_one[0] -= 1;
    assert_eq!(
        Fe::from_integer(&p_minus_one).unwrap().add(Fe::ONE),
        Fe::ZERO
    );
    assert!(Fe::from_integer(&field::P.value).is_none());

    let g = ProjectivePoint::GENERATOR
        .to_affine()
        .to_encoded_point(false);
    let (x, mut y) = (g.x().unwrap().to_vec(), g.y().unwrap().to_vec());
    assert!(Affine::from_coordinates(&x, &y).is_some());
    y[47] ^= 1;
    assert!(Affine::from_coordinates(&x, &y).is_none(), "off the curve");
    let p = be_bytes(&field::P.value);
    assert!(Affine::from_coordinates(&p, &y).is_none(), "x = p");
    assert!(Affine::from_coordinates(&x[..47], &y).is_none(), "short");
}

#[test]
fn field_laws_hold() {
    let elements: Vec<Fe> = (0..100)
        .map(|seed| Fe::from_integer(&limbs_of(&scalar(seed))).unwrap())
        .collect();
    for window in elements.windows(3) {
        let (a, b, c) = (window[0], window[1], window[2]);
        assert_eq!(a.mul(b.add(c)), a.mul(b).add(a.mul(c)));
        assert_eq!(a.mul(b), b.mul(a));
        assert_eq!(a.sub(b).add(b), a);
        assert_eq!(a.add(a.neg()), Fe::ZERO);
        assert_eq!(a.mul(a.invert().unwrap()), Fe::ONE);
        assert_eq!(Fe::from_integer(&a.to_integer()), Some(a));
    }
    assert_eq!(Fe::ZERO.invert(), None);
}

#[test]
fn doubling_and_addition_agree_with_the_library() {
    let g = ProjectivePoint::GENERATOR;
    for seed in 0..20 {
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
        let p_affine = ours(&p);
        assert_eq!(
            coordinates(&ours_p.add_affine(&p_affine)),
            library_coordinates(&p.double())
        );
        assert!(ours_p.add_affine(&p_affine.neg()).is_identity());
    }
    assert!(Jacobian::IDENTITY.double().is_identity());
}

#[test]
fn sums_of_multiples_agree_with_the_library() {
    let g = ProjectivePoint::GENERATOR;
    let q_scalar = scalar(1);
    let q = g * q_scalar;
    let g_multiples: OddMultiples<Affine, GENERATOR_MULTIPLES> =
        OddMultiples::new(Jacobian::from(ours(&g))).unwrap();
    let q_multiples: OddMultiples<Affine, KEY_MULTIPLES> =
        OddMultiples::new(Jacobian::from(ours(&q))).unwrap();
    let mut pairs: Vec<(Scalar, Scalar)> = (0..30)
        .map(|i| (scalar(2 * i + 2), scalar(2 * i + 3)))
        .collect();
    let two = Scalar::from(2u64);
    let mut edges = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, -two];
    // Chunk edges (96 bits) and the top.
    for bits in [95u64, 96, 97, 192, 288, 383] {
        let power = two.pow_vartime(&[bits, 0, 0, 0, 0, 0]);
        edges.extend([power, -power, power - Scalar::ONE]);
    }
    for edge in &edges {
        pairs.extend([(*edge, scalar(9)), (scalar(9), *edge), (*edge, *edge)]);
    }
    // a·G + b·Q = identity when a = −b·q.
    for seed in 0..3 {
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
    }
}

fn signing_key(seed: u32) -> SigningKey {
    SigningKey::from_bytes(&scalar(seed).to_repr()).unwrap()
}

fn our_key(key: &SigningKey) -> P384Key {
    let point = key.verifying_key().to_encoded_point(false);
    P384Key::from_coordinates(point.x().unwrap(), point.y().unwrap()).unwrap()
}

#[test]
fn verifications_agree_with_the_library() {
    for seed in 0..10 {
        let key = signing_key(seed);
        let ours = our_key(&key);
        let message = format!("header.payload-{seed}");
        let digest = Sha384::digest(message.as_bytes());
        let signature: Signature = key.sign_prehash(&digest).unwrap();
        let bytes = signature.to_bytes().to_vec();
        assert!(ours.verify(message.as_bytes(), &bytes));
        // The high-s twin is valid too.
        let (r, s) = signature.split_scalars();
        let high = Signature::from_scalars(r.to_repr(), (-*s).to_repr()).unwrap();
        assert!(ours.verify(message.as_bytes(), &high.to_bytes()));
        for position in [0, 23, 47, 48, 70, 95] {
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
    let signature: Signature = key.sign_prehash(&Sha384::digest(message)).unwrap();
    let bytes = signature.to_bytes().to_vec();
    let n = be_bytes(&scalar::N.value);
    let (r, s) = bytes.split_at(48);
    let zero = [0u8; 48];
    let ones = [0xffu8; 48];
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
    assert!(!ours.verify(message, &bytes[..95]), "short");
    assert!(
        !ours.verify(message, &[bytes.as_slice(), &[0]].concat()),
        "long"
    );
    assert!(!ours.verify(message, &[]));
}
