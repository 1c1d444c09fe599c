//! Variable-time a·A + b·B: the one costly step of an ES384 verification (u1·G + u2·Q).
//!
//! p256/p384 0.13 compute it as two constant-time scalar multiplications (their `lincomb` has
//! no faster path, nor do they have precomputed-table features). Nothing in a verification is
//! secret (public key, signature, message), so this uses the textbook variable-time method
//! instead, about 3× faster in wasm: Straus' interleaving (one chain of doublings for both
//! scalars) over width-w NAF digits, with each point's odd multiples precomputed (once per key,
//! once per process for the generator). Each scalar is also split at half its bits, with 2^h·P
//! as a second point, which halves the doublings.

use p384::elliptic_curve::ff::PrimeField;
use p384::elliptic_curve::group::Group;

/// The odd multiples P, 3P, …, (2N − 1)·P of a point, and those of 2^h·P. N = 2^(w−2) for
/// NAF width w.
///
/// Projective: p256/p384 0.13 have no batched inversion for their points, so affine tables
/// would cost one field inversion per multiple to build (about 6 ms for a P-384 key in wasm)
/// for no measurable gain per verification (their mixed addition is barely cheaper).
#[derive(Debug, Clone)]
pub struct OddMultiples<P, const N: usize> {
    /// h: where scalars are split, half the curve's scalar bits.
    half_bits: usize,
    low: [P; N],
    high: [P; N],
}

impl<P: Group, const N: usize> OddMultiples<P, N> {
    /// NAF width whose odd digits index exactly N multiples.
    const WIDTH: u32 = N.trailing_zeros() + 2;

    pub fn new(point: P, half_bits: usize) -> OddMultiples<P, N> {
        let mut high = point;
        for _ in 0..half_bits {
            high = high.double();
        }
        OddMultiples {
            half_bits,
            low: odd_multiples(point),
            high: odd_multiples(high),
        }
    }

    /// The (digits, multiples) pairs that `scalar · point` splits into.
    fn terms<'a>(&'a self, digits: &'a [i8]) -> [(&'a [i8], &'a [P; N]); 2] {
        let (low, high) = digits.split_at(self.half_bits.min(digits.len()));
        [(low, &self.low), (high, &self.high)]
    }
}

fn odd_multiples<P: Group, const N: usize>(point: P) -> [P; N] {
    let twice = point.double();
    let mut next = point;
    [(); N].map(|()| {
        let current = next;
        next += twice;
        current
    })
}

/// `a·A + b·B`, in variable time: for public inputs only.
pub fn lincomb<P, const M: usize, const N: usize>(
    a: &P::Scalar,
    a_multiples: &OddMultiples<P, M>,
    b: &P::Scalar,
    b_multiples: &OddMultiples<P, N>,
) -> P
where
    P: Group,
    P::Scalar: PrimeField,
{
    let a_digits = wnaf(a.to_repr().as_ref(), OddMultiples::<P, M>::WIDTH);
    let b_digits = wnaf(b.to_repr().as_ref(), OddMultiples::<P, N>::WIDTH);
    let [a_low, a_high] = a_multiples.terms(&a_digits);
    let [b_low, b_high] = b_multiples.terms(&b_digits);
    let longest = [a_low.0, a_high.0, b_low.0, b_high.0]
        .iter()
        .map(|digits| digits.len())
        .max()
        .unwrap_or(0);
    let mut sum = P::identity();
    for position in (0..longest).rev() {
        sum = sum.double();
        sum = add_digit(sum, a_low, position);
        sum = add_digit(sum, a_high, position);
        sum = add_digit(sum, b_low, position);
        sum = add_digit(sum, b_high, position);
    }
    sum
}

/// `sum + d·P` for the digit d at `position` (zero, or odd with |d| < 2N).
fn add_digit<P: Group, const N: usize>(
    sum: P,
    (digits, multiples): (&[i8], &[P; N]),
    position: usize,
) -> P {
    let digit = digits.get(position).copied().unwrap_or(0);
    // The odd multiple |d|·P sits at index (|d| − 1) / 2.
    match multiples.get(usize::from(digit.unsigned_abs() / 2)) {
        Some(point) if digit > 0 => sum + point,
        Some(point) if digit < 0 => sum - point,
        _ => sum,
    }
}

/// Width-w NAF of a big-endian integer: digits d_i, each zero or odd with |d_i| < 2^(w−1),
/// such that the integer is Σ d_i·2^i. One digit more than the integer has bits (for the
/// final carry).
fn wnaf(big_endian: &[u8], width: u32) -> Vec<i8> {
    let bits = big_endian.len() * 8;
    let bit = |i: usize| -> u32 {
        big_endian
            .len()
            .checked_sub(1 + i / 8)
            .and_then(|byte| big_endian.get(byte))
            .map_or(0, |byte| u32::from(byte >> (i % 8)) & 1)
    };
    let mut digits = vec![0i8; bits + 1];
    let mut position = 0;
    let mut carry = 0;
    while position <= bits {
        if bit(position) == carry {
            // A zero digit; a carry of 1 moves on over a 1 bit.
            position += 1;
            continue;
        }
        // Odd: the next w bits plus the carry. Above 2^(w−1) it becomes negative, carrying 1.
        let window = (0..width as usize).fold(carry, |acc, j| acc + (bit(position + j) << j));
        carry = window >> (width - 1);
        let digit = i64::from(window) - (i64::from(carry) << width);
        if let (Some(slot), Ok(digit)) = (digits.get_mut(position), i8::try_from(digit)) {
            *slot = digit;
        }
        position += width as usize;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::ops::{LinearCombination, Reduce};
    use sha2::{Digest, Sha256, Sha384};

    fn value_of(digits: &[i8]) -> i128 {
        digits
            .iter()
            .rev()
            .fold(0i128, |acc, d| acc * 2 + i128::from(*d))
    }

    #[test]
    fn wnaf_digits_are_odd_small_and_sum_to_the_integer() {
        for width in [2, 4, 5, 8] {
            for n in [0u64, 1, 2, 3, 7, 8, 255, 256, 0x5555, 0xdead_beef, u64::MAX] {
                let digits = wnaf(&n.to_be_bytes(), width);
                assert_eq!(value_of(&digits), i128::from(n), "w={width} n={n}");
                let bound = (1i16 << (width - 1)) - 1;
                for (i, d) in digits.iter().enumerate() {
                    let d = i16::from(*d);
                    assert!(d == 0 || (d % 2 != 0 && d.abs() <= bound), "{n} digit {i}");
                }
                // Non-adjacent: after a non-zero digit, w − 1 zeros.
                for (i, d) in digits.iter().enumerate() {
                    if *d != 0 {
                        let next = digits.iter().skip(i + 1).take(width as usize - 1);
                        assert!(next.clone().all(|x| *x == 0), "{n} at {i}");
                    }
                }
            }
        }
    }

    macro_rules! agrees_with_the_library {
        ($test:ident, $curve:ident, $uint:ty, $hash:ty) => {
            #[test]
            fn $test() {
                use $curve::{ProjectivePoint, Scalar};
                let scalar = |seed: u32| {
                    let digest = <$hash>::digest(seed.to_be_bytes());
                    <Scalar as Reduce<$uint>>::reduce_bytes(&digest)
                };
                let half = Scalar::NUM_BITS as usize / 2;
                let g = ProjectivePoint::GENERATOR;
                let q = g * scalar(1);
                let g_multiples: OddMultiples<ProjectivePoint, 32> = OddMultiples::new(g, half);
                let q_multiples: OddMultiples<ProjectivePoint, 8> = OddMultiples::new(q, half);
                let q_wide: OddMultiples<ProjectivePoint, 64> = OddMultiples::new(q, half);
                let mut pairs: Vec<(Scalar, Scalar)> = (0..100)
                    .map(|i| (scalar(2 * i + 2), scalar(2 * i + 3)))
                    .collect();
                let two_to_half = Scalar::from(2u64).pow_vartime(&[half as u64]);
                for edge in [
                    Scalar::ZERO,
                    Scalar::ONE,
                    -Scalar::ONE,
                    two_to_half,
                    -two_to_half,
                ] {
                    pairs.extend([(edge, scalar(9)), (scalar(9), edge), (edge, edge)]);
                }
                for (a, b) in pairs {
                    let library = ProjectivePoint::lincomb(&g, &a, &q, &b).to_affine();
                    assert_eq!(
                        lincomb(&a, &g_multiples, &b, &q_multiples).to_affine(),
                        library
                    );
                    assert_eq!(lincomb(&a, &g_multiples, &b, &q_wide).to_affine(), library);
                }
            }
        };
    }

    agrees_with_the_library!(p256_agrees_with_the_library, p256, p256::U256, Sha256);
    agrees_with_the_library!(p384_agrees_with_the_library, p384, p384::U384, Sha384);
}
