//! The Ed25519 arithmetic against ed25519-compact (what verified EdDSA before) and RFC 8032:
//! the same keys accepted, the same signatures, and multiples of the base point right.

use sha2::{Digest, Sha512};

use super::point::Extended;
use super::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn bytes32(seed: u64) -> [u8; 32] {
    let digest = Sha512::digest(seed.to_le_bytes());
    digest[..32].try_into().unwrap()
}

fn keypair(seed: u64) -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(bytes32(seed)))
}

#[test]
fn rfc8032_vectors_verify() {
    let vectors = [
        (
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (key, message, signature) in vectors {
        let key = Ed25519Key::from_bytes(&hex(key)).unwrap();
        let (message, signature) = (hex(message), hex(signature));
        assert!(key.verify(&message, &signature));
        let mut bad = signature.clone();
        bad[63] ^= 1;
        assert!(!key.verify(&message, &bad));
        assert!(!key.verify(b"x", &signature));
    }
}

#[test]
fn multiples_of_the_base_point_are_the_public_keys() {
    let base: OddMultiples<Niels, BASE_MULTIPLES> =
        OddMultiples::new(Extended::base().unwrap()).unwrap();
    let nothing: OddMultiples<Niels, KEY_MULTIPLES> =
        OddMultiples::new(Extended::base().unwrap()).unwrap();
    for seed in 0..30 {
        // The secret scalar of RFC 8032 §5.1.5, clamped: its multiple of B is the public key.
        let hash = Sha512::digest(bytes32(seed));
        let mut scalar: [u8; 32] = hash[..32].try_into().unwrap();
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
        let limbs = crate::signature::mont256::from_le_bytes(&scalar);
        let sum: Extended =
            sum_of_multiples(&limbs, &base, &crate::signature::mont256::ZERO, &nothing);
        assert_eq!(sum.encode(), *keypair(seed).pk, "seed {seed}");
    }
}

#[test]
fn verifications_agree_with_ed25519_compact() {
    for seed in 0..30 {
        let pair = keypair(seed);
        let ours = Ed25519Key::from_bytes(&pair.pk[..]).unwrap();
        let message = format!("header.payload-{seed}").repeat(seed as usize % 5 + 1);
        let signature = pair.sk.sign(message.as_bytes(), None);
        assert!(ours.verify(message.as_bytes(), &signature[..]));
        for position in [0, 13, 31, 32, 45, 63] {
            let mut bad = signature.to_vec();
            bad[position] ^= 0x08;
            let library = pair
                .pk
                .verify(
                    message.as_bytes(),
                    &ed25519_compact::Signature::from_slice(&bad).unwrap(),
                )
                .is_ok();
            assert_eq!(
                ours.verify(message.as_bytes(), &bad),
                library,
                "byte {position}"
            );
            assert!(!library);
        }
        assert!(!ours.verify(message.as_bytes(), &signature[..63]));
        assert!(!ours.verify(b"another", &signature[..]));
        let other = Ed25519Key::from_bytes(&keypair(seed + 100).pk[..]).unwrap();
        assert!(!other.verify(message.as_bytes(), &signature[..]));
    }
}

#[test]
fn the_same_keys_are_accepted_as_by_ed25519_compact() {
    let mut candidates: Vec<[u8; 32]> = (0..300).map(bytes32).collect();
    // Edge encodings: y = 0, 1, p − 1, p, p + 1, 2^255 − 1, each with and without the sign bit.
    let p_minus = |k: u8| {
        let mut bytes = [0xff; 32];
        bytes[0] = 0xed - k;
        bytes[31] = 0x7f;
        bytes
    };
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut p_plus_one = p_minus(0);
    p_plus_one[0] = 0xee;
    for edge in [
        [0u8; 32],
        one,
        p_minus(1),
        p_minus(0),
        p_plus_one,
        [0xff; 32],
    ] {
        let mut signed = edge;
        signed[31] |= 0x80;
        candidates.extend([edge, signed]);
    }
    let mut accepted = 0;
    for candidate in candidates {
        let library = ed25519_compact::PublicKey::new(candidate)
            .validate()
            .is_ok();
        assert_eq!(
            Ed25519Key::from_bytes(&candidate).is_some(),
            library,
            "{candidate:02x?}"
        );
        accepted += usize::from(library);
    }
    assert!(accepted > 100, "{accepted}");
}

/// A point of order 8: the torsion part L·P of some point P.
fn order_8_point() -> Extended {
    for seed in 0.. {
        let Some(point) = Extended::decode(&bytes32(seed)) else {
            continue;
        };
        let table: OddMultiples<Niels, 1> = OddMultiples::new(point).unwrap();
        let torsion: Extended = sum_of_multiples(
            &super::scalar::L.value,
            &table,
            &crate::signature::mont256::ZERO,
            &table,
        );
        // Order exactly 8: 4·T is not the identity (x = 0, y = 1) but 8·T is.
        let four = torsion.double().double();
        if four.encode() != Extended::IDENTITY.encode() {
            assert_eq!(four.double().encode(), Extended::IDENTITY.encode());
            return torsion;
        }
    }
    unreachable!()
}

fn plus(point: Extended, other: Extended) -> Extended {
    let affine = Extended::decode(&other.encode()).unwrap();
    point.add_niels(&Niels::from_affine(&affine))
}

#[test]
fn mixed_order_keys_and_r_are_judged_as_by_ed25519_compact() {
    let torsion = order_8_point();
    let mut accepted_with_torsion = 0;
    for seed in 0..10 {
        let pair = keypair(seed);
        let a = Extended::decode(&pair.pk).unwrap();
        let message = format!("m{seed}");
        let signature = pair.sk.sign(message.as_bytes(), None);
        let r = Extended::decode(signature[..32].try_into().unwrap()).unwrap();
        let mut t = torsion;
        for _ in 0..8 {
            // The key plus torsion: a valid key (not of small order) in both.
            let mixed_key = plus(a, t).encode();
            let library_key = ed25519_compact::PublicKey::new(mixed_key);
            assert_eq!(
                Ed25519Key::from_bytes(&mixed_key).is_some(),
                library_key.validate().is_ok()
            );
            // R plus torsion: the cofactored equation ignores it, but k changes with R.
            let mut tweaked = signature.to_vec();
            tweaked[..32].copy_from_slice(&plus(r, t).encode());
            let library = pair
                .pk
                .verify(
                    message.as_bytes(),
                    &ed25519_compact::Signature::from_slice(&tweaked).unwrap(),
                )
                .is_ok();
            let ours = Ed25519Key::from_bytes(&pair.pk[..]).unwrap();
            assert_eq!(ours.verify(message.as_bytes(), &tweaked), library);
            accepted_with_torsion += usize::from(library);
            t = plus(t, torsion);
        }
    }
    // T·8 = O: one of the eight tweaks each time is R itself, which verifies.
    assert_eq!(accepted_with_torsion, 10);
}
