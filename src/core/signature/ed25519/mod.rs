//! EdDSA with Ed25519 (RFC 8032, for JWS RFC 8037) on arithmetic of its own, written for wasm:
//! a radix-2^25.5 field (`field`), precomputed multiples of the key (when the key set is parsed)
//! and of the base point (once per process).
//!
//! Acceptance is strict, as Wycheproof's vectors require (tests/signature_vectors.rs): S below
//! L; the key and R canonical encodings of points that are not of small order. The equation is
//! checked with the cofactor, 8·(S·B − k·A − R) = O, with k = SHA-512(R ‖ A ‖ M) mod L.

mod field;
mod point;
mod scalar;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use sha2::{Digest, Sha512};

use crate::signature::straus::{sum_of_multiples, OddMultiples, Point};
use point::{batch_to_niels, Extended, Niels};

/// Odd multiples per chunk of −A (NAF width 6): 64 points, 7.5 KiB.
const KEY_MULTIPLES: usize = 16;
/// Odd multiples per chunk of the base point (NAF width 8): 256 points, 30 KiB, once.
const BASE_MULTIPLES: usize = 64;

/// An Ed25519 public key: its encoding (hashed into every k) and the multiples of −A.
#[derive(Debug, Clone)]
pub struct Ed25519Key {
    encoding: [u8; 32],
    minus_a: OddMultiples<Niels, KEY_MULTIPLES>,
}

impl Point for Extended {
    type Stored = Niels;
    const IDENTITY: Extended = Extended::IDENTITY;
    /// The group order ℓ is just above 2^252; scalars are below 2^256.
    const SCALAR_BITS: usize = 256;

    fn double(self) -> Extended {
        Extended::double(self)
    }

    fn add_stored(self, other: &Niels) -> Extended {
        self.add_niels(other)
    }

    fn neg_stored(stored: &Niels) -> Niels {
        stored.neg()
    }

    fn to_stored(points: &[Extended]) -> Option<Vec<Niels>> {
        Some(batch_to_niels(points))
    }
}

impl Ed25519Key {
    /// A 32-byte key; `None` unless it is the canonical encoding of a point of large order.
    pub fn from_bytes(bytes: &[u8]) -> Option<Ed25519Key> {
        let encoding: [u8; 32] = bytes.try_into().ok()?;
        let point = Extended::decode(&encoding)?;
        if point.has_small_order() {
            return None;
        }
        Some(Ed25519Key {
            encoding,
            minus_a: OddMultiples::new(point.neg())?,
        })
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        static BASE: OnceLock<Option<OddMultiples<Niels, BASE_MULTIPLES>>> = OnceLock::new();
        let Some(base) = BASE.get_or_init(|| OddMultiples::new(Extended::base()?)) else {
            return false;
        };
        let Some((r_bytes, s_bytes)) = signature.split_first_chunk::<32>() else {
            return false;
        };
        let Ok(s_bytes) = <&[u8; 32]>::try_from(s_bytes) else {
            return false;
        };
        let Some(s) = scalar::canonical(s_bytes) else {
            return false;
        };
        let Some(r) = Extended::decode(r_bytes) else {
            return false;
        };
        if r.has_small_order() {
            return false;
        }
        let digest: [u8; 64] = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(self.encoding)
            .chain_update(message)
            .finalize()
            .into();
        let k = scalar::reduce_wide(&digest);
        let sum: Extended = sum_of_multiples(&s, base, &k, &self.minus_a);
        // R is affine (decoded, Z = 1): subtract it as a Niels point.
        sum.add_niels(&Niels::from_affine(&r).neg())
            .has_small_order()
    }
}
