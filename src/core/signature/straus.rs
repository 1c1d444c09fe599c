//! Variable-time a·A + b·B, the one costly step of an ECDSA or EdDSA verification.
//!
//! Straus' method (one chain of doublings for both scalars) over width-w NAF digits, with each
//! scalar also cut into four chunks of a quarter of its bits (64 on 256-bit curves): chunk c of
//! a point's table holds the odd multiples of 2^(64c)·P, so one chain of 65 doublings serves all
//! eight (scalar, chunk) pairs. Tables are
//! affine (one inversion for the lot, when they are built), so every addition is a mixed one.
//! Nothing in a verification is secret, so digits index the tables directly.

use super::naf::wnaf;

const CHUNKS: usize = 4;

/// A curve's points as a sum is built from them, and as they are stored in tables.
pub trait Point: Copy {
    /// An affine point, cheaper to add.
    type Stored: Copy;
    const IDENTITY: Self;
    /// The bit length of the scalars (the group order's): a multiple of `CHUNKS`.
    const SCALAR_BITS: usize;
    /// The bits of a scalar that one chunk covers.
    const CHUNK_BITS: usize = Self::SCALAR_BITS / CHUNKS;
    fn double(self) -> Self;
    fn add_stored(self, other: &Self::Stored) -> Self;
    fn neg_stored(stored: &Self::Stored) -> Self::Stored;
    /// The points in stored form; `None` if one is the identity (and has none).
    fn to_stored(points: &[Self]) -> Option<Vec<Self::Stored>>;
}

/// For each chunk c, (2k + 1)·2^(c·chunk bits)·P for k < N. N = 2^(w−2) for NAF width w.
#[derive(Debug, Clone)]
pub struct OddMultiples<S, const N: usize> {
    chunks: [[S; N]; CHUNKS],
}

impl<S: Copy, const N: usize> OddMultiples<S, N> {
    /// The NAF width whose odd digits index exactly N multiples.
    const WIDTH: u32 = N.trailing_zeros() + 2;

    /// The multiples of a point; `None` if it has a small order (a multiple is the identity).
    pub fn new<P: Point<Stored = S>>(point: P) -> Option<OddMultiples<S, N>> {
        let mut multiples = Vec::with_capacity(CHUNKS * N);
        let mut base = point;
        for _ in 0..CHUNKS {
            let twice = *P::to_stored(&[base.double()])?.first()?;
            let mut current = base;
            for _ in 0..N {
                multiples.push(current);
                current = current.add_stored(&twice);
            }
            base = (0..P::CHUNK_BITS).fold(base, |acc, _| acc.double());
        }
        let stored = P::to_stored(&multiples)?;
        let first = *stored.first()?;
        let mut chunks = [[first; N]; CHUNKS];
        for (slot, multiple) in chunks.iter_mut().flatten().zip(stored) {
            *slot = multiple;
        }
        Some(OddMultiples { chunks })
    }

    /// sum + d·2^(chunk · chunk bits)·P for a NAF digit d.
    #[inline(always)]
    fn add_digit<P: Point<Stored = S>>(&self, sum: P, chunk: usize, digit: i8) -> P {
        let multiple = self
            .chunks
            .get(chunk)
            .and_then(|multiples| multiples.get(usize::from(digit.unsigned_abs() / 2)));
        match multiple {
            Some(point) if digit > 0 => sum.add_stored(point),
            Some(point) if digit < 0 => sum.add_stored(&P::neg_stored(point)),
            _ => sum,
        }
    }
}

/// a·A + b·B for integers a, b < 2^(scalar bits), in variable time: for public inputs only.
pub fn sum_of_multiples<P: Point, const M: usize, const N: usize>(
    a: &[u32],
    a_multiples: &OddMultiples<P::Stored, M>,
    b: &[u32],
    b_multiples: &OddMultiples<P::Stored, N>,
) -> P {
    let a_digits = wnaf(a, OddMultiples::<P::Stored, M>::WIDTH);
    let b_digits = wnaf(b, OddMultiples::<P::Stored, N>::WIDTH);
    let mut sum = P::IDENTITY;
    // Doubling the identity is a waste until the first addition.
    let mut started = false;
    for position in (0..=P::CHUNK_BITS).rev() {
        if started {
            sum = sum.double();
        }
        for chunk in 0..CHUNKS {
            // The top position of a chunk is position 0 of the next; only the last has its own.
            if position == P::CHUNK_BITS && chunk + 1 < CHUNKS {
                continue;
            }
            let index = chunk * P::CHUNK_BITS + position;
            let a_digit = a_digits.get(index).copied().unwrap_or(0);
            let b_digit = b_digits.get(index).copied().unwrap_or(0);
            started |= a_digit != 0 || b_digit != 0;
            sum = a_multiples.add_digit(sum, chunk, a_digit);
            sum = b_multiples.add_digit(sum, chunk, b_digit);
        }
    }
    sum
}
